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

from ..codegen import Program
from ..declarations import Observable, Option, declare
from ..model import Equation, Model
from ..params import Parameter, positive
from ._bayes_smi import Grid, channel_moments

__all__ = ["SequenceMultiIndex", "MODEL"]

SKIP = Parameter("skip", positive, "c", "skip-connection strength c of A = cI + softmax(z z^T)")
c = SKIP.symbol

alpha = sp.Symbol("alpha", positive=True)
lam1, lam2, lam12 = sp.symbols("lambda_1 lambda_2 lambda_12", real=True)
Q11, Q22, Q12 = sp.symbols("Q_11 Q_22 Q_12", real=True)
a1, a2 = sp.symbols("alpha_1 alpha_2", positive=True)

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
    symbol_names = SYMBOL_NAMES
    observables = ("alpha2", "alpha1", "alpha1_from_zero")
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
        return {
            "thresholds": Program(
                "smi_thresholds", (lam1, lam2), ((a1, 1 / lam1), (a2, 1 / lam2)), (a1, a2),
                doc="α_ℓ = 1/λ_ℓ: the Jacobian αF at Q = 0 has spectral radius 1."),
        }

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
            Equation("prior stationarity of the free entropy", sp.Symbol(r"Q-\hat Q(I+\hat Q)^{-1}"),
                     self.prior_free_entropy_stationarity, "derived", "§B1",
                     "∂Φ/∂Q̂ = 0 gives the prior half of the SE"),
            Equation("Jensen bound", sp.Symbol(r"\lambda_\ell"), self.jensen_bound, "derived",
                     "§B1", "λ_ℓ ≤ 6, hence α_ℓ ≥ 1/6, for any two-token channel"),
        ]

    # ---- numerics ----------------------------------------------------------------------
    @staticmethod
    def grids(skip: float, quick: bool = False) -> tuple[Grid, Grid]:
        """Quadrature boxes: z₁ on [−6.5, 6.5]², h on [−5.5(1+c), 5.5(1+c)]²."""
        if quick:
            return Grid(6.5, 71), Grid(5.5 * (1 + skip), 61)
        return Grid(7.0, 101), Grid(6.5 * (1 + skip), 101)

    def lambdas_at_zero(self, skip: float, quick: bool = False) -> dict[str, float]:
        """λ₁, λ₂ at Q = 0 and the normalisation check ∫p(h)dh."""
        zg, hg = self.grids(skip, quick)
        m = channel_moments(float(skip), 0.0, z_grid=zg, h_grid=hg)
        return {"lam1": m["lam1"], "lam2": m["lam2"], "norm": m["norm"]}

    def staircase_point(self, skip: float, q22: float, quick: bool = False,
                        n_omega: int = 6) -> dict[str, float]:
        """At overlap q₂₂ of the last layer (Q₁₁ = 0): the α of the layer-2 fixed point,
        α = q/((1−q) f₂(q)), and the layer-1 stability α Λ₁(q).

        The z₁ box spacing shrinks like √V (V = 1 − q₂₂), the width of the posterior peaks:
        ``n = max(91, 13/(0.45 √V))`` per side (capped at 201); ``quick`` uses 71."""
        V = 1.0 - q22
        nz = 71 if quick else int(min(201, max(91, np.ceil(13.0 / (0.45 * np.sqrt(V))))))
        zg, hg = Grid(6.5, nz), Grid(5.5 * (1 + skip), 61 if quick else 81)
        mo = channel_moments(float(skip), float(q22), z_grid=zg, h_grid=hg, n_omega=n_omega)
        a = q22 / ((1 - q22) * mo["f2"])
        return {"q22": q22, "alpha": a, "lam1": mo["lam1"], "stability1": a * mo["lam1"],
                "f2": mo["f2"], "norm": mo["norm"], "z_grid_n": nz}

    def alpha1_staircase(self, skip: float, *, lo: float = 0.5, hi: float = 0.99,
                         iters: int = 5, quick: bool = False) -> dict[str, Any]:
        """Bisection in q₂₂ for α Λ₁ = 1 along the layer-2 branch (α(q₂₂) increasing), then
        interpolation of log(α Λ₁) and α between the last bracket. Tens of minutes on one
        core (at c = 1 the crossing is near q₂₂ ≈ 0.97, where the boxes must be fine)."""
        plo, phi = self.staircase_point(skip, lo, quick), self.staircase_point(skip, hi, quick)
        trail = [plo, phi]
        if not (plo["stability1"] < 1 < phi["stability1"]):
            return {"alpha1": float("nan"), "status": int(Status.NO_BRACKET), "trail": trail}
        for _ in range(iters):
            mid = 0.5 * (lo + hi)
            pm = self.staircase_point(skip, mid, quick)
            trail.append(pm)
            if pm["stability1"] < 1:
                lo, plo = mid, pm
            else:
                hi, phi = mid, pm
        t = -np.log(plo["stability1"]) / (np.log(phi["stability1"]) - np.log(plo["stability1"]))
        a = plo["alpha"] + t * (phi["alpha"] - plo["alpha"])
        ok = all(abs(p["norm"] - 1) < 1e-4 for p in (plo, phi))
        return {"alpha1": float(a), "q22": lo + t * (hi - lo),
                "status": int(Status.OK if ok else Status.NONFINITE),
                "bracket": (plo["alpha"], phi["alpha"]), "trail": trail}

    def thresholds(self, skip: float = 1.0, *, staircase: bool = True,
                   quick: bool = False) -> dict[str, float]:
        """``{'alpha1': …, 'alpha2': …}`` at skip strength ``c``: α₂ from the stability of
        Q = 0; α₁ from the stability of Q₁₁ = 0 on the layer-2 branch (``staircase``; tens of minutes
        on one core) — ``alpha1_from_zero`` is the (much larger) threshold from Q = 0."""
        SKIP.validate(skip)
        lz = self.lambdas_at_zero(skip, quick)
        th = self.kernel("thresholds")(np, None, lz["lam1"], lz["lam2"])
        out = {"alpha2": float(th["alpha_2"]), "alpha1_from_zero": float(th["alpha_1"]),
               "norm": lz["norm"]}
        out["alpha1"] = (self.alpha1_staircase(skip, quick=quick)["alpha1"] if staircase
                         else float("nan"))
        return out

    def evaluate(self, params: Mapping[str, Any], backend: Backend, *,
                 staircase: bool = False) -> dict[str, Any]:
        """Thresholds per skip value (α₁ by the staircase only if asked: it is slow)."""
        cs = backend.to_numpy(params["skip"]).astype(float)
        rows = [self.thresholds(float(cv), staircase=staircase, quick=True) for cv in cs]
        out = {k: np.array([r[k] for r in rows]) for k in self.observables}
        ok = np.isfinite(out["alpha2"]) & np.array([abs(r["norm"] - 1) < 1e-6 for r in rows])
        status = np.where(ok, int(Status.OK), int(Status.NONFINITE)).astype(np.int8)
        if not staircase:
            status = np.where(ok, int(Status.OK), status)
        out.update(converged=ok, residual=np.array([abs(r["norm"] - 1) for r in rows]),
                   iterations=np.zeros(cs.size, dtype=np.int64), status=status)
        return {k: backend.asarray(v) for k, v in out.items()}


MODEL = SequenceMultiIndex
