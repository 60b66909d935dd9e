"""Figures straight from result files: ``attn-theory plot FILE`` (what ``solve`` and sweeps write).

The figure is read from the dataset's own CF attributes (:mod:`derive.attrs`): axis labels are
``long_name $symbol$ [units]``, the title names the model and its fixed parameters. Two kinds:

* **lines**: an observable against one grid dimension (``x``), one line per value of a second
  (``hue``);
* **map**: a heat map (``pcolormesh`` on cell edges, with a colour bar) over two dimensions.

Points that did not converge are never hidden: on lines they are open red circles at their value
(or red crosses on the bottom edge where the value is NaN, as the solver leaves it); on maps their
cells are hatched red. A coordinate that is a geometric grid (``1e-3:1e3:61:log``, ``1,10,100``)
or spans more than three decades gets a log axis. Further dimensions are fixed at their first
value unless chosen with ``sel`` (the title says which).

Matplotlib is imported only when a figure is drawn.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

__all__ = ["PlotError", "load", "plot", "plot_file", "choose_variables", "is_geometric"]

#: per-point bookkeeping: not plotted by default
_BOOKKEEPING = ("converged", "residual", "iterations", "status", "n_solutions", "finished",
                "sweep_run", "unit_sha256")
#: above this many values, a second dimension is drawn as a heat map rather than as lines
MAX_LINES = 10


class PlotError(ValueError):
    """A request the dataset cannot satisfy (unknown variable or dimension, nothing to plot)."""


def load(path: str | Path) -> Any:
    """The dataset in ``path``: a netCDF file written by ``attn-theory solve -o x.nc`` or a sweep
    store ``x.zarr`` (loaded into memory)."""
    import xarray as xr

    p = Path(path)
    if not p.exists():
        raise PlotError(f"no file {p}")
    if p.suffix == ".zarr" or p.is_dir():
        ds = xr.open_zarr(p, consolidated=False)
        ds = ds.drop_vars([v for v in ("unit_sha256",) if v in ds.variables]).load()
    else:
        from .store import read_dataset

        try:
            ds = read_dataset(p)
        except Exception as exc:  # noqa: BLE001 - any unreadable file: say what it is
            raise PlotError(f"{p} is not a netCDF file written by attn-theory solve "
                            f"({type(exc).__name__}: {exc})") from None
    if "converged" in ds and ds["converged"].dtype != bool:
        ds["converged"] = ds["converged"].astype(bool)
    return ds


def is_geometric(values: Any) -> bool:
    """Positive values that form a geometric progression (≥ 3 of them, not also arithmetic), or
    that span more than three decades: these get a log axis."""
    try:
        c = np.asarray(values, dtype=float).reshape(-1)
    except (TypeError, ValueError):
        return False
    c = c[np.isfinite(c)]
    if c.size < 2 or np.any(c <= 0):
        return False
    if c.max() / c.min() > 1e3:
        return True
    if c.size < 3:
        return False
    r, d = np.diff(np.log(c)), np.diff(c)
    return bool(np.allclose(r, r[0], rtol=1e-6, atol=1e-12) and not np.allclose(d, d[0], rtol=1e-6))


def choose_variables(ds: Any, var: Sequence[str] | str | None = None) -> list[str]:
    """``var`` checked against the dataset (comma lists accepted), or by default the first
    observable that holds a finite value."""
    names = [v for v in ds.data_vars]
    plottable = [v for v in names if ds[v].dtype.kind in "fiub"]
    if var:
        wanted = [s.strip() for v in ([var] if isinstance(var, str) else var) for s in v.split(",")
                  if s.strip()]
        for w in wanted:
            if w not in names:
                obs = [v for v in plottable if v not in _BOOKKEEPING]
                raise PlotError(f"no variable {w!r} in this dataset; its observables are {obs} "
                                f"(and {[v for v in plottable if v in _BOOKKEEPING]})")
            if w not in plottable:
                raise PlotError(f"variable {w!r} is not numeric ({ds[w].dtype}); cannot plot it")
        return wanted
    try:  # the model's own order (its first observable is its headline quantity)
        from . import models

        order = list(models.get(str(ds.attrs.get("model"))).observables)
    except Exception:  # noqa: BLE001 - a file from another version: the file's order
        order = []
    plottable.sort(key=lambda v: order.index(v) if v in order else len(order))
    for v in plottable:
        if v in _BOOKKEEPING:
            continue
        vals = np.asarray(ds[v].values, dtype=float)
        if np.isfinite(vals).any():
            return [v]
    obs = [v for v in plottable if v not in _BOOKKEEPING]
    if obs:  # every observable is NaN: still draw the first (its non-converged marks say why)
        return [obs[0]]
    raise PlotError("the dataset has no observable to plot")


def _label(da: Any, name: str | None = None, symbol: bool = True, wrap: int = 0) -> str:
    """``long_name ($symbol$) [units]``; with ``wrap``, the words of the long name are wrapped
    at that width (never inside the ``$...$`` symbol)."""
    import textwrap

    from .attrs import variable_label

    s = variable_label(da, symbol=symbol) or str(name or da.name)
    if not wrap or len(s) <= wrap:
        return s
    base = variable_label(da, symbol=False)
    tail = s[len(base):] if s.startswith(base) else ""
    lines = textwrap.wrap(base if tail else s, wrap) or [s]
    if tail:  # the symbol (and units) on a line of their own
        lines.append(tail.strip())
    return "\n".join(lines)


def _fmt(v: Any) -> str:
    if isinstance(v, (str, np.str_)):
        return str(v)
    try:
        x = float(v)
    except (TypeError, ValueError):
        return str(v)
    if math.isinf(x):
        return "∞" if x > 0 else "-∞"
    return f"{x:.4g}"


def _symbol(ds: Any, name: str) -> str:
    """``$\\tau$`` from the coordinate's attributes (the name where there is none)."""
    if name in ds.variables and ds[name].attrs.get("symbol"):
        return f"${ds[name].attrs['symbol']}$"
    return name


