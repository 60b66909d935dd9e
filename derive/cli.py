"""The ``attn-theory`` command line: models, show, solve, verify, codegen, simulate, reproduce."""
from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path
from typing import Optional

import numpy as np
import typer

from . import models
from .grid import GridSpecError, parse_grid

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Exactly solvable theories of attention layers: derive, solve, verify, "
                       "reproduce.")


def derivation_module(model: str) -> str:
    """The derivation script of ``model``: ``derivations/<module>.py`` with ``main(out_dir, quick)``."""
    return f"derivations.{models.module_name(model)}"


def _model(name: str):
    try:
        return models.get(name)
    except KeyError as exc:
        typer.echo(str(exc.args[0]), err=True)
        raise typer.Exit(2) from None


def _parse_extra(model, args: list[str]) -> dict[str, object]:
    """``--name value`` pairs for the model's parameters (parsed by :func:`parse_grid`) and
    options (``--branch semantic``, converted to the type of the option's default)."""
    out: dict[str, object] = {}
    it = iter(args)
    for tok in it:
        if not tok.startswith("--"):
            raise typer.BadParameter(f"unexpected argument {tok!r}; use --name value")
        key = tok[2:]
        if "=" in key:
            key, val = key.split("=", 1)
        else:
            try:
                val = next(it)
            except StopIteration:
                raise typer.BadParameter(f"--{key} needs a value") from None
        key = key.replace("-", "_")
        if key in getattr(model, "options", {}):  # a model option (branch=..., n_quad=...)
            default = model.options[key]
            if isinstance(default, bool):
                out[key] = val.lower() in ("1", "true", "yes")
            elif isinstance(default, int):
                out[key] = int(val)
            elif isinstance(default, float):
                out[key] = float(val)
            elif "," in val:  # a list of string values: a dimension of the sweep
                out[key] = [v for v in val.split(",") if v]
            else:
                out[key] = val
            continue
        try:
            model.parameter(key)
        except KeyError as exc:
            raise typer.BadParameter(str(exc.args[0])) from None
        try:
            out[key] = parse_grid(val, key)
        except GridSpecError as exc:
            raise typer.BadParameter(str(exc)) from None
    return out


@app.command("models")
def list_models() -> None:
    """List registered models and their parameters."""
    for name in models.names():
        m = models.get(name)
        typer.echo(f"{name}: {m.title}\n    {m.describe_parameters()}")


