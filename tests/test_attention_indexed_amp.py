"""GAMP-RIE for the attention-indexed model (finite d, independent of the symbolic layer)
against the state evolution of ``derive.solve('attention-indexed', ...)``.

Fast: small d, the sign and size of the finite-size gap. Recorded (slow, ``tests/data/
attention_indexed_amp.json``, seeds in the file): the trend in d toward the SE up to d = 100.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import multivariate_normal

import derive
from numerics.amp.attention_indexed import run
from numerics.special import bvn_cdf

RECORD = Path(__file__).resolve().parent / "data" / "attention_indexed_amp.json"


def _se(alpha: float, T: int, rho: float, activation: str, derivative: str = "correct") -> float:
    ds = derive.solve("attention-indexed", alpha=alpha, T=T, rho=rho, activation=activation,
                      derivative=derivative)
    assert bool(ds.converged)
    return float(ds.mmse)


def test_bvn_cdf_against_scipy() -> None:
    rng = np.random.default_rng(3)
    for r in (1 / 3, -1 / 3, 0.7):
        pts = rng.uniform(-4, 4, size=(20, 2))
        want = multivariate_normal(cov=[[1, r], [r, 1]]).cdf(pts)
        np.testing.assert_allclose(bvn_cdf(pts[:, 0], pts[:, 1], r), want, rtol=1e-6, atol=1e-12)
    # lower tail, relative accuracy (where Owen's T formula cancels): Φ2 ≤ Φ(h)Φ(k) for r < 0
    v = bvn_cdf(-8.0, -1.0, -1 / 3)
    assert 0 < v < 6.2e-16 * 0.159


def test_amp_hardmax_small_d_near_se() -> None:
    """d = 30, ρ = 0.5, α = 0.5: correct-g AMP within 0.05 above the SE (0.2131); the authors'
    g on the same instance is far worse (sub-optimal)."""
    se = _se(0.5, 2, 0.5, "hardmax")
    r = run(d=30, alpha=0.5, rho=0.5, T=2, activation="hardmax", seeds=(0,), n_iter=15)
    ra = run(d=30, alpha=0.5, rho=0.5, T=2, activation="hardmax", derivative="authors", seeds=(0,),
             n_iter=15)
    assert -0.02 < r["mean"] - se < 0.05, (r["mse"], se)
    assert ra["mean"] > r["mean"] + 0.1


def test_amp_softmax_small_d_above_se() -> None:
    """d = 40, T = 2, α = 0.1 (SE 0.392): the finite-d AMP error is above the SE by < 0.15."""
    se = _se(0.1, 2, 0.5, "softmax")
    r = run(d=40, alpha=0.1, rho=0.5, T=2, activation="softmax", seeds=(0, 1), n_iter=30)
    assert 0 < r["mean"] - se < 0.15, (r["mse"], se)


def test_recorded_trend_toward_se() -> None:
    """The recorded runs (d = 40, 70, 100; 4 seeds each): the gap to the SE shrinks with d
    for the correct channels, and at d = 100 the hardmax AMP is within 3 standard errors + 0.01
    of the corrected SE; the authors' g stays far above."""
    rec = json.loads(RECORD.read_text())
    groups: dict[tuple, list[dict]] = {}
    for r in rec:
        if r["d"] < 40:
            continue
        groups.setdefault((r["activation"], r["derivative"], r["T"], r["rho"], r["alpha"]), []).append(r)
    assert len(groups) >= 5
    for (act, der, T, rho, a), rows in groups.items():
        rows = sorted(rows, key=lambda r: r["d"])
        se = _se(a, T, rho, act)
        gaps = [r["mean"] - se for r in rows]
        big = rows[-1]
        assert big["d"] >= 100
        if der == "correct":
            assert abs(gaps[-1]) <= abs(gaps[0]) + 2 * big["sem"], (act, T, a, gaps)
            if act == "hardmax":
                assert abs(gaps[-1]) < 3 * big["sem"] + 0.01, (a, gaps, big["sem"])
        else:  # the authors' g: even stopped at its best iterate (an oracle using S*) it stays far above
            assert big["best_mean"] - se > 0.1, (a, big["best_mean"], se)


@pytest.mark.slow
def test_amp_hardmax_d100() -> None:
    se = _se(1.0, 2, 0.5, "hardmax")
    r = run(d=100, alpha=1.0, rho=0.5, T=2, activation="hardmax", seeds=(11, 12))
    assert abs(r["mean"] - se) < 0.01
