"""Sweeps at scale: units, the resumable Zarr store (kill and restart), refusal of foreign
stores, continuation through a metastable branch, multi-start with deduplication, stability,
failure reporting, and a 2-worker Dask cluster with kernels shipped as source + hash.

Reference numbers are independent of the code under test: closed forms of the Curie–Weiss
toy (fixed points by mpmath.findroot at 50 digits, stability β(1 − m²), spinodal
h_s = β m_s − atanh m_s with m_s² = 1 − 1/β) and :func:`derive.solve` (the one-shot path).
"""
from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import mpmath
import numpy as np
import pytest

from derive import solve
from derive.store import StoreMismatchError
from derive.sweep import make_grid, plan_units, sweep

sys.path.insert(0, str(Path(__file__).parent))
from _curie_weiss import CurieWeiss  # noqa: E402

pytest.importorskip("zarr")

ICL = dict(kappa=1.0, lam=1e-3, rho=0.01)


def cw_roots(beta: float, h: float) -> list[float]:
    """All solutions of m = tanh(βm + h) at 50 digits (independent of the sweep)."""
    with mpmath.workdps(50):
        f = lambda m: m - mpmath.tanh(beta * m + h)  # noqa: E731
        grid = np.linspace(-1, 1, 401)
        roots = []
        for a, b in zip(grid[:-1], grid[1:]):
            if f(a) * f(b) <= 0:
                roots.append(float(mpmath.findroot(f, (a, b), solver="anderson")))
        return sorted(set(round(r, 12) for r in roots))


# -- grid and units ---------------------------------------------------------------------------------

def test_units_tile_the_grid_exactly():
    shape, block = (7, 5, 3), (3, 5, 2)
    cover = np.zeros(shape, dtype=int)
    for u in plan_units(shape, block):
        cover[u] += 1
    assert (cover == 1).all()


def test_option_lists_become_dimensions_and_bad_values_are_named():
    m = CurieWeiss()
    g = make_grid(m, {"beta": np.array([1.0, 2.0]), "h": 0.0, "tol": 1e-9})
    assert g.dims == ("beta",) and g.scalars == {"h": 0.0} and g.options["tol"] == 1e-9
    with pytest.raises(ValueError, match="beta"):
        make_grid(m, {"beta": np.array([-1.0, 2.0]), "h": 0.0})
    ps = __import__("derive.models", fromlist=["get"]).get("positional-semantic")
    g = make_grid(ps, {"alpha": np.array([1.0]), "omega": 0.3, "sigma": 0.5, "lam": 0.01,
                       "branch": ["positional", "semantic"]})
    assert g.dims == ("alpha", "branch") and list(g.coords["branch"]) == ["positional", "semantic"]
    with pytest.raises(ValueError, match="branch"):
        make_grid(ps, {"alpha": 1.0, "omega": 0.3, "sigma": 0.5, "lam": 0.01, "branch": ["nope"]})


def test_sweep_equals_one_shot_solve():
    tau, alpha = np.linspace(0.2, 0.9, 9), np.geomspace(1, 50, 7)
    ds = sweep("icl-linear-attention", tau=tau, alpha=alpha, chunk=10, progress=False, **ICL)
    ref = solve("icl-linear-attention", tau=tau, alpha=alpha, **ICL)
    for k in ("e_icl", "e_idg", "e_train"):
        np.testing.assert_array_equal(ds[k].values, ref[k].values)
    assert ds["finished"].values.all() and ds.attrs["summary"].startswith(
        "icl-linear-attention: 63/63 points converged, 0 not converged, 0 failed")


# -- fixed-point machinery on the Curie–Weiss toy -----------------------------------------------------

