r"""Sequence multi-index model / two-layer tied attention: weak-recovery thresholds.

L. Troiani, H. Cui, Y. Dandi, F. Krzakala, L. Zdeborová, *Fundamental limits of learning in
sequence multi-index models and deep attention networks*, arXiv:2502.00901 (ICML 2025).
Spec: ``shared/specs/bayes_optimal_sequence_models.md`` §B1.

Two tied rank-1 attention layers on $L=2$ tokens: $A(z_1)=cI+\mathrm{softmax}(z_1z_1^\top)$,
$h=A(z_1)z_2$, $y=\mathrm{softmax}(hh^\top)$; preactivations $Z=(z_1;z_2)\in\mathbb R^{2\times2}$,
Gaussian prior, $\alpha=N/D$.

Stated (spec §B1): the Bayes-optimal state evolution $Q=\hat Q(I+\hat Q)^{-1}$,
$\hat Q=\alpha\,\mathbb E\sum_a g_{{\rm out},:a}g_{{\rm out},:a}^\top$, and its linearisation
$\hat Q\approx\alpha\,\mathcal F(Q)$, $\mathcal F(M)=\sum_{ab}\mathbb E[G_{ab}MG_{ba}]$,
$G=E[\mathrm{vec}Z\,\mathrm{vec}Z^\top\mid y]-I$.

Derived here (SymPy):

* the Jacobian of the SE map at $Q=0$ is $\alpha\,\mathcal F$ (prior derivative $=I$); with
  $G$ block-diagonal in the layers (the $z_1\to-z_1$ symmetry) $\mathcal F$ acts entrywise,
  $\mathcal F(M)_{\ell\ell'}=M_{\ell\ell'}\,\mathbb E\operatorname{tr}G^{(\ell)}G^{(\ell')}$, so
  $\alpha_\ell=1/\lambda_\ell$, $\lambda_\ell=\mathbb E\|E[z_\ell z_\ell^\top\mid y]-I\|_F^2$;
* at $(Q_{11},Q_{22})=(0,q_{22})$ the Jacobian is triangular ($\hat Q_{11}$ vanishes on
  $Q_{11}=0$), so layer 1 becomes unstable where $\alpha\,\lambda_1(q_{22}(\alpha))=1$;
* the **Jensen bound** $\lambda_\ell\le\mathbb E\|z z^\top-I\|_F^2=6$ for
  $z\sim N(0,I_2)$ (a SymPy Gaussian integral), hence $\alpha_\ell\ge1/6$ for *any* channel
  with two tokens; and $\alpha_2\to1/6$ as $c\to\infty$ (then $y$ reveals $z_2$ up to sign).

The expectations are computed by deterministic quadrature in :mod:`derive.models._bayes_smi`.
"""
from __future__ import annotations

from functools import cached_property
from typing import Any, Mapping

import numpy as np
import sympy as sp

from numerics.backend import Backend
from numerics.results import Status

from numerics.thresholds import crossing_with_error

from ..codegen import Program, Sigmoid
from ..declarations import Observable, Option, declare
from ..model import Equation, Model
from ..params import Parameter, positive
from ._bayes_smi import Grid, lambdas_at_zero, rqmc_moments, teacher_moments

__all__ = ["SequenceMultiIndex", "MODEL"]

SKIP = Parameter("skip", positive, "c", "skip-connection strength c of A = cI + softmax(z z^T)")
c = SKIP.symbol

alpha = sp.Symbol("alpha", positive=True)
lam1, lam2, lam12 = sp.symbols("lambda_1 lambda_2 lambda_12", real=True)
Q11, Q22, Q12 = sp.symbols("Q_11 Q_22 Q_12", real=True)  # overlaps in [0, 1)
a1, a2 = sp.symbols("alpha_1 alpha_2", positive=True)
za, zb, z2a, z2b = sp.symbols("z_1a z_1b z_2a z_2b", real=True)
ta, tb = sp.symbols("t_a t_b", real=True)
ha, hb = sp.symbols("h_a h_b", real=True)
w2a, w2b = sp.symbols("omega_2a omega_2b", real=True)
V1, V2 = sp.symbols("V_1 V_2", positive=True)