def _fixed_parameters(ds: Any) -> str:
    """``κ = 0.5, ρ = 0.01, λ = 0`` from the dataset attributes (the model's parameters that are
    not dimensions), plus short string options."""
    parts = []
    params: list[tuple[str, str]] = []
    try:
        from . import models

        m = models.get(str(ds.attrs.get("model")))
        params = [(p.name, f"${p.latex}$") for p in m.parameters]
    except Exception:  # noqa: BLE001 - a file from another version: names instead of symbols
        params = []
    for name, sym in params:
        if name in ds.dims or name not in ds.attrs:
            continue
        parts.append(f"{sym} = {_fmt(ds.attrs[name])}")
    for k, v in ds.attrs.items():
        if not k.startswith("option_") or k[7:] in ds.dims:
            continue
        if isinstance(v, str):
            try:
                v = json.loads(v)
            except ValueError:
                pass
        if isinstance(v, str) and 0 < len(v) <= 16 and v not in ("None", "null"):
            parts.append(f"{k[7:]} = {v}")
    return ", ".join(parts)


def _edges(c: np.ndarray, log: bool) -> np.ndarray:
    """Cell edges around centres ``c`` (midpoints; geometric midpoints on a log axis)."""
    c = np.asarray(c, dtype=float)
    if c.size == 1:
        return np.array([c[0] * 0.9, c[0] * 1.1]) if log else np.array([c[0] - 0.5, c[0] + 0.5])
    t = np.log(c) if log else c
    mid = (t[1:] + t[:-1]) / 2
    e = np.concatenate([[t[0] - (mid[0] - t[0])], mid, [t[-1] + (t[-1] - mid[-1])]])
    return np.exp(e) if log else e


def _dims_of(ds: Any, var: str) -> list[str]:
    return [d for d in ds[var].dims if d != "solution"]


def _select(ds: Any, sel: Mapping[str, Any], keep: Sequence[str]) -> tuple[Any, list[str]]:
    """Fix every dimension not in ``keep``: by ``sel`` (nearest value for numbers) or at its first
    value; returns the reduced dataset and ``["sym = value", ...]`` for the title."""
    notes = []
    for d in list(ds.dims):
        if d in keep or d == "solution":
            continue
        if d in sel:
            v = sel[d]
            c = ds[d].values
            if c.dtype.kind in "fiu":
                try:
                    fv = float(v)
                except ValueError:
                    raise PlotError(f"--sel {d}={v}: {d} takes numbers") from None
                idx = int(np.nanargmin(np.abs(c.astype(float) - fv))) if np.isfinite(fv) else \
                    int(np.argmax(np.isinf(c)))
            else:
                hits = [i for i, e in enumerate(c) if str(e) == str(v)]
                if not hits:
                    raise PlotError(f"--sel {d}={v}: {d} takes one of {[str(e) for e in c]}")
                idx = hits[0]
        else:
            idx = 0
        notes.append(f"{_symbol(ds, d)} = {_fmt(ds[d].values[idx])}")
        ds = ds.isel({d: idx})
    unknown = set(sel) - set(ds.variables) - set(keep)
    if unknown:
        raise PlotError(f"--sel: no dimension(s) {sorted(unknown)}")
    return ds, notes


