r"""Attention-indexed model (AIM) with $T\ge1$ tokens: Bayes-optimal state evolution.

H. Boncoraglio, E. Troiani, V. Erba, L. Zdeborová, *Bayes-optimal learning of an
extensive-width attention layer* (attention-indexed model), arXiv:2506.01582 (NeurIPS 2025).
Everything is taken from the authors' code (``FabrizioBoncoraglio/BO_ExtensiveRankAttention``
@ 5f1b99c) as read in the project spec ``shared/specs/attention_indexed_multitoken.md``
(section numbers below refer to it).

Model (§1): tokens $x_a\sim N(0,I_d)$, $a=1..T$; $S^*=WW^\top/\sqrt{rd}$, $W\in\mathbb R^{d\times r}$
i.i.d. $N(0,1)$, $r=\rho d$; $n=\alpha d^2$ samples; pre-activations
$h_{ab}=(x_a^\top S^*x_b-\delta_{ab}\operatorname{Tr}S^*)/\sqrt d$, jointly Gaussian with
covariance $Q_0C$, $C_{aa}=2$, $C_{a<b}=1$, $Q_0=1+\rho$. Labels: the row-wise softmax of $h$
(any $\beta>0$, noiseless) or, at $T=2$, the row-wise hardmax. Error: $\mathrm{mmse}=Q_0-q$.

Stated (§3): the scalar state evolution $q=Q_0-\mathrm{mmse}_{\rm RIE}(1/\hat q)$,
$\hat q=2\alpha\,\mathbb E[g^\top Cg]$, $g=\nabla_\omega\log Z_{\rm out}(y;\omega,V)$,
$\omega\sim N(0,qC)$, $V=Q_0-q$; the prior of $S^*$ is $\sqrt\rho\cdot\mathrm{MP}(1/\rho)$.

Derived here by SymPy (not typed):

* the $\rho$ map of the RIE error onto the quadratic network's,
  $\mathrm{mmse}^{\rm AIM}_{\rm RIE}(\Delta;\rho)=\rho\,\mathrm{mmse}^{\rm ewq}_{\rm RIE}(\Delta/\rho;\kappa=\rho)$
  (from $S^*=\sqrt\rho\,S_{\rm ewq}$), so the prior side is
  :meth:`ExtensiveWidthQuadratic.mmse_rie <derive.models.extensive_width_quadratic.ExtensiveWidthQuadratic.mmse_rie>`;
* softmax: the log-ratio map $h\mapsto(h_{ab}-h_{aT})$ and its rank $T(T+1)/2-1$ (SymPy
  ``Matrix.rank`` for each $T$ checked), the information $V\,\mathbb E[g^\top Cg]=
  \operatorname{tr}(CP^\top(PCP^\top)^+P)=\operatorname{rank}$, hence
  $\hat q=(T^2+T-2)\alpha/(Q_0-q)$ and $\alpha_{\rm PR}$ by the same map;
* hardmax, $T=2$: $Z_{\rm out}$ as the orthant probability of $(h_{11}-h_{12},h_{22}-h_{12})$,
  a bivariate normal CDF :class:`~derive.codegen.functions.BivariateNormalCDF` whose
  arguments (variance $3V$, correlation $\pm1/3$) come from $C$; $g$ by SymPy differentiation;
  the authors' variant (the density $\varphi_2$ in place of $\partial_i\Phi_2$, §4) as an
  explicit alternative differentiation rule; the Gaussian law of $\omega_{11}-\omega_{12}$,
  $\omega_{22}-\omega_{12}$; the $\rho\to0$ weak-recovery threshold in closed form.

The $\rho\to0$ state evolution at fixed $\bar\alpha=\alpha/\rho$ (option ``limit="rho0"``): the same
channel kernels at $\alpha\to\bar\alpha$, $Q_0=\lim_{\rho\to0}(1+\rho)=1$ (SymPy), and the low-rank prior
map $q=(1-t)_+^2$, $t=\rho/\hat q$ of the authors' ``SE_hardmax_rho=0.py`` (stated, §3; checked in the
tests as the $\rho\to0$ limit of the RIE error above).
"""
from __future__ import annotations

from functools import cached_property, lru_cache
from typing import Any, Mapping

import numpy as np
import sympy as sp

from numerics.backend import Backend
from numerics.state_evolution import solve_two_stage
from numerics.quadrature import graded_gauss_legendre, tensor_rule_2d
from numerics.results import Status

from ..codegen import Program
from ..codegen.functions import BivariateNormalCDF, bivariate_normal_pdf
from ..declarations import Observable, Option, declare, init_option, stability_option
from ..model import Equation, Model
from ..params import Domain, Parameter, positive
from ._bayes_fp import check_stability_option, leading_eigenvalue, parse_init

__all__ = ["AttentionIndexed", "MODEL", "log_ratio_matrix", "pair_index"]

ALPHA = Parameter("alpha", positive, r"\alpha", "samples over d^2, n/d^2")
TOKENS = Parameter("T", Domain(1.0, float("inf"), lo_closed=True, integer=True), "T",
                   "number of tokens (integer >= 1; hardmax: T = 2)")
RHO = Parameter("rho", positive, r"\rho", "rank over dimension, r/d")

alpha, T, rho = (p.symbol for p in (ALPHA, TOKENS, RHO))