def test_multistart_finds_every_fixed_point_with_its_stability():
    beta = 2.0
    ds = sweep(CurieWeiss(), beta=beta, h=np.array([0.0, 0.1]), starts=8, seed=3, progress=False)
    for i, h in enumerate((0.0, 0.1)):
        exact = cw_roots(beta, h)
        n = int(ds["n_solutions"].values[i])
        found = ds["m"].values[i, :n]
        assert n == len({round(f, 8) for f in found})  # deduplicated
        for f in found:  # each is a true fixed point, stability = F'(m) = β(1 − m²)
            j = int(np.argmin([abs(f - r) for r in exact]))
            assert abs(f - exact[j]) < 1e-10
            k = list(found).index(f)
            assert ds["stability"].values[i, k] == pytest.approx(beta * (1 - exact[j] ** 2), abs=1e-6)
        stable = [r for r in exact if beta * (1 - r * r) < 1]
        assert all(any(abs(f - r) < 1e-10 for f in found) for r in stable)  # both stable branches
        assert np.isnan(ds["m"].values[i, n:]).all() and not ds["converged"].values[i, n:].any()


def test_continuation_follows_the_metastable_branch_to_its_spinodal():
    beta = 2.0
    ms = math.sqrt(1 - 1 / beta)
    h_s = beta * ms - math.atanh(ms)  # 0.53284...: the m < 0 branch ends here
    h = np.linspace(-0.6, 0.7, 27)
    cont = sweep(CurieWeiss(), beta=beta, h=h, init=[-0.9], continuation="h", progress=False)
    cold = sweep(CurieWeiss(), beta=beta, h=h, progress=False)  # default start m = 0.5
    m = cont["m"].values
    assert (m[h < h_s - 0.01] < 0).all() and (m[h > h_s + 0.01] > 0).all()
    # stability of the followed branch rises towards 1 at the spinodal
    lead = cont["stability"].values[h < h_s]
    assert np.all(np.diff(lead) > 0) and 0.7 < lead[-1] < 1
    np.testing.assert_allclose(lead, beta * (1 - m[h < h_s] ** 2), atol=1e-6)
    # on points where both land on the same fixed point, warm starts cost fewer iterations
    same = np.isclose(m, cold["m"].values, atol=1e-9)
    assert same.sum() >= 5
    assert cont["iterations"].values[same].sum() < cold["iterations"].values[same].sum()


def test_continuation_needs_a_fixed_point_model_and_a_swept_dimension():
    with pytest.raises(ValueError, match="fixed-point"):
        sweep("icl-linear-attention", tau=np.array([0.5]), alpha=1.0, continuation="tau", **ICL)
    with pytest.raises(ValueError, match="not a swept parameter"):
        sweep(CurieWeiss(), beta=np.array([2.0]), h=0.0, continuation="h")


def test_a_failing_unit_is_flagged_and_the_rest_goes_on(tmp_path):
    class Fragile(CurieWeiss):
        def evaluate(self, params, backend, **options):
            if np.any(np.asarray(params["h"]) > 0.45):
                raise FloatingPointError("boom")
            return super().evaluate(params, backend, **options)

    store = tmp_path / "fragile.zarr"
    ds = sweep(Fragile(), beta=2.0, h=np.linspace(0, 0.6, 7), chunk=1, store=store, progress=False)
    bad = ds["h"].values > 0.45
    assert (ds["status"].values[bad] == 6).all() and not ds["converged"].values[bad].any()
    assert ds["converged"].values[~bad].all() and ds.attrs["n_failed_units"] == 2
    assert "FloatingPointError" in ds.attrs["first_error"] and "2 failed" in ds.attrs["summary"]
    # failed points are not finished in the store: a rerun (same equations) retries exactly them
    ds2 = sweep(CurieWeiss(), beta=2.0, h=np.linspace(0, 0.6, 7), chunk=1, store=store, progress=False)
    assert ds2["converged"].values.all() and ds2.attrs["n_resumed"] == 5
    assert (ds2["sweep_run"].values == np.where(bad, 2, 1)).all()


# -- the store: resume, refusal, kill and restart ---------------------------------------------------

