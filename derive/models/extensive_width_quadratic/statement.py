r"""The SymPy statement of the extensive-width quadratic network: symbols, definitions,
derivations, the programs kernels are generated from, and the displayed equations.

Imported only when the equations are needed -- to render them, to run a derivation, or to
generate kernels that are not in the cache (``ExtensiveWidthQuadratic.programs``/``equations``):
solving from cached kernels never imports this module, hence never SymPy. See
:mod:`derive.models.extensive_width_quadratic` for the model and the paper.
"""
from __future__ import annotations

from functools import cached_property

import sympy as sp

from ...codegen import Program
from ...model import Equation
from .. import _rie
from . import ALPHA, COEFF_NAMES, DELTA, EDGE_NAMES, KAPPA

__all__ = ["EWQStatement", "SYMBOL_NAMES", "C", "E"]

alpha, kappa, delta = (p.symbol for p in (ALPHA, KAPPA, DELTA))

m = sp.Symbol("m", nonnegative=True)         # Q0 - q, the MMSE of S
qhat = sp.Symbol("qhat", positive=True)
de = sp.Symbol("Delta_eff", positive=True)   # 1/qhat
I3 = sp.Symbol("I_3", nonnegative=True)      # ∫ μ^3
m_new, gen_error, alpha_pr, Q0 = sp.symbols("m_new gen_error alpha_PR Q_0")
x = sp.Symbol("x", real=True)
q = sp.Symbol("q")                              # overlap Q0 − m
Psi_den = sp.Function("Psi_den")               # free entropy of the GOE denoising channel at q̂
Psi_val, mmse_at, phi = sp.symbols("Psi_d mmse_at Phi")
#: outputs of the cubic's and the edge polynomial's programs (names shared with the numeric side)
C = tuple(sp.Symbol(n) for n in COEFF_NAMES)
E = tuple(sp.Symbol(n) for n in EDGE_NAMES)

SYMBOL_NAMES = {delta: r"\Delta", m: r"\mathrm{mmse}", qhat: r"\hat q", de: r"\Delta_{\rm eff}", I3: r"\int\mu^3",
                m_new: r"\mathrm{mmse}_{\rm RIE}", gen_error: r"e_{\rm gen}",
                alpha_pr: r"\alpha_{\rm PR}"}


