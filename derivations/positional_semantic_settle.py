"""positional-semantic, issue 13 item 1: the semantic branch at small α and the transition line.

Computes (shared saddle-point driver, replica QMC error bars) and draws:

1. the pitchfork: θ(α)² on the semantic branch near its end α_s(ω), ω = 0.1 … 0.5 (linear for a
   supercritical pitchfork; α_s from a weighted fit), and the θ-direction eigenvalue λ_θ of the
   map at the agnostic point (θ, m) = (0, 0) against α (λ_θ = 1 at α_s);
2. the authors' degree-7 cubature (4 Gauss–Hermite nodes per variable) against converged QMC;
3. α_c(ω) over ω ∈ [0.05, 0.95] from the continuation phase diagram, with quadrature error bars,
   against the authors' plotted 0.707, 0.928, 1.241, 1.751 (ω = 0.1 … 0.4);
4. finite-d runs from the semantic start at d = 400, 800, 1600 (α = 0.45, 0.6, 0.8);
5. (the page's "why θ does not shrink") the finite-d study from five starts at d = 400 … 3200
   (:func:`finite_d_study`), the replica theory's minimal risk at fixed θ on the m = 0 set
   (:func:`theta_profile`, θ̂ as a Lagrange multiplier) and finite-d fixed-θ paths
   (:func:`finite_d_theta_profile`);
6. the Φ crossing at ω = 0.1 by continuation, converged QMC against the authors' 4-node rule
   (:func:`branch_scan`, :func:`crossing`).

    python -m derivations.positional_semantic_settle [OUT_DIR] [--cache results.pkl]   # items 1-4
    python -m derivations.positional_semantic_settle --part finite_d|profile|crossing  # one CSV of 5-6
    python -m derivations.positional_semantic_settle --part figures                    # figures of 5-6
"""
from __future__ import annotations

import argparse
import pickle
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from derivations._common import save_figure

AUTHORS_ALPHA_C = {0.1: 0.707, 0.2: 0.928, 0.3: 1.241, 0.4: 1.751}
#: the page's converged α_c by batched bisection (4096 QMC points, one scramble; ±0.007 at ω = 0.3)
QMC_BISECTION_ALPHA_C = {0.2: 0.950, 0.3: 1.249, 0.4: 1.762}


def compute(sim: bool = True) -> dict[str, Any]:
    """Every number of the page (slow: tens of CPU minutes)."""
    from derivations.positional_semantic import (continuation_phase_diagram, semantic_pitchfork, solve_pairs,
                                                 theta_eigenvalue)

    res: dict[str, Any] = {}
    cub = {}
    for branch in ("semantic", "positional"):
        for al in (0.6, 1.0163636363636364, 1.8929):
            gh = solve_pairs([al], 0.3, branch, quadrature="gauss-hermite", n_quad=4, replicas=1, hats="stein")
            qm = solve_pairs([al], 0.3, branch, n_quad=8192, replicas=4)
            cub[(branch, al)] = {k: (float(gh[k][0]), float(qm[k][0]), float(qm[k + "_err"][0]))
                                 for k in ("q", "m", "v", "theta", "mse", "phi")}
    res["cubature"] = cub
    res["pitchfork"] = semantic_pitchfork([0.1, 0.2, 0.3, 0.4, 0.5], np.round(np.arange(0.3, 1.2001, 0.05), 3),
                                          n_quad=2048, replicas=4)
    res["eigen"] = theta_eigenvalue(np.round(np.arange(0.3, 1.21, 0.1), 3), [0.1, 0.3, 0.5], h=0.02,
                                    n_quad=4096, replicas=4)
    res["pd"] = continuation_phase_diagram(np.round(np.arange(0.3, 2.61, 0.1), 3),
                                           np.round(np.arange(0.05, 0.96, 0.1), 3), n_quad=1024, replicas=4)
    if sim:
        from numerics.simulate.positional_semantic import run

        res["sim"] = [run(d, al, "semantic", seed=s, n_test=4000, omega=0.3, sigma=0.5, lam=0.01)
                      for d in (1600, 800, 400) for al in (0.45, 0.6, 0.8) for s in range(3)]
    return res


def branch_scan(omegas: Sequence[float], alphas: Sequence[float], branch: str, *, descending: bool = False,
                **opts: Any) -> dict[str, Any]:
    """One branch followed along ``alphas`` by continuation (each step started at the previous
    fixed point; ``descending`` follows α downward, as the semantic branch must be followed to
    its end), batched over ``omegas``. Returns the (α × ω) arrays of the state, Φ, its
    quadrature error and ``converged`` (``opts``: ``quadrature``, ``n_quad``, ``replicas``)."""
    import derive
    from numerics.backend import get_backend
    from numerics.saddle import continuation

    from derivations.positional_semantic import LAM, MODEL, SIGMA

    m = derive.models.get(MODEL)
    be = get_backend("numpy")
    om = np.asarray(omegas, float)
    al = np.sort(np.asarray(alphas, float))
    order = al[::-1] if descending else al
    keys = ("q", "m", "v", "theta", "theta_err", "phi", "phi_err", "mse", "converged")

    def solve(a: float, x0: np.ndarray):
        params = m.validate(dict(alpha=np.full(om.size, a), omega=om, sigma=np.full(om.size, SIGMA),
                                 lam=np.full(om.size, LAM)))
        init = x0 if np.isfinite(x0).any() else None
        r = m.evaluate(params, be, branch=branch, init=init, **opts)
        x = np.stack([r[k] for k in m.state], axis=1)
        return type("Step", (), {"x": x, "converged": np.asarray(r["converged"], bool), "out": r})()

    steps = continuation(solve, list(order), np.full((om.size, 4), np.nan))
    out: dict[str, Any] = {k: np.full((al.size, om.size), np.nan) for k in keys}
    for a, st in zip(order, steps):
        i = int(np.nonzero(al == a)[0][0])
        for k in keys:
            out[k][i] = np.asarray(st.out[k], dtype=float) if k in st.out else np.nan
    out.update(alphas=al, omegas=om, branch=branch)
    return out


