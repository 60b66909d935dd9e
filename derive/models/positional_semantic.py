r"""Positional vs semantic learning in a solvable model of dot-product attention.

H. Cui, F. Behrens, F. Krzakala, L. Zdeborová, *A phase transition between positional and
semantic learning in a solvable model of dot-product attention*, arXiv:2402.03902
(NeurIPS 2024; JSTAT 2025). Spec: ``shared/specs/positional_semantic.md`` (§ numbers below).

Setting solved here (the paper's toy model, as in the authors' theory notebook): $L=2$
tokens, tied rank-$r=1$ query/key, token content covariance $\Sigma=\sigma^2 I$, opposite
positional encodings $\pm p$, teacher $T(X)=(1-\omega)\,\mathrm{softmax}(XQ_*Q_*^\top X^\top/d)
+\omega A$ with a fixed row-stochastic $A$, student $\mathrm{softmax}(XQQ^\top X^\top/d)X$,
ridge $\lambda$, $n=\alpha d$ samples, teacher self-overlap $\rho=\sigma^2$.

Stated (spec §2–5): the Gaussian channel $h_\ell=\sqrt q\,\xi_\ell\pm m$,
$t_\ell=V_*w_\ell+(\theta/\sqrt q)\xi_\ell$; the proximal objective $\mathcal M(x)$; the
free energy $\Phi$; the test MSE; the linear positional baseline.

Derived here by SymPy (and tested): the gradient and Hessian of $\mathcal M$ (batched Newton
prox); the overlap updates, from $\partial\Phi/\partial\hat\cdot=0$ (equal to the stated
ones); the conjugate updates, from $\partial\Phi/\partial\cdot=0$ with the envelope
theorem — equal to the stated (Gaussian-integration-by-parts) forms up to quadrature error.
"""
from __future__ import annotations

from functools import cached_property
from typing import Any, Mapping

import numpy as np
import sympy as sp

from numerics.backend import Backend
from numerics.progress import progress_bar
from numerics.quadrature import Rule, gauss_hermite
from numerics.results import Status
from numerics.saddle import ReplicaRule, SaddleDriver, SaddleProblem, SaddleResult, replica_rule

from ..codegen import Program, Sigmoid
from ..declarations import (Observable, Option, declare, init_option, progress_option,
                            stability_option)
from ..model import Equation, Model
from ..params import Domain, Parameter, nonnegative, positive, unit_interval
from ._positional_semantic_general import (GENERAL_BRANCHES, GeneralLR, branch_init, default_A, general_outputs,
                                          general_problem, symmetrized_rule)

__all__ = ["PositionalSemantic", "BRANCHES", "BRANCH_INIT"]

# ----------------------------------------------------------------------------- parameters
ALPHA = Parameter("alpha", positive, r"\alpha", "samples per dimension, n/d")
OMEGA = Parameter("omega", unit_interval, r"\omega", "weight of the positional matrix A in the teacher")
SIGMA = Parameter("sigma", positive, r"\sigma", "standard deviation of the token content")
LAM = Parameter("lam", nonnegative, r"\lambda", "ridge strength")
alpha, omega, sigma, lam = (p.symbol for p in (ALPHA, OMEGA, SIGMA, LAM))

# ----------------------------------------------------------------------------- symbols
q, V, Vstar, rho = sp.symbols("q V Vstar rho", positive=True)
m, theta = sp.symbols("m theta", real=True)
qh, mh, Vh, thh = sp.symbols("qhat mhat Vhat thetahat", real=True)
xi1, xi2, w1, w2 = sp.symbols("xi1 xi2 w1 w2", real=True)
x1, x2, h1, h2, t1, t2 = sp.symbols("x1 x2 h1 h2 t1 t2", real=True)
a11, a12, a21, a22 = sp.symbols("a11 a12 a21 a22", real=True)
T11, T12, T21, T22 = sp.symbols("T11 T12 T21 T22", real=True)
E_mh, E_qh, E_Vh, E_thh, E_M = sp.symbols("E_mhat E_qhat E_Vhat E_thetahat E_M", real=True)
Mval, g1, g2, H11, H12, H22 = sp.symbols("M g1 g2 H11 H12 H22", real=True)
i_mh, i_qh, i_Vh, i_thh, i_loss, i_M, i_mse = sp.symbols(
    "i_mhat i_qhat i_Vhat i_thetahat i_loss i_M i_mse", real=True)
d_q, d_m, d_V, d_th = sp.symbols("dM_dq dM_dm dM_dV dM_dtheta", real=True)
q_new, m_new, V_new, th_new, phi, mse, mse_lin = sp.symbols(
    "q_new m_new V_new theta_new phi mse mse_linear", real=True)
ET11, ET12, ET21, ET22, ETT = sp.symbols("ET11 ET12 ET21 ET22 ETT", real=True)
EMstar = sp.Function("E_Mstar")  # E_{xi,w} min_x M(x), a function of (q, m, V, theta)

SYMBOL_NAMES = {
    qh: r"\hat q", mh: r"\hat m", Vh: r"\hat V", thh: r"\hat\theta", Vstar: r"V_*",
    lam: r"\lambda", omega: r"\omega", xi1: r"\xi_1", xi2: r"\xi_2", w1: r"w_1", w2: r"w_2",
    T11: r"T_{11}", T12: r"T_{12}", T21: r"T_{21}", T22: r"T_{22}", E_M: r"\mathbb{E}\,\mathcal{M}^*",
    a11: r"A_{11}", a12: r"A_{12}", a21: r"A_{21}", a22: r"A_{22}", Mval: r"\mathcal{M}",
    mse_lin: r"\mathrm{mse}_{\rm lin}", phi: r"\Phi",
}

#: initial (q, m, V, theta) of each branch. Positional: the authors' notebook (spec §6).
#: Semantic: m = 0 exactly, so that each branch is the fixed point inside its invariant
#: subspace (θ = 0, resp. m = 0; exact under the symmetrized rule; the semantic branch's m is
#: moreover pinned at 0, so its ``stability`` is that within m = 0; the positional branch's
#: includes the transversal θ direction), and (q, V, θ) = (0.1, 15, 0.14) instead of the notebook's
#: (0.907, 14.575, 0.347), which lies far from every solution: both reach the same fixed points
#: (checked at α = 0.57, 1.02, 2), ours in 15–30 iterations instead of 170–340 without
#: Anderson, and without excursions out of the domain. Agnostic: m = θ = 0.
BRANCH_INIT = {
    "positional": (0.0206838209589, 0.2, 14.575, 0.0),
    "semantic": (0.1, 0.0, 15.0, 0.14),
    "agnostic": (0.05, 0.0, 14.575, 0.0),
}
BRANCHES = ("positional", "semantic", "agnostic")
DEFAULT_A = ((0.6, 0.4), (0.4, 0.6))


def softmax2(u1: sp.Expr, u2: sp.Expr) -> sp.Matrix:
    """Row-wise softmax of the 2×2 score matrix $u u^\\top$ (rank one, two tokens):
    $S_{\\ell k}=\\sigma(u_\\ell u_k-u_\\ell u_{k'})$ — each entry a sigmoid, never overflowing."""
    return sp.Matrix([[Sigmoid(u1 * u1 - u1 * u2), Sigmoid(u1 * u2 - u1 * u1)],
                      [Sigmoid(u2 * u1 - u2 * u2), Sigmoid(u2 * u2 - u2 * u1)]])