m = sp.Symbol("m", positive=True)               # Q0 − q = the MMSE (state of the map)
q = sp.Symbol("q", nonnegative=True)
V = sp.Symbol("V", positive=True)
qhat = sp.Symbol("qhat", nonnegative=True)
de = sp.Symbol("Delta_eff", positive=True)      # 1/q̂
E = sp.Symbol("E", nonnegative=True)            # E[gᵀCg]
Q0, m0, rank_s, alpha_pr = sp.symbols("Q_0 m_0 rank alpha_PR")
kap_e, de_e, m_e, m_new = sp.symbols("kappa_ewq Delta_ewq m_ewq m_new")
k1, k2 = sp.symbols("k_1 k_2", real=True)       # standardised margins (h_aa − h_12)/√(3V)
w11, w22, w12 = sp.symbols("omega_11 omega_22 omega_12", real=True)
s1, s2 = sp.symbols("s_1 s_2")                  # ±1: does h_aa win row a?
integrand = sp.Symbol("I")
bar_alpha_c = sp.Symbol("alphabar_c")

SYMBOL_NAMES = {m: r"\mathrm{mmse}", qhat: r"\hat q", de: r"\Delta_{\rm eff}", Q0: r"Q_0",
                E: r"\mathbb E[g^\top Cg]", kap_e: r"\kappa_{\rm ewq}", de_e: r"\Delta_{\rm ewq}",
                m_e: r"\mathrm{mmse}^{\rm ewq}_{\rm RIE}", m_new: r"\mathrm{mmse}_{\rm RIE}",
                alpha_pr: r"\alpha_{\rm PR}", m0: r"\mathrm{mmse}_0", rank_s: r"\operatorname{rank}P",
                w11: r"\omega_{11}", w22: r"\omega_{22}", w12: r"\omega_{12}",
                bar_alpha_c: r"\bar\alpha_c", integrand: r"\mathcal I"}

ACTIVATIONS = ("softmax", "hardmax")
DERIVATIVES = ("correct", "authors")
LIMITS = ("none", "rho0")


# --------------------------------------------------------------------------- symbolic helpers
def pair_index(Tv: int) -> list[tuple[int, int]]:
    """The free entries ``(a, b)``, ``a <= b``, of the symmetric pre-activation matrix ``h``."""
    return [(a, b) for a in range(Tv) for b in range(a, Tv)]


def covariance_weights(Tv: int) -> sp.Matrix:
    """``C = diag(C_ab)``: ``Var h_aa = 2 Q0``, ``Var h_ab = Q0`` (a < b), independent (§1)."""
    return sp.diag(*[2 if a == b else 1 for a, b in pair_index(Tv)])


@lru_cache(maxsize=None)
def log_ratio_matrix(Tv: int) -> sp.Matrix:
    r"""$P$: $h\mapsto(\beta^{-1}\log(y_{ab}/y_{aT}))=(h_{ab}-h_{aT})_{a\le T,\,b<T}$ on the free
    entries of the symmetric $h$; the softmax output is equivalent to $Ph$ (noiseless, any $\beta$)."""
    idx = {p: i for i, p in enumerate(pair_index(Tv))}

    def col(a: int, b: int) -> int:
        return idx[(min(a, b), max(a, b))]

    rows = []
    for a in range(Tv):
        for b in range(Tv - 1):
            row = [0] * len(idx)
            row[col(a, b)] += 1
            row[col(a, Tv - 1)] -= 1
            rows.append(row)
    return sp.Matrix(rows) if rows else sp.zeros(0, len(idx))


@lru_cache(maxsize=None)
def softmax_information(Tv: int) -> tuple[int, sp.Expr]:
    r"""``(rank P, tr(C Pᵀ (P C Pᵀ)⁺ P))`` for ``T = Tv``: the second is $V\,\mathbb E[g^\top Cg]$ of
    the noiseless linear channel $u=Ph$, $h\sim N(\omega,VC)$ (with $g=P^\top(PCP^\top)^+(u-P\omega)/V$)."""
    P = log_ratio_matrix(Tv)
    if P.rows == 0:
        return 0, sp.Integer(0)
    C = covariance_weights(Tv)
    M = P * C * P.T
    info = sp.nsimplify(sp.simplify((C * P.T * M.pinv() * P).trace()))
    return int(P.rank()), info


#: a label whose probability Z_out is below this contributes nothing (its Z gᵀCg is (∇Z)ᵀC∇Z/Z ≤ O(Z log² Z))
TINY = sp.Float(1e-280)

#: rank of the log-ratio map as a function of T (kernel: h ∝ 11ᵀ); checked by Matrix.rank
RANK_OF_T = T * (T + 1) / 2 - 1