class EWQStatement:
    """Definitions (spec §B3), SymPy derivations, programs and equations."""

    Q0_def = 1 + 1 / kappa
    mmse_rie_def = de - 4 * sp.pi**2 / 3 * de**2 * I3          # symmetric RIE error
    #: the authors' fixed-point equation for q̂ (stated), = 0
    qhat_equation = 4 * sp.pi**2 / 3 * I3 / qhat - delta * qhat / 2 - (1 - 2 * alpha)
    gen_error_def = (4 * alpha - qhat * delta) / (2 * qhat)
    alpha_pr_def = sp.Piecewise((kappa - kappa**2 / 2, kappa < 1), (sp.Rational(1, 2), True))

    # ---- free entropy (derived; not stated in the spec) -------------------------------------
    #: Gaussian output channel: ω = Tr(Z Ŝ) has variance 2q, the rest 2(Q0 − q) + Δ:
    #: Ψ_out = E log N(y; ω, Δ + 2(Q0 − q))
    @cached_property
    def psi_out_def(self) -> sp.Expr:
        return -sp.log(2 * sp.pi * (delta + 2 * (self.Q0_def - q))) / 2 - sp.Rational(1, 2)

    #: I-MMSE for Y = S + GOE/√q̂ in the Frobenius-isometric coordinates (per-component SNR
    #: d q̂/2, total error d·mmse, free entropy per d²): dΨ_den/dq̂ = (Q0 − mmse_RIE(1/q̂))/4
    @cached_property
    def psi_den_derivative(self) -> sp.Expr:
        return (self.Q0_def - mmse_at) / 4

    @cached_property
    def free_entropy(self) -> sp.Expr:
        r"""$\Phi(q,\hat q)=-q\hat q/4+\Psi_{\rm den}(\hat q)+\alpha\Psi_{\rm out}(q)$ (per $d^2$)."""
        return -q * qhat / 4 + Psi_den(qhat) + alpha * self.psi_out_def

    @cached_property
    def stationarity(self) -> dict[str, sp.Expr]:
        """∂Φ/∂q = 0 solved for q̂, ∂Φ/∂q̂ = 0 (I-MMSE) solved for q (derived)."""
        return _rie.rs_stationarity(self.free_entropy, q, qhat, Psi_den, self.psi_den_derivative)

    @cached_property
    def free_entropy_on_shell(self) -> sp.Expr:
        """Φ at the q-stationary q̂, as a function of (q, Ψ_den value)."""
        qh = self.stationarity["qhat"]
        return sp.simplify(self.free_entropy.subs(qhat, qh).subs(Psi_den(qh), Psi_val))

    @cached_property
    def qhat_map(self) -> sp.Expr:
        """Eliminate I_3 between the stated q̂ equation and mmse_RIE(1/q̂) = m (derived):
        q̂ = 4α/(Δ + 2m)."""
        I3_of_m = sp.solve(sp.Eq(self.mmse_rie_def.subs(de, 1 / qhat), m), I3)[0]
        (sol,) = sp.solve(self.qhat_equation.subs(I3, I3_of_m), qhat)
        return sp.simplify(sol)

    @cached_property
    def gen_error_at_fixed_point(self) -> sp.Expr:
        """e_gen with q̂ = 4α/(Δ + 2m) substituted: simplifies to m (derived)."""
        return sp.simplify(self.gen_error_def.subs(qhat, self.qhat_map))

    @cached_property
    def cubic(self) -> sp.Poly:
        return _rie.mp_semicircle_cubic(kappa, de)

    edges = _rie.edges_of("cubic")

    def programs(self) -> dict[str, Program]:
        return {
            **_rie.density_programs("ewq", "cubic", self.cubic, self.edges, x, (kappa, de), C, E,
                                    "Coefficients (lowest first) of the cubic for G(x) (derived).",
                                    "Edge polynomial (discriminant factor), lowest degree first."),
            "channel": Program("ewq_channel", (alpha, delta, m),
                               ((qhat, self.qhat_map), (de, 1 / qhat)), (qhat, de),
                               doc="q̂ = 4α/(Δ + 2m) (derived from the stated equation)."),
            "mmse_rie": Program("ewq_mmse_rie", (de, I3), ((m_new, self.mmse_rie_def),), (m_new,),
                                doc="Symmetric RIE error from ∫μ³ (stated)."),
            "free_entropy": Program("ewq_free_entropy", (alpha, kappa, delta, q, Psi_val),
                                    ((phi, self.free_entropy_on_shell),), (phi,),
                                    doc="Φ at q̂ = 4α/(Δ + 2(Q0 − q)), given Ψ_den(q̂) (derived)."),
            "observables": Program("ewq_observables", (alpha, kappa, delta, qhat),
                                   ((gen_error, self.gen_error_def), (alpha_pr, self.alpha_pr_def),
                                    (Q0, self.Q0_def)), (gen_error, alpha_pr, Q0),
                                   doc="e_gen (stated), α_PR (stated), Q0."),
        }

    def equations(self) -> list[Equation]:
        return [
            Equation("cubic for G (Stieltjes transform of MP(1/κ) ⊞ semicircle(Δ_eff))",
                     self.cubic.as_expr().subs(_rie.z, x), sp.Integer(0), "derived", "§B3",
                     "μ(x) = max |Im G|/π; authors' Theory_noise.py has the same cubic"),
            Equation("symmetric RIE error", m_new, self.mmse_rie_def, "code+mp", "§B3"),
            Equation("fixed point (stated)", self.qhat_equation, sp.Integer(0), "code+mp", "§B3",
                     "I_3 = ∫μ³ at Δ_eff = 1/q̂"),
            Equation("fixed point as a map", qhat, self.qhat_map, "derived", "§B3",
                     "with m = mmse_RIE(1/q̂)"),
            Equation("generalisation error", gen_error, self.gen_error_def, "code+mp", "§B3"),
            Equation("generalisation error at the fixed point", gen_error,
                     self.gen_error_at_fixed_point, "derived", "§B3"),
            Equation("free entropy (RS, derived)", phi, self.free_entropy, "derived", "§B3",
                     "I-MMSE: 4Ψ_den'(q̂) = Q₀ − mmse_RIE(1/q̂); not stated in the spec"),
            Equation("stationarity ∂Φ/∂q = 0", qhat, self.stationarity["qhat"], "derived", "§B3"),
            Equation("stationarity ∂Φ/∂q̂ = 0", q, self.stationarity["q"], "derived", "§B3"),
            Equation("Q₀", Q0, self.Q0_def, "paper", "§B3"),
            Equation("perfect recovery (Δ = 0)", alpha_pr, self.alpha_pr_def, "paper", "§B3"),
        ]
