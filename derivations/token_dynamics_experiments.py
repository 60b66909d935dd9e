r"""Token dynamics on the circle: metastability from wide groups, and Wasserstein concentration.

Two experiments of issue 13 (item 3), on the exact angle form of SA dynamics in $d=2$ with
$Q=K=I$ (:mod:`numerics.simulate.token_dynamics_circle`, independent of the symbolic layer).

**Metastability** (Geshkovski–Koubbi–Polyanskiy–Rigollet, arXiv:2410.06833). $n=256$ tokens
in two groups of width 1 rad (much wider than the attention range $1/\sqrt\beta$) whose
centres are 2 rad apart; $\beta\in[2,50]$, several seeds. Measured per run:

* $T_1$: the first time every cluster (points closer than 0.05 rad to a neighbour) is narrower
  than 0.01 rad -- the end of the fast, clustering phase; $K_1$ clusters then;
* $T_2$: the time of the first merger after $T_1$ -- the end of the first metastable plateau.
  Measured directly by the particle simulation up to ``t_full``; beyond, by the *reduced*
  system of $K_1$ weighted point masses (exact up to the clusters' widths, which decay like
  $e^{-t}$), integrated with an implicit method up to $t\sim10^{30}$. Where both exist they
  are compared.

The pairing picture (only the closest pair moves, on the clock $e^{\beta(1-\cos\Delta)}$)
predicts $\log(T_2-T_1)\approx\beta(1-\cos\Delta_{\min})+O(\log\beta)$ with $\Delta_{\min}$
the closest separation at $T_1$.

**Concentration** (Alcalde–Bungert–Riedl–Roith). SA with $B=I$, $V=\mathrm{diag}(1.5,0.5)$
in the mean-field limit: $n$ equal-weight particles at the quantiles of
$\rho_0\propto1+\frac12\cos(\theta-0.7)$ (a deterministic discretisation of the continuity
equation), the field evaluated by FFT on an $M$-point grid. Measured: the exact
$W_2(\rho_t,\pi_\#\rho_0)$ with $\pi_\#\rho_0=p\,\delta_{e_1}+(1-p)\,\delta_{-e_1}$,
$p=\rho_0(x_1>0)$, for $\beta$ from 10 to 3000; refinement in $n$ and $M$ gives the error bar.

Run: ``python -m derivations.token_dynamics_experiments --out DIR [--quick]``.
"""
from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from derivations._common import run_cli, write_csv
from numerics.particles import integrate_adaptive
from numerics.simulate.token_dynamics_circle import (circle_field, circle_field_fft,
                                                      clusters_on_circle, quantile_angles,
                                                      reduced_merge_times, w2_to_two_atoms)

MODEL = "token-dynamics"
GAP, TIGHT = 0.05, 0.01


# ---------------------------------------------------------------------------------------------
# metastability
# ---------------------------------------------------------------------------------------------
def wide_groups(n: int, width: float, separation: float, rng: np.random.Generator) -> np.ndarray:
    """``n`` angles, half uniform in ``[-width/2, width/2]``, half around ``separation``."""
    h = n // 2
    a = rng.uniform(-width / 2, width / 2, size=h)
    b = separation + rng.uniform(-width / 2, width / 2, size=n - h)
    return np.concatenate([a, b])


def _analyse(times: np.ndarray, states: Sequence[np.ndarray]) -> tuple[Any, Any]:
    cl = [clusters_on_circle(th, GAP) for th in states]
    i1 = next((i for i, c in enumerate(cl) if c.diameters.max() < TIGHT), None)
    return cl, i1


