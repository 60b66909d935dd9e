r"""Reproduce: *Bayes-optimal learning of an extensive-width attention layer* (attention-indexed
model, Boncoraglio, Troiani, Erba, Zdeborová, arXiv:2506.01582, NeurIPS 2025), T ≥ 2 tokens.

Project spec: ``shared/specs/attention_indexed_multitoken.md``. ``attn-theory reproduce
attention-indexed [--quick]`` (minutes; ``--quick`` fewer points).

Claims reproduced, and one corrected:

1. Softmax, any T: the Bayes-optimal MMSE depends on α only through α(T² + T − 2) (the rank of
   the log-ratio map, derived by SymPy); curves for T = 2…6 collapse, with the authors' GD and
   AMP points and our GAMP-RIE (``tests/data/attention_indexed_amp.json``).
2. Hardmax, T = 2: the authors' state evolution uses the bivariate normal density where the
   derivative of its CDF belongs. The corrected SE (SymPy gradient) is far lower than the
   published curves; an independent GAMP-RIE with the correct gradient follows the corrected SE,
   and the same GAMP with the authors' gradient is sub-optimal. ᾱ_c (ρ → 0): 0.4034 vs 0.5633.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import numpy as np

from derivations._common import run_cli, write_csv

MODEL = "attention-indexed"
ROOT = Path(__file__).resolve().parents[1]
REFERENCE = ROOT / "tests" / "data" / "reference" / "attention_indexed_multitoken.json"
AMP_RECORD = ROOT / "tests" / "data" / "attention_indexed_amp.json"
GD_RECORD = ROOT / "tests" / "data" / "attention_indexed_gd.json"

__all__ = ["main", "print_derivation", "softmax_collapse", "hardmax_comparison"]


def print_derivation(echo=print) -> None:
    import derive

    m = derive.models.get(MODEL)
    echo("rank of the softmax log-ratio map (SymPy Matrix.rank), T: (rank, V E[g^T C g], T(T+1)/2 - 1)")
    for T, v in m.check_rank(5).items():
        echo(f"  T = {T}: {v}")
    echo(f"softmax channel (derived): qhat = {m.softmax_qhat}")
    echo(f"hardmax T = 2, Z_out = {m.z_out(False)}")
    for der in ("correct", "authors"):
        e = m.weak_recovery_threshold_expr(2, "hardmax", der)
        echo(f"rho -> 0 weak recovery, {der} derivative: alpha_bar_c = {e} = "
             f"{m.weak_recovery_threshold(T=2, activation='hardmax', derivative=der):.7f}")


def _load(path: Path) -> object:
    return json.loads(path.read_text()) if path.exists() else None


def softmax_collapse(out: Path, quick: bool) -> list[Path]:
    """MMSE vs α(T² + T − 2) for T = 2…6 at ρ = 0.5, with GD/AMP markers."""
    import derive
    from matplotlib.figure import Figure

    rho = 0.5
    x = np.linspace(0.005, 0.745, 20 if quick else 60)          # α(T² + T − 2), up to α_PR
    ref = _load(REFERENCE)
    amp = _load(AMP_RECORD) or []
    gd = _load(GD_RECORD)
    fig = Figure(figsize=(6.4, 4.4))
    ax = fig.subplots()
    rows = []
    for T in range(2, 7):
        r = T * T + T - 2
        ds = derive.solve(MODEL, alpha=x / r, T=float(T), rho=rho)
        ax.plot(x, ds.mmse.values, lw=3.2 - 0.4 * T, alpha=0.8, label=f"SE, T = {T}")
        rows += [dict(T=T, alpha=a / r, alpha_times_rank2=a, mmse=v, converged=bool(c))
                 for a, v, c in zip(x, ds.mmse.values, ds.converged.values)]
    if ref:
        for T in range(2, 7):
            t = ref["tables"].get(f"GD_averaged_T{T}_rho0.5")
            if t:
                a = np.asarray(t["rows"], float)
                ax.errorbar(a[:, 0] * (T * T + T - 2), a[:, 1], a[:, 2], fmt="o", ms=3, mfc="none",
                            color=f"C{T - 2}", lw=0.8)
            t = ref["tables"].get(f"AMP_softmax_T{T}_rho0.5")
            if t:
                a = np.asarray(t["rows"], float)
                ax.plot(a[:, 0] * (T * T + T - 2), a[:, 1], "s", ms=4, mfc="none", color=f"C{T - 2}")
    for rec in amp:
        if rec["activation"] == "softmax" and rec["rho"] == rho and rec["d"] == max(
                r["d"] for r in amp if r["activation"] == "softmax"):
            T = rec["T"]
            ax.errorbar(rec["alpha"] * (T * T + T - 2), rec["mean"], 2 * rec["sem"], fmt="*", ms=9,
                        color=f"C{T - 2}", mec="k")
    if gd:
        T = gd["T"]
        ax.plot(gd["alpha"] * (T * T + T - 2), np.mean(gd["averaged"]), "D", ms=7, color=f"C{T - 2}",
                mec="k")
    ax.set(xlabel="α (T² + T − 2)", ylabel="MMSE = Q₀ − q", ylim=(-0.02, 1.1), xlim=(0, 1.3),
           title="softmax, ρ = 0.5: SE for T = 2…6 collapse (○ authors' averaged GD, □ their AMP, "
                 "★ our GAMP-RIE d = 100, ◆ our GD)")
    ax.title.set_fontsize(7)
    ax.legend(fontsize=7)
    fig.tight_layout()
    png = out / "aim_softmax_collapse.png"
    fig.savefig(png, dpi=120)
    return [png, write_csv(out / "aim_softmax_collapse.csv", rows)]


def hardmax_comparison(out: Path, quick: bool) -> list[Path]:
    """Hardmax T = 2 at ρ = 0.5: corrected SE, SE with the authors' derivative, their CSV, GAMP-RIE."""
    import derive
    from matplotlib.figure import Figure

    rho = 0.5
    alphas = np.geomspace(0.02, 10.0, 8 if quick else 20)
    ref = _load(REFERENCE)
    amp = _load(AMP_RECORD) or []
    fig = Figure(figsize=(6.4, 4.4))
    ax = fig.subplots()
    rows = []
    for der, style in (("correct", "-"), ("authors", "--")):
        ds = derive.solve(MODEL, alpha=alphas, T=2.0, rho=rho, activation="hardmax", derivative=der)
        ax.loglog(alphas, ds.mmse.values, style, color="C0" if der == "correct" else "C3",
                  label=f"SE, {'correct ∂Φ₂' if der == 'correct' else 'authors’ φ₂'} derivative")
        rows += [dict(derivative=der, alpha=a, mmse=v, converged=bool(c))
                 for a, v, c in zip(alphas, ds.mmse.values, ds.converged.values)]
    if ref:
        a = np.asarray(ref["tables"]["SE_hardmax_T2_rho0.5"]["rows"], float)
        ax.loglog(a[::3, 0], a[::3, 1], "x", color="C3", ms=5, label="authors' SE CSV")
    for der, col in (("correct", "C0"), ("authors", "C3")):
        pts = [r for r in amp if r["activation"] == "hardmax" and r["derivative"] == der]
        if pts:
            dmax = max(r["d"] for r in pts)
            for r in pts:
                # the authors' g makes GAMP diverge at α = 1: show its best iterate (an oracle stop)
                val, err = (r["best_mean"], 0.0) if der == "authors" else (r["mean"], 2 * r["sem"])
                ax.errorbar(r["alpha"] * (1 + 0.02 * (r["d"] - dmax) / 30), val, err,
                            fmt="o" if r["d"] == dmax else ".", color=col, mfc="none" if r["d"] != dmax else col,
                            ms=6 if r["d"] == dmax else 4,
                            label=(f"GAMP-RIE, {der} g, d = {dmax}" + (" (best iterate)" if der == "authors" else ""))
                            if r["d"] == dmax and r is pts[-1] else None)
    ax.set(xlabel="α = n/d²", ylabel="MMSE", title="hardmax, T = 2, ρ = 0.5 (small dots: d = 40, 70)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    png = out / "aim_hardmax_derivative.png"
    fig.savefig(png, dpi=120)
    return [png, write_csv(out / "aim_hardmax_derivative.csv", rows)]


def main(out_dir: Path, quick: bool = False, seed: int = 0, echo=print) -> list[Path]:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    print_derivation(echo)
    return softmax_collapse(out, quick) + hardmax_comparison(out, quick)


def _cli(argv: Sequence[str] | None = None) -> None:
    run_cli(main, MODEL, __doc__, argv)


if __name__ == "__main__":
    _cli()
