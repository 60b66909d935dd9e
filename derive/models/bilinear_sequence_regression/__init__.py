r"""Bilinear sequence regression: Bayes-optimal MMSE by state evolution with a rectangular RIE.

V. Erba, E. Troiani, L. Biggio, A. Maillard, L. Zdeborová, *Bilinear sequence regression: a
model for learning from long sequences of high-dimensional tokens*, arXiv:2410.18858, PRX 2025.
Spec: ``shared/specs/bayes_optimal_sequence_models.md`` §B2 (equation tags there).

A sequence $X\in\mathbb R^{D\times L}$ with i.i.d. $N(0,1)$ entries, target
$S^*=UV^\top/\sqrt r$ ($U\in\mathbb R^{D\times r}$, $V\in\mathbb R^{L\times r}$ Gaussian),
label $y=\operatorname{Tr}(X^\top S^*)/\sqrt{DL}+\sqrt\Delta\,\xi$. Limit $D,L,r,N\to\infty$ with
$\alpha=N/(DL)$, $\beta=L/D\ge1$, $\rho=r/D$ (relative to the smaller side).

Stated (spec §B2, authors' code): the scalar state evolution
$\hat q=\alpha/(\Delta+1-q)$, $q=1-\mathrm{mmse}_{\rm RIE}(1/\hat q)$; the rectangular RIE
error $\mathrm{mmse}_{\rm RIE}(\Delta)=\Delta-\frac{\Delta^2}{\beta^{3/2}}\big[(\beta-1)^2\!\int\!\frac{\mu_Y}{x^2}
+\frac{4\pi^2}{3}\!\int\!\mu_Y^3\big]$; the $\beta\to\infty$ fixed-point equation; the
perfect-recovery threshold $\alpha_{\rm PR}=\rho(1+\beta-\rho)/\beta$ ($\rho<1$), 1 otherwise.

Derived here (SymPy): the quartic for the Stieltjes transform of $\mu_Y$ and its edge
polynomial (:mod:`derive.models._rie`), and the $\beta=\infty$, $\Delta=0$ closed form
$\mathrm{mmse}=(1-\alpha)(1-\alpha/\rho)$ from the stated $\beta\to\infty$ equation.
The order parameter iterated is $m=1-q$ (the MMSE itself).

The model class here is the numeric side (parameters, observables, the pipeline that orders
generated kernels and generic solvers); the SymPy statement (symbols, definitions, derivations,
programs, equations) lives in :mod:`.statement`, imported only when equations are needed, so a
solve from cached kernels never imports SymPy (docs/architecture.md, "Start-up").
"""
from __future__ import annotations

import math
from functools import lru_cache
from typing import Any, Mapping

import numpy as np

from numerics.backend import Backend
from numerics.state_evolution import solve_two_stage
from numerics.rie import batched_support, density_batch, integrate_density_batch

from ...declarations import Observable, declare, init_option, stability_option
from ...lazy_statement import FromStatement, StatementSymbolNames, statement_getattr
from ...model import Model
from ...params import Domain, Parameter, nonnegative, positive
from .._bayes_fp import check_stability_option, leading_eigenvalue, parse_init

__all__ = ["BilinearSequenceRegression", "MODEL"]

ALPHA = Parameter("alpha", positive, r"\alpha", "samples per matrix entry, N/(D L)")
BETA = Parameter("beta", Domain(1.0, math.inf, lo_closed=True, hi_closed=True), r"\beta",
                 "sequence length over dimension, L/D (>= 1; inf accepted)")
RHO = Parameter("rho", positive, r"\rho", "rank over the smaller side, r/D")
DELTA = Parameter("delta", nonnegative, r"\Delta", "label-noise variance")

#: output names of the ``quartic`` (coefficients c0..c4, lowest degree first) and ``edges``
#: (e0..e10) programs; the statement's symbols ``C``, ``E`` carry the same names
COEFF_NAMES = tuple(f"c{i}" for i in range(5))
EDGE_NAMES = tuple(f"e{i}" for i in range(11))
#: a quadrature piece is accepted once its error estimate moves the mmse by at most this
WEIGHTED_TOL = 1e-13


@lru_cache(maxsize=None)
def _statement() -> Any:
    """The one :class:`~.statement.BSRStatement` (imports SymPy)."""
    from .statement import BSRStatement

    return BSRStatement()


__getattr__ = statement_getattr(__name__)



