"""GAMP-RIE for the extensive-width quadratic network (``numerics.amp``) vs the state evolution.

The AMP code is written independently of the symbolic layer (hand-written cubic for the
Stieltjes transform, no SymPy). Checks:

* its Stieltjes transform = the physical root of the SymPy-derived cubic of the model;
* its RIE denoiser on a sampled denoising problem ``S* + √Δ GOE`` reaches the model's
  ``mmse_RIE(Δ)`` (finite d), and the divergence-based variance estimate agrees;
* (slow) per-iteration MSE of AMP at d = 250 (several seeds) tracks the SE iterated from the
  same start m⁰ = 1/κ; the measured trend in d (250, 500, 1000) is in
  ``tests/data/bayes_ewq_amp.md``.
"""
from __future__ import annotations

import numpy as np
import pytest

import derive
from numerics.amp.extensive_width_quadratic import rie_denoise, sample_problem, stieltjes_mp_sc

NAME = "extensive-width-quadratic"


@pytest.fixture(scope="module")
def model():
    return derive.models.get(NAME)


def test_stieltjes_matches_derived_cubic(model):
    k_, de = 0.5, 0.7
    xs = np.linspace(-1.0, 5.0, 41)
    G = stieltjes_mp_sc(xs, k_, de)
    co = model.kernel("cubic")(np, None, xs, k_, de)
    coeffs = np.stack([np.broadcast_to(np.asarray(co[f"c{i}"], float), xs.shape) for i in range(4)], -1)
    resid = sum(coeffs[:, i] * G**i for i in range(4))
    inside = np.abs(G.imag) > 1e-8
    assert inside.sum() > 20
    assert np.max(np.abs(resid[inside])) < 1e-9
    # density from our root = the model's physical density
    from numerics.rie import physical_density
    assert np.abs(G.imag[inside]) / np.pi == pytest.approx(physical_density(coeffs[inside]), abs=1e-9)


@pytest.mark.parametrize("k_,de", [(0.5, 0.5), (1.0, 0.3)])
def test_rie_denoiser_reaches_mmse(model, k_, de):
    rng = np.random.default_rng(3)
    d = 400
    W = rng.standard_normal((d, int(k_ * d)))
    S = W @ W.T / int(k_ * d)
    G = rng.standard_normal((d, d))
    R = S + np.sqrt(de) * (G + G.T) / np.sqrt(2 * d)
    S_hat, div = rie_denoise(R, k_, de)
    mse = np.sum((S_hat - S) ** 2) / d
    theory = float(model.mmse_rie(np.array([de]), np.array([k_]))[0])
    assert mse == pytest.approx(theory, rel=0.03)
    assert 2 * de * div / d**2 == pytest.approx(theory, rel=0.03)


def test_sample_problem_validates():
    with pytest.raises(ValueError, match="alpha"):
        sample_problem(50, 0.0, 1.0, 0.1, np.random.default_rng(0))
    with pytest.raises(ValueError, match="delta"):
        sample_problem(50, 0.1, 1.0, -1.0, np.random.default_rng(0))


@pytest.mark.slow
def test_amp_tracks_state_evolution():
    """d = 250, α = 0.25, κ = 1, Δ = 0.1, 3 seeds, 8 iterations: mean AMP MSE within 0.035 of the
    SE at every iteration (measured: ≤ 0.02 at d = 250, ≤ 0.007 at d = 500, see tests/data), and
    AMP's own variance estimate V/2 within 0.03 of its MSE."""
    from derivations.extensive_width_quadratic import AMP_POINT, amp_vs_se

    res = amp_vs_se([250], [0, 1, 2], echo=lambda *a: None, **AMP_POINT)
    se = np.array(res["se"])
    runs = np.array(res["runs"][250])
    assert np.max(np.abs(runs.mean(axis=0)[1:] - se[1:])) < 0.035
    assert se[-1] < 0.5 * se[0]  # a non-trivial trajectory
    assert np.max(np.abs(np.array(res["v_half"][250]) - runs)) < 0.03