@app.command()
def show(model: str, latex: bool = typer.Option(False, "--latex", help="LaTeX instead of unicode")) -> None:
    """Print a model's equations (with their provenance)."""
    typer.echo(_model(model).show("latex" if latex else "pretty"))


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def solve(ctx: typer.Context, model: str,
          output: Optional[Path] = typer.Option(
              None, "-o", "--output",
              help="write the dataset: PATH.zarr is a resumable store (rerun the same command to "
                   "resume a killed sweep), PATH.nc a netCDF file"),
          backend: str = typer.Option("numpy", help="numpy or cupy"),
          scheduler: Optional[str] = typer.Option(
              None, help="Dask scheduler address (tcp://host:8786): units run on its workers"),
          continuation: Optional[str] = typer.Option(
              None, help="warm-start each point from the previous one along this swept parameter"),
          starts: int = typer.Option(1, help="multi-start: the default start plus STARTS-1 random ones"),
          chunk: Optional[int] = typer.Option(None, help="points per work unit"),
          sweep_seed: int = typer.Option(0, help="seed of the random starts"),
          rows: int = typer.Option(20, help="table rows to print (0: none)")) -> None:
    """Solve MODEL on a grid: --tau 0.1:10:200 --alpha 1,10 --kappa inf --lam 0 ...

    Options of the model are given the same way (--branch semantic); a comma list of option
    values (--branch positional,semantic) becomes a dimension. Prints a table and a summary line
    (points converged / not / failed, time)."""
    from .store import StoreMismatchError
    from .sweep import sweep

    m = _model(model)
    params = _parse_extra(m, ctx.args)
    store = output if output is not None and output.suffix == ".zarr" else None
    client = None
    if scheduler:
        try:
            from distributed import Client
        except ImportError:
            typer.echo("error: --scheduler needs dask.distributed: pip install "
                       "'attention-theory[sweep]'", err=True)
            raise typer.Exit(2) from None
        client = Client(scheduler)
    try:
        ds = sweep(model, store=store, backend=backend, chunk=chunk, client=client,
                   continuation=continuation, starts=starts, seed=sweep_seed, progress=True, **params)
    except (ValueError, StoreMismatchError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    finally:
        if client is not None:
            client.close()
    if rows:
        df = (ds if ds.sizes else ds.expand_dims("point")).to_dataframe()
        cols = [c for c in (*m.observables[:6], "n_solutions", "converged", "status") if c in df]
        typer.echo(df[cols].head(rows).to_string())
        if len(df) > rows:
            typer.echo(f"... ({len(df)} rows)")
    if output is not None and store is None:
        from .store import write_dataset

        write_dataset(ds.drop_vars(["finished", "sweep_run"]), output)
    if output is not None:
        typer.echo(f"wrote {output}")


@app.command()
def inspect(store: Path) -> None:
    """Describe a sweep store (.zarr): model, grid, finished points, runs, convergence.

    Every finished unit is checked against the digests recorded when it was written; units
    whose chunks are missing, altered or undecodable are listed with their files (exit code 1)
    and are not counted as finished (a rerun of the sweep recomputes them)."""
    import json as _json

    from .store import StoreCorruptError, ZarrSweepStore
    from .sweep import plan_units

    st = ZarrSweepStore(store)
    if not store.exists():
        typer.echo(f"error: no store at {store}", err=True)
        raise typer.Exit(2)
    if not st.exists():
        typer.echo(f"error: {store} is not a sweep store (no zarr.json)", err=True)
        raise typer.Exit(2)
    try:
        ds = st._open_dataset()
        a = ds.attrs
        shape = ds["finished"].shape
        units = plan_units(shape, tuple(_json.loads(a["unit_block"])))
    except (StoreCorruptError, KeyError, ValueError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    done, problems = st.verify(units)
    typer.echo(f"{store}: model {a.get('model')} (equations {str(a.get('equations_sha256'))[:12]}…, "
               f"attention-theory {a.get('package_version')})")
    typer.echo("grid: " + " × ".join(f"{d} {ds.sizes[d]}" for d in ds["finished"].dims)
               + (f"; continuation along {a['continuation']}" if a.get("continuation") else "")
               + (f"; {a['starts']} starts" if int(a.get("starts", 1)) > 1 else ""))
    typer.echo(f"finished: {int(done.sum())}/{done.size} points over {a.get('sweep_runs', '?')} run(s)"
               f" (digests verified)")
    if done.any():
        conv = np.zeros(done.shape, dtype=bool)
        for u in units:
            if done[u].all():
                c = np.asarray(ds["converged"][u].values).astype(bool)
                conv[u] = c.any(axis=-1) if "solution" in ds["converged"].dims else c
        conv = conv[done]
        typer.echo(f"of the finished: {int(conv.sum())} converged, {int((~conv).sum())} not converged")
    if "summary" in a:
        typer.echo(f"last run: {a['summary']}")
    if problems:
        typer.echo(f"{len(problems)} unit(s) FAILED their check (recomputed by the next run):")
        for pb in problems:
            typer.echo(f"  {pb}")
        raise typer.Exit(1)


@app.command()
def verify(model: str, points: int = typer.Option(50, help="random points of the domain"),
           dps: int = typer.Option(50, help="mpmath digits"),
           seed: int = typer.Option(0, help="random seed")) -> None:
    """Compare the float64 pipeline with mpmath at DPS digits on random points."""
    from .verify import verify as _verify

    m = _model(model)
    if not hasattr(m, "random_points"):  # no mpmath pipeline: verify every generated kernel
        typer.echo(f"{m.name}: every generated float64 kernel vs mpmath at {dps} digits, "
                   f"{points} random inputs (fewest agreeing digits)")
        for name, digits in m.verify_kernels(points, seed, dps).items():
            typer.echo(f"  {name:24s} {digits:5.1f}")
        return
    pts = m.random_points(np.random.default_rng(seed), points)
    typer.echo(_verify(m, pts, dps=dps).table())


@app.command()
def codegen(model: str, output: Path = typer.Option(..., "-o", "--output"),
            target: str = typer.Option("xp", help="xp (NumPy/CuPy) or mpmath")) -> None:
    """Write every generated kernel of MODEL to one Python file."""
    m = _model(model)
    ks = m.kernels(target)
    text = "\n\n".join(k.source for k in ks.values())
    output.write_text(text)
    typer.echo(f"wrote {len(ks)} kernels ({', '.join(ks)}) to {output}")


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def simulate(ctx: typer.Context, model: str, d: int = typer.Option(32, help="dimension"),
             trials: int = typer.Option(5), seed: int = typer.Option(0),
             backend: str = typer.Option("numpy")) -> None:
    """Finite-size simulation at one point, next to the theory: --tau 2 --alpha 10 ..."""
    from .solve import solve as _solve

    m = _model(model)
    params = _parse_extra(m, ctx.args)
    if any(np.ndim(v) for v in params.values()):
        raise typer.BadParameter("simulate takes one value per parameter")
    sim = m.simulate(d=d, trials=trials, seed=seed, backend=backend, **params)
    th = _solve(model, **params)
    for name, val in sim.summary().items():
        typer.echo(f"{name}: {val}")
    for obs in ("e_icl", "e_idg", "e_train"):
        typer.echo(f"{obs}: simulation {sim.mean(obs):.5g} ± {sim.sem(obs):.2g}   "
                   f"theory {float(th[obs]):.6g}")


@app.command()
def reproduce(model: str, out: Path = typer.Option(Path("results"), help="output folder"),
              quick: bool = typer.Option(False, help="fewer simulation trials / smaller d")) -> None:
    """Reproduce a paper's headline figures (theory + simulation) as PNG + CSV."""
    _model(model)
    target = derivation_module(model)
    if importlib.util.find_spec(target) is None:
        typer.echo(f"no derivation script for {model!r} yet ({target})", err=True)
        raise typer.Exit(2)
    mod = importlib.import_module(target)
    files = mod.main(out / model, quick=quick)
    for f in files:
        typer.echo(f"wrote {f}")


@app.command()
def plot(file: Path,
         var: Optional[list[str]] = typer.Option(
             None, "--var", help="observable(s) to draw, one panel each (repeat or comma list; "
                                 "default: the first observable)"),
         x: Optional[str] = typer.Option(None, "--x", help="dimension on the horizontal axis"),
         hue: Optional[str] = typer.Option(
             None, "--hue", help="one line per value of this dimension (or the vertical axis of a map)"),
         kind: Optional[str] = typer.Option(
             None, "--kind", help="line or map (default: lines when the second dimension has at "
                                  "most 10 values, else a heat map)"),
         sel: Optional[list[str]] = typer.Option(
             None, "--sel", help="fix a further dimension: --sel kappa=inf (default: its first value)"),
         logy: bool = typer.Option(False, "--logy", help="log scale for the observable"),
         output: Optional[Path] = typer.Option(
             None, "-o", "--output", help="figure file, .png, .pdf or .svg (default: FILE with .png)")) -> None:
    """Draw FILE (a .nc from `solve -o` or a .zarr sweep store): lines over one grid dimension, one
    per value of a second, or a heat map over two; non-converged points marked in red."""
    from .plot import PlotError, plot_file

    fixed: dict[str, str] = {}
    for s in sel or []:
        if "=" not in s:
            typer.echo(f"error: --sel {s!r}: use NAME=VALUE", err=True)
            raise typer.Exit(2)
        k, v = s.split("=", 1)
        fixed[k.strip()] = v.strip()
    try:
        out = plot_file(file, output, var=var, x=x, hue=hue, kind=kind, sel=fixed, logy=logy)
    except PlotError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    typer.echo(f"wrote {out}")


def main() -> None:  # console-script entry point
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