# ----------------------------------------------------------------------------- the model
class PositionalSemantic(Model):
    """Replica-symmetric global minimum of tied low-rank dot-product attention (Cui et al.)."""

    name = "positional-semantic"
    title = ("Positional vs semantic learning in dot-product attention "
             "(Cui, Behrens, Krzakala, Zdeborová 2024)")
    paper = "arXiv:2402.03902; NeurIPS 2024; JSTAT 2025"
    parameters = (ALPHA, OMEGA, SIGMA, LAM)
    #: the model contract (derive/model.py): no 50-digit pipeline, and why
    mp_unavailable = ("the saddle point averages a multi-start prox (a global minimisation) over "
                      "quadrature nodes; every generated kernel is checked against mpmath instead")
    symbol_names = SYMBOL_NAMES
    observables = ("q", "m", "v", "theta", "qhat", "mhat", "vhat", "thetahat", "mse", "phi",
                   "free_energy", "train_loss", "mse_linear", "branch", "stability",
                   "q_err", "m_err", "v_err", "theta_err", "mse_err", "phi_err", "quad_error",
                   "multiple_minima")
    kernel_input_ranges = {
        "q": (0.02, 1.0), "V": (1.0, 30.0), "Vstar": (0.1, 0.5), "rho": (0.25, 0.25),
        "sigma": (0.3, 1.0), "lam": (0.0, 0.1), "alpha": (0.1, 3.0), "omega": (0.0, 1.0),
        "theta": (-0.07, 0.07), "a11": (0.6, 0.6), "a12": (0.4, 0.4), "a21": (0.4, 0.4), "a22": (0.6, 0.6),
    }
    options = {
        "branch": "global",  # positional | semantic | agnostic | mixed (r >= 2) | global
        "A": DEFAULT_A,  # the teacher's positional matrix (row-stochastic 2x2)
        "L": 2,  # tokens (L = 2: the paper's toy model; L > 2: general construction)
        "r": 1,  # rank of the tied query/key (r = 2: general construction, matrix order parameters)
        "quadrature": "qmc",  # "qmc" (scrambled Sobol') or "gauss-hermite"
        "hats": "envelope",  # conjugate integrands: "envelope" (E ∂_p M, derived from Φ) or "stein" (§4 stated)
        "n_quad": 4096,  # QMC points (rounded up to 2^k or 3*2^k), or GH nodes per variable
        "seed": 0,  # scrambling seed of the first QMC replica (replica j: seed + j)
        "replicas": 4,  # independent scrambled replicas pooled; their spread gives the quadrature error
        "tol": 1e-10,  # undamped residual of the fixed point, all order parameters
        "maxiter": 400,
        "damping": 0.2,  # the undamped map has eigenvalues below -1 (it oscillates): the authors' 0.2
        "anderson": 5,
        "init": None,  # start: None (branch default), a state vector, or an (n_points, k) array
        "stability": False,  # compute the leading Jacobian eigenvalue of the undamped map
        "progress": False,
        "quad_rtol": 1e-3,  # refine the QMC rule until every relative error bar is below this (None: fixed n_quad)
        "n_quad_max": 2**18,  # largest rule the refinement may use (points per replica)
        "quad_tol": None,  # undamped residual of the solves when quad_rtol is set (None: 1e-4 quad_rtol)
        "threads": None,  # threads of the compiled loop (None: every core this process may use)
        "engine": "auto",  # per-node loop: "compiled" (Numba), "array" (NumPy), "auto" (compiled if it imports)
    }
    #: domains of the options (validated before the solver runs; :mod:`derive.declarations`)
    option_info = declare(
        Option("branch", "global", "fixed point followed (global: the larger Φ of the converged)",
               kind="choice", choices=BRANCHES + ("mixed", "global")),
        Option("A", DEFAULT_A, "the teacher's positional matrix (row-stochastic L×L)", cli=False),
        Option("L", 2, "tokens", kind="int", domain=Domain(2, 8, True, True, integer=True)),
        Option("r", 1, "rank of the tied query/key", kind="int", domain=Domain(1, 2, True, True, integer=True)),
        Option("quadrature", "qmc", "Gaussian expectations: scrambled Sobol' or Gauss–Hermite",
               kind="choice", choices=("qmc", "gauss-hermite")),
        Option("hats", "envelope", "integrands of the conjugates: 'envelope' (the default) or 'stein' (§4 as stated); 'envelope' is "
               "(E[∂_p M] at the prox: the stationarity of Φ in (q, m, V, θ), no Gaussian-integration-by-parts "
               "weight w on θ̂); equal up to quadrature error (per node for q̂, m̂ and, given θ̂, "
               "V̂: only θ̂ differs); (L, r) = (2, 1) only (the general construction integrates the §4 forms). Measured (benchmarks/RESULTS_positional_semantic.md): on the semantic "
               "branch the envelope form has half the replica error at 32768 × 4 and, at 4096 × 4, an "
               "error bar that covers the distance to the 32768 × 4 reference (the Stein form's does not), and near "
               "the pitchfork (α = 0.75, ω = 0.3) the Stein θ is biased (0.058 ± 0.003 vs 0.0401 ± 0.0005); "
               "at quad_rtol = 1e-3 the Stein form needs a 4x larger rule on the semantic branch",
               kind="choice", choices=("envelope", "stein")),
        Option("n_quad", 4096, "QMC points per replica (>= 64, rounded up to 2^k or 3·2^k) or "
               "Gauss–Hermite nodes per variable (>= 2: 4 is the authors' degree-7 cubature; at most "
               "2^22 nodes in all)",
               kind="int", domain=Domain(2, 2**24, True, True, integer=True)),
        Option("seed", 0, "scrambling seed of the first QMC replica (replica j: seed + j)", kind="int",
               domain=Domain(0, 2**63 - 1, True, True, integer=True)),
        Option("replicas", 4, "independent scrambled QMC replicas of n_quad points each, pooled; the "
               "quadrature error of the fixed point is their spread (linear response), 1: no estimate",
               kind="int", domain=Domain(1, 64, True, True, integer=True)),
        Option("tol", 1e-10, "undamped residual of the fixed point (looser tolerances stop "
               "far from it)", kind="float", domain=Domain(1e-15, 1e-6, True, True)),
        Option("maxiter", 400, "iteration budget per point", kind="int",
               domain=Domain(1, 100_000, True, True, integer=True)),
        Option("damping", 0.2, "step of the damped map", kind="float", domain=Domain(0.0, 1.0, False, True)),
        Option("anderson", 5, "Anderson memory (0: plain damped iteration)", kind="int",
               domain=Domain(0, 50, True, True, integer=True)),
        init_option(("q", "m", "v", "theta")),
        stability_option(),
        progress_option(),
        Option("quad_rtol", 1e-3, "target of the quadrature error: the converged points whose largest "
               "relative error bar (output quad_error: q, m, V, θ, mse, Φ) is above it are solved again on "
               "QMC rules of more points (n_quad is the first rule), each replica started at its fixed point "
               "on the previous rule (every rule solved to the undamped residual quad_tol); None: the "
               "fixed rule n_quad, solved to tol. (L, r) = (2, 1), quadrature 'qmc', replicas >= 2 only",
               kind="float", domain=Domain(1e-6, 1.0, True, True), allow_none=True),
        Option("quad_tol", None, "undamped residual of the fixed points when quad_rtol is set; None: "
               "max(tol, 1e-4 quad_rtol), four orders below the quadrature target and far below what a "
               "rule's map resolves (where one node switches wells the map steps by 1e-4 to 1e-3 relative "
               "on 65536 points, and each smooth piece can have its own fixed point); 1e-10 costs 2-3 more "
               "evaluations of the largest rule", kind="float", domain=Domain(1e-15, 1e-3, True, True), allow_none=True),
        Option("n_quad_max", 2**18, "largest QMC rule (points per replica) of the quad_rtol refinement; points "
               "still above quad_rtol there are reported with a warning",
               kind="int", domain=Domain(64, 2**22, True, True, integer=True)),
        Option("threads", None, "threads of the compiled per-node loop (rows of grid points and replicas are "
               "split over them); None: every core this process may use", kind="int",
               domain=Domain(1, 1024, True, True, integer=True), allow_none=True),
        Option("engine", "auto", "the per-node loop (channel, prox, integrands) of the (2, 1) model: "
               "'compiled' (generated kernels compiled by Numba, cached on disk; one map evaluation about 6x faster per core), "
               "'array' (the same kernels on NumPy arrays), 'auto' (compiled where Numba imports and the "
               "backend is NumPy); the same map to round-off",
               kind="choice", choices=("auto", "compiled", "array")),
    )
    #: physical ranges: self-overlap, variance, errors and losses are non-negative; ``branch``
    #: is an index into (positional, semantic, agnostic, mixed)
    observable_info = declare(
        Observable("q", "self-overlap of the trained query/key", "q", "1", 0.0),
        Observable("m", "positional overlap (with the positional encodings)", "m", "1"),
        Observable("v", "variance order parameter V", "V", "1", 0.0),
        Observable("theta", "semantic overlap with the teacher direction", r"\theta", "1"),
        Observable("qhat", "conjugate of q", r"\hat q", "1"),
        Observable("mhat", "conjugate of m", r"\hat m", "1"),
        Observable("vhat", "conjugate of V", r"\hat V", "1"),
        Observable("thetahat", "conjugate of theta", r"\hat\theta", "1"),
        Observable("mse", "test mean squared error", r"\mathrm{mse}", "1", 0.0),
        Observable("phi", "replica free entropy", r"\Phi", "1"),
        Observable("free_energy", "free energy, -Phi", "f", "1"),
        Observable("train_loss", "training loss", r"\epsilon_t", "1", 0.0),
        Observable("mse_linear", "test error of the linear (dense) baseline", r"\mathrm{mse}_{\rm lin}", "1", 0.0),
        Observable("branch", "fixed point: 0 positional, 1 semantic, 2 agnostic, 3 mixed", r"\mathrm{branch}",
                   "1", 0.0, 3.0),
        Observable("q_err", "quadrature error of q (replica spread, linear response)", r"\delta q", "1", 0.0,
                   optional=True),
        Observable("m_err", "quadrature error of m", r"\delta m", "1", 0.0, optional=True),
        Observable("v_err", "quadrature error of V", r"\delta V", "1", 0.0, optional=True),
        Observable("theta_err", "quadrature error of theta", r"\delta\theta", "1", 0.0, optional=True),
        Observable("mse_err", "quadrature error of mse", r"\delta\,\mathrm{mse}", "1", 0.0, optional=True),
        Observable("phi_err", "quadrature error of Phi", r"\delta\Phi", "1", 0.0, optional=True),
        Observable("quad_error", "max relative quadrature error over q, m, V, theta, mse, Phi", r"\delta_{\rm quad}", "1", 0.0,
                   optional=True),
        Observable("n_nodes", "QMC points per replica of the rule the point was solved on (quad_rtol refinement)",
                   r"N_{\rm quad}", "1", 0.0, optional=True),
        Observable("multiple_minima", "quadrature nodes whose prox has several local minima", r"n_{\rm multi}", "1", 0.0),
        Observable("stability", "leading eigenvalue of the Jacobian of the undamped map (real part)",
                   r"\lambda_{\max}", "1", optional=True, computed=lambda o: bool(o.get("stability"))),
    )

    # ---- stated objects (spec §2–5) -----------------------------------------------------
    rho_value = sigma**2  # teacher self-overlap Q*ᵀ Σ Q*/d with ‖Q*‖²/d = 1
    A = sp.Matrix([[a11, a12], [a21, a22]])

    @cached_property
    def channel(self) -> dict[sp.Symbol, sp.Expr]:
        """§2: student and teacher pre-activations at the Gaussian point (ξ, w)."""
        Vs = sp.sqrt(rho - theta**2 / q)
        tt1 = Vstar * w1 + theta / sp.sqrt(q) * xi1
        tt2 = Vstar * w2 + theta / sp.sqrt(q) * xi2
        T = (1 - omega) * softmax2(tt1, tt2) + omega * self.A
        return {Vstar: Vs, h1: sp.sqrt(q) * xi1 + m, h2: sp.sqrt(q) * xi2 - m,
                T11: T[0, 0], T12: T[0, 1], T21: T[1, 0], T22: T[1, 1]}

    @property
    def T_matrix(self) -> sp.Matrix:
        return sp.Matrix([[T11, T12], [T21, T22]])

    def loss(self, u1: sp.Expr, u2: sp.Expr) -> sp.Expr:
        r"""Per-sample loss per dimension, $\mathrm{tr}[(S-T)\Sigma(S-T)^\top]$ with
        $\Sigma=\sigma^2I$: $\sigma^2\sum_{\ell k}(S_{\ell k}(u)-T_{\ell k})^2$ (§3, §5)."""
        D = softmax2(u1, u2) - self.T_matrix
        return sigma**2 * sum(D[i, j] ** 2 for i in range(2) for j in range(2))

    @cached_property
    def moreau(self) -> sp.Expr:
        r"""§3 (``full``): $\mathcal M(x)=\sum_\ell(x_\ell-h_\ell)^2/V+\sigma^2\|S(x)-T\|_F^2$."""
        return (x1 - h1) ** 2 / V + (x2 - h2) ** 2 / V + self.loss(x1, x2)

    @cached_property
    def prox_symmetries(self) -> tuple[dict[sp.Symbol, sp.Symbol], ...]:
        r"""Symmetries of the proximal objective $\mathcal M(x; h, V, \sigma, T)$ (§3), as
        simultaneous substitutions of its variables: the identity — the image of a node under the
        teacher flip $w\to-w$ has the same $(h, T)$ where $\theta=0$ ($T$ is even in $t$) — and
        the token exchange $x_1\leftrightarrow x_2$, $h_1\leftrightarrow h_2$,
        $T_{11}\leftrightarrow T_{22}$, $T_{12}\leftrightarrow T_{21}$ (the loss is a sum over
        both tokens; the image of a node under $(\xi_1,w_1)\leftrightarrow(\xi_2,w_2)$ has the
        exchanged $(h, T)$ where $m=0$ and $A$ is exchange-symmetric). ``moreau`` is invariant
        under each (tested). The compiled loop takes a node's minimiser from its image's where the
        channels match (:data:`numerics.compiled.LOOP_SOURCE`, *orbits*)."""
        swap = {x1: x2, x2: x1, h1: h2, h2: h1, T11: T22, T22: T11, T12: T21, T21: T12}
        return ({}, swap)

    @cached_property
    def prior_terms(self) -> sp.Expr:
        """§5: the order-parameter part of Φ (Gaussian prior with ridge λ)."""
        return (sp.Rational(1, 2) * (Vh * q - qh * V) - m * mh - theta * thh
                + sp.Rational(1, 2) * (qh * sigma**2 + mh**2 + thh**2 * rho * sigma**2)
                / (lam + Vh * sigma**2))

    @cached_property
    def free_energy_expr(self) -> sp.Expr:
        r"""§5: $\Phi=\ldots-\frac{\alpha}{2}\mathbb E\,\mathcal M^*$ (the authors' sign: Φ is minus
        the minimal regularised training risk per sample and dimension, so the global minimum
        of the loss is the branch with the **larger** Φ)."""
        return self.prior_terms - alpha / 2 * EMstar(q, m, V, theta)

    @cached_property
    def stated_overlaps(self) -> dict[sp.Symbol, sp.Expr]:
        """§4, overlap updates as the spec states them."""
        den = lam + Vh * sigma**2
        return {V: sigma**2 / den, q: sigma**2 * (qh * sigma**2 + mh**2 + thh**2 * sigma**2 * rho) / den**2,
                m: mh / den, theta: sigma**2 * thh * rho / den}

    @cached_property
    def stated_hat_integrands(self) -> dict[sp.Symbol, sp.Expr]:
        """§4: integrands of the conjugate updates (hat = α E[·], V̂ += θθ̂/q)."""
        r1, r2 = x1 - h1, x2 - h2
        return {i_mh: (r1 - r2) / V, i_qh: (r1**2 + r2**2) / V**2,
                i_thh: (r1 * w1 + r2 * w2) / (V * Vstar),
                i_Vh: -(r1 * xi1 + r2 * xi2) / (V * sp.sqrt(q))}

    # ---- derivations --------------------------------------------------------------------
    @cached_property
    def derived_overlaps(self) -> dict[sp.Symbol, sp.Expr]:
        r"""$\partial\Phi/\partial(\hat q,\hat m,\hat V,\hat\theta)=0$ solved for $(V,m,\theta,q)$."""
        Phi = self.free_energy_expr
        eqs = [sp.diff(Phi, v) for v in (qh, mh, thh, Vh)]
        sol = sp.solve(eqs, [V, m, theta, q], dict=True)
        assert len(sol) == 1, sol
        return {k: sp.simplify(v) for k, v in sol[0].items()}

    def check_overlaps(self) -> dict[str, bool]:
        """Derived overlap updates = stated ones (symbolically)."""
        d, s = self.derived_overlaps, self.stated_overlaps
        return {str(k): sp.simplify(d[k] - s[k]) == 0 for k in s}

    @cached_property
    def derived_hats(self) -> dict[sp.Symbol, sp.Expr]:
        r"""$\partial\Phi/\partial(q,m,V,\theta)=0$ solved for the conjugates, in terms of
        $\partial_p\,\mathbb E\mathcal M^*$ (envelope theorem: $=\mathbb E\,\partial_p\mathcal M$ at $x^*$)."""
        Phi = self.free_energy_expr
        eqs = [sp.diff(Phi, v) for v in (q, m, V, theta)]
        sol = sp.solve(eqs, [Vh, mh, qh, thh], dict=True)
        assert len(sol) == 1, sol
        return sol[0]

    @cached_property
    def envelope_integrands(self) -> dict[sp.Symbol, sp.Expr]:
        r"""$\partial_p\mathcal M(x;\,h(q,m),T(t(q,\theta)),V)$ at fixed $x$, for $p=q,m,V,\theta$
        (the integrands of :attr:`derived_hats`)."""
        ch = self.channel
        Vs = ch[Vstar]
        Msub = self.moreau.subs({T11: ch[T11], T12: ch[T12], T21: ch[T21], T22: ch[T22]})
        Msub = Msub.subs({h1: ch[h1], h2: ch[h2]}).subs(Vstar, Vs)
        return {d_q: sp.diff(Msub, q), d_m: sp.diff(Msub, m), d_V: sp.diff(Msub, V),
                d_th: sp.diff(Msub, theta)}

    def derived_hats_from_envelope(self) -> dict[sp.Symbol, sp.Expr]:
        """The derived conjugates with ∂_p E M* replaced by the symbols E[∂_p M]."""
        rep = {sp.Derivative(EMstar(q, m, V, theta), v): s
               for v, s in ((q, d_q), (m, d_m), (V, d_V), (theta, d_th))}
        return {k: v.subs(rep) for k, v in self.derived_hats.items()}

    # ---- rendering ----------------------------------------------------------------------
    def equations(self) -> list[Equation]:
        ch = self.channel
        M_ = sp.Symbol(r"\mathcal{M}(x)")
        eqs = [
            Equation("teacher self-overlap", rho, self.rho_value, "paper", "§1",
                     note="Σ = σ²I and ‖Q*‖²/d = 1"),
            Equation("student channel, token 1", h1, ch[h1], "paper", "§2"),
            Equation("student channel, token 2", h2, ch[h2], "paper", "§2"),
            Equation("teacher channel width", Vstar, ch[Vstar], "paper", "§2",
                     note="t_ℓ = V_* w_ℓ + (θ/√q) ξ_ℓ, ξ, w ~ N(0, I₂)"),
            Equation("teacher attention", self.T_matrix, sp.Matrix([[ch[T11], ch[T12]], [ch[T21], ch[T22]]]),
                     "paper", "§1"),
            Equation("proximal objective", M_, self.moreau, "paper", "§3",
                     note="sig(u) = 1/(1+e^{-u}): a two-token softmax row; minimised per (ξ, w) by batched Newton"),
            Equation("free energy", phi, self.free_energy_expr, "paper", "§5",
                     note="E_M* = E min_x M; Φ = −(min regularised risk): the larger Φ is the global minimum"),
        ]
        for k, v in self.stated_overlaps.items():
            eqs.append(Equation(f"overlap update {k}", k, v, "derived", "§4",
                                note="∂Φ/∂(hat) = 0, solved by SymPy; equal to the spec's form"))
        names = {i_mh: mh, i_qh: qh, i_thh: thh, i_Vh: Vh}
        for k, v in self.stated_hat_integrands.items():
            rhs = alpha * sp.Symbol(r"\mathbb{E}") * v
            if k == i_Vh:
                rhs = rhs + theta * thh / q
            eqs.append(Equation(f"conjugate update {names[k]}", names[k], rhs, "paper", "§4",
                                note="x = prox at (ξ, w); equal to the envelope-theorem form "
                                     "derived from Φ up to quadrature error"))
        eqs.append(Equation("test error", mse, sp.Symbol(r"\mathbb{E}") * self.loss(h1, h2),
                            "paper", "§5", note="S evaluated at the channel h, no prox"))
        eqs.append(Equation("training loss", sp.Symbol("e_train"), sp.Symbol(r"\mathbb{E}") * self.loss(x1, x2),
                            "derived", "§5", note="the loss part of M at the prox"))
        eqs.append(Equation("linear positional baseline", mse_lin,
                            sigma**2 * (ETT - (ET11**2 + ET12**2 + ET21**2 + ET22**2)),
                            "paper", "§5", note="Ŵ = E T (t ~ N(0, ρ I₂)); ETT = E Σ T²"))
        return eqs

    # ---- programs -------------------------------------------------------------------------
    def prox_fgh_chain(self) -> tuple[tuple[sp.Symbol, sp.Expr], ...]:
        r"""$\mathcal M$, gradient and Hessian by the chain rule through the two softmax scores
        $a=x_1^2-x_1x_2$, $b=x_2^2-x_1x_2$: the softmax is $S=\begin{pmatrix}\sigma(a)&\sigma(-a)\\
        \sigma(-b)&\sigma(b)\end{pmatrix}$, so $\mathcal M=\|x-h\|^2/V+\ell(s_a,s_b)$ with
        $s=\sigma(\cdot)$, $s'=s(1-s)$, $s''=s'(1-2s)$, and every derivative of $\ell$, $a$, $b$ taken
        by SymPy. Two ``expit`` per node; equal to ``sp.diff`` of :attr:`moreau` (tested)."""
        sa, sb, da, db = sp.symbols("s_a s_b ds_a ds_b", real=True)
        La, Lb, Laa, Lab, Lbb = sp.symbols("l_a l_b l_aa l_ab l_bb", real=True)
        a_, b_ = x1 * x1 - x1 * x2, x2 * x2 - x1 * x2
        two = {Sigmoid(a_): sa, Sigmoid(-a_): 1 - sa, Sigmoid(b_): sb, Sigmoid(-b_): 1 - sb}
        ell = self.loss(x1, x2).xreplace(two)
        assert not ell.has(Sigmoid) and not ell.has(x1) and not ell.has(x2)
        xs, hs = (x1, x2), (h1, h2)
        assign: list[tuple[sp.Symbol, sp.Expr]] = [
            (sa, Sigmoid(a_)), (sb, Sigmoid(b_)), (da, sa * (1 - sa)), (db, sb * (1 - sb)),
            (La, sp.diff(ell, sa)), (Lb, sp.diff(ell, sb)), (Laa, sp.diff(ell, sa, 2)),
            (Lab, sp.diff(ell, sa, sb)), (Lbb, sp.diff(ell, sb, 2)),
            (Mval, sum((xv - hv) ** 2 for xv, hv in zip(xs, hs)) / V + ell)]
        # first and second derivatives of ℓ(σ(a(x)), σ(b(x))) in x
        ga, gb = [sp.diff(a_, v) for v in xs], [sp.diff(b_, v) for v in xs]
        for i, gs in enumerate((g1, g2)):
            assign.append((gs, La * da * ga[i] + Lb * db * gb[i] + 2 * (xs[i] - hs[i]) / V))
        for (i, j), Hs in zip(((0, 0), (0, 1), (1, 1)), (H11, H12, H22)):
            e = ((Laa * da**2 + La * da * (1 - 2 * sa)) * ga[i] * ga[j] + La * da * sp.diff(a_, xs[i], xs[j])
                 + (Lbb * db**2 + Lb * db * (1 - 2 * sb)) * gb[i] * gb[j] + Lb * db * sp.diff(b_, xs[i], xs[j])
                 + Lab * da * db * (ga[i] * gb[j] + ga[j] * gb[i]) + (2 / V if i == j else 0))
            assign.append((Hs, e))
        return tuple(assign)

    def programs(self) -> dict[str, Program]:
        ch = self.channel
        ch_assign = tuple((k, ch[k]) for k in (Vstar, h1, h2, T11, T12, T21, T22))
        Mx = self.moreau
        grad = [sp.diff(Mx, v) for v in (x1, x2)]
        hess = [sp.diff(grad[0], x1), sp.diff(grad[0], x2), sp.diff(grad[1], x2)]
        fgh_assign = self.prox_fgh_chain()
        T_in = (T11, T12, T21, T22)
        hats = self.stated_hat_integrands
        ov = self.stated_overlaps
        env = self.envelope_integrands
        progs = {
            "channel": Program(
                "channel", (xi1, xi2, w1, w2, q, m, theta, rho, omega, a11, a12, a21, a22),
                ch_assign, (Vstar, h1, h2) + T_in, "§2: pre-activations and teacher attention at (ξ, w)"),
            "prox_fgh": Program(
                "prox_fgh", (x1, x2, h1, h2, V, sigma) + T_in,
                fgh_assign,
                (Mval, g1, g2, H11, H12, H22), "§3: M, gradient and Hessian (SymPy) for the Newton prox"),
            "hat_integrands": Program(
                "hat_integrands", (x1, x2, h1, h2, xi1, xi2, w1, w2, q, V, Vstar, sigma) + T_in,
                tuple(hats.items()) + ((i_loss, self.loss(x1, x2)), (i_M, Mx)),
                (i_mh, i_qh, i_thh, i_Vh, i_loss, i_M), "§4: integrands of the conjugate updates at the prox"),
            "update": Program(
                "update", (alpha, E_mh, E_qh, E_thh, E_Vh, q, theta, sigma, rho, lam),
                ((mh, alpha * E_mh), (qh, alpha * E_qh), (thh, alpha * E_thh),
                 (Vh, alpha * E_Vh + theta * thh / q),
                 (q_new, ov[q]), (m_new, ov[m]), (V_new, ov[V]), (th_new, ov[theta])),
                (qh, mh, Vh, thh, q_new, m_new, V_new, th_new), "§4: conjugates, then overlaps"),
            "free_energy": Program(
                "free_energy", (q, m, V, theta, qh, mh, Vh, thh, sigma, rho, lam, alpha, E_M),
                ((phi, self.prior_terms - alpha / 2 * E_M),), (phi,), "§5: Φ at the fixed point"),
            "mse_integrand": Program(
                "mse_integrand", (h1, h2, sigma) + T_in, ((i_mse, self.loss(h1, h2)),), (i_mse,),
                "§5: test-error integrand (student attention at the channel h)"),
            "baseline": Program(
                "baseline", (ET11, ET12, ET21, ET22, ETT, sigma),
                ((mse_lin, sigma**2 * (ETT - (ET11**2 + ET12**2 + ET21**2 + ET22**2))),), (mse_lin,),
                "§5: MSE of the best dense linear positional map Ŵ = E T"),
            "update_envelope": Program(
                "update_envelope", (alpha, d_q, d_m, d_V, d_th, q, theta, sigma, rho, lam),
                tuple(self.derived_hats_from_envelope().items()) + (
                    (q_new, ov[q]), (m_new, ov[m]), (V_new, ov[V]), (th_new, ov[theta])),
                (qh, mh, Vh, thh, q_new, m_new, V_new, th_new),
                "conjugates from ∂Φ/∂(q, m, V, θ) = 0 with E[∂_p M] at the prox (envelope theorem), "
                "then overlaps"),
            "envelope_node_integrands": Program(
                "envelope_node_integrands", (x1, x2, h1, h2, xi1, xi2, w1, w2, q, m, V, theta, rho, sigma, omega,
                                             a11, a12, a21, a22) + T_in,
                ((i_loss, self.loss(x1, x2)), (i_M, Mx), (i_mse, self.loss(h1, h2))) + tuple(env.items()),
                (i_loss, i_M, i_mse, d_q, d_m, d_V, d_th),
                "what the envelope update integrates at a node, as one program (common subexpressions "
                "shared): loss and M at the prox, the test-error integrand, ∂_p M (the compiled loop)"),
            "envelope_integrands": Program(
                "envelope_integrands", (x1, x2, xi1, xi2, w1, w2, q, m, V, theta, rho, sigma, omega,
                                        a11, a12, a21, a22),
                tuple(env.items()), (d_q, d_m, d_V, d_th),
                "∂_p M at fixed x (envelope theorem): integrands of the conjugates derived from Φ"),
        }
        return progs

    # ---- options ------------------------------------------------------------------------------
    def validate_options(self, options: Mapping[str, Any]) -> dict[str, Any]:
        o = super().validate_options(options)
        if o["branch"] not in BRANCHES + ("mixed", "global"):
            raise ValueError(f"option 'branch' must be one of {BRANCHES + ('mixed', 'global')}, "
                             f"got {o['branch']!r}")
        L, r = o["L"], o["r"]
        if not (isinstance(L, (int, np.integer)) and L >= 2):
            raise ValueError(f"option 'L' (number of tokens) must be an integer >= 2, got {L!r}")
        if not (isinstance(r, (int, np.integer)) and r >= 1):
            raise ValueError(f"option 'r' (rank of the query/key) must be an integer >= 1, got {r!r}")
        if r > 2:
            raise NotImplementedError(
                f"the saddle point is solved for rank r <= 2 (the gauge fixing of the rotation "
                f"symmetry Q -> QO is implemented for r <= 2); got r = {r}. The SymPy model "
                f"(derive.models._positional_semantic_general.GeneralLR) is built for any r.")
        if o["branch"] == "mixed" and r < 2:
            raise ValueError("option 'branch' = 'mixed' (theta along e1, m along e2) needs r >= 2")
        use_default = L != 2 and isinstance(o["A"], tuple) and o["A"] == DEFAULT_A
        A = np.asarray(default_A(L) if use_default else o["A"], dtype=float)
        if A.shape != (L, L) or np.any(A < 0) or not np.allclose(A.sum(axis=1), 1.0):
            raise ValueError(f"option 'A' must be a row-stochastic {L}x{L} matrix, got {o['A']!r}")
        o["A"] = tuple(map(tuple, A.tolist()))
        if o["init"] is not None:
            init = np.asarray(o["init"], dtype=float)
            k = len(self.state_names(L, r))
            if init.ndim not in (1, 2) or init.shape[-1] != k:
                raise ValueError(f"option 'init' must be a length-{k} sequence or an (n_points, {k}) array "
                                 f"(state {self.state_names(L, r)}), got shape {init.shape}")
            o["init"] = init
        if o["quadrature"] not in ("qmc", "gauss-hermite"):
            raise ValueError(f"option 'quadrature' must be 'qmc' or 'gauss-hermite', got {o['quadrature']!r}")
        if int(o["n_quad"]) < 2:
            raise ValueError(f"option 'n_quad' must be an integer >= 2, got {o['n_quad']!r}")
        if o["quadrature"] == "qmc" and int(o["n_quad"]) < 64:
            raise ValueError(f"option 'n_quad' = {o['n_quad']!r} is too few QMC points: use >= 64")
        if o["quadrature"] == "gauss-hermite" and float(o["n_quad"]) ** (L * (r + 1)) > 2**22:
            raise ValueError(f"option 'n_quad' = {o['n_quad']!r} Gauss–Hermite nodes per variable in "
                             f"{L * (r + 1)} variables is more than 2^22 nodes: use n_quad <= "
                             f"{int(2 ** (22 / (L * (r + 1))))} or quadrature='qmc'")
        if o["init"] is not None and (L, r) == (2, 1):
            rows = np.atleast_2d(o["init"])
            fin = np.all(np.isfinite(rows), axis=1)
            if np.any(fin & ~((rows[:, 0] > 0) & (rows[:, 2] > 0))):
                raise ValueError(f"option 'init': q and v must be positive (state {self.state}), "
                                 f"got {rows[fin][0].tolist()}")
        return o

    # ---- numeric pipeline -----------------------------------------------------------------------
    # ---- general (L, r): one SymPy construction per size, its kernels hashed and shipped -------
    _GENERAL_KERNELS = ("channel", "prox_fgh", "hat_integrands", "update", "free_energy", "mse_integrand",
                        "baseline")

    def general(self, L: int, r: int) -> GeneralLR:
        """The general-(L, r) construction, one per size in this process (kernels cached on it)."""
        cache = self.__dict__.setdefault("_general", {})
        if (L, r) not in cache:
            g = GeneralLR(L, r)
            g.attach(self.registry, f"general_L{L}_r{r}_")  # the model's one kernel registry
            cache[(L, r)] = g
        return cache[(L, r)]

    def kernels_for(self, options: Mapping[str, Any]) -> dict[str, Any]:
        """Kernels used with ``options``: the stated (2, 1) model's, or the general construction's
        for other (L, r) (so a sweep's equations hash and its shipped kernels cover them)."""
        o = self.validate_options(options)
        L, r = int(o["L"]), int(o["r"])
        if (L, r) == (2, 1):
            ks = dict(super().kernels_for(options))
            if _use_compiled(o, np):  # the compiled loop's kernels too ("<program>@numba")
                for n in _compiled_programs(o["hats"] == "envelope"):
                    ks[f"{n}@numba"] = self.kernel(n, "numba")
            return ks
        g = self.general(L, r)
        return {f"general_L{L}_r{r}_{nm}": g.kernel(nm) for nm in self._GENERAL_KERNELS}

    def install_kernels_for(self, options: Mapping[str, Any], kernels: Mapping[str, Any]) -> None:
        o = self.validate_options(options)
        L, r = int(o["L"]), int(o["r"])
        if (L, r) == (2, 1):
            for name, k in kernels.items():  # "<program>@numba": the compiled loop's kernels
                self.registry.install(name.split("@")[0], k)
            return None
        for name, k in kernels.items():  # the general construction reads the same registry
            self.registry.install(name, k)

    def saddle(self, params: Mapping[str, Any], backend: Backend | None = None, **options: Any) -> tuple[SaddleDriver, SaddleProblem]:
        """The shared driver (:mod:`numerics.saddle`) set up on the flat batch ``params``: the
        stated (2, 1) model's kernels, or the general construction's for other (L, r).

        Quadrature (2, 1), for the option ``branch``: ``replicas`` scrambled Sobol' rules closed under the one symmetry that
        keeps the branch's invariant set exact — ``w → −w`` (θ = 0) on the positional branch, the
        token exchange (m = 0) on the semantic one, both on the agnostic one. Each closure halves
        the independent points, and the integrands are not symmetric off the invariant set: the
        half-closed rule has about half the quadrature error of the fully closed one at equal size
        (measured: ``docs/models/positional-semantic.md``)."""
        from numerics.backend import get_backend

        be = backend or get_backend("numpy")
        o = self.validate_options(options)
        xp = be.xp
        p = {k: xp.asarray(v, dtype=float).reshape(-1) for k, v in params.items()}
        n = int(p["alpha"].shape[0])
        L, r = int(o["L"]), int(o["r"])
        if (L, r) == (2, 1):
            problem = _problem_r1(self, p, o, xp, be.special)
            close = {"positional": teacher_flip_closed, "semantic": token_swap_closed}.get(o["branch"], symmetrized)
            dim = 4
        else:
            spec = self.general(L, r)
            problem = general_problem(spec, p, o, xp, be.special)
            close = lambda rule: symmetrized_rule(rule, L, r, spec.rs)  # noqa: E731
            dim = L * (r + spec.rs)
        if o["quadrature"] == "qmc":
            rule = replica_rule(int(o["n_quad"]), dim, int(o["replicas"]), int(o["seed"]), close)
        else:
            gh = gauss_hermite(int(o["n_quad"]), dim).pruned(1e-14)
            rule = ReplicaRule(gh.nodes, gh.weights, np.zeros(gh.size, dtype=int), 1, gh.kind)
        problem.context.update(special=be.special, sigma=p["sigma"], params=p)
        return SaddleDriver(problem, rule, n, xp), problem

    def evaluate(self, params: Mapping[str, Any], backend: Backend, **options: Any) -> dict[str, Any]:
        """Solve the saddle point on a flat batch of points with the shared driver
        (:class:`numerics.saddle.SaddleDriver`): each branch from its start, then (``global``)
        the branch with the larger Φ among the converged ones."""
        o = self.validate_options(options)
        xp = backend.xp
        L, r = int(o["L"]), int(o["r"])
        if (L, r) == (2, 1):
            all_branches = BRANCHES[:2]
        else:
            all_branches = BRANCHES[:2] + (("mixed",) if r >= 2 else ())
        branches = all_branches if o["branch"] == "global" else (o["branch"],)
        results = {}
        for b in branches:
            driver, problem = self.saddle(params, backend, **{**o, "branch": b})
            results[b] = self._solve_branch(driver, problem, b, o, L, r, xp, params, backend)
        if len(branches) == 1:
            return results[branches[0]]
        # global: the larger Φ among converged branches (= lower minimal risk)
        best = results[branches[0]]
        for b in branches[1:]:
            other = results[b]
            bphi = xp.where(best["converged"], best["phi"], -xp.inf)
            ophi = xp.where(other["converged"], other["phi"], -xp.inf)
            take = ophi > bphi
            conv = best["converged"] | other["converged"]
            best = {k: xp.where(take, other[k], best[k]) for k in best}
            best["converged"] = conv
        best["status"] = xp.where(best["converged"], int(Status.OK), best["status"]).astype(np.int8)
        return best

    def _solve_branch(self, driver: SaddleDriver, problem: SaddleProblem, branch: str, o: Mapping[str, Any],
                      L: int, r: int, xp: Any, params: Mapping[str, Any] | None = None,
                      backend: Backend | None = None) -> dict[str, Any]:
        """One branch at every point: start, driver, representative of the sign symmetry, outputs;
        then (option ``quad_rtol``) the points whose quadrature error is above it solved again
        on larger rules (:meth:`_refine`)."""
        n = driver.P
        if (L, r) == (2, 1):
            # the semantic branch is the fixed point inside m = 0: held there exactly (a pin), since
            # where the branch is unstable towards m the round-off of the swap-closed rule grows
            # and the iteration escapes to the positional state (seen at ω ≥ 0.7)
            x_def, pins = np.asarray(BRANCH_INIT[branch], dtype=float), ([1] if branch == "semantic" else [])
        else:
            x_def, pins = branch_init(self.general(L, r), branch)
        problem.pins = tuple(pins)
        names = self.state_names(L, r)
        K = len(names)
        x0 = np.tile(x_def[None, :], (n, 1))
        if o["init"] is not None:  # one start for all points, or per-point rows (NaN rows: default)
            init = np.asarray(o["init"], dtype=float)
            init = np.tile(init[None, :], (n, 1)) if init.ndim == 1 else init
            if init.shape != (n, K):
                raise ValueError(f"option 'init' must have shape ({K},) or (n_points, {K}) = ({n}, {K}) "
                                 f"with the state {names}; got {init.shape}")
            good = np.all(np.isfinite(init), axis=1)
            x0[good] = init[good]
        res = self._run_driver(driver, o, branch, L, r, x0)
        out = self._branch_outputs(driver, problem, res, branch, o, L, r, xp)
        if params is not None and self._refines(o, L, r):
            out = self._refine(params, backend, o, branch, driver, problem, res, out, xp, x0)
        return out

    def _run_driver(self, driver: SaddleDriver, o: Mapping[str, Any], branch: str, L: int, r: int, x0: Any,
                    **kw: Any) -> SaddleResult:
        xp = driver.xp
        bar = progress_bar(total=int(o["maxiter"]), desc=f"positional-semantic L={L} r={r} [{branch}]",
                           unit="it", enabled=bool(o["progress"]), leave=False)

        def cb(it: int, active: Any, res: Any) -> None:
            bar.update(1)
            bar.set_postfix(active=int(active.shape[0]))

        tol = float(o["tol"])
        if self._refines(o, L, r):  # quad_rtol: every rule solved to quad_tol (REFINE_TOL_FACTOR)
            qt = o.get("quad_tol")
            tol = float(qt) if qt is not None else max(tol, self.REFINE_TOL_FACTOR * float(o["quad_rtol"]))
        res = driver.solve(xp.asarray(x0), tol=tol, maxiter=int(o["maxiter"]),
                           damping=float(o["damping"]), anderson=int(o["anderson"]), jacobian=bool(o["stability"]),
                           callback=cb, **kw)
        bar.close()
        return res

    def _branch_outputs(self, driver: SaddleDriver, problem: SaddleProblem, res: SaddleResult, branch: str,
                        o: Mapping[str, Any], L: int, r: int, xp: Any) -> dict[str, Any]:
        n = driver.P
        names = self.state_names(L, r)
        want_J = bool(o["stability"])
        X = np.asarray(res.x)
        Xerr = np.asarray(res.x_error)
        if (L, r) == (2, 1):
            out = _outputs_r1(res, X, xp)
        else:
            out = general_outputs(self.general(L, r), res, X, xp)
        for i, nm in enumerate(names):
            out[f"{nm}_err"] = xp.asarray(Xerr[:, i])
        for k in ("mse", "phi"):
            out[f"{k}_err"] = res.obs_error[k]
        out["quad_error"] = _max_relative_error(out, names)
        out["multiple_minima"] = xp.asarray(np.asarray(res.multiple_minima, dtype=float))
        out["mse_linear"] = baseline_mse(self, driver, problem, L, r, xp, problem.context["special"],
                                         problem.context["sigma"])
        out["branch"] = xp.full(n, GENERAL_BRANCHES.index(branch), dtype=np.int8)
        out["stability"] = res.lead if want_J else xp.full(n, xp.nan)
        out["n_nodes"] = xp.full(n, float(driver.N))
        conv = res.converged
        for k in list(out):
            if k not in ("branch", "mse_linear", "n_nodes"):
                out[k] = xp.where(conv, out[k], xp.nan)
        out.update(converged=conv, residual=res.residual, iterations=res.iterations, status=res.status)
        return out

    #: quad_rtol refinement: relative step of the central differences of the first rule's global
    #: map (the Jacobian the larger rule's Newton steps start with), the margin on the N^{-1/2}
    #: estimate of the rule that meets the target, and the largest growth per step
    REFINE_JAC_STEP = 1e-2
    REFINE_MARGIN = 1.2
    REFINE_MAX_GROWTH = 16
    #: with quad_rtol (option ``quad_tol`` None) every rule is solved to the undamped residual
    #: ``max(tol, REFINE_TOL_FACTOR·quad_rtol)`` (1e-7 at the default 1e-3): four orders below the
    #: quadrature error it is refined to meet, and far below what the rule's map resolves -- it is
    #: piecewise smooth, stepping where one of its nodes with two minima switches wells by the
    #: node's weight (1/N) times the integrand's jump: 1e-4 to 1e-3 relative at N = 65536 (measured
    #: at the default point), and each smooth piece can have its own fixed point
    REFINE_TOL_FACTOR = 1e-4

    @staticmethod
    def _refines(o: Mapping[str, Any], L: int, r: int) -> bool:
        """Option ``quad_rtol`` applies to the (2, 1) model on QMC rules with an error estimate."""
        return (o.get("quad_rtol") is not None and (L, r) == (2, 1) and o["quadrature"] == "qmc"
                and int(o["replicas"]) >= 2)

    @staticmethod
    def rule_size(n: float) -> int:
        """The smallest rule size ``2^k`` or ``3·2^k`` (points per replica; the sizes whose Sobol'
        prefix is at most two balanced nets, :func:`numerics.quadrature.sobol_normal`) ``>= n``."""
        k = int(np.floor(np.log2(max(float(n), 1.0))))
        for size in (2**k, 3 * 2 ** (k - 1), 2 ** (k + 1)):
            if size >= n and size >= 1:
                return int(size)
        return int(2 ** (k + 1))

    def _refine(self, params: Mapping[str, Any], backend: Backend | None, o: Mapping[str, Any], branch: str,
                driver: SaddleDriver, problem: SaddleProblem, res: SaddleResult, out: dict[str, Any],
                xp: Any, x0: np.ndarray) -> dict[str, Any]:
        """Solve again, on rules of more points, the converged points whose quadrature error
        (``quad_error``: the largest replica standard error of q, m, V, θ, mse, Φ relative to the
        value) is above ``quad_rtol``, until it is met or the rule has ``n_quad_max`` points.

        The QMC error decreases about as N^{-1/2} here (the prox jumps between wells: a
        discontinuous integrand; measured N^{-0.5} to N^{-0.8} between 4096 and 65536 points,
        the 4-replica error bar itself scattering by about ±50 %), so the next size is
        ``N·(err/quad_rtol)²`` with a margin of :attr:`REFINE_MARGIN`, rounded up to
        :meth:`rule_size` (``2^k`` or ``3·2^k``), at least 1.5·N and at most
        :attr:`REFINE_MAX_GROWTH` · N. (Pooling the rules' error bars under the N^{-1/2} law was
        tried: the first rule's bar is pre-asymptotic, up to 4.5x above that law, and dominated
        the pool.) Each replica of a refined point starts at its own fixed point on the previous
        rule, with the Jacobian of that rule's map there (central differences of the global map,
        relative step 1e-2, after the first rule; the Broyden matrix after the others), by Newton
        steps on the global map (:meth:`SaddleDriver.solve`, ``start_replicas``, ``jac0``): a few
        evaluations of the large rule instead of a solve from scratch. A point whose refined
        solve fails keeps its previous values (and is not refined further); points left above
        ``quad_rtol`` are reported with a ``RuntimeWarning``. A point that does not converge on the
        first rule is first tried once more, cold from its last iterate (``x0`` where that is not
        finite), on a rule of twice the points."""
        rtol = float(o["quad_rtol"])
        n_max = int(o["n_quad_max"])
        R, P = driver.R, driver.P
        free = np.setdiff1d(np.arange(len(self.state)), np.array(problem.pins, dtype=int))
        kf = free.size
        reps = np.array(res.extras["replica_x"], dtype=float)  # (P, R, k)
        Jac = np.full((P, R, kf, kf), np.nan)  # per point and replica: the Jacobian of the last rule
        have_J = np.zeros(P, bool)
        stop = np.zeros(P, bool)  # refined solve failed: keep the previous rule's values
        n_cur = np.full(P, driver.N)  # the rule each point is on
        drivers = {driver.N: (driver, np.arange(P))}

        def merge(pick: np.ndarray, out2: Mapping[str, Any], res2: SaddleResult, d2: SaddleDriver) -> np.ndarray:
            ok = np.asarray(out2["converged"], bool)
            take = pick[ok]
            for k in out:
                v = np.array(out[k], copy=True)
                v[take] = np.asarray(out2[k])[ok]
                out[k] = xp.asarray(v)
            reps[take] = np.asarray(res2.extras["replica_x"])[ok]
            n_cur[take] = d2.N
            return ok

        # a point that does not converge on the first rule is tried once on a rule of twice the
        # points, from its last iterate: on a small rule one node in the tails whose minimiser
        # switches wells can move the map by more than the tolerance, so that rule's map has no
        # fixed point (seen at (α, ω) = (0.8, 0.2), positional, 2048 and 4096 points, one seed of
        # three; 8192 converges in 23 iterations)
        failed = np.nonzero(~np.asarray(out["converged"], bool))[0]
        N2 = self.rule_size(2 * driver.N)
        if failed.size and N2 <= n_max:
            start = np.where(np.isfinite(reps[failed]), reps[failed], x0[failed][:, None, :])
            p_sub = {k: np.asarray(v)[failed] for k, v in params.items()}
            d2, pb2 = self.saddle(p_sub, backend, **{**o, "n_quad": N2, "branch": branch})
            pb2.pins = problem.pins
            res2 = self._run_driver(d2, o, branch, 2, 1, x0[failed], start_replicas=start)
            out2 = self._branch_outputs(d2, pb2, res2, branch, o, 2, 1, xp)
            merge(failed, out2, res2, d2)
            drivers[d2.N] = (d2, failed)
        while True:
            err = np.asarray(out["quad_error"], dtype=float)
            need = np.asarray(out["converged"], bool) & (err > rtol) & ~stop & (n_cur < n_max)
            if not need.any():
                break
            pick = np.nonzero(need)[0]
            want = [max(self.rule_size(1.5 * n_cur[i]), self.rule_size(n_cur[i] * (err[i] / rtol) ** 2
                                                                      * self.REFINE_MARGIN)) for i in pick]
            N_new = int(min(n_max, self.REFINE_MAX_GROWTH * int(n_cur[pick].min()), max(want)))
            first = pick[~have_J[pick]]
            for n_rule in np.unique(n_cur[first]):  # first rule of each: central differences of its global map
                sel = first[n_cur[first] == n_rule]
                d_rule, on = drivers[int(n_rule)]  # the rule's driver and the points it was built for
                rows = (np.searchsorted(on, sel)[:, None] * R + np.arange(R)[None, :]).reshape(-1)
                xr = reps[sel].reshape(-1, reps.shape[-1])
                Jr, _ = d_rule._jacobian(xr, rows, free, self.REFINE_JAC_STEP, [], local=False)
                Jac[sel] = Jr.reshape(sel.size, R, kf, kf)
                have_J[sel] = True
            p_sub = {k: np.asarray(v)[pick] for k, v in params.items()}
            d2, pb2 = self.saddle(p_sub, backend, **{**o, "n_quad": N_new, "branch": branch})
            pb2.pins = problem.pins
            res2 = self._run_driver(d2, o, branch, 2, 1, reps[pick, 0], start_replicas=reps[pick],
                                    jac0=Jac[pick].reshape(-1, kf, kf))
            out2 = self._branch_outputs(d2, pb2, res2, branch, o, 2, 1, xp)
            ok = merge(pick, out2, res2, d2)
            sj = res2.extras["secant_jacobian"]
            if sj is not None:
                Jac[pick[ok]] = np.asarray(sj).reshape(pick.size, R, kf, kf)[ok]
            stop[pick[~ok]] = True
        above = np.asarray(out["converged"], bool) & (np.asarray(out["quad_error"], dtype=float) > rtol)
        if above.any():
            import warnings

            warnings.warn(f"positional-semantic [{branch}]: {int(above.sum())} point(s) keep a quadrature error "
                          f"above quad_rtol = {rtol:g} (rule capped at n_quad_max = {n_max}, or a refined solve "
                          f"failed): see the output 'quad_error'", RuntimeWarning, stacklevel=4)
        return out

    # ---- science on top of the pipeline (public API; scripts and benchmarks call these) ----------
    #: the paper's σ and λ (spec §6): the defaults of the methods below
    SIGMA, LAM = 0.5, 0.01

    def solve_pairs(self, alpha: Any, omega: Any, branch: str, *, sigma: float = SIGMA, lam: float = LAM,
                    backend: Backend | None = None, **options: Any) -> dict[str, Any]:
        """One branch (``positional``, ``semantic``, ``agnostic``, ``global``) at the paired
        points ``(alpha[i], omega[i])`` (``omega`` broadcast; not an outer product): the model's
        :meth:`evaluate` on a flat batch; every observable with its quadrature error."""
        from numerics.backend import get_backend

        a = np.atleast_1d(np.asarray(alpha, dtype=float))
        w = np.broadcast_to(np.asarray(omega, dtype=float), a.shape).copy()
        params = self.validate(dict(alpha=a, omega=w, sigma=np.full(a.shape, float(sigma)),
                                    lam=np.full(a.shape, float(lam))))
        return self.evaluate(params, backend or get_backend("numpy"), **{**options, "branch": branch})

    def _branch_start(self, starts: Mapping[str, Any] | None, branch: str, idx: Any) -> Any:
        """Rows ``idx`` of the per-ω starts of ``branch`` (``(n_omega, 4)``; NaN rows: the default)."""
        if not starts or starts.get(branch) is None:
            return None
        x0 = np.asarray(starts[branch], dtype=float)
        if x0.ndim != 2 or x0.shape[1] != len(self.state):
            raise ValueError(f"'starts[{branch!r}]' must be an (n_omega, {len(self.state)}) array of "
                             f"{self.state}, got shape {x0.shape}")
        return x0[np.asarray(idx)]

    def critical_alpha(self, omegas: Any, lo: float, hi: float, *, tol: float = 2e-3, sigma: float = SIGMA,
                       lam: float = LAM, starts: Mapping[str, Any] | None = None, **options: Any) -> Any:
        """α_c(ω): where Φ_semantic − Φ_positional changes sign (the first-order transition of the
        global minimum), by batched bisection in α over all ω at once
        (:func:`numerics.phases.bisect_sign_change`); each evaluation solves both branches.
        ``starts``: per-ω starting states of each branch (``{"positional": (n_omega, 4), "semantic":
        ...}``, e.g. a phase diagram's fixed points next to the bracket), so that every bisection
        point continues its branch instead of starting cold (a cold start near a branch end can
        land elsewhere or fail)."""
        from numerics.phases import bisect_sign_change

        om = np.asarray(omegas, dtype=float)
        options = {"quad_rtol": None, **options}  # the rule in options, fixed (its error is what α_c carries)

        def f(a: np.ndarray, idx: np.ndarray) -> np.ndarray:
            pos = self.solve_pairs(a, om[idx], "positional", sigma=sigma, lam=lam,
                                   **{**options, "init": self._branch_start(starts, "positional", idx)})
            sem = self.solve_pairs(a, om[idx], "semantic", sigma=sigma, lam=lam,
                                   **{**options, "init": self._branch_start(starts, "semantic", idx)})
            return np.where(pos["converged"] & sem["converged"], sem["phi"] - pos["phi"], np.nan)

        lo_ = np.broadcast_to(np.asarray(lo, dtype=float), om.shape).copy()
        hi_ = np.broadcast_to(np.asarray(hi, dtype=float), om.shape).copy()
        return bisect_sign_change(f, lo_, hi_, tol=tol)

    def critical_alpha_scan(self, omegas: Any, center: Any, *, half_width: float = 0.04, n: int = 5,
                            max_shifts: int = 4, sigma: float = SIGMA, lam: float = LAM,
                            starts: Mapping[str, Any] | None = None, **options: Any) -> dict[str, np.ndarray]:
        """α_c(ω) by a local scan (robust where a bisection midpoint fails to converge): both branches
        at ``n`` α in ``center ± half_width`` (every ω and α in one batch per branch, each branch
        started from ``starts``), the first sign change of Φ_sem − Φ_pos between converged
        neighbours, linear interpolation there. Where the scan has no sign change, its window moves
        by ``2·half_width`` towards it (up where Φ_sem < Φ_pos throughout) up to ``max_shifts``
        times. Returns ``alpha_c``; ``error`` = (the larger replica error of the difference at the
        two neighbours) / slope + ¼·(spread of the slopes between neighbouring scan points)·(the
        bracketing interval) / slope, the second term bounding the linear interpolation's error;
        ``slope``, ``lo``/``hi`` (the bracketing α) and ``shifts``."""
        om = np.asarray(omegas, dtype=float)
        c = np.broadcast_to(np.asarray(center, dtype=float), om.shape).copy()
        K = len(self.state)
        out = {k: np.full(om.shape, np.nan) for k in ("alpha_c", "error", "slope", "lo", "hi")}
        out["shifts"] = np.zeros(om.shape, dtype=int)
        todo = np.nonzero(np.isfinite(c))[0]
        offs = np.linspace(-half_width, half_width, int(n))
        for shift in range(int(max_shifts) + 1):
            if todo.size == 0:
                break
            A = (c[todo, None] + offs[None, :]).reshape(-1)
            W = np.repeat(om[todo], offs.size)
            res = {}
            for b in ("positional", "semantic"):
                st = self._branch_start(starts, b, todo)
                init = None if st is None else np.repeat(st, offs.size, axis=0).reshape(-1, K)
                res[b] = self.solve_pairs(A, W, b, sigma=sigma, lam=lam,
                                          **{"quad_rtol": None, **options, "init": init})
            ok = (np.asarray(res["positional"]["converged"], bool) & np.asarray(res["semantic"]["converged"], bool)
                  ).reshape(todo.size, offs.size)
            d = (np.asarray(res["semantic"]["phi"]) - np.asarray(res["positional"]["phi"])).reshape(todo.size, -1)
            de = np.hypot(res["semantic"]["phi_err"], res["positional"]["phi_err"]).reshape(todo.size, -1)
            Ar = A.reshape(todo.size, -1)
            again = []
            for row, j in enumerate(todo):
                idx = np.nonzero(ok[row])[0]
                found = False
                for i0, i1 in zip(idx[:-1], idx[1:]):
                    if d[row, i0] < 0 <= d[row, i1]:
                        slope = (d[row, i1] - d[row, i0]) / (Ar[row, i1] - Ar[row, i0])
                        out["alpha_c"][j] = Ar[row, i0] - d[row, i0] / slope
                        out["slope"][j] = slope
                        out["lo"][j], out["hi"][j] = Ar[row, i0], Ar[row, i1]
                        err = max(de[row, i0], de[row, i1]) / slope
                        # interpolation error: the one-sided slopes' difference × half the interval
                        sl = [(d[row, b_] - d[row, a_]) / (Ar[row, b_] - Ar[row, a_])
                              for a_, b_ in zip(idx[:-1], idx[1:])]
                        curv = (max(sl) - min(sl)) if len(sl) > 1 else 0.0
                        out["error"][j] = err + 0.25 * abs(curv) * (Ar[row, i1] - Ar[row, i0]) / slope
                        found = True
                        break
                if not found and idx.size:
                    c[j] += 2 * half_width * (1.0 if np.nanmax(d[row, idx]) < 0 else -1.0)
                    out["shifts"][j] = shift + 1
                    again.append(j)
            todo = np.array(again, dtype=int)
        return out

    def critical_alpha_error(self, omegas: Any, alpha_c: Any, *, h: float = 0.02, sigma: float = SIGMA,
                             lam: float = LAM, starts: Mapping[str, Any] | None = None,
                             **options: Any) -> dict[str, np.ndarray]:
        """The quadrature error of α_c(ω): both branches at α_c ± h (replica rules as in
        ``options``); ``slope`` = d(Φ_sem − Φ_pos)/dα by the central difference, ``error`` =
        the replica error of Φ_sem − Φ_pos (the larger of the two sides) over the slope."""
        om = np.asarray(omegas, dtype=float)
        ac = np.asarray(alpha_c, dtype=float)
        options = {"quad_rtol": None, **options}  # the rule in options, fixed
        fin = np.isfinite(ac)  # NaN α_c (no crossing found): NaN error
        d, de = [], []
        for sgn in (-1.0, 1.0):
            di, dei = np.full(om.shape, np.nan), np.full(om.shape, np.nan)
            if fin.any():
                ix = np.nonzero(fin)[0]
                pos = self.solve_pairs(ac[fin] + sgn * h, om[fin], "positional", sigma=sigma, lam=lam,
                                       **{**options, "init": self._branch_start(starts, "positional", ix)})
                sem = self.solve_pairs(ac[fin] + sgn * h, om[fin], "semantic", sigma=sigma, lam=lam,
                                       **{**options, "init": self._branch_start(starts, "semantic", ix)})
                ok = pos["converged"] & sem["converged"]
                di[fin] = np.where(ok, sem["phi"] - pos["phi"], np.nan)
                dei[fin] = np.where(ok, np.hypot(sem["phi_err"], pos["phi_err"]), np.nan)
            d.append(di)
            de.append(dei)
        slope = (d[1] - d[0]) / (2 * h)
        return {"slope": slope, "error": np.maximum(de[0], de[1]) / np.abs(slope)}

    #: observables kept on the grid by :meth:`phase_diagram`
    PD_KEYS = ("q", "m", "v", "theta", "phi", "phi_err", "mse", "mse_linear", "quad_error", "converged",
               "stability", "iterations")

    def phase_diagram(self, alphas: Any, omegas: Any, *, sigma: float = SIGMA, lam: float = LAM,
                      on_branch_tol: float = 1e-3, callback: Any = None, workers: int = 1,
                      patience: int = 4, **options: Any) -> dict[str, Any]:
        """Both branches on the ``alphas × omegas`` grid by continuation
        (:func:`numerics.saddle.continuation`): the positional branch followed upward in α from its
        start, the semantic branch downward, each α step batched over every ω and started at the
        previous step's fixed point (few map evaluations per point). A grid point is on a branch
        where it converged with its order parameter (m, resp. θ) above ``on_branch_tol``.

        Returns per branch the grid ``(len(alphas), len(omegas))`` of :attr:`PD_KEYS` and
        ``on_branch``; ``positional_end`` / ``semantic_end`` (the last α of the positional branch,
        the first of the semantic one: grid estimates of the spinodal and of the semantic
        branch's end, :func:`numerics.saddle.branch_ends`); ``alpha_c``, ``alpha_c_err``,
        ``alpha_c_at_branch_end`` (the Φ crossing, :func:`numerics.saddle.sign_crossing`).
        ``callback(branch, i, n)`` after each α step (progress); with ``workers > 1`` the ω
        columns (independent: the continuation runs in α) are dealt to ``workers`` processes
        (:func:`numerics.parallel.map_chunks`) and ``callback("columns", k, n)`` reports finished
        chunks. The result does not depend on ``workers`` (each column sees the same rule).
        ``patience``: a column off its branch (not converged, or its order parameter below
        ``on_branch_tol``) for this many consecutive α steps — after leaving it, or from the sweep's
        first step — has ended and is not solved again (:func:`numerics.saddle.continuation`;
        restarting cold past a branch end costs a full iteration budget per step)."""
        from numerics.saddle import branch_ends, sign_crossing

        al = np.asarray(alphas, dtype=float)
        om = np.asarray(omegas, dtype=float)
        if not (isinstance(workers, (int, np.integer)) and workers >= 1):
            raise ValueError(f"option 'workers' must be an integer >= 1, got {workers!r}")
        options = {"quad_rtol": None, **options}  # one fixed rule on the whole grid (the continuation's)
        if workers > 1:
            options.setdefault("threads", 1)  # the processes share the cores
        if al.ndim != 1 or om.ndim != 1 or al.size < 1 or om.size < 1:
            raise ValueError(f"'alphas' and 'omegas' must be non-empty 1-d sequences, got shapes {al.shape}, {om.shape}")
        if workers > 1 and om.size > 1:
            from numerics.parallel import map_chunks, split_columns

            cols = split_columns(om.size, int(workers))
            kw = dict(sigma=sigma, lam=lam, on_branch_tol=on_branch_tol, patience=patience, **options)
            report = callback is not None
            parts = map_chunks(_phase_diagram_columns, [(self.name, al, om[c], kw, report) for c in cols], int(workers),
                               done=None if callback is None else lambda k, n: callback("columns", k, n))
            out = {}
            for branch in ("positional", "semantic"):
                grid = {}
                for key in parts[0][branch]:
                    g = np.empty((al.size, om.size), dtype=parts[0][branch][key].dtype)
                    for c, part in zip(cols, parts):
                        g[:, c] = part[branch][key]
                    grid[key] = g
                out[branch] = grid
        else:
            out = self._phase_diagram_grids(al, om, sigma, lam, on_branch_tol, callback, options, patience)
        out.update(alphas=al, omegas=om)
        pos, sem = out["positional"], out["semantic"]
        out["positional_end"], out["semantic_end"] = branch_ends(al, pos["on_branch"], sem["on_branch"])
        d = sem["phi"] - pos["phi"]
        ac, ac_err, at_end = sign_crossing(al, d, np.hypot(sem["phi_err"], pos["phi_err"]),
                                           sem["on_branch"] & pos["on_branch"], sem["on_branch"])
        out.update(alpha_c=ac, alpha_c_err=ac_err, alpha_c_at_branch_end=at_end)
        return out

    def _phase_diagram_grids(self, al: np.ndarray, om: np.ndarray, sigma: float, lam: float,
                             on_branch_tol: float, callback: Any, options: Mapping[str, Any],
                             patience: int = 4) -> dict[str, Any]:
        """The two branches' grids of :meth:`phase_diagram` by continuation in α (one process)."""
        from numerics.saddle import continuation

        out: dict[str, Any] = {}
        for branch, order, key in (("positional", np.arange(al.size), "m"),
                                   ("semantic", np.arange(al.size)[::-1], "theta")):
            grid = {k: np.full((al.size, om.size), np.nan) for k in self.PD_KEYS}
            count = [0]

            def solve(a: float, x0: np.ndarray, live: np.ndarray, branch: str = branch,
                      count: list = count) -> Any:
                # only the columns whose branch has not ended (continuation's ``live``)
                obs = {k: np.full(om.size, np.nan) for k in self.PD_KEYS}
                obs["converged"] = np.zeros(om.size)
                x = np.full((om.size, len(self.state)), np.nan)
                if live.any():
                    x0l = x0[live]
                    init = x0l if np.isfinite(x0l).any() else None
                    r = self.solve_pairs(np.full(int(live.sum()), a), om[live], branch, sigma=sigma, lam=lam,
                                         **{**options, "init": init})
                    for k in self.PD_KEYS:
                        obs[k][live] = np.asarray(r[k], dtype=float)
                    x[live] = np.stack([np.asarray(r[k], dtype=float) for k in self.state], axis=1)
                count[0] += 1
                if callback is not None:
                    callback(branch, count[0], al.size)
                return SaddleResult(x=x, converged=obs["converged"] > 0, residual=None,
                                    iterations=None, status=None, x_error=None, obs=obs, obs_error={},
                                    lead=None, radius=None)

            def on(res: Any, key: str = key) -> np.ndarray:
                return np.asarray(res.converged, bool) & (np.abs(res.obs[key]) > on_branch_tol)

            steps = continuation(solve, [float(al[i]) for i in order], np.full((om.size, len(self.state)), np.nan),
                                 on_branch=on, patience=patience)
            for i, st in zip(order, steps):
                for k in self.PD_KEYS:
                    grid[k][i] = np.asarray(st.obs[k], dtype=float)
            grid["on_branch"] = (grid["converged"] > 0) & (np.abs(grid[key]) > on_branch_tol)
            out[branch] = grid
        return out

    def population_mse(self, omega: float, q: Any, m: Any, theta: Any, *, sigma: float = SIGMA,
                       n_gh: int = 20, A: Any = DEFAULT_A) -> np.ndarray:
        r"""The population test error $\mathbb E\,\sigma^2\|S(h)-T(t)\|_F^2$ (§5, the generated
        ``channel`` and ``mse_integrand`` programs) at the order parameters ``(q, m, θ)`` (arrays,
        broadcast), with $V_*=\sqrt{\rho-\theta^2/q}$: no prox, a smooth integrand, so tensor
        Gauss–Hermite with ``n_gh`` nodes per variable (4 variables)."""
        from numerics.backend import get_backend

        be = get_backend("numpy")
        q_, m_, th_ = np.broadcast_arrays(*(np.atleast_1d(np.asarray(v, dtype=float)) for v in (q, m, theta)))
        rule = gauss_hermite(int(n_gh), 4).pruned(1e-14)
        z, w = rule.nodes, rule.weights
        P, N = q_.size, rule.size
        rep = lambda v: np.repeat(v.reshape(-1), N)  # noqa: E731
        zz = np.tile(z, (P, 1))
        Af = [a for row in A for a in row]
        ch = self.kernel("channel")(np, be.special, zz[:, 0], zz[:, 1], zz[:, 2], zz[:, 3], rep(q_), rep(m_),
                                    rep(th_), sigma**2, omega, *Af)
        i = self.kernel("mse_integrand")(np, be.special, ch["h1"], ch["h2"], sigma,
                                         ch["T11"], ch["T12"], ch["T21"], ch["T22"])["i_mse"]
        return (np.asarray(i).reshape(P, N) * w[None, :]).sum(axis=1).reshape(q_.shape)

    def large_alpha_limit(self, omega: float, *, sigma: float = SIGMA, n_gh: int = 20,
                          mixed: bool = True) -> dict[str, Any]:
        r"""$\alpha\to\infty$: the regularised training risk per sample tends to the population
        risk and $\lambda/\alpha\to0$, so the global minimum is the smaller of the population test
        error minimised on each invariant set over the overlaps a student can reach
        ($q=\sigma^2\|Q\|^2/d\ge\sigma^2m^2+\theta^2/\rho$ by Cauchy–Schwarz, as the replica fixed
        point satisfies at every α) — positional ($\theta=0$, $q\ge\sigma^2m^2$) and semantic
        ($m=0$, $\theta^2\le\rho q$, i.e. $V_*\ge0$) —
        :meth:`population_mse` minimised by Nelder–Mead. Returns both minima, their minimisers,
        and ``difference`` = min mse_sem − min mse_pos (negative: semantic wins at large α);
        ``mixed``: also the minimum over (q, m, θ) jointly (``mse_mixed``: if it were below both,
        a mixed state would be the large-α global minimum)."""
        from scipy.optimize import minimize

        rho = sigma**2

        cmax = 1.0 - 1e-12  # V_* = √ρ·√(1 − c²) > 0 in floating point

        def pos(v: np.ndarray) -> float:  # q = σ²m² + v₀²: q = σ²‖Q‖²/d ≥ σ²(Q·u/d)² = σ²m²
            return float(self.population_mse(omega, max(sigma**2 * v[1] ** 2 + v[0] ** 2, 1e-300), v[1], 0.0,
                                             sigma=sigma, n_gh=n_gh)[0])

        def sem(v: np.ndarray) -> float:  # q = v₀², θ = c √(ρq), |c| ≤ 1 (the minimum sits at c = 1)
            qv, c = max(v[0] ** 2, 1e-300), min(abs(v[1]), cmax)
            return float(self.population_mse(omega, qv, 0.0, c * np.sqrt(rho * qv), sigma=sigma, n_gh=n_gh)[0])

        def mixed(v: np.ndarray) -> float:  # both: q = σ²m² + θ²/ρ + v₀²
            qv = max(sigma**2 * v[1] ** 2 + v[2] ** 2 / rho + v[0] ** 2, 1e-300)
            return float(self.population_mse(omega, qv, v[1], v[2], sigma=sigma, n_gh=n_gh)[0])

        best = {}
        for name, f, starts in (("positional", pos, ([0.2, 0.3], [0.05, 0.45])),
                                ("semantic", sem, ([0.5, 0.99], [0.35, 0.8])),
                                ("mixed", mixed, ([0.01, 0.1, 0.2], [0.01, 0.3, 0.05], [0.1, 0.2, 0.1])))[
                                    : 3 if mixed else 2]:
            runs = [minimize(f, np.array(s0), method="Nelder-Mead",
                             options=dict(xatol=1e-6, fatol=1e-12, maxiter=2000)) for s0 in starts]
            best[name] = min(runs, key=lambda r: r.fun)
        mp_ = float(best["positional"].x[1])
        qp = float(sigma**2 * mp_**2 + best["positional"].x[0] ** 2)
        qs, cs = float(best["semantic"].x[0] ** 2), min(abs(float(best["semantic"].x[1])), cmax)
        return {"omega": float(omega), "mse_positional": float(best["positional"].fun),
                "mse_semantic": float(best["semantic"].fun),
                "difference": float(best["semantic"].fun - best["positional"].fun),
                "mse_mixed": float(best["mixed"].fun) if mixed else float("nan"),
                "mixed_m": abs(float(best["mixed"].x[1])) if mixed else float("nan"),
                "mixed_theta": abs(float(best["mixed"].x[2])) if mixed else float("nan"),
                "positional_q": qp, "positional_m": abs(mp_), "semantic_q": qs,
                "semantic_theta": cs * float(np.sqrt(rho * qs)), "n_gh": int(n_gh)}

    def omega_star(self, lo: float = 0.6, hi: float = 0.7, *, sigma: float = SIGMA, n_gh: int = 16,
                   xtol: float = 1e-6) -> float:
        """ω* where the two large-α population minima are equal (:meth:`large_alpha_limit`):
        above it the positional minimum is the global one at every α, so α_c(ω) → ∞ as ω → ω*⁻
        (brentq; ``lo``/``hi`` must bracket a sign change, else ValueError naming them)."""
        from scipy.optimize import brentq

        f = lambda w: self.large_alpha_limit(w, sigma=sigma, n_gh=n_gh, mixed=False)["difference"]  # noqa: E731
        flo, fhi = f(lo), f(hi)
        if not (np.isfinite(flo) and np.isfinite(fhi) and flo * fhi < 0):
            raise ValueError(f"omega_star: 'lo' = {lo} and 'hi' = {hi} do not bracket a sign change of "
                             f"min mse_sem - min mse_pos ({flo:.3g}, {fhi:.3g})")
        return float(brentq(f, lo, hi, xtol=xtol))

    # ---- fixed-point protocol -------------------------------------------------------------------
    #: the state of the (L, r) = (2, 1) map, in order (general (L, r): :meth:`state_names`)
    state = ("q", "m", "v", "theta")

    @staticmethod
    def state_names(L: int = 2, r: int = 1) -> tuple[str, ...]:
        """Names of the state entries: ``state`` for (2, 1); otherwise the flattened matrices,
        upper triangle of q (row-major: q_11, q_12, q_22), m (k×r row-major: m_j_a), upper
        triangle of V (v_11, ...), θ (r×r* row-major: theta_a_e) — the observables of those names."""
        if (L, r) == (2, 1):
            return PositionalSemantic.state
        return GeneralLR(L, r).state_names

    def random_states(self, n: int, rng: Any, L: int = 2, r: int = 1) -> np.ndarray:
        """``(n, k)`` random starts inside the map's domain: q ∈ [0.005, 0.2] (positive definite,
        off-diagonals within ±0.3 of the geometric mean of the diagonal), m ∈ [−0.3, 0.3],
        V ∈ [5, 35] (positive definite), θ with θᵀq⁻¹θ ≤ 0.8 ρ at σ = 0.5."""
        names = self.state_names(L, r)
        rho = 0.25
        out = np.empty((n, len(names)))
        for i in range(n):
            qd = rng.uniform(0.005, 0.2, r)
            vd = rng.uniform(5.0, 35.0, r)
            q = np.diag(qd)
            V = np.diag(vd)
            for a in range(r):
                for b in range(a + 1, r):
                    q[a, b] = q[b, a] = rng.uniform(-0.3, 0.3) * np.sqrt(qd[a] * qd[b])
                    V[a, b] = V[b, a] = rng.uniform(-0.3, 0.3) * np.sqrt(vd[a] * vd[b])
            th = rng.standard_normal(r)
            th *= np.sqrt(rng.uniform(0.0, 0.8) * rho / (th @ np.linalg.solve(q, th)))
            vals = {}
            for a in range(r):
                for b in range(a, r):
                    vals[f"q_{a + 1}{b + 1}"], vals[f"v_{a + 1}{b + 1}"] = q[a, b], V[a, b]
                vals[f"theta_{a + 1}_1"] = th[a]
            row = []
            for nm in names:
                if nm in ("q", "v", "theta"):
                    row.append({"q": q[0, 0], "v": V[0, 0], "theta": th[0]}[nm])
                elif nm == "m" or nm.startswith("m_"):
                    row.append(rng.uniform(-0.3, 0.3))
                else:
                    row.append(vals[nm])
            out[i] = row
        return out


