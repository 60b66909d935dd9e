"""What every derivation script shares: result tables (CSV), figures (PNG) and the command-line entry."""
from __future__ import annotations

import argparse
import csv
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

__all__ = ["write_csv", "save_figure", "run_cli", "echo_derivation", "output_folder", "write_summary"]


def _cell(v: Any) -> Any:
    """Floats at full precision (``repr``), everything else as it is."""
    if isinstance(v, (float, np.floating)):
        return repr(float(v))
    return v


def write_csv(path: Path, rows: Sequence[dict[str, Any]]) -> Path:
    """Write ``rows`` to ``path``: the columns are the union of the rows' keys in first-seen order
    (a missing cell is empty); floats keep all their digits."""
    keys: list[str] = []
    for r in rows:
        keys += [k for k in r if k not in keys]
    with Path(path).open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=keys)
        w.writeheader()
        for r in rows:
            w.writerow({k: _cell(v) for k, v in r.items()})
    return Path(path)


def save_figure(fig: Any, path: Path, dpi: int = 120) -> Path:
    """Save a Matplotlib figure to ``path`` (folders created) and close it; returns the path."""
    import matplotlib.pyplot as plt

    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(p, dpi=dpi)
    plt.close(fig)
    return p


def run_cli(main: Callable[..., list[Path]], model: str, doc: str | None,
            argv: Sequence[str] | None = None, quick_help: str = "a quicker, smaller run",
            seed: bool = True) -> None:
    """``python derivations/<model>.py [--out DIR] [--quick] [--seed S]``: run ``main`` and list
    the files it wrote (the same entry as ``attn-theory reproduce <model>``)."""
    ap = argparse.ArgumentParser(description=(doc or model).splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("results") / model, help="output folder")
    ap.add_argument("--quick", action="store_true", help=quick_help)
    if seed:
        ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    kw = {"seed": args.seed} if seed else {}
    for f in main(args.out, quick=args.quick, **kw) or []:
        print(f"wrote {f}")


def echo_derivation(model: str, lines: Callable[[Any], Sequence[str]],
                    echo: Callable[[str], Any] = print) -> None:
    """Echo ``lines(m)`` for the registered model ``m`` (a script's summary of what is derived)."""
    import derive

    for line in lines(derive.models.get(model)):
        echo(line)


def output_folder(out_dir: Path | str) -> Path:
    """``out_dir`` as a :class:`Path`, created (with its parents) if missing."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    return out


def write_summary(out: Path, title: str, intro: str, items: Sequence[str],
                  echo: Callable[[str], Any] = print) -> Path:
    """Write ``out/summary.md`` (``# title``, the ``intro`` paragraph, one ``- item`` per line),
    echo it and return its path."""
    path = Path(out) / "summary.md"
    path.write_text(f"# {title}\n\n{intro}\n\n" + "".join(f"- {it}\n" for it in items))
    echo(path.read_text())
    return path
