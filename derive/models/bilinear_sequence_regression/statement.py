r"""The SymPy statement of bilinear sequence regression: symbols, definitions, derivations,
the programs kernels are generated from, and the displayed equations.

Imported only when the equations are needed -- to render them, to run a derivation, or to
generate kernels that are not in the cache (``BilinearSequenceRegression.programs``/
``equations``): solving from cached kernels never imports this module, hence never SymPy. See
:mod:`derive.models.bilinear_sequence_regression` for the model and the paper.
"""
from __future__ import annotations

from functools import cached_property

import sympy as sp

from ...codegen import Program
from ...model import Equation
from .. import _rie
from . import ALPHA, BETA, COEFF_NAMES, DELTA, EDGE_NAMES, RHO

__all__ = ["BSRStatement", "SYMBOL_NAMES", "C", "E"]

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
#: outputs of the quartic's and the edge polynomial's programs (names shared with the numeric side)
C = tuple(sp.Symbol(n) for n in COEFF_NAMES)
E = tuple(sp.Symbol(n) for n in EDGE_NAMES)

SYMBOL_NAMES = {delta: r"\Delta", m: r"\mathrm{mmse}", qhat: r"\hat q", de: r"\Delta_{\rm eff}",
                I3: r"\int\mu_Y^3", J2: r"\int\mu_Y/x^2", m_new: r"\mathrm{mmse}_{\rm RIE}",
                alpha_pr: r"\alpha_{\rm PR}", mse_ridge: r"\mathrm{mse}_{\rm ridge}"}


class BSRStatement:
    """Stated forms (spec §B2), SymPy derivations, programs and equations."""

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
        $\Phi(q,\hat q)=-q\hat q/2+\Psi_{\rm den}(\hat q)+\alpha\Psi_{\rm out}(q)$."""
        return -q * qhat / 2 + Psi_den(qhat) + alpha * self.psi_out_def

    @cached_property
    def stationarity(self) -> dict[str, sp.Expr]:
        """Solve ∂Φ/∂q = 0 for q̂ and ∂Φ/∂q̂ = 0 (with the I-MMSE relation) for q (derived);
        the state evolution is q̂ = α/(Δ + 1 − q), q = 1 − mmse_RIE(1/q̂)."""
        return _rie.rs_stationarity(self.free_entropy, q, qhat, Psi_den, self.psi_den_derivative)

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

    @cached_property
    def quartic(self) -> sp.Poly:
        return _rie.rectangular_quartic(rho, beta, de)

    edges = _rie.edges_of("quartic")

    # ---- programs -----------------------------------------------------------------------
    def programs(self) -> dict[str, Program]:
        return {
            **_rie.density_programs(
                "bsr", "quartic", self.quartic, self.edges, x, (rho, beta, de), C, E,
                "Coefficients (lowest first) of the quartic for g_1(x) (derived).",
                "Edge polynomial in x (discriminant factor), lowest degree first (derived)."),
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

