"""token-dynamics: generated batched kernels vs the definition at 50 digits and vs the
independent hand-written fields (numerics.simulate.token_dynamics)."""
from __future__ import annotations

import mpmath
import numpy as np
import pytest
import scipy.special
import sympy as sp

import derive
from derive.codegen import Program, generate
from derive.models import token_dynamics as td
from numerics.simulate import token_dynamics as sim

M = derive.models.get("token-dynamics")
SPECIAL = scipy.special


def _inputs(tp, rng, B=2, n=3, d=3):
    X = rng.standard_normal((B, n, d))
    X /= np.linalg.norm(X, axis=-1, keepdims=True)
    vals = dict(X=X, beta=np.array([0.7, 2.5])[:B], Q=rng.standard_normal((d, d)),
                K=rng.standard_normal((d, d)), V=rng.standard_normal((d, d)),
                shift=np.array([0.3, -0.2])[:B], mask=np.tril(np.ones((n, n))),
                A=rng.standard_normal((d, d)))
    return {nm: vals[nm] for nm, _ in tp.inputs}


@pytest.mark.parametrize("dyn,w,geo,causal", [
    ("SA", "general", "sphere", True), ("USA", "general", "sphere", False),
    ("SA", "identity", "euclidean", False), ("USA", "identity", "sphere", True)])
def test_velocity_kernel_equals_definition_at_50_digits(dyn, w, geo, causal):
    """Generated float64 kernel (stable softmax, matmul) = the unrolled definition
    (softmax without shift, explicit sums) printed for mpmath and evaluated at 50 digits."""
    tp = td.velocity_program(dyn, w, geo, causal)
    vals = _inputs(tp, np.random.default_rng(3))
    shapes = {k: v.shape for k, v in vals.items()}
    ins, outs = td.unroll(tp, shapes)
    syms = [s for nm, _ in tp.inputs for s in ins[nm].ravel()]
    outsyms = [sp.Symbol(f"v_{k}") for k in range(outs["v"].size)]
    prog = Program("unrolled", tuple(syms), tuple(zip(outsyms, outs["v"].ravel())), tuple(outsyms))
    km = generate(prog, "mpmath")
    with mpmath.workdps(50):
        args = [mpmath.mpf(float(x)) for nm, _ in tp.inputs for x in vals[nm].ravel()]
        r = km(mpmath.mp, *args)
        ref = np.array([r[s.name] for s in outsyms], dtype=object).reshape(outs["v"].shape)
    got = M.tensor_kernel(tp.name)(np, SPECIAL, *vals.values())["v"]
    err = max(float(abs(mpmath.mpf(float(g)) - e)) for g, e in zip(got.ravel(), ref.ravel()))
    scale = max(float(abs(e)) for e in ref.ravel())
    assert err <= 1e-14 * max(1.0, scale), (err, scale)


@pytest.mark.parametrize("name", [k for k in M.tensor_programs() if k.startswith("velocity")])
def test_velocity_kernel_equals_independent_loop(name):
    tp = M.tensor_programs()[name]
    rng = np.random.default_rng(11)
    B, n, d = 2, 5, 4
    vals = _inputs(tp, rng, B, n, d)
    usa = name.startswith("velocity_usa")
    if usa:
        vals["shift"] = np.zeros(B)
    got = M.tensor_kernel(name)(np, SPECIAL, *vals.values())["v"]
    dyn = "USA" if usa else "SA"
    gen = "general" in name
    for bi in range(B):
        ref = sim.velocity_loop(vals["X"][bi], float(vals["beta"][bi]), dyn,
                                vals.get("Q") if gen else None, vals.get("K") if gen else None,
                                vals.get("V") if gen else None, causal="causal" in name,
                                sphere="sphere" in name)
        np.testing.assert_allclose(got[bi], ref, rtol=1e-13, atol=1e-14)


def test_usa_shift_is_a_time_rescaling():
    k = M.velocity_kernel("USA")
    rng = np.random.default_rng(0)
    X = rng.standard_normal((1, 6, 3))
    X /= np.linalg.norm(X, axis=-1, keepdims=True)
    v0 = k(np, SPECIAL, X, np.array([3.0]), np.zeros(1))["v"]
    v1 = k(np, SPECIAL, X, np.array([3.0]), np.array([3.0]))["v"]
    np.testing.assert_allclose(v1 * np.exp(3.0), v0, rtol=1e-13, atol=1e-14)


def test_stable_softmax_at_huge_beta():
    """beta = 1e4: no overflow; the SA field equals the hard-max limit field."""
    k = M.velocity_kernel("SA")
    rng = np.random.default_rng(5)
    X = rng.standard_normal((1, 7, 3))
    X /= np.linalg.norm(X, axis=-1, keepdims=True)
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        v = k(np, SPECIAL, X, np.array([1e4]))["v"]
    assert np.all(np.isfinite(v))
    np.testing.assert_allclose(v[0], sim.velocity_loop(X[0], 1e4, "SA"), atol=1e-13)
    # each token's own weight dominates (<x_i, x_i> = 1 is the max logit): v ~ P_x x = 0
    assert np.abs(v).max() < 1e-12