def _layout(ds: Any, var: str, x: str | None, hue: str | None, kind: str | None,
            sel: Mapping[str, Any] = {}) -> tuple[str, str | None, str]:
    """``(x, hue_or_y, kind)`` for ``var``: explicit choices checked, defaults chosen among the
    dimensions not fixed by ``sel``."""
    dims = _dims_of(ds, var)
    for name, d in (("--x", x), ("--hue", hue)):
        if d is not None and d not in dims:
            raise PlotError(f"{name} {d!r} is not a dimension of {var!r}; its dimensions are {dims}")
    all_dims = dims
    dims = [d for d in dims if d not in sel or d in (x, hue)]
    if not all_dims:
        vals = {v: _fmt(ds[v].values) for v in ds.data_vars if ds[v].ndim == 0}
        raise PlotError(f"nothing to plot: the dataset is a single point ({vals}); give a parameter "
                        f"a list or a range (e.g. --tau 0.1:10:200) to get a grid")
    if not dims:
        raise PlotError(f"--sel fixes every dimension of {var!r} ({all_dims}); leave one free")
    if kind not in (None, "line", "map"):
        raise PlotError(f"kind must be 'line' or 'map', got {kind!r}")
    numeric = [d for d in dims if ds[d].dtype.kind in "fiu"]
    if x is None:
        cands = [d for d in (numeric or dims) if d != hue]
        if not cands:
            raise PlotError(f"--hue {hue!r} leaves no dimension for the x axis")
        x = max(cands, key=lambda d: ds.sizes[d])  # the longest numeric dimension
    if len(dims) == 1:
        if kind == "map":
            raise PlotError(f"a heat map needs two dimensions; {var!r} has only {dims}")
        return x, None, "line"
    if hue is None:
        rest = [d for d in dims if d != x]
        hue = min(rest, key=lambda d: ds.sizes[d]) if kind != "map" else \
            max([d for d in rest if d in numeric] or rest, key=lambda d: ds.sizes[d])
    if kind is None:
        kind = "line" if (ds.sizes[hue] <= MAX_LINES or ds[hue].dtype.kind not in "fiu") else "map"
    if kind == "map" and (ds[x].dtype.kind not in "fiu" or ds[hue].dtype.kind not in "fiu"):
        raise PlotError("a heat map needs two numeric dimensions; use kind='line' (--hue) for "
                        "option dimensions such as 'branch'")
    return x, hue, kind


def _finite_axis(c: np.ndarray) -> tuple[np.ndarray, str]:
    """Indices of finite coordinate values (∞ cannot be placed on an axis) and a note."""
    c = np.asarray(c)
    if c.dtype.kind not in "fiu":
        return np.arange(c.size), ""
    ok = np.isfinite(c.astype(float))
    note = "" if ok.all() else f"{int((~ok).sum())} non-finite value(s) not shown"
    return np.flatnonzero(ok), note


def wide_positive(values: Any) -> bool:
    """Finite values all positive and spanning more than two decades (a pole, a power law):
    drawn on a log scale unless asked otherwise."""
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    return bool(v.size > 1 and np.all(v > 0) and v.max() / v.min() > 100.0)