def crossing(alphas: np.ndarray, diff: np.ndarray, err: np.ndarray | None = None) -> tuple[float, float]:
    """First upward zero of ``diff`` (= Φ_sem − Φ_pos) along ``alphas`` (linear interpolation
    between the bracketing finite points); error = the larger ``err`` of the two over the slope."""
    ok = np.isfinite(diff)
    a, dd = alphas[ok], diff[ok]
    e = err[ok] if err is not None else np.zeros_like(dd)
    for i in range(a.size - 1):
        if dd[i] < 0 <= dd[i + 1]:
            sl = (dd[i + 1] - dd[i]) / (a[i + 1] - a[i])
            return float(a[i] - dd[i] / sl), float(max(e[i], e[i + 1]) / sl)
    return float("nan"), float("nan")


def theta_profile(alpha: float, omega: float, thetas: Sequence[float], *, tol: float = 1e-9, maxiter: int = 40,
                  **opts: Any) -> dict[str, np.ndarray]:
    r"""The replica theory's minimal risk on the m = 0 set **at fixed θ**, $e(\theta)=-\Phi_c(\theta)$:
    the RS computation of $\min_Q R/d$ under the extra constraint $\sigma^2Q_*^\top Q/d=\theta$.

    Fixing θ makes $\hat\theta$ a Lagrange multiplier: $\partial\Phi/\partial\hat\theta=0$ gives
    $\hat\theta_c=\theta(\lambda+\sigma^2\hat V)/(\sigma^2\rho)$, and the channel's
    $\hat\theta_{ch}=\alpha\mathbb E[\cdot]$ (the stated conjugate; it still enters $\hat V$ through
    Gaussian integration by parts, which is $\partial\Phi/\partial q$ at fixed θ) no longer equals it.
    The overlap updates then read $V\leftarrow F_V$, $m\leftarrow F_m(=0)$ and
    $q\leftarrow F_q+(\theta^2-F_\theta^2)/\rho$ (the $\hat\theta^2$ term of the q update with
    $\hat\theta_c$ in place of $\hat\theta_{ch}$), where $F$ is the model's map; and
    $\Phi_c=\Phi-\theta(\hat\theta_c-\hat\theta_{ch})+\tfrac12\sigma^2\rho(\hat\theta_c^2-\hat\theta_{ch}^2)
    /(\lambda+\sigma^2\hat V)$ (the prior part of Φ, §5, at $\hat\theta_c$). At θ = F_θ (the
    unconstrained fixed point) $\Phi_c=\Phi$. Solved per replica rule of the model's semantic
    quadrature (``opts``) by Newton on (q, V) with a forward-difference Jacobian (relative step
    1e-3), to ``tol`` on the undamped residual; returns the replica means and standard errors."""
    import derive
    from numerics.backend import get_backend

    from derivations.positional_semantic import LAM, MODEL, SIGMA, solve_pairs

    m = derive.models.get(MODEL)
    be = get_backend("numpy")
    th = np.asarray(thetas, float)
    P = th.size
    params = m.validate(dict(alpha=np.full(P, alpha), omega=np.full(P, omega), sigma=np.full(P, SIGMA),
                             lam=np.full(P, LAM)))
    ag = solve_pairs([alpha], omega, "agnostic", **opts)
    drv, _ = m.saddle(params, be, **{**opts, "branch": "semantic"})
    R = drv.R
    rows = np.arange(P * R)
    thr = np.repeat(th, R)
    rho = SIGMA**2
    x = np.zeros((P * R, 4))
    x[:, 0], x[:, 2], x[:, 3] = float(ag["q"][0]), float(ag["v"][0]), thr

    def G(xx: np.ndarray) -> tuple[np.ndarray, dict]:
        o = drv.evaluate(xx, rows)
        F = o["map"]
        g = np.stack([F[:, 0] + (thr**2 - F[:, 3] ** 2) / rho, F[:, 2]], axis=1)
        return g, o

    res = np.full(P * R, np.inf)
    for _ in range(maxiter):
        g, o = G(x)
        r0 = g - x[:, [0, 2]]
        res = np.max(np.abs(r0) / np.abs(x[:, [0, 2]]), axis=1)
        if np.all(res < tol):
            break
        J = np.empty((P * R, 2, 2))
        for c, col in enumerate((0, 2)):
            xs = x.copy()
            hstep = 1e-3 * x[:, col]
            xs[:, col] += hstep
            gs, _ = G(xs)
            J[:, :, c] = ((gs - xs[:, [0, 2]]) - r0) / hstep[:, None]
        step = np.linalg.solve(J, -r0[:, :, None])[:, :, 0]
        for frac in (1.0, 0.5, 0.25, 0.1):
            xn = x.copy()
            xn[:, [0, 2]] += frac * step
            if np.all(xn[:, 0] > thr**2 / rho) and np.all(xn[:, 2] > 0):
                break
        x = xn
    g, o = G(x)
    den = LAM + SIGMA**2 * o["vhat"]
    thc = thr * den / (SIGMA**2 * rho)
    thch = o["thetahat"]
    phic = o["phi"] - thr * (thc - thch) + 0.5 * SIGMA**2 * rho * (thc**2 - thch**2) / den
    out: dict[str, np.ndarray] = {"theta": th, "alpha": np.full(P, alpha), "omega": np.full(P, omega)}
    for k, v in (("q", x[:, 0]), ("v", x[:, 2]), ("e", -phic), ("F_theta", o["map"][:, 3]),
                 ("residual", res)):
        v = np.asarray(v).reshape(P, R)
        out[k] = v.mean(axis=1)
        out[k + "_err"] = v.std(axis=1, ddof=1) / np.sqrt(R) if R > 1 else np.zeros(P)
    ed = (-phic).reshape(P, R) - (-phic).reshape(P, R)[np.argmin(np.abs(th))][None, :]
    out["e_minus_e0"] = ed.mean(axis=1)  # paired over replica rules: the rule noise cancels
    out["e_minus_e0_err"] = ed.std(axis=1, ddof=1) / np.sqrt(R) if R > 1 else np.zeros(P)
    out["converged"] = (np.asarray(res).reshape(P, R) < tol).all(axis=1)
    return out