class BilinearSequenceRegression(Model):
    """Bayes-optimal MMSE of bilinear sequence regression (Erba et al. 2024)."""

    name = "bilinear-sequence-regression"
    title = "Bilinear sequence regression, Bayes-optimal (Erba, Troiani, Biggio, Maillard, Zdeborová 2024)"
    paper = "arXiv:2410.18858 (PRX 2025)"
    parameters = (ALPHA, BETA, RHO, DELTA)
    symbol_names = StatementSymbolNames(__name__)
    observables = ("mmse", "q", "qhat", "alpha_pr", "mse_ridge", "stability")
    #: fixed-point protocol (derive.model): the state is m = 1 − q (the MMSE)
    state = ("mmse",)
    options = {"init": None, "stability": False}
    option_info = declare(init_option(("mmse",)), stability_option())
    #: physical ranges (a point is converged only inside them): the prior has unit variance
    observable_info = declare(
        Observable("mmse", "minimum mean squared error", r"\mathrm{mmse}", "1", 0.0, 1.0),
        Observable("q", "overlap with the teacher, 1 - mmse", "q", "1", 0.0, 1.0),
        Observable("qhat", "conjugate overlap", r"\hat q", "1", 0.0),
        Observable("alpha_pr", "perfect-recovery threshold (noiseless)", r"\alpha_{\rm PR}", "1", 0.0, 1.0),
        Observable("mse_ridge", "test error of ridge regression at lambda = Delta",
                   r"\mathrm{mse}_{\rm ridge}", "1", 0.0, 1.0),
        Observable("stability", "leading eigenvalue of the Jacobian of the undamped map (real part)",
                   r"\lambda_{\max}", "1", optional=True, computed=lambda o: bool(o.get("stability"))),
    )

    # ---- the statement (SymPy, :mod:`.statement`), loaded on demand ------------------------
    qhat_def = FromStatement(_statement)
    mmse_rie_def = FromStatement(_statement)
    alpha_pr_def = FromStatement(_statement)
    ridge_def = FromStatement(_statement)
    rie_beta_inf = FromStatement(_statement)
    beta_inf_equation = FromStatement(_statement)
    mmse_beta_inf = FromStatement(_statement)
    noiseless_beta_inf_closed_form = FromStatement(_statement)
    psi_out_def = FromStatement(_statement)
    psi_den_derivative = FromStatement(_statement)
    free_entropy = FromStatement(_statement)
    stationarity = FromStatement(_statement)
    free_entropy_on_shell = FromStatement(_statement)
    log_potential_symbols = FromStatement(_statement)
    psi_den_log_potential = FromStatement(_statement)
    log_potential_scaling = FromStatement(_statement)
    free_entropy_log_potential = FromStatement(_statement)
    quartic = FromStatement(_statement)
    edges = FromStatement(_statement)

    @property
    def statement(self) -> Any:
        """The :class:`~.statement.BSRStatement` (imports SymPy)."""
        return _statement()

    def programs(self) -> dict[str, Any]:
        return _statement().programs()

    def equations(self) -> list[Any]:
        return _statement().equations()

    # ---- free entropy, numerically --------------------------------------------------------
    def psi_den_numeric(self, qhat_v: float, rho_v: float, beta_v: float, n: int = 24) -> float:
        """Ψ_den(q̂) − Ψ_den(0) = ½∫₀^q̂ (1 − mmse_RIE(1/t)) dt (I-MMSE), Gauss–Legendre in t."""
        u, w = np.polynomial.legendre.leggauss(n)
        t = qhat_v * (u + 1) / 2
        mm = self.mmse_rie(1 / t, np.full(n, rho_v), np.full(n, beta_v))
        return float(qhat_v / 2 * np.dot(w, (1 - mm) / 2))

    def free_entropy_numeric(self, alpha_v: float, beta_v: float, rho_v: float, delta_v: float,
                             m_v: float) -> float:
        """Φ at the fixed point with mmse ``m_v`` (up to a parameter-dependent constant common to
        all branches at the same (α, β, ρ, Δ))."""
        k = self.kernel("free_entropy")
        qv = 1 - m_v
        qh = alpha_v / (delta_v + m_v)
        return float(k(np, None, alpha_v, delta_v, qv,
                       self.psi_den_numeric(qh, rho_v, beta_v))["Phi"])

    # ---- numerics -----------------------------------------------------------------------
    def mmse_rie(self, delta_eff: np.ndarray, rho_v: np.ndarray, beta_v: np.ndarray,
                 n_nodes: int = 32, tol: float | None = 1e-11) -> np.ndarray:
        """``mmse_RIE(Δ_eff)`` for all points at once (NaN where the spectral computation failed;
        see :meth:`mmse_rie_batch`)."""
        return self.mmse_rie_batch(delta_eff, rho_v, beta_v, n_nodes=n_nodes, tol=tol)[0]

    def mmse_rie_batch(self, delta_eff: np.ndarray, rho_v: np.ndarray, beta_v: np.ndarray,
                       n_nodes: int = 32, tol: float | None = 1e-11
                       ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(mmse_RIE, error estimate, ok)`` per point, batched over the grid.

        μ_Y = max |Im g₁|/π of the derived quartic (closed form, :func:`numerics.rie.density_batch`)
        on x > 0 (μ_Y is even; the integrals over ℝ are twice those); support from the real roots
        of the edge polynomial; ``∫μ³`` and ``∫μ/x²`` by the adaptive angle rule
        (:func:`numerics.rie.integrate_density_batch`). β = 1: the ``∫μ/x²`` term has the factor
        (β − 1)² = 0 (and diverges), so it is not computed. β = ∞: the stated β → ∞ form.
        Δ_eff ≤ 1e-14 gives 0."""
        qk, ek = self.kernel("quartic"), self.kernel("edges")
        mk, ik = self.kernel("mmse_rie"), self.kernel("mmse_beta_inf")
        de_v, r_v, b_v = np.broadcast_arrays(*(np.asarray(v, float).reshape(-1)
                                               for v in (delta_eff, rho_v, beta_v)))
        out = np.zeros(de_v.shape)
        err = np.zeros(de_v.shape)
        ok = np.ones(de_v.shape, dtype=bool)
        bad_in = ~(np.isfinite(de_v) & np.isfinite(r_v) & (r_v > 0) & (de_v >= 0) & (b_v >= 1))
        out[bad_in], err[bad_in], ok[bad_in] = np.nan, np.nan, False
        tiny = (de_v <= 1e-14) & ~bad_in
        inf = np.isinf(b_v) & ~tiny & ~bad_in
        with np.errstate(all="ignore"):
            if inf.any():
                out[inf] = ik(np, None, r_v[inf], de_v[inf])["m_new"]
        rows = np.flatnonzero(~inf & ~tiny & ~bad_in)
        if rows.size == 0:
            return out, err, ok
        rr, br, dr = r_v[rows], b_v[rows], de_v[rows]
        has_j = br > 1

        def coeffs(xs: np.ndarray, idx: np.ndarray) -> np.ndarray:
            o = qk(np, None, xs, rr[idx][:, None], br[idx][:, None], dr[idx][:, None])
            return [o[c] for c in COEFF_NAMES]          # columns: numerics.rie broadcasts them

        def integrand(mu: np.ndarray, xs: np.ndarray, idx: np.ndarray) -> np.ndarray:
            j = np.where(has_j[idx][:, None], mu / xs**2, 0.0)
            return np.stack([mu**3, j], axis=-1)

        with np.errstate(all="ignore"):
            eo = ek(np, None, rr, br, dr)
            ecs = np.stack([np.broadcast_to(np.asarray(eo[e], float), rr.shape) for e in EDGE_NAMES], axis=-1)
            a, b, valid = batched_support(ecs, lambda xs, idx: density_batch(coeffs(xs, idx)))
            # ∂mmse/∂(∫μ³), ∂mmse/∂(∫μ/x²) (the integrals over x > 0 enter doubled)
            wts = 2 * dr[:, None] ** 2 / br[:, None] ** 1.5 * np.stack(
                [np.full(br.shape, 4 * np.pi**2 / 3), np.where(has_j, (br - 1) ** 2, 0.0)], axis=-1)
            res = integrate_density_batch(coeffs, a, b, valid, integrand, 2, n_nodes, tol=tol or 0.0,
                                          adaptive=tol is not None, weights=wts,
                                          weighted_tol=WEIGHTED_TOL)
            i3, j2 = res.values[:, 0], res.values[:, 1]
            m_new = np.asarray(mk(np, None, br, dr, 2 * i3, 2 * j2)["m_new"], float)
            # error of m from the integrals' estimate: |∂m/∂I3|, |∂m/∂J2| ≤ Δ²/β^{3/2}·max(4π²/3, (β−1)²)
            e_m = 2 * res.error * dr**2 / br**1.5 * np.maximum(4 * np.pi**2 / 3, (br - 1) ** 2)
        # the refinement criterion is absolute on the integrals; a piece budget hit where the
        # mmse they give is insensitive to them still gives mmse far below the SE tolerance
        good = res.ok & valid.any(axis=1) & np.isfinite(m_new) & (res.met | (e_m <= 1e-13))
        out[rows] = np.where(good, m_new, np.nan)
        err[rows] = np.where(good, e_m, np.nan)
        ok[rows] = good
        return out, err, ok

    def se_map(self, m_v: np.ndarray, a: np.ndarray, b: np.ndarray, r: np.ndarray,
               dl: np.ndarray, n_nodes: int = 32, tol: float | None = 1e-11) -> np.ndarray:
        """The undamped state-evolution map m ↦ mmse_RIE((Δ + m)/α) (batched)."""
        ch = self.kernel("channel")(np, None, a, dl, m_v)
        return self.mmse_rie(ch["Delta_eff"], r, b, n_nodes=n_nodes, tol=tol)

    def random_states(self, n: int, rng: Any) -> np.ndarray:
        """``(n, 1)`` starts m ~ U(0.001, 1): the MMSE lies in [0, 1] (q ∈ [0, 1])."""
        return np.random.default_rng(rng).uniform(1e-3, 1.0, size=(int(n), 1))

    def evaluate(self, params: Mapping[str, Any], backend: Backend, *, init: Any = None,
                 stability: bool = False, m0: float = 0.5, tol: float = 1e-11,
                 maxiter: int = 3000) -> dict[str, Any]:
        """Damped/Anderson iteration of the SE from q = 0.5 (the authors' start; ``m0``) or from
        ``init`` (per point), all points; ``stability``: dF/dm of the undamped map."""
        be = backend
        stab = check_stability_option(stability)
        a, b, r, dl = (be.to_numpy(params[k]).astype(float) for k in ("alpha", "beta", "rho", "delta"))
        n = a.size
        x0 = parse_init(init, np.full((n, 1), m0), domain=lambda rows: rows[:, 0] >= 0)

        def F(xv: np.ndarray, idx: np.ndarray) -> np.ndarray:
            return self.se_map(np.clip(xv[:, 0], 0.0, None), a[idx], b[idx], r[idx],
                               dl[idx])[:, None]

        def F_coarse(xv: np.ndarray, idx: np.ndarray) -> np.ndarray:
            return self.se_map(np.clip(xv[:, 0], 0.0, None), a[idx], b[idx], r[idx],
                               dl[idx], n_nodes=16, tol=1e-6)[:, None]

        # strict positivity: at Δ = 0, m = 0 is an exact (unstable below α_PR) fixed point that
        # an Anderson step could land on; it is reached only asymptotically, never by a jump.
        # Two stages (numerics.state_evolution): a cheap quadrature to 1e-7, then the accurate map.
        with np.errstate(all="ignore"):
            res = solve_two_stage(F, F_coarse, x0, tol=tol, coarse_tol=1e-7, coarse_maxiter=200, maxiter=maxiter,
                                  damping=0.5, anderson=1, project=lambda xv, idx: xv[:, 0] > 0)
        mm = np.where(res.converged, np.clip(res.x[:, 0], 0.0, None), np.nan)
        ex = self.kernel("extras")(np, None, a, b, r, dl)
        with np.errstate(all="ignore"):
            qh = np.where(res.converged, a / (dl + mm), np.nan)
        lead = (leading_eigenvalue(F, np.clip(res.x, 0.0, None), res.converged) if stab
                else np.full(n, np.nan))
        out = {"mmse": mm, "q": 1 - mm, "qhat": qh,
               "alpha_pr": np.asarray(ex["alpha_PR"], float) * np.ones(n),
               "mse_ridge": np.asarray(ex["mse_ridge"], float) * np.ones(n),
               "stability": lead,
               "converged": res.converged, "residual": res.residual,
               "iterations": res.iterations, "status": res.status}
        return {k: be.asarray(v) for k, v in out.items()}

    def evaluate_mp(self, point: Mapping[str, Any], dps: int = 50) -> dict[str, Any]:
        raise NotImplementedError("the SE needs the numeric density quadrature; the generated "
                                  "kernels are checked against their mpmath versions instead")


MODEL = BilinearSequenceRegression
