"""Sweeps at scale: a parameter grid solved in work units, streamed into a resumable store.

A sweep is the outer product of the swept parameters (float grids) and of option values given
as lists of strings (``branch=['positional', 'semantic']`` becomes a ``branch`` dimension). The
grid is tiled into rectangular *units* (≈ ``chunk`` points, one value of each option
dimension, the whole line along the ``continuation`` dimension). Each unit is a pure function
of its inputs (:func:`run_unit`), evaluated in-process or on Dask workers (kernels shipped as
source plus hash, :mod:`derive.distributed`), and written to a :class:`~derive.store.ZarrSweepStore`
as soon as it finishes: a killed sweep resumes where it stopped.

For fixed-point models (``model.state`` non-empty, see :class:`~derive.model.Model`):

* ``continuation=dim``: points are solved in order along ``dim``, each started from the
  previous converged fixed point (warm start), so a branch is followed through its
  metastable region up to its spinodal;
* ``starts=K``: every point is also solved from ``K − 1`` random states
  (``model.random_states``, seeded per unit); distinct converged fixed points are kept along a
  ``solution`` dimension (start order, duplicates removed), with ``n_solutions``;
* ``stability`` (default on): the leading eigenvalue of the Jacobian of the undamped map is
  stored with every fixed point.
"""
from __future__ import annotations

import hashlib
import json
import time
import traceback
from dataclasses import dataclass, field
from itertools import product
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import xarray as xr

from numerics.backend import get_backend
from numerics.phases import dedupe
from numerics.progress import progress_bar
from numerics.results import STATUS_MEANINGS, Status, fill_value

from . import models
from .attrs import annotate
from .model import Model
from .store import ZarrSweepStore
from .version import package_version

__all__ = ["SweepGrid", "make_grid", "plan_units", "run_unit", "sweep", "summary_line"]

#: variables every unit returns besides the model's observables
_BOOKKEEPING = ("converged", "residual", "iterations", "status")


def _package_version() -> str:
    return package_version()


@dataclass(frozen=True)
class SweepGrid:
    """The outer-product grid of a sweep.

    ``dims``: swept parameters (in the order given), then option dimensions; ``coords``: their
    values (float arrays, or str arrays for options); ``scalars``: fixed parameters;
    ``options``: fixed, validated options."""

    dims: tuple[str, ...]
    coords: Mapping[str, np.ndarray]
    scalars: Mapping[str, float]
    options: Mapping[str, Any]
    option_dims: tuple[str, ...] = ()

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(len(self.coords[d]) for d in self.dims)

    @property
    def size(self) -> int:
        return int(np.prod(self.shape)) if self.dims else 1

    def sha256(self, extra: Mapping[str, Any] = {}) -> str:
        """Hash of everything that determines the stored values (dims, coordinates, fixed
        parameters and options, and ``extra`` settings such as continuation and starts)."""
        h = hashlib.sha256()
        for d in self.dims:
            h.update(d.encode())
            c = np.asarray(self.coords[d])
            h.update("\x1f".join(map(str, c)).encode() if c.dtype.kind in "USO"
                     else c.astype(np.float64).tobytes())
        h.update(json.dumps({k: float(v) for k, v in sorted(self.scalars.items())}).encode())
        h.update(repr(sorted((k, _plain(v)) for k, v in self.options.items())).encode())
        h.update(repr(sorted((k, _plain(v)) for k, v in extra.items())).encode())
        return h.hexdigest()


def _plain(v: Any) -> Any:
    """A JSON/attribute-friendly form of an option value."""
    if isinstance(v, (bool, int, float, str)) or v is None:
        return v
    if isinstance(v, np.ndarray):
        return v.tolist()
    if isinstance(v, (list, tuple)):
        return [_plain(e) for e in v]
    return repr(v)