def test_store_resumes_and_refuses_other_equations_or_grids(tmp_path):
    store = tmp_path / "cw.zarr"
    h = np.linspace(-0.5, 0.5, 11)
    first = sweep(CurieWeiss(), beta=2.0, h=h, chunk=3, store=store, progress=False)
    again = sweep(CurieWeiss(), beta=2.0, h=h, chunk=3, store=store, progress=False)
    np.testing.assert_array_equal(first["m"].values, again["m"].values)
    assert again.attrs["n_resumed"] == 11 and again.attrs["n_computed"] == 0
    assert (again["sweep_run"].values == 1).all()  # nothing recomputed

    class Other(CurieWeiss):  # same name, different equations
        def programs(self):
            import sympy as sp
            from derive.codegen import Program
            progs = super().programs()
            b, hh, m = (sp.Symbol("beta", positive=True), sp.Symbol("h", real=True), sp.Symbol("m"))
            progs["map"] = Program("cw_map", (b, hh, m), ((sp.Symbol("m_new"), sp.tanh(b * m + 2 * hh)),),
                                   (sp.Symbol("m_new"),))
            return progs

    with pytest.raises(StoreMismatchError, match="other equations"):
        sweep(Other(), beta=2.0, h=h, chunk=3, store=store, progress=False)
    with pytest.raises(StoreMismatchError, match="another grid"):
        sweep(CurieWeiss(), beta=2.0, h=h[:-1], chunk=3, store=store, progress=False)
    with pytest.raises(StoreMismatchError, match="another grid"):
        sweep(CurieWeiss(), beta=2.0, h=h, chunk=3, store=store, progress=False, tol=1e-8)


_KILL_SCRIPT = textwrap.dedent("""
    import sys, time
    import numpy as np
    from derive import models
    from derive.sweep import sweep

    class Slowed(type(models.get("icl-linear-attention"))):  # same name and equations, slower
        def evaluate(self, params, backend, **options):
            time.sleep(0.05)
            return super().evaluate(params, backend, **options)

    sweep(Slowed(), store=sys.argv[1], tau=np.linspace(0.1, 0.9, 40), alpha=np.geomspace(1, 100, 30),
          kappa=1.0, lam=1e-3, rho=0.01, chunk=20, progress=False)
""")
GRID = dict(tau=np.linspace(0.1, 0.9, 40), alpha=np.geomspace(1, 100, 30))


def test_killed_sweep_resumes_without_losing_a_finished_point(tmp_path):
    import xarray as xr

    store = tmp_path / "killed.zarr"
    script = tmp_path / "run.py"
    script.write_text(_KILL_SCRIPT)
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, str(script), str(store)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    done_before = 0
    deadline = time.time() + 120
    try:
        while time.time() < deadline and proc.poll() is None:
            time.sleep(0.3)
            if (store / "finished").exists():
                try:
                    done_before = int(xr.open_zarr(store, consolidated=False)["finished"].values.sum())
                except Exception:  # noqa: BLE001 - the store is being written
                    continue
                if done_before >= 200:
                    break
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the sweep finished before it could be killed"
    snap = xr.open_zarr(store, consolidated=False).load()
    done = snap["finished"].values
    lock = tmp_path / "killed.zarr.lock"
    assert json.loads(lock.read_text())["pid"] == proc.pid  # a stale lock: taken over below
    assert 200 <= done.sum() < done.size
    # resume: finished points are kept (run 1), the others computed (run 2), nothing lost
    ds = sweep("icl-linear-attention", store=store, chunk=20, progress=False, **GRID, **ICL)
    assert ds["finished"].values.all() and ds.attrs["n_resumed"] == int(done.sum())
    assert (ds["sweep_run"].values[done] == 1).all() and (ds["sweep_run"].values[~done] == 2).all()
    np.testing.assert_array_equal(ds["e_icl"].values[done], snap["e_icl"].values[done])
    ref = solve("icl-linear-attention", **GRID, **ICL)
    np.testing.assert_array_equal(ds["e_icl"].values, ref["e_icl"].values)
    assert not lock.exists()
    from typer.testing import CliRunner

    from derive.cli import app
    out = CliRunner().invoke(app, ["inspect", str(store)])
    assert out.exit_code == 0 and f"finished: {done.size}/{done.size} points over 2 run(s)" in out.output


