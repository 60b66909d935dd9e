"""CuPy backend = NumPy backend (skipped where CuPy or a CUDA device is missing)."""
from __future__ import annotations

import numpy as np
import pytest

import derive
from numerics.backend import BackendUnavailableError, get_backend
from numerics.roots import bracketed_root

try:
    CUPY = get_backend("cupy")
except BackendUnavailableError:
    CUPY = None

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(CUPY is None, reason="CuPy / CUDA device not available")]


def test_icl_grid_cupy_equals_numpy():
    grid = dict(tau=np.geomspace(0.05, 20, 41), alpha=np.geomspace(0.5, 100, 7),
                kappa=np.array([0.1, 0.5, 2.0, np.inf]), rho=0.01,
                lam=np.array([0.0, 1e-6, 1e-3, 1.0]))
    a = derive.solve("icl-linear-attention", backend="numpy", **grid)
    b = derive.solve("icl-linear-attention", backend="cupy", **grid)
    assert b.attrs["backend"] == "cupy"
    np.testing.assert_array_equal(a.converged.values, b.converged.values)
    np.testing.assert_array_equal(a.status.values, b.status.values)
    for v in ("e_icl", "e_idg", "e_train", "eps"):
        np.testing.assert_allclose(b[v].values, a[v].values, rtol=1e-12, atol=0, equal_nan=True)


def test_bracketed_root_on_cupy():
    xp = CUPY.xp
    a = xp.asarray(np.geomspace(1e-6, 1e6, 101))
    r = bracketed_root(lambda x, a: x**3 - a, 1e-4, 1e4, (a,), fprime=lambda x, a: 3 * x**2,
                       log_space=True, rtol=1e-15, backend=CUPY)
    assert bool(r.converged.all())
    np.testing.assert_allclose(CUPY.to_numpy(r.x), np.cbrt(CUPY.to_numpy(a)), rtol=4e-15)


def test_piecewise_kernel_on_cupy():
    m = derive.models.get("icl-linear-attention")
    k = m.kernel("observables")
    xs = np.geomspace(1e-4, 1e3, 50)
    kap = np.array([0.3, 1.0, 3.0, np.inf])[:, None]
    args = (2.0, 1.0 / xs, kap, 0.0, 0.0, 0.0)
    ref = k(np, get_backend("numpy").special, *args)
    got = k(CUPY.xp, CUPY.special, *[CUPY.xp.asarray(a) for a in args])
    for v in ("M", "Mp", "e_icl"):
        np.testing.assert_allclose(CUPY.to_numpy(got[v]), ref[v], rtol=1e-13)


def test_bvn_cdf_on_cupy():
    """numerics.special.bvn_cdf with CuPy arrays (Owen's T by quadrature: cupyx has no owens_t)
    equals the SciPy path; the attention-indexed hardmax kernels, which print Φ2 to it, are in
    test_every_generated_kernel_cupy_equals_numpy below."""
    from numerics.special import bvn_cdf

    rng = np.random.default_rng(4)
    h, k = rng.uniform(-8, 8, 4000), rng.uniform(-8, 8, 4000)
    h[:20] = 0.0
    r = rng.uniform(-0.95, 0.95, 4000)
    ref = bvn_cdf(h, k, r)
    xp = CUPY.xp
    got = bvn_cdf(xp.asarray(h), xp.asarray(k), xp.asarray(r), xp=xp, special=CUPY.special)
    np.testing.assert_allclose(CUPY.to_numpy(got), ref, rtol=1e-9, atol=3e-16)


# -- every generated kernel of every model, and the generic solvers -------------------------------

def _kernel_cases():
    """Every kernel of every model's registry (scalar and tensor programs)."""
    out = []
    for name in derive.models.names():
        m = derive.models.get(name)
        for prog in m.registry.programs():
            out.append((name, prog))
    return out


def _tensor_inputs(tp, rng):
    from derive.codegen.tensor import small_shapes

    shapes = small_shapes(tp, batch=3, size=17)
    kinds = dict(tp.input_kinds)
    vals = []
    for nm, _rank in tp.inputs:
        if kinds.get(nm) == "causal_mask":
            vals.append(np.tril(np.ones(shapes[nm])))
            continue
        v = rng.uniform(-1.0, 1.0, size=shapes[nm])
        if kinds.get(nm) == "unit_rows":
            v /= np.linalg.norm(v, axis=-1, keepdims=True)
        vals.append(v)
    return vals