FINITE_D_STARTS = ("positional", "semantic", "semantic_m0", "zero_m0", "small_m0")


def finite_d_instance(d: int, alpha: float, seed: int, *, omega: float = 0.3, hessian: bool = True,
                      n_test: int = 1000) -> list[dict[str, Any]]:
    """One training set at dimension ``d`` (``numerics.simulate.positional_semantic``, σ = 0.5,
    λ = 0.01), minimised from five starts; one row per start:

    - ``positional`` (Q ∝ u) and ``semantic`` (Q ∝ Q*): free L-BFGS, as in the page's table. The
      semantic end point is then continued with ``gtol = 1e-12`` (``theta_tight``, ``risk_tight``)
      and, if ``hessian``, probed to second order (smallest Hessian eigenvalues, the curvature
      along Q*, the bound ``‖∇R‖/λ_min`` on the distance to the exact critical point);
    - on the set m = 0 (``subspace="m0"``, uᵀQ = 0 exactly), the replica theory's semantic set:
      ``semantic_m0`` from Q ∝ Q*; ``zero_m0`` from the semantic end point with its Q* component
      removed (θ = 0, the rest of the state kept); ``small_m0`` from a random Q of the agnostic
      fixed point's norm (q = 0.035).

    The risk per dimension of each end point, ``risk_per_d``, is the theory's −Φ of the state
    reached; the same instance's ``positional`` row is the control (its −Φ is known)."""
    import time

    from numerics.simulate import positional_semantic as ps

    s2 = 0.25
    inst = ps.sample_instance(d, alpha, seed=seed, omega=omega, sigma=0.5, lam=0.01)
    rows: list[dict[str, Any]] = []

    def row(start: str, Q: np.ndarray, res: Any, t0: float, **extra: Any) -> dict[str, Any]:
        r = {"d": d, "alpha": alpha, "omega": omega, "seed": seed, "start": start,
             "theta": float(s2 * inst.Qstar @ Q / d), "m": float(inst.u @ Q / d), "q": float(s2 * Q @ Q / d),
             "risk_per_d": float(res.fun / d), "nit": int(res.nit), "grad_max": float(np.max(np.abs(res.jac))),
             "seconds": time.perf_counter() - t0}
        r.update(extra)
        return r

    t0 = time.perf_counter()
    Q, res = ps.train(inst, "positional", seed=seed)
    rows.append(row("positional", Q, res, t0))
    t0 = time.perf_counter()
    Qs, res = ps.train(inst, "semantic", seed=seed)
    extra: dict[str, Any] = {"mse": ps.measure(Qs, inst, n_test=n_test, seed=seed)["mse"]}
    Qt, rt = ps.train(inst, "semantic", Q0=Qs, gtol=1e-12, maxiter=50000)
    extra.update(theta_tight=float(s2 * inst.Qstar @ Qt / d), risk_tight=float(rt.fun / d), nit_tight=int(rt.nit))
    if hessian:
        extra.update(ps.hessian_probe(Qs, inst, k=3))
    rows.append(row("semantic", Qs, res, t0, **extra))
    t0 = time.perf_counter()
    Q, res = ps.train(inst, "semantic", seed=seed, subspace="m0")
    rows.append(row("semantic_m0", Q, res, t0))
    t0 = time.perf_counter()
    es = inst.Qstar / np.linalg.norm(inst.Qstar)
    Q, res = ps.train(inst, "zero", Q0=Qs - (Qs @ es) * es, subspace="m0")
    rows.append(row("zero_m0", Q, res, t0))
    t0 = time.perf_counter()
    z = np.random.default_rng(seed + 777).standard_normal(d)
    z *= np.sqrt(0.035 * d / s2) / np.linalg.norm(z)
    Q, res = ps.train(inst, "small", Q0=z, subspace="m0")
    rows.append(row("small_m0", Q, res, t0))
    return rows


