r"""Reproduce: tokens as interacting particles (self-attention dynamics on the sphere).

Geshkovski, Letrouit, Polyanskiy, Rigollet, *A mathematical perspective on Transformers*
(arXiv:2312.10794) and the surrounding line of work (spec ``shared/specs/token_dynamics.md``).

What is reproduced
------------------
1. **Phase diagram** (the papers' Fig. "phase.diag.Id"): n = 32 tokens, i.i.d. uniform on
   $\mathbb S^{d-1}$, d ∈ {8, 128, 1024}, SA dynamics with Q = K = V = I, explicit Euler
   $x\leftarrow\mathrm{normalize}(x+\eta\,\dot x)$ with η = 0.1 up to T = 30. Plotted: the fraction
   of pairs with $\langle x_i,x_j\rangle>0.999$ on the (t, β) grid, with the equiangular boundary
   $\gamma_\beta(t)=0.999$ (closed form, n = 32) overlaid. The large-d theorem says the diagram
   follows the boundary as d grows: the gap between the simulated half-clustering time and
   the boundary is tabulated per d.
2. **Equiangular overlay**: particle simulation from an orthonormal start vs the closed-form
   hitting times (exponential integral), SA and USA.
3. **Cluster formation and metastability** (d = 2): cluster counts vs t for several β from a
   uniform start, compared with the fastest linearly unstable mode $k^*(\beta)$ of the uniform
   state; two well-separated groups: the within-group collapse time $T_1$ and the merging time
   $T_2$ with $\log T_2$ vs β (prediction: slope → $1-\cos\Delta$).
4. **Long context** (β = γ log n, one layer): the three limits 1, 4ρ/(1+3ρ), ρ out to n = 10⁶.
5. **Burger et al.**: 4-particle stationarity roots; energy maximisers on the top eigenvector.
6. **Concentration** (Bungert et al.): $W_2(\mu_t,\pi_\#\mu_0)$ vs t and β, exact (assignment),
   compared with $\sqrt{\log(\beta+1)/\beta}$.

Every closed form comes from ``derive.models.get("token-dynamics")`` (SymPy → generated
kernels); every particle simulation uses the generated batched velocity kernels and the
generic integrators of :mod:`numerics.particles`. Run with ``attn-theory reproduce
token-dynamics [--quick]`` or ``python derivations/token_dynamics.py [--out DIR] [--quick]``.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from derivations._common import run_cli, save_figure, write_csv

MODEL = "token-dynamics"

__all__ = ["Config", "DEFAULT", "QUICK", "main", "print_derivation", "phase_diagram",
           "metastability", "concentration"]


@dataclass(frozen=True)
class Config:
    """Sizes of one run (the paper used batch 2048 on a GPU; CPU defaults are smaller)."""

    n: int = 32
    pd_dims: tuple[int, ...] = (8, 128, 1024)
    pd_batch: tuple[int, ...] = (32, 16, 6)      # systems per beta, per d
    pd_betas: int = 18
    pd_beta_range: tuple[float, float] = (0.5, 9.0)
    pd_h: float = 0.1
    pd_T: float = 30.0
    pd_dt_check: float = 0.5
    eq_betas: tuple[float, ...] = (1.0, 4.0, 9.0)
    eq_n: int = 32
    cl_n: int = 32
    cl_betas: tuple[float, ...] = (1.0, 4.0, 9.0, 16.0, 25.0)
    cl_batch: int = 16
    cl_T: float = 60.0
    ms_betas: tuple[float, ...] = (2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0)
    ms_n: int = 16
    ms_batch: int = 4
    ms_delta: float = math.pi / 2
    ms_width: float = 0.3
    lc_rho: float = 0.5
    bu_lambda2: tuple[float, ...] = (0.5, 0.8, 1.2)
    co_n: int = 200
    co_betas: tuple[float, ...] = (10.0, 20.0, 40.0, 80.0, 160.0, 320.0)
    co_seeds: int = 4
    co_T: float = 20.0


DEFAULT = Config()
QUICK = Config(pd_batch=(8, 4, 2), pd_betas=8, cl_betas=(1.0, 9.0, 25.0), cl_batch=6, cl_T=30.0,
               ms_betas=(3.0, 5.0, 7.0), ms_batch=2, co_n=100, co_betas=(10.0, 40.0, 160.0),
               co_seeds=2, eq_betas=(1.0, 4.0))


# ----------------------------------------------------------------------------- helpers
def _model():
    import derive

    return derive.models.get(MODEL)


def _special():
    import scipy.special

    return scipy.special


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


# ----------------------------------------------------------------------------- derivation
def print_derivation(echo=print) -> None:
    """The derivation steps as the SymPy model holds them."""
    import sympy as sp

    m = _model()
    s = sp.sstr
    echo("=" * 100)
    echo(f"{m.title}\n{m.paper}")
    echo("Derivation steps (SymPy, derive.models.token_dynamics; spec section in brackets)")
    echo("=" * 100)
    from derive.models.token_dynamics import velocity_program

    vp = {nm: ex for nm, _i, ex in velocity_program("SA", "general").statements}
    for nm in ("S", "L", "W", "U", "v"):
        echo(f"  {nm:<6s} = {s(vp[nm])}")
    echo("Equiangular ansatz <x_i,x_j> = rho substituted into the velocity [§2.1]:")
    for dyn in ("SA", "USA"):
        echo(f"  d rho/dt ({dyn}) = {s(m.equiangular_rhs[dyn])}")
    echo("Partial fractions + term-wise integration (Ei), proved by differentiation:")
    echo(f"  F(rho) = {s(m.antiderivatives['SA'])}")
    echo(f"  G(rho) = {s(m.antiderivatives['USA'])}")
    echo(f"  beta = 0: rho(t) = {s(m.beta0_solution)}")
    echo(f"Long context [§2.5]: cos_out = {s(m.long_context_cos)}")
    echo(f"  n -> oo at gamma = 1/(1-rho): {s(m.long_context_critical_limit)}")
    echo(f"Kuramoto d = 2 [§2.4]: <t_i, V x_j> = {s(m.kuramoto_pair_term['reduced'])}")
    H, dH = m.hamiltonian_n3
    echo(f"  V = omega J, USA, n = 3: H = {s(H)}, dH/dt = {s(dH)}")
    fp = m.four_particle
    echo(f"Burger 4 particles [§2.7]: E = {s(fp['E_stated'])}; dE/ds / E = {s(fp['stationarity'])}")
    echo("=" * 100)


# ----------------------------------------------------------------------------- 1. phase diagram
def phase_diagram(out: Path, cfg: Config, seed: int, echo=print) -> tuple[list[Path], list[dict]]:
    from numerics import particles

    m, S = _model(), _special()
    k = m.velocity_kernel("SA")
    betas = np.linspace(*cfg.pd_beta_range, cfg.pd_betas)
    tt = np.arange(0.0, cfg.pd_T + 1e-9, cfg.pd_dt_check)
    t_eq = np.array([m.equiangular_hitting_time(b, cfg.n, "SA") for b in betas])
    fracs, rows = {}, []
    for d, batch in zip(cfg.pd_dims, cfg.pd_batch):
        t0 = time.perf_counter()
        rng = np.random.default_rng([seed, d])
        X0 = particles.uniform_sphere(rng, (batch, cfg.n, d))
        X = np.repeat(X0[None], len(betas), 0).reshape(-1, cfg.n, d)
        bb = np.repeat(betas, batch)
        tr = particles.integrate(
            lambda Y: k(np, S, Y, bb)["v"], X, T=cfg.pd_T, h=cfg.pd_h, method="euler",
            checkpoints=tt, callback=lambda t, Y: particles.pair_fraction(Y, 0.999)
            .reshape(len(betas), batch))
        F = np.array(tr.states)  # (t, beta, batch)
        fracs[d] = F.mean(-1)
        for j, b in enumerate(betas):
            hit = np.nonzero(fracs[d][:, j] >= 0.5)[0]
            t_half = float(tt[hit[0]]) if hit.size else math.inf
            rows.append(dict(d=d, batch=batch, beta=float(b), t_half_sim=t_half,
                             t_equiangular=float(t_eq[j]),
                             gap=(t_half - t_eq[j]) if math.isfinite(t_half) else math.inf,
                             frac_at_T=float(fracs[d][-1, j])))
        echo(f"  phase diagram d={d}: {batch} systems x {len(betas)} betas, "
             f"{time.perf_counter() - t0:.1f} s")
    csv_path = write_csv(out / "phase_diagram.csv", rows)
    plt = _plt()
    fig, axes = plt.subplots(1, len(cfg.pd_dims), figsize=(4.2 * len(cfg.pd_dims), 3.6),
                             sharey=True)
    bgrid = np.linspace(*cfg.pd_beta_range, 200)
    curve = [m.equiangular_hitting_time(b, cfg.n, "SA") for b in bgrid]
    for ax, d in zip(np.atleast_1d(axes), cfg.pd_dims):
        im = ax.imshow(fracs[d].T, origin="lower", aspect="auto", vmin=0, vmax=1, cmap="magma",
                       extent=(tt[0], tt[-1], betas[0], betas[-1]))
        ax.plot(curve, bgrid, "c--", lw=1.5, label=r"$\gamma_\beta(t)=0.999$ (n=32)")
        ax.set_xlim(0, cfg.pd_T)
        ax.set_title(f"d = {d}")
        ax.set_xlabel("t")
    np.atleast_1d(axes)[0].set_ylabel(r"$\beta$")
    np.atleast_1d(axes)[0].legend(loc="upper left", fontsize=7)
    fig.colorbar(im, ax=axes, label=r"fraction of pairs $\langle x_i,x_j\rangle>0.999$")
    png = out / "phase_diagram.png"
    save_figure(fig, png, dpi=110)
    return [png, csv_path], rows


# ----------------------------------------------------------------------------- 2. equiangular
def equiangular_overlay(out: Path, cfg: Config, echo=print) -> tuple[list[Path], list[dict]]:
    from numerics import particles
    from numerics.simulate.token_dynamics import equiangular_start

    m, S = _model(), _special()
    rows = []
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    n = cfg.eq_n
    for dyn, ls in (("SA", "-"), ("USA", "--")):
        k = m.velocity_kernel(dyn)
        for b in cfg.eq_betas:
            T = min(1.2 * m.equiangular_hitting_time(b, n, dyn), 40.0)
            extra = (np.zeros(1),) if dyn == "USA" else ()
            tt = np.linspace(0, T, 41)
            # adaptive DP5(4): USA near consensus contracts at rate ~2e^beta (stiff)
            tr = particles.integrate_adaptive(lambda Y: k(np, S, Y, np.array([b]), *extra)["v"],
                                              equiangular_start(n, n), T=T, rtol=1e-11,
                                              atol=1e-13, checkpoints=tt)
            h = float(np.median(tr.info["h"]))
            rho_sim = np.array([float(particles.gram(Y)[0, 0, 1]) for Y in tr.states])
            tr.times = np.asarray(tt)
            t_closed = np.array([m.equiangular_hitting_time(b, n, dyn, 0.0, r) if 0 < r < 1 else
                                 (0.0 if r <= 0 else math.nan) for r in rho_sim])
            ok = (rho_sim > 0) & (rho_sim < 1 - 1e-6)  # t(rho) is ill-conditioned as rho -> 1
            err = np.nanmax(np.abs(t_closed - tr.times)[ok])
            rows.append(dict(dynamics=dyn, beta=b, n=n, T=T, h=h, steps=tr.steps,
                             max_time_error=float(err)))
            line, = ax.plot(tr.times, rho_sim, "o", ms=3)
            ax.plot(t_closed, rho_sim, ls, color=line.get_color(), lw=1,
                    label=f"{dyn} β={b:g}")
    ax.set_xlabel("t")
    ax.set_ylabel(r"$\rho(t)=\langle x_1,x_2\rangle$")
    ax.set_title(f"equiangular: particles (dots) vs Ei closed form (lines), n=d={n}")
    ax.legend(fontsize=7)
    png = out / "equiangular_overlay.png"
    fig.tight_layout()
    save_figure(fig, png, dpi=110)
    echo("  equiangular overlay: max |t_closed(rho_sim) - t| = "
         f"{max(r['max_time_error'] for r in rows):.2e}")
    return [png, write_csv(out / "equiangular_overlay.csv", rows)], rows


# ----------------------------------------------------------------------------- 3. clustering
def _kuramoto_field(dyn: str, beta: np.ndarray, alpha=1.0, omega=0.0):
    m, S = _model(), _special()
    kk = m.tensor_kernel(f"kuramoto_{dyn.lower()}")
    one = np.ones_like(beta)
    return lambda th: kk(np, S, th, beta, alpha * one, omega * one, 0 * one, 0 * one)["thetadot"]


def cluster_formation(out: Path, cfg: Config, seed: int, echo=print) -> tuple[list[Path], list[dict]]:
    """d = 2, uniform start, SA: cluster counts (cos > 1 - 1e-4) vs t for several beta."""
    from numerics import particles

    m = _model()
    nb, B, n = len(cfg.cl_betas), cfg.cl_batch, cfg.cl_n
    rng = np.random.default_rng([seed, 3])
    th0 = np.tile(rng.uniform(0, 2 * np.pi, (B, n)), (nb, 1))
    bb = np.repeat(np.asarray(cfg.cl_betas, float), B)
    f = _kuramoto_field("SA", bb)
    tt = np.concatenate([[0.0], np.geomspace(0.1, cfg.cl_T, 40)])
    tt = np.round(tt / 0.05) * 0.05

    def counts(t, th):
        X = np.stack([np.cos(th), np.sin(th)], -1)
        return particles.cluster_count(X, 1 - 1e-4).reshape(nb, B)

    tr = particles.integrate(f, th0, T=cfg.cl_T, h=0.05, method="rk4", manifold="euclidean",
                             checkpoints=tt, callback=counts)
    K = np.array(tr.states)  # (t, beta, batch)
    rows = []
    for j, b in enumerate(cfg.cl_betas):
        kstar = m.fastest_circle_mode(b)
        for ti, t in enumerate(tr.times):
            rows.append(dict(beta=b, t=float(t), clusters_mean=float(K[ti, j].mean()),
                             clusters_median=float(np.median(K[ti, j])), k_star=kstar))
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    for j, b in enumerate(cfg.cl_betas):
        ax.semilogx(tr.times[1:], K[1:, j].mean(-1), "-o", ms=2.5,
                    label=f"β={b:g} (k*={m.fastest_circle_mode(b)})")
    ax.set_xlabel("t")
    ax.set_ylabel("number of clusters (mean)")
    ax.set_title(f"cluster formation, d=2, n={n}, SA")
    ax.legend(fontsize=7)
    png = out / "cluster_formation.png"
    fig.tight_layout()
    save_figure(fig, png, dpi=110)
    echo(f"  cluster formation: {nb} betas x {B} systems, {tr.steps} RK4 steps")
    return [png, write_csv(out / "cluster_formation.csv", rows)], rows


def metastability(out: Path, cfg: Config, seed: int, echo=print) -> tuple[list[Path], list[dict]]:
    """Two groups of ms_n/2 tokens of width ±ms_width at angular distance Δ (d = 2, SA):
    T1 = all within-group pairs above 1 - 1e-3, T2 = all pairs above 1 - 1e-3."""
    from numerics import particles

    m = _model()
    n, B, Dl, w = cfg.ms_n, cfg.ms_batch, cfg.ms_delta, cfg.ms_width
    rows = []
    for b in cfg.ms_betas:
        rng = np.random.default_rng([seed, 4, int(b * 100)])
        base = np.linspace(-w, w, n // 2)
        th = np.concatenate([base + 1e-3 * rng.standard_normal((B, n // 2)),
                             Dl + base + 1e-3 * rng.standard_normal((B, n // 2))], 1)[..., None]
        f0 = _kuramoto_field("SA", np.full(B, b))
        f = lambda Y: f0(Y[..., 0])[..., None]  # noqa: E731
        t, T1, T2 = 0.0, np.full(B, np.inf), np.full(B, np.inf)
        gap1 = np.full(B, np.nan)
        grid = np.concatenate([np.linspace(0.05, 5, 100), np.geomspace(5, 1e5, 400)[1:]])
        steps = 0
        for tc in grid:
            tr = particles.integrate_adaptive(f, th, T=tc - t, rtol=1e-8, atol=1e-10,
                                              manifold="euclidean", max_steps=200000)
            th, t, steps = tr.states[-1], tc, steps + tr.steps
            a = th[..., 0]
            within = np.maximum(np.ptp(a[:, : n // 2], 1), np.ptp(a[:, n // 2:], 1))
            new1 = np.isinf(T1) & (1 - np.cos(within) < 1e-3)
            # angle between the group centres when the groups have collapsed
            c1 = np.angle(np.exp(1j * a[:, : n // 2]).mean(1))
            c2 = np.angle(np.exp(1j * a[:, n // 2:]).mean(1))
            gap1 = np.where(new1, np.abs(np.angle(np.exp(1j * (c2 - c1)))), gap1)
            T1 = np.where(new1, t, T1)
            T2 = np.where(np.isinf(T2) & (1 - np.cos(np.ptp(a, 1)) < 1e-3), t, T2)
            if np.all(np.isfinite(T2)):
                break
        # two collapsed groups of equal mass = the n = 2 equiangular system (closed form)
        pred = np.array([T1[i] + m.equiangular_hitting_time(b, 2, "SA", rho0=math.cos(gap1[i]),
                                                             target=1 - 1e-3)
                         for i in range(B)])
        rows.append(dict(beta=b, delta=Dl, T1_median=float(np.median(T1)),
                         delta_at_T1=float(np.median(gap1)),
                         T2_median=float(np.median(T2)), log_T2=float(np.log(np.median(T2))),
                         T2_predicted=float(np.median(pred)),
                         T2_rel_gap=float(np.median((T2 - pred) / pred)), steps=steps))
        echo(f"  metastability beta={b:g}: T1={rows[-1]['T1_median']:.3g}, "
             f"T2={rows[-1]['T2_median']:.4g} (two-cluster closed form "
             f"{rows[-1]['T2_predicted']:.4g}; {steps} steps)")
    bs = np.array([r["beta"] for r in rows])
    lt = np.array([r["log_T2"] for r in rows])
    half = bs >= np.median(bs)
    slope = float(np.polyfit(bs[half], lt[half], 1)[0]) if half.sum() >= 2 else math.nan
    for r in rows:
        r["fitted_slope_upper_half"] = slope
        r["predicted_slope_limit"] = 1 - math.cos(Dl)
    plt = _plt()
    fig, ax = plt.subplots(1, 2, figsize=(9, 3.5))
    ax[0].plot(bs, lt, "o-", label=r"$\log T_2$ (merge)")
    ax[0].plot(bs, (1 - math.cos(Dl)) * bs - np.log(2 * bs) + (lt[-1] - (1 - math.cos(Dl)) * bs[-1]
               + np.log(2 * bs[-1])), "k:", label=r"$\beta(1-\cos\Delta)-\log 2\beta$ + c")
    ax[0].set_xlabel(r"$\beta$")
    ax[0].legend(fontsize=7)
    ax[1].plot(bs, [r["T1_median"] for r in rows], "s-")
    ax[1].set_xlabel(r"$\beta$")
    ax[1].set_ylabel(r"$T_1$ (within-group collapse)")
    fig.suptitle(f"metastability: two groups at angle Δ={Dl:.3g}, d=2, n={n}, SA")
    fig.tight_layout()
    png = out / "metastability.png"
    save_figure(fig, png, dpi=110)
    return [png, write_csv(out / "metastability.csv", rows)], rows


# ----------------------------------------------------------------------------- 4. long context
def long_context(out: Path, cfg: Config, echo=print) -> tuple[list[Path], list[dict]]:
    from numerics.simulate.token_dynamics import long_context_gram

    m, S = _model(), _special()
    k = m.kernel("long_context")
    rho = cfg.lc_rho
    crit = 1 / (1 - rho)
    ns = np.geomspace(1e2, 1e6, 25)
    rows = []
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    for g, lim in ((0.5 * crit, 1.0), (crit, 4 * rho / (1 + 3 * rho)), (2 * crit, rho)):
        c = k(np, S, rho, g, ns)["cos_out"]
        ax.semilogx(ns, c, label=f"γ={g:g}: limit {lim:.4g}")
        ax.axhline(lim, color="gray", lw=0.5, ls=":")
        for nn in (100, 300):
            ax.plot(nn, long_context_gram(nn, rho, g), "kx")
        rows.append(dict(rho=rho, gamma=g, limit=lim, cos_n1e2=float(c[0]),
                         cos_n1e6=float(c[-1]), gap_n1e6=float(c[-1] - lim),
                         gram_sim_n100=long_context_gram(100, rho, g)))
    ax.set_xlabel("n")
    ax.set_ylabel("output cosine")
    ax.set_title(f"long context, β = γ log n, ρ = {rho} (x: explicit Gram simulation)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    png = out / "long_context.png"
    save_figure(fig, png, dpi=110)
    return [png, write_csv(out / "long_context.csv", rows)], rows


# ----------------------------------------------------------------------------- 5. Burger et al.
def burger(out: Path, cfg: Config, seed: int, echo=print) -> tuple[list[Path], list[dict]]:
    """4-particle roots (generated stationarity kernel, bisection) vs particle gradient descent
    (USA, V = -D, d = 2, 4 tokens at (±a, ±b)); maximiser energy vs e^{λmax}/2 (USA, V = D)."""
    from scipy.optimize import brentq

    from numerics import particles

    m, S = _model(), _special()
    k4 = m.kernel("four_particle")
    kv = m.velocity_kernel("USA", "general")
    ke = m.tensor_kernel("energy_general")
    rows = []
    for l2 in cfg.bu_lambda2:
        root = brentq(lambda s: float(k4(np, S, s, 1.0, l2)["dE4"]), 1e-9, 1 - 1e-9, xtol=1e-15)
        D = np.diag([1.0, l2])
        a0 = math.sqrt(0.5)
        X = np.array([[[a0, a0], [a0, -a0], [-a0, a0], [-a0, -a0]]])
        tr = particles.integrate(lambda Y: kv(np, S, Y, np.ones(1), np.eye(2), D, -D,
                                              np.zeros(1))["v"], X, T=200.0, h=0.25, method="rk4")
        a2 = float(tr.states[-1][0, 0, 0] ** 2)
        rows.append(dict(case="4-particle minimiser", lambda2=l2, root_a2=root,
                         particle_a2=a2, diff=a2 - root))
    rng = np.random.default_rng([seed, 5])
    D = np.diag([1.5, 1.0, 0.5])
    X = particles.uniform_sphere(rng, (4, 30, 3))
    X[..., 0] = np.abs(X[..., 0])  # hemisphere start: the flow reaches the Dirac at e1
    tr = particles.integrate(lambda Y: kv(np, S, Y, np.ones(4), np.eye(3), D, D,
                                          np.zeros(4))["v"], X, T=60.0, h=0.1, method="rk4")
    E = ke(np, S, tr.states[-1], np.ones(4), D)["E"]
    align = np.abs(tr.states[-1][..., 0]).min()
    rows.append(dict(case="maximiser, D=diag(1.5,1,0.5), hemisphere start", lambda2=math.nan,
                     root_a2=math.exp(1.5) / 2, particle_a2=float(E.min()),
                     diff=float(E.min() - math.exp(1.5) / 2)))
    echo(f"  Burger: 4-particle |a2 - root| max {max(abs(r['diff']) for r in rows[:-1]):.2e}; "
         f"maximiser E - e^1.5/2 = {rows[-1]['diff']:.2e}, min |<x,e1>| = {align:.6f}")
    return [write_csv(out / "burger.csv", rows)], rows


# ----------------------------------------------------------------------------- 6. concentration
def concentration(out: Path, cfg: Config, seed: int, echo=print) -> tuple[list[Path], list[dict]]:
    r"""SA, A = I, V = diag(1.5, 1, 0.5), d = 3: exact W2 between μ_t and
    π#μ_0 = Σ δ_{sign(x_1) e_1}/n at checkpoints (adaptive DP5(4), rtol 1e-6)."""
    from numerics import particles

    m, S = _model(), _special()
    k = m.velocity_kernel("SA", "general")
    V = np.diag([1.5, 1.0, 0.5])
    I3 = np.eye(3)
    tt = np.arange(0.25, cfg.co_T + 1e-9, 0.25)
    rows, curves = [], {}
    for b in cfg.co_betas:
        W = []
        for s in range(cfg.co_seeds):
            rng = np.random.default_rng([seed, 6, s])
            X0 = particles.uniform_sphere(rng, (1, cfg.co_n, 3))
            proj = np.sign(X0[0, :, 0])[:, None] * np.array([1.0, 0, 0])
            tr = particles.integrate_adaptive(lambda Y: k(np, S, Y, np.array([b]), I3, I3, V)["v"],
                                              X0, T=tt[-1], rtol=1e-6, atol=1e-8, checkpoints=tt)
            W.append([particles.w2_empirical(Y[0], proj) for Y in tr.states])
        W = np.array(W).mean(0)
        curves[b] = W
        i = int(np.argmin(W))
        rows.append(dict(beta=b, n=cfg.co_n, seeds=cfg.co_seeds, w2_min=float(W[i]),
                         t_at_min=float(tt[i]), w2_at_T=float(W[-1]),
                         scale=math.sqrt(math.log(b + 1) / b)))
    ratio = [r["w2_min"] / r["scale"] for r in rows]
    slope = float(np.polyfit(np.log([r["scale"] for r in rows]), np.log([r["w2_min"] for r in rows]), 1)[0])
    for r, q in zip(rows, ratio):
        r["ratio_min_to_scale"] = q
        r["loglog_slope"] = slope
    plt = _plt()
    fig, ax = plt.subplots(1, 2, figsize=(9, 3.5))
    for b, W in curves.items():
        ax[0].plot(tt, W, label=f"β={b:g}")
    ax[0].set_xlabel("t")
    ax[0].set_ylabel(r"$W_2(\mu_t,\pi_\#\mu_0)$")
    ax[0].legend(fontsize=7)
    bs = np.array(cfg.co_betas)
    ax[1].loglog(bs, [r["w2_min"] for r in rows], "o-", label=r"$\min_t W_2$")
    sc = np.sqrt(np.log(bs + 1) / bs)
    ax[1].loglog(bs, sc * rows[0]["w2_min"] / sc[0], "k:", label=r"$\propto\sqrt{\log(\beta+1)/\beta}$")
    ax[1].set_xlabel(r"$\beta$")
    ax[1].legend(fontsize=7)
    fig.suptitle(f"concentration (SA, V=diag(1.5,1,0.5), n={cfg.co_n}, d=3)")
    fig.tight_layout()
    png = out / "concentration.png"
    save_figure(fig, png, dpi=110)
    echo(f"  concentration: log-log slope of min_t W2 vs sqrt(log(b+1)/b) = {slope:.2f}")
    return [png, write_csv(out / "concentration.csv", rows)], rows


