"""``derive.solve``: one call for every grid model, returning a labelled ``xarray.Dataset``."""
from __future__ import annotations

import time
from typing import Any

import numpy as np
import xarray as xr

from numerics.backend import Backend, get_backend
from numerics.progress import progress_bar
from numerics.results import STATUS_MEANINGS

from . import models
from ._xr import install as _no_needless_dask_import
from .attrs import annotate
from .version import package_version

_no_needless_dask_import()  # building datasets from NumPy arrays does not import dask

__all__ = ["solve", "package_version"]

#: grid points evaluated per call of the model pipeline (bounds memory, drives the progress bar)
CHUNK = 1 << 20


def solve(name: str, *, backend: str | Backend = "numpy", progress: bool | None = None,
          chunk: int = CHUNK, store: Any = None, client: Any = None, continuation: str | None = None,
          starts: int = 1, time_limit: float | None = None, **params: Any) -> xr.Dataset:
    """Solve model ``name`` on the outer-product grid of its parameters.

    Every array-valued parameter (anything with ``ndim >= 1``) becomes a dimension, in
    the order given; scalars become attributes. Returns an ``xarray.Dataset`` with the
    model's observables (lower-case names of its spec) and, per point, ``converged``,
    ``residual``, ``iterations`` and ``status`` (codes in ``attrs['status_meanings']``).
    The dataset describes itself (CF conventions, :func:`derive.attrs.annotate`): every
    variable and coordinate has a ``long_name``, a LaTeX ``symbol`` and ``units`` where a
    quantity has them, and ``status`` has ``flag_values``/``flag_meanings``, so
    ``ds.e_icl.plot()`` labels its axes; netCDF and Zarr keep these attributes.
    Points that did not converge hold NaN and ``converged = False``; they are never
    silently filled. A point is converged only if every observable is finite and inside its
    declared physical range (``model.observable_info``); a numerical exception at some points
    marks those points ``failed`` instead of stopping the grid, and ``time_limit`` (seconds per
    chunk) marks a chunk that runs past it ``maxiter`` (see :meth:`derive.model.Model.evaluate_checked`). Keyword arguments that are model *options* (``model.options``,
    e.g. ``branch=``) are passed to the pipeline, not gridded, and recorded in ``attrs``.

    With ``store=`` (a resumable ``.zarr`` path), ``client=`` (a Dask client),
    ``continuation=`` or ``starts=`` the grid is solved by :func:`derive.sweep.sweep` (work
    units, resume, workers, warm starts, multi-start); see there.
    """
    if store is not None or client is not None or continuation is not None or starts != 1:
        from .sweep import sweep

        return sweep(name, store=store, backend=backend if isinstance(backend, str) else backend.name,
                     chunk=None if chunk == CHUNK else chunk, client=client,
                     continuation=continuation, starts=starts, progress=progress,
                     time_limit=time_limit, **params)
    if time_limit is not None and not (isinstance(time_limit, (int, float)) and not isinstance(time_limit, bool)
                                       and 0 < float(time_limit) < float("inf")):
        raise ValueError(f"time_limit must be None or a positive number of seconds, got {time_limit!r}")
    if isinstance(chunk, bool) or not isinstance(chunk, (int, np.integer)) or chunk < 1:
        raise ValueError(f"chunk must be a positive integer, got {chunk!r}")
    model = models.get(name)
    be = get_backend(backend)
    if "progress" in model.options and progress is not None:  # the model's own progress option
        params.setdefault("progress", progress)
    opts = model.validate_options({k: params.pop(k) for k in list(params) if k in model.options})
    checked = model.validate(params)
    dims = [k for k in params if np.ndim(params[k]) >= 1]
    coords = {k: np.asarray(checked[k], dtype=float).reshape(-1) for k in dims}
    shape = tuple(len(coords[k]) for k in dims)
    size = int(np.prod(shape)) if shape else 1
    mesh = np.meshgrid(*[coords[k] for k in dims], indexing="ij") if dims else []
    flat = {k: m.reshape(-1) for k, m in zip(dims, mesh)}
    for k, v in checked.items():
        if k not in flat:
            flat[k] = np.full(size, float(v))

    t0 = time.perf_counter()
    pieces: list[dict[str, np.ndarray]] = []
    show = progress if progress is not None else size > chunk
    starts = range(0, size, chunk)
    for s in progress_bar(starts, enabled=show, desc=f"solve {name}", unit="chunk"):
        block = {k: be.asarray(v[s:s + chunk]) for k, v in flat.items()}
        out = model.evaluate_checked(block, be, time_limit=time_limit, **opts)
        pieces.append({k: be.to_numpy(v) for k, v in out.items()})
    be.synchronize()
    elapsed = time.perf_counter() - t0
    merged = {k: np.concatenate([np.atleast_1d(p[k]) for p in pieces]) for k in pieces[0]}

    data_vars = {}
    for k, v in merged.items():
        arr = np.broadcast_to(v, (size,)).reshape(shape)
        data_vars[k] = (dims, arr)
    ds = xr.Dataset(data_vars, coords=coords)
    ds["converged"] = ds["converged"].astype(bool)
    ds["status"] = ds["status"].astype(np.int8)
    annotate(ds, model)  # CF attributes: long_name, symbol, units; status flag_values/meanings
    for k, ob in model.observable_info.items():  # declared, but not computed with these options
        if k in ds.data_vars and not ob.is_computed(opts):
            ds[k].attrs["comment"] = "not computed with these options (NaN)"
    ds.attrs.update(
        model=model.name,
        title=model.title,
        paper=model.paper,
        backend=be.name,
        equations_sha256=model.equations_hash,
        package_version=package_version(),
        n_points=size,
        n_converged=int(merged["converged"].sum()),
        seconds=elapsed,
        status_meanings=", ".join(f"{k}={v}" for k, v in sorted(STATUS_MEANINGS.items())),
    )
    for k, v in checked.items():
        if k not in dims:
            ds.attrs[k] = float(v)
    for k, v in opts.items():
        ds.attrs[f"option_{k}"] = v if isinstance(v, (int, float, str)) else repr(v)
    if time_limit is not None:
        ds.attrs["time_limit_seconds_per_chunk"] = float(time_limit)
    return ds