def finite_d_theta_profile(d: int, alpha: float, seed: int, thetas: Sequence[float], *,
                           omega: float = 0.3) -> list[dict[str, Any]]:
    """The finite-d minimal risk at fixed θ on the m = 0 set, along a path of local minima: from
    the ``semantic_m0`` end point (θ_end), minimise at each θ of ``thetas`` (``theta_fixed``),
    continuing from the previous θ's minimiser, first downward from θ_end, then upward. Rows:
    θ, risk/d, and the end point's own θ_end and risk (the profile's reference)."""
    from numerics.simulate import positional_semantic as ps

    inst = ps.sample_instance(d, alpha, seed=seed, omega=omega, sigma=0.5, lam=0.01)
    Qe, re_ = ps.train(inst, "semantic", seed=seed, subspace="m0")
    th_end = float(0.25 * inst.Qstar @ Qe / d)
    rows = [{"d": d, "alpha": alpha, "omega": omega, "seed": seed, "theta": th_end, "risk_per_d": re_.fun / d,
             "theta_end": th_end, "risk_end": re_.fun / d, "path": "end"}]
    th = np.asarray(thetas, float)
    for path, seq in (("down", np.sort(th[th < th_end])[::-1]), ("up", np.sort(th[th > th_end]))):
        Q = Qe
        for t in seq:
            Q, r = ps.train(inst, "fixed", Q0=Q, subspace="m0", theta_fixed=float(t))
            rows.append({"d": d, "alpha": alpha, "omega": omega, "seed": seed, "theta": float(t),
                         "risk_per_d": r.fun / d, "theta_end": th_end, "risk_end": re_.fun / d, "path": path})
    return sorted(rows, key=lambda r: r["theta"])


def finite_d_study(plan: Sequence[tuple[int, float, int]], *, hessian_max_d: int = 1600,
                   echo=print) -> list[dict[str, Any]]:
    """:func:`finite_d_instance` over ``plan`` = [(d, α, n_seeds), …] (seeds 0 … n_seeds−1)."""
    rows: list[dict[str, Any]] = []
    for d, al, ns in plan:
        for sd in range(ns):
            rr = finite_d_instance(d, al, sd, hessian=d <= hessian_max_d)
            rows += rr
            echo(f"d={d} alpha={al} seed={sd}: " + "; ".join(
                f"{r['start']} th={r['theta']:+.4f} m={r['m']:+.4f} R/d={r['risk_per_d']:.7f}" for r in rr))
    return rows


def write_csv(path: Path, rows: Sequence[dict[str, Any]], provenance: str) -> None:
    """CSV with a ``# provenance`` first line; the union of the rows' keys as columns."""
    import csv

    keys: list[str] = []
    for r in rows:
        keys += [k for k in r if k not in keys]
    with path.open("w", newline="") as fh:
        fh.write(f"# {provenance}\n")
        w = csv.DictWriter(fh, fieldnames=keys)
        w.writeheader()
        for r in rows:
            w.writerow({k: (f"{v:.9g}" if isinstance(v, float) else v) for k, v in r.items()})


def read_csv(path: Path) -> list[dict[str, Any]]:
    """Rows of :func:`write_csv` (numbers as float, empty as NaN)."""
    import csv

    lines = [ln for ln in path.read_text().splitlines() if not ln.startswith("#")]
    out = []
    for r in csv.DictReader(lines):
        row: dict[str, Any] = {}
        for k, v in r.items():
            try:
                row[k] = float(v) if v != "" else float("nan")
            except ValueError:
                row[k] = v
        out.append(row)
    return out


