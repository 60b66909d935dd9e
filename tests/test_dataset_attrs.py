"""Self-describing datasets (issue 14, item 3): CF attributes on every variable and coordinate,
kept by netCDF and Zarr; plots label themselves."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pytest

import derive
from derive import models
from derive.attrs import variable_label
from derive.store import read_dataset, write_dataset

ICL = dict(kappa=0.5, rho=0.01, lam=0.0)


@pytest.fixture(scope="module")
def ds():
    return derive.solve("icl-linear-attention", tau=np.geomspace(0.1, 10, 6), alpha=np.array([1.0, 10.0]),
                        **ICL)


def _check_attrs(ds) -> None:
    for name in ds.variables:
        a = ds[name].attrs
        assert a.get("long_name"), f"{name} has no long_name"
        assert a.get("units") not in ("1", ""), f"{name}: dimensionless units are omitted (CF)"
    for name in ("tau", "alpha"):
        assert ds[name].attrs["symbol"] == {"tau": r"\tau", "alpha": r"\alpha"}[name]
        assert "context" in ds[name].attrs["long_name"]
    st = ds["status"].attrs
    vals = [int(v) for v in np.atleast_1d(st["flag_values"])]
    words = st["flag_meanings"].split()
    assert len(vals) == len(words) and vals[0] == 0 and words[0] == "ok" and "maxiter" in words
    assert ds.attrs["Conventions"].startswith("CF-")


def test_solve_attrs(ds) -> None:
    _check_attrs(ds)
    e = ds["e_icl"].attrs
    assert e["long_name"] != "e_icl" and "error" in e["long_name"].lower()
    assert "ICL" in e["symbol"]


def test_plot_labels_itself(ds) -> None:
    """``ds.e_icl.plot()``: the y label is the long_name (xarray adds ``[units]`` when set)."""
    import matplotlib.pyplot as plt

    fig = plt.figure()
    ds["e_icl"].sel(alpha=10.0).plot()
    ax = fig.axes[0]
    assert ax.get_ylabel().replace("\n", " ") == ds["e_icl"].attrs["long_name"]
    assert ax.get_xlabel().replace("\n", " ") == ds["tau"].attrs["long_name"]
    plt.close(fig)
    assert variable_label(ds["e_icl"]).startswith(ds["e_icl"].attrs["long_name"] + " ($")


def test_netcdf_round_trip(ds, tmp_path) -> None:
    write_dataset(ds, tmp_path / "x.nc")
    back = read_dataset(tmp_path / "x.nc")
    for name in ds.variables:
        for k, v in ds[name].attrs.items():
            assert np.array_equal(np.asarray(back[name].attrs[k]), np.asarray(v)), (name, k)
    assert back["converged"].dtype == bool


def test_zarr_store_keeps_attrs(tmp_path) -> None:
    pytest.importorskip("zarr")
    import xarray as xr

    out = derive.solve("icl-linear-attention", tau=np.array([0.5, 2.0]), alpha=np.array([1.0, 10.0]),
                       store=tmp_path / "s.zarr", chunk=2, progress=False, **ICL)
    back = xr.open_zarr(tmp_path / "s.zarr", consolidated=False)
    _check_attrs(back[list(out.data_vars)])
    for name in out.variables:
        assert back[name].attrs["long_name"] == out[name].attrs["long_name"]
    assert back["finished"].attrs["long_name"] and back["sweep_run"].attrs["long_name"]


@pytest.mark.parametrize("name", models.names())
def test_every_observable_is_described(name: str) -> None:
    """Every observable of every model: long_name and a LaTeX symbol that mathtext renders."""
    from matplotlib.mathtext import MathTextParser

    m = models.get(name)
    info = getattr(m, "observable_info", {})
    parser = MathTextParser("path")
    for ob in m.observables:
        assert ob in info, f"{name}: observable {ob!r} is not declared in observable_info"
        d = info[ob]
        assert d.long_name and d.long_name != ob, f"{name}.{ob}: no long_name"
        assert d.symbol, f"{name}.{ob}: no symbol"
        parser.parse(f"${d.symbol}$")  # raises ValueError on LaTeX mathtext cannot render
    for p in m.parameters:
        assert p.description, f"{name}: parameter {p.name} has no description"
        parser.parse(f"${p.latex}$")