def test_a_store_in_use_by_a_live_process_is_refused(tmp_path):
    from derive.store import StoreLockedError

    store = tmp_path / "busy.zarr"
    lock = tmp_path / "busy.zarr.lock"
    lock.write_text(str(os.getppid()))  # a live process (our parent)
    with pytest.raises(StoreLockedError, match="being written by process"):
        sweep(CurieWeiss(), beta=2.0, h=np.array([0.0, 0.1]), store=store, progress=False)
    assert lock.read_text() == str(os.getppid())  # not ours to remove


# -- Dask ------------------------------------------------------------------------------------------

def test_two_worker_dask_cluster_ships_kernels_as_source(tmp_path):
    distributed = pytest.importorskip("distributed")
    tau, alpha = np.linspace(0.2, 0.9, 12), np.geomspace(1, 50, 10)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster, distributed.Client(cluster) as client:
        ds = sweep("icl-linear-attention", tau=tau, alpha=alpha, chunk=15, client=client,
                   store=tmp_path / "dask.zarr", progress=False, **ICL)

        def kernels_were_shipped() -> list[bool]:  # on the worker: kernels cached, SymPy never run
            from derive import models
            m = models.get("icl-linear-attention")
            return ["_kernels" in m.__dict__, "_programs" not in m.__dict__]

        on_workers = client.run(kernels_were_shipped)
    assert ds.attrs["workers"] == 2
    assert all(v == [True, True] for v in on_workers.values())
    ref = solve("icl-linear-attention", tau=tau, alpha=alpha, **ICL)
    np.testing.assert_array_equal(ds["e_icl"].values, ref["e_icl"].values)


def test_kernel_bundle_rejects_tampered_source():
    from derive import models
    from derive.distributed import KernelBundle, KernelMismatchError, install_kernels, kernel_bundle

    m = models.get("icl-linear-attention")
    b = kernel_bundle(m, "1.0")
    name, rec = next(iter(b.programs.items()))
    fn, i, o, key, src, sha = rec[:6]
    bad = KernelBundle(b.model, b.equations_sha256, "1.0",
                       {**b.programs, name: (fn, i, o, key, src + "\n#", sha) + tuple(rec[6:])})
    fresh = type(m)()
    with pytest.raises(KernelMismatchError, match="SHA-256"):
        install_kernels(fresh, bad, "1.0")
    with pytest.raises(KernelMismatchError, match="version"):
        install_kernels(type(m)(), b, "2.0")


def test_option_dependent_kernels_are_hashed_and_shipped():
    """positional-semantic builds other equations for other (L, r): the sweep identity and the
    shipped bundle follow the options, and installing the bundle needs no SymPy derivation."""
    from derive import models
    from derive.distributed import install_kernels, kernel_bundle

    m = models.get("positional-semantic")
    assert m.equations_hash_for({}) == m.equations_hash
    assert m.equations_hash_for({"r": 2}) != m.equations_hash
    b = kernel_bundle(m, "1.0", {"r": 2})
    fresh = type(m)()
    install_kernels(fresh, b, "1.0", {"r": 2})
    g = fresh.general(2, 2)
    names = {f"general_L2_r2_{n}" for n in m._GENERAL_KERNELS}
    assert names <= {k[0] for k in fresh.registry.kernels}  # installed in the model's registry
    assert all(g.kernel(n).key == b.programs[f"general_L2_r2_{n}"][3] for n in m._GENERAL_KERNELS)
    assert "_programs" not in g._kernels  # the generated kernels came from the bundle
