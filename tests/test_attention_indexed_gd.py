"""Gradient descent with the authors' protocol (Adam lr 0.1, 1000 full-batch steps, d = 200,
ρ = 0.5, float32, 32 students averaged) against their GD points (``GD_averaged_T*`` and
``GD_single_T*`` tables of ``tests/data/reference/attention_indexed_multitoken.json``, copied from
``FabrizioBoncoraglio/BO_ExtensiveRankAttention`` @ 5f1b99c ``data/GD_*``).

Fast: the analytic gradient against central differences; students trained together equal students
trained alone; seed reproducibility at tiny d; the Gram-matrix estimator; the recorded d = 200 points
(``tests/data/attention_indexed_gd_points.csv``, written by ``attention_indexed_gd_run.py``,
provenance in its header) within 0.05 of the authors'. Slow: two cheap points rerun from scratch.
"""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from numerics.simulate.attention_indexed import (averaged_error_estimate, check_gradient, gd_error,
                                                 sample_data, train_students)
from tests.conftest import load_reference

REF = load_reference("attention_indexed_multitoken")
POINTS = Path(__file__).resolve().parent / "data" / "attention_indexed_gd_points.csv"
TOL = 0.05          # issue 16 / spec §7: "a simulation should land within 0.05 of the averaged-GD points"


def _authors(kind: str, T: int, alpha: float, d: int = 200) -> tuple[float, float]:
    """The authors' (mean, std over 16 data sets) at the grid alpha nearest to ``alpha``."""
    table = REF["tables"][f"GD_{kind}_T{T}_rho0.5"]
    assert table["d"] == 200 and table["students_averaged"] == (32 if kind == "averaged" else 1)
    rows = np.asarray(table["rows"], float)
    i = int(np.argmin(np.abs(rows[:, 0] - alpha)))
    assert int(rows[i, 0] * d * d) == int(alpha * d * d) or abs(rows[i, 0] / alpha - 1) < 1e-5
    return float(rows[i, 1]), float(rows[i, 2])


def _recorded() -> list[dict[str, float]]:
    lines = [ln for ln in POINTS.read_text().splitlines() if ln and not ln.startswith("#")]
    return [{k: float(v) for k, v in r.items() if k != "date_utc"} for r in csv.DictReader(lines)]


@pytest.mark.parametrize("T", [2, 3, 6])
def test_gradient_against_finite_differences(T: int) -> None:
    assert check_gradient(seed=T, T=T, K=2) < 1e-6


def test_batched_students_equal_students_trained_alone() -> None:
    """Stacking K students as column blocks of one matrix must not couple them."""
    rng = np.random.default_rng(3)
    _, X, y = sample_data(12, 0.3, 0.5, 3, rng, dtype=np.float64)
    W0 = rng.standard_normal((3, 12, 6))
    together = train_students(X, y, 6, 3, rng, steps=25, dtype=np.float64, W0=W0)
    for k in range(3):
        alone = train_students(X, y, 6, 1, rng, steps=25, dtype=np.float64, W0=W0[k:k + 1])
        np.testing.assert_allclose(together[k], alone[0], rtol=1e-10, atol=1e-12)


def test_tiny_run_is_reproducible_by_seed_and_learns() -> None:
    a = gd_error(d=24, alpha=0.08, rho=0.5, T=3, students=3, steps=200, seed=7)
    b = gd_error(d=24, alpha=0.08, rho=0.5, T=3, students=3, steps=200, seed=7)
    c = gd_error(d=24, alpha=0.08, rho=0.5, T=3, students=3, steps=200, seed=8)
    np.testing.assert_array_equal(a.grams[0], b.grams[0])
    assert not np.allclose(a.grams[0], c.grams[0])
    assert np.all(np.isfinite(a.grams[0])) and a.mean("averaged") < 1.0
    # averaging students cannot increase the error beyond the mean single-student error (convexity)
    assert a.mean("averaged") <= a.mean("single") + 1e-12


def test_gram_estimator() -> None:
    """E_K = c + (s − c)/K reproduces the plain K-average when K is the number of students, and is
    exact for any K' on a Gram matrix with equal off-diagonal entries."""
    rng = np.random.default_rng(0)
    E = rng.standard_normal((5, 40))
    G = E @ E.T
    assert averaged_error_estimate(G, 5) == pytest.approx(G.mean(), rel=1e-12)
    G2 = np.full((4, 4), 0.3) + 0.5 * np.eye(4)
    assert averaged_error_estimate(G2, 32) == pytest.approx(0.3 + 0.5 / 32, rel=1e-12)


def test_recorded_points_have_provenance() -> None:
    head = [ln for ln in POINTS.read_text().splitlines() if ln.startswith("#")]
    text = "\n".join(head)
    for key in ("Produced by:", "5f1b99c", "float32", "seed", "Adam lr 0.1", "1000 full-batch"):
        assert key in text
    rows = _recorded()
    assert len({(r["T"], r["alpha"]) for r in rows}) >= 16
    assert len({r["seed"] for r in rows}) == len(rows)
    assert {int(r["T"]) for r in rows} >= {2, 3, 4}
    assert all(r["students"] == 32 and r["n"] == int(r["alpha"] * 200**2) for r in rows)


def _points() -> dict[tuple[int, float], list[dict[str, float]]]:
    pts: dict[tuple[int, float], list[dict[str, float]]] = {}
    for r in _recorded():
        pts.setdefault((int(r["T"]), r["alpha"]), []).append(r)
    return pts


def test_recorded_points_within_005_of_authors() -> None:
    """Each point (mean over our data sets, as theirs is a mean over 16), averaged and single
    student, within 0.05 of the authors' mean."""
    bad = []
    for (T, alpha), rows in _points().items():
        m_avg, _ = _authors("averaged", T, alpha)
        m_one, _ = _authors("single", T, alpha)
        ours_avg = np.mean([r["averaged"] for r in rows])
        ours_one = np.mean([r["single_mean"] for r in rows])
        if abs(ours_avg - m_avg) > TOL or abs(ours_one - m_one) > TOL:
            bad.append((T, alpha, ours_avg, m_avg, ours_one, m_one))
    assert not bad, bad


def test_each_recorded_data_set_within_data_set_noise() -> None:
    """A single data set of ours fluctuates like one of their 16: within max(0.05, 3.5 std)."""
    bad = []
    for r in _recorded():
        T, alpha = int(r["T"]), r["alpha"]
        for kind, ours in (("averaged", r["averaged"]), ("single", r["single_mean"])):
            m, s = _authors(kind, T, alpha)
            if abs(ours - m) > max(TOL, 3.5 * s):
                bad.append((T, alpha, kind, ours, m, s))
    assert not bad, bad


@pytest.mark.slow
@pytest.mark.parametrize("T, row", [(2, 2), (4, 4)])
def test_gd_d200_rerun_against_authors(T: int, row: int) -> None:
    """Two cheap points from scratch (≈ 30 s and 60 s on one core), 32 students, float32."""
    alpha = REF["tables"][f"GD_averaged_T{T}_rho0.5"]["rows"][row][0]
    r = gd_error(d=200, alpha=alpha, rho=0.5, T=T, students=32, datasets=1, seed=1000 * T + row + 17)
    m_avg, _ = _authors("averaged", T, alpha)
    m_one, _ = _authors("single", T, alpha)
    assert abs(r.mean("averaged") - m_avg) < TOL
    assert abs(r.mean("single") - m_one) < TOL