# ----------------------------------------------------------------------------- summary
def _md_table(rows: list[dict], keys: Sequence[str]) -> list[str]:
    def f(v):
        return f"{v:.4g}" if isinstance(v, (float, np.floating)) else str(v)

    out = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    out += ["| " + " | ".join(f(r[k]) for k in keys) + " |" for r in rows]
    return out


def _summary(out: Path, cfg: Config, seed: int, quick: bool, res: dict, seconds: float) -> Path:
    pd = res["phase"]
    lines = [
        "# Reproduction: tokens as interacting particles (token-dynamics)", "",
        f"`main(quick={quick})`, seed {seed}, NumPy backend, runtime **{seconds:.1f} s**. "
        "Closed forms: generated kernels of `derive.models.get('token-dynamics')`; particles: "
        "generated batched velocity kernels + `numerics.particles` integrators.", "",
        "## 1. Phase diagram (`phase_diagram.png`)", "",
        f"n = {cfg.n}, Euler η = {cfg.pd_h} + renormalisation, T = {cfg.pd_T}, β ∈ "
        f"[{cfg.pd_beta_range[0]}, {cfg.pd_beta_range[1]}] ({cfg.pd_betas} values); systems per β: "
        + ", ".join(f"d={d}: {b}" for d, b in zip(cfg.pd_dims, cfg.pd_batch))
        + " (the paper: 2048 on a GPU). t_half = first checkpoint (every "
        f"{cfg.pd_dt_check}) where the mean pair fraction > 0.999 reaches 1/2; t_equiangular = "
        "closed-form hitting time of ρ = 0.999 from ρ0 = 0 (the overlaid curve).", "",
    ]
    for d in cfg.pd_dims:
        rr = [r for r in pd if r["d"] == d and r["t_equiangular"] < cfg.pd_T - 2]
        gaps = [abs(r["gap"]) for r in rr if math.isfinite(r["gap"])]
        miss = sum(not math.isfinite(r["gap"]) for r in rr)
        lines.append(f"- d = {d}: over the {len(rr)} β with t_eq < T−2, max |t_half − t_equiangular| "
                     f"= **{max(gaps) if gaps else math.nan:.3g}** (mean "
                     f"{np.mean(gaps) if gaps else math.nan:.3g}); half-clustering not reached "
                     f"by T for {miss} of them")
    lines += ["", *_md_table([r for r in pd if r["d"] == cfg.pd_dims[-1]],
                             ("d", "beta", "t_half_sim", "t_equiangular", "gap")), "",
              "## 2. Equiangular overlay (`equiangular_overlay.png`)", "",
              "Adaptive DP5(4) (rtol 1e-11), h = median accepted step; error = max over checkpoints "
              "with 1 − ρ > 1e-6 of |t_closed(ρ_sim) − t| (t(ρ) is ill-conditioned as ρ → 1).", "",
              *_md_table(res["equi"], ("dynamics", "beta", "n", "h", "steps", "max_time_error")),
              "",
              "## 3. Cluster formation and metastability (`cluster_formation.png`, `metastability.png`)",
              ""]
    cl = res["cluster"]
    last = max(r["t"] for r in cl)
    lines += _md_table([r for r in cl if r["t"] == last], ("beta", "t", "clusters_mean",
                                                           "clusters_median", "k_star"))
    ms = res["meta"]
    lines += ["", f"Two groups at Δ = {cfg.ms_delta:.4g}: fitted slope of log T2 vs β on the upper "
              f"half of β: **{ms[0]['fitted_slope_upper_half']:.3f}** (the two-cluster reduction "
              f"predicts log T2 ≈ β(1−cos Δ) − log 2β + c, slope → {1 - math.cos(cfg.ms_delta):.3f}).",
              "T2_predicted = T1 + closed-form n = 2 equiangular hitting time from the measured "
              "angle between the group centres at T1 to 1 − 1e-3 (two collapsed equal groups "
              "are exactly the n = 2 system); T2 is measured on the checkpoint grid.",
              "", *_md_table(ms, ("beta", "T1_median", "delta_at_T1", "T2_median",
                                  "T2_predicted", "T2_rel_gap", "log_T2")), "",
              "## 4. Long context (`long_context.png`)", "",
              *_md_table(res["long"], ("gamma", "limit", "cos_n1e2", "cos_n1e6", "gap_n1e6",
                                       "gram_sim_n100")), "",
              "## 5. Burger et al. (`burger.csv`)", "",
              *_md_table(res["burger"], ("case", "lambda2", "root_a2", "particle_a2", "diff")), "",
              "## 6. Concentration (`concentration.png`)", "",
              *_md_table(res["conc"], ("beta", "w2_min", "t_at_min", "w2_at_T", "scale",
                                       "ratio_min_to_scale")),
              "", f"log-log slope of min_t W2 against √(log(β+1)/β): "
              f"**{res['conc'][0]['loglog_slope']:.2f}** (1 would be the stated scaling)."]
    p = out / "summary.md"
    p.write_text("\n".join(lines) + "\n")
    return p


