"""numerics.thresholds: crossing of a replicated quantity, with the error propagated to y."""
from __future__ import annotations

import numpy as np
import pytest

from numerics.thresholds import crossing_with_error


def _noisy(R: int = 16, sigma: float = 0.01, seed: int = 0):
    """Replica r: g_r(x) = tanh(x − 0.3) + ε_r (ε fixed per replica: common random numbers),
    y_r(x) = 2x + 3δ_r; the crossing of mean g is at 0.3 + O(σ/√R)."""
    rng = np.random.default_rng(seed)
    eps, dl = sigma * rng.standard_normal(R), sigma * rng.standard_normal(R)
    eps -= eps.mean()   # exact mean: the root of mean g is exactly 0.3
    return lambda x: (np.tanh(x - 0.3) + eps, 2 * x + 3 * dl), eps, dl


def test_root_value_and_error():
    f, eps, dl = _noisy()
    res = crossing_with_error(f, [0.0, 0.2, 0.5, 1.0], tol=1e-8)
    assert res.converged
    assert res.root == pytest.approx(0.3, abs=1e-7)
    # y at the per-replica roots x_r = 0.3 − ε_r: y_r = 2(0.3 − ε_r) + 3δ_r
    want = 2 * (0.3 - eps) + 3 * dl
    assert res.value == pytest.approx(want.mean(), abs=1e-6)
    assert res.replica_error == pytest.approx(want.std(ddof=1) / np.sqrt(want.size), rel=1e-3)
    assert res.evaluations < 15


def test_refine_adds_to_error():
    f, _, _ = _noisy()
    res = crossing_with_error(f, [0.0, 1.0], tol=1e-8, refine=lambda x: (f(x)[0] + 0.01, f(x)[1]))
    # refined g shifted by +0.01 moves the root by −0.01 and y by −0.02
    assert res.refine_error == pytest.approx(0.02, rel=1e-3)
    assert res.error == pytest.approx(np.hypot(res.replica_error, 0.02))


def test_no_bracket_is_nan_not_converged():
    res = crossing_with_error(lambda x: (np.full(4, x + 1.0), np.full(4, x)), [0.0, 0.5, 1.0])
    assert not res.converged and np.isnan(res.value) and np.isnan(res.root)


def test_nan_evaluation_is_not_converged():
    res = crossing_with_error(lambda x: (np.full(4, np.nan if x > 0.4 else x - 0.3), np.ones(4)),
                              [0.0, 0.5, 1.0])
    assert not res.converged and np.isnan(res.value)