def symmetrized(rule: Rule) -> Rule:
    """Close a rule over (ξ₁, ξ₂, w₁, w₂) under the symmetries of the channel: the teacher sign
    flip ``w → −w`` (T is even in t, so θ = 0 stays exactly invariant) and the token exchange
    ``(ξ₁, w₁) ↔ (ξ₂, w₂)`` (with m → −m, so m = 0 stays invariant for a symmetric A)."""
    z = rule.nodes
    flip = z * np.array([1.0, 1.0, -1.0, -1.0])
    swap = z[:, [1, 0, 3, 2]]
    nodes = np.concatenate([z, flip, swap, swap * np.array([1.0, 1.0, -1.0, -1.0])])
    return Rule(nodes, np.tile(rule.weights, 4) / 4, rule.kind + "-symmetrized", rule.order * 4)


def teacher_flip_closed(rule: Rule) -> Rule:
    """``rule`` closed under ``w → −w`` only (T is even in t: θ = 0 stays exactly invariant)."""
    z = rule.nodes
    nodes = np.concatenate([z, z * np.array([1.0, 1.0, -1.0, -1.0])])
    return Rule(nodes, np.tile(rule.weights, 2) / 2, rule.kind + "-wflip", rule.order * 2)


def token_swap_closed(rule: Rule) -> Rule:
    """``rule`` closed under the token exchange ``(ξ₁, w₁) ↔ (ξ₂, w₂)`` only (m = 0 stays exactly
    invariant for a swap-symmetric A)."""
    z = rule.nodes
    nodes = np.concatenate([z, z[:, [1, 0, 3, 2]]])
    return Rule(nodes, np.tile(rule.weights, 2) / 2, rule.kind + "-swap", rule.order * 2)