def metastability_run(beta: float, n: int = 256, seeds: Sequence[int] = (0, 1, 2, 3),
                      width: float = 1.0, separation: float = 2.0, t_full: float = 2000.0,
                      t_cluster: float = 40.0, per_unit_time: int = 8) -> list[dict[str, Any]]:
    """One β, all seeds in one batch.

    Stage 1 integrates the particles to ``t_cluster`` (the clustering phase ends by t ≈ 7 for
    every β here) and reads ``T1``, ``K1`` and the clusters. The reduced clock then predicts the
    first merger ``T2``. Stage 2 continues the particle simulation to
    ``min(t_full, 1.3 max T2)`` where that is finite, so that the full simulation measures ``T2``
    itself wherever it is reachable (the check of the reduced clock)."""
    theta0 = np.stack([wide_groups(n, width, separation, np.random.default_rng(s)) for s in seeds])

    def field(X: np.ndarray) -> np.ndarray:
        return circle_field(X[..., 0], beta)[..., None]

    cps1 = np.linspace(0.0, t_cluster, int(t_cluster * per_unit_time) + 1)[1:]
    tr = integrate_adaptive(field, theta0[..., None], T=t_cluster, rtol=1e-7, atol=1e-9,
                            manifold="euclidean", checkpoints=cps1, max_steps=200_000)
    times, states = list(tr.times), [S[..., 0] for S in tr.states]
    pred = []
    for b in range(len(seeds)):
        cl, i1 = _analyse(np.asarray(times), [S[b] for S in states])
        if i1 is not None:
            c = cl[-1]
            red = reduced_merge_times(c.centres, c.weights, beta, t0=float(times[-1]), merge_tol=GAP)
            pred.append(red[0][0] if red else math.inf)
    t2 = min(t_full, 1.3 * max(pred)) if pred and max(pred) < math.inf else t_cluster
    if t2 > t_cluster:
        cps2 = np.geomspace(t_cluster, t2, 200)[1:]
        tr2 = integrate_adaptive(field, tr.states[-1], T=t2 - t_cluster, rtol=1e-7, atol=1e-9,
                                 manifold="euclidean", checkpoints=cps2 - t_cluster, max_steps=400_000)
        times += list(tr2.times + t_cluster)
        states += [S[..., 0] for S in tr2.states]
    times = np.asarray(times)
    rows = []
    for b, seed in enumerate(seeds):
        cl, i1 = _analyse(times, [S[b] for S in states])
        row: dict[str, Any] = {"beta": beta, "seed": seed, "n": n, "width": width,
                               "separation": separation, "t_simulated": float(times[-1])}
        if i1 is None:
            row.update(T1=math.nan, K1=-1, delta_min=math.nan, weights_T1="", T2_full=math.nan,
                       T2_reduced=math.nan, T2_reduced_from_T1=math.nan, mergers_reduced="")
            rows.append(row)
            continue
        T1, c1 = float(times[i1]), cl[i1]
        i2 = next((i for i in range(i1, len(cl)) if cl[i].count < c1.count), None)
        T2_full = float(times[i2]) if i2 is not None else math.nan
        # reduced clock from the tightest state that still has K1 clusters, and from T1
        j = (i2 - 1) if i2 is not None else len(cl) - 1
        red = reduced_merge_times(cl[j].centres, cl[j].weights, beta, t0=float(times[j]),
                                  merge_tol=GAP)
        red1 = reduced_merge_times(c1.centres, c1.weights, beta, t0=T1, merge_tol=GAP)
        row.update(T1=T1, K1=c1.count, delta_min=c1.min_separation,
                   weights_T1=" ".join(f"{w:.4f}" for w in c1.weights),
                   T2_full=T2_full, T2_reduced=red[0][0] if red else math.nan,
                   T2_reduced_from_T1=red1[0][0] if red1 else math.nan,
                   mergers_reduced=" ".join(f"{t:.6g}:{k}" for t, k in red1))
        rows.append(row)
    return rows


def pairing_prediction(beta: float, delta: float) -> float:
    r"""$\log$ of the two-equal-mass merging time $\int(1+e^{\beta(1-\cos\Delta)})/(2\sin\Delta)\,d\Delta$
    from ``delta`` down to 1e-3 (the exact $n=2$ clock; a reference scale for the plateau)."""
    from scipy.integrate import quad

    f = lambda D: (1 + math.exp(beta * (1 - math.cos(D)))) / (2 * math.sin(D))  # noqa: E731
    return math.log(quad(f, 1e-3, delta, limit=500, epsrel=1e-10)[0])


# ---------------------------------------------------------------------------------------------
# concentration
# ---------------------------------------------------------------------------------------------
V_CONC = np.diag([1.5, 0.5])


def rho0(phi: np.ndarray) -> np.ndarray:
    return 1 + 0.5 * np.cos(phi - 0.7)


