"""Self-describing result datasets: CF-convention attributes on every variable and coordinate.

Every data variable and coordinate of the dataset returned by :func:`derive.solve` (and of the
sweep store) carries

* ``long_name``: what the number is, in words (``xarray``'s plots use it as the axis label,
  with ``units`` in brackets);
* ``symbol``: its LaTeX symbol, without dollars (e.g. ``e_{\\mathrm{ICL}}``), as in the model's
  equations;
* ``units``: only where a quantity has units. The theory's quantities are ratios or normalised
  overlaps; following the CF conventions, a dimensionless quantity has no ``units`` attribute
  (rather than ``"1"``, which xarray would print as ``[1]``);
* ``status``: ``flag_values`` / ``flag_meanings`` (CF flags) for the per-point outcome codes.

Coordinates take their metadata from the model's :class:`~derive.params.Parameter` (``latex``,
``description``), observables from :attr:`derive.model.Model.observable_info`
(:class:`~derive.declarations.Observable`). The attributes survive netCDF and Zarr round trips
(strings and small numeric arrays only).
"""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from numerics.results import STATUS_MEANINGS

__all__ = ["annotate", "BOOKKEEPING_ATTRS", "variable_label"]

#: attributes of the per-point bookkeeping variables every solve and sweep returns
BOOKKEEPING_ATTRS: dict[str, dict[str, str]] = {
    "converged": {
        "long_name": "converged (solver tolerance met, every observable finite and in range)",
    },
    "residual": {
        "long_name": "final residual (undamped fixed-point map, or |f| of a root)",
    },
    "iterations": {"long_name": "solver iterations"},
    "status": {"long_name": "outcome code of the point"},
    "n_solutions": {"long_name": "distinct converged fixed points (multi-start)"},
    "finished": {"long_name": "point finished and written to the store"},
    "sweep_run": {"long_name": "sweep run that computed the point (1, 2, ... on resume)"},
    "solution": {"long_name": "fixed point index (multi-start, in start order)"},
    "unit_sha256": {"long_name": "SHA-256 digest of each variable of each work unit (store integrity)"},
}

_DIMENSIONLESS = ("", "1")


def _clean(attrs: Mapping[str, Any]) -> dict[str, Any]:
    """Drop empty values and dimensionless ``units``."""
    out = {}
    for k, v in attrs.items():
        if v is None or (isinstance(v, str) and not v):
            continue
        if k == "units" and str(v) in _DIMENSIONLESS:
            continue
        out[k] = v
    return out


def _observable_attrs(model: Any, name: str) -> dict[str, Any]:
    info = getattr(model, "observable_info", {}) or {}
    ob = info.get(name)
    if ob is None:
        return {"long_name": name.replace("_", " ")}
    return _clean({"long_name": getattr(ob, "long_name", "") or name.replace("_", " "),
                   "symbol": getattr(ob, "symbol", ""), "units": getattr(ob, "units", "")})


def _option_attrs(model: Any, name: str) -> dict[str, Any]:
    info = getattr(model, "option_info", {}) or {}
    opt = info.get(name)
    desc = getattr(opt, "description", "") if opt is not None else ""
    return {"long_name": desc or f"option {name}"}


def annotate(ds: Any, model: Any) -> Any:
    """Set the CF attributes of every coordinate and data variable of ``ds`` (in place; also
    returned). Existing attributes other than these are kept; variables unknown to the model
    get a ``long_name`` made from their name."""
    params = {p.name: p for p in getattr(model, "parameters", ())}
    for name in list(ds.variables):
        var = ds[name]
        if name in params:
            p = params[name]
            new = _clean({"long_name": p.description or name, "symbol": p.latex})
        elif name in BOOKKEEPING_ATTRS:
            new = dict(BOOKKEEPING_ATTRS[name])
        elif name in getattr(model, "observables", ()) or name in (getattr(model, "observable_info", {}) or {}):
            new = _observable_attrs(model, name)  # (an observable may share an option's name)
        elif name in getattr(model, "options", {}) or name in (getattr(model, "option_info", {}) or {}):
            new = _option_attrs(model, name)
        else:
            new = _observable_attrs(model, name)
        if name == "status":
            codes = sorted(STATUS_MEANINGS)
            new["flag_values"] = np.array(codes, dtype=np.int8)
            new["flag_meanings"] = " ".join(STATUS_MEANINGS[k] for k in codes)
        var.attrs.update(new)
    ds.attrs.setdefault("Conventions", "CF-1.10")
    if getattr(model, "paper", ""):
        ds.attrs.setdefault("references", model.paper)
    return ds


def variable_label(da: Any, symbol: bool = True) -> str:
    """An axis label from a variable's attributes: ``long_name ($symbol$) [units]`` (falls back
    to the variable's name)."""
    a = da.attrs
    s = str(a.get("long_name") or da.name or "")
    if symbol and a.get("symbol"):
        s += f" (${a['symbol']}$)"
    if a.get("units") and str(a["units"]) not in _DIMENSIONLESS:
        s += f" [{a['units']}]"
    return s