def _phase_diagram_columns(args: tuple) -> dict[str, Any]:
    """One worker's ω columns of :meth:`PositionalSemantic.phase_diagram` (module level: sent to
    a worker process by reference; the model is the worker's own instance)."""
    import derive.models

    import os
    import sys

    name, al, om, kw, report = args
    kw = dict(kw)
    sigma, lam, tol, patience = kw.pop("sigma"), kw.pop("lam"), kw.pop("on_branch_tol"), kw.pop("patience")

    def progress(branch: str, i: int, n: int) -> None:  # one line per 10 α steps, on stderr
        if i % 10 == 0 or i == n:
            print(f"[worker {os.getpid()}: {om.size} ω] {branch} {i}/{n} α steps", file=sys.stderr, flush=True)

    return derive.models.get(name)._phase_diagram_grids(al, om, sigma, lam, tol, progress if report else None, kw,
                                                        patience)


def _problem_r1(model: PositionalSemantic, p: Mapping[str, Any], o: Mapping[str, Any], xp: Any,
                sp_: Any) -> SaddleProblem:
    """The (L, r) = (2, 1) kernels wrapped as the driver's callables (argument order only)."""
    envelope = o.get("hats", "stein") == "envelope"
    k = {name: model.kernel(name) for name in
         ("channel", "prox_fgh", "hat_integrands", "update", "free_energy", "mse_integrand")
         + (("envelope_integrands", "update_envelope") if envelope else ())}
    A = [a for row in o["A"] for a in row]
    Tk = ("T11", "T12", "T21", "T22")

    def channel(xr: Any, pt: Any, z: Any) -> dict:
        sig = p["sigma"][pt]
        c = dict(k["channel"](xp, sp_, z[:, 0], z[:, 1], z[:, 2], z[:, 3], xr[:, 0], xr[:, 1], xr[:, 3],
                              sig**2, p["omega"][pt], *A))
        c.update(h=xp.stack([c["h1"], c["h2"]], axis=1), V=xr[:, 2], q=xr[:, 0], sigma=sig,
                 T_list=[c[t] for t in Tk])
        return c

    def fgh(y: Any, c: Mapping[str, Any], rows: Any):
        out = k["prox_fgh"](xp, sp_, y[:, 0], y[:, 1], c["h1"][rows], c["h2"][rows], c["V"][rows],
                            c["sigma"][rows], *(c[t][rows] for t in Tk))
        g = xp.stack([out["g1"], out["g2"]], axis=1)
        H = xp.stack([out["H11"], out["H12"], out["H12"], out["H22"]], axis=1).reshape(-1, 2, 2)
        return out["M"], g, H

    def integrands(y: Any, c: Mapping[str, Any], z: Any, xr: Any, pt: Any) -> dict:
        T = [c[t] for t in Tk]
        I = dict(k["hat_integrands"](xp, sp_, y[:, 0], y[:, 1], c["h1"], c["h2"], z[:, 0], z[:, 1], z[:, 2],
                                     z[:, 3], c["q"], c["V"], c["Vstar"], c["sigma"], *T))
        I["i_mse"] = k["mse_integrand"](xp, sp_, c["h1"], c["h2"], c["sigma"], *T)["i_mse"]
        if envelope:
            D = k["envelope_integrands"](xp, sp_, y[:, 0], y[:, 1], z[:, 0], z[:, 1], z[:, 2], z[:, 3], xr[:, 0],
                                         xr[:, 1], xr[:, 2], xr[:, 3], c["sigma"] ** 2, c["sigma"],
                                         p["omega"][pt], *A)
            I.update({nm: D[nm] for nm in ("dM_dq", "dM_dm", "dM_dV", "dM_dtheta")})
        return I

    def update(E: Mapping[str, Any], x: Any, idx: Any) -> dict:
        sig = p["sigma"][idx]
        if envelope:
            u = k["update_envelope"](xp, sp_, p["alpha"][idx], E["dM_dq"], E["dM_dm"], E["dM_dV"], E["dM_dtheta"],
                                     x[:, 0], x[:, 3], sig, sig**2, p["lam"][idx])
        else:
            u = k["update"](xp, sp_, p["alpha"][idx], E["i_mhat"], E["i_qhat"], E["i_thetahat"], E["i_Vhat"],
                            x[:, 0], x[:, 3], sig, sig**2, p["lam"][idx])
        f = k["free_energy"](xp, sp_, x[:, 0], x[:, 1], x[:, 2], x[:, 3], u["qhat"], u["mhat"], u["Vhat"],
                             u["thetahat"], sig, sig**2, p["lam"][idx], p["alpha"][idx], E["i_M"])
        return {"map": xp.stack([u["q_new"], u["m_new"], u["V_new"], u["theta_new"]], axis=1),
                "qhat": u["qhat"], "mhat": u["mhat"], "vhat": u["Vhat"], "thetahat": u["thetahat"],
                "phi": f["phi"], "mse": E["i_mse"], "train_loss": E["i_loss"]}

    def starts(c: Mapping[str, Any]) -> list:
        # S(x) = S(−x): the loss has two mirror wells; Newton from h and from −h reaches both
        return [c["h"], -c["h"]]

    sig2 = p["sigma"] ** 2

    def inside(x: Any, idx: Any) -> Any:
        return (x[:, 0] > 0) & (x[:, 2] > 0) & (x[:, 3] ** 2 < sig2[idx] * x[:, 0])

    compiled = None
    if _use_compiled(o, xp):
        compiled = _node_loop_r1(model, p, o, envelope)
    return SaddleProblem(4, channel, fgh, integrands, update, starts, inside, (), PositionalSemantic.state,
                         compiled=compiled)


