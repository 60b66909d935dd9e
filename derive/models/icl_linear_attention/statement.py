r"""The SymPy statement of the ICL linear-attention model: symbols, definitions, derivations,
the programs kernels are generated from, and the displayed equations.

Imported only when the equations are needed -- to render them, to run a derivation, or to
generate kernels that are not in the cache (``ICLLinearAttention.programs``/``equations``):
solving from cached kernels never imports this module, hence never SymPy. See
:mod:`derive.models.icl_linear_attention` for the model and the paper.
"""
from __future__ import annotations

from functools import cached_property

import sympy as sp

from ...codegen import Program
from ...model import Equation
from ...operators import MarchenkoPasturTrace, mp_self_consistency, quadratic_root, vanishes_modulo
from . import ALPHA, KAPPA, LAM, RHO, TAU

__all__ = ["ICLStatement", "SYMBOL_NAMES", "Mk"]

tau, alpha, kappa, rho, lam = (p.symbol for p in (TAU, ALPHA, KAPPA, RHO, LAM))

# ----------------------------------------------------------------------------- symbols
q = sp.Symbol("q", positive=True)
eps = sp.Symbol("eps", nonnegative=True)
nu = sp.Symbol("nu", positive=True)
M = sp.Symbol("M", positive=True)
Mp = sp.Symbol("Mp", negative=True)
D = sp.Symbol("D")
N = sp.Symbol("N")
r = sp.Symbol("r", nonnegative=True)  # lambda/eps
U = sp.Symbol("U", positive=True)  # 1 - nu M
Y = sp.Symbol("Y", positive=True)  # M + nu M'
W = sp.Symbol("W", positive=True)  # 1 - 2 nu M - nu^2 M'
Mneg = sp.Symbol("Mneg", positive=True)  # -M' 
x = sp.Symbol("x", positive=True)
e_icl, e_idg, e_train = sp.symbols("e_icl e_idg e_train")
eps0_sym = sp.Symbol("eps0")
f_eps, fprime_eps, lo_eps, hi_eps = sp.symbols("f fprime lo hi")

SYMBOL_NAMES = {
    eps: r"\varepsilon", lam: r"\lambda", Mp: r"M'", e_icl: r"e_{\rm ICL}",
    Mneg: r"(-M')", e_idg: r"e_{\rm IDG}", e_train: r"e_{\rm train}", r: r"\left(\lambda/\varepsilon\right)",
    f_eps: r"f(\varepsilon)", fprime_eps: r"f'(\varepsilon)", eps0_sym: r"\varepsilon_0",
}


def Mk(arg: sp.Expr, k: sp.Expr = kappa) -> MarchenkoPasturTrace:
    """$M_k(\\mathrm{arg})$."""
    return MarchenkoPasturTrace(arg, k)



