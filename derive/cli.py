"""The ``attn-theory`` command line: models, show, solve, verify, codegen, simulate, reproduce."""
from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from pathlib import Path
from typing import Any, Optional

import click
import numpy as np
import typer
from typer.core import TyperGroup

from . import models
from .grid import GridSpecError, parse_grid

#: options that may be given more than once (``plot --var a --var b``); any other repeat is refused
_REPEATABLE = {"--var", "--sel"}

#: exceptions that mean "bad input" (exit code 2); anything else is an internal error (exit 1)
_INPUT_ERRORS: tuple[type[BaseException], ...] = (ValueError, TypeError, KeyError, LookupError,
                                                  FileNotFoundError, FileExistsError,
                                                  NotADirectoryError, IsADirectoryError,
                                                  PermissionError, NotImplementedError)


def _one_line(exc: BaseException) -> str:
    """The message of ``exc`` on one line (``KeyError`` without its quotes)."""
    msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
    msg = " ".join(str(msg).split())
    return msg or type(exc).__name__


def _input_error_types() -> tuple[type[BaseException], ...]:
    """:data:`_INPUT_ERRORS` plus the store's and backend's refusals (imported lazily)."""
    extra: list[type[BaseException]] = []
    try:
        from numerics.backend import BackendUnavailableError

        extra.append(BackendUnavailableError)
    except ImportError:  # pragma: no cover
        pass
    try:
        from .store import StoreLockedError

        extra.append(StoreLockedError)
    except ImportError:  # pragma: no cover
        pass
    return _INPUT_ERRORS + tuple(extra)


def _repeated(args: list[str]) -> str | None:
    """The first ``--option`` (or ``-o``) given twice in ``args``, if any."""
    seen: set[str] = set()
    for tok in args:
        if tok == "--":
            break
        if not tok.startswith("-") or tok in ("-", "--debug") or _is_number(tok):
            continue
        name = tok.split("=", 1)[0]
        if name in _REPEATABLE:
            continue
        name = {"--output": "-o"}.get(name, name).replace("_", "-")
        if name in seen:
            return name
        seen.add(name)
    return None


def _is_number(tok: str) -> bool:
    try:
        float(tok.split(",")[0].split(":")[0])
        return True
    except ValueError:
        return False


try:  # typer >= 0.16 vendors click: its exceptions are not the click package's
    from typer import _click as _tclick

    from typer.core import Abort as _TAbort
    from typer.core import Exit as _TExit

    _CLICK_EXIT: tuple[type[BaseException], ...] = (click.exceptions.Exit, _TExit, typer.Exit)
    _CLICK_ABORT: tuple[type[BaseException], ...] = (click.exceptions.Abort, _TAbort)
    _CLICK_ERROR: tuple[type[BaseException], ...] = (click.ClickException, _tclick.exceptions.ClickException)
except ImportError:  # pragma: no cover - older typer uses click itself
    _CLICK_EXIT = (click.exceptions.Exit, typer.Exit)
    _CLICK_ABORT = (click.exceptions.Abort,)
    _CLICK_ERROR = (click.ClickException,)


class _OneLineErrors(TyperGroup):
    """The command group: every error is one line on stderr (``error: ...``), exit code 2 for bad
    input (usage errors, invalid values, refused paths, a locked store, a missing GPU), 1 for
    internal errors; ``--debug`` (anywhere on the line, or ``ATTN_THEORY_DEBUG=1``) lets the
    traceback through instead. A repeated option (``--tau 2 --tau 3``) is refused."""

    def main(self, args: Any = None, prog_name: Any = None, complete_var: Any = None,
             standalone_mode: bool = True, **extra: Any) -> Any:
        argv = list(sys.argv[1:] if args is None else args)
        debug = "--debug" in argv or os.environ.get("ATTN_THEORY_DEBUG", "") == "1"
        argv = [a for a in argv if a != "--debug"]
        code = 0
        try:
            dup = _repeated(argv)
            if dup is not None:
                raise click.UsageError(f"option {dup} is given more than once; give it once "
                                       f"(a list is written --name a,b,c)")
            rv = super().main(args=argv, prog_name=prog_name, complete_var=complete_var,
                              standalone_mode=False, **extra)
            code = rv if isinstance(rv, int) else 0
        except _CLICK_EXIT as exc:
            code = int(getattr(exc, "exit_code", 0) or 0)
        except _CLICK_ABORT:
            click.echo("error: aborted", err=True)
            code = 1
        except _CLICK_ERROR as exc:
            if debug:
                raise
            click.echo(f"error: {' '.join(exc.format_message().split())}", err=True)
            code = exc.exit_code
        except Exception as exc:  # noqa: BLE001 - the one place where errors become messages
            if debug:
                raise
            if isinstance(exc, _input_error_types()):
                click.echo(f"error: {_one_line(exc)}", err=True)
                code = 2
            else:
                click.echo(f"error: internal error ({type(exc).__name__}): {_one_line(exc)} "
                           f"(rerun with --debug for the traceback)", err=True)
                code = 1
        if standalone_mode:
            sys.exit(code)
        return code


