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
"""
from __future__ import annotations

import math
from functools import cached_property
from typing import Any, Mapping

import numpy as np
import sympy as sp

from numerics.backend import Backend
from numerics.state_evolution import solve_two_stage
from numerics.rie import batched_support, density_batch, integrate_density_batch

from ..codegen import Program
from ..declarations import Observable, declare, init_option, stability_option
from ..model import Equation, Model
from ..params import Domain, Parameter, nonnegative, positive
from . import _rie
from ._bayes_fp import check_stability_option, leading_eigenvalue, parse_init

__all__ = ["BilinearSequenceRegression", "MODEL"]

ALPHA = Parameter("alpha", positive, r"\alpha", "samples per matrix entry, N/(D L)")
BETA = Parameter("beta", Domain(1.0, math.inf, lo_closed=True, hi_closed=True), r"\beta",
                 "sequence length over dimension, L/D (>= 1; inf accepted)")
RHO = Parameter("rho", positive, r"\rho", "rank over the smaller side, r/D")
DELTA = Parameter("delta", nonnegative, r"\Delta", "label-noise variance")

alpha, beta, rho, delta = (p.symbol for p in (ALPHA, BETA, RHO, DELTA))

m = sp.Symbol("m", nonnegative=True)          # 1 - q, the MMSE
q = sp.Symbol("q")
qhat = sp.Symbol("qhat", positive=True)
de = sp.Symbol("Delta_eff", positive=True)    # 1/qhat
I3 = sp.Symbol("I_3", nonnegative=True)       # ∫ μ_Y^3 over R
J2 = sp.Symbol("J_2", nonnegative=True)       # ∫ μ_Y / x^2 over R
m_new, mse_ridge, alpha_pr, dd = sp.symbols("m_new mse_ridge alpha_PR d")
Psi_den = sp.Function("Psi_den")               # free entropy of the denoising channel at SNR q̂
Psi_val, mmse_at = sp.symbols("Psi_d mmse_at")  # numeric Ψ_den(q̂), mmse_RIE(1/q̂)
phi = sp.Symbol("Phi")
x = sp.Symbol("x", real=True)
C = sp.symbols("c0:5")
E = sp.symbols("e0:11")

SYMBOL_NAMES = {delta: r"\Delta", m: r"\mathrm{mmse}", qhat: r"\hat q", de: r"\Delta_{\rm eff}",
                I3: r"\int\mu_Y^3", J2: r"\int\mu_Y/x^2", m_new: r"\mathrm{mmse}_{\rm RIE}",
                alpha_pr: r"\alpha_{\rm PR}", mse_ridge: r"\mathrm{mse}_{\rm ridge}"}


class BilinearSequenceRegression(Model):
    """Bayes-optimal MMSE of bilinear sequence regression (Erba et al. 2024)."""

    name = "bilinear-sequence-regression"
    title = "Bilinear sequence regression, Bayes-optimal (Erba, Troiani, Biggio, Maillard, Zdeborová 2024)"
    paper = "arXiv:2410.18858 (PRX 2025)"
    parameters = (ALPHA, BETA, RHO, DELTA)
    symbol_names = SYMBOL_NAMES
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

    # ---- stated forms -------------------------------------------------------------------
    qhat_def = alpha / (delta + m)                                  # q̂ = α/(Δ + 1 − q)
    mmse_rie_def = de - de**2 / beta**sp.Rational(3, 2) * (
        (beta - 1) ** 2 * J2 + 4 * sp.pi**2 / 3 * I3)               # rectangular RIE error
    alpha_pr_def = sp.Piecewise((rho * (1 + (1 - rho) / beta), rho < 1), (1, True))
    ridge_def = 1 - 2 * alpha / (alpha + delta + 1 + sp.sqrt(
        (alpha - 1) ** 2 + 2 * (alpha + 1) * delta + delta**2))      # spec: ridge, λ = Δ

    @staticmethod
    def rie_beta_inf(d: sp.Expr, r: sp.Expr) -> sp.Expr:
        """β → ∞ RIE error at Δ_eff = d, as stated: the spec's fixed-point equation
        −q + 1 − d + (d/2)[√(1 + ρ((d+2)ρd + 2d + ρ − 2)) − (ρ − 1) − dρ] = 0 reads
        1 − q = mmse_∞(d)."""
        return d - d / 2 * (sp.sqrt(1 + r * ((d + 2) * r * d + 2 * d + r - 2)) - (r - 1) - d * r)

    def beta_inf_equation(self, qq: sp.Expr, a: sp.Expr, r: sp.Expr, dlt: sp.Expr) -> sp.Expr:
        """The stated β → ∞ fixed-point equation (spec §B2), = 0 at the fixed point."""
        return -qq + 1 - self.rie_beta_inf((1 + dlt - qq) / a, r)

    @cached_property
    def mmse_beta_inf(self) -> sp.Expr:
        return self.rie_beta_inf(de, rho)

    @cached_property
    def noiseless_beta_inf_closed_form(self) -> sp.Expr:
        """mmse at β = ∞, Δ = 0, α < ρ ≤ 1: solve the stated equation for q (derived)."""
        qs = sp.Symbol("qs", positive=True)
        a, r = sp.symbols("a r", positive=True)
        eq = self.beta_inf_equation(qs, a, r, 0)
        # isolate the square root and square: a polynomial in q
        sq = sp.sqrt(1 + r * (((1 - qs) / a + 2) * r * (1 - qs) / a + 2 * (1 - qs) / a + r - 2))
        rest = sp.expand(eq - (1 - qs) / a / 2 * sq)
        poly = sp.factor(sp.numer(sp.together(rest**2 - ((1 - qs) / a / 2 * sq) ** 2)))
        sols = [s for s in sp.solve(poly, qs) if s != 1]
        # the root inside (0, 1) on a sample point of α < ρ ≤ 1, checked in the unsquared equation
        pt = {a: sp.Rational(1, 5), r: sp.Rational(1, 2)}
        good = [s for s in sols if 0 < sp.N(s.subs(pt)) < 1
                and abs(sp.N(eq.subs(qs, s).subs(pt))) < 1e-12]
        if len(good) != 1:
            raise ArithmeticError(f"β=∞ noiseless: expected one admissible root, got {good}")
        return sp.factor(1 - good[0]).subs({a: alpha, r: rho})

    # ---- free entropy ---------------------------------------------------------------------
    #: output part for the Gaussian channel: E log N(y; √q ξ, Δ + 1 − q) (Gaussian integral)
    psi_out_def = -sp.log(2 * sp.pi * (delta + 1 - q)) / 2 - sp.Rational(1, 2)
    #: I-MMSE relation (Guo–Shamai–Verdú; stated): 2 dΨ_den/dq̂ = 1 − mmse_RIE(1/q̂)
    psi_den_derivative = (1 - mmse_at) / 2

    @cached_property
    def free_entropy(self) -> sp.Expr:
        r"""Replica-symmetric free entropy of the GLM with the RIE prior channel:
        $\Phi(q,\hat q)=-q\hat q/2+\Psi_{
m den}(\hat q)+lpha\Psi_{
m out}(q)$."""
        return -q * qhat / 2 + Psi_den(qhat) + alpha * self.psi_out_def

    @cached_property
    def stationarity(self) -> dict[str, sp.Expr]:
        """Solve ∂Φ/∂q = 0 for q̂ and ∂Φ/∂q̂ = 0 (with the I-MMSE relation) for q (derived);
        the state evolution is q̂ = α/(Δ + 1 − q), q = 1 − mmse_RIE(1/q̂)."""
        dq = sp.diff(self.free_entropy, q)
        dqh = sp.diff(self.free_entropy, qhat).subs(sp.Derivative(Psi_den(qhat), qhat),
                                                     self.psi_den_derivative)
        (qh_sol,) = sp.solve(sp.Eq(dq, 0), qhat)
        (q_sol,) = sp.solve(sp.Eq(dqh, 0), q)
        return {"qhat": sp.simplify(qh_sol), "q": sp.simplify(q_sol)}

    @cached_property
    def free_entropy_on_shell(self) -> sp.Expr:
        """Φ at q̂ = α/(Δ + 1 − q) as a function of (q, Ψ_den value) (for branch comparison)."""
        return sp.simplify(self.free_entropy.subs(qhat, self.stationarity["qhat"])
                           .subs(Psi_den(self.stationarity["qhat"]), Psi_val))

    # ---- free entropy in log-potential form (issue 13, item 4) ----------------------------------
    #: Σ = ∬ν(x)ν(y) log|x² − y²| dx dy and Λ = ∫ν(x) log x dx over x, y > 0, with ν the
    #: unit-mass singular-value density of Y = S + √Δ_eff Z (the model's normalisation,
    #: Δ_eff = 1/q̂; ν(x) = 2 μ_Y(x) for x > 0); primed: the same for √q̂·Y = √q̂ S + Z
    log_potential_symbols = sp.symbols("Sigma Lambda Sigma_p Lambda_p")

    @cached_property
    def psi_den_log_potential(self) -> sp.Expr:
        r"""$\Psi_{\rm den}(\hat q)$ from the singular values (stated: Gaussian channel
        $Y'=\sqrt{\hat q}S+Z$, $\Psi=\hat q\,\mathbb E\|S\|^2/(2DL)-I(S;Y')$, $I=h(Y')-h(Z)$, and the
        entropy of a bi-invariant $D\times L$ matrix from the Jacobian of its SVD,
        $\prod_{i<j}|\sigma_i^2-\sigma_j^2|\prod_i\sigma_i^{L-D}$, per entry
        $\Sigma'/(2\beta)+(\beta-1)\Lambda'/\beta$), rewritten with the density of $Y$ itself
        (derived: $\sigma'=\sqrt{\hat q}\,\sigma$, :attr:`log_potential_scaling`). Up to a constant
        that depends on β only (the Z-part and the Haar volumes)."""
        Sg, Lm, Sgp, Lmp = self.log_potential_symbols
        psi = qhat / 2 - Sgp / (2 * beta) - (beta - 1) / beta * Lmp
        return sp.expand(psi.subs(self.log_potential_scaling))

    @cached_property
    def log_potential_scaling(self) -> dict[sp.Symbol, sp.Expr]:
        """Σ′, Λ′ (density of √q̂·Y) in terms of Σ, Λ (density of Y), derived by the change of
        variables x′ = √q̂ x under the integrals (unit mass): log(q̂x² − q̂y²) = log q̂ + log(x² − y²),
        log(√q̂ x) = log q̂/2 + log x."""
        Sg, Lm, Sgp, Lmp = self.log_potential_symbols
        xx, yy = sp.symbols("x y", positive=True)
        k2 = sp.expand_log(sp.log(qhat * xx**2 - qhat * yy**2).subs(xx, yy + xx), force=True)
        k1 = sp.expand_log(sp.log(sp.sqrt(qhat) * xx), force=True)
        shift2 = sp.simplify(k2 - sp.log(((yy + xx) ** 2 - yy**2)))       # = log q̂
        shift1 = sp.simplify(k1 - sp.log(xx))                              # = log q̂ / 2
        assert not ({xx, yy} & (shift2.free_symbols | shift1.free_symbols))
        return {Sgp: Sg + shift2, Lmp: Lm + shift1}

    @cached_property
    def free_entropy_log_potential(self) -> sp.Expr:
        r"""$\Phi$ at $\partial_q\Phi=0$ ($q=1+\Delta-\alpha/\hat q$) with the log-potential
        $\Psi_{\rm den}$ (derived), dropping terms that depend on α and β only:
        $\frac{\alpha-1}2\log\hat q-\frac{\hat q\Delta}2-\frac{\Sigma}{2\beta}-\frac{\beta-1}\beta\Lambda$."""
        full = self.free_entropy.subs(Psi_den(qhat), self.psi_den_log_potential)
        full = full.subs(q, sp.solve(sp.diff(self.free_entropy, q), q)[0])
        full = sp.expand(sp.expand_log(full, force=True))
        rest = full.as_independent(qhat, delta, *self.log_potential_symbols[:2])[1]
        return sp.collect(sp.expand(sp.expand_log(sp.simplify(rest), force=True)), sp.log(qhat))

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

    @cached_property
    def quartic(self) -> sp.Poly:
        return _rie.rectangular_quartic(rho, beta, de)

    @cached_property
    def edges(self) -> sp.Poly:
        return _rie.edge_polynomial(self.quartic, _rie.z)

    # ---- programs -----------------------------------------------------------------------
    def programs(self) -> dict[str, Program]:
        qc = _rie.coefficients(self.quartic)
        ec = _rie.padded_coefficients(self.edges, len(E))
        return {
            "quartic": Program(
                "bsr_quartic", (x, rho, beta, de),
                tuple((c, e.subs(_rie.z, x)) for c, e in zip(C, qc)), C,
                doc="Coefficients (lowest first) of the quartic for g_1(x) (derived)."),
            "edges": Program(
                "bsr_edges", (rho, beta, de), tuple(zip(E, ec)), E,
                doc="Edge polynomial in x (discriminant factor), lowest degree first (derived)."),
            "channel": Program(
                "bsr_channel", (alpha, delta, m),
                ((qhat, self.qhat_def), (de, 1 / qhat)), (qhat, de),
                doc="q̂ = α/(Δ + 1 − q), Δ_eff = 1/q̂ (spec §B2)."),
            "mmse_rie": Program(
                "bsr_mmse_rie", (beta, de, I3, J2), ((m_new, self.mmse_rie_def),), (m_new,),
                doc="Rectangular RIE error from the density integrals (spec §B2)."),
            "mmse_beta_inf": Program(
                "bsr_mmse_beta_inf", (rho, de), ((m_new, self.mmse_beta_inf),), (m_new,),
                doc="β = ∞ RIE error, read off the stated β → ∞ equation."),
            "free_entropy": Program(
                "bsr_free_entropy", (alpha, delta, q, Psi_val),
                ((phi, self.free_entropy_on_shell),), (phi,),
                doc="Φ at q̂ = α/(Δ + 1 − q), given Ψ_den(q̂) (derived)."),
            "extras": Program(
                "bsr_extras", (alpha, beta, rho, delta),
                ((alpha_pr, self.alpha_pr_def), (mse_ridge, self.ridge_def)),
                (alpha_pr, mse_ridge), doc="α_PR and the optimal-ridge baseline (spec §B2)."),
        }

    def equations(self) -> list[Equation]:
        return [
            Equation("channel", qhat, self.qhat_def, "code+mp", "§B2", "m = 1 − q"),
            Equation("state evolution", m, m_new, "code+mp", "§B2",
                     "q = 1 − mmse_RIE(Δ_eff), Δ_eff = 1/q̂"),
            Equation("rectangular RIE error", m_new, self.mmse_rie_def, "code+mp", "§B2",
                     "μ_Y the symmetrised singular-value density of Y, integrals over ℝ"),
            Equation("quartic for g₁ (Stieltjes transform of μ_Y)",
                     self.quartic.as_expr().subs(_rie.z, x), sp.Integer(0), "derived", "§B2",
                     "S-transform of the product of two Wisharts + rectangular subordination; "
                     "μ_Y(x) = max |Im g₁|/π"),
            Equation("β → ∞ RIE error", m_new, self.mmse_beta_inf, "code+mp", "§B2"),
            Equation("β = ∞, Δ = 0 (α < ρ ≤ 1)", m, self.noiseless_beta_inf_closed_form,
                     "derived", "§B2"),
            Equation("perfect recovery", alpha_pr, self.alpha_pr_def, "paper", "§B2",
                     "degrees of freedom r(D + L − r)/(DL)"),
            Equation("free entropy (RS, Gaussian channel)", phi, self.free_entropy, "derived", "§B2",
                     "Ψ_out = E log N(y; √q ξ, Δ+1−q); I-MMSE: 2Ψ_den'(q̂) = 1 − mmse_RIE(1/q̂)"),
            Equation("free entropy, log-potential form (at ∂Φ/∂q = 0, up to f(α, β))", phi,
                     self.free_entropy_log_potential, "derived", "§B2",
                     "Σ = ∬νν log|x²−y²|, Λ = ∫ν log x, ν the unit-mass singular-value density of "
                     "Y = S + Z/√q̂ on x > 0; the authors' free_entropy integrates the symmetrised "
                     "unit-mass density over x, y > 0 with a factor 2 (same Σ)"),
            Equation("stationarity ∂Φ/∂q = 0", qhat, self.stationarity["qhat"], "derived", "§B2"),
            Equation("stationarity ∂Φ/∂q̂ = 0", q, self.stationarity["q"], "derived", "§B2"),
            Equation("optimal ridge baseline", mse_ridge, self.ridge_def, "code+mp", "§B2"),
        ]

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
            return np.stack([np.broadcast_to(np.asarray(o[c.name], float), xs.shape) for c in C], axis=-1)

        def integrand(mu: np.ndarray, xs: np.ndarray, idx: np.ndarray) -> np.ndarray:
            j = np.where(has_j[idx][:, None], mu / xs**2, 0.0)
            return np.stack([mu**3, j], axis=-1)

        with np.errstate(all="ignore"):
            eo = ek(np, None, rr, br, dr)
            ecs = np.stack([np.broadcast_to(np.asarray(eo[e.name], float), rr.shape) for e in E], axis=-1)
            a, b, valid = batched_support(ecs, lambda xs, idx: density_batch(coeffs(xs, idx)))
            res = integrate_density_batch(coeffs, a, b, valid, integrand, 2, n_nodes, tol=tol or 0.0,
                                          adaptive=tol is not None)
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
                                  damping=0.5, anderson=3, project=lambda xv, idx: xv[:, 0] > 0)
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