def test_tangent_and_permutation_equivariance():
    k = M.velocity_kernel("SA", "general")
    rng = np.random.default_rng(2)
    d = 4
    Q, K, V = (rng.standard_normal((d, d)) for _ in range(3))
    X = rng.standard_normal((3, 9, d))
    X /= np.linalg.norm(X, axis=-1, keepdims=True)
    b = np.array([0.5, 1.0, 4.0])
    v = k(np, SPECIAL, X, b, Q, K, V)["v"]
    assert np.abs((v * X).sum(-1)).max() < 1e-14
    perm = rng.permutation(9)
    vp = k(np, SPECIAL, X[:, perm], b, Q, K, V)["v"]
    np.testing.assert_allclose(vp, v[:, perm], rtol=1e-13, atol=1e-15)


def test_rotation_equivariance_identity_weights():
    k = M.velocity_kernel("USA")
    rng = np.random.default_rng(4)
    X = rng.standard_normal((2, 6, 5))
    X /= np.linalg.norm(X, axis=-1, keepdims=True)
    O, _ = np.linalg.qr(rng.standard_normal((5, 5)))
    b = np.array([1.0, 2.0])
    v = k(np, SPECIAL, X, b, np.zeros(2))["v"]
    vr = k(np, SPECIAL, X @ O.T, b, np.zeros(2))["v"]
    np.testing.assert_allclose(vr, v @ O.T, atol=1e-13)


def test_antipodal_pair_is_stationary():
    X = np.array([[[1.0, 0, 0], [-1.0, 0, 0]]])
    for dyn in ("SA", "USA"):
        extra = (np.zeros(1),) if dyn == "USA" else ()
        v = M.velocity_kernel(dyn)(np, SPECIAL, X, np.array([2.0]), *extra)["v"]
        assert np.abs(v).max() == 0.0


def test_energy_kernel_vs_hand_and_mpmath():
    rng = np.random.default_rng(6)
    X = rng.standard_normal((2, 5, 3))
    X /= np.linalg.norm(X, axis=-1, keepdims=True)
    A = rng.standard_normal((3, 3))
    b = np.array([0.5, 3.0])
    got = M.tensor_kernel("energy_general")(np, SPECIAL, X, b, A)["E"]
    np.testing.assert_allclose(got, sim.energy_batch(X, b, A), rtol=1e-14)
    with mpmath.workdps(50):
        for bi in range(2):
            s = mpmath.mpf(0)
            for i in range(5):
                for j in range(5):
                    ip = mpmath.fsum(mpmath.mpf(X[bi, i, a]) * mpmath.mpf(A[a, c])
                                     * mpmath.mpf(X[bi, j, c]) for a in range(3) for c in range(3))
                    s += mpmath.exp(mpmath.mpf(b[bi]) * ip)
            ref = s / (2 * mpmath.mpf(b[bi]) * 25)
            assert abs(got[bi] / ref - 1) < 1e-14


def test_generated_source_is_readable_and_keyed():
    k = M.velocity_kernel("SA", "general", "sphere", True)
    assert "W -= xp.max(W, axis=2, keepdims=True)" in k.source  # max-shifted softmax,
    assert "xp.exp(W, out=W)" in k.source  # in place
    assert "xp.matmul" in k.source and "math." not in k.source
    assert len(k.key) == 64
    assert k.key != M.velocity_kernel("SA", "general", "sphere", False).key


@pytest.mark.parametrize("dyn", ["SA", "USA"])
def test_velocity_kernel_holds_one_n_by_n_buffer(dyn):
    """Buffer reuse of the tensor stage: one evaluation at n = 512, d = 16 allocates at most
    1.5 n^2 doubles at its peak (tracemalloc; NumPy reports its buffers to it), and writes no input."""
    import tracemalloc

    n, d = 512, 16
    rng = np.random.default_rng(0)
    X = rng.standard_normal((1, n, d))
    X /= np.linalg.norm(X, axis=-1, keepdims=True)
    X0 = X.copy()
    k = M.velocity_kernel(dyn)
    args = (X, np.array([2.0])) + ((np.zeros(1),) if dyn == "USA" else ())
    k(np, SPECIAL, *args)
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        v = k(np, SPECIAL, *args)["v"]
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak <= 1.5 * n * n * 8, peak / (n * n * 8)
    np.testing.assert_array_equal(X, X0)
    ref = sim.velocity_batch(X, np.array([2.0]), dyn) if dyn == "SA" else None
    if ref is not None:
        np.testing.assert_allclose(v, ref, rtol=1e-12, atol=1e-14)


def test_bad_variant_names_raise():
    with pytest.raises(ValueError, match="dynamics"):
        td.velocity_program("XA")
    with pytest.raises(ValueError, match="weights"):
        td.velocity_program("SA", "diagonal")
    with pytest.raises(ValueError, match="geometry"):
        td.velocity_program("SA", "identity", "torus")
