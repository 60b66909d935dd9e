"""sequence-multi-index: thresholds of two-layer tied attention (L = 2), and the 0.1436 question.

* SymPy: the linearised operator is entrywise on the layers; Jacobians at Q = 0 and on the
  layer-2 branch; the Jensen bound E‖zzᵀ − I‖² = 6 (so every α_ℓ ≥ 1/6).
* Quadrature (``_bayes_smi``): ∫p(h)dh = 1, grid-converged α₂(c = 1) = 0.185478.
* Independent Monte Carlo (``numerics.simulate.bayes_smi_mc``) agrees within its error bars and
  excludes the reference 0.1436 (λ₂ = 6.96) by > 5σ.
* Reference (``shared/reference``): α₂ there is below the bound 1/6 for c ≥ 0.75 — those
  numbers cannot be the Q = 0 stability thresholds of the stated SE (see the docs page).
"""
from __future__ import annotations

import numpy as np
import pytest
import sympy as sp

import derive
from derive.models._bayes_smi import Grid, channel_moments
from derive.models.sequence_multi_index import alpha, lam1, lam2
from numerics.simulate.bayes_smi_mc import labels, lambdas_mc, recover_h
from tests.conftest import load_reference

REF = load_reference("sequence_multi_index")
NAME = "sequence-multi-index"


@pytest.fixture(scope="module")
def model():
    return derive.models.get(NAME)


def test_operator_entrywise(model):
    assert model.check_operator_is_entrywise()


def test_jacobians(model):
    assert model.jacobian_at_zero == sp.diag(alpha * lam1, alpha * lam2)
    J = model.jacobian_staircase
    assert J[0, 1] == 0  # triangular: Q11 = 0 is invariant
    assert sp.simplify(J[0, 0] - alpha * sp.Function("Lambda_1")(sp.Symbol("q_22", positive=True))) == 0


def test_jensen_bound(model):
    assert model.jensen_bound == 6


def test_recover_h_up_to_sign():
    rng = np.random.default_rng(0)
    z1, z2 = rng.standard_normal((50, 2)), rng.standard_normal((50, 2))
    from numerics.simulate.bayes_smi_mc import attention
    h = np.einsum("nij,nj->ni", attention(z1, 1.0), z2)
    hr = recover_h(labels(z1, z2, 1.0))
    err = np.minimum(np.abs(hr - h).max(1), np.abs(hr + h).max(1))
    assert err.max() < 1e-8


@pytest.fixture(scope="module")
def quad_c1():
    return channel_moments(1.0, 0.0, z_grid=Grid(7.0, 101), h_grid=Grid(12.0, 81))


def test_quadrature_normalised_and_value(quad_c1):
    assert quad_c1["norm"] == pytest.approx(1.0, abs=1e-8)
    # grid-converged value (101² vs 161² vs 241² boxes agree to 1e-8, tests/data/bayes_smi.md)
    assert 1 / quad_c1["lam2"] == pytest.approx(0.1854778, abs=2e-6)
    assert 1 / quad_c1["lam1"] == pytest.approx(6.156937, abs=2e-4)


def test_quadrature_bound(quad_c1):
    assert quad_c1["lam2"] <= 6 and quad_c1["lam1"] <= 6


def test_monte_carlo_agrees_and_excludes_reference(quad_c1):
    mc = lambdas_mc(1.0, n_teachers=2000, n_proposals=2000, seed=3)
    assert abs(mc["lam2"] - quad_c1["lam2"]) < 4 * mc["lam2_se"]
    assert abs(mc["lam1"] - quad_c1["lam1"]) < 4 * mc["lam1_se"]
    lam_ref = 1 / REF["figure_values_c1"]["alpha2"]
    assert (lam_ref - mc["lam2"]) / mc["lam2_se"] > 5


def test_reference_below_jensen_bound():
    """Every reference α₂ with c ≥ 0.75 lies below 1/6: impossible for λ₂ ≤ 6."""
    bad = [r["skip_c"] for r in REF["thresholds"] if r["alpha2"] < 1 / 6]
    assert sorted(bad) == [0.875, 1.25, 2.0, 3.0, 4.0]


def test_thresholds_api(model):
    th = model.thresholds(skip=1.0, staircase=False, quick=True)
    assert th["alpha2"] == pytest.approx(0.1854778, abs=1e-5)
    assert th["alpha1_from_zero"] > 6


@pytest.mark.slow
def test_monte_carlo_large():
    mc = lambdas_mc(1.0, n_teachers=20000, n_proposals=4000, seed=7)
    assert abs(1 / mc["lam2"] - 0.1854778) < 4 * mc["lam2_se"] / mc["lam2"] ** 2


@pytest.mark.slow
@pytest.mark.parametrize("c", [0.5, 2.0, 4.0])
def test_alpha2_large_c_limit(model, c):
    """α₂(c) decreases towards 1/6 as c grows (y reveals z₂ up to sign)."""
    th = model.thresholds(skip=c, staircase=False, quick=True)
    assert th["alpha2"] > 1 / 6
    if c == 4.0:
        assert th["alpha2"] == pytest.approx(1 / 6, abs=5e-3)


def test_prior_free_entropy_stationarity(model):
    assert model.prior_free_entropy_stationarity == sp.zeros(2, 2)


def test_stored_staircase_consistent():
    """The stored slow run (tests/data/bayes_smi_staircase.json): boxes normalised, α(q₂₂)
    increasing from α₂ and α Λ₁ crossing 1 between q₂₂ = 0.95 and 0.98."""
    import json
    from pathlib import Path

    d = json.loads((Path(__file__).parent / "data" / "bayes_smi_staircase.json").read_text())
    pts = sorted({p["q22"]: p for p in d["points"]}.values(), key=lambda p: p["q22"])
    good = [p for p in pts if abs(p["norm"] - 1) < 1e-5]
    a = [p["alpha"] for p in good]
    assert all(x < y for x, y in zip(a, a[1:]))
    assert good[0]["alpha"] > 0.1854778
    s = {p["q22"]: p["stab1"] for p in good}
    assert s[0.95] < 1 < s[0.98]


@pytest.mark.slow
def test_staircase_point_reproduces_stored(model):
    p = model.staircase_point(1.0, 0.6)
    assert p["norm"] == pytest.approx(1, abs=1e-6)
    assert p["alpha"] == pytest.approx(0.4258, rel=0.03)  # stored: 6.5/91 boxes, 8x8 GH
    assert p["lam1"] == pytest.approx(0.2682, rel=0.01)


@pytest.mark.slow
def test_derivation_script_quick(tmp_path):
    from derivations import sequence_multi_index as script

    files = script.main(tmp_path, quick=True, echo=lambda *a: None)
    assert {f.name for f in files} == {"smi_thresholds.png", "smi_thresholds.csv", "summary.md"}