def _use_compiled(o: Mapping[str, Any], xp: Any) -> bool:
    """Option ``engine``: the compiled loop where asked (an error if it cannot run), or for
    ``auto`` where Numba imports and the arrays are NumPy's."""
    from numerics import compiled as nc

    eng = o.get("engine", "auto")
    if eng == "array":
        return False
    ok = nc.available() and xp is np
    if eng == "compiled" and not ok:
        raise ValueError("option 'engine' = 'compiled' needs Numba (pip install numba) and the NumPy "
                         "backend; use engine='array' or 'auto'")
    return ok


def _compiled_programs(envelope: bool) -> tuple[str, ...]:
    """The programs the compiled loop links (``numba`` target), for option ``hats``."""
    return ("channel", "prox_fgh") + (("envelope_node_integrands",) if envelope else ("hat_integrands", "mse_integrand"))


#: the per-point parameters of the compiled loop, in the order the linking code reads them
_PAR = ("sigma", "omega", "a11", "a12", "a21", "a22")


def _node_loop_r1(model: PositionalSemantic, p: Mapping[str, Any], o: Mapping[str, Any],
                  envelope: bool) -> Any:
    """The (2, 1) model's per-node step as one compiled loop: its ``numba``-target kernels linked
    (:mod:`derive.codegen.link`) by argument name to the loop's arrays -- ``x = (q, m, V, θ)``,
    ``par`` = :data:`_PAR`, ``z = (ξ₁, ξ₂, w₁, w₂)``, the channel buffer ``c = (h₁, h₂, V, σ,
    T₁₁, T₁₂, T₂₁, T₂₂, V_*)`` -- with the starts ``h`` and ``−h`` (the mirror wells)."""
    from numerics.compiled import NodeLoop

    from ..codegen.link import call, load_module, module_source, node_glue

    k = {n: model.kernel(n, "numba") for n in _compiled_programs(envelope)}
    z = {"xi1": "z[0]", "xi2": "z[1]", "w1": "z[2]", "w2": "z[3]"}
    A = {"a11": "par[2]", "a12": "par[3]", "a21": "par[4]", "a22": "par[5]"}
    T = {"T11": "c[4]", "T12": "c[5]", "T21": "c[6]", "T22": "c[7]"}
    ch_call, ch = call(k["channel"], {**z, "q": "x[0]", "m": "x[1]", "theta": "x[3]", "rho": "par[0] * par[0]",
                                      "omega": "par[1]", **A})
    fgh_call, f = call(k["prox_fgh"], {"x1": "y0", "x2": "y1", "h1": "c[0]", "h2": "c[1]", "V": "c[2]",
                                       "sigma": "c[3]", **T})
    if envelope:  # what the envelope update reads, one fused program
        env_call, outs = call(k["envelope_node_integrands"], {
            "x1": "y0", "x2": "y1", "h1": "c[0]", "h2": "c[1]", **z, "q": "x[0]", "m": "x[1]", "V": "x[2]",
            "theta": "x[3]", "rho": "par[0] * par[0]", "sigma": "par[0]", "omega": "par[1]", **A, **T})
        calls = [env_call]
    else:
        hat_call, hi = call(k["hat_integrands"], {"x1": "y0", "x2": "y1", "h1": "c[0]", "h2": "c[1]", **z,
                                                  "q": "x[0]", "V": "c[2]", "Vstar": "c[8]", "sigma": "c[3]", **T})
        mse_call, mi = call(k["mse_integrand"], {"h1": "c[0]", "h2": "c[1]", "sigma": "c[3]", **T})
        outs = {**hi, **mi}
        calls = [hat_call, mse_call]
    chan_slots = [ch["h1"], ch["h2"], "x[2]", "par[0]", ch["T11"], ch["T12"], ch["T21"], ch["T22"], ch["Vstar"]]
    glue = node_glue((ch_call, chan_slots), [("c[0]", "c[1]"), ("-c[0]", "-c[1]")],  # h and −h
                     (fgh_call, [f[o] for o in ("M", "g1", "g2", "H11", "H12", "H22")]), (calls, list(outs.values())))
    mod = load_module("positional_semantic", module_source(list(k.values()), glue))
    A_vals = [a for row in o["A"] for a in row]
    P = int(p["alpha"].shape[0])
    par = np.column_stack([np.asarray(p["sigma"], float), np.asarray(p["omega"], float)]
                          + [np.full(P, a) for a in A_vals])
    # the prox objective's symmetries as permutations of the channel buffer and of (y0, y1)
    slots = (h1, h2, V, sigma, T11, T12, T21, T22, Vstar)
    sym = [([slots.index(sub.get(sv, sv)) for sv in slots], [1.0] * len(slots),
            [(x1, x2).index(sub.get(yv, yv)) for yv in (x1, x2)], [1.0, 1.0]) for sub in model.prox_symmetries]
    # the rule's orbits (replica_rule closes each replica: base block, then its images)
    orbit = {"positional": 2, "semantic": 2}.get(o["branch"], 4) if o["quadrature"] == "qmc" else 1
    return NodeLoop(mod, tuple(outs), len(chan_slots), 2, par, threads=o.get("threads"), orbit=orbit,
                    symmetries=sym)