def main(out_dir: Path, quick: bool = False, seed: int = 0, config: Config | None = None,
         echo=print) -> list[Path]:
    """Run the derivation and all experiments; return the written files."""
    cfg = config if config is not None else (QUICK if quick else DEFAULT)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    print_derivation(echo)
    files: list[Path] = []
    res: dict[str, list[dict]] = {}
    for key, fn in (("phase", lambda: phase_diagram(out, cfg, seed, echo)),
                    ("equi", lambda: equiangular_overlay(out, cfg, echo)),
                    ("cluster", lambda: cluster_formation(out, cfg, seed, echo)),
                    ("meta", lambda: metastability(out, cfg, seed, echo)),
                    ("long", lambda: long_context(out, cfg, echo)),
                    ("burger", lambda: burger(out, cfg, seed, echo)),
                    ("conc", lambda: concentration(out, cfg, seed, echo))):
        fs, rows = fn()
        files += fs
        res[key] = rows
    summary = _summary(out, cfg, seed, quick, res, time.perf_counter() - t0)
    echo(summary.read_text())
    return files + [summary]


def _cli(argv: Sequence[str] | None = None) -> None:
    run_cli(main, MODEL, __doc__, argv, quick_help="smaller batches and grids")


if __name__ == "__main__":
    _cli()