def figures(res: dict[str, Any], out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    files = []
    if "pitchfork" in res:
        pf = res["pitchfork"]
        two = "eigen" in res
        fig, ax = plt.subplots(1, 2 if two else 1, figsize=(11 if two else 6, 4.2), squeeze=False)
        ax = ax[0]
        for j, w in enumerate(pf["omegas"]):
            t = pf["theta"][:, j]
            e = pf["theta_err"][:, j]
            ok = pf["converged"][:, j] > 0
            l, = ax[0].plot(pf["alphas"][ok], t[ok] ** 2, "o-", ms=3, label=f"ω = {w:.1f}")
            ax[0].errorbar(pf["alphas"][ok], t[ok] ** 2, yerr=2 * np.abs(t[ok]) * e[ok], fmt="none",
                           ecolor=l.get_color())
            if np.isfinite(pf["alpha_s"][j]):
                ax[0].axvline(pf["alpha_s"][j], color=l.get_color(), ls=":", lw=0.8)
        ax[0].set_xlabel(r"$\alpha$")
        ax[0].set_ylabel(r"$\theta^2$ (semantic branch)")
        ax[0].set_ylim(-2e-4, 6e-3)
        ax[0].set_title(r"$\theta^2$ is linear near the end $\alpha_s$ (dotted)")
        ax[0].legend(fontsize=8)
        if "eigen" in res:
            ev = res["eigen"]
            for j in range(ev["omega"].shape[1]):
                ax[1].errorbar(ev["alpha"][:, j], ev["lambda_theta"][:, j], yerr=ev["lambda_theta_err"][:, j],
                               fmt="o-", ms=3, label=f"ω = {ev['omega'][0, j]:.1f}")
            ax[1].axhline(1.0, color="k", lw=0.8)
            ax[1].set_xlabel(r"$\alpha$")
            ax[1].set_ylabel(r"$\lambda_\theta$ at $(\theta, m) = (0, 0)$")
            ax[1].set_title(r"θ-direction eigenvalue of the map at the agnostic point")
            ax[1].legend(fontsize=8)
        fig.tight_layout()
        files.append(save_figure(fig, out / "pitchfork.png", dpi=130))
    if "pd" in res:
        pd = res["pd"]
        fig, ax = plt.subplots(1, 2, figsize=(11, 4.2))
        A, W = np.meshgrid(pd["alphas"], pd["omegas"], indexing="ij")
        d = pd["semantic"]["phi"] - pd["positional"]["phi"]
        glob = np.where(pd["semantic"]["on_branch"] & (~pd["positional"]["on_branch"] | (d > 0)), 1.0,
                        np.where(pd["positional"]["on_branch"], 0.0, np.nan))
        ax[0].pcolormesh(A, W, glob, cmap="coolwarm", shading="nearest", vmin=0, vmax=1)
        ax[0].errorbar(pd["alpha_c"], pd["omegas"], xerr=pd["alpha_c_err"], fmt="k.-",
                       label=r"$\alpha_c(\omega)$ (Φ crossing)")
        ax[0].plot(pd["semantic_end"], pd["omegas"], "w^--", ms=4, label="semantic branch ends")
        ax[0].plot(pd["positional_end"], pd["omegas"], "wv--", ms=4, label="positional branch ends")
        aw = sorted(AUTHORS_ALPHA_C)
        ax[0].plot([AUTHORS_ALPHA_C[w] for w in aw], aw, "gs", ms=5, label="authors' plotted line")
        ax[0].set_xlabel(r"$\alpha$")
        ax[0].set_ylabel(r"$\omega$")
        ax[0].set_title("global minimum: blue positional, red semantic")
        ax[0].legend(fontsize=7, loc="upper left")
        im = ax[1].pcolormesh(A, W, d, cmap="PiYG", shading="nearest")
        fig.colorbar(im, ax=ax[1], label=r"$\Phi_{\rm sem}-\Phi_{\rm pos}$")
        ax[1].set_xlabel(r"$\alpha$")
        ax[1].set_title("free-energy difference (both branches exist)")
        fig.tight_layout()
        files.append(save_figure(fig, out / "phase_diagram_subgrid.png", dpi=130))  # not the docs phase_diagram.png (derivations/positional_semantic.py)
    if "sim" in res and res["sim"]:
        rows = res["sim"]
        fig, ax = plt.subplots(1, 2, figsize=(10, 3.8))
        for al in (0.45, 0.6, 0.8):
            ds = sorted({r["d"] for r in rows if r["alpha"] == al})
            for key, a in (("m", ax[0]), ("theta", ax[1])):
                mu = [np.mean([r[key] for r in rows if r["alpha"] == al and r["d"] == d]) for d in ds]
                se = [np.std([r[key] for r in rows if r["alpha"] == al and r["d"] == d], ddof=1)
                      / np.sqrt(sum(1 for r in rows if r["alpha"] == al and r["d"] == d)) for d in ds]
                a.errorbar(ds, mu, yerr=se, fmt="o-", label=f"α = {al}")
        for a, k in ((ax[0], "m"), (ax[1], r"\theta")):
            a.set_xscale("log")
            a.set_xlabel("d")
            a.set_ylabel(f"${k}$ (semantic start)")
            a.legend(fontsize=8)
        ax[0].set_title("finite d: the positional overlap of the mixed state")
        fig.tight_layout()
        files.append(save_figure(fig, out / "finite_d_semantic_start.png", dpi=130))
    return files


DATA = Path(__file__).resolve().parents[1] / "tests" / "data"
FIG = Path(__file__).resolve().parents[1] / "docs" / "figures" / "positional-semantic"
FINITE_D_CSV = DATA / "positional_semantic_finite_d.csv"
PROFILE_CSV = DATA / "positional_semantic_theta_profile.csv"
CROSSING_CSV = DATA / "positional_semantic_crossing.csv"
FINITE_D_PLAN = ((400, 0.45, 6), (400, 0.6, 6), (800, 0.45, 6), (800, 0.6, 6), (1600, 0.45, 4), (1600, 0.6, 4),
                 (3200, 0.45, 3), (3200, 0.6, 3))
PROFILE_THETAS = (0.0, 0.01, 0.02, 0.03, 0.04, 0.05, 0.06, 0.08)
CROSSING_RULES = {"qmc4096x4": dict(n_quad=4096, replicas=4),
                  "gh4": dict(quadrature="gauss-hermite", n_quad=4, replicas=1, hats="stein")}


def _provenance(part: str, extra: str = "") -> str:
    import datetime
    import subprocess

    try:
        sha = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                             cwd=Path(__file__).resolve().parents[1]).stdout.strip()
    except OSError:  # pragma: no cover
        sha = "?"
    return (f"python -m derivations.positional_semantic_settle --part {part}; recorded "
            f"{datetime.date.today().isoformat()} at git {sha}; sigma 0.5, lambda 0.01, omega 0.3 unless a column says; "
            + extra)


PROFILE_FINITE_D = ((400, 0.45, (0, 1)), (1600, 0.45, (0,)))


