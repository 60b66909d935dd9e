r"""Reproduce: *Bayes-optimal learning of an extensive-width neural network from quadratically
many samples* (Maillard, Troiani, Martin, Krzakala, Zdeborová 2024) — the T = 1 attention-indexed model.

arXiv:2408.03733. Project spec: ``shared/specs/bayes_optimal_sequence_models.md`` §B3.

Claims reproduced (the paper's main figure, Bayes-optimal generalisation error vs α = n/d²):

1. Without noise the error vanishes at α_PR = κ − κ²/2 (κ < 1) and 1/2 (κ ≥ 1), the number of
   degrees of freedom of a rank-κd symmetric matrix per d²/2 samples.
2. With noise Δ > 0 the error decreases smoothly with no transition.

All numbers come from ``derive.solve("extensive-width-quadratic", ...)``; the authors'
``Theory_noise.py`` values (``shared/reference``) are overlaid. ``attn-theory reproduce
extensive-width-quadratic [--quick]`` (seconds).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Sequence

import numpy as np

from derivations._common import echo_derivation, output_folder, save_figure, write_csv, write_summary

MODEL = "extensive-width-quadratic"
REFERENCE = Path(__file__).resolve().parents[2] / "shared" / "reference" / "extensive_width_quadratic.json"

__all__ = ["main", "print_derivation", "se_trajectory", "amp_vs_se", "AMP_POINT"]

#: the AMP check's parameters: α = 0.25, κ = 1, Δ = 0.1, 8 iterations (cost ∝ α d⁴ per iteration)
AMP_POINT = dict(alpha=0.25, kappa=1.0, delta=0.1, n_iter=8)


def print_derivation(echo=print) -> None:
    echo_derivation(MODEL, lambda m: [
        "MP(1/kappa) + semicircle(Delta_eff): derived cubic for the Stieltjes transform G:",
        f"  {m.cubic.as_expr()} = 0",
        f"  stated fixed-point equation rearranged (derived): qhat = {m.qhat_map}; "
        f"e_gen at the fixed point = {m.gen_error_at_fixed_point}"], echo)


def main(out_dir: Path, quick: bool = False, echo=print) -> list[Path]:
    import derive
    from matplotlib.figure import Figure

    out = output_folder(out_dir)
    print_derivation(echo)
    alphas = np.linspace(0.01, 0.7, 15 if quick else 70)
    kappas, deltas = (0.5, 1.0, 2.0), (0.0, 0.25)
    ds = derive.solve(MODEL, alpha=alphas, kappa=np.array(kappas), delta=np.array(deltas))
    ref = json.loads(REFERENCE.read_text())["table"] if REFERENCE.exists() else []
    fig = Figure(figsize=(9, 4))
    axes = fig.subplots(1, 2, sharey=True)
    rows = []
    for k_i, k in enumerate(kappas):
        for d_i, dl in enumerate(deltas):
            y = ds.gen_error.values[:, k_i, d_i]
            ax = axes[d_i]
            ax.plot(alphas, y, label=f"κ = {k}")
            if dl == 0:
                ax.axvline(float(ds.alpha_pr.values[0, k_i, d_i]), color=ax.lines[-1].get_color(), ls=":", lw=0.8)
            pts = [r for r in ref if r["kappa"] == k and r["Delta"] == dl]
            ax.plot([r["alpha"] for r in pts], [r["gen_error"] for r in pts], "kx", ms=5)
            rows += [dict(kappa=k, delta=dl, alpha=a, gen_error=v, converged=bool(c))
                     for a, v, c in zip(alphas, y, ds.converged.values[:, k_i, d_i])]
    for ax, dl in zip(axes, deltas):
        ax.set(xlabel="α = n/d²", title=f"Δ = {dl} (× authors' values; dotted: α_PR)")
        ax.legend(fontsize=8)
    axes[0].set_ylabel("Bayes-optimal generalisation error")
    fig.tight_layout()
    png = save_figure(fig, out / "ewq_gen_error.png")
    csvp = write_csv(out / "ewq_gen_error.csv", rows)
    gaps = []
    for r in ref:
        v = float(derive.solve(MODEL, alpha=r["alpha"], kappa=r["kappa"], delta=r["Delta"]).gen_error)
        gaps.append(abs(v - r["gen_error"]))
    summary = write_summary(out, MODEL, f"Figure `{png.name}`, data `{csvp.name}`.", [
        f"non-converged points: {int((~ds.converged.values).sum())}",
        f"max |ours − authors'| over {len(gaps)} reference points: "
        f"{max(gaps) if gaps else float('nan'):.2e} (their quadrature tolerance is 1e-4)",
        "α_PR: κ − κ²/2 (κ < 1), 1/2 (κ ≥ 1); equals lim mmse_RIE(δ)/(2δ) (tested)"], echo)
    return [png, csvp, summary]


def se_trajectory(alpha: float, kappa: float, delta: float, n_iter: int) -> np.ndarray:
    """State evolution m^{t+1} = mmse_RIE((Δ + 2m^t)/(4α)) from the uninformed m^0 = 1/κ (the
    model's undamped map), ``n_iter + 1`` values."""
    import derive

    model = derive.models.get(MODEL)
    ms = [1.0 / kappa]
    for _ in range(n_iter):
        ms.append(float(model.se_map(np.array([ms[-1]]), np.array([alpha]), np.array([kappa]),
                                     np.array([delta]))[0]))
    return np.array(ms)


def amp_vs_se(dims: Sequence[int], seeds: Sequence[int] | dict, *, alpha: float, kappa: float,
              delta: float, n_iter: int, echo=print) -> dict:
    """GAMP-RIE (``numerics.amp.extensive_width_quadratic``) at each ``d`` and seed vs the state
    evolution from the same start. ``seeds``: one list for all d, or ``{d: [seeds]}``.
    Returns ``{"se": [...], "runs": {d: [mse traces]}, "v_half": {d: [...]}}``."""
    import time

    from numerics.amp.extensive_width_quadratic import gamp_rie, sample_problem

    se = se_trajectory(alpha, kappa, delta, n_iter)
    runs: dict[int, list] = {}
    vh: dict[int, list] = {}
    for d in dims:
        for s in (seeds[d] if isinstance(seeds, dict) else seeds):
            t0 = time.perf_counter()
            prob = sample_problem(int(d), alpha, kappa, delta, np.random.default_rng([int(d), int(s)]))
            tr = gamp_rie(prob, n_iter)
            del prob
            runs.setdefault(int(d), []).append(tr.mse)
            vh.setdefault(int(d), []).append(tr.v_half)
            echo(f"d={d} seed={s} ({time.perf_counter() - t0:.1f}s): mse "
                 + " ".join(f"{v:.4f}" for v in tr.mse))
    return {"se": se.tolist(), "runs": runs, "v_half": vh,
            "params": dict(alpha=alpha, kappa=kappa, delta=delta, n_iter=n_iter)}


def amp_table(res: dict) -> str:
    """Markdown table: per iteration, SE and mean ± s.e. of AMP's MSE per d."""
    dims = sorted(res["runs"], key=int)
    head = "| t | SE m^t | " + " | ".join(f"AMP d={d} ({len(res['runs'][d])} seeds)" for d in dims) + " |"
    lines = [head, "|" + "---|" * (2 + len(dims))]
    for t, m in enumerate(res["se"]):
        cells = []
        for d in dims:
            v = np.array([r[t] for r in res["runs"][d]])
            se = v.std(ddof=1) / np.sqrt(len(v)) if len(v) > 1 else float("nan")
            cells.append(f"{v.mean():.4f} ± {se:.4f}")
        lines.append(f"| {t} | {m:.4f} | " + " | ".join(cells) + " |")
    gaps = []
    for d in dims:
        v = np.array(res["runs"][d]).mean(axis=0)
        gaps.append(f"d={d}: {np.max(np.abs(v[1:] - np.array(res['se'][1:]))):.4f}")
    lines.append("")
    lines.append("max_t |mean AMP − SE| (t ≥ 1): " + ", ".join(gaps))
    return "\n".join(lines)


def amp_figure(res: dict, path: Path) -> Path:
    """MSE per iteration: SE line, AMP mean ± s.e. per d."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5.5, 3.8))
    ax = fig.subplots()
    t = np.arange(len(res["se"]))
    ax.plot(t, res["se"], "k-", lw=1.5, label="state evolution")
    for d in sorted(res["runs"], key=int):
        v = np.array(res["runs"][d])
        err = v.std(axis=0, ddof=1) / np.sqrt(len(v)) if len(v) > 1 else None
        ax.errorbar(t, v.mean(axis=0), yerr=err, fmt="o", ms=3.5, capsize=2,
                    label=f"GAMP-RIE d = {d} ({len(v)} seeds)")
    p = res["params"]
    ax.set(xlabel="iteration t", ylabel="‖Ŝᵗ − S*‖²_F / d",
           title=f"α = {p['alpha']}, κ = {p['kappa']}, Δ = {p['delta']}")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    return Path(path)


def _cli(argv: Sequence[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=Path("results") / MODEL)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--amp", type=int, nargs="*", metavar="D",
                   help="instead: GAMP-RIE vs state evolution at these d (AMP_POINT parameters)")
    p.add_argument("--seeds", type=int, default=2)
    a = p.parse_args(argv)
    if a.amp:
        res = amp_vs_se(a.amp, list(range(a.seeds)), **AMP_POINT)
        a.out.mkdir(parents=True, exist_ok=True)
        (a.out / "amp_vs_se.json").write_text(json.dumps(res, default=float))
        print(amp_table(res))
        return
    main(a.out, quick=a.quick)


if __name__ == "__main__":
    _cli()