def make_grid(model: Model, params: Mapping[str, Any]) -> SweepGrid:
    """Split ``params`` into swept parameters, fixed parameters, option dimensions (an option
    given as a list of strings) and fixed options; validate every value."""
    params = dict(params)
    opt_in = {k: params.pop(k) for k in list(params) if k in model.options}
    option_dims = [k for k, v in opt_in.items()
                   if isinstance(v, (list, tuple)) and v and all(isinstance(e, str) for e in v)]
    for k in option_dims:
        for v in opt_in[k]:
            model.validate_options({k: v})
    fixed = model.validate_options({k: v for k, v in opt_in.items() if k not in option_dims})
    checked = model.validate(params)
    swept = [k for k in params if np.ndim(params[k]) >= 1]
    coords: dict[str, np.ndarray] = {k: np.asarray(checked[k], dtype=float).reshape(-1) for k in swept}
    for k in option_dims:
        coords[k] = np.asarray(list(opt_in[k]), dtype=object)  # vlen strings (stable in Zarr v3)
    scalars = {k: float(v) for k, v in checked.items() if k not in swept}
    return SweepGrid(tuple(swept + option_dims), coords, scalars,
                     {k: v for k, v in fixed.items() if k not in option_dims}, tuple(option_dims))


def _block_shape(grid: SweepGrid, chunk: int, continuation: str | None) -> tuple[int, ...]:
    """Unit block sizes: 1 along option dimensions, the whole line along ``continuation``,
    the rest filled from the last dimension until ≈ ``chunk`` points."""
    shape = grid.shape
    block = [1] * len(shape)
    budget = max(1, int(chunk))
    if continuation is not None:
        i = grid.dims.index(continuation)
        block[i] = shape[i]
        budget = max(1, budget // shape[i])
    for i in reversed(range(len(shape))):
        d = grid.dims[i]
        if d in grid.option_dims or d == continuation:
            continue
        block[i] = max(1, min(shape[i], budget))
        budget = max(1, budget // block[i])
    return tuple(block)


def plan_units(shape: tuple[int, ...], block: tuple[int, ...]) -> list[tuple[slice, ...]]:
    """The regular tiling of ``shape`` by ``block`` (edge units smaller), as index slices."""
    ranges = [range(0, n, b) for n, b in zip(shape, block)]
    return [tuple(slice(s, min(s + b, n)) for s, b, n in zip(starts, block, shape))
            for starts in product(*ranges)]


@dataclass
class UnitTask:
    """Everything one unit needs: plain data only (picklable without functions)."""

    index: int
    model: str
    params: dict[str, np.ndarray]  # block-shaped arrays for every model parameter
    options: dict[str, Any]
    backend: str
    continuation_axis: int | None
    starts: int
    seed: int
    equations_sha256: str
    bundle: Any = None  # a KernelBundle when run on a worker
    package_version: str = ""
    time_limit: float | None = None  # wall-clock budget per evaluation (Model.evaluate_checked)


@dataclass
class UnitResult:
    index: int
    values: dict[str, np.ndarray] = field(default_factory=dict)
    seconds: float = 0.0


def _evaluate(model: Model, be: Any, flat: Mapping[str, np.ndarray], options: Mapping[str, Any],
              init: np.ndarray | None, time_limit: float | None = None) -> dict[str, np.ndarray]:
    opts = dict(options)
    if init is not None:
        opts["init"] = init
    out = model.evaluate_checked({k: be.asarray(v) for k, v in flat.items()}, be,
                                 raise_if_all_failed=True, time_limit=time_limit, **opts)
    n = len(next(iter(flat.values())))
    res = {k: np.broadcast_to(np.asarray(be.to_numpy(v)), (n,)).copy() for k, v in out.items()}
    return _typed_flags(res)


#: stored types of the bookkeeping flags, the same for every model
FLAG_DTYPES = {"converged": np.dtype(bool), "status": np.dtype(np.int8),
               "iterations": np.dtype(np.int64)}


def _typed_flags(out: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """``converged`` bool, ``status`` int8, ``iterations`` int64 whatever the model returned
    (a float ``converged`` would fill unfinished points with NaN, which reads as True)."""
    for k, dt in FLAG_DTYPES.items():
        if k in out and out[k].dtype != dt:
            v = np.asarray(out[k])
            if v.dtype.kind == "f":
                v = np.where(np.isfinite(v), v, 0)
            out[k] = v.astype(dt)
    return out


def _state(model: Model, out: Mapping[str, np.ndarray]) -> np.ndarray:
    """``(n, k)`` converged states (NaN rows elsewhere)."""
    x = np.stack([np.asarray(out[s], dtype=float) for s in model.state], axis=1)
    x[~np.asarray(out["converged"], dtype=bool)] = np.nan
    return x


def _fill(dtype: np.dtype, name: str) -> Any:
    return fill_value(name, dtype, Status.NOT_COMPUTED)


def _multistart(model: Model, be: Any, flat: Mapping[str, np.ndarray], options: Mapping[str, Any],
                init: np.ndarray | None, starts: int, rng: np.random.Generator,
                time_limit: float | None = None) -> dict[str, np.ndarray]:
    """Solve from ``init`` and ``starts − 1`` random states; distinct converged fixed points
    along a trailing axis of length ``starts`` (start order), plus ``n_solutions``."""
    n = len(next(iter(flat.values())))
    outs = [_evaluate(model, be, flat, options, init, time_limit)]
    for _ in range(starts - 1):
        outs.append(_evaluate(model, be, flat, options, np.asarray(model.random_states(n, rng), float),
                              time_limit))
    states = np.stack([_state(model, o) for o in outs], axis=1)  # (n, starts, k)
    res = {k: np.stack([np.full(n, _fill(v.dtype, k), dtype=v.dtype)] * starts, axis=1)
           for k, v in outs[0].items()}
    n_sol = np.zeros(n, dtype=np.int16)
    for p in range(n):
        _, labels = dedupe(states[p], tol=1e-6)
        seen: set[int] = set()
        slot = 0
        for j, lab in enumerate(labels):
            if lab < 0 or lab in seen:
                continue
            seen.add(int(lab))
            for k in res:
                res[k][p, slot] = outs[j][k][p]
            slot += 1
        if slot == 0:  # nothing converged: report the first start's (flagged) outcome
            for k in res:
                res[k][p, 0] = outs[0][k][p]
        n_sol[p] = slot
    res["n_solutions"] = n_sol
    return res


def run_unit(task: UnitTask, model: Model | None = None) -> UnitResult:
    """Solve one unit (pure: the same task gives the same values wherever it runs).

    On a worker, ``task.bundle`` (kernel sources + hashes) is installed before solving."""
    t0 = time.perf_counter()
    if model is None:
        model = models.get(task.model)
    if task.bundle is not None:
        from .distributed import install_kernels

        install_kernels(model, task.bundle, _package_version(), task.options)
    be = get_backend(task.backend)
    rng = np.random.default_rng([task.seed, task.index])
    shape = next(iter(task.params.values())).shape
    ax = task.continuation_axis
    user_init = task.options.get("init")
    options = {k: v for k, v in task.options.items() if k != "init"}
    if model.state and user_init is not None:
        user_init = np.asarray(user_init, dtype=float)

    def solve(flat: Mapping[str, np.ndarray], init: np.ndarray | None) -> dict[str, np.ndarray]:
        if init is None and user_init is not None:
            init = user_init
        if task.starts > 1:
            return _multistart(model, be, flat, options, init, task.starts, rng, task.time_limit)
        return _evaluate(model, be, flat, options, init, task.time_limit)

    if ax is None:
        flat = {k: v.reshape(-1) for k, v in task.params.items()}
        out = solve(flat, None)
        values = {k: v.reshape(shape + v.shape[1:]) for k, v in out.items()}
    else:
        moved = {k: np.moveaxis(v, ax, 0) for k, v in task.params.items()}
        rest = moved[next(iter(moved))].shape[1:]
        steps, init = [], None
        for i in range(shape[ax]):
            flat = {k: v[i].reshape(-1) for k, v in moved.items()}
            out = solve(flat, init)
            first = {k: (v[:, 0] if v.ndim == 2 else v) for k, v in out.items()}
            prev = _state(model, first)
            # warm start from the previous point where it converged, the default elsewhere
            init = prev if np.isfinite(prev).all() or user_init is None else \
                np.where(np.isfinite(prev), prev, np.broadcast_to(user_init, prev.shape))
            steps.append(out)
        values = {k: np.moveaxis(np.stack([s[k].reshape(rest + s[k].shape[1:]) for s in steps]), 0, ax)
                  for k in steps[0]}
    return UnitResult(task.index, values, time.perf_counter() - t0)


def summary_line(ds: xr.Dataset) -> str:
    """``name: a/N points converged, b not converged (reasons), c failed; ... s on backend``."""
    st = np.asarray(ds["status"].values)
    conv = np.asarray(ds["converged"].values, dtype=bool)
    if "solution" in ds.dims:  # count a point as converged if any fixed point converged
        conv = conv.any(axis=-1)
        st = st[..., 0]
    failed = int((st == int(Status.FAILED)).sum())
    notconv = int((~conv).sum()) - failed
    reasons = {STATUS_MEANINGS[int(k)]: int(((st == k) & ~conv).sum()) for k in np.unique(st)
               if k not in (int(Status.OK), int(Status.FAILED)) and ((st == k) & ~conv).any()}
    why = f" ({', '.join(f'{k} {v}' for k, v in reasons.items())})" if reasons else ""
    a = ds.attrs
    extra = ""
    if a.get("n_resumed"):
        extra = f"; {a['n_resumed']} resumed from the store, {a['n_computed']} computed"
    where = a.get("backend", "?") + (f", {a['workers']} Dask workers" if a.get("workers") else "")
    return (f"{a.get('model', '?')}: {int(conv.sum())}/{conv.size} points converged, {notconv} not "
            f"converged{why}, {failed} failed{extra}; {a.get('seconds', float('nan')):.3g} s on {where}")


def _template(grid: SweepGrid, first: Mapping[str, np.ndarray], starts: int) -> xr.Dataset:
    data = {}
    for k, v in first.items():
        if k in grid.coords:  # an observable that names a dimension (e.g. 'branch')
            continue
        trail = v.shape[len(grid.dims):]
        dims = grid.dims + (("solution",) if trail else ())
        data[k] = (dims, np.full(grid.shape + trail, _fill(v.dtype, k), dtype=v.dtype))
    data["finished"] = (grid.dims, np.zeros(grid.shape, dtype=bool))
    data["sweep_run"] = (grid.dims, np.zeros(grid.shape, dtype=np.int16))
    coords = {d: grid.coords[d] for d in grid.dims}
    if starts > 1:
        coords["solution"] = np.arange(starts)
    return xr.Dataset(data, coords=coords)


def sweep(name: str | Model, *, store: str | Path | None = None, backend: str = "numpy",
          chunk: int | None = None, client: Any = None, continuation: str | None = None,
          starts: int = 1, seed: int = 0, progress: bool | None = None,
          time_limit: float | None = None, **params: Any) -> xr.Dataset:
    """Solve model ``name`` on the outer-product grid of ``params`` in units, optionally into a
    resumable Zarr ``store`` and on a Dask ``client``.

    Returns an ``xarray.Dataset`` like :func:`derive.solve` (observables, ``converged``,
    ``residual``, ``iterations``, ``status``) plus ``finished`` and ``sweep_run``; with
    ``starts > 1`` every variable gains a ``solution`` dimension and ``n_solutions`` counts
    distinct fixed points. ``attrs['summary']`` is the one-line summary (also printed when
    ``progress``). Units that raise are recorded as ``status = failed`` (not finished in the
    store, so a rerun retries them); other units go on.
    """
    model = models.get(name) if isinstance(name, str) else name
    if starts < 1:
        raise ValueError(f"starts must be >= 1, got {starts}")
    fixed_point = bool(model.state)
    if (continuation is not None or starts > 1) and not fixed_point:
        raise ValueError(f"model {model.name!r} has no fixed-point state: continuation and "
                         f"multi-start apply to fixed-point models only")
    if fixed_point and "stability" in model.options and "stability" not in params:
        params["stability"] = True
    grid = make_grid(model, params)
    if continuation is not None and continuation not in grid.dims[:len(grid.dims) - len(grid.option_dims)]:
        raise ValueError(f"continuation={continuation!r} is not a swept parameter; swept: "
                         f"{[d for d in grid.dims if d not in grid.option_dims]}")
    if chunk is None:
        chunk = 256 if fixed_point else 1 << 16
    version = _package_version()
    identity = {"model": model.name, "equations_sha256": model.equations_hash_for(grid.options),
                "grid_sha256": grid.sha256({"continuation": continuation, "starts": starts, "seed": seed})}

    st: ZarrSweepStore | None = ZarrSweepStore(store) if store is not None else None
    finished = np.zeros(grid.shape, dtype=bool)
    run = 1
    if st is not None:
        st.check_target()  # before any work: a non-store path is refused, untouched
        st.lock()
    try:
        return _sweep(model, grid, st, finished, run, identity, chunk, continuation, starts, seed,
                      backend, client, progress, version, time_limit)
    finally:
        if st is not None:
            st.unlock()


def _sweep(model: Model, grid: SweepGrid, st: ZarrSweepStore | None, finished: np.ndarray, run: int,
           identity: dict[str, str], chunk: int, continuation: str | None, starts: int, seed: int,
           backend: str, client: Any, progress: bool | None, version: str,
           time_limit: float | None = None) -> xr.Dataset:
    block = _block_shape(grid, chunk, continuation)
    problems: list = []
    if st is not None and st.exists():
        old = st.open(identity)
        block = tuple(json.loads(old.attrs["unit_block"]))
        run = int(old.attrs.get("sweep_runs", 0)) + 1
        st.set_attrs({"sweep_runs": run})  # before any write: a killed run still counts
    units = plan_units(grid.shape, block)
    if st is not None and st.exists():
        # every finished unit is read back against its digests; failing ones are recomputed
        finished, problems = st.verify(units)
        finished = finished.reshape(grid.shape)
        for pb in problems:
            st.mark_unfinished(pb.region)
        if problems:
            import warnings

            from .store import StoreIntegrityWarning

            warnings.warn(f"store {st.path}: {len(problems)} finished unit(s) failed their check "
                          f"and are recomputed: " + "; ".join(map(str, problems[:5]))
                          + (" ..." if len(problems) > 5 else ""), StoreIntegrityWarning, stacklevel=3)
    todo = [i for i, u in enumerate(units) if not finished[u].all()]
    n_resumed = int(finished.sum())

    bundle = None
    if client is not None:
        from .distributed import kernel_bundle

        bundle = kernel_bundle(model, version, grid.options)

    flat_all = _broadcast_params(grid)

    def task(i: int) -> UnitTask:
        u = units[i]
        opts = dict(grid.options)
        for d in grid.option_dims:
            opts[d] = str(grid.coords[d][u[grid.dims.index(d)].start])
        return UnitTask(i, model.name, {k: v[u] for k, v in flat_all.items()}, opts,
                        str(backend), grid.dims.index(continuation) if continuation else None,
                        starts, seed, identity["equations_sha256"], bundle, version, time_limit)

    mem: dict[str, np.ndarray] | None = None
    failed: dict[int, str] = {}
    t0 = time.perf_counter()
    show = progress if progress is not None else (len(todo) > 1)
    bar = progress_bar(total=sum(int(np.prod([s.stop - s.start for s in units[i]])) for i in todo),
                       enabled=bool(show and todo), desc=f"sweep {model.name}", unit="pt")

    def accept(res: UnitResult) -> None:
        nonlocal mem
        u = units[res.index]
        if st is not None:
            if not st.exists():
                tpl = _template(grid, {k: np.empty(grid.shape + v.shape[len(grid.dims):], v.dtype)
                                       for k, v in res.values.items()}, starts)
                tpl.attrs.update(_attrs(model, grid, identity, version, block, continuation, starts, seed))
                tpl.attrs["sweep_runs"] = run
                annotate(tpl, model)  # CF attributes, kept by the store
                st.create(tpl, dict(zip(grid.dims, block)), len(units))
            st.write_unit({d: s for d, s in zip(grid.dims, u)},
                          {k: v for k, v in res.values.items() if k not in grid.coords}, run,
                          res.index)
        else:
            if mem is None:
                tpl = _template(grid, {k: np.empty(grid.shape + v.shape[len(grid.dims):], v.dtype)
                                       for k, v in res.values.items()}, starts)
                mem = {k: tpl[k].values.copy() for k in tpl.data_vars}
            for k, v in res.values.items():
                if k in mem:
                    mem[k][u] = v
            mem["finished"][u] = True
            mem["sweep_run"][u] = run
        bar.update(int(np.prod([s.stop - s.start for s in u])))

    try:
        if client is None:
            for i in todo:
                try:
                    accept(run_unit(task(i), model))
                except Exception:  # noqa: BLE001 - recorded, reported, retried on resume
                    failed[i] = traceback.format_exc(limit=3)
        else:
            from distributed import as_completed

            futures = {client.submit(run_unit, task(i), pure=False): i for i in todo}
            for fut in as_completed(futures):
                i = futures[fut]
                if fut.status == "error":
                    failed[i] = repr(fut.exception())
                else:
                    accept(fut.result())
    finally:
        bar.close()
    elapsed = time.perf_counter() - t0

    if st is not None and st.exists():
        ds = st.load()
    else:
        if mem is None:  # every unit failed: an all-failed dataset
            raise RuntimeError(f"every unit of the sweep failed; first error:\n{next(iter(failed.values()))}")
        coords = {d: grid.coords[d] for d in grid.dims}
        if starts > 1:
            coords["solution"] = np.arange(starts)
        ds = xr.Dataset({k: ((grid.dims + (("solution",) if v.ndim > len(grid.dims) else ())), v)
                         for k, v in mem.items()}, coords=coords)
        ds.attrs.update(_attrs(model, grid, identity, version, block, continuation, starts, seed))
        ds.attrs["sweep_runs"] = run
    order = [k for k in (*model.observables, *_BOOKKEEPING, "n_solutions", "finished", "sweep_run")
             if k in ds.data_vars]
    ds = ds[order + sorted(k for k in ds.data_vars if k not in order)]
    for i in failed:  # failed units: flagged in the returned dataset (not finished in the store)
        u = units[i]
        ds["status"][u] = int(Status.FAILED)
        ds["converged"][u] = False
    ds.attrs.update(backend=str(backend), seconds=elapsed, n_points=grid.size,
                    n_resumed=n_resumed, n_computed=grid.size - n_resumed - sum(
                        int(np.prod([s.stop - s.start for s in units[i]])) for i in failed),
                    n_failed_units=len(failed), n_units_rechecked_bad=len(problems),
                    workers=len(client.scheduler_info().get("workers", {})) if client is not None else 0)
    if failed:
        ds.attrs["first_error"] = next(iter(failed.values()))[-2000:]
    ds.attrs["summary"] = summary_line(ds)
    annotate(ds, model)
    if st is not None and st.exists():
        st.set_attrs({"summary": ds.attrs["summary"]})
    if show:
        print(ds.attrs["summary"], flush=True)
    return ds


def _broadcast_params(grid: SweepGrid) -> dict[str, np.ndarray]:
    """Grid-shaped arrays of every model parameter (swept and fixed)."""
    swept = [d for d in grid.dims if d not in grid.option_dims]
    axes = {d: grid.dims.index(d) for d in swept}
    out = {}
    for d in swept:
        shape = [1] * len(grid.dims)
        shape[axes[d]] = len(grid.coords[d])
        out[d] = np.broadcast_to(np.asarray(grid.coords[d]).reshape(shape), grid.shape)
    for k, v in grid.scalars.items():
        out[k] = np.full(grid.shape, float(v))
    return out


def _attrs(model: Model, grid: SweepGrid, identity: Mapping[str, str], version: str,
           block: tuple[int, ...], continuation: str | None, starts: int, seed: int) -> dict[str, Any]:
    a: dict[str, Any] = dict(identity)
    a.update(title=model.title, paper=model.paper, package_version=version,
             unit_block=json.dumps(list(block)), continuation=continuation or "",
             starts=starts, sweep_seed=seed,
             status_meanings=", ".join(f"{k}={v}" for k, v in sorted(STATUS_MEANINGS.items())),
             state=", ".join(model.state))
    for k, v in grid.scalars.items():
        a[k] = float(v)
    for k, v in grid.options.items():
        a[f"option_{k}"] = json.dumps(_plain(v))
    return a