def rs_profile_rows(alpha: float, prof: dict[str, np.ndarray], phi_pos: float, phi_pos_err: float) -> list[dict[str, Any]]:
    """CSV rows of :func:`theta_profile` at one α, with ``e_minus_pos`` = e(θ) − (−Φ_pos)."""
    return [{"source": "rs", "alpha": alpha, "d": "", "seed": "", "path": "", "theta": float(t),
             "q": float(prof["q"][i]), "v": float(prof["v"][i]), "e": float(prof["e"][i]), "e_err": float(prof["e_err"][i]),
             "e_minus_e0": float(prof["e_minus_e0"][i]), "e_minus_e0_err": float(prof["e_minus_e0_err"][i]),
             "F_theta": float(prof["F_theta"][i]), "F_theta_err": float(prof["F_theta_err"][i]),
             "e_minus_pos": float(prof["e"][i] + phi_pos), "phi_pos_err": phi_pos_err,
             "converged": int(bool(prof["converged"][i]))} for i, t in enumerate(prof["theta"])]


def profile_rows() -> list[dict[str, Any]]:
    """The replica theory's fixed-θ risk profile at α = 0.45 and 0.6 (4096 × 4 QMC) and the
    finite-d fixed-θ paths of :data:`PROFILE_FINITE_D`."""
    from derivations.positional_semantic import solve_pairs

    rows: list[dict[str, Any]] = []
    for al in (0.45, 0.6):
        prof = theta_profile(al, 0.3, PROFILE_THETAS, n_quad=4096, replicas=4)
        pos = solve_pairs([al], 0.3, "positional", n_quad=4096, replicas=4)
        rows += rs_profile_rows(al, prof, float(pos["phi"][0]), float(pos["phi_err"][0]))
    for d, al, seeds in PROFILE_FINITE_D:
        for sd in seeds:
            rows += [{"source": "finite_d", **r} for r in
                     finite_d_theta_profile(d, al, sd, np.round(np.arange(0, 0.0801, 0.005), 4))]
    return rows


def crossing_rows(res: dict[str, dict[str, Any]], rule: str) -> list[dict[str, Any]]:
    """Flatten :func:`branch_scan` results of the two branches into CSV rows (one per α, ω)."""
    sem, pos = res["semantic"], res["positional"]
    rows = []
    for j, w in enumerate(sem["omegas"]):
        for i, a in enumerate(sem["alphas"]):
            rows.append({"rule": rule, "omega": float(w), "alpha": float(a),
                         "theta_sem": float(sem["theta"][i, j]), "theta_sem_err": float(sem["theta_err"][i, j]),
                         "phi_sem": float(sem["phi"][i, j]), "phi_sem_err": float(sem["phi_err"][i, j]),
                         "phi_pos": float(pos["phi"][i, j]), "phi_pos_err": float(pos["phi_err"][i, j]),
                         "m_pos": float(pos["m"][i, j]),
                         "converged": int(bool(sem["converged"][i, j] > 0) and bool(pos["converged"][i, j] > 0))})
    return rows


def crossings_from_rows(rows: Sequence[dict[str, Any]]) -> dict[tuple[str, float], tuple[float, float]]:
    """α_c per (rule, ω) from :func:`crossing_rows` (the first upward zero of Φ_sem − Φ_pos)."""
    out = {}
    for key in sorted({(r["rule"], float(r["omega"])) for r in rows}):
        rr = sorted((r for r in rows if (r["rule"], float(r["omega"])) == key), key=lambda r: r["alpha"])
        a = np.array([r["alpha"] for r in rr])
        d = np.array([r["phi_sem"] - r["phi_pos"] if r["converged"] else np.nan for r in rr])
        e = np.array([np.hypot(np.nan_to_num(r["phi_sem_err"]), np.nan_to_num(r["phi_pos_err"])) for r in rr])
        out[key] = crossing(a, d, e)
    return out


