r"""Gradient descent on the attention-indexed model (softmax, ρ = 0.5, d = 200) against the
authors' GD points and the Bayes-optimal state evolution.

``python derivations/attention_indexed_gd.py [--out DIR] [--quick]`` writes ``gd_collapse.png``
(default folder ``docs/figures/attention-indexed``) and ``gd_points.csv`` / prints the markdown table
of the model page. Inputs: our recorded runs ``tests/data/attention_indexed_gd_points.csv``
(``tests/data/attention_indexed_gd_run.py``; the authors' protocol, 32 students, float32) and the
authors' ``GD_single`` / ``GD_averaged`` tables (``tests/data/reference/attention_indexed_multitoken.json``,
``FabrizioBoncoraglio/BO_ExtensiveRankAttention`` @ 5f1b99c). The SE curve is
``derive.solve('attention-indexed', alpha, T, rho)``; for softmax it depends on α only through
α(T² + T − 2), so the five T collapse on one curve (x-axis), and so do the GD points if GD
respects the same invariance.
"""
from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from derivations._common import write_csv

MODEL = "attention-indexed"
ROOT = Path(__file__).resolve().parents[1]
REFERENCE = ROOT / "tests" / "data" / "reference" / "attention_indexed_multitoken.json"
POINTS = ROOT / "tests" / "data" / "attention_indexed_gd_points.csv"
FIG_DIR = ROOT / "docs" / "figures" / "attention-indexed"
RHO = 0.5

__all__ = ["main", "load_points", "gd_collapse", "markdown_table"]


def load_points(path: Path = POINTS) -> list[dict[str, Any]]:
    """Our recorded GD points (one dict per row; numbers as floats)."""
    lines = [ln for ln in Path(path).read_text().splitlines() if ln and not ln.startswith("#")]
    return [{k: (v if k == "date_utc" else float(v)) for k, v in r.items()} for r in csv.DictReader(lines)]


def _with_se(points: list[dict[str, Any]]) -> list[dict[str, Any]]:
    import derive

    out = []
    for p in points:
        ds = derive.solve(MODEL, alpha=p["alpha"], T=float(p["T"]), rho=RHO)
        out.append(dict(p, se_mmse=float(ds.mmse.values), se_converged=bool(ds.converged.values)))
    return out


def markdown_table(points: list[dict[str, Any]]) -> str:
    """The model page's table: ours vs the authors' (single and 32-averaged) with the SE."""
    head = ("| T | α | α/α_PR | n | SE (BO) | averaged GD, ours | theirs (± std, 16 sets) | Δ "
            "| single GD, ours (± s.e.m.) | theirs (± std) | Δ |\n"
            "|---|---|---|---|---|---|---|---|---|---|---|")
    rows = []
    for p in sorted(points, key=lambda r: (r["T"], r["alpha"])):
        da = p["averaged"] - p["authors_averaged"]
        ds = p["single_mean"] - p["authors_single"]
        rows.append(
            f"| {int(p['T'])} | {p['alpha']:.5f} | {p['alpha_over_alpha_PR']:.2f} | {int(p['n'])} | "
            f"{p['se_mmse']:.3f} | {p['averaged']:.3f} ± {p['averaged_sem']:.3f} | "
            f"{p['authors_averaged']:.3f} ± {p['authors_averaged_std']:.3f} | {da:+.3f} | "
            f"{p['single_mean']:.3f} ± {p['single_sem']:.3f} | {p['authors_single']:.3f} ± "
            f"{p['authors_single_std']:.3f} | {ds:+.3f} |")
    return "\n".join([head] + rows)


def gd_collapse(out: Path, quick: bool = False) -> list[Path]:
    """MMSE vs α(T² + T − 2), T = 2…6: SE curves, the authors' GD (open) and ours (filled)."""
    import derive
    from matplotlib.figure import Figure

    ref = json.loads(REFERENCE.read_text())
    pts = _with_se(load_points())
    x = np.linspace(0.002, 0.745, 25 if quick else 80)
    fig = Figure(figsize=(7.0, 4.8))
    ax = fig.subplots()
    for T in range(2, 7):
        r = T * T + T - 2
        ds = derive.solve(MODEL, alpha=x / r, T=float(T), rho=RHO)
        ax.plot(x, ds.mmse.values, color=f"C{T - 2}", lw=3.0 - 0.4 * T, alpha=0.7,
                label=f"T = {T}: SE (Bayes-optimal)")
        col = f"C{T - 2}"
        for kind, mk in (("averaged", "o"), ("single", "^")):
            a = np.asarray(ref["tables"][f"GD_{kind}_T{T}_rho0.5"]["rows"], float)
            ax.errorbar(a[:, 0] * r, a[:, 1], a[:, 2], fmt=mk, ms=4, mfc="none", color=col, lw=0.6,
                        alpha=0.8)
        mine = [p for p in pts if int(p["T"]) == T]
        if mine:
            xs = np.array([p["alpha"] * r for p in mine])
            ax.errorbar(xs, [p["averaged"] for p in mine], [2 * p["averaged_sem"] for p in mine], fmt="D",
                        ms=7, color=col, mec="k", zorder=5)
            ax.errorbar(xs, [p["single_mean"] for p in mine], [2 * p["single_sem"] for p in mine], fmt="^",
                        ms=7, color=col, mec="k", zorder=5)
    ax.plot([0.745, 1.4], [0, 0], color="0.6", lw=0.8)
    ax.axvline(0.75, color="0.5", ls=":", lw=0.8)
    ax.text(0.76, 2.0, "α_PR", fontsize=7, color="0.4")
    ax.set(xlabel="α (T² + T − 2)", ylabel="‖Ŝ − S*‖²_F / d", xlim=(0, 1.2), ylim=(-0.03, 2.3),
           title="softmax, ρ = 0.5, d = 200, Adam lr 0.1, 1000 full-batch steps (± 1 std / ± 2 s.e.m.)\n"
                 "GD, 32 students averaged: ○ authors (16 data sets), ◆ ours (1–2 data sets); "
                 "single student: △ authors, ▲ ours")
    ax.title.set_fontsize(8)
    ax.legend(fontsize=7)
    fig.tight_layout()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    png = out / "gd_collapse.png"
    fig.savefig(png, dpi=120)
    return [png, write_csv(out / "gd_points.csv", pts)] if out != FIG_DIR else [png]


def main(out_dir: Path = FIG_DIR, quick: bool = False, seed: int = 0, echo=print) -> list[Path]:
    files = gd_collapse(Path(out_dir), quick)
    echo(markdown_table(_with_se(load_points())))
    return files


def _cli(argv: Sequence[str] | None = None) -> None:
    import argparse

    ap = argparse.ArgumentParser(description=(__doc__ or MODEL).splitlines()[0])
    ap.add_argument("--out", type=Path, default=FIG_DIR)
    ap.add_argument("--quick", action="store_true")
    a = ap.parse_args(argv)
    for f in main(a.out, quick=a.quick):
        print(f"wrote {f}")


if __name__ == "__main__":
    _cli()