@pytest.mark.parametrize("model,program", _kernel_cases())
def test_every_generated_kernel_cupy_equals_numpy(model, program):
    """Scalar kernels at 64 random inputs; tensor kernels (in-place buffers, masked softmax) at
    small random batches; the inputs are never written to on either backend."""
    m = derive.models.get(model)
    k = m.kernel(program)
    rng = np.random.default_rng(0)
    prog = m.registry.program(program)
    if m.registry.is_tensor(program):
        args = _tensor_inputs(prog, rng)
    else:
        args = [rng.uniform(*m.kernel_input_ranges.get(s.name, (-2.0, 2.0)), size=64)
                for s in prog.inputs]
    npb = get_backend("numpy")
    dev = [CUPY.xp.asarray(a) for a in args]
    with np.errstate(all="ignore"):
        ref = k(np, npb.special, *[a.copy() for a in args])
        got = k(CUPY.xp, CUPY.special, *dev)
    for a, b in zip(args, dev):
        np.testing.assert_array_equal(CUPY.to_numpy(b), a, err_msg=f"{program}: input written")
    for v in ref:
        r = np.asarray(ref[v], dtype=float)
        g = CUPY.to_numpy(CUPY.xp.asarray(got[v])).astype(float)
        if not m.registry.is_tensor(program):
            r, g = np.broadcast_to(r, (64,)), np.broadcast_to(g, (64,))
        np.testing.assert_array_equal(np.isnan(g), np.isnan(r), err_msg=f"{program}.{v}: NaN pattern")
        ok = np.isfinite(r)
        # Φ2 (numerics.special.bvn_cdf) is accurate to ~3e-16 absolute above its 1e-6 switch
        # (Owen's formula; CuPy's Owen T by quadrature), hence ~3e-10 relative there
        rtol = 1e-8 if "_bvn_cdf(" in k.source else 1e-11
        np.testing.assert_allclose(g[ok], r[ok], rtol=rtol, atol=1e-300, err_msg=f"{program}.{v}")


GRIDS = {
    "bilinear-sequence-regression": dict(alpha=np.array([0.3, 0.8, 1.5]), beta=2.0, rho=0.5, delta=0.1),
    "extensive-width-quadratic": dict(alpha=np.array([0.1, 0.3, 0.6]), kappa=0.5, delta=0.1),
    "positional-semantic": dict(alpha=np.array([1.0, 2.0]), omega=0.3, sigma=0.5, lam=0.01,
                                branch="positional", quad_rtol=None, n_quad=512),
}


@pytest.mark.parametrize("model", sorted(GRIDS))
def test_fixed_point_models_cupy_equal_numpy(model):
    a = derive.solve(model, backend="numpy", **GRIDS[model])
    b = derive.solve(model, backend="cupy", **GRIDS[model])
    np.testing.assert_array_equal(a.converged.values, b.converged.values)
    for v in derive.models.get(model).state:
        np.testing.assert_allclose(b[v].values, a[v].values, rtol=1e-8, atol=1e-12, equal_nan=True)


def test_sweep_with_continuation_on_cupy(tmp_path):
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parent))
    from _curie_weiss import CurieWeiss

    from derive.sweep import sweep

    h = np.linspace(-0.6, 0.7, 14)
    a = sweep(CurieWeiss(), beta=2.0, h=h, init=[-0.9], continuation="h", progress=False)
    b = sweep(CurieWeiss(), beta=2.0, h=h, init=[-0.9], continuation="h", progress=False,
              backend="cupy", store=tmp_path / "gpu.zarr")
    np.testing.assert_allclose(b.m.values, a.m.values, rtol=1e-10)
    np.testing.assert_allclose(b.stability.values, a.stability.values, rtol=1e-6)


def test_generic_solvers_on_cupy():
    from numerics.fixed_point import solve_fixed_point
    from numerics.prox import newton_minimize
    from numerics.quadrature import gauss_hermite

    xp = CUPY.xp
    c = xp.asarray(np.linspace(0.1, 2.0, 50))
    fp = solve_fixed_point(lambda x, i: xp.cos(c[i])[:, None] * 0 + xp.cos(x), xp.full((50, 1), 0.3),
                           damping=0.7, anderson=3, tol=1e-13, xp=xp)
    assert bool(fp.converged.all())
    np.testing.assert_allclose(CUPY.to_numpy(fp.x[:, 0]), 0.7390851332151607, rtol=1e-12)

    def fgh(x, rows):  # (x - c)^4 + x^2 per row
        d = x[:, 0] - c[rows]
        return d**4 + x[:, 0] ** 2, (4 * d**3 + 2 * x[:, 0])[:, None], (12 * d**2 + 2)[:, None, None]

    r = newton_minimize(fgh, xp.zeros((50, 1)), xp=xp)
    g = CUPY.to_numpy(4 * (r.x[:, 0] - c) ** 3 + 2 * r.x[:, 0])
    assert np.abs(g).max() < 1e-10
    rule = gauss_hermite(20, 2).to(xp)
    m4 = float((rule.weights * rule.nodes[:, 0] ** 4).sum())
    assert m4 == pytest.approx(3.0, rel=1e-13)
