"""Persisting results: one-shot netCDF files (SciPy's netCDF3 writer, no extra dependency)
and the resumable Zarr store of sweeps (:class:`ZarrSweepStore`)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import xarray as xr

__all__ = ["write_dataset", "read_dataset", "ZarrSweepStore", "StoreMismatchError", "StoreLockedError"]


def write_dataset(ds: xr.Dataset, path: str | Path) -> Path:
    """Write ``ds`` to netCDF. Booleans are stored as int8 (netCDF3 has no bool) and
    restored by :func:`read_dataset`; infinite coordinates (κ = ∞) are kept."""
    p = Path(path)
    out = ds.copy()
    for name, var in out.data_vars.items():
        if var.dtype == bool:
            out[name] = var.astype(np.int8)
            out[name].attrs["dtype"] = "bool"
    out.to_netcdf(p, engine="scipy")
    return p


def read_dataset(path: str | Path) -> xr.Dataset:
    ds = xr.load_dataset(path, engine="scipy")
    for name, var in ds.data_vars.items():
        if var.attrs.get("dtype") == "bool":
            ds[name] = var.astype(bool)
    return ds


# -- resumable sweep store (Zarr) ----------------------------------------------------------------

class StoreMismatchError(ValueError):
    """An existing sweep store was written for other equations, grid or settings: refused."""


class StoreLockedError(RuntimeError):
    """Another live process is writing this sweep store."""


def _alive(pid: int) -> bool:
    import os

    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


#: attributes that must agree between a store and the sweep resuming into it
IDENTITY_ATTRS = ("model", "equations_sha256", "grid_sha256")


def _zarr():
    try:
        import zarr  # noqa: F401
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise ImportError("a .zarr sweep store needs zarr: pip install 'attention-theory[sweep]'") from exc


class ZarrSweepStore:
    """A sweep persisted to Zarr, one chunk per work unit, written as each unit finishes.

    Every variable has the sweep's dimensions (plus ``solution`` for multi-start). The boolean
    ``finished`` is written *after* a unit's values (each chunk file is replaced atomically), so a
    process killed at any moment leaves every point either finished with its values or not
    finished; a restarted sweep recomputes exactly the unfinished units. ``sweep_run`` records
    which run (1, 2, ...) computed each point. A store whose identity attributes
    (:data:`IDENTITY_ATTRS`: model, equations hash, grid) differ from the sweep's is refused.
    """

    def __init__(self, path: str | Path) -> None:
        _zarr()
        self.path = Path(path)

    def exists(self) -> bool:
        return (self.path / "zarr.json").exists() or (self.path / ".zgroup").exists()

    def open(self, identity: dict[str, str]) -> tuple[xr.Dataset, np.ndarray]:
        """The stored dataset (lazy) and its ``finished`` mask, after the identity check."""
        ds = xr.open_zarr(self.path, consolidated=False)
        for key in IDENTITY_ATTRS:
            have, want = ds.attrs.get(key), identity.get(key)
            if have != want:
                what = {"model": "another model",
                        "equations_sha256": "other equations (the model's generated kernels differ)",
                        "grid_sha256": "another grid or settings (dimensions, coordinates, fixed "
                                       "parameters, options, continuation, starts or seed)"}[key]
                raise StoreMismatchError(
                    f"store {self.path} was written for {what}: its {key} is {have!r}, this "
                    f"sweep's is {want!r}; refusing to mix results (use a new store path, or "
                    f"delete the old one)")
        return ds, np.asarray(ds["finished"].values, dtype=bool)

    def create(self, template: xr.Dataset, chunks: dict[str, int]) -> None:
        """Write the template (coordinates, attributes, fill values) with unit-aligned chunks."""
        enc = {}
        for name, var in template.data_vars.items():
            enc[name] = {"chunks": tuple(chunks.get(d, template.sizes[d]) for d in var.dims)}
        template.to_zarr(self.path, mode="w", encoding=enc, consolidated=False, zarr_format=3)

    def write_unit(self, region: dict[str, slice], values: dict[str, np.ndarray], run: int) -> None:
        """Write one unit's values, then mark its points finished (in that order). Writes go
        straight to the Zarr arrays (chunk-aligned: each chunk file is replaced atomically)."""
        g = self._group()
        sl = tuple(region.values())
        for name, v in values.items():
            g[name][sl] = v
        shape = tuple(s.stop - s.start for s in sl)
        g["sweep_run"][sl] = np.full(shape, run, dtype=np.int16)
        g["finished"][sl] = np.ones(shape, dtype=bool)

    def _group(self):
        import zarr

        if getattr(self, "_g", None) is None:
            self._g = zarr.open_group(str(self.path), mode="r+")
        return self._g

    def set_attrs(self, attrs: dict) -> None:
        self._group().attrs.update(attrs)

    def lock(self) -> None:
        """Claim the store for this process (the file ``<store>.lock`` beside it holds the PID).
        A lock whose process is gone (a killed sweep) is stale and taken over; a live one is an
        error, so two sweeps never write the same store at once."""
        import os

        f = self.lock_file
        f.parent.mkdir(parents=True, exist_ok=True)
        if f.exists():
            try:
                pid = int(f.read_text().strip() or 0)
            except ValueError:
                pid = 0
            if pid and pid != os.getpid() and _alive(pid):
                raise StoreLockedError(f"store {self.path} is being written by process {pid}; "
                                       f"wait for it (or kill it, then rerun to resume)")
        f.write_text(str(os.getpid()))

    def unlock(self) -> None:
        self.lock_file.unlink(missing_ok=True)

    @property
    def lock_file(self) -> Path:
        return self.path.with_name(self.path.name + ".lock")

    def load(self) -> xr.Dataset:
        return xr.open_zarr(self.path, consolidated=False).load()