def softmax_diagonal(x: sp.Symbol, y: sp.Symbol) -> sp.Expr:
    r"""Diagonal entry of the two-token row softmax of $zz^\top$, $z=(x,y)$:
    $e^{x^2}/(e^{x^2}+e^{xy})=\mathrm{sig}(x(x-y))$."""
    return Sigmoid(x * (x - y))


def attention_matrix(s1: sp.Expr, s2: sp.Expr) -> sp.Matrix:
    r"""$A=cI+\mathrm{softmax}_{\rm row}(z_1z_1^\top)$ with diagonal softmax entries $s_1,s_2$."""
    return sp.Matrix([[c + s1, 1 - s1], [1 - s2, c + s2]])


def se_update(f1: sp.Expr, f2: sp.Expr) -> tuple[sp.Expr, sp.Expr]:
    r"""Gaussian-prior SE on diagonal $Q$: $Q_{\ell\ell}\leftarrow\alpha f_\ell/(1+\alpha f_\ell)$
    (spec §B1 with $\hat Q=\alpha\,{\rm diag}(f_1,f_2)$; $Q_{12}=0$ is invariant, $z_1\to-z_1$)."""
    Qn = se_map(sp.diag(Q11, Q22), sp.diag(f1, f2))
    return sp.simplify(Qn[0, 0]), sp.simplify(Qn[1, 1])

SYMBOL_NAMES = {lam1: r"\lambda_1", lam2: r"\lambda_2", a1: r"\alpha_1", a2: r"\alpha_2",
                lam12: r"\lambda_{12}"}


def se_map(Q: sp.Matrix, Fhat: sp.Matrix) -> sp.Matrix:
    """Gaussian-prior SE map $Q\\mapsto\\hat Q(I+\\hat Q)^{-1}$ with $\\hat Q=\\alpha\\,F(Q)$."""
    Qhat = alpha * Fhat
    return sp.simplify(Qhat * (sp.eye(Q.shape[0]) + Qhat).inv())