def _outputs_r1(res: SaddleResult, X: np.ndarray, xp: Any) -> dict[str, Any]:
    """Observables of the (2, 1) model; ``Q → −Q`` maps (m, θ) → (−m, −θ): the representative
    with θ ≥ 0 (and m ≥ 0 where θ = 0) is reported, as in the authors' tables."""
    out = {"q": X[:, 0], "m": X[:, 1], "v": X[:, 2], "theta": X[:, 3]}
    for k in ("qhat", "mhat", "vhat", "thetahat", "mse", "phi", "train_loss"):
        out[k] = np.asarray(res.obs[k])
    tiny = 1e-8  # θ below this is zero up to round-off and the 1e-10 stopping rule
    flip = (out["theta"] < -tiny) | ((np.abs(out["theta"]) <= tiny) & (out["m"] < 0))
    for k in ("m", "theta", "mhat", "thetahat"):
        out[k] = np.where(flip, -out[k], out[k])
    out["free_energy"] = -out["phi"]
    return {k: xp.asarray(v) for k, v in out.items()}


def _max_relative_error(out: Mapping[str, Any], names: tuple[str, ...]) -> Any:
    """max over the order parameters, mse and Φ of |error| / |value| (absolute where the value
    vanishes by symmetry, |value| < 1e-8)."""
    errs = []
    for nm in tuple(names) + ("mse", "phi"):
        v = np.abs(np.asarray(out[nm], dtype=float))
        e = np.asarray(out[f"{nm}_err"], dtype=float)
        errs.append(np.where(v > 1e-8, e / np.maximum(v, 1e-300), e))
    return np.max(np.stack(errs), axis=0)