class ICLStatement:
    """Definitions (spec §1.4, §2.1–2.3), SymPy derivations, programs and equations."""

    # ---- definitions (spec §2.1–2.3) -----------------------------------------------
    q_def = (1 + rho) / alpha  # §1.4
    #: effective-ridge equation, written as f(eps) = 0 with f increasing (§2.2)
    eps_equation = eps * Mk(q + eps) - (1 - tau + tau * lam / eps)
    D_def = 1 - 2 * eps * M - eps**2 * Mp  # §2.3
    N_def = rho + nu - nu**2 * M - eps * (1 - 2 * nu * M - nu**2 * Mp)  # §2.3
    e_idg_def = tau * N / (tau - D)  # §2.3 [derived+sim]
    e_icl_def = ((1 + rho) - 2 * (1 - nu * M)
                 + (1 + q) * (1 - 2 * nu * M - nu**2 * Mp + N / (tau - D) * (M + eps * Mp)))  # §2.3
    e_train_def = r**2 * e_idg  # §2.3 [derived+sim]: (lambda/eps)^2 e_IDG

    # ---- derivations -----------------------------------------------------------------
    @cached_property
    def stable_forms(self) -> dict[sp.Symbol, sp.Expr]:
        r"""Cancellation-free rewriting of the resolvent combinations (derived here).

        On the MP quadratic at $x=\nu$: $U\equiv1-\nu M=M/(1+M/\kappa)$,
        $-M'=M^2(1+M/\kappa)/(1+\nu M^2/\kappa)$, $Y\equiv M+\nu M'=MU/(1+\nu M^2/\kappa)$,
        $W\equiv1-2\nu M-\nu^2M'=U(U+\nu M^2/\kappa)/(1+\nu M^2/\kappa)$ with $\nu M^2=(1-U)M$;
        then $D=W+2qY+q^2(-M')$, $N=\rho+qW+\nu^2Y$, $M+\varepsilon M'=Y+q(-M')$ and
        $e_{\rm ICL}=\rho+\nu^2(-M')+qW+(1+q)N(Y+q(-M'))/(\tau-D)$: sums of positive terms,
        so only $\tau-D$ (the double-descent pole) can cancel. In integral form these are
        $\int s/(s+\nu)$, $\int s/(s+\nu)^2$, $\int s^2/(s+\nu)^2$ against the MP law.
        Each is proved equal to its definition modulo the quadratic (:meth:`check_stable_forms`).
        """
        den = 1 + (1 - U) * M / kappa
        return {
            U: M / (1 + M / kappa),
            Mneg: M**2 * (1 + M / kappa) / den,
            Y: M * U / den,
            W: U * (U + (1 - U) * M / kappa) / den,
            D: W + 2 * q * Y + q**2 * Mneg,
            N: rho + q * W + nu**2 * Y,
            e_icl: rho + nu**2 * Mneg + q * W + (1 + q) * N * (Y + q * Mneg) / (tau - D),
        }

    def check_stable_forms(self) -> dict[str, bool]:
        """Prove each stable form equal to its definition on the MP quadratic at x = ν."""
        sf = self.stable_forms
        Mp_nu = self.Mprime.subs(x, nu)
        chain = {U: sf[U], Mneg: sf[Mneg].subs(U, sf[U])}
        chain[Y] = sf[Y].subs(U, sf[U])
        chain[W] = sf[W].subs(U, sf[U])
        rel = mp_self_consistency(M, nu, kappa)
        defs = {
            "U": (chain[U], 1 - nu * M),
            "-M'": (chain[Mneg], -Mp_nu),
            "Y": (chain[Y], M + nu * Mp_nu),
            "W": (chain[W], 1 - 2 * nu * M - nu**2 * Mp_nu),
            "D": (sf[D].xreplace(chain), self.D_def.subs(Mp, Mp_nu)),
            "N": (sf[N].xreplace(chain), self.N_def.subs(Mp, Mp_nu)),
            "e_icl": (sf[e_icl].xreplace(chain), self.e_icl_def.subs(Mp, Mp_nu)),
        }
        return {k: vanishes_modulo((a - b).subs(eps, nu - q), M, rel) for k, (a, b) in defs.items()}

    @cached_property
    def M_closed_form(self) -> sp.Expr:
        """$M_\\kappa(x)$ as the stable positive root of its quadratic (derived, §2.1)."""
        return Mk(x).closed_form()

    @cached_property
    def Mprime(self) -> sp.Expr:
        """$M'_\\kappa(x)$ in terms of $M=M_\\kappa(x)$, by implicit differentiation (derived)."""
        return sp.diff(Mk(x), x).subs(Mk(x), M)

    @cached_property
    def kappa_infinity(self) -> dict[str, sp.Expr]:
        """$\\kappa\\to\\infty$ limits of $M_\\kappa(x)$ and $M'_\\kappa(x)$ (derived by ``limit``)."""
        Mx = sp.limit(self.M_closed_form.args[0][0], kappa, sp.oo)
        Mpx = sp.limit(self.Mprime.subs(M, self.M_closed_form.args[0][0]), kappa, sp.oo)
        return {"M": sp.simplify(Mx), "Mp": sp.simplify(Mpx)}

    @cached_property
    def lam_over_eps(self) -> sp.Expr:
        """$\\lambda/\\varepsilon$ from the effective-ridge equation, in terms of $\\varepsilon M$."""
        sol = sp.solve(sp.Eq(self.eps_equation.subs(Mk(q + eps), M), 0), lam)
        (lam_sol,) = sol
        return sp.expand(lam_sol / eps)

    @cached_property
    def eps0(self) -> sp.Expr:
        """Ridgeless $\\varepsilon_0(\\tau<1)$: eliminate $M=(1-\\tau)/\\varepsilon$ from the MP
        quadratic at $x=q+\\varepsilon$, leaving a quadratic in $\\varepsilon$; take its positive root."""
        M_of_eps = sp.solve(sp.Eq(self.eps_equation.subs(Mk(q + eps), M).subs(lam, 0), 0), M)[0]
        # eps^2 F(M(eps), q + eps) is a quadratic in eps (coefficients keep 1/kappa explicit,
        # so kappa = oo stays finite)
        quad = sp.expand(mp_self_consistency(M_of_eps, q + eps, kappa) * eps**2)
        a, b, c = (sp.expand(co) for co in sp.Poly(quad, eps).all_coeffs())
        # pick the root that is positive for tau < 1 (check at a sample point of the domain)
        sample = {tau: sp.Rational(1, 3), q: sp.Rational(7, 10), kappa: sp.Rational(3, 2)}
        picks = []
        for s in (1, -1):
            root = (-b + s * sp.sqrt(b**2 - 4 * a * c)) / (2 * a)
            if sp.N(root.subs(sample)) > 0:
                picks.append(s)
        if len(picks) != 1:
            raise ArithmeticError("eps0: expected exactly one positive root")
        return quadratic_root(a, b, c, sign=picks[0])

    @cached_property
    def r_ridgeless(self) -> sp.Expr:
        """$\\lim_{\\lambda\\to0^+}\\lambda/\\varepsilon$: 0 for $\\tau<1$ (where $\\varepsilon_0M=1-\\tau$),
        and, with $\\varepsilon\\to0$, $(\\tau-1)/\\tau$ for $\\tau>1$ (derived)."""
        below = sp.simplify(self.lam_over_eps.subs(eps * M, 1 - tau))
        above = sp.simplify(self.lam_over_eps.subs(eps, 0))
        return sp.Piecewise((below, tau < 1), (above, True))

    @cached_property
    def eps_ridgeless(self) -> sp.Expr:
        return sp.Piecewise((self.eps0, tau < 1), (0, True))

    def ridgeless_forms(self) -> dict[str, dict[str, sp.Expr]]:
        """e_ICL, e_IDG, e_train at $\\lambda=0^+$ for each branch, by substitution (derived).

        Returned in terms of $q$, $\\varepsilon$, $M=M_\\kappa(q+\\varepsilon)$, $M'$; with
        $\\varepsilon=0$ for $\\tau>1$ and $\\varepsilon=\\varepsilon_0$ for $\\tau<1$.
        """
        out = {}
        for branch, e_val, r_val in (("tau<1", self.eps0, self.r_ridgeless.args[0][0]),
                                     ("tau>1", sp.Integer(0), self.r_ridgeless.args[1][0])):
            prog = self._observables_program(eps_value=e_val, r_value=r_val)
            out[branch] = {name: prog.expression(sym) for name, sym in
                           (("e_icl", e_icl), ("e_idg", e_idg), ("e_train", e_train))}
        return out

    # ---- stated forms (spec §2.1, §2.2, §2.4), for verification only ----------------
    def stated_forms(self) -> dict[str, sp.Expr]:
        """The forms as printed in the spec / authors' code. Never used by kernels: the
        tests check that the derived forms equal these."""
        b = x + 1 - 1 / kappa
        root = sp.sqrt(b**2 + 4 * x / kappa)
        m_star = Mk(q)
        mu_star = q * Mk(q, kappa / tau)
        k_star = 1 / (1 - kappa * (m_star / (kappa + m_star)) ** 2)
        sig2 = rho + q * (1 - q * m_star)
        e0 = (1 - tau) * q / (tau * mu_star)
        c = 1 / (1 - kappa / (1 + kappa * e0 / (1 - tau)) ** 2)
        return {
            "M": 2 / (b + root),
            "Mp_a": -M**2 * (1 + M / kappa) / (1 + x * M**2 / kappa),
            "Mp_b": -sp.Rational(1, 2) * M**2 * (1 + (x + 1 + 1 / kappa) / root),
            "M_kappa_inf": 1 / (1 + x),
            "Mp_kappa_inf": -1 / (1 + x) ** 2,
            "eps0": (1 - tau) / (tau * Mk(q, kappa / tau)),
            "e_icl_tau<1": (tau * (1 + q) / (1 - tau) * (1 - tau * (1 - mu_star) ** 2
                                                         + mu_star * (rho / q - 1))
                            - 2 * tau * (1 - mu_star) + 1 + rho),
            "e_icl_tau>1": ((k_star - 1 / (tau - 1)) * (1 + q) * (q * m_star) ** 2
                            + (3 - 2 * tau) / (tau - 1) * m_star * q**2
                            + ((1 + rho) * m_star / (tau - 1) + 1) * q
                            + rho * m_star / (tau - 1) + rho),
            "e_idg_tau>1": tau / (tau - 1) * sig2,
            "e_idg_tau<1": tau * ((q + e0) ** 2 / e0
                                  + (rho + q - 2 * q * (1 - tau) * (q / e0 + 1))
                                  / (1 - tau - c * (1 - tau) ** 2)),
            "e_train_tau>1": (tau - 1) / tau * sig2,
        }

    # ---- programs: what kernels are generated from ------------------------------------
    def _observables_program(self, eps_value: sp.Expr | None = None,
                             r_value: sp.Expr | None = None) -> Program:
        assigns: list[tuple[sp.Symbol, sp.Expr]] = [(q, self.q_def)]
        inputs: tuple[sp.Symbol, ...] = (tau, alpha, kappa, rho, lam, eps)
        if eps_value is not None:
            inputs = (tau, alpha, kappa, rho)
            assigns.append((eps, eps_value))
        assigns += [
            (nu, q + eps),
            (M, Mk(nu)),
            (U, self.stable_forms[U]),
            (Mneg, self.stable_forms[Mneg]),
            (Mp, -Mneg),
            (Y, self.stable_forms[Y]),
            (W, self.stable_forms[W]),
            (D, self.stable_forms[D]),
            (N, self.stable_forms[N]),
            (r, sp.Piecewise((lam / eps, lam > 0), (self.r_ridgeless, True))
             if r_value is None else r_value),
            (e_idg, self.e_idg_def),
            (e_icl, self.stable_forms[e_icl]),
            (e_train, self.e_train_def),
        ]
        return Program("icl_observables", inputs, tuple(assigns),
                       (q, nu, M, Mp, D, N, e_icl, e_idg, e_train),
                       doc="Learning curves given eps (spec §2.3; lam = 0 uses the derived limits).")

    def programs(self) -> dict[str, Program]:
        f = self.eps_equation
        fp = sp.diff(f, eps)
        params = (tau, alpha, kappa, rho, lam)
        return {
            "observables": self._observables_program(),
            "eps_ridgeless": Program(
                "icl_eps_ridgeless", (tau, alpha, kappa, rho),
                ((q, self.q_def), (eps, self.eps_ridgeless)), (eps,),
                doc="Ridgeless effective ridge: eps0 (tau < 1, derived), 0 (tau > 1)."),
            "eps_residual": Program(
                "icl_eps_residual", (eps,) + params,
                ((q, self.q_def), (f_eps, f)), (f_eps,),
                doc="f(eps) = eps M(q+eps) - 1 + tau - tau lam/eps, increasing in eps (§2.2)."),
            "eps_residual_prime": Program(
                "icl_eps_residual_prime", (eps,) + params,
                ((q, self.q_def), (fprime_eps, fp)), (fprime_eps,),
                doc="df/deps, by SymPy differentiation (M' from implicit differentiation)."),
            "eps_residual_fdf": Program(
                "icl_eps_residual_fdf", (eps,) + params,
                ((q, self.q_def), (nu, q + eps), (M, Mk(nu)),
                 (f_eps, f.subs(Mk(q + eps), M)),
                 (fprime_eps, fp.subs(Mk(q + eps), M))), (f_eps, fprime_eps),
                doc="f and df/deps together, sharing M(q + eps) (the root finder's Newton step)."),
            "eps_bracket": Program(
                "icl_eps_bracket", params,
                ((lo_eps, lam),
                 (hi_eps, sp.Piecewise((tau * lam / (tau - 1), tau > 1), (lam + 1, True)))),
                (lo_eps, hi_eps),
                doc="f(lam) < 0 since x M(x) < 1; f(tau lam/(tau-1)) > 0 for tau > 1 (§2.2)."),
        }

    def equations(self) -> list[Equation]:
        F = mp_self_consistency(M, x, kappa)
        return [
            Equation("q", q, self.q_def, "paper", "§1.4"),
            Equation("Marchenko–Pastur trace (definition)", F, sp.Integer(0), "code+mp", "§2.1",
                     "M = M_κ(x) is the positive root"),
            Equation("M closed form", Mk(x), self.M_closed_form, "derived", "§2.1",
                     "stable root of the quadratic (no cancellation for either sign of b)"),
            Equation("M' (implicit differentiation)", Mp, self.Mprime, "derived",
                     "§2.1"),
            Equation("κ → ∞", Mk(x, sp.oo), self.kappa_infinity["M"], "derived", "§2.1"),
            Equation("effective ridge", eps * Mk(q + eps), 1 - tau + tau * lam / eps, "code+mp",
                     "§2.2"),
            Equation("ridgeless ε (τ < 1)", eps0_sym, self.eps0, "derived", "§2.2"),
            Equation("λ/ε as λ → 0⁺", r, self.r_ridgeless, "derived",
                     "§2.3"),
            Equation("ν", nu, q + eps, "paper", "§2.3"),
            Equation("D", D, self.D_def, "code+mp", "§2.3"),
            Equation("N", N, self.N_def, "code+mp", "§2.3"),
            Equation("IDG error", e_idg, self.e_idg_def, "derived", "§2.3",
                     "derived+sim in the spec"),
            Equation("ICL error", e_icl, self.e_icl_def, "code+mp", "§2.3"),
            Equation("training error", e_train, self.e_train_def, "derived", "§2.3",
                     "r = λ/ε; derived+sim in the spec"),
        ]