def p_plus() -> float:
    r"""$p=\rho_0(x_1>0)=\int_{-\pi/2}^{\pi/2}(1+\frac12\cos(\phi-0.7))\,\frac{d\phi}{2\pi}
    =\frac12+\frac{\cos0.7}{2\pi}$."""
    return 0.5 + (0.5 * 2 * math.cos(0.7)) / (2 * math.pi)


def concentration_run(beta: float, n: int, M: int, t_end: float = 16.0, n_checkpoints: int = 81
                      ) -> tuple[np.ndarray, np.ndarray]:
    """W₂(ρ_t, π_#ρ₀) at checkpoints for one β (mean-field particles, FFT field)."""
    th0 = quantile_angles(rho0, n)
    w = np.full(n, 1.0 / n)
    cps = np.linspace(0.0, t_end, n_checkpoints)[1:]

    def field(X: np.ndarray) -> np.ndarray:
        return circle_field_fft(X[0, :, 0], w, beta, V=V_CONC, M=M)[None, :, None]

    tr = integrate_adaptive(field, th0[None, :, None], T=t_end, rtol=1e-7, atol=1e-9,
                            manifold="euclidean", checkpoints=cps, max_steps=100_000)
    p = p_plus()
    w2 = np.array([w2_to_two_atoms(S[0, :, 0], w, p) for S in tr.states])
    return np.concatenate([[0.0], tr.times]), np.concatenate([[w2_to_two_atoms(th0, w, p)], w2])


# ---------------------------------------------------------------------------------------------
def main(out_dir: Path, quick: bool = False, seed: int = 0) -> list[Path]:
    return run_metastability(out_dir, quick, seed) + run_concentration(out_dir, quick)


