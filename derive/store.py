"""Writing and reading solve results as netCDF (no extra dependency: SciPy's netCDF3 writer)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import xarray as xr

__all__ = ["write_dataset", "read_dataset"]


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