class SequenceMultiIndex(Model):
    """Layer-wise weak-recovery thresholds of two-layer tied softmax attention (L = 2)."""

    name = "sequence-multi-index"
    title = ("Sequence multi-index model: two-layer tied attention, Bayes-optimal thresholds "
             "(Troiani, Cui, Dandi, Krzakala, Zdeborová 2025)")
    paper = "arXiv:2502.00901 (ICML 2025)"
    parameters = (SKIP,)
    #: the model contract (derive/model.py): no 50-digit pipeline, and why
    mp_unavailable = ("thresholds come from state-evolution fixed points with quadrature over the "
                      "channel and a bisection; every generated kernel is checked against mpmath instead")
    symbol_names = SYMBOL_NAMES
    observables = ("alpha2", "alpha1", "alpha1_err", "alpha1_from_zero")
    option_info = declare(
        Option("staircase", False, "also compute alpha1 by the staircase (slow: minutes per point; "
               "alpha1 is NaN, not computed, otherwise)", kind="bool"),
    )
    #: thresholds are sample complexities: positive and finite
    observable_info = declare(
        Observable("alpha2", "weak-recovery threshold of layer 2 (from Q = 0)", r"\alpha_2", "1", 0.0),
        Observable("alpha1", "weak-recovery threshold of layer 1 on the layer-2 branch (staircase)",
                   r"\alpha_1", "1", 0.0, computed=lambda o: bool(o.get("staircase"))),
        Observable("alpha1_err", "error bar of alpha1 (replica spread and inner-rule refinement)",
                   r"\delta\alpha_1", "1", 0.0, computed=lambda o: bool(o.get("staircase"))),
        Observable("alpha1_from_zero", "layer-1 threshold from Q = 0", r"\alpha_1^{(0)}", "1", 0.0),
    )

    # ---- derivations -------------------------------------------------------------------
    @cached_property
    def operator_on_layers(self) -> sp.Matrix:
        r"""$\mathcal F(M)$ for block-diagonal $G$ (layers decoupled), derived with symbolic
        $L\times L$ blocks $G^{(1)},G^{(2)}$ (symmetric) and a symmetric $2\times2$ $M$."""
        L = 2
        G1 = sp.Matrix(L, L, lambda i, j: sp.Symbol(f"G1_{min(i, j)}{max(i, j)}"))
        G2 = sp.Matrix(L, L, lambda i, j: sp.Symbol(f"G2_{min(i, j)}{max(i, j)}"))
        M = sp.Matrix([[Q11, Q12], [Q12, Q22]])
        out = sp.zeros(2, 2)
        for a_ in range(L):
            for b_ in range(L):
                Gab = sp.diag(G1[a_, b_], G2[a_, b_])   # p x p block for tokens (a, b)
                Gba = sp.diag(G1[b_, a_], G2[b_, a_])
                out += Gab * M * Gba
        return out.applyfunc(sp.expand)

    def check_operator_is_entrywise(self) -> bool:
        r"""$\mathcal F(M)_{\ell\ell'}=M_{\ell\ell'}\operatorname{tr}(G^{(\ell)}G^{(\ell')})$ (per sample)."""
        L = 2
        G1 = sp.Matrix(L, L, lambda i, j: sp.Symbol(f"G1_{min(i, j)}{max(i, j)}"))
        G2 = sp.Matrix(L, L, lambda i, j: sp.Symbol(f"G2_{min(i, j)}{max(i, j)}"))
        F = self.operator_on_layers
        want = sp.Matrix([[Q11 * (G1 * G1).trace(), Q12 * (G1 * G2).trace()],
                          [Q12 * (G2 * G1).trace(), Q22 * (G2 * G2).trace()]])
        return all(sp.expand(e) == 0 for e in (F - want))

    @cached_property
    def jacobian_at_zero(self) -> sp.Matrix:
        """Jacobian of the diagonal SE map (Q11, Q22) at Q = 0 with F linearised as
        (λ1 Q11, λ2 Q22) (derived)."""
        Q = sp.diag(Q11, Q22)
        F = sp.diag(lam1 * Q11, lam2 * Q22)
        Qn = se_map(Q, F)
        J = sp.Matrix([[sp.diff(Qn[i, i], v) for v in (Q11, Q22)] for i in range(2)])
        return sp.simplify(J.subs({Q11: 0, Q22: 0}))

    @cached_property
    def jacobian_staircase(self) -> sp.Matrix:
        r"""Jacobian at $(0,q_{22})$ with $\hat Q_{11}=\alpha Q_{11}\Lambda_1(Q_{22})+O(Q_{11}^2)$
        $+O(Q_{11}^2)$ (it vanishes on $Q_{11}=0$ by the $z_1\to-z_1$ symmetry) and
        $\hat Q_{22}=\alpha f_2(Q_{11},Q_{22})$ (undetermined functions): triangular, eigenvalue $\alpha\Lambda_1(q_{22})$ along $Q_{11}$."""
        Lam1, R, f2 = sp.Function("Lambda_1"), sp.Function("R"), sp.Function("f_2")
        q = sp.Symbol("q_22", positive=True)
        Q = sp.diag(Q11, Q22)
        F = sp.diag(Q11 * Lam1(Q22) + Q11**2 * R(Q11, Q22), f2(Q11, Q22))
        Qn = se_map(Q, F)
        J = sp.Matrix([[sp.diff(Qn[i, i], v) for v in (Q11, Q22)] for i in range(2)])
        return sp.simplify(J.subs({Q11: 0}).subs(Q22, q))

    @cached_property
    def jensen_bound(self) -> sp.Expr:
        r"""$\mathbb E\|zz^\top-I\|_F^2$ for $z\sim N(0,I_2)$ by Gaussian integration (derived): 6."""
        u, v = sp.symbols("u v", real=True)
        w = sp.exp(-(u**2 + v**2) / 2) / (2 * sp.pi)
        norm2 = (u**2 - 1) ** 2 + 2 * (u * v) ** 2 + (v**2 - 1) ** 2
        return sp.simplify(sp.integrate(norm2 * w, (u, -sp.oo, sp.oo), (v, -sp.oo, sp.oo)))

    @cached_property
    def prior_free_entropy_stationarity(self) -> sp.Matrix:
        r"""$\partial_{\hat Q}\{-\frac12\operatorname{Tr}Q\hat Q+\frac12[\operatorname{Tr}\hat Q
        -\log\det(I+\hat Q)]\}=0$ solved for $Q$ (symmetric $2\times2$, derived): returns
        $Q-\hat Q(I+\hat Q)^{-1}$ at the stationary point, which simplifies to zero — the prior
        half of the SE is the stationarity condition of the stated free entropy (spec §B1)."""
        h11, h12, h22 = sp.symbols("hQ_11 hQ_12 hQ_22", positive=True)
        Qh = sp.Matrix([[h11, h12], [h12, h22]])
        Q = sp.Matrix([[Q11, Q12], [Q12, Q22]])
        phi = (-sp.Rational(1, 2) * (Q * Qh).trace()
               + sp.Rational(1, 2) * (Qh.trace() - sp.log((sp.eye(2) + Qh).det())))
        eqs = [sp.diff(phi, v) for v in (h11, h12, h22)]
        (sol,) = sp.solve(eqs, [Q11, Q12, Q22], dict=True)
        Qs = Q.subs(sol)
        return (Qs - Qh * (sp.eye(2) + Qh).inv()).applyfunc(sp.simplify)

    # ---- programs ----------------------------------------------------------------------
    def programs(self) -> dict[str, Program]:
        """Every formula the numerics use (the integrals themselves are in ``_bayes_smi``)."""
        s1, s2, det = sp.symbols("s_1 s_2 det_A", positive=True)
        inv = sp.symbols("i_11 i_12 i_21 i_22", real=True)
        logdet = sp.Symbol("log_det", real=True)
        A = attention_matrix(s1, s2)
        Ainv = A.adjugate() / det
        ua, ub = sp.symbols("u_a u_b", real=True)
        u = sp.Matrix(inv).reshape(2, 2) * sp.Matrix([ha, hb])
        lp, lm = sp.symbols("log_w_plus log_w_minus", real=True)
        prior = -(ta**2 + tb**2) / 2 - sp.log(2 * sp.pi) - logdet
        lik = lambda sg: (-((ua - sg * w2a) ** 2 + (ub - sg * w2b) ** 2) / (2 * V2)  # noqa: E731
                          - sp.log(2 * sp.pi * V2))
        Eta, Etb, Ettaa, Ettab, Ettbb, m2a, m2b = sp.symbols(
            "Et_a Et_b Ett_aa Ett_ab Ett_bb m2_a m2_b", real=True)
        f1, f2, L1 = sp.symbols("f_1 f_2 Lambda_1", real=True)
        al, stab = sp.symbols("alpha_q stability", positive=True)
        q11n, q22n, r11, r22 = sp.symbols("Q_11_next Q_22_next residual_11 residual_22", real=True)
        eta = sp.Symbol("eta", positive=True)
        upd = se_update(f1, f2)
        xi1, xi2 = sp.symbols("xi_1a xi_1b", real=True), sp.symbols("xi_2a xi_2b", real=True)
        u1, u2 = sp.symbols("u_1a u_1b", real=True), sp.symbols("u_2a u_2b", real=True)
        w1a, w1b = sp.symbols("omega_1a omega_1b", real=True)
        return {
            "thresholds": Program(
                "smi_thresholds", (lam1, lam2), ((a1, 1 / lam1), (a2, 1 / lam2)), (a1, a2),
                doc="α_ℓ = 1/λ_ℓ: the Jacobian αF at Q = 0 has spectral radius 1."),
            "teacher": Program(
                "smi_teacher", (*xi1, *xi2, *u1, *u2, Q11, Q22),
                ((V1, 1 - Q11), (V2, 1 - Q22),
                 (w1a, sp.sqrt(Q11) * xi1[0]), (w1b, sp.sqrt(Q11) * xi1[1]),
                 (w2a, sp.sqrt(Q22) * xi2[0]), (w2b, sp.sqrt(Q22) * xi2[1]),
                 (za, w1a + sp.sqrt(V1) * u1[0]), (zb, w1b + sp.sqrt(V1) * u1[1]),
                 (z2a, w2a + sp.sqrt(V2) * u2[0]), (z2b, w2b + sp.sqrt(V2) * u2[1])),
                (V1, V2, w1a, w1b, w2a, w2b, za, zb, z2a, z2b),
                doc="spec §B1 channel at Q = diag(Q11, Q22): ω = Q^{1/2}ξ, Z* = ω + (I − Q)^{1/2}U"),
            "prior_scale": Program(
                "smi_prior_scale", (ta, tb, w1a, w1b, V1),
                ((za, w1a + sp.sqrt(V1) * ta), (zb, w1b + sp.sqrt(V1) * tb)), (za, zb),
                doc="inner z1 nodes in the prior's scale: z1 = ω1 + √V1 t"),
            "label_index": Program(
                "smi_label_index", (za, zb, z2a, z2b, c),
                ((s1, softmax_diagonal(za, zb)), (s2, softmax_diagonal(zb, za)),
                 (ha, (A * sp.Matrix([z2a, z2b]))[0]), (hb, (A * sp.Matrix([z2a, z2b]))[1])),
                (ha, hb), doc="teacher: h = A(z1) z2, A = cI + softmax(z1 z1ᵀ)"),
            "attention_inverse": Program(
                "smi_attention_inverse", (za, zb, c),
                ((s1, softmax_diagonal(za, zb)), (s2, softmax_diagonal(zb, za)),
                 (det, sp.factor(A.det())), (logdet, sp.log(det)),
                 *((inv[k], Ainv[k]) for k in range(4))),
                (*inv, logdet),
                doc="entries of A(z1)⁻¹ and log det A; det A = (c+1)(c−1+s1+s2) > 0 (s1+s2 ≥ 1)"),
            "branch_logweights": Program(
                "smi_branch_logweights", (ta, tb, logdet, *inv, ha, hb, w2a, w2b, V2),
                ((ua, u[0]), (ub, u[1]), (lp, prior + lik(1)), (lm, prior + lik(-1))),
                (ua, ub, lp, lm),
                doc="log posterior weight of z1 = t (prior scale) on the branches z2 = ±A⁻¹h"),
            "channel_moments": Program(
                "smi_channel_moments", (Eta, Etb, Ettaa, Ettab, Ettbb, m2a, m2b, w2a, w2b, V1, V2),
                ((f1, (Eta**2 + Etb**2) / V1),
                 (f2, ((m2a - w2a) ** 2 + (m2b - w2b) ** 2) / V2**2),
                 (L1, (Ettaa - 1) ** 2 + 2 * Ettab**2 + (Ettbb - 1) ** 2)),
                (f1, f2, L1),
                doc="‖g_out,1‖², ‖g_out,2‖² (g = (E[z|y,ω] − ω)/V) and ‖E[z1z1ᵀ|y,ω] − I‖²_F"),
            "staircase": Program(
                "smi_staircase", (Q22, f2, L1),
                ((al, sp.solve(sp.Eq(Q22, alpha * f2 / (1 + alpha * f2)), alpha)[0]),
                 (stab, al * L1)),
                (al, stab),
                doc="on the layer-2 branch Q22 = αf2/(1+αf2): α(q22); layer-1 stability αΛ1"),
            "se_step": Program(
                "smi_se_step", (alpha, Q11, Q22, f1, f2, eta),
                ((r11, upd[0] - Q11), (r22, upd[1] - Q22),
                 (q11n, Q11 + eta * r11), (q22n, Q22 + eta * r22)),
                (q11n, q22n, r11, r22),
                doc="damped SE step Q ← Q + η(Q̂(I+Q̂)⁻¹ − Q), Q̂ = α diag(f1, f2); the residual "
                    "returned is the undamped one"),
        }

    @cached_property
    def _progs(self) -> dict[str, Program]:
        return self.programs()

    def kern(self) -> dict[str, Any]:
        """Generated array kernels by program name (for ``_bayes_smi``)."""
        return {k: self.kernel(k) for k in self._progs if k != "thresholds"}

    def equations(self) -> list[Equation]:
        J = self.jacobian_at_zero
        return [
            Equation("linearised operator (per sample, block-diagonal G)",
                     sp.Symbol(r"\mathcal{F}(M)"), self.operator_on_layers, "derived", "§B1",
                     "G^{(ℓ)} = E[z_ℓ z_ℓᵀ|y] − I; cross-layer blocks vanish (z₁ → −z₁)"),
            Equation("Jacobian of the SE at Q = 0", sp.Symbol("J_0"), J, "derived", "§B1"),
            Equation("Jacobian at (0, q₂₂)", sp.Symbol("J_{q}"), self.jacobian_staircase,
                     "derived", "§B1", "layer 1 learnable when α Λ₁(q₂₂(α)) > 1"),
            Equation("last-layer threshold", a2, 1 / lam2, "derived", "§B1",
                     "λ₂ = E‖E[z₂z₂ᵀ|y] − I‖²_F at Q = 0"),
            Equation("first-layer threshold from Q = 0", a1, 1 / lam1, "derived", "§B1"),
            Equation("det A(z₁)", sp.Symbol(r"\det A"), self.attention_determinant, "derived",
                     "§B1", "s₁ + s₂ ≥ 1 (since t₁ + t₂ = (z₁ₐ − z₁_b)² ≥ 0), so det A ≥ c(c+1) > 0"),
            Equation("layer-2 branch", sp.Symbol(r"\alpha(q_{22})"),
                     self._progs["staircase"].expression(sp.Symbol("alpha_q", positive=True)),
                     "derived", "§B1", "Q₁₁ = 0, Q₂₂ = αf₂/(1+αf₂)"),
            Equation("prior stationarity of the free entropy", sp.Symbol(r"Q-\hat Q(I+\hat Q)^{-1}"),
                     self.prior_free_entropy_stationarity, "derived", "§B1",
                     "∂Φ/∂Q̂ = 0 gives the prior half of the SE"),
            Equation("Jensen bound", sp.Symbol(r"\lambda_\ell"), self.jensen_bound, "derived",
                     "§B1", "λ_ℓ ≤ 6, hence α_ℓ ≥ 1/6, for any two-token channel"),
        ]

    @cached_property
    def attention_determinant(self) -> sp.Expr:
        """det A(z₁) in terms of the softmax diagonals s₁, s₂, factored (derived)."""
        s1, s2 = sp.symbols("s_1 s_2", positive=True)
        return sp.factor(attention_matrix(s1, s2).det())

    # ---- numerics: the pipeline only orders calls -------------------------------------
    def lambdas_at_zero(self, skip: float, quick: bool = False) -> dict[str, float]:
        """λ₁, λ₂ at Q = 0 and the normalisation check ∫p(h)dh (nested midpoint rules)."""
        zg = Grid(6.5, 71) if quick else Grid(7.0, 101)
        hg = Grid(5.5 * (1 + skip), 61) if quick else Grid(6.5 * (1 + skip), 101)
        return lambdas_at_zero(self.kern(), float(skip), z_grid=zg, h_grid=hg)

    def branch_point(self, skip: float, q22: float, *, n: int = 4096, replicas: int = 8,
                     seed: int = 0, z_grid: Grid = Grid(6.5, 81)) -> dict[str, np.ndarray]:
        """Replica values of α(q22), αΛ₁(q22), f₂, Λ₁ on the layer-2 branch (Q₁₁ = 0)."""
        m = rqmc_moments(self.kern(), float(skip), 0.0, float(q22), n=n, replicas=replicas,
                         seed=seed, z_grid=z_grid)
        st = self.kernel("staircase")(np, None, float(q22), m["f2"], m["lam1"])
        return {"alpha": st["alpha_q"], "stability1": st["stability"], "f2": m["f2"], "lam1": m["lam1"]}

    def se_step(self, skip: float, alpha_: float, Q: np.ndarray, X: np.ndarray, *,
                eta: float = 1.0, z_grid: Grid = Grid(6.5, 41)) -> tuple[np.ndarray, np.ndarray]:
        """One step of the full SE on ``Q = diag(Q11, Q22)`` with the fixed teacher points ``X``
        (deterministic): ``(Q_next, undamped residual)``; ``eta`` is the damping
        (``Q ← Q + η(F(Q) − Q)``; the authors use η = 0.8)."""
        q11, q22 = (float(v) for v in Q)
        m = teacher_moments(self.kern(), float(skip), max(q11, 0.0), q22, X, z_grid=z_grid)
        st = self.kernel("se_step")(np, None, float(alpha_), q11, q22, m["f1"].mean(),
                                    m["f2"].mean(), float(eta))
        return (np.array([st["Q_11_next"], st["Q_22_next"]]),
                np.array([st["residual_11"], st["residual_22"]]))

    def alpha1_staircase(self, skip: float, *, n: int = 8192, replicas: int = 8,
                         tol: float = 2e-4, quick: bool = False) -> dict[str, Any]:
        r"""α₁: the crossing αΛ₁ = 1 along the layer-2 branch, located in $x=-\log(1-q_{22})$ by
        :func:`numerics.thresholds.crossing_with_error` on replica values; the error bar combines
        the replica spread and the change under a refined inner rule (quadrature)."""
        if quick:
            n, replicas = 1024, 4
        x_of = lambda q: -np.log1p(-np.asarray(q, dtype=float))  # noqa: E731

        def at(x: float, z_grid: Grid = Grid(6.5, 81), nn: int = n, rr: int = replicas
               ) -> tuple[np.ndarray, np.ndarray]:
            p = self.branch_point(skip, -np.expm1(-x), n=nn, replicas=rr, z_grid=z_grid)
            return np.log(p["stability1"]), p["alpha"]

        # coarse bracket with a cheap rule, then the crossing with the full one
        pre = crossing_with_error(lambda x: at(x, Grid(6.5, 61), 512, 2),
                                  x_of([0.5, 0.8, 0.9, 0.95, 0.97, 0.98, 0.99, 0.995]), tol=0.05)
        if not np.isfinite(pre.root):
            return {"alpha1": float("nan"), "alpha1_err": float("nan"), "q22": float("nan"),
                    "status": int(Status.NO_BRACKET), "converged": False, "evaluations": pre.evaluations}
        scan = [pre.root - 0.15, pre.root + 0.15]
        res = crossing_with_error(at, scan, tol=tol, refine=lambda x: at(x, Grid(7.5, 111)))
        if not res.converged:   # the coarse bracket was off: widen once
            res = crossing_with_error(at, [pre.root - 0.6, pre.root, pre.root + 0.6], tol=tol,
                                      refine=lambda x: at(x, Grid(7.5, 111)))
        q = 1 - np.exp(-res.root) if np.isfinite(res.root) else float("nan")
        return {"alpha1": res.value, "alpha1_err": res.error, "q22": q,
                "status": int(Status.OK if res.converged else Status.NO_BRACKET),
                "converged": res.converged, "replica_error": res.replica_error,
                "quadrature_error": res.refine_error,
                "evaluations": pre.evaluations + res.evaluations, "trail": res.trail}

    def thresholds(self, skip: float = 1.0, *, staircase: bool = True,
                   quick: bool = False) -> dict[str, float]:
        """``{'alpha1', 'alpha1_err', 'alpha2', 'alpha1_from_zero', 'norm', 'converged'}`` at
        skip ``c``: α₂ from the stability of Q = 0; α₁ from the stability of Q₁₁ = 0 on the
        layer-2 branch (``staircase``; about a minute on one core) — ``alpha1_from_zero`` is the
        (much larger) threshold from Q = 0. ``converged`` is False (and α₁ NaN) without a
        bracketed crossing; without ``staircase`` the keys ``alpha1``/``alpha1_err`` are absent."""
        SKIP.validate(skip)
        lz = self.lambdas_at_zero(skip, quick)
        th = self.kernel("thresholds")(np, None, lz["lam1"], lz["lam2"])
        out = {"alpha2": float(th["alpha_2"]), "alpha1_from_zero": float(th["alpha_1"]),
               "norm": lz["norm"],
               "converged": bool(abs(lz["norm"] - 1) < 1e-6 and np.isfinite(th["alpha_2"]))}
        if staircase:
            st = self.alpha1_staircase(skip, quick=quick)
            out.update(alpha1=st["alpha1"], alpha1_err=st["alpha1_err"])
            out["converged"] = bool(out["converged"] and st["converged"]
                                    and np.isfinite(st["alpha1"]))
        return out

    def evaluate(self, params: Mapping[str, Any], backend: Backend, *,
                 staircase: bool = False) -> dict[str, Any]:
        """Thresholds per skip value (α₁ by the staircase only if asked: about a minute each).
        A point is converged only if every observable computed is finite and ∫p(h)dh = 1."""
        cs = backend.to_numpy(params["skip"]).astype(float)
        rows = [self.thresholds(float(cv), staircase=staircase, quick=not staircase) for cv in cs]
        out = {k: np.array([r.get(k, np.nan) for r in rows]) for k in self.observables}
        ok = np.array([r["converged"] for r in rows], dtype=bool)
        status = np.where(ok, int(Status.OK), int(Status.NONFINITE)).astype(np.int8)
        out.update(converged=ok, residual=np.array([abs(r["norm"] - 1) for r in rows]),
                   iterations=np.zeros(cs.size, dtype=np.int64), status=status)
        return {k: backend.asarray(v) for k, v in out.items()}


MODEL = SequenceMultiIndex