class AttentionIndexed(Model):
    """Bayes-optimal MMSE of the attention-indexed model (softmax any T, hardmax T = 2)."""

    name = "attention-indexed"
    title = ("Attention-indexed model, T tokens: Bayes-optimal state evolution "
             "(Boncoraglio, Troiani, Erba, Zdeborová 2025)")
    paper = "arXiv:2506.01582 (NeurIPS 2025)"
    parameters = (ALPHA, TOKENS, RHO)
    symbol_names = SYMBOL_NAMES
    observables = ("mmse", "q", "qhat", "stability")
    #: fixed-point protocol (derive.model): the state is m = Q0 − q
    state = ("mmse",)
    options = {"activation": "softmax", "derivative": "correct", "limit": "none", "init": None,
               "stability": False, "tol": 1e-10, "maxiter": 2000, "panels": 10, "nodes": 6}
    #: option domains (:mod:`derive.declarations`; cross-checks in :meth:`validate_options`)
    option_info = declare(
        Option("activation", "softmax", "attention activation", kind="choice", choices=ACTIVATIONS),
        Option("derivative", "correct", "channel derivative: 'correct', or the authors' (hardmax only)",
               kind="choice", choices=DERIVATIVES),
        Option("limit", "none", "'rho0': the rho -> 0 limit at fixed alpha_bar = alpha/rho = n/(dr); "
               "'alpha' is then alpha_bar and 'rho' is not used (Q0 = 1)", kind="choice", choices=LIMITS),
        init_option(("mmse",)),
        stability_option(),
        Option("tol", 1e-10, "fixed-point tolerance", kind="float", domain=Domain(1e-15, 1e-3, True, False)),
        Option("maxiter", 2000, "iteration budget per point", kind="int",
               domain=Domain(1, 100_000, True, True, integer=True)),
        Option("panels", 10, "graded Gauss-Legendre panels of the channel quadrature", kind="int",
               domain=Domain(1, 200, True, True, integer=True)),
        Option("nodes", 6, "Gauss-Legendre nodes per panel", kind="int",
               domain=Domain(1, 64, True, True, integer=True)),
    )
    #: physical ranges: 0 <= mmse, q <= Q0 = 1 + rho (the prior's second moment), qhat >= 0
    observable_info = declare(
        Observable("mmse", "minimum mean squared error", r"\mathrm{mmse}", "1", 0.0,
                   lambda p, o: 1 + p["rho"], resolution=1e-12),
        Observable("q", "overlap, Q0 - mmse", "q", "1", 0.0, lambda p, o: 1 + p["rho"]),
        # (limit="rho0": mmse, q <= Q0 = 1 <= 1 + rho, so the same bounds hold)
        Observable("qhat", "conjugate overlap", r"\hat q", "1", 0.0),
        Observable("stability", "leading eigenvalue of the Jacobian of the undamped map (real part)",
                   r"\lambda_{\max}", "1", optional=True, computed=lambda o: bool(o.get("stability"))),
    )
    kernel_input_ranges = {"k_1": (-4.0, 4.0), "k_2": (-4.0, 4.0), "q": (0.05, 2.0),
                           "V": (0.05, 2.0), "alpha": (0.01, 3.0), "T": (2.0, 6.0), "rho": (0.05, 3.0),
                           "m": (0.05, 1.5), "omega_11": (-2.0, 2.0), "omega_22": (-2.0, 2.0),
                           "omega_12": (-2.0, 2.0), "E": (0.1, 5.0), "m_ewq": (0.0, 2.0),
                           "Delta_eff": (0.01, 3.0)}

    # ---- definitions (stated, §1 and §3) ----------------------------------------------
    Q0_def = 1 + rho                                   # Tr S*²/d
    #: the prior: S* = √ρ · S_ewq with S_ewq = WWᵀ/r ~ MP(1/ρ) (the quadratic network's, κ = ρ)
    scale_def = sp.sqrt(rho)

    # ---- derived: the ρ map of the RIE error ---------------------------------------------
    @cached_property
    def rho_map(self) -> dict[str, sp.Expr]:
        r"""$Y=S^*+\sqrt\Delta\,\mathrm{GOE}$ with $S^*=cS$ is $c\,(S+\sqrt{\Delta/c^2}\,\mathrm{GOE})$, so
        $\mathrm{mmse}^{\rm AIM}(\Delta)=c^2\,\mathrm{mmse}^{\rm ewq}(\Delta/c^2)$ with $c=\sqrt\rho$;
        the uninformed error is $Q_0-(\mathbb E\lambda)^2$ with $\mathbb E\lambda=c$ (MP has mean 1)."""
        from .extensive_width_quadratic import ExtensiveWidthQuadratic, kappa

        c = self.scale_def
        ewq_q0 = ExtensiveWidthQuadratic.Q0_def.subs(kappa, rho)
        out = {"kappa": rho, "delta": sp.simplify(de / c**2), "scale": sp.simplify(c**2),
               "prior_mmse": sp.simplify(self.Q0_def - c**2),
               "ewq_uninformed": sp.simplify(ewq_q0 - 1)}
        # consistency of the map (derived): ρ·Q0^ewq(κ = ρ) = Q0 and ρ·(Q0^ewq − 1) = Q0 − ρ
        if sp.simplify(c**2 * ewq_q0 - self.Q0_def) != 0 or \
                sp.simplify(c**2 * out["ewq_uninformed"] - out["prior_mmse"]) != 0:
            raise ArithmeticError("rho map inconsistent with the quadratic network's Q0")
        return out

    # ---- the ρ → 0 limit at fixed ᾱ = α/ρ (stated, §3: SE_hardmax_rho=0.py) --------------------
    @cached_property
    def rho0_Q0(self) -> sp.Expr:
        """Q0 = Tr S*²/d in the limit ρ → 0 (derived from ``Q0_def``): 1."""
        return sp.limit(self.Q0_def, rho, 0)

    @cached_property
    def rho0_prior_def(self) -> sp.Expr:
        r"""The low-rank limit of the prior channel (stated, §3, from ``SE_hardmax_rho=0.py``): at
        $\hat{\bar q}=\hat q/\rho=2\bar\alpha\,\mathbb E[g^\top Cg]$ and $t=1/\hat{\bar q}$ (``Delta_eff``),
        $q=(1-t)_+^2$ and $\mathrm{mmse}=Q_0-q$ with $Q_0\to1$ (the BBP overlap of $r\ll d$ spikes of
        equal strength). Checked against the model's own RIE error: $\mathrm{mmse}_{\rm RIE}(t/\rho;\rho)
        \to1-(1-t)_+^2$ as $\rho\to0$ (tests)."""
        return self.rho0_Q0 - sp.Piecewise(((1 - de) ** 2, de < 1), (0, True))

    # ---- derived: softmax channel -------------------------------------------------------
    def check_rank(self, up_to: int = 6) -> dict[int, tuple[int, int, int]]:
        """``{T: (Matrix.rank of P, tr(C Pᵀ M⁺ P), T(T+1)/2 − 1)}`` for T = 1..up_to."""
        out = {}
        for Tv in range(1, up_to + 1):
            r, info = softmax_information(Tv)
            out[Tv] = (r, int(info), int(RANK_OF_T.subs(T, Tv)))
        return out

    @cached_property
    def softmax_qhat(self) -> sp.Expr:
        """q̂ = 2α E[gᵀCg] with V E[gᵀCg] = rank P (derived): (T² + T − 2) α/(Q0 − q)."""
        return sp.factor(2 * alpha * RANK_OF_T / V).subs(V, m)

    @cached_property
    def alpha_pr_def(self) -> sp.Expr:
        r"""Perfect recovery: the quadratic network's $\alpha_{\rm PR}(\kappa)$ at $\kappa=\rho$ under the
        map $\alpha_{\rm eff}=\alpha\cdot\operatorname{rank}$, solved for $\alpha$ (derived)."""
        from .extensive_width_quadratic import ExtensiveWidthQuadratic, kappa

        a_eff = sp.Symbol("a_eff")
        ewq_pr = ExtensiveWidthQuadratic.alpha_pr_def.subs(kappa, rho)
        (sol,) = sp.solve(sp.Eq(alpha * RANK_OF_T, a_eff), alpha)
        return sp.piecewise_fold(sol.subs(a_eff, ewq_pr))

    # ---- derived: hardmax channel at T = 2 ---------------------------------------------------
    @cached_property
    def hardmax_geometry(self) -> dict[str, Any]:
        """u = (h11 − h12, h22 − h12) = J h: its covariance V·J C Jᵀ given ω, and q·J C Jᵀ for Jω."""
        J = sp.Matrix([[1, 0, -1], [0, 1, -1]])          # order (11, 22, 12)
        C = sp.diag(2, 2, 1)
        Sig = J * C * J.T
        r = sp.simplify(Sig[0, 1] / sp.sqrt(Sig[0, 0] * Sig[1, 1]))
        return {"J": J, "C": C, "Sigma": Sig, "var": Sig[0, 0], "r": r}

    def z_out(self, authors: bool = False) -> sp.Expr:
        r"""$Z_{\rm out}(s;\omega,V)=P(s_1u_1>0,\,s_2u_2>0)=\Phi_2(s_1(\omega_{11}-\omega_{12})/\sqrt{3V},
        s_2(\omega_{22}-\omega_{12})/\sqrt{3V};\,s_1s_2/3)$; with ``authors`` the same value under a
        function whose derivative rule is the authors' (the density $\varphi_2$, §4)."""
        gm = self.hardmax_geometry
        F = _AuthorsPhi2 if authors else BivariateNormalCDF
        sd = sp.sqrt(gm["var"] * V)
        return F(s1 * (w11 - w12) / sd, s2 * (w22 - w12) / sd, s1 * s2 * gm["r"])

    def g_out(self, authors: bool = False) -> list[sp.Expr]:
        """g = ∇_ω log Z_out in the order (ω11, ω22, ω12), by SymPy differentiation."""
        cache = self.__dict__.setdefault("_g_out", {})
        if authors not in cache:
            Z = self.z_out(authors)
            cache[authors] = [sp.diff(sp.log(Z), w).replace(_AuthorsPhi2, BivariateNormalCDF)
                              for w in (w11, w22, w12)]
        return list(cache[authors])

    def gCg(self, authors: bool = False) -> sp.Expr:
        g = sp.Matrix(self.g_out(authors))
        return (g.T * self.hardmax_geometry["C"] * g)[0, 0]

    @cached_property
    def omega_difference_law(self) -> sp.Expr:
        r"""Density of $(w_1,w_2)=(\omega_{11}-\omega_{12},\omega_{22}-\omega_{12})$, $\omega\sim N(0,qC)$."""
        Sig = q * self.hardmax_geometry["Sigma"]
        wv = sp.Matrix([sp.Symbol("w_1"), sp.Symbol("w_2")])
        quad = sp.expand((wv.T * Sig.inv() * wv)[0, 0])
        return sp.exp(-quad / 2) / (2 * sp.pi * sp.sqrt(Sig.det()))

    def hardmax_integrand(self, authors: bool = False) -> sp.Expr:
        r"""$\mathcal I(k_1,k_2)$ with $\mathbb E[g^\top Cg]=\iint\mathcal I\,dk_1dk_2$: the sum over the four
        labels $y=(s_1,s_2)$ of $Z_{\rm out}\,g^\top Cg$ times the law of $\omega$ in the standardised
        margins $k_i=w_i/\sqrt{3V}$ (Jacobian $3V$); $\omega_{12}$ drops out (checked)."""
        gm = self.hardmax_geometry
        sd = sp.sqrt(gm["var"] * V)
        W1, W2 = sp.Symbol("w_1"), sp.Symbol("w_2")
        C = gm["C"]
        total = 0
        for sv1 in (1, -1):
            for sv2 in (1, -1):
                sub = {s1: sv1, s2: sv2}
                Z = self.z_out(False).subs(sub)
                # Z gᵀCg = (∇Z)ᵀC(∇Z)/Z with ∇Z = Z g (g from g_out): written so that a label of
                # vanishing probability contributes 0, not 0·∞
                D = sp.Matrix([gi.subs(sub) * Z for gi in self.g_out(authors)])
                e = (D.T * C * D)[0, 0] / sp.Max(Z, TINY)
                total += e.subs({w11: w12 + sd * k1, w22: w12 + sd * k2})
        if total.has(w12):  # Z depends on ω only through the differences: ω12 must cancel
            pt = {k1: sp.Rational(3, 10), k2: -sp.Rational(7, 10), V: sp.Rational(1, 2)}
            a, b = (sp.N(total.subs(pt).subs(w12, v), 30) for v in (0, 1))
            if abs(a - b) > 1e-25:
                raise ArithmeticError("hardmax integrand depends on omega_12")
            total = total.subs(w12, 0)
        law = self.omega_difference_law.subs({W1: sd * k1, W2: sd * k2}) * gm["var"] * V
        return total * law

    @cached_property
    def nishimori_terms(self) -> dict[str, sp.Expr]:
        r"""$N_{ij}=\sum_y Z_{\rm out}(g_ig_j+\partial_{\omega_j}g_i)$ for $(i,j)\in\{(11,11),(12,12),(11,22)\}$;
        $=\sum_y\partial_i\partial_jZ_{\rm out}=0$ for the true gradient (the labels' probabilities sum
        to one). Correct (``*_correct``) and authors' (``*_authors``) gradients."""
        out = {}
        ws = {"11": w11, "22": w22, "12": w12}
        for tag, authors in (("correct", False), ("authors", True)):
            g = dict(zip(("11", "22", "12"), self.g_out(authors)))
            for i, j in (("11", "11"), ("12", "12"), ("11", "22")):
                tot = 0
                for sv1 in (1, -1):
                    for sv2 in (1, -1):
                        e = self.z_out(False) * (g[i] * g[j] + sp.diff(g[i], ws[j]))
                        tot += e.subs({s1: sv1, s2: sv2})
                out[f"N_{i}_{j}_{tag}"] = tot
        return out

    # ---- the ρ → 0 weak-recovery threshold ---------------------------------------------------
    def information_at_zero(self, activation: str = "hardmax", derivative: str = "correct",
                            Tv: int = 2) -> sp.Expr:
        """E[gᵀCg] at q = 0, V = 1 (ω = 0): exact (Sheppard's Φ2(0, 0; r) for the hardmax)."""
        if activation == "softmax":
            return RANK_OF_T.subs(T, Tv)
        if Tv != 2:
            raise ValueError(f"hardmax is derived for T = 2 only, got T = {Tv}")
        tot = 0
        for sv1 in (1, -1):
            for sv2 in (1, -1):
                e = (self.z_out(False) * self.gCg(derivative == "authors")).subs({s1: sv1, s2: sv2})
                tot += e.subs({w11: 0, w22: 0, w12: 0, V: 1})
        return sp.nsimplify(sp.simplify(tot))

    def weak_recovery_threshold_expr(self, T: int = 2, activation: str = "hardmax",
                                     derivative: str = "correct") -> sp.Expr:
        r"""$\bar\alpha_c=1/(2\,\mathbb E[g^\top Cg]|_{q=0,V=1})$ ($\rho\to0$, $\bar\alpha=\alpha/\rho$;
        low-rank prior $q=(1-t)^2_+$, $t=1/(2\bar\alpha E)$, §3), exact."""
        return sp.simplify(1 / (2 * self.information_at_zero(activation, derivative, int(T))))

    def weak_recovery_threshold(self, T: int = 2, activation: str = "hardmax",
                                derivative: str = "correct", dps: int = 15) -> float:
        """ᾱ_c = α/ρ at which weak recovery starts as ρ → 0 (float of the exact expression)."""
        self._check_activation(activation, derivative)
        if int(T) != T or T < 2:
            raise ValueError(f"T must be an integer >= 2, got {T!r}")
        return float(sp.N(self.weak_recovery_threshold_expr(int(T), activation, derivative), dps))

    # ---- programs ---------------------------------------------------------------------------
    def programs(self) -> dict[str, Program]:
        rm = self.rho_map
        return {
            "softmax_channel": Program(
                "aim_softmax_channel", (alpha, T, m),
                ((qhat, self.softmax_qhat),
                 (de, sp.Piecewise((1 / qhat, qhat > 0), (sp.oo, True)))), (qhat, de),
                doc="q̂ = (T² + T − 2) α/(Q0 − q) (rank of the log-ratio map, derived); Δ = 1/q̂."),
            "hardmax_channel": Program(
                "aim_hardmax_channel", (alpha, E), ((qhat, 2 * alpha * E),
                                                    (de, sp.Piecewise((1 / qhat, qhat > 0), (sp.oo, True)))),
                (qhat, de), doc="q̂ = 2α E[gᵀCg] (stated, §3); Δ = 1/q̂."),
            "rho_map": Program(
                "aim_rho_map", (rho, de), ((kap_e, rm["kappa"]), (de_e, rm["delta"]),
                                           (m0, rm["ewq_uninformed"])), (kap_e, de_e, m0),
                doc="RIE error of √ρ·MP(1/ρ) from the quadratic network's at κ = ρ, Δ/ρ (derived); "
                    "m_0: the quadratic network's uninformed error 1/κ (Δ = ∞)."),
            "prior": Program(
                "aim_prior", (rho, m_e), ((m_new, rm["scale"] * m_e),), (m_new,),
                doc="mmse_RIE = ρ mmse_RIE^ewq (derived)."),
            "observables": Program(
                "aim_observables", (rho, m), ((Q0, self.Q0_def), (q, Q0 - m), (V, m)), (Q0, q, V),
                doc="Q0 = 1 + ρ, q = Q0 − mmse, V = Q0 − q."),
            "alpha_pr": Program(
                "aim_alpha_pr", (T, rho), ((alpha_pr, self.alpha_pr_def),), (alpha_pr,),
                doc="Softmax perfect-recovery threshold (derived by the α_eff map)."),
            "hardmax_integrand": Program(
                "aim_hardmax_integrand", (k1, k2, q, V), ((integrand, self.hardmax_integrand(False)),),
                (integrand,), doc="Σ_y Z_out gᵀCg × law of ω (standardised margins), correct g."),
            "hardmax_integrand_authors": Program(
                "aim_hardmax_integrand_authors", (k1, k2, q, V),
                ((integrand, self.hardmax_integrand(True)),), (integrand,),
                doc="The same with the authors' g (φ2 in place of ∂Φ2), to reproduce their curves."),
            "rho0_observables": Program(
                "aim_rho0_observables", (m,), ((q, self.rho0_Q0 - m), (V, m)), (q, V),
                doc="ρ → 0: q = Q0 − mmse with Q0 = lim (1 + ρ) = 1, V = Q0 − q."),
            "rho0_prior": Program(
                "aim_rho0_prior", (de,), ((m_new, self.rho0_prior_def),), (m_new,),
                doc="ρ → 0 prior map: mmse = 1 − (1 − Δ)²₊ at Δ = 1/(2ᾱE) (stated, §3)."),
        }

    def nishimori_program(self) -> Program:
        """Σ_y Z(g_i g_j + ∂_j g_i) for the correct and authors' g (checked at 50 digits in tests;
        not part of :meth:`programs`, whose kernels the solver uses)."""
        nt = self.nishimori_terms
        outs = tuple(sp.Symbol(k) for k in nt)
        return Program("aim_nishimori", (w11, w22, w12, V), tuple(zip(outs, nt.values())), outs,
                       doc="Nishimori identity terms (0 for the true gradient).")

    def equations(self) -> list[Equation]:
        gm = self.hardmax_geometry
        g = self.g_out(False)
        ga = self.g_out(True)
        return [
            Equation("Q₀", Q0, self.Q0_def, "paper", "§1", "S* = WWᵀ/√(rd)"),
            Equation("RIE error (ρ map)", m_new, rho * sp.Function("mmse_RIE^ewq")(de / rho, rho),
                     "derived", "§3", "S* = √ρ·S_ewq, S_ewq ~ MP(1/ρ): the quadratic network's prior at κ = ρ"),
            Equation("state evolution (prior)", q, self.Q0_def - m_new, "paper", "§3",
                     "with Δ_eff = 1/q̂"),
            Equation("state evolution (channel)", qhat, 2 * alpha * E, "paper", "§3",
                     "E = E[gᵀCg], g = ∇_ω log Z_out(y; ω, V), ω ~ N(0, qC), V = Q₀ − q"),
            Equation("softmax log-ratio map, T = 2", sp.Symbol("P_2"), log_ratio_matrix(2), "derived",
                     "§3", "columns (h11, h12, h22); its kernel is h ∝ 11ᵀ"),
            Equation("rank of the log-ratio map", rank_s, RANK_OF_T, "derived", "§3",
                     "SymPy Matrix.rank for T = 1..6; V·E[gᵀCg] = tr(C Pᵀ(PCPᵀ)⁺P) = rank"),
            Equation("softmax channel", qhat, self.softmax_qhat, "derived", "§3", "m = Q₀ − q"),
            Equation("softmax perfect recovery", alpha_pr, self.alpha_pr_def, "derived", "§3",
                     "α_PR^ewq(κ = ρ)/rank"),
            Equation("hardmax T = 2: margins' covariance", sp.Symbol("Sigma_u") / V, gm["Sigma"], "derived",
                     "§3", "u = (h₁₁ − h₁₂, h₂₂ − h₁₂); r = 1/3"),
            Equation("hardmax T = 2: Z_out", sp.Symbol("Z_out"), self.z_out(False), "derived", "§3",
                     "s_a = ±1: h_aa wins row a"),
            Equation("hardmax gradient g₁₁ (correct)", sp.Symbol("g_11"), g[0], "derived", "§4",
                     "SymPy differentiation of log Z_out"),
            Equation("hardmax gradient g₁₂ (correct)", sp.Symbol("g_12"), g[2], "derived", "§4"),
            Equation("hardmax gradient g₁₁ (authors' code)", sp.Symbol("g_11^authors"), ga[0], "code+mp",
                     "§4", "φ₂ in place of ∂Φ₂ (SE_hardmax*.py, AMP_hardmax.py): a bug"),
            Equation("ρ → 0 prior (low-rank limit)", m_new, self.rho0_prior_def, "code", "§3",
                     "ᾱ = α/ρ, q̂/ρ = 2ᾱE, Δ = ρ/q̂; SE_hardmax_rho=0.py; the ρ → 0 limit of the RIE "
                     "error above (checked numerically)"),
            Equation("ρ → 0 weak recovery (hardmax, correct)", bar_alpha_c,
                     self.weak_recovery_threshold_expr(2, "hardmax", "correct"), "derived", "§3",
                     "= 0.4034106"),
            Equation("ρ → 0 weak recovery (hardmax, authors' g)", bar_alpha_c,
                     self.weak_recovery_threshold_expr(2, "hardmax", "authors"), "derived", "§3",
                     "= 0.5632675; their Monte-Carlo line 0.56345"),
        ]

    # ---- numerics -------------------------------------------------------------------------
    def _check_activation(self, activation: Any, derivative: Any) -> None:
        if activation not in ACTIVATIONS:
            raise ValueError(f"option 'activation' must be one of {ACTIVATIONS}, got {activation!r}")
        if derivative not in DERIVATIVES:
            raise ValueError(f"option 'derivative' must be one of {DERIVATIVES}, got {derivative!r}")
        if activation == "softmax" and derivative != "correct":
            raise ValueError("option derivative='authors' exists only for activation='hardmax'")

    def validate_options(self, options: Mapping[str, Any]) -> dict[str, Any]:
        opts = super().validate_options(options)
        self._check_activation(opts["activation"], opts["derivative"])
        check_stability_option(opts["stability"])
        for name in ("panels", "nodes", "maxiter"):
            v = opts[name]
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
                raise ValueError(f"option {name!r} must be an integer >= 1, got {v!r}")
        if not (isinstance(opts["tol"], (float, int)) and 0 < opts["tol"] < 1e-3):
            raise ValueError(f"option 'tol' must be in (0, 1e-3), got {opts['tol']!r}")
        return opts

    def rie_error(self, delta_eff: np.ndarray, rho_v: np.ndarray, n_nodes: int = 32,
                  tol: float | None = 1e-11) -> np.ndarray:
        """mmse_RIE of √ρ·MP(1/ρ) at noise Δ: the quadratic network's RIE through the ρ map;
        Δ = ∞ (no information) gives the uninformed error."""
        from . import get

        ewq = get("extensive-width-quadratic")
        d_v, r_v = np.broadcast_arrays(np.asarray(delta_eff, float), np.asarray(rho_v, float))
        mp_ = self.kernel("rho_map")(np, None, r_v, np.where(np.isfinite(d_v), d_v, 1.0))
        fin = np.isfinite(d_v)
        m_ewq = np.array(np.broadcast_to(mp_["m_0"], d_v.shape), dtype=float)   # Δ = ∞
        if fin.any():
            m_ewq[fin] = ewq.mmse_rie(np.asarray(mp_["Delta_ewq"])[fin],
                                      np.broadcast_to(mp_["kappa_ewq"], d_v.shape)[fin],
                                      n_nodes=n_nodes, tol=tol)
        return np.asarray(self.kernel("prior")(np, None, r_v, m_ewq)["m_new"], float)

    def hardmax_information(self, q_v: np.ndarray, V_v: np.ndarray, derivative: str = "correct",
                            panels: int = 10, nodes: int = 6, chunk: int = 4) -> np.ndarray:
        """E[gᵀCg](q, V) by the graded 2-D Gauss–Legendre rule in the margins k (the law of k has
        scale σ = √(q/V), the integrand scale 1; strips along both axes reach |k| ~ σ)."""
        kern = self.kernel("hardmax_integrand" + ("_authors" if derivative == "authors" else ""))
        q_v, V_v = np.broadcast_arrays(np.asarray(q_v, float), np.asarray(V_v, float))
        out = np.full(q_v.shape, np.nan)
        sig = np.sqrt(np.maximum(q_v, 0.0) / V_v)
        for s in range(0, q_v.size, chunk):
            sl = slice(s, s + chunk)
            sg = np.maximum(sig[sl], 1e-12)
            x, w = graded_gauss_legendre(np.minimum(1.0, sg), 12.0 * sg, panels, nodes)
            a, b, ww = tensor_rule_2d(x, w)
            with np.errstate(all="ignore"):
                val = kern(np, _special(), a, b, q_v[sl, None], V_v[sl, None])["I"]
            val = np.where(np.isfinite(val), val, np.nan)
            out[sl] = np.sum(ww * val, axis=-1)
        return out

    def _observables(self, r: np.ndarray, m_v: np.ndarray, limit: str) -> dict[str, Any]:
        if limit == "rho0":
            return self.kernel("rho0_observables")(np, None, m_v)
        return self.kernel("observables")(np, None, r, m_v)

    def se_map(self, m_v: np.ndarray, a: np.ndarray, Tv: np.ndarray, r: np.ndarray,
               activation: str, derivative: str, panels: int, nodes: int, coarse: bool = False,
               limit: str = "none") -> tuple[np.ndarray, np.ndarray]:
        """One undamped step m ↦ mmse_RIE(1/q̂(m)); returns (new m, q̂). ``coarse``: cheap
        quadratures (the first stage of :func:`numerics.state_evolution.solve_two_stage`).
        ``limit="rho0"``: ``a`` is ᾱ, q̂ is q̂/ρ and the prior map is the low-rank limit."""
        if activation == "softmax":
            ch = self.kernel("softmax_channel")(np, None, a, Tv, m_v)
        else:
            ob = self._observables(r, m_v, limit)
            Ev = self.hardmax_information(ob["q"], ob["V"], derivative,
                                          *((6, 4) if coarse else (panels, nodes)))
            ch = self.kernel("hardmax_channel")(np, None, a, Ev)
        if limit == "rho0":
            m_next = self.kernel("rho0_prior")(np, None, np.asarray(ch["Delta_eff"], float))["m_new"]
            return np.broadcast_to(np.asarray(m_next, float), np.shape(m_v)).copy(), \
                np.asarray(ch["qhat"], float)
        if coarse:
            return self.rie_error(ch["Delta_eff"], r, 16, None), np.asarray(ch["qhat"], float)
        return self.rie_error(ch["Delta_eff"], r), np.asarray(ch["qhat"], float)

    def random_points(self, n: int, rng: Any) -> list[dict[str, float]]:
        """Points in the studied ranges: α log-uniform in [1e-2, 3], T ∈ {1, …, 6}, ρ log-uniform
        in [0.05, 5] (the authors' grids; large T and α make the simulator's n α d² T² arrays huge)."""
        if not isinstance(n, (int, np.integer)):
            n, rng = rng, n
        g = np.random.default_rng(rng)
        return [{"alpha": float(10 ** g.uniform(-2, np.log10(3))), "T": float(g.integers(1, 7)),
                 "rho": float(10 ** g.uniform(np.log10(0.05), np.log10(5)))} for _ in range(int(n))]

    def random_states(self, n: int, rng: Any) -> np.ndarray:
        """``(n, 1)`` starts m ~ U(0.01, 1) (inside (0, Q0) for every ρ > 0)."""
        return np.random.default_rng(rng).uniform(0.01, 1.0, size=(int(n), 1))

    def evaluate(self, params: Mapping[str, Any], backend: Backend, *, activation: str = "softmax",
                 derivative: str = "correct", limit: str = "none", init: Any = None,
                 stability: bool = False, tol: float = 1e-10, maxiter: int = 2000, panels: int = 10,
                 nodes: int = 6) -> dict[str, Any]:
        """Iterate m ← mmse_RIE(1/q̂(m)) from the uninformed m = 1 (or ``init``) with the shared
        damped/Anderson driver; hardmax points with T ≠ 2 are ``not_computed``. ``limit="rho0"``:
        the ρ → 0 map at ᾱ = ``alpha`` (``rho`` unused), m ∈ (0, 1], m = 1 below weak recovery."""
        be = backend
        self._check_activation(activation, derivative)
        stab = check_stability_option(stability)
        a, Tv, r = (be.to_numpy(params[k]).astype(float) for k in ("alpha", "T", "rho"))
        n = a.size
        ok = np.ones(n, bool) if activation == "softmax" else (Tv == 2)
        x0 = parse_init(init, np.ones((n, 1)), domain=lambda s: s[:, 0] > 0)
        if limit not in LIMITS:
            raise ValueError(f"option 'limit' must be one of {LIMITS}, got {limit!r}")
        rho0 = limit == "rho0"
        q0 = np.broadcast_to(np.asarray(self._observables(r, np.zeros(n), limit)["q"], float), (n,))  # Q0
        # ρ → 0: the uninformed m = Q0 (q = 0) is a fixed point below weak recovery; the channel's
        # law of ω needs q > 0, so the map is evaluated at q ≥ 1e-12 Q0
        top = q0 * (1 - 1e-12) if rho0 else q0

        def F(xv: np.ndarray, idx: np.ndarray, coarse: bool = False) -> np.ndarray:
            mm = np.clip(xv[:, 0], 1e-300, top[idx])
            return self.se_map(mm, a[idx], Tv[idx], r[idx], activation, derivative, panels, nodes,
                               coarse, limit)[0][:, None]

        def inside(xv: np.ndarray, idx: np.ndarray) -> np.ndarray:
            hi = q0[sel[idx]]
            return (xv[:, 0] > 0) & ((xv[:, 0] <= hi) if rho0 else (xv[:, 0] < hi))

        mm = np.full(n, np.nan)
        conv = np.zeros(n, bool)
        resid = np.full(n, np.nan)
        iters = np.zeros(n, np.int64)
        status = np.full(n, int(Status.NOT_COMPUTED), np.int8)
        lead = np.full(n, np.nan)
        sel = np.flatnonzero(ok)
        if sel.size:
            def Fs(xv: np.ndarray, idx: np.ndarray) -> np.ndarray:
                return F(xv, sel[idx])

            def Fc(xv: np.ndarray, idx: np.ndarray) -> np.ndarray:
                return F(xv, sel[idx], True)

            # two stages (shared driver): cheap quadratures to 1e-7, then the accurate map to tol;
            # convergence is judged on the accurate map's undamped residual only
            with np.errstate(all="ignore"):
                res = solve_two_stage(Fs, Fc, x0[sel], tol=tol, coarse_tol=1e-7, maxiter=maxiter,
                                      damping=0.5, anderson=3, project=inside)
            conv[sel] = res.converged
            mm[sel] = np.where(res.converged, res.x[:, 0], np.nan)
            resid[sel] = res.residual
            iters[sel] = res.iterations
            status[sel] = res.status
            if stab:
                lead[sel] = leading_eigenvalue(Fs, res.x, res.converged)
        qh = np.full(n, np.nan)
        if conv.any():
            c = np.flatnonzero(conv)
            _, qh[c] = self.se_map(np.minimum(mm[c], top[c]), a[c], Tv[c], r[c], activation, derivative,
                                   panels, nodes, False, limit)
        ob = self._observables(r, mm, limit)
        out = {"mmse": mm, "q": np.where(conv, ob["q"], np.nan), "qhat": qh, "stability": lead,
               "converged": conv, "residual": resid, "iterations": iters, "status": status}
        return {k: be.asarray(v) for k, v in out.items()}

    mp_unavailable = ("the SE needs the numeric RIE density quadrature; the generated kernels are "
                      "checked against their mpmath versions instead (verify_kernels), the threshold "
                      "and the Nishimori identity at 50 digits")

    def evaluate_mp(self, point: Mapping[str, Any], dps: int = 50) -> dict[str, Any]:
        raise NotImplementedError(self.mp_unavailable)

    def alpha_pr(self, T: Any, rho: Any) -> np.ndarray:
        """Softmax perfect-recovery threshold (2ρ − ρ²)/(T² + T − 2) (ρ < 1), 1/(T² + T − 2)."""
        return np.asarray(self.kernel("alpha_pr")(np, None, np.asarray(T, float),
                                                   np.asarray(rho, float))["alpha_PR"], float)

    def simulate(self, *, d: int = 60, trials: int = 2, seed: int = 0, backend: str = "numpy",
                 alpha: float, T: float, rho: float, activation: str = "softmax",
                 derivative: str = "correct", n_iter: int = 40) -> Any:
        """Finite-d GAMP-RIE (independent of this module, :func:`numerics.amp.attention_indexed.run`)
        on ``trials`` instances (seeds ``seed, seed + 1, …``): the mean and standard error of
        ‖Ŝ − S*‖²_F/d as ``mmse``."""
        from numerics.amp.attention_indexed import run

        from ..model import SimulationResult

        if backend != "numpy":
            raise ValueError("the GAMP-RIE simulator runs on NumPy only")
        self._check_activation(activation, derivative)
        r = run(d=int(d), alpha=float(alpha), rho=float(rho), T=int(T), activation=activation,
                derivative=derivative, seeds=range(int(seed), int(seed) + int(trials)), n_iter=n_iter)
        return SimulationResult(self.name, {"alpha": float(alpha), "T": float(T), "rho": float(rho)},
                                {"mmse": r["mean"]}, {"mmse": r["sem"]}, int(d), int(trials), int(seed))


class _AuthorsPhi2(BivariateNormalCDF):
    r"""$\Phi_2$ with the authors' derivative rule: $\partial_h,\partial_k\mapsto\varphi_2(h,k;r)$ (§4).
    Used only to differentiate; replaced by :class:`BivariateNormalCDF` before code generation."""

    def fdiff(self, argindex: int = 1) -> sp.Expr:
        h, k, r = self.args
        if argindex in (1, 2):
            return bivariate_normal_pdf(h, k, r)
        return super().fdiff(argindex)


def _special() -> Any:
    from scipy import special

    return special


#: the registry entry (see derive/models/__init__.py)
MODEL = AttentionIndexed
