"""``attn-theory plot FILE`` and :mod:`derive.plot` (issue 14, item 4), on the Agg backend."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pytest
from typer.testing import CliRunner

import derive
from derive.cli import app
from derive.plot import PlotError, is_geometric, load, plot
from derive.store import write_dataset

ICL = dict(kappa=0.5, rho=0.01, lam=0.0)


@pytest.fixture(scope="module")
def lines_file(tmp_path_factory):
    """τ on a linear grid through the pole τ = 1 (λ = 0): two points do not converge."""
    ds = derive.solve("icl-linear-attention", tau=np.linspace(0.5, 1.5, 21), alpha=np.array([1.0, 10.0]), **ICL)
    assert int((~ds["converged"]).sum()) == 2
    p = tmp_path_factory.mktemp("plot") / "c.nc"
    write_dataset(ds, p)
    return p


def test_cli_lines_png(lines_file) -> None:
    out = lines_file.with_name("fig.png")
    r = CliRunner().invoke(app, ["plot", str(lines_file), "-o", str(out)])
    assert r.exit_code == 0, r.output
    assert f"wrote {out}" in r.output
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 20_000
    r = CliRunner().invoke(app, ["plot", str(lines_file)])  # default: beside the input
    assert r.exit_code == 0 and lines_file.with_suffix(".png").exists()


def test_lines_are_labelled(lines_file) -> None:
    ds = load(lines_file)
    fig = plot(ds)
    ax = fig.axes[0]
    assert ax.get_xlabel() == ds["tau"].attrs["long_name"] + r" ($\tau$)"
    assert ax.get_ylabel().replace("\n", " ").startswith(ds["e_icl"].attrs["long_name"])
    assert ax.get_xscale() == "linear"  # a linspace grid
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels[:2] == [r"$\alpha$ = 1", r"$\alpha$ = 10"]
    assert any(t.startswith("not converged (2 points") for t in labels)
    title = fig._suptitle.get_text()
    assert "In-context learning" in title and r"$\kappa$ = 0.5" in title and r"$\lambda$ = 0" in title
    # the two pole points: red crosses on the bottom edge (their values are NaN)
    reds = [ln for ln in ax.lines if ln.get_marker() == "x" and len(ln.get_xdata())]
    assert sorted(float(x) for ln in reds for x in ln.get_xdata()) == [1.0, 1.0]


def test_map_geometric_axes_and_hatched_cells(tmp_path) -> None:
    ds = derive.solve("icl-linear-attention", tau=np.geomspace(0.25, 4, 13), alpha=np.linspace(0.5, 5, 12), **ICL)
    bad = int((~ds["converged"]).sum())
    assert bad == 12  # the pole column tau = 1
    fig = plot(ds, var="e_icl", logy=True)
    ax = fig.axes[0]
    assert ax.get_xscale() == "log" and ax.get_yscale() == "linear"
    assert ax.get_ylabel().replace("\n", " ").startswith(ds["alpha"].attrs["long_name"])
    cbar = fig.axes[1]
    assert cbar.get_ylabel().replace("\n", " ").startswith(ds["e_icl"].attrs["long_name"])
    hatched = [c for c in ax.collections if c.get_hatch()]
    assert len(hatched) == 1 and len(hatched[0].get_paths()) == bad
    fig.savefig(tmp_path / "m.pdf")
    assert (tmp_path / "m.pdf").read_bytes()[:5] == b"%PDF-"


def test_sweep_store(tmp_path) -> None:
    pytest.importorskip("zarr")
    store = tmp_path / "s.zarr"
    derive.solve("icl-linear-attention", tau=np.array([0.5, 2.0, 3.0]), alpha=np.array([1.0, 10.0]),
                 store=store, chunk=2, progress=False, **ICL)
    out = tmp_path / "s.png"
    r = CliRunner().invoke(app, ["plot", str(store), "--var", "e_icl,e_idg", "--x", "tau", "-o", str(out)])
    assert r.exit_code == 0, r.output
    assert out.exists()


def test_errors(lines_file, tmp_path) -> None:
    r = CliRunner().invoke(app, ["plot", str(lines_file), "--var", "nope"])
    assert r.exit_code == 2 and "no variable 'nope'" in r.output and "e_icl" in r.output
    r = CliRunner().invoke(app, ["plot", str(lines_file), "--x", "kappa"])
    assert r.exit_code == 2 and "not a dimension" in r.output
    r = CliRunner().invoke(app, ["plot", str(tmp_path / "missing.nc")])
    assert r.exit_code == 2 and "no file" in r.output
    r = CliRunner().invoke(app, ["plot", str(lines_file), "--kind", "map", "--hue", "alpha", "--sel", "x"])
    assert r.exit_code == 2 and "NAME=VALUE" in r.output
    one = derive.solve("icl-linear-attention", tau=2.0, alpha=1.0, **ICL)
    with pytest.raises(PlotError, match="single point"):
        plot(one)


def test_is_geometric() -> None:
    assert is_geometric(np.geomspace(1e-3, 1e3, 61)) and is_geometric([1, 10, 100])
    assert not is_geometric(np.linspace(0.1, 10, 200)) and not is_geometric([1.0, 10.0])
    assert is_geometric([1e-4, 0.5, 2.0])  # more than three decades
    assert not is_geometric([0.0, 1.0, 10.0]) and not is_geometric(["a", "b"])


def test_multistart_dots() -> None:
    """Multi-start sweeps: every distinct fixed point as a dot (start order jumps branches, so no
    line joins them); the ``solution`` coordinate and an observable named like an option are
    described correctly."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parent))
    from _curie_weiss import CurieWeiss

    from derive.sweep import sweep

    ds = sweep(CurieWeiss(), beta=np.array([0.5, 2.0]), h=np.linspace(-0.3, 0.3, 7), starts=3, seed=1,
               progress=False)
    assert ds["solution"].attrs["long_name"].startswith("fixed point index")
    assert ds["stability"].attrs["long_name"] == "stability"  # the observable, not the option
    fig = plot(ds, var="m")
    ax = fig.axes[0]
    assert all(ln.get_linewidth() == 0 for ln in ax.lines)
    pts = sum(int(np.isfinite(ln.get_ydata()).sum()) for ln in ax.lines)
    assert pts == int(ds["n_solutions"].sum())  # β = 2 has three fixed points near h = 0
    assert "every distinct fixed point of 3 starts" in fig._suptitle.get_text()


def test_sel_and_option_dimensions() -> None:
    """A string (option) dimension as hue; --sel fixes a dimension and names it in the title."""
    import xarray as xr

    rng = np.random.default_rng(0)
    dims = ("a", "branch", "c")
    ds = xr.Dataset({"e": (dims, rng.uniform(0.5, 1.5, (5, 2, 3))), "converged": (dims, np.ones((5, 2, 3), bool))},
                    coords={"a": np.linspace(0, 1, 5), "branch": np.array(["positional", "semantic"], dtype=object),
                            "c": [1.0, 2.0, 3.0]})
    fig = plot(ds)
    assert [t.get_text() for t in fig.axes[0].get_legend().get_texts()] == ["branch = positional", "branch = semantic"]
    assert "c = 1" in fig._suptitle.get_text()  # a further dimension: its first value, said
    fig = plot(ds, sel={"branch": "semantic"})
    assert "branch = semantic" in fig._suptitle.get_text()
    assert len(fig.axes[0].get_legend().get_texts()) == 3  # one line per c
    with pytest.raises(PlotError, match="one of"):
        plot(ds, sel={"branch": "other"})
    with pytest.raises(PlotError, match="two numeric dimensions"):
        plot(ds, x="a", hue="branch", kind="map")
