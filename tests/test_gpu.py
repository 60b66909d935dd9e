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