#: plain click help (no Rich rendering: importing rich's markdown/syntax/traceback machinery cost
#: most of ``attn-theory --help``'s start-up, issue 14.1); errors are one line (_OneLineErrors)
app = typer.Typer(add_completion=False, no_args_is_help=True, cls=_OneLineErrors,
                  rich_markup_mode=None, pretty_exceptions_enable=False,
                  help="Exactly solvable theories of attention layers: derive, solve, verify, "
                       "reproduce. Errors are one line (exit code 2 for bad input); --debug "
                       "shows the traceback.")


def derivation_module(model: str) -> str:
    """The derivation script of ``model``: ``derivations/<module>.py`` with ``main(out_dir, quick)``."""
    return f"derivations.{models.module_name(model)}"


def _model(name: str):
    try:
        return models.get(name)
    except KeyError as exc:
        typer.echo(f"error: {exc.args[0]}", err=True)
        raise typer.Exit(2) from None


def _option_value(model, key: str, val: str) -> object:
    """The command-line string ``val`` of option ``key`` as the type its declaration
    (:class:`~derive.declarations.Option`) asks for; a comma list of strings is a dimension."""
    opt = model.option_info[key]
    if not opt.cli:
        raise typer.BadParameter(f"option --{key} ({opt.description}) cannot be set from the "
                                 f"command line; use derive.solve(..., {key}=...) in Python")
    if opt.allow_none and val.strip().lower() == "none":
        return None
    if opt.kind == "bool":
        low = val.strip().lower()
        if low in ("1", "true", "yes", "on"):
            return True
        if low in ("0", "false", "no", "off"):
            return False
        raise typer.BadParameter(f"option --{key} = {val!r} must be true or false")
    if opt.kind in ("int", "float"):
        try:
            x = float(val)
        except ValueError:
            raise typer.BadParameter(f"option --{key} = {val!r} is not a number (it must be "
                                     f"{opt.describe()})") from None
        if opt.kind == "int":
            if not (np.isfinite(x) and x == int(x)):
                raise typer.BadParameter(f"option --{key} = {val!r} must be {opt.describe()}")
            return opt.validate(int(x))
        return opt.validate(x)
    if "," in val:  # a list of string values: a dimension of the sweep
        vals = [v for v in val.split(",") if v]
        for v in vals:
            opt.validate(v)
        return vals
    return opt.validate(val)


def _parse_extra(model, args: list[str]) -> dict[str, object]:
    """``--name value`` pairs for the model's parameters (parsed by :func:`parse_grid`) and
    options (``--branch semantic``, converted to the type the option declares). A name given
    twice is refused."""
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
        if key in out:
            raise typer.BadParameter(f"--{key} is given more than once")
        if key in getattr(model, "option_info", {}):
            out[key] = _option_value(model, key, val)
            continue
        if key in getattr(model, "options", {}):  # a model option (branch=..., n_quad=...)
            default = model.options[key]
            try:
                if isinstance(default, bool):
                    if val.lower() not in ("1", "true", "yes", "0", "false", "no"):
                        raise ValueError
                    out[key] = val.lower() in ("1", "true", "yes")
                elif isinstance(default, int):
                    out[key] = int(val)
                elif isinstance(default, float):
                    out[key] = float(val)
            except ValueError:
                raise typer.BadParameter(f"option --{key} = {val!r} must be of the type of its "
                                         f"default {default!r}") from None
            if isinstance(default, (bool, int, float)):
                continue
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


def _check_output(output: Optional[Path], suffixes: tuple[str, ...]) -> None:
    """Refuse, before any work, an output path that cannot be written: an unknown suffix, a
    missing or read-only parent folder, a folder where a file is expected."""
    if output is None:
        return
    if output.suffix not in suffixes:
        raise typer.BadParameter(f"output {str(output)!r} must end in {' or '.join(suffixes)}")
    parent = output.parent if str(output.parent) else Path(".")
    if not parent.is_dir():
        raise typer.BadParameter(f"output {str(output)!r}: the folder {str(parent)!r} does not exist")
    if not os.access(parent, os.W_OK):
        raise typer.BadParameter(f"output {str(output)!r}: the folder {str(parent)!r} is not writable")
    if output.suffix != ".zarr" and output.is_dir():
        raise typer.BadParameter(f"output {str(output)!r} is a folder, not a file")


