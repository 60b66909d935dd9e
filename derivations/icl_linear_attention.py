r"""Reproduce: *Asymptotic theory of in-context learning by linear attention*.

Y. M. Lu, M. I. Letey, J. A. Zavatone-Veth, A. Maiti, C. Pehlevan, arXiv:2405.11751,
PNAS 122(28) e2502599122 (2025). Project spec: ``shared/specs/icl_linear_attention.md``.

The model
---------
One linear-attention layer reads a context of :math:`\ell` labelled tokens
:math:`y_i=\langle x_i,w\rangle+\epsilon_i` (:math:`x_i\sim\mathcal N(0,I_d/d)`, noise variance
:math:`\rho`) and predicts the label of a query token. Its prediction is linear in one matrix
:math:`\Gamma\in\mathbb R^{d\times(d+1)}`, fitted by ridge regression (strength :math:`\lambda`) on
:math:`n` pretraining contexts whose tasks :math:`w` come from a pool of :math:`k` tasks. In the
limit :math:`d\to\infty` with :math:`\alpha=\ell/d`, :math:`\kappa=k/d`, :math:`\tau=n/d^2` fixed,
the test errors are deterministic: :math:`e_{\rm ICL}` on fresh tasks (in-context learning) and
:math:`e_{\rm IDG}` on tasks from the pool (in-distribution generalisation).

The paper's claims reproduced here
----------------------------------
1. **Double descent in the number of pretraining contexts** (its Fig. 1). In the ridgeless limit both
   errors diverge at the interpolation threshold :math:`\tau=1` (:math:`n=d^2`, the number of
   parameters), like :math:`1/|\tau-1|`, for every context length α; any ridge
   :math:`\lambda>0` removes the peak. At finite d the threshold is :math:`n=d(d+1)`, so
   simulations are placed at :math:`\tau_{\rm eff}=n/(d(d+1))`.
2. **A transition from memorisation to in-context learning at task diversity κ = 1** (its Fig. 4).
   For :math:`\kappa<1` the trained layer only knows the span of the pretraining tasks, and it
   generalises worse to new tasks than to the pool; for :math:`\kappa>1` the two errors merge. The
   task-generalisation gap :math:`g_{\rm task}=e_{\rm ICL}-e_{\rm IDG}` tends to :math:`(1-\kappa)_+`
   as α = τ → ∞, with a kink at κ = 1.

How
---
Every theory number comes from ``derive.solve("icl-linear-attention", ...)`` (NumPy backend),
whose kernels are generated from the SymPy model ``derive.models.icl_linear_attention``; this
script types no theory formula. The derivation steps printed at the start are taken from that
model object. The finite-d checks use the independent simulator
:func:`numerics.simulate.icl_linear_attention.simulate`: it draws the task pool and the
contexts, fits Γ by ridge regression and evaluates the test error of the fitted Γ exactly
(the finite-d formula of spec §1.5, an exact average over fresh test contexts; a Monte-Carlo
estimate over fresh contexts is also recorded). It uses no asymptotic formula.

Run it with ``attn-theory reproduce icl-linear-attention [--quick]`` or
``python derivations/icl_linear_attention.py [--out DIR] [--quick]``. The default run takes
about 1–2.5 minutes on two (shared) CPU cores; ``--quick`` (smaller d and fewer trials) takes well under
a minute.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from derivations._common import run_cli, write_csv

MODEL = "icl-linear-attention"

__all__ = ["Config", "DEFAULT", "QUICK", "main", "print_derivation"]


# ----------------------------------------------------------------------------- settings
@dataclass(frozen=True)
class Config:
    """Sizes of one run. The theory grids are cheap (milliseconds); the simulations set the runtime."""

    rho: float = 0.01
    # Figure 1: double descent in tau (paper's Fig. 1; kappa = 0.5, rho = 0.01)
    dd_kappa: float = 0.5
    dd_alphas: tuple[float, ...] = (1.0, 10.0, 100.0)
    dd_tau_range: tuple[float, float] = (0.1, 10.0)
    dd_tau_points: int = 400          # log-spaced; tau = 1 is added to the grid
    dd_lams: tuple[float, ...] = (0.0, 1e-2, 0.1)
    dd_sim_taus: tuple[float, ...] = (0.2, 0.5, 0.85, 1.15, 1.5, 2.0)
    dd_sim_alphas: tuple[float, ...] = (1.0, 10.0, 100.0)
    dd_sim_lam: float = 1e-5
    dd_d: int = 40
    dd_trials: int = 5
    # Figure 2: task-diversity transition (paper's Fig. 4; tau = 0.2 alpha, rho = 0.01)
    td_alphas: tuple[float, ...] = (6.0, 10.0, 20.0, 40.0)
    td_tau_over_alpha: float = 0.2
    td_kappa_range: tuple[float, float] = (0.05, 50.0)
    td_kappa_points: int = 300        # log-spaced; kappa = 1 is added to the grid
    td_limit_alpha_tau: float = 1e8   # alpha = tau -> infinity, evaluated at this value
    td_sim_kappas: tuple[float, ...] = (0.25, 0.5, 1.0, 2.0, 4.0)
    td_sim_alpha: float = 10.0
    td_sim_tau: float = 2.0
    td_sim_lam: float = 1e-6
    td_d: int = 32
    td_trials: int = 8
    # Monte-Carlo test contexts per trial (the cross-check of the exact test error)
    n_test: int = 4096


#: default run (about 1–2.5 min on 2 cores)
DEFAULT = Config()
#: ``quick=True`` (well under a minute); tests may shrink it further with ``dataclasses.replace``
QUICK = Config(dd_d=24, dd_trials=3, dd_sim_alphas=(1.0, 10.0), td_d=20, td_trials=4)

COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd")
LAM_STYLES = {0: "-", 1: "--", 2: ":", 3: "-."}


# ----------------------------------------------------------------------------- derivation
def print_derivation(echo=print) -> None:
    """Print the key derivation steps, as SymPy holds them in the model object."""
    import sympy as sp

    import derive
    from derive.models import icl_linear_attention as icl

    m = derive.models.get(MODEL)
    s = sp.sstr

    def line(label: str, expr: Any, note: str = "") -> None:
        echo(f"  {label:<34s} {s(expr) if not isinstance(expr, str) else expr}"
             + (f"    [{note}]" if note else ""))

    echo("=" * 100)
    echo(f"{m.title}\n{m.paper}")
    echo("Derivation steps (SymPy, from derive.models.icl_linear_attention; spec section in brackets)")
    echo("=" * 100)
    echo("Definitions (stated):")
    line("q =", m.q_def, "§1.4")
    mp_def = m.equations()[1]
    line("Marchenko-Pastur trace M_k(x):", f"{s(mp_def.lhs)} = 0, M > 0", "§2.1")
    line("effective ridge eps:", f"{s(m.eps_equation)} = 0", "§2.2")
    line("D =", m.D_def, "§2.3")
    line("N =", m.N_def, "§2.3")
    line("e_IDG =", m.e_idg_def, "§2.3")
    line("e_ICL =", m.e_icl_def, "§2.3")
    line("e_train =", m.e_train_def, "§2.3, r = lam/eps")
    echo("Derived:")
    line("M_k(x) (stable root) =", m.M_closed_form, "§2.1")
    line("M'_k(x) (implicit diff.) =", m.Mprime, "§2.1")
    kinf = m.kappa_infinity
    line("kappa -> oo:", f"M = {s(kinf['M'])},  M' = {s(kinf['Mp'])}", "§2.1")
    line("lam/eps (from the eps equation) =", m.lam_over_eps, "§2.2")
    line("lim_{lam->0+} lam/eps =", m.r_ridgeless, "§2.3")
    line("eps_0 (tau<1, eliminate M) =", m.eps0, "§2.2")
    # the branch that holds at tau = 1 (its condition reduces to 1 >= 1 there)
    branch = next(e for e, cond in m.eps0.args if bool(sp.simplify(cond.subs(icl.tau, 1))))
    line("lim_{tau->1-} eps_0 =", sp.limit(branch, icl.tau, 1, "-"),
         "the effective ridge vanishes at the threshold")
    # tau > 1, lam -> 0+: eps = 0, nu = q (M, M' below are M_k(q), M'_k(q))
    sub = {icl.D: m.D_def, icl.N: m.N_def}
    above = {icl.eps: 0, icl.nu: icl.q}
    D_above = m.D_def.subs(above)
    idg_above = sp.factor(m.e_idg_def.subs(sub).subs(above))
    icl_above = m.e_icl_def.subs(sub).subs(above)
    train_above = sp.factor(m.e_train_def.subs(icl.r, m.r_ridgeless.args[1][0])
                            .subs(icl.e_idg, idg_above))
    echo("Ridgeless, tau > 1 (eps = 0, nu = q; M = M_k(q), Mp = M'_k(q)):")
    line("D =", D_above, "so tau - D = tau - 1: the pole")
    line("e_IDG =", idg_above, "OLS-like: sigma_eff^2 tau/(tau-1)")
    line("e_train =", train_above)
    line("e_ICL =", sp.collect(sp.expand(icl_above), icl.tau - 1))
    line("residue of e_ICL at tau -> 1+ =", sp.factor(sp.limit((icl.tau - 1) * icl_above, icl.tau, 1)),
         "e_ICL ~ residue/(tau-1): double descent")
    line("large tau (variance term gone):", sp.limit(icl_above, icl.tau, sp.oo))
    echo("=" * 100)


# ----------------------------------------------------------------------------- helpers
def _solve(**params: Any):
    import derive

    return derive.solve(MODEL, backend="numpy", **params)


def _seed_for(seed: int, figure: int, index: int) -> int:
    """A distinct, reproducible integer seed per simulation point."""
    return int(np.random.SeedSequence([seed, figure, index]).generate_state(1)[0])


def _mean_sem(a: np.ndarray) -> tuple[float, float]:
    a = np.asarray(a, dtype=float)
    sem = float(np.std(a, ddof=1) / math.sqrt(a.size)) if a.size > 1 else float("nan")
    return float(np.mean(a)), sem


def _log_grid(lo: float, hi: float, n: int, include: float) -> np.ndarray:
    return np.unique(np.concatenate([np.logspace(math.log10(lo), math.log10(hi), n), [include]]))


def _check_flags(ds: Any, what: str, allowed: Any) -> int:
    """Non-converged points must be exactly the expected ones (the tau = 1, lam = 0 pole)."""
    bad = ~ds["converged"].values
    unexpected = bad & ~allowed
    if unexpected.any():
        raise RuntimeError(f"{what}: {int(unexpected.sum())} theory points did not converge "
                           f"(status {np.unique(ds['status'].values[unexpected])})")
    return int(bad.sum())


def _simulate_point(*, d: int, tau: float, alpha: float, kappa: float, rho: float, lam: float,
                    trials: int, seed: int, n_test: int) -> dict[str, Any]:
    """One simulation point plus the theory at its (tau_eff, lam): one CSV row."""
    from numerics.simulate.icl_linear_attention import simulate

    t0 = time.perf_counter()
    sim = simulate(d=d, tau=tau, alpha=alpha, kappa=kappa, rho=rho, lam=lam, trials=trials,
                   seed=seed, n_test=n_test, test_error="both")
    secs = time.perf_counter() - t0
    th = _solve(tau=sim.tau_eff, alpha=alpha, kappa=kappa, rho=rho, lam=lam)
    th0 = _solve(tau=tau, alpha=alpha, kappa=kappa, rho=rho, lam=0.0)
    e_icl, e_idg = np.asarray(sim.e_icl_exact), np.asarray(sim.e_idg_exact)
    row: dict[str, Any] = dict(d=d, tau=tau, tau_eff=sim.tau_eff, alpha=alpha, kappa=kappa, rho=rho,
                               lam=lam, n=sim.n, trials=trials)
    for name, arr in (("e_icl", e_icl), ("e_idg", e_idg), ("e_train", sim.e_train)):
        row[f"{name}_mean"], row[f"{name}_sem"] = _mean_sem(arr)
    for name in ("e_icl", "e_idg", "e_train"):
        row[f"theory_{name}_at_tau_eff"] = float(th[name])
    row["seconds"] = secs
    # extra columns: gap, Monte-Carlo cross-check, nominal-tau ridgeless theory, sizes
    row["g_task_mean"], row["g_task_sem"] = _mean_sem(e_icl - e_idg)
    row["theory_g_task_at_tau_eff"] = float(th["e_icl"]) - float(th["e_idg"])
    for name in ("e_icl", "e_idg"):
        row[f"{name}_mc_mean"], row[f"{name}_mc_sem"] = _mean_sem(getattr(sim, name))
    row["theory_e_icl_at_tau_lam0"] = float(th0["e_icl"])
    row["theory_e_idg_at_tau_lam0"] = float(th0["e_idg"])
    row.update(ell=sim.ell, k=sim.k, p=sim.p, seed=seed, solver="/".join(sorted(set(sim.solver))))
    return row


def _tex(v: float) -> str:
    """A number for mathtext: powers of ten as 10^k, others with %g."""
    if v > 0 and float(np.log10(v)).is_integer() and not 0.01 < v < 1000:
        return f"10^{{{int(np.log10(v))}}}"
    return f"{v:g}"


def _rel(sim: float, th: float) -> float:
    return (sim - th) / abs(th)


# ----------------------------------------------------------------------------- figure 1
def double_descent(out: Path, cfg: Config, seed: int, echo=print) -> tuple[list[Path], list[dict]]:
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D
    from numerics.progress import progress_bar

    tau = _log_grid(*cfg.dd_tau_range, cfg.dd_tau_points, 1.0)
    t0 = time.perf_counter()
    ds = _solve(tau=tau, alpha=np.asarray(cfg.dd_alphas), lam=np.asarray(cfg.dd_lams),
                kappa=cfg.dd_kappa, rho=cfg.rho)
    pole = (ds["tau"] == 1.0) & (ds["lam"] == 0.0)
    n_flag = _check_flags(ds, "double descent", pole.broadcast_like(ds["converged"]).transpose(*ds["converged"].dims).values)
    echo(f"[fig 1] theory: {ds.attrs['n_points']} points in {time.perf_counter() - t0:.2f} s; "
         f"{n_flag} flagged (tau = 1, lam = 0: the pole, left as NaN and not drawn)")
    df = ds[["e_icl", "e_idg", "e_train", "eps", "converged", "status"]].to_dataframe().reset_index()
    df.insert(3, "kappa", cfg.dd_kappa)
    df.insert(4, "rho", cfg.rho)
    theory_csv = out / "double_descent_theory.csv"
    df.to_csv(theory_csv, index=False, float_format="%.10g")

    points = [(a, t) for a in cfg.dd_sim_alphas for t in cfg.dd_sim_taus]
    rows = []
    for i, (a, t) in enumerate(progress_bar(points, desc=f"fig 1 simulations (d={cfg.dd_d})", unit="pt")):
        rows.append(_simulate_point(d=cfg.dd_d, tau=t, alpha=a, kappa=cfg.dd_kappa, rho=cfg.rho,
                                    lam=cfg.dd_sim_lam, trials=cfg.dd_trials,
                                    seed=_seed_for(seed, 1, i), n_test=cfg.n_test))
    sim_csv = out / "double_descent_simulation.csv"
    write_csv(sim_csv, rows)

    fig = Figure(figsize=(12.5, 5.2), layout="constrained")
    axes = fig.subplots(1, 2, sharex=True)
    for ax, obs, lab in ((axes[0], "e_icl", r"$e_{\rm ICL}$ (new tasks)"),
                         (axes[1], "e_idg", r"$e_{\rm IDG}$ (pretraining tasks)")):
        ymin, ymax = np.inf, 0.0
        for ia, a in enumerate(cfg.dd_alphas):
            c = COLORS[ia % len(COLORS)]
            for il, lm in enumerate(cfg.dd_lams):
                y = ds[obs].sel(alpha=a, lam=lm).values
                ok = ds["converged"].sel(alpha=a, lam=lm).values
                style = LAM_STYLES[il % len(LAM_STYLES)]
                lw = 2.0 if lm == 0 else 1.3
                # draw the two sides of the pole separately: nothing is interpolated across tau = 1
                for side in (tau < 1, tau > 1):
                    sel = side & ok
                    ax.plot(tau[sel], y[sel], style, color=c, lw=lw, alpha=1.0 if lm == 0 else 0.75)
                ymin = min(ymin, np.nanmin(y))
            for r in rows:
                if r["alpha"] != a:
                    continue
                ax.errorbar(r["tau_eff"], r[f"{obs}_mean"], yerr=r[f"{obs}_sem"], fmt="o", ms=6,
                            color=c, mec="k", mew=0.7, capsize=3, zorder=5)
                ax.plot(r["tau_eff"], r[f"theory_{obs}_at_tau_eff"], "x", color="k", ms=5, mew=1.2,
                        zorder=6)
                ymax = max(ymax, r[f"{obs}_mean"] + r[f"{obs}_sem"])
        ax.axvline(1.0, color="0.35", ls=(0, (4, 3)), lw=1.0, zorder=1)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_ylim(0.7 * ymin, max(3 * ymax, 20.0))
        ax.set_xlim(*cfg.dd_tau_range)
        ax.set_xlabel(r"$\tau = n/d^2$ (pretraining contexts per parameter)")
        ax.set_ylabel(lab)
        ax.grid(True, which="major", alpha=0.3)
        ax.set_title(f"{lab}: $\\kappa={cfg.dd_kappa:g}$, $\\rho={cfg.rho:g}$")
    h_alpha = [Line2D([], [], color=COLORS[i % len(COLORS)], lw=2, label=rf"$\alpha={a:g}$")
               for i, a in enumerate(cfg.dd_alphas)]
    h_lam = [Line2D([], [], color="0.3", ls=LAM_STYLES[i % len(LAM_STYLES)], lw=1.6,
                    label=("theory, ridgeless $\\lambda\\to0^+$" if lm == 0
                           else f"theory, ridge $\\lambda={_tex(lm)}$"))
             for i, lm in enumerate(cfg.dd_lams)]
    h_lam.append(Line2D([], [], color="0.35", ls=(0, (4, 3)), lw=1.0,
                        label="$\\tau=1$: pole of the ridgeless curves\n(divergent, not drawn)"))
    lam_sim = _tex(cfg.dd_sim_lam)
    h_sim = [Line2D([], [], ls="", marker="o", color="0.6", mec="k",
                    label=f"simulation, $d={cfg.dd_d}$, $\\lambda={lam_sim}$: mean $\\pm$ sem of "
                          f"{cfg.dd_trials} trials,\nplaced at $\\tau_{{\\rm eff}}=n/(d(d+1))$"),
             Line2D([], [], ls="", marker="x", color="k",
                    label=f"theory at the simulation's\n$(\\tau_{{\\rm eff}}, \\lambda={lam_sim})$")]
    fig.legend(handles=h_alpha + h_lam + h_sim, loc="outside lower center", ncol=4, fontsize=9,
               frameon=False)
    fig.suptitle("Double descent in the number of pretraining contexts $n=\\tau d^2$ "
                 f"(Lu et al., Fig. 1 setting): ridgeless errors diverge at $\\tau=1$, a ridge removes the peak",
                 fontsize=11)
    png = out / "double_descent.png"
    fig.savefig(png, dpi=130)
    return [png, theory_csv, sim_csv], rows


# ----------------------------------------------------------------------------- figure 2
def task_diversity(out: Path, cfg: Config, seed: int, echo=print) -> tuple[list[Path], list[dict]]:
    import pandas as pd
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D
    from numerics.progress import progress_bar

    kappa = _log_grid(*cfg.td_kappa_range, cfg.td_kappa_points, 1.0)
    t0 = time.perf_counter()
    curves, frames = {}, []
    for a in cfg.td_alphas:
        t = cfg.td_tau_over_alpha * a
        ds = _solve(kappa=kappa, tau=t, alpha=a, rho=cfg.rho, lam=0.0)
        _check_flags(ds, f"task diversity alpha={a:g}", np.zeros(kappa.shape, bool))
        curves[a] = ds
        frames.append(pd.DataFrame(dict(curve=f"alpha={a:g}", kappa=kappa, alpha=a, tau=t, rho=cfg.rho,
                                        lam=0.0, e_icl=ds["e_icl"].values, e_idg=ds["e_idg"].values,
                                        g_task=ds["e_icl"].values - ds["e_idg"].values,
                                        e_train=ds["e_train"].values)))
    big = cfg.td_limit_alpha_tau
    lim = _solve(kappa=kappa, tau=big, alpha=big, rho=cfg.rho, lam=0.0)
    _check_flags(lim, "task diversity limit", np.zeros(kappa.shape, bool))
    g_lim = lim["e_icl"].values - lim["e_idg"].values
    frames.append(pd.DataFrame(dict(curve="alpha=tau->inf", kappa=kappa, alpha=big, tau=big, rho=cfg.rho,
                                    lam=0.0, e_icl=lim["e_icl"].values, e_idg=lim["e_idg"].values,
                                    g_task=g_lim, e_train=lim["e_train"].values)))
    theory_csv = out / "task_diversity_theory.csv"
    pd.concat(frames).to_csv(theory_csv, index=False, float_format="%.10g")
    at = _solve(kappa=np.array([0.5, 1.0, 2.0]), tau=big, alpha=big, rho=cfg.rho, lam=0.0)
    chk = dict(zip(at["kappa"].values, (at["e_icl"] - at["e_idg"]).values))
    echo(f"[fig 2] theory: {len(frames) * kappa.size} points in {time.perf_counter() - t0:.2f} s; "
         f"limit g_task at alpha=tau={big:g}: "
         + ", ".join(f"g({k:g}) = {v:.5g}" for k, v in chk.items()))

    rows = []
    for i, k in enumerate(progress_bar(cfg.td_sim_kappas, desc=f"fig 2 simulations (d={cfg.td_d})", unit="pt")):
        rows.append(_simulate_point(d=cfg.td_d, tau=cfg.td_sim_tau, alpha=cfg.td_sim_alpha, kappa=k,
                                    rho=cfg.rho, lam=cfg.td_sim_lam, trials=cfg.td_trials,
                                    seed=_seed_for(seed, 2, i), n_test=cfg.n_test))
    sim_csv = out / "task_diversity_simulation.csv"
    write_csv(sim_csv, rows)

    fig = Figure(figsize=(15, 5.4), layout="constrained")
    axes = fig.subplots(1, 3, sharex=True)
    panels = (("e_icl", r"$e_{\rm ICL}$ (new tasks)"), ("e_idg", r"$e_{\rm IDG}$ (pretraining tasks)"),
              ("g_task", r"$g_{\rm task}=e_{\rm ICL}-e_{\rm IDG}$"))
    for ax, (obs, lab) in zip(axes, panels):
        for ia, a in enumerate(cfg.td_alphas):
            ds = curves[a]
            y = ds["e_icl"].values - ds["e_idg"].values if obs == "g_task" else ds[obs].values
            ax.plot(kappa, y, color=COLORS[ia % len(COLORS)], lw=1.8,
                    label=rf"$\alpha={a:g}$, $\tau={cfg.td_tau_over_alpha * a:g}$")
        if obs == "g_task":
            ax.plot(kappa, g_lim, color="k", ls="--", lw=1.6,
                    label=r"$\alpha=\tau\to\infty$ (theory at $10^8$): $(1-\kappa)_+$")
        ia_sim = cfg.td_alphas.index(cfg.td_sim_alpha) if cfg.td_sim_alpha in cfg.td_alphas else 0
        for r in rows:
            ax.errorbar(r["kappa"], r[f"{obs}_mean"], yerr=r[f"{obs}_sem"], fmt="o", ms=6,
                        color=COLORS[ia_sim % len(COLORS)], mec="k", mew=0.7, capsize=3, zorder=5)
            ax.plot(r["kappa"], r[f"theory_{obs}_at_tau_eff"], "x", color="k", ms=5, mew=1.2, zorder=6)
        ax.axvline(1.0, color="0.35", ls=(0, (4, 3)), lw=1.0, zorder=1)
        ax.set_xscale("log")
        if obs == "e_idg":
            ax.set_yscale("log")
        ax.set_xlim(*cfg.td_kappa_range)
        ax.set_xlabel(r"$\kappa = k/d$ (task diversity)")
        ax.set_ylabel(lab)
        ax.grid(True, which="major", alpha=0.3)
        ax.set_title(lab)
    axes[2].set_ylim(bottom=-0.02)
    handles, _ = axes[2].get_legend_handles_labels()
    handles += [
        Line2D([], [], color="0.35", ls=(0, (4, 3)), lw=1.0, label=r"$\kappa=1$ (the transition)"),
        Line2D([], [], ls="", marker="o", color=COLORS[ia_sim % len(COLORS)], mec="k",
               label=f"simulation $d={cfg.td_d}$, $\\alpha={cfg.td_sim_alpha:g}$, $\\tau={cfg.td_sim_tau:g}$, "
                     f"$\\lambda={_tex(cfg.td_sim_lam)}$\n(mean $\\pm$ sem of {cfg.td_trials} trials)"),
        Line2D([], [], ls="", marker="x", color="k",
               label="theory at the simulation's\n$(\\tau_{\\rm eff}=n/(d(d+1)),\\lambda)$"),
    ]
    fig.legend(handles=handles, loc="outside lower center", ncol=5, fontsize=9, frameon=False)
    fig.suptitle("Memorisation $\\to$ in-context learning transition in task diversity "
                 f"(Lu et al., Fig. 4 setting: $\\tau=0.2\\alpha$, $\\rho={cfg.rho:g}$, ridgeless theory)",
                 fontsize=11)
    png = out / "task_diversity.png"
    fig.savefig(png, dpi=130)
    return [png, theory_csv, sim_csv], rows


# ----------------------------------------------------------------------------- summary
def _table(rows: list[dict], key: str) -> list[str]:
    out = [f"| {key} | alpha | tau | tau_eff | n | e_ICL sim | e_ICL theory@tau_eff | gap | "
           "e_IDG sim | e_IDG theory@tau_eff | gap | e_train sim | e_train theory | s |",
           "|" + "---|" * 14]
    for r in rows:
        out.append(
            f"| {r[key]:g} | {r['alpha']:g} | {r['tau']:g} | {r['tau_eff']:.4g} | {r['n']} | "
            f"{r['e_icl_mean']:.4g} ± {r['e_icl_sem']:.2g} | {r['theory_e_icl_at_tau_eff']:.4g} | "
            f"{_rel(r['e_icl_mean'], r['theory_e_icl_at_tau_eff']):+.1%} | "
            f"{r['e_idg_mean']:.4g} ± {r['e_idg_sem']:.2g} | {r['theory_e_idg_at_tau_eff']:.4g} | "
            f"{_rel(r['e_idg_mean'], r['theory_e_idg_at_tau_eff']):+.1%} | "
            f"{r['e_train_mean']:.3g} | {r['theory_e_train_at_tau_eff']:.3g} | {r['seconds']:.1f} |")
    return out


def _summary(out: Path, cfg: Config, seed: int, quick: bool, rows1: list[dict], rows2: list[dict],
             seconds: float) -> Path:
    from derive.solve import package_version

    def worst(rows: list[dict], obs: str) -> float:
        return max(abs(_rel(r[f"{obs}_mean"], r[f"theory_{obs}_at_tau_eff"])) for r in rows)

    mc_dev = max(abs(r[f"{o}_mc_mean"] - r[f"{o}_mean"]) / max(r[f"{o}_mc_sem"], 1e-300)
                 for r in rows1 + rows2 for o in ("e_icl", "e_idg"))
    lines = [
        "# Reproduction: in-context learning by linear attention (Lu et al. 2024)",
        "",
        f"attention-theory {package_version()}; `main(quick={quick})`, seed {seed}, NumPy backend; "
        f"total runtime **{seconds:.1f} s**.",
        "",
        "Theory: `derive.solve('icl-linear-attention', ...)`. Simulation: "
        "`numerics.simulate.icl_linear_attention.simulate` (independent finite-d simulator; ridge fit of Γ on "
        "n contexts, test error of the fitted Γ evaluated exactly over fresh test contexts (spec §1.5); "
        "values are mean ± sem over trials). The theory column is evaluated at the simulation's "
        "τ_eff = n/(d(d+1)) and λ (the finite-d interpolation threshold is n = d(d+1)). "
        "gap = (sim − theory)/theory.",
        "",
        "## Figure 1: double descent (`double_descent.png`)",
        "",
        f"Theory: τ ∈ [{cfg.dd_tau_range[0]:g}, {cfg.dd_tau_range[1]:g}] ({cfg.dd_tau_points} log points + τ = 1), "
        f"α ∈ {{{', '.join(f'{a:g}' for a in cfg.dd_alphas)}}}, κ = {cfg.dd_kappa:g}, ρ = {cfg.rho:g}, "
        f"λ ∈ {{{', '.join(f'{l:g}' for l in cfg.dd_lams)}}} (λ = 0 is the ridgeless limit; its τ = 1 point is "
        "the pole, flagged and not drawn). "
        f"Simulation: d = {cfg.dd_d}, {cfg.dd_trials} trials per point, λ = {cfg.dd_sim_lam:g}, "
        f"p = d(d+1) = {cfg.dd_d * (cfg.dd_d + 1)} parameters.",
        "",
        *_table(rows1, "kappa"),
        "",
        "## Figure 2: task-diversity transition (`task_diversity.png`)",
        "",
        f"Theory: κ ∈ [{cfg.td_kappa_range[0]:g}, {cfg.td_kappa_range[1]:g}] ({cfg.td_kappa_points} log points + κ = 1), "
        f"τ = {cfg.td_tau_over_alpha:g}α, α ∈ {{{', '.join(f'{a:g}' for a in cfg.td_alphas)}}}, ρ = {cfg.rho:g}, "
        f"ridgeless; limit curve at α = τ = {cfg.td_limit_alpha_tau:g}. "
        f"Simulation: d = {cfg.td_d}, α = {cfg.td_sim_alpha:g}, τ = {cfg.td_sim_tau:g}, λ = {cfg.td_sim_lam:g}, "
        f"{cfg.td_trials} trials per point.",
        "",
        *_table(rows2, "kappa"),
        "",
        "## Reading the gaps",
        "",
        f"* Largest |gap|: fig. 1 e_IDG {worst(rows1, 'e_idg'):.1%}, e_ICL {worst(rows1, 'e_icl'):.1%}; "
        f"fig. 2 e_IDG {worst(rows2, 'e_idg'):.1%}, e_ICL {worst(rows2, 'e_icl'):.1%}.",
        "* The theory is the d → ∞ limit. e_IDG and e_train approach it at O(1/d). e_ICL for κ < 1 "
        "carries a known positive finite-d bias of roughly +5/d (spec §4: e.g. 1.08 at d = 32, 0.97 at d = 48 "
        "against 0.891 at τ = 2, α = 10, κ = 0.5), so its gaps here are expected to be positive and of order "
        f"5/d = {5 / cfg.dd_d:.2f} (fig. 1) and {5 / cfg.td_d:.2f} (fig. 2) in absolute terms. Near the peak "
        "(τ = 0.85, 1.15) the curves are steep and trial-to-trial fluctuations are large.",
        f"* Cross-check: the Monte-Carlo test errors (4096 fresh contexts per trial, columns `*_mc_*`) differ "
        f"from the exact ones by at most {mc_dev:.1f} MC standard errors.",
        "",
        "Files: `double_descent_theory.csv`, `double_descent_simulation.csv`, `task_diversity_theory.csv`, "
        "`task_diversity_simulation.csv` (all columns documented in `derivations/icl_linear_attention.py`).",
    ]
    path = out / "summary.md"
    path.write_text("\n".join(lines) + "\n")
    return path


# ----------------------------------------------------------------------------- entry point
def main(out_dir: Path, quick: bool = False, seed: int = 0, config: Config | None = None,
         echo=print) -> list[Path]:
    """Run the derivation, both figures and the summary; return the written files.

    ``config`` overrides the sizes (default: :data:`QUICK` if ``quick`` else :data:`DEFAULT`).

    Simulation CSV columns: d, tau (nominal), tau_eff = n/(d(d+1)), alpha, kappa, rho, lam (the
    simulation's ridge), n, trials, e_{icl,idg,train}_{mean,sem} (exact test errors of the fitted
    Γ and training MSE, mean and sem over trials), theory_e_{icl,idg,train}_at_tau_eff (theory at the
    simulation's tau_eff and lam), seconds, then g_task_{mean,sem}, theory_g_task_at_tau_eff,
    e_{icl,idg}_mc_{mean,sem} (Monte-Carlo test errors), theory_e_{icl,idg}_at_tau_lam0 (ridgeless
    theory at the nominal tau), ell, k, p, seed, solver.
    """
    cfg = config if config is not None else (QUICK if quick else DEFAULT)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    print_derivation(echo)
    files1, rows1 = double_descent(out, cfg, seed, echo)
    files2, rows2 = task_diversity(out, cfg, seed, echo)
    seconds = time.perf_counter() - t0
    summary = _summary(out, cfg, seed, quick, rows1, rows2, seconds)
    echo(summary.read_text())
    return files1 + files2 + [summary]


def _cli(argv: Sequence[str] | None = None) -> None:
    run_cli(main, MODEL, __doc__, argv, quick_help="smaller d and fewer trials (< 1 min)")


if __name__ == "__main__":
    _cli()