def run_metastability(out_dir: Path, quick: bool = False, seed: int = 0) -> list[Path]:
    """The wide-group metastability experiment: CSV and figure in ``out_dir``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files: list[Path] = []
    betas = [2.0, 8.0, 24.0] if quick else [2.0, 4.0, 6.0, 8.0, 12.0, 16.0, 24.0, 32.0, 50.0,
                                              75.0, 100.0]
    seeds = tuple(range(seed, seed + (2 if quick else 3)))
    rows = []
    for b in betas:
        t0 = time.perf_counter()
        rs = metastability_run(b, n=128 if quick else 256, seeds=seeds,
                               t_full=300.0 if quick else 600.0)
        for r in rs:
            r["seconds_batch"] = time.perf_counter() - t0
            r["log_pairing_clock"] = (pairing_prediction(b, r["delta_min"])
                                      if np.isfinite(r["delta_min"]) else math.nan)
        rows += rs
        write_csv(out / "metastability_wide_groups.csv", rows)   # after every β: nothing lost
        print(f"beta={b}: T1={[round(r['T1'], 2) for r in rs]} K1={[r['K1'] for r in rs]} "
              f"T2={[format(r['T2_reduced'], '.4g') for r in rs]} ({time.perf_counter() - t0:.1f} s)", flush=True)
    files.append(write_csv(out / "metastability_wide_groups.csv", rows))

    fig, ax = plt.subplots(1, 3, figsize=(14, 4))
    B = np.array([r["beta"] for r in rows])
    T1 = np.array([r["T1"] for r in rows])
    T2 = np.array([r["T2_reduced"] for r in rows])
    T2f = np.array([r["T2_full"] for r in rows])
    K1 = np.array([r["K1"] for r in rows])
    ax[0].plot(B, T1, "o", alpha=0.6)
    ax[0].set(xlabel=r"$\beta$", ylabel=r"$T_1$ (all clusters < 0.01 rad)",
              title="end of the clustering phase")
    ax[1].semilogy(B, T2 - T1, "o", alpha=0.6, label="plateau $T_2-T_1$ (reduced clock)")
    ok = np.isfinite(T2f)
    ax[1].semilogy(B[ok], T2f[ok] - T1[ok], "kx", label="$T_2-T_1$ (full simulation)")
    ax[1].set(xlabel=r"$\beta$", ylabel="plateau length", title="first metastable plateau")
    ax[1].legend(fontsize=8)
    lp = np.array([r["log_pairing_clock"] for r in rows])
    ax[2].plot(lp, np.log(T2 - T1), "o", alpha=0.6)
    lim = [np.nanmin(lp), np.nanmax(lp)]
    ax[2].plot(lim, lim, "k--", lw=1, label="equality")
    ax[2].set(xlabel=r"log two-mass clock at $\Delta_{\min}(T_1)$",
              ylabel=r"$\log(T_2-T_1)$", title="pairing picture")
    ax[2].legend(fontsize=8)
    for a, k in zip(ax[:1], [K1]):
        for bb, t1, kk in zip(B, T1, k):
            a.annotate(str(kk), (bb, t1), fontsize=7, xytext=(3, 2), textcoords="offset points")
    fig.tight_layout()
    files.append(out / "metastability_wide_groups.png")
    fig.savefig(files[-1], dpi=130)
    plt.close(fig)

    return files


def run_concentration(out_dir: Path, quick: bool = False) -> list[Path]:
    """The mean-field concentration experiment: CSV and figure in ``out_dir``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files: list[Path] = []
    conc_betas = [10.0, 30.0, 100.0] if quick else [10.0, 30.0, 100.0, 300.0, 1000.0, 3000.0]
    sizes = [(4000, 8192)] if quick else [(8000, 16384), (32000, 65536)]
    crow: list[dict[str, Any]] = []
    curve_rows: list[dict[str, Any]] = []
    curves = {}
    for b in conc_betas:
        for n, M in sizes:
            t0 = time.perf_counter()
            t, w2 = concentration_run(b, n, M, t_end=10.0 if quick else 16.0)
            curves[(b, n)] = (t, w2)
            k = int(np.argmin(w2))
            plateau = float(w2[-1])
            early = (t >= 1.0) & (w2 > 2 * plateau)
            rate = -float(np.polyfit(t[early], np.log(w2[early]), 1)[0]) if early.sum() >= 3 else math.nan
            cross = t[np.argmax(w2 < 1.2 * plateau)] if np.any(w2 < 1.2 * plateau) else math.nan
            crow.append({"beta": b, "n": n, "M": M, "w2_min": float(w2[k]), "t_at_min": float(t[k]),
                         "w2_plateau": plateau, "t_end": float(t[-1]),
                         "misassigned_mass": (plateau / 2) ** 2,
                         "early_decay_rate": rate, "t_cross": float(cross),
                         "bound_scale": math.sqrt(math.log(b + 1) / b),
                         "seconds": time.perf_counter() - t0})
            for ti, wi in zip(t, w2):
                curve_rows.append({"beta": b, "n": n, "t": float(ti), "w2": float(wi)})
            print(f"conc beta={b} n={n}: min W2={w2[k]:.4g} at t={t[k]:.3g}, plateau {plateau:.4g}, "
                  f"early rate {rate:.3f}, t_cross {cross:.3g} ({time.perf_counter() - t0:.1f} s)",
                  flush=True)
    files.append(write_csv(out / "concentration_meanfield.csv", crow))
    files.append(write_csv(out / "concentration_meanfield_curves.csv", curve_rows))
    fig, ax = plt.subplots(1, 2, figsize=(11, 4))
    nbig = sizes[-1][0]
    for b in conc_betas:
        t, w2 = curves[(b, nbig)]
        ax[0].semilogy(t, w2, label=rf"$\beta={b:g}$")
    ax[0].set(xlabel="t", ylabel=r"$W_2(\rho_t,\pi_\#\rho_0)$",
              title=rf"mean field, $V=\mathrm{{diag}}(1.5,0.5)$, n={nbig}")
    ax[0].legend(fontsize=8)
    bb = np.array([r["beta"] for r in crow if r["n"] == nbig])
    mn = np.array([r["w2_min"] for r in crow if r["n"] == nbig])
    ax[1].loglog(bb, mn, "o-", label=r"$\min_t W_2$")
    ax[1].loglog(bb, np.sqrt(np.log(bb + 1) / bb), "k--", label=r"$\sqrt{\log(\beta+1)/\beta}$")
    ax[1].set(xlabel=r"$\beta$", ylabel=r"$W_2$", title="concentration vs the bound's scale")
    ax[1].legend(fontsize=8)
    fig.tight_layout()
    files.append(out / "concentration_meanfield.png")
    fig.savefig(files[-1], dpi=130)
    plt.close(fig)
    return files


def cli(argv: Sequence[str] | None = None) -> None:
    run_cli(main, MODEL + "-experiments", __doc__, argv, quick_help="fewer β, smaller n")


if __name__ == "__main__":
    cli()