def baseline_mse(model: PositionalSemantic, driver: SaddleDriver, problem: SaddleProblem,
                 L: int, r: int, xp: Any, sp_: Any, sigma: Any, n_gh: int = 48) -> Any:
    """MSE of the linear positional baseline Ŵ = E T (§5) at every point: the generated
    ``baseline`` program on E T and E ΣT² over t ~ N(0, ρ I) (θ = 0, m = 0, q = 1: the channel
    kernel at ξ = 0), smooth in w: tensor Gauss–Hermite."""
    spec = None if (L, r) == (2, 1) else model.general(L, r)
    rs = 1 if spec is None else spec.rs
    dimw = L * rs
    rule = gauss_hermite(n_gh if dimw <= 2 else 8, dimw).pruned(1e-14)
    n = driver.P
    dim = driver.nodes.shape[-1]
    z = np.zeros((rule.size, dim))
    z[:, dim - dimw:] = rule.nodes
    pt = xp.repeat(xp.arange(n), rule.size)
    zz = xp.asarray(np.tile(z, (n, 1)))
    names = model.state_names(L, r)
    # q = I, V = I, m = 0, θ = 0: the teacher channel alone, t ~ N(0, ρ I)
    x_unit = np.array([1.0 if (nm in ("q", "v") or (nm[:2] in ("q_", "v_") and nm[-1] == nm[-2])) else 0.0
                       for nm in names])
    xr = xp.asarray(np.tile(x_unit[None, :], (n * rule.size, 1)))
    c = problem.channel(xr, pt, zz)
    Tn = c["T_list"]
    W = xp.asarray(rule.weights)[None, :]
    ET = [(t.reshape(n, rule.size) * W).sum(axis=1) for t in Tn]
    ETT = sum((t.reshape(n, rule.size) ** 2 * W).sum(axis=1) for t in Tn)
    kb = model.kernel("baseline") if spec is None else spec.kernel("baseline")
    return kb(xp, sp_, *ET, ETT, sigma)["mse_linear"]


#: the registry entry (see derive/models/__init__.py)
MODEL = PositionalSemantic