def _check_backend(backend: str) -> None:
    """Refuse an unknown or unusable backend (``cupy`` without a GPU) before any work."""
    from numerics.backend import BackendUnavailableError, get_backend

    try:
        get_backend(backend)
    except (ValueError, BackendUnavailableError) as exc:
        raise typer.BadParameter(f"--backend {backend}: {_one_line(exc)}") from None


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
          starts: int = typer.Option(1, min=1, help="multi-start: the default start plus STARTS-1 random ones"),
          chunk: Optional[int] = typer.Option(None, min=1, help="points per work unit"),
          sweep_seed: int = typer.Option(0, help="seed of the random starts"),
          rows: int = typer.Option(20, help="table rows to print (0: none)"),
          time_limit: Optional[float] = typer.Option(
              None, min=0.001, help="wall-clock seconds per work unit; a unit past it is stopped and "
                                    "its points are flagged maxiter (in-process runs only)")) -> None:
    """Solve MODEL on a grid: --tau 0.1:10:200 --alpha 1,10 --kappa inf --lam 0 ...

    Options of the model are given the same way (--branch semantic); a comma list of option
    values (--branch positional,semantic) becomes a dimension. Prints a table and a summary line
    (points converged / not / failed, time)."""
    from .store import StoreMismatchError
    from .sweep import sweep

    m = _model(model)
    params = _parse_extra(m, ctx.args)
    _check_output(output, (".zarr", ".nc"))
    _check_backend(backend)
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
                   continuation=continuation, starts=starts, seed=sweep_seed, progress=True,
                   time_limit=time_limit, **params)
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
def verify(model: str, points: int = typer.Option(50, min=1, help="random points of the domain"),
           dps: int = typer.Option(50, min=20, help="mpmath digits (>= 20: more than float64 holds)"),
           seed: int = typer.Option(0, help="random seed")) -> None:
    """Compare the float64 pipeline with mpmath at DPS digits on random points."""
    from .verify import verify as _verify

    from .verify import pipeline_check_available

    m = _model(model)
    why = pipeline_check_available(m)
    if why:  # no mpmath pipeline (the contract says why): verify every generated kernel
        typer.echo(f"{m.name}: {why}; every generated float64 kernel vs mpmath at {dps} digits, "
                   f"{points} random inputs (fewest agreeing digits)")
        for name, digits in m.verify_kernels(points, seed, dps).items():
            typer.echo(f"  {name:24s} {digits:5.1f}")
        return
    pts = m.random_points(points, np.random.default_rng(seed))
    typer.echo(_verify(m, pts, dps=dps).table())


@app.command()
def codegen(model: str, output: Path = typer.Option(..., "-o", "--output"),
            target: str = typer.Option("xp", help="xp (NumPy/CuPy) or mpmath")) -> None:
    """Write every generated kernel of MODEL to one Python file."""
    m = _model(model)
    _check_output(output, (".py",))
    if target not in ("xp", "mpmath"):
        raise typer.BadParameter(f"--target {target!r} must be 'xp' or 'mpmath'")
    ks = m.kernels(target)
    text = "\n\n".join(k.source for k in ks.values())
    output.write_text(text)
    typer.echo(f"wrote {len(ks)} kernels ({', '.join(ks)}) to {output}")


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def simulate(ctx: typer.Context, model: str, d: int = typer.Option(32, min=1, help="dimension"),
             trials: int = typer.Option(5, min=1), seed: int = typer.Option(0, min=0),
             backend: str = typer.Option("numpy")) -> None:
    """Finite-size simulation at one point, next to the theory: --tau 2 --alpha 10 ..."""
    from .solve import solve as _solve

    m = _model(model)
    params = _parse_extra(m, ctx.args)
    if any(np.ndim(v) for v in params.values()):
        raise typer.BadParameter("simulate takes one value per parameter")
    _check_backend(backend)
    point = getattr(m, "simulate_point", None)
    if point is not None:  # the contract: SimulationResult, items() = (observable, (mean, sem))
        try:
            res = point(d=d, trials=trials, seed=seed, backend=backend, **params)
        except NotImplementedError as exc:
            raise typer.BadParameter(f"{exc}; its finite-size checks run with "
                                     f"`attn-theory reproduce {m.name}`") from None
        th = _solve(model, **params)
        for obs, (mean, sem) in res.items():
            typer.echo(f"{obs}: simulation {mean:.6g} ± {sem:.2g}   theory {float(th[obs]):.6g}")
        return
    if not {"e_icl", "e_idg", "e_train"} <= set(m.observables):
        raise typer.BadParameter(f"model {m.name!r} has no point simulation for the command line; "
                                 f"its finite-size checks run with `attn-theory reproduce {m.name}`")
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
         logy: Optional[bool] = typer.Option(
             None, "--logy/--linear", help="log or linear scale for the observable (default: log when "
                                           "its values are positive and span over two decades)"),
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