def _draw_lines(ax: Any, ds: Any, var: str, x: str, hue: str | None, logy: bool | None) -> int:
    """Lines of ``var`` over ``x``, one per ``hue`` value; returns the non-converged count."""
    import matplotlib as mpl
    from matplotlib.lines import Line2D

    da = ds[var]
    conv = ds["converged"] if "converged" in ds else None
    xi, xnote = _finite_axis(ds[x].values)
    xv = ds[x].values[xi]
    hues = list(range(ds.sizes[hue])) if hue else [None]
    many = len(hues) > MAX_LINES  # a colour bar instead of a legend entry per line
    cmap = mpl.colormaps["viridis"]
    if many:
        hv = ds[hue].values.astype(float)
        fin = hv[np.isfinite(hv)]
        norm = (mpl.colors.LogNorm if is_geometric(fin) else mpl.colors.Normalize)(fin.min(), fin.max())
        colors = [cmap(norm(v)) if np.isfinite(v) else "k" for v in hv]
        cb = ax.figure.colorbar(mpl.cm.ScalarMappable(norm=norm, cmap=cmap), ax=ax)
        cb.set_label(_label(ds[hue], hue, wrap=30))
    else:
        colors = [f"C{i}" for i in range(len(hues))]
    bad_total = 0
    nsol = ds.sizes.get("solution", 1) if "solution" in da.dims else 1
    for h, col in zip(hues, colors):
        sub = da.isel({hue: h}) if hue else da
        label = f"{_symbol(ds, hue)} = {_fmt(ds[hue].values[h])}" if hue and not many else None
        for s in range(nsol):  # multi-start: every distinct fixed point as a dot (no line: the
            y = (sub.isel(solution=s) if nsol > 1 else sub).transpose(x).values[xi].astype(float)
            ax.plot(xv, y, color=col, lw=1.6 if nsol == 1 else 0,  # start order jumps branches)
                    marker=None if nsol == 1 else "o", ms=3.5, label=label if s == 0 else None)
        if conv is None:
            continue
        c = conv.isel({hue: h}) if hue else conv
        if "solution" in c.dims:  # a point is converged if any start converged
            c = c.any("solution")
        bad = ~np.asarray(c.transpose(x).values[xi], dtype=bool)
        bad_total += int(bad.sum())
        y = (sub.isel(solution=0) if nsol > 1 else sub).transpose(x).values[xi].astype(float)
        fin = bad & np.isfinite(y)
        if fin.any():
            ax.plot(xv[fin], y[fin], ls="none", marker="o", ms=7, mfc="none", mec="red", mew=1.2)
        nan = bad & ~np.isfinite(y)
        if nan.any():  # (an empty unclipped line would break the layout)
            ax.plot(xv[nan], np.zeros(int(nan.sum())), ls="none", marker="x", ms=6, color="red",
                    transform=ax.get_xaxis_transform(), clip_on=False)
    if is_geometric(ds[x].values):
        ax.set_xscale("log")
    if logy or (logy is None and wide_positive(da.values)):
        ax.set_yscale("log")
    ax.set_ylabel(_label(da, var, wrap=30))
    ax.grid(True, alpha=0.3)
    handles, labels = ax.get_legend_handles_labels()
    if bad_total:
        handles.append(Line2D([], [], ls="none", marker="o", mfc="none", mec="red", color="red"))
        labels.append(f"not converged ({bad_total} points; × where NaN)")
    if handles:
        title = _label(ds[hue], hue, symbol=False, wrap=40) if hue and not many else None
        ax.legend(handles, labels, fontsize="small", title=title, title_fontsize="small",
                  loc="best", ncol=2 if len(handles) > 6 else 1)
    if xnote:
        ax.annotate(xnote, (1, 0), xycoords="axes fraction", ha="right", va="bottom", fontsize="x-small")
    return bad_total


def _draw_map(fig: Any, ax: Any, ds: Any, var: str, x: str, y: str, logz: bool | None) -> int:
    """Heat map of ``var`` over ``x`` × ``y`` with non-converged cells hatched."""
    import matplotlib as mpl
    from matplotlib.collections import PolyCollection
    from matplotlib.patches import Patch

    da = ds[var]
    if "solution" in da.dims:
        da = da.isel(solution=0)
    xi, xnote = _finite_axis(ds[x].values)
    yi, ynote = _finite_axis(ds[y].values)
    xv, yv = ds[x].values[xi].astype(float), ds[y].values[yi].astype(float)
    z = da.transpose(y, x).values[np.ix_(yi, xi)].astype(float)
    lx, ly = is_geometric(xv), is_geometric(yv)
    xe, ye = _edges(xv, lx), _edges(yv, ly)
    cmap = mpl.colormaps["viridis"].with_extremes(bad="0.85")
    norm = None
    if (logz or (logz is None and wide_positive(z))) and np.any(z > 0):
        norm = mpl.colors.LogNorm(vmin=np.nanmin(z[z > 0]), vmax=np.nanmax(z[z > 0]))
    mesh = ax.pcolormesh(xe, ye, np.ma.masked_invalid(z), cmap=cmap, norm=norm, shading="flat")
    cb = fig.colorbar(mesh, ax=ax)
    cb.set_label(_label(da, var, wrap=30))
    bad_total = 0
    if "converged" in ds:
        c = ds["converged"]
        if "solution" in c.dims:
            c = c.any("solution")
        bad = ~np.asarray(c.transpose(y, x).values[np.ix_(yi, xi)], dtype=bool)
        bad_total = int(bad.sum())
        if bad_total:
            j, i = np.nonzero(bad)
            verts = np.stack([np.stack([xe[i], ye[j]], -1), np.stack([xe[i + 1], ye[j]], -1),
                              np.stack([xe[i + 1], ye[j + 1]], -1), np.stack([xe[i], ye[j + 1]], -1)], 1)
            ax.add_collection(PolyCollection(verts, facecolors="none", edgecolors="red",
                                             linewidths=0.0, hatch="xxx"))
            ax.legend([Patch(facecolor="none", edgecolor="red", hatch="xxx")],
                      [f"not converged ({bad_total} points)"], fontsize="small", loc="upper right",
                      framealpha=0.8)
    if lx:
        ax.set_xscale("log")
    if ly:
        ax.set_yscale("log")
    ax.set_xlim(xe[0], xe[-1])
    ax.set_ylim(ye[0], ye[-1])
    ax.set_ylabel(_label(ds[y], y, wrap=30))
    note = "; ".join(n for n in (xnote, ynote) if n)
    if note:
        ax.annotate(note, (1, 0), xycoords="axes fraction", ha="right", va="bottom", fontsize="x-small")
    return bad_total