def finite_d_table(fd_rows: Sequence[dict[str, Any]], prof_rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per (α, d): means ± standard errors over seeds of the page's table columns — |m| and θ of
    the free semantic start, θ and the excess risk (risk/d − the same instance's positional risk/d)
    of the ``semantic_m0`` and ``small_m0`` starts, and the replica theory's e(θ_end) − (−Φ_pos) at
    each run's θ (interpolated in the recorded profile)."""
    out = []
    for al in sorted({r["alpha"] for r in fd_rows}):
        rs = sorted((r for r in prof_rows if r["source"] == "rs" and r["alpha"] == al), key=lambda r: r["theta"])
        th_rs = np.array([r["theta"] for r in rs])
        ex_rs = np.array([r["e_minus_pos"] for r in rs])
        for d in sorted({int(r["d"]) for r in fd_rows if r["alpha"] == al}):
            R = [r for r in fd_rows if r["alpha"] == al and int(r["d"]) == d]
            pos = {r["seed"]: r["risk_per_d"] for r in R if r["start"] == "positional"}

            def ms(v: Any) -> tuple[float, float]:
                v = np.asarray(v, float)
                return float(v.mean()), float(v.std(ddof=1) / np.sqrt(v.size)) if v.size > 1 else float("nan")

            pick = lambda s, k: [r[k] for r in R if r["start"] == s]  # noqa: E731
            exc = lambda s: [r["risk_per_d"] - pos[r["seed"]] for r in R if r["start"] == s]  # noqa: E731
            out.append({"alpha": al, "d": d, "seeds": len(pos), "m_free": ms(np.abs(pick("semantic", "m"))),
                        "theta_free": ms(pick("semantic", "theta")), "theta_m0": ms(pick("semantic_m0", "theta")),
                        "excess_m0": ms(exc("semantic_m0")),
                        "theory_m0": ms([np.interp(t, th_rs, ex_rs) for t in pick("semantic_m0", "theta")])
                        if rs else (float("nan"), float("nan")),
                        "theta_random": ms(pick("small_m0", "theta")), "excess_random": ms(exc("small_m0"))})
    return out


def finite_d_table_markdown(table: Sequence[dict[str, Any]]) -> str:
    """The page's table (excess risks in units of 1e-5)."""
    f3 = lambda v: f"{v[0]:.3f} ± {v[1]:.3f}"  # noqa: E731
    f1 = lambda v: f"{1e5 * v[0]:.1f} ± {1e5 * v[1]:.1f}"  # noqa: E731
    return "\n".join(f"| {t['alpha']} | {t['d']} ({t['seeds']}) | {f3(t['m_free'])} | {f3(t['theta_free'])} | "
                     f"{f3(t['theta_m0'])} | {f1(t['excess_m0'])} | {1e5 * t['theory_m0'][0]:.1f} | "
                     f"{f3(t['theta_random'])} | {f1(t['excess_random'])} |" for t in table)


def figures_item1(out: Path = FIG) -> list[Path]:
    """The figures of the page's issue-13 section from the recorded CSVs: the finite-d study
    (``finite_d_semantic_start.png``), the fixed-θ risk profile (``theta_profile.png``) and the
    Φ crossing by quadrature rule (``crossing_rules.png``)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    files = []
    if FINITE_D_CSV.exists():
        rows = read_csv(FINITE_D_CSV)
        fig, ax = plt.subplots(1, 3, figsize=(14, 4))
        for k, (al, c) in enumerate(((0.45, "C0"), (0.6, "C1"))):
            for start, mk, key, axi in (("semantic", "o-", "m", 0), ("semantic", "o-", "theta", 1),
                                        ("semantic_m0", "s--", "theta", 1), ("small_m0", "^:", "theta", 1)):
                ds = sorted({int(r["d"]) for r in rows if r["alpha"] == al})
                mu, se = [], []
                for d in ds:
                    v = np.array([abs(r[key]) if key == "m" else r[key] for r in rows
                                  if r["alpha"] == al and r["d"] == d and r["start"] == start])
                    mu.append(v.mean())
                    se.append(v.std(ddof=1) / np.sqrt(v.size))
                ax[axi].errorbar(ds, mu, yerr=se, fmt=mk, color=c, ms=4, label=f"α = {al}, {start}")
            for start, mk in (("semantic_m0", "s--"), ("small_m0", "^:")):
                ds = sorted({int(r["d"]) for r in rows if r["alpha"] == al})
                mu, se = [], []
                for d in ds:
                    pr = {int(r["seed"]): r["risk_per_d"] for r in rows
                          if r["alpha"] == al and r["d"] == d and r["start"] == "positional"}
                    v = np.array([r["risk_per_d"] - pr[int(r["seed"])] for r in rows
                                  if r["alpha"] == al and r["d"] == d and r["start"] == start])
                    mu.append(v.mean())
                    se.append(v.std(ddof=1) / np.sqrt(v.size))
                ax[2].errorbar(ds, mu, yerr=se, fmt=mk, color=c, ms=4, label=f"α = {al}, {start}")
        if PROFILE_CSV.exists():
            pr = [r for r in read_csv(PROFILE_CSV) if r["source"] == "rs"]
            for al, c in ((0.45, "C0"), (0.6, "C1")):
                p0 = [r for r in pr if r["alpha"] == al and r["theta"] == 0.0]
                if p0:
                    ax[2].axhline(p0[0]["e_minus_pos"], color=c, lw=0.8, ls="-.",
                                  label=f"RS: θ = 0 on m = 0 (α = {al})")
        ax[0].set_ylabel("|m| (free start at Q ∝ Q*)")
        ax[0].set_title("|m| of the free start: broad, no trend past d = 1600", fontsize=10)
        ax[1].set_ylabel("θ")
        ax[1].set_title("θ of the end points does not shrink", fontsize=10)
        ax[2].set_ylabel("risk/d − risk/d of the positional run (same data)")
        ax[2].set_title("excess risk over the positional minimum")
        for a in ax:
            a.set_xscale("log")
            a.set_xlabel("d")
            a.legend(fontsize=6)
        fig.tight_layout()
        files.append(save_figure(fig, out / "finite_d_semantic_start.png", dpi=120))
    if PROFILE_CSV.exists():
        rows = read_csv(PROFILE_CSV)
        fig, ax = plt.subplots(1, 2, figsize=(11, 4))
        for k, al in enumerate((0.45, 0.6)):
            rs = sorted((r for r in rows if r["source"] == "rs" and r["alpha"] == al), key=lambda r: r["theta"])
            if rs:
                ax[k].errorbar([r["theta"] for r in rs], [r["e_minus_e0"] for r in rs],
                               yerr=[r["e_minus_e0_err"] for r in rs], fmt="k.-", lw=2,
                               label="replica theory e(θ) − e(0), 4096 × 4 QMC")
            fd = [r for r in rows if r["source"] == "finite_d" and r["alpha"] == al]
            for (d, sd) in sorted({(int(r["d"]), int(r["seed"])) for r in fd}):
                rr = sorted((r for r in fd if r["d"] == d and r["seed"] == sd), key=lambda r: r["theta"])
                th = np.array([r["theta"] for r in rr])
                ee = np.array([r["risk_per_d"] for r in rr])
                te, re_ = rr[0]["theta_end"], rr[0]["risk_end"]
                e_rs_end = np.interp(te, [r["theta"] for r in rs], [r["e_minus_e0"] for r in rs]) if rs else 0.0
                l, = ax[k].plot(th, ee - re_ + e_rs_end, ".-", lw=0.8, label=f"d = {d}, seed {sd} (fixed-θ path)")
                ax[k].plot([te], [e_rs_end], "o", color=l.get_color())
            ax[k].set_xlabel("θ (m = 0)")
            ax[k].set_ylabel("minimal risk/d at fixed θ, relative")
            ax[k].set_title(f"α = {al}, ω = 0.3 (finite-d fixed-θ paths, dots: trainer end points)", fontsize=9)
            ax[k].legend(fontsize=6)
        fig.tight_layout()
        files.append(save_figure(fig, out / "theta_profile.png", dpi=120))
    if CROSSING_CSV.exists():
        rows = read_csv(CROSSING_CSV)
        ac = crossings_from_rows(rows)
        oms = sorted({float(r["omega"]) for r in rows})
        fig, ax = plt.subplots(1, len(oms), figsize=(4.2 * len(oms), 3.8), squeeze=False)
        for k, w in enumerate(oms):
            if w in QMC_BISECTION_ALPHA_C:
                ax[0, k].axvline(QMC_BISECTION_ALPHA_C[w], color="C0", ls="--", lw=0.8,
                                 label=f"QMC bisection (page) {QMC_BISECTION_ALPHA_C[w]}")
            for rule, fmt, col in (("qmc4096x4", "o-", "C0"), ("gh4", "s--", "C1")):
                rr = sorted((r for r in rows if r["rule"] == rule and r["omega"] == w), key=lambda r: r["alpha"])
                if not rr:
                    continue
                a = np.array([r["alpha"] for r in rr])
                d = np.array([r["phi_sem"] - r["phi_pos"] for r in rr])
                e = np.array([np.hypot(np.nan_to_num(r["phi_sem_err"]), np.nan_to_num(r["phi_pos_err"])) for r in rr])
                ax[0, k].errorbar(a, d, yerr=e, fmt=fmt, ms=3, color=col,
                                  label=f"{rule}: α_c = {ac.get((rule, w), (np.nan,))[0]:.3f}")
            ax[0, k].axhline(0, color="k", lw=0.8)
            if w == 0.1:
                ax[0, k].axvspan(0.58, 0.64, color="0.85", label="pitchfork α_s(0.1) = 0.61 ± 0.03")
            if w in AUTHORS_ALPHA_C:
                ax[0, k].axvline(AUTHORS_ALPHA_C[w], color="g", ls=":", label=f"authors' line {AUTHORS_ALPHA_C[w]}")
            ax[0, k].set_xlabel("α")
            ax[0, k].set_ylabel(r"$\Phi_{\rm sem}-\Phi_{\rm pos}$")
            ax[0, k].set_title(f"ω = {w}")
            ax[0, k].legend(fontsize=7)
        fig.tight_layout()
        files.append(save_figure(fig, out / "crossing_rules.png", dpi=120))
    return files


def main(argv: Any = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path, nargs="?", default=FIG)
    ap.add_argument("--cache", type=Path, default=None, help="pickle of compute() (read if present, else written)")
    ap.add_argument("--part", choices=("all", "finite_d", "profile", "crossing", "figures"), default="all",
                    help="issue-13 item 1 parts: recompute one CSV under tests/data, or only draw the figures")
    a = ap.parse_args(argv)
    if a.part == "finite_d":
        rows = finite_d_study(FINITE_D_PLAN)
        write_csv(FINITE_D_CSV, rows, _provenance("finite_d", f"plan (d, alpha, seeds 0..n-1): {FINITE_D_PLAN}"))
    elif a.part == "profile":
        rows = profile_rows()
        write_csv(PROFILE_CSV, rows, _provenance("profile", "rs: theta_profile(n_quad=4096, replicas=4); "
                                                 "finite_d: finite_d_theta_profile, thetas 0..0.08 step 0.005"))
    elif a.part == "crossing":
        rows = []
        for rule, opts in CROSSING_RULES.items():
            al = np.round(np.arange(0.55, 1.1001, 0.05), 4)
            sem = branch_scan([0.1, 0.2], al, "semantic", descending=True, **opts)
            pos = branch_scan([0.1, 0.2], al, "positional", **opts)
            rows += crossing_rows({"semantic": sem, "positional": pos}, rule)
        write_csv(CROSSING_CSV, rows, _provenance("crossing", "branch_scan over alpha 0.55..1.1 step 0.05"))
    if a.part in ("all",):
        if a.cache is not None and a.cache.exists():
            res = pickle.loads(a.cache.read_bytes())
        else:
            res = compute()
            if a.cache is not None:
                a.cache.write_bytes(pickle.dumps(res))
        for f in figures(res, a.out):
            print(f)
    for f in figures_item1(a.out):
        print(f)


if __name__ == "__main__":
    main()
