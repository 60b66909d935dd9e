"""Keep xarray from importing dask where no dask array can exist (start-up, issue 14.1).

Building a :class:`xarray.Dataset` from NumPy arrays makes xarray test every variable with
``isinstance(x, dask.array.Array)``, and to get that class it imports dask and dask.array
(0.3 s on an idle core, more on a busy one) -- even in a process that never uses dask. Until
``dask.array`` has been imported by someone, no dask array can exist, so the answer is "no"
without importing it. :func:`install` puts a stand-in for dask in xarray's duck-array cache that
answers exactly that, and defers to xarray's own entry (importing dask) as soon as
``dask.array`` is in ``sys.modules`` or anything asks for dask's module, version or availability;
likewise for xarray's ``is_dask_collection``. Behaviour with dask (sweeps on a Dask cluster,
``xr.open_zarr`` with chunks) is unchanged: once dask is imported, xarray's own checks run.
"""
from __future__ import annotations

import sys
from typing import Any

__all__ = ["install"]


class _DaskProbe:
    def __init__(self, pycompat: Any) -> None:
        self._pc = pycompat
        self._real: Any = None

    def _load(self) -> Any:
        if self._real is None:
            self._real = self._pc.DuckArrayModule("dask")
        return self._real

    @property
    def type(self) -> tuple:
        if "dask.array" not in sys.modules:
            return ()
        return self._load().type

    @property
    def module(self) -> Any:
        return self._load().module

    @property
    def version(self) -> Any:
        return self._load().version

    @property
    def available(self) -> bool:
        return self._load().available


def install() -> None:
    """Install the stand-ins (idempotent; does nothing where xarray's internals differ): the
    duck-array cache entry above, and ``xarray.namedarray.utils.is_dask_collection`` answering
    ``False`` while dask is not imported (its own test imports dask to call
    ``dask.base.is_dask_collection``; a dask collection cannot exist before dask is imported)."""
    try:
        from xarray.namedarray import pycompat, utils
    except ImportError:  # pragma: no cover - another xarray layout: keep its behaviour
        return
    cache = getattr(pycompat, "_cached_duck_array_modules", None)
    if isinstance(cache, dict) and "dask" not in cache and hasattr(pycompat, "DuckArrayModule"):
        cache["dask"] = _DaskProbe(pycompat)
    orig = getattr(utils, "is_dask_collection", None)
    if orig is not None and not getattr(orig, "_attn_theory_probe", False):
        def is_dask_collection(x: object) -> bool:
            return "dask" in sys.modules and orig(x)

        is_dask_collection._attn_theory_probe = True  # type: ignore[attr-defined]
        is_dask_collection.__doc__ = orig.__doc__
        utils.is_dask_collection = is_dask_collection