def plot(ds: Any, var: Sequence[str] | str | None = None, *, x: str | None = None,
         hue: str | None = None, kind: str | None = None, sel: Mapping[str, Any] | None = None,
         logy: bool | None = None, title: str | None = None) -> Any:
    """A figure of ``ds`` (one panel per variable in ``var``; default: the first observable).

    ``x``: the dimension along the horizontal axis (default: the longest numeric one); ``hue``:
    one line per value of this dimension (``kind="line"``), or the vertical axis of a heat map
    (``kind="map"``; the default when the second dimension has more than :data:`MAX_LINES`
    values); ``sel``: values of further dimensions (default: their first); ``logy``: log scale
    for the observable (default: when its values are positive and span over two decades). Returns a ``matplotlib.figure.Figure`` (not shown, not saved)."""
    from matplotlib.figure import Figure

    names = choose_variables(ds, var)
    sel = dict(sel or {})
    layouts = [_layout(ds, v, x, hue, kind, sel) for v in names]
    n = len(names)
    k0 = layouts[0][2]
    fig = Figure(figsize=(7.0 if k0 == "line" else 6.8, 1.0 + 3.3 * n), layout="constrained")
    shared = all(L[0] == layouts[0][0] and L[2] == "line" for L in layouts)
    axes = fig.subplots(n, 1, squeeze=False, sharex=shared)[:, 0]
    notes: list[str] = []
    bad = 0
    for ax, v, (xd, hd, kd) in zip(axes, names, layouts):
        keep = [xd] + ([hd] if hd else [])
        sub, notes_v = _select(ds, sel, keep)
        notes = notes or notes_v
        if kd == "line":
            bad = max(bad, _draw_lines(ax, sub, v, xd, hd, logy))
        else:
            bad = max(bad, _draw_map(fig, ax, sub, v, xd, hd, logy))
        if ax is axes[-1] or not shared:
            ax.set_xlabel(_label(ds[xd], xd))
    a = ds.attrs
    fixed = ", ".join(p for p in (_fixed_parameters(ds), *notes) if p)
    head = title if title is not None else str(a.get("title") or a.get("model") or "")
    if "solution" in ds.dims:
        fixed += ("; " if fixed else "") + (
            f"dots: every distinct fixed point of {ds.sizes['solution']} starts" if k0 == "line"
            else f"first fixed point of {ds.sizes['solution']} starts")
    import textwrap

    lines = textwrap.wrap(head, 80) if head else []
    row = ""
    for part in fixed.split(", ") if fixed else []:  # never break inside a $symbol$
        if row and len(row) + len(part) > 80:
            lines.append(row)
            row = ""
        row = f"{row}, {part}" if row else part
    if row:
        lines.append(row)
    fig.suptitle("\n".join(lines), fontsize="medium")
    return fig


def plot_file(path: str | Path, out: str | Path | None = None, **kwargs: Any) -> Path:
    """Load ``path`` (``.nc`` or ``.zarr``), draw :func:`plot`, save to ``out`` (default: beside
    the input, ``.png``); the format follows the suffix (``.png``, ``.pdf``, ``.svg``)."""
    ds = load(path)
    fig = plot(ds, **kwargs)
    p = Path(path)
    o = Path(out) if out is not None else p.with_suffix(".png")
    if o.suffix.lower() not in (".png", ".pdf", ".svg", ".jpg", ".jpeg"):
        raise PlotError(f"output {o}: use .png, .pdf or .svg")
    fig.savefig(o, dpi=150)
    return o
