r"""Sparse-token classification by single-layer attention.

H. Barnfield, H. Cui, Y. M. Lu, *High-Dimensional Analysis of Single-Layer Attention for
Sparse-Token Classification*, arXiv:2509.25153 (ICLR 2026). Section numbers (§) refer to the
project spec ``shared/specs/sparse_token.md``; the paper's full text was not available, so
every formula below that is not tagged ``paper`` was derived here and is tested against
simulation (see the docs page and ``tests/test_sparse_token_*.py``).

Data (§1.1, paper): $X\in\mathbb R^{L\times d}$, $X=\theta\,y^+ v\xi^\top+Z$, $\|\xi\|=1$,
$v$ a uniformly random $R$-subset of the $L$ positions, $\mathbb P(y=+1)=\pi$.
Classifier (§1.2, paper): $f_q(X)=X^\top\operatorname{softmax}(\beta Xq)$,
$\hat y=\operatorname{sign}(w^\top f_q(X)+b)$. Baselines (§1.3, paper): vectorised
$\langle W,X\rangle_F+b$ and pooled $w^\top\bar x+b$.

What is computed, as functions of the control parameters:

* long-sequence oracle errors (§2): the pooled/vectorised Bayes error (closed form) and the
  error of the max-detector $\max_\ell x_\ell^\top\xi$, the $\tau\to\infty$ limit of the attention
  oracle $q=\tau\xi$, $w=\xi$ (an upper bound on the attention oracle error; closed form up to a
  scalar root for the optimal threshold);
* the alignment after the two gradient steps (§3.2, Thm 3 / Cor. 1): $\langle w^{(1)},\xi\rangle$,
  $\|w^{(1)}\|$, $\langle q^{(2)},\xi\rangle$, $\|q^{(2)}\|$ and the cosines, with the 1-D Gaussian
  expectations over the step-3 pre-activation done by a Gauss–Hermite rule applied to a
  generated integrand kernel;
* the capacity (§3.4, Conj. 1): the Gardner/Cover formula with heterogeneous margins; for the
  pooled baseline a 2-parameter maximisation (batched Newton on the SymPy gradient and Hessian),
  for the vectorised one $L$ times it, for attention a 3-parameter maximisation of a Monte-Carlo
  average over the $L$ token scores (:meth:`SparseToken.attention_capacity`).
"""
from __future__ import annotations

import math
from functools import cached_property
from typing import Any, Mapping

import mpmath
import numpy as np
import sympy as sp

from numerics.backend import Backend, get_backend
from numerics.quadrature import gauss_hermite
from numerics.results import Status
from numerics.roots import bracketed_root

from sympy.codegen.cfunctions import expm1, log1p

from ...codegen import Program
from ...codegen.functions import LogAddExp, Softplus
from ...declarations import (Observable, Option, check_real_array, declare, init_option,
                            stability_option)
from ...model import Equation, Model, SimulationResult
from .readout import readout_programs
from ...params import Domain, Parameter, nonnegative, positive
from .statement import (A, B2, C, CLASSIFIERS, Eh2_m, Eh2_p, Eh_m, Eh_p, J, Jb, Jbb, Jt, Jtb,
                        Jtt, KERNEL_PARAMS, L, LOSS_NAMES, PARAMETERS, Phi, QUANTITIES, R,
                        READOUT_DEFAULTS, READOUT_OBS, S0_s, S1_s, S2_s, SYMBOL_NAMES, Sv_s,
                        TWO_STEP_OBS, X_s, Z_s, a_, alpha0, alpha1, alpha_pool, alpha_vec,
                        att_r_s, att_score_s, attn_s, b1, bb, beta, bq_s, c_m, c_p, cos_w, e2_s,
                        e_max, e_pool, e_s, e_vec, eta_q, eta_w, ev_s, ex_s, fq_s, g_max,
                        gardner_F, gp_max, h2_m, h2_p, h_m, h_p, hbar, kap_s, lam, log1mQ,
                        logPhi_m, log_Phi, loss, loss_prime, m1, mu, mu_m, mu_p, nu_s, phi, pi,
                        pool_s, q_norm, q_xi, rho_s, s_q, sc_s, shift_s, sigma1, t0, t_m, t_tok,
                        theta, u2, v_tok, vec_s, vecr_s, vxi_s, wq, xbar_s, y, yp_s, yplus_s,
                        zeta)

__all__ = ["SparseToken", "MODEL"]


class SparseToken(Model):
    """Single-query attention vs linear baselines on sparse-token data (Barnfield, Cui, Lu)."""

    name = "sparse-token"
    title = "Sparse-token classification by single-layer attention (Barnfield, Cui, Lu 2025)"
    paper = "arXiv:2509.25153 (ICLR 2026)"
    parameters = PARAMETERS
    symbol_names = SYMBOL_NAMES
    observables = TWO_STEP_OBS + READOUT_OBS + ("alpha_attn", "alpha_attn_sem", "stability")
    #: the trained-readout RS fixed point (quantity='readout') is the model's fixed point
    state = ("m", "Q", "V", "w_q", "b")
    #: ``quantity``: 'two_step' (alignment, oracles, baseline capacities: closed forms and
    #: roots), 'readout' (trained readout, RS fixed point; also computes 'two_step'),
    #: 'capacity_attention' (Monte-Carlo Gardner maximisation); ``classifier`` for 'readout';
    #: ``query``: None (beta_q = beta |q2|, s_q from the two steps at each point) or a fixed
    #: (beta_q, s_q); ``n_mc``/``mc_seed``: Monte-Carlo latent samples per class; ``gh``:
    #: Gauss–Hermite order of the readout; ``init``/``stability``: fixed-point protocol.
    options = {"loss": "logistic", "quantity": "two_step", "classifier": "attention",
               "query": None, "n_mc": 4000, "mc_seed": 0, "gh": 24, "init": None,
               "stability": False}
    #: domains of the options (validated before the solver runs; :mod:`derive.declarations`)
    option_info = declare(
        Option("loss", "logistic", "training loss: 'logistic' or 'square' (or the codes 0 / 1)",
               check=lambda v: v if isinstance(v, str) else check_real_array("loss", allow_nan=False)(v)),
        Option("quantity", "two_step", "what to compute", kind="choice", choices=QUANTITIES),
        Option("classifier", "attention", "trained readout of quantity='readout'", kind="choice",
               choices=CLASSIFIERS),
        Option("query", None, "None (from the two steps) or a fixed (beta_q > 0, s_q in [-1, 1])",
               allow_none=True, check=lambda v: tuple(check_real_array("query", allow_nan=False)(v)
                                                      .reshape(-1).tolist()), cli=False),
        Option("n_mc", 4000, "Monte-Carlo latent samples per class", kind="int",
               domain=Domain(100, 200_000, True, True, integer=True)),
        Option("mc_seed", 0, "seed of the Monte-Carlo samples", kind="int",
               domain=Domain(0, 2**63 - 1, True, True, integer=True)),
        Option("gh", 24, "Gauss–Hermite order of the readout", kind="int",
               domain=Domain(4, 200, True, True, integer=True)),
        init_option(("m", "Q", "V", "w_q", "b")),
        stability_option(),
    )
    #: physical ranges: errors are probabilities, cosines in [-1, 1], norms and capacities >= 0;
    #: readout observables exist for quantity='readout', attention capacities for
    #: quantity='capacity_attention' (NaN, not computed, otherwise)
    observable_info = declare(
        Observable("m1", "step-1 readout overlap", "m_1", "1"),
        Observable("u2", "step-2 query norm squared part", "u_2", "1", 0.0),
        Observable("cos_w", "cosine of the readout with the signal", r"\cos w", "1", -1.0, 1.0),
        Observable("q_xi", "query overlap with the signal", r"q_\xi", "1"),
        Observable("q_norm", "query norm", r"\|q\|", "1", 0.0),
        Observable("s_q", "query alignment", "s_q", "1", -1.0, 1.0),
        Observable("e_pool", "oracle error of the pooled classifier", r"E^*_{\rm pool}", "1", 0.0, 1.0),
        Observable("e_vec", "oracle error of the vectorised classifier", r"E^*_{\rm vec}", "1", 0.0, 1.0),
        Observable("e_attn_max", "oracle error of attention (max over bias)", r"E^*_{\rm attn}", "1", 0.0, 1.0),
        Observable("b_max", "optimal bias of the attention oracle", r"b_{\max}", "1", finite=False),
        Observable("alpha_pool", "capacity of the pooled classifier", r"\alpha^\star_{\rm pool}", "1", 0.0),
        Observable("alpha_vec", "capacity of the vectorised classifier", r"\alpha^\star_{\rm vec}", "1", 0.0),
        Observable("m_pool", "pooled-capacity order parameter tanh(t)", "m_{pool}", "1", -1.0, 1.0),
        Observable("b_pool", "pooled-capacity bias", "b_{pool}", "1"),
        *(Observable(nm, ln, sym, "1", lo, hi, computed=lambda o: o.get("quantity") == "readout")
          for nm, ln, sym, lo, hi in (
              ("m", "readout overlap with the signal", "m", -math.inf, math.inf),
              ("Q", "readout self-overlap", "Q", 0.0, math.inf),
              ("V", "readout variance", "V", 0.0, math.inf),
              ("w_q", "readout weight on the query direction", "w_q", -math.inf, math.inf),
              ("b", "readout bias", "b", -math.inf, math.inf),
              ("test_error", "test classification error of the readout", r"E_{\rm test}", 0.0, 1.0),
              ("train_loss", "training loss of the readout", r"\mathcal{L}_{\rm train}", 0.0, math.inf),
              ("train_error", "training classification error", r"E_{\rm train}", 0.0, 1.0))),
        Observable("alpha_attn", "capacity of single-query attention (Monte Carlo)", r"\alpha^\star_A",
                   "1", 0.0, optional=True, computed=lambda o: o.get("quantity") == "capacity_attention"),
        Observable("alpha_attn_sem", "Monte-Carlo standard error of alpha_attn", r"\delta\alpha^\star_A",
                   "1", 0.0, optional=True, computed=lambda o: o.get("quantity") == "capacity_attention"),
        Observable("stability", "leading eigenvalue of the Jacobian of the undamped map (real part)",
                   r"\lambda_{\max}", "1", optional=True,
                   computed=lambda o: bool(o.get("stability")) and o.get("quantity") == "readout"),
    )

    #: random-input ranges for ``verify_kernels`` / kernel tests (inside each kernel's domain)
    kernel_input_ranges = {"s_q": (-0.99, 0.99), "S0": (0.5, 3.0), "S2": (0.1, 2.0),
                           "kappa": (0.1, 2.0), "L": (2.0, 50.0), "R": (1.0, 2.0),
                           "pi": (0.05, 0.95), "theta": (0.0, 5.0), "alpha0": (0.2, 5.0),
                           "beta": (0.2, 3.0), "eta_w": (0.2, 2.0), "eta_q": (0.2, 2.0),
                           # readout programs (prox scale, V, Q > 0) and the capacity objective (D > 0)
                           "s": (0.1, 3.0), "V": (0.1, 3.0), "Q": (0.05, 3.0), "D": (0.05, 2.0),
                           "alpha1": (0.2, 5.0), "lam": (1e-3, 1.0)}

    #: Gauss–Hermite order for the step-3 expectations (error estimated against order + 20)
    gh_order = 80

    # ---- model (§1): symbolic statement of data, classifier and baselines -------------
    def model_definitions(self) -> dict[str, Any]:
        r"""The data model, attention classifier and baselines as SymPy objects (§1, paper),
        for a concrete small size (``L=3, d=2``) so that they can be displayed and tested.

        Returns matrices $X$ for $y=\pm1$, $f_q(X)$, and the three scores.
        """
        Lc, dc = 3, 2
        Zs = sp.Matrix(Lc, dc, lambda i, j: sp.Symbol(f"Z_{i}{j}"))
        xis = sp.Matrix(dc, 1, lambda i, j: sp.Symbol(f"xi_{i}"))
        vs = sp.Matrix(Lc, 1, lambda i, j: sp.Symbol(f"v_{i}"))
        qs = sp.Matrix(dc, 1, lambda i, j: sp.Symbol(f"q_{i}"))
        ws = sp.Matrix(dc, 1, lambda i, j: sp.Symbol(f"w_{i}"))
        Ws = sp.Matrix(Lc, dc, lambda i, j: sp.Symbol(f"W_{i}{j}"))
        Xp = theta * vs * xis.T + Zs
        Xm = Zs
        s = beta * Xp * qs
        ex = s.applyfunc(sp.exp)
        att = ex / sum(ex)
        fq = Xp.T * att
        xbar = Xp.T * sp.ones(Lc, 1) / Lc
        return dict(X_pos=Xp, X_neg=Xm, attention=att, f_q=fq,
                    score_attention=(ws.T * fq)[0] + bb,
                    score_pooled=(ws.T * xbar)[0] + bb,
                    score_vectorised=sum(Ws.multiply_elementwise(Xp)) + bb,
                    xbar=xbar, symbols=dict(Z=Zs, xi=xis, v=vs, q=qs, w=ws, W=Ws))

    # ---- §2: long-sequence oracles ---------------------------------------------------
    mu_def = theta * R / sp.sqrt(L)
    t0_def = mu / 2 + sp.log((1 - pi) / pi) / mu
    e_pool_def = sp.Piecewise((sp.Min(pi, 1 - pi), sp.Eq(theta, 0)),
                              (pi * Phi(t0 - mu) + (1 - pi) * Phi(-t0), True))

    @staticmethod
    def max_detector_error_def() -> sp.Expr:
        r"""$E_{\max}(b)=\pi\,\Phi(b-\theta)^R\Phi(b)^{L-R}+(1-\pi)\,(1-\Phi(b)^L)$: error of
        $\hat y=\operatorname{sign}(\max_\ell x_\ell^\top\xi-b)$ (definition)."""
        return pi * Phi(bb - theta)**R * Phi(bb)**(L - R) + (1 - pi) * (1 - Phi(bb)**L)

    @cached_property
    def max_detector_stable(self) -> dict[sp.Symbol, sp.Expr]:
        r"""$E_{\max}$ in logs (no underflow of $\Phi^L$, no cancellation in $1-\Phi^L$) and the
        optimal-threshold equation $g(b)=\log\frac{p_+(b)}{p_-(b)}-\log\frac{1-\pi}\pi=0$
        (derived: $p_\pm$ are the densities of the max, $dE_{\max}/db=\pi p_+-(1-\pi)p_-$)."""
        lP = log_Phi(bb - theta)
        l1 = log1p(-Phi(-bb))  # log Phi(b) without rounding 1 - Q(b)
        e = pi * sp.exp(R * logPhi_m + (L - R) * log1mQ) - (1 - pi) * expm1(L * log1mQ)
        ratio_log = (R * (logPhi_m - log1mQ)
                     + LogAddExp(sp.log(R) + theta * bb - theta**2 / 2 + log1mQ - logPhi_m,
                                 sp.log(L - R)) - sp.log(L))
        g = ratio_log - sp.log((1 - pi) / pi)
        return {logPhi_m: lP, log1mQ: l1, e_max: e, g_max: g}

    def max_detector_derivative_check(self) -> sp.Expr:
        """dE_max/db - (pi p_+ - (1-pi) p_-) with p_+/p_- = exp(g + log((1-pi)/pi)): should vanish."""
        E = self.max_detector_error_def()
        dE = sp.diff(E, bb)
        pm = L * Phi(bb)**(L - 1) * phi(bb)
        sub = {logPhi_m: self.max_detector_stable[logPhi_m], log1mQ: self.max_detector_stable[log1mQ]}
        ratio = sp.exp(self.max_detector_stable[g_max].xreplace(sub) + sp.log((1 - pi) / pi))
        return dE - (pi * ratio * pm - (1 - pi) * pm)

    # ---- §3.1–3.2: two gradient steps ----------------------------------------------
    @cached_property
    def step1(self) -> list[tuple[sp.Symbol, sp.Expr]]:
        r"""Readout after one step from zero, and the law of the step-3 pre-activation (§3.2),
        **derived by SymPy** (:func:`derive.models.sparse_token.twostep.step1_derived`):
        $w^{(1)}=-\frac{\eta_w}{n_0}\sum_i c_{y_i}\bar x_i$, $c_\pm=\ell'(\pm1,b^{(1)})$; the
        pre-activation of a *training* sample is $\mu_y+\sigma_1\zeta$ with its own term
        $-\eta_wc_y/(\alpha_0L)$ kept. :attr:`step1_hand` is the earlier hand form (tests: equal).
        """
        from .twostep import step1_derived

        return list(step1_derived())

    @cached_property
    def step1_hand(self) -> list[tuple[sp.Symbol, sp.Expr]]:
        """The hand-derived step 1 (kept as the reference the SymPy derivation must equal)."""
        return [
            (c_p, loss_prime(sp.Integer(1), b1)),
            (c_m, loss_prime(sp.Integer(-1), b1)),
            (m1, -eta_w * pi * c_p * theta * R / L),
            (u2, eta_w**2 * (pi * c_p**2 + (1 - pi) * c_m**2) / (alpha0 * L)),
            (cos_w, m1 / sp.sqrt(m1**2 + u2)),
            (sigma1, sp.sqrt((m1**2 + u2) / L)),
            (mu_p, b1 + m1 * theta * R / L - eta_w * c_p / (alpha0 * L)),
            (mu_m, b1 - eta_w * c_m / (alpha0 * L)),
        ]

    @cached_property
    def integrand(self) -> list[tuple[sp.Symbol, sp.Expr]]:
        r"""$h_\pm=\ell'(\pm1,\mu_\pm+\sigma_1\zeta)$ and $h_\pm^2$: the integrands of the
        step-3 Gaussian expectations $\mathbb E_\pm[h]$, $\mathbb E_\pm[h^2]$."""
        return [
            (h_p, loss_prime(sp.Integer(1), mu_p + sigma1 * zeta)),
            (h_m, loss_prime(sp.Integer(-1), mu_m + sigma1 * zeta)),
            (h2_p, h_p**2),
            (h2_m, h_m**2),
        ]

    @cached_property
    def step2(self) -> list[tuple[sp.Symbol, sp.Expr]]:
        r"""The query after its step (§3.2, Thm 3), **derived by SymPy**
        (:func:`derive.models.sparse_token.twostep.step2_general`): $A=\mathbb E[G_\xi]$,
        $B^2=\mathbb E[G_u]^2$, $C=\mathbb E[h^2\|PXw^{(1)}\|^2]/\alpha_0$ with
        $G=h\,X^\top PXw^{(1)}$; $\langle q^{(2)},\xi\rangle=-\eta_q\beta A/L$,
        $\|q^{(2)}\|=\frac{\eta_q\beta}L\sqrt{A^2+B^2+C}$, $s_q=-A/\sqrt{A^2+B^2+C}$."""
        from .twostep import step2_general

        g = step2_general()
        def col(e: sp.Expr) -> sp.Expr:  # display: one factored coefficient per expectation
            terms = sp.collect(sp.expand(e), [Eh_p, Eh_m, Eh2_p, Eh2_m], evaluate=False)
            return sp.Add(*[sp.factor(c) * k for k, c in terms.items()])

        return [
            (A, col(g["A"])),
            (B2, col(g["E_u"])**2),
            (C, col(g["C"])),
            (q_xi, -eta_q * beta * A / L),
            (q_norm, eta_q * beta / L * sp.sqrt(A**2 + B2 + C)),
            (s_q, -A / sp.sqrt(A**2 + B2 + C)),
        ]

    @cached_property
    def step2_hand(self) -> list[tuple[sp.Symbol, sp.Expr]]:
        r"""The query after its step, by hand (§3.2; [RECON ✓sim] in the spec); the reference the
        SymPy derivation :attr:`step2` must equal.

        $q^{(2)}=-\frac{\eta_q\beta}{n_0L}\sum_ih_iX_i^\top PX_iw^{(1)}$, $P=I-\frac1L\mathbf 1\mathbf 1^\top$.
        Writing $g_i=Z_iw^{(1)}$: $h_i$ depends on $g_i$ only through $\mathbf 1^\top g_i$, and
        $P$ removes that direction, so $\mathbb E[h\,Z^\top Pg]=(L-1)\mathbb E[h]\,w^{(1)}$ and
        $\mathbb E[h\,\theta^2y^+\xi v^\top Pv\,m_1]=\theta^2R(1-R/L)\pi\mathbb E_+[h]m_1\xi$; the
        rest is isotropic noise of squared norm $C$ (from $\|Z^\top P(\theta y^+m_1v+g)\|^2\approx
        d\,\|P(\theta y^+m_1v+g)\|^2$, averaged over $n_0=\alpha_0d$ samples).
        """
        return [
            (hbar, pi * Eh_p + (1 - pi) * Eh_m),
            (A, m1 * ((L - 1) * hbar + theta**2 * R * (1 - R / L) * pi * Eh_p)),
            (B2, ((L - 1) * hbar)**2 * u2),
            (C, (pi * Eh2_p * (theta**2 * m1**2 * R * (1 - R / L) + (L - 1) * (m1**2 + u2))
                 + (1 - pi) * Eh2_m * (L - 1) * (m1**2 + u2)) / alpha0),
            (q_xi, -eta_q * beta * A / L),
            (q_norm, eta_q * beta / L * sp.sqrt(A**2 + B2 + C)),
            (s_q, -A / sp.sqrt(A**2 + B2 + C)),
        ]

    # ---- §3.4: capacity -------------------------------------------------------------
    @cached_property
    def pooled_capacity_objective(self) -> sp.Expr:
        r"""$J(t,b)=\log[\pi F(b+m\mu)+(1-\pi)F(-b)]-\log(1-m^2)$, $m=\tanh t$: minimising $J$
        maximises $\alpha^\star_{\rm pool}=e^{-J}$ (Gardner, heterogeneous margins; derived)."""
        m = sp.tanh(t_m)
        log_one_minus_m2 = -2 * (LogAddExp(t_m, -t_m) - sp.log(2))  # log sech^2 t
        D = pi * gardner_F(bb + m * mu) + (1 - pi) * gardner_F(-bb)
        return sp.log(D) - log_one_minus_m2

    @cached_property
    def attention_capacity_terms(self) -> dict[sp.Symbol, sp.Expr]:
        r"""Per-sample Gardner term $F(y(w_q\rho+b+m\nu)/\kappa)$ for attention features
        $f_q=\rho\hat q+\nu\xi_\perp+\kappa g'$ (derived), with its gradient and Hessian in
        $(t,w_q,b)$, $m=\tanh t$. $\alpha^\star_A=\max(1-m^2)/\mathbb E_\omega[F]$."""
        m = sp.tanh(t_m)
        arg = y * (wq * rho_s + bb + m * nu_s) / kap_s
        return {sp.Symbol("F"): gardner_F(arg)}

    @cached_property
    def attention_feature_terms(self) -> dict[str, list[tuple[sp.Symbol, sp.Expr]]]:
        r"""Attention features of a latent sample $\omega=(y,t)$ for the query $q=Q_q\hat q$,
        $s_q=\cos(q,\xi)$, $\beta_q=\beta Q_q$ (§3.3, definition): token projections on $\hat q$
        are $x_\ell=\theta y^+s_qv_\ell+t_\ell$, $a=\operatorname{softmax}(\beta_q x)$,
        $\rho=\langle a,x\rangle$, $\nu=\theta y^+\sqrt{1-s_q^2}\langle a,v\rangle$,
        $\kappa=\|a\|$. Per token: $e_\ell=e^{\beta_qx_\ell-\text{shift}}$ and $e_\ell x_\ell$,
        $e_\ell v_\ell$, $e_\ell^2$ (``token``); the sums over tokens are generic reductions;
        ``features`` maps the sums $S_0,S_1,S_v,S_2$ to $(\rho,\nu,\kappa)$."""
        x = theta * yp_s * s_q * v_tok + t_tok
        token = [(sc_s, bq_s * x), (e_s, sp.exp(sc_s - shift_s)), (ex_s, e_s * x),
                 (ev_s, e_s * v_tok), (e2_s, e_s**2)]
        feats = [(rho_s, S1_s / S0_s), (nu_s, theta * yp_s * sp.sqrt(1 - s_q**2) * Sv_s / S0_s),
                 (kap_s, sp.sqrt(S2_s) / S0_s)]
        return {"token": token, "features": feats}

    # ---- programs ---------------------------------------------------------------------
    def programs(self) -> dict[str, Program]:
        P = (L, R, pi, theta, beta, eta_w, eta_q, alpha0, b1, loss)
        st = self.max_detector_stable
        Jexpr = self.pooled_capacity_objective
        vars2 = (t_m, bb)
        grad = [sp.diff(Jexpr, v) for v in vars2]
        hess = [[sp.diff(gv, v) for v in vars2] for gv in grad]
        Fatt = self.attention_capacity_terms[sp.Symbol("F")]
        vars3 = (t_m, wq, bb)
        Fs = sp.symbols("F F_t F_wq F_b F_tt F_twq F_tb F_wqwq F_wqb F_bb")
        g3 = [sp.diff(Fatt, v) for v in vars3]
        h3 = [sp.diff(g3[i], vars3[j]) for i in range(3) for j in range(3) if j >= i]
        return {
            "step1": Program("sparse_step1", P, tuple(self.step1),
                             (c_p, c_m, m1, u2, cos_w, sigma1, mu_p, mu_m),
                             doc="Readout step: overlap, norm, pre-activation law (§3.2)."),
            "integrand": Program("sparse_step2_integrand", (zeta, L, R, pi, theta, eta_w,
                                                            alpha0, b1, loss),
                                 tuple([(a, e) for a, e in self.step1 if a not in (cos_w,)]
                                       + self.integrand),
                                 (h_p, h_m, h2_p, h2_m),
                                 doc="Integrands of E_+-[h], E_+-[h^2] at the node zeta (§3.2)."),
            "alignment": Program("sparse_alignment", P + (Eh_p, Eh_m, Eh2_p, Eh2_m),
                                 tuple(self.step1 + self.step2),
                                 (m1, u2, cos_w, A, B2, C, q_xi, q_norm, s_q),
                                 doc="Query after its step (§3.2, Thm 3)."),
            "oracle_pool": Program("sparse_oracle_pool", (L, R, pi, theta),
                                   ((mu, self.mu_def), (t0, self.t0_def), (e_pool, self.e_pool_def),
                                    (e_vec, e_pool)), (mu, e_pool, e_vec),
                                   doc="Bayes error of the pooled statistic (§2.2)."),
            "max_detector": Program("sparse_max_detector", (bb, L, R, pi, theta),
                                    ((logPhi_m, st[logPhi_m]), (log1mQ, st[log1mQ]),
                                     (e_max, st[e_max]), (g_max, st[g_max])), (e_max, g_max),
                                    doc="Max-detector error and optimal-threshold equation (§2.2)."),
            "max_detector_fdf": Program("sparse_max_detector_fdf", (bb, L, R, pi, theta),
                                        ((g_max, st[g_max].xreplace({logPhi_m: st[logPhi_m],
                                                                     log1mQ: st[log1mQ]})),
                                         (gp_max, sp.diff(st[g_max].xreplace(
                                             {logPhi_m: st[logPhi_m], log1mQ: st[log1mQ]}), bb))),
                                        (g_max, gp_max),
                                        doc="g(b) and g'(b) (SymPy derivative) for Newton."),
            "capacity_pool": Program("sparse_capacity_pool", (t_m, bb, L, R, pi, theta),
                                     ((mu, self.mu_def), (J, Jexpr), (Jt, grad[0]), (Jb, grad[1]),
                                      (Jtt, hess[0][0]), (Jtb, hess[0][1]), (Jbb, hess[1][1])),
                                     (J, Jt, Jb, Jtt, Jtb, Jbb),
                                     doc="Pooled capacity objective, gradient, Hessian (§3.4)."),
            "attention_token": Program(
                "sparse_attention_token", (t_tok, v_tok, yp_s, theta, s_q, bq_s, shift_s),
                tuple(self.attention_feature_terms["token"]), (sc_s, e_s, ex_s, ev_s, e2_s),
                doc="Per-token softmax terms of the attention features (§3.3)."),
            "attention_features": Program(
                "sparse_attention_features", (S0_s, S1_s, Sv_s, S2_s, yp_s, theta, s_q),
                tuple(self.attention_feature_terms["features"]), (rho_s, nu_s, kap_s),
                doc="rho, nu, kappa from the token sums (§3.3)."),
            "capacity_attention": Program("sparse_capacity_attention",
                                          (t_m, wq, bb, y, rho_s, nu_s, kap_s),
                                          tuple(zip(Fs, [Fatt] + g3 + h3)), Fs,
                                          doc="Per-sample Gardner term for attention features, "
                                              "gradient, Hessian (§3.4)."),
            "capacity_objective": self.capacity_objective_program,
            **{f"readout_{k}": p for k, p in readout_programs().items()},
        }

    @cached_property
    def capacity_objective_program(self) -> Program:
        r"""$J(t,w_q,b)=\log D-\log(1-\tanh^2t)$ with $D=\mathbb E_\omega F$ (§3.4): its gradient and
        Hessian from those of $D$ by SymPy differentiation of $J$ with $D$ an undefined function
        of $(t,w_q,b)$ (chain rule derived, not typed). Inputs: $t$ and the averages
        $D,\partial D,\partial^2D$ (upper triangle); outputs $J$, $\nabla J$, $\nabla^2J$."""
        th = (t_m, wq, bb)
        Df = sp.Function("D")(*th)
        Jx = sp.log(Df) - 2 * (sp.log(2) - LogAddExp(t_m, -t_m))  # log(1 - tanh^2 t) = 2 log(2/(e^t + e^-t))
        tags = ("t", "wq", "b")
        D0 = sp.Symbol("D")
        d1 = {i: sp.Symbol(f"D_{tags[i]}") for i in range(3)}
        d2 = {(i, j): sp.Symbol(f"D_{tags[i]}{tags[j]}") for i in range(3) for j in range(i, 3)}
        repl = {}
        for (i, j), sym in d2.items():
            repl[sp.Derivative(Df, th[i], th[j]) if i != j else sp.Derivative(Df, (th[i], 2))] = sym
        for i, sym in d1.items():
            repl[sp.Derivative(Df, th[i])] = sym

        def lower(e: sp.Expr) -> sp.Expr:
            e = e.doit()
            e = e.replace(lambda x: isinstance(x, sp.Derivative),
                          lambda x: repl[sp.Derivative(Df, *x.variables)] if sp.Derivative(
                              Df, *x.variables) in repl else repl[sp.Derivative(Df, *reversed(x.variables))])
            return e.subs(Df, D0)

        outs = [(sp.Symbol("J_att"), Jx.subs(Df, D0))]
        outs += [(sp.Symbol(f"J_{tags[i]}"), lower(sp.diff(Jx, th[i]))) for i in range(3)]
        outs += [(sp.Symbol(f"J_{tags[i]}{tags[j]}"), lower(sp.diff(Jx, th[i], th[j])))
                 for i in range(3) for j in range(i, 3)]
        return Program("sparse_capacity_objective", (t_m, D0, *d1.values(), *d2.values()),
                       tuple(outs), tuple(o for o, _ in outs),
                       doc="log-average capacity objective, gradient and Hessian by the chain rule "
                           "(derived by SymPy, §3.4)")

    def equations(self) -> list[Equation]:
        E = self.max_detector_error_def()
        eqs = [
            Equation("data", X_s, theta * yplus_s * vxi_s + Z_s, "paper", "§1.1",
                     "v: uniformly random R-subset of the L positions; P(y = +1) = pi"),
            Equation("attention features", fq_s, attn_s, "paper", "§1.2"),
            Equation("attention classifier", att_score_s, att_r_s, "paper", "§1.2"),
            Equation("pooled baseline", pool_s, sp.sign(sp.Symbol("w^T") * xbar_s + bb), "paper",
                     "§1.3", "x_bar = X^T 1 / L"),
            Equation("vectorised baseline", vec_s, vecr_s, "paper", "§1.3"),
            Equation("pooled mean signal", mu, self.mu_def, "derived", "§2.2",
                     "pooled/vectorised score ~ N(mu y+, 1)"),
            Equation("Bayes threshold", t0, self.t0_def, "derived", "§2.2"),
            Equation("pooled/vectorised oracle error", e_pool, self.e_pool_def, "derived", "§2.2"),
            Equation("max-detector error", e_max, E, "definition", "§2.2"),
            Equation("optimal max-detector threshold", g_max,
                     self.max_detector_stable[g_max], "derived", "§2.2", "root of g(b) = 0"),
        ]
        by = "obtained by SymPy in derive/models/sparse_token/twostep.py; equals the hand form"
        eqs += [Equation(f"step 1: {lhs}", lhs, rhs, "derived", "§3.2", by) for lhs, rhs in self.step1]
        eqs += [Equation(f"integrand {lhs}", lhs, rhs, "derived", "§3.2") for lhs, rhs in self.integrand]
        eqs += [Equation(f"step 2: {lhs}", lhs, rhs, "derived", "§3.2, Thm 3",
                         by if lhs in (A, B2, C) else "") for lhs, rhs in self.step2]
        eqs += [
            Equation("Gardner term", sp.Symbol("F(a)"), gardner_F(a_), "derived", "§3.4",
                     "= E[(G - a)_+^2]"),
            Equation("pooled capacity", alpha_pool,
                     sp.Symbol("max_{t,b}") * sp.exp(-self.pooled_capacity_objective),
                     "derived", "§3.4, Conj. 1"),
            Equation("vectorised capacity", alpha_vec, L * alpha_pool, "paper", "§3.4"),
        ]
        return eqs

    # ---- validation ---------------------------------------------------------------------
    def validate(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """Domains per parameter (``alpha1``, ``lam`` default to :data:`READOUT_DEFAULTS`),
        then R <= L (an R-subset of L positions)."""
        out = super().validate({**READOUT_DEFAULTS, **dict(params)})
        # over the grid (R and L may be separate dimensions): some point has R > L iff max R > min L
        Rmax, Lmin = float(np.max(out["R"])), float(np.min(out["L"]))
        if Rmax > Lmin:
            raise ValueError(f"parameter 'R' (informative tokens) = {Rmax:g} exceeds "
                             f"'L' = {Lmin:g} at a point of the grid: R must be in [1, L]")
        return out

    # ---- numeric pipeline -------------------------------------------------------------
    def step2_expectations(self, params: Mapping[str, Any], backend: Backend,
                           order: int | None = None) -> tuple[dict[str, Any], Any]:
        """E_+-[h], E_+-[h^2] by Gauss–Hermite on the generated integrand; returns the
        expectations and an error estimate (|GH(n) - GH(n + 20)|, max over the four)."""
        xp, sp_ = backend.xp, backend.special
        n = order or self.gh_order
        k = self.kernel("integrand")
        args = [params[nm] for nm in ("L", "R", "pi", "theta", "eta_w", "alpha0", "b1", "loss")]
        res = []
        for nn in (n, n + 20):
            rule = gauss_hermite(nn, 1).to(xp)
            zn = rule.nodes[:, 0][:, None]
            with np.errstate(all="ignore"):
                o = k(xp, sp_, zn, *[a[None, :] for a in args])
            res.append({nm: xp.tensordot(rule.weights, xp.broadcast_to(o[nm], (zn.shape[0],
                                                                               args[0].shape[0])),
                                         axes=(0, 0))
                        for nm in ("h_p", "h_m", "h2_p", "h2_m")})
        err = xp.max(xp.stack([xp.abs(res[1][nm] - res[0][nm]) for nm in res[0]]), axis=0)
        return res[1], err

    def _max_detector(self, params: Mapping[str, Any], backend: Backend) -> dict[str, Any]:
        xp, sp_ = backend.xp, backend.special
        args = tuple(params[nm] for nm in ("L", "R", "pi", "theta"))
        k = self.kernel("max_detector")
        fdf_k = self.kernel("max_detector_fdf")
        th = args[3]
        # a sign change of g on a coarse grid of thresholds (g -> -inf / +inf at b -> -+inf)
        lo_b = xp.full(th.shape, -8.0)
        hi_b = th + 10.0
        grid = xp.linspace(0.0, 1.0, 257)[:, None]
        bs = lo_b[None, :] + grid * (hi_b - lo_b)[None, :]
        with np.errstate(all="ignore"):
            gv = k(xp, sp_, bs, *[a[None, :] for a in args])["g_max"]
        pos = xp.isfinite(gv) & (gv > 0)
        first = xp.argmax(pos, axis=0)
        ok = xp.any(pos, axis=0) & (first > 0)
        idx = xp.arange(bs.shape[1])
        hi = bs[first, idx]
        lo = bs[xp.maximum(first - 1, 0), idx]
        ok &= xp.isfinite(gv[xp.maximum(first - 1, 0), idx])

        def f(b: Any, *a: Any) -> Any:
            return k(xp, sp_, b, *a)["g_max"]

        def fdf(b: Any, *a: Any) -> tuple[Any, Any]:
            o = fdf_k(xp, sp_, b, *a)
            return o["g_max"], o["gp_max"]

        res = bracketed_root(f, lo, hi, args, fdf=fdf, rtol=1e-14, backend=backend)
        with np.errstate(all="ignore"):
            e = k(xp, sp_, res.x, *args)["e_max"]
        status = xp.where(ok, res.status, int(Status.NO_BRACKET))
        # theta = 0: the max carries no information; the best rule is the constant one
        zero = th == 0
        e = xp.where(zero, xp.minimum(args[2], 1 - args[2]), e)
        status = xp.where(zero, 0, status)
        return dict(e_attn_max=e, b_max=xp.where(zero, xp.inf, res.x), status=status,
                    iterations=res.iterations, residual=res.residual)

    def _capacity_pool(self, params: Mapping[str, Any], backend: Backend,
                       gtol: float = 1e-10) -> dict[str, Any]:
        """Minimise J(t, b) at every point: ``numerics.prox.newton_minimize`` (shifted Newton,
        Armijo backtracking, active-set) with value, gradient and Hessian generated from SymPy."""
        from numerics.prox import newton_minimize

        xp, sp_ = backend.xp, backend.special
        args = tuple(params[nm] for nm in ("L", "R", "pi", "theta"))
        k = self.kernel("capacity_pool")
        n = args[0].shape[0]

        def fgh(x: Any, rows: Any) -> tuple[Any, Any, Any]:
            with np.errstate(all="ignore"):
                o = k(xp, sp_, x[:, 0], x[:, 1], *[a[rows] for a in args])
            g = xp.stack([o["J_t"], o["J_b"]], axis=1)
            H = xp.stack([xp.stack([o["J_tt"], o["J_tb"]], axis=1),
                          xp.stack([o["J_tb"], o["J_bb"]], axis=1)], axis=1)
            return o["J"], g, H

        x0 = xp.stack([xp.full(n, 0.3), xp.zeros(n)], axis=1)
        res = newton_minimize(fgh, x0, gtol=gtol, maxiter=60, xp=xp)
        # At large margins (alpha* >~ 500) F(a) = (1 + a^2) Phi(-a) - a phi(a) cancels and the
        # gradient stalls at ~1e-7 before gtol; the maximum itself is then still exact to
        # ~g^2 / H ~ 1e-12 relative, so a gradient below 1e-6 is accepted.
        ok = (res.status == int(Status.OK)) | (res.grad_norm <= 1e-6)
        status = xp.where(ok, int(Status.OK), res.status)
        a = xp.exp(-res.fun)
        return dict(alpha_pool=a, alpha_vec=args[0] * a, m_pool=xp.tanh(res.x[:, 0]),
                    b_pool=res.x[:, 1], t_pool=res.x[:, 0], status=status,
                    iterations=res.iterations, residual=res.grad_norm)

    def _two_step(self, params: Mapping[str, Any], backend: Backend) -> dict[str, Any]:
        """Alignment (§3.2), oracle errors (§2.2) and baseline capacities (§3.4) on the grid
        (``params`` carries the loss code under ``'loss'``)."""
        xp, sp_ = backend.xp, backend.special
        P = [params[nm] for nm in KERNEL_PARAMS]
        E, qerr = self.step2_expectations(params, backend)
        with np.errstate(all="ignore"):
            al = self.kernel("alignment")(xp, sp_, *P, E["h_p"], E["h_m"], E["h2_p"], E["h2_m"])
            orc = self.kernel("oracle_pool")(xp, sp_, *P[:4])
        md = self._max_detector(params, backend)
        cap = self._capacity_pool(params, backend)
        out = {nm: al[nm] for nm in ("m1", "u2", "cos_w", "q_xi", "q_norm", "s_q")}
        out.update(e_pool=orc["e_pool"], e_vec=orc["e_vec"], e_attn_max=md["e_attn_max"],
                   b_max=md["b_max"], alpha_pool=cap["alpha_pool"], alpha_vec=cap["alpha_vec"],
                   m_pool=cap["m_pool"], b_pool=cap["b_pool"])
        status = xp.where(md["status"] != 0, md["status"], cap["status"])
        status = xp.where((status == 0) & (qerr > 1e-10), int(Status.MAXITER), status)
        finite = xp.ones(P[0].shape, dtype=bool)
        for nm in ("s_q", "q_norm", "e_pool", "alpha_pool"):
            finite &= xp.isfinite(out[nm])
        status = xp.where((status == 0) & ~finite, int(Status.NONFINITE), status)
        out.update(status=status, residual=xp.maximum(cap["residual"], md["residual"]),
                   iterations=cap["iterations"] + md["iterations"])
        return out

    def validate_options(self, options: Mapping[str, Any]) -> dict[str, Any]:
        """Check ``loss``, ``quantity``, ``classifier``, ``query``, ``n_mc``, ``gh``; the loss
        is normalised to its name (the old numeric codes 0 / 1 are accepted)."""
        o = super().validate_options(options)
        lo = o["loss"]
        if isinstance(lo, str):
            if lo not in LOSS_NAMES:
                raise ValueError(f"option 'loss' = {lo!r} must be one of {sorted(LOSS_NAMES)}")
        else:
            arr = np.asarray(lo, dtype=float)
            if arr.ndim == 0:
                arr = arr.reshape(1)
            codes = set(arr.reshape(-1).tolist())
            if len(codes) != 1 or not codes <= {0.0, 1.0}:
                shown = f"{arr.reshape(-1)[0]:g}" if arr.size == 1 else repr(arr.reshape(-1).tolist())
                raise ValueError(f"option 'loss' = {shown} must be 'logistic' or 'square' (or the "
                                 f"codes 0 / 1, one value for the whole grid)")
            lo = "logistic" if codes == {0.0} else "square"
        o["loss"] = lo
        for name, allowed in (("quantity", QUANTITIES), ("classifier", CLASSIFIERS)):
            if o[name] not in allowed:
                raise ValueError(f"option {name!r} = {o[name]!r} must be one of {allowed}")
        if o["query"] is not None:
            if len(o["query"]) != 2:
                raise ValueError(f"option 'query' = {o['query']!r} must be (beta_q > 0, s_q in [-1, 1])")
            bq, sq = (float(v) for v in o["query"])
            if not (bq > 0 and -1 <= sq <= 1):
                raise ValueError(f"option 'query' = {o['query']!r} must be (beta_q > 0, s_q in "
                                 f"[-1, 1])")
            o["query"] = (bq, sq)
        for name in ("n_mc", "gh"):
            if int(o[name]) < 2:
                raise ValueError(f"option {name!r} = {o[name]!r} must be an integer >= 2")
        return o

    def evaluate(self, params: Mapping[str, Any], backend: Backend, **opts: Any) -> dict[str, Any]:
        r"""The grid pipeline. ``quantity='two_step'``: alignment (§3.2), oracle errors (§2.2),
        baseline capacities (§3.4). ``'readout'``: also the trained readout of ``classifier``
        (RS fixed point, §3.3; state :attr:`state`), the attention query taken from the two
        steps unless ``query`` is given. ``'capacity_attention'``: also $\alpha^\star_A$ (§3.4).
        Observables that a quantity does not compute are NaN."""
        o = self.validate_options(opts)
        xp = backend.xp
        n = params["L"].shape[0]
        kp = dict(params)
        kp["loss"] = xp.full(n, LOSS_NAMES[o["loss"]])
        out = self._two_step(kp, backend)
        status = out.pop("status")
        nan = xp.full(n, xp.nan)
        for nm in READOUT_OBS + ("alpha_attn", "alpha_attn_sem", "stability"):
            out[nm] = nan.copy()
        if o["quantity"] != "two_step":
            extra = self._readout(kp, out, o) if o["quantity"] == "readout" else \
                self._capacity_attention(kp, out, o)
            for k, v in extra.items():
                if k not in ("status", "converged", "iterations", "residual"):
                    out[k] = xp.asarray(v)
            status = xp.where(status != 0, status, xp.asarray(extra["status"]))
            # iterations of the requested fixed point (the two-step roots are not counted)
            out["iterations"] = xp.asarray(extra["iterations"])
            out["residual"] = xp.maximum(out["residual"], xp.asarray(extra["residual"]))
        out.update(converged=status == 0, status=status.astype(xp.int8))
        return out

    def _query(self, kp: Mapping[str, Any], two: Mapping[str, Any], o: Mapping[str, Any]) -> tuple:
        """(beta_q, s_q) per point: the fixed ``query`` option or beta |q2| and s_q."""
        n = kp["L"].shape[0]
        if o["query"] is not None:
            return np.full(n, o["query"][0]), np.full(n, o["query"][1])
        return np.asarray(kp["beta"] * two["q_norm"]), np.asarray(two["s_q"])

    def _groups(self, kp: Mapping[str, Any], bq: np.ndarray, sq: np.ndarray,
                with_query: bool) -> dict[tuple, np.ndarray]:
        """Points sharing the data law (and the query): one set of latent samples each."""
        cols = [np.asarray(kp[nm]) for nm in ("L", "R", "pi", "theta")]
        if with_query:
            cols += [bq, sq]
        keys = np.stack(cols, axis=1)
        groups: dict[tuple, list[int]] = {}
        for i, row in enumerate(keys):
            groups.setdefault(tuple(row.tolist()), []).append(i)
        return {k: np.asarray(v) for k, v in groups.items()}

    def _readout(self, kp: Mapping[str, Any], two: Mapping[str, Any],
                 o: Mapping[str, Any]) -> dict[str, np.ndarray]:
        """Trained readout (§3.3, Thm 4/5) per point, batched over points sharing the data law:
        :func:`derive.models.sparse_token.readout.solve_readout` (RS fixed point by
        ``numerics.fixed_point``). Baselines rescaled as in ``readout_errors``."""
        from .readout import attention_samples, gm_samples, solve_readout

        n = kp["L"].shape[0]
        cls = o["classifier"]
        bq, sq = self._query(kp, two, o)
        a1, lm = np.asarray(kp["alpha1"], float), np.asarray(kp["lam"], float)
        init = None if o["init"] is None else np.asarray(o["init"], float)
        if init is not None and init.ndim == 1:
            if init.shape != (5,):
                raise ValueError(f"option 'init' must have length 5 {self.state} or shape "
                                 f"({n}, 5), got shape {init.shape}")
            init = np.tile(init, (n, 1))
        if init is not None and init.shape != (n, 5):
            raise ValueError(f"option 'init' must have length 5 {self.state} or shape ({n}, 5), "
                             f"got shape {init.shape}")
        res = {k: np.full(n, np.nan) for k in READOUT_OBS + ("stability", "residual")}
        res["status"] = np.full(n, int(Status.NONFINITE), dtype=np.int8)
        res["iterations"] = np.zeros(n, dtype=np.int64)
        for key, idx in self._groups(kp, bq, sq, cls == "attention").items():
            Lv, Rv, piv, thv = key[:4]
            if cls == "attention":
                if not (np.isfinite(key[4]) and np.isfinite(key[5]) and key[4] > 0):
                    continue  # no query (two steps did not converge): flagged NONFINITE
                feats = self.attention_features(L=int(Lv), R=int(Rv), pi=piv, theta=thv,
                                                beta_q=key[4], s_q=float(np.clip(key[5], -1, 1)),
                                                n=int(o["n_mc"]),
                                                rng=np.random.default_rng(int(o["mc_seed"])))
                smp, al_, lm_ = attention_samples(feats, piv), a1[idx], lm[idx]
            else:
                smp = gm_samples(thv * Rv / math.sqrt(Lv), piv)
                al_, lm_ = (a1[idx], lm[idx] * Lv) if cls == "pooled" else (a1[idx] / Lv, lm[idx] / Lv)
            r = solve_readout(smp, al_, lm_, LOSS_NAMES[o["loss"]], gh=int(o["gh"]),
                              x0=None if init is None else init[idx], stability=bool(o["stability"]))
            for k in READOUT_OBS + ("stability", "residual", "iterations"):
                res[k][idx] = r[k]
            res["status"][idx] = np.where(r["converged"], 0, np.where(r["status"] == 0,
                                                                        int(Status.NONFINITE),
                                                                        r["status"]))
        return res

    def _capacity_attention(self, kp: Mapping[str, Any], two: Mapping[str, Any],
                            o: Mapping[str, Any]) -> dict[str, np.ndarray]:
        r"""$\alpha^\star_A$ per distinct (data law, query): :meth:`attention_capacity`."""
        n = kp["L"].shape[0]
        bq, sq = self._query(kp, two, o)
        res = dict(alpha_attn=np.full(n, np.nan), alpha_attn_sem=np.full(n, np.nan),
                   status=np.full(n, int(Status.NONFINITE), dtype=np.int8),
                   iterations=np.zeros(n, dtype=np.int64), residual=np.zeros(n))
        for key, idx in self._groups(kp, bq, sq, True).items():
            Lv, Rv, piv, thv, b_, s_ = key
            if not (np.isfinite(b_) and np.isfinite(s_) and b_ > 0):
                continue
            r = self.attention_capacity(L=int(Lv), R=int(Rv), pi=piv, theta=thv, beta_q=b_,
                                        s_q=float(np.clip(s_, -1, 1)), n_mc=int(o["n_mc"]),
                                        seed=int(o["mc_seed"]))
            res["alpha_attn"][idx] = r["alpha_attn"]
            res["alpha_attn_sem"][idx] = r["alpha_attn_sem"]
            res["status"][idx] = 0 if r["converged"] else int(Status.MAXITER)
        return res

    def random_states(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """Random readout states ``(m, Q, V, w_q, b)`` inside the map's domain (Q > 0, V > 0)."""
        return np.stack([rng.uniform(-0.5, 1.0, n), rng.uniform(0.01, 2.0, n),
                         rng.uniform(0.1, 10.0, n), rng.uniform(-1.0, 1.0, n),
                         rng.uniform(-1.0, 1.0, n)], axis=1)

    def evaluate_mp(self, point: Mapping[str, Any], dps: int = 50, *,
                    loss: str | float = "logistic") -> dict[str, Any]:
        """The two-step pipeline at one point in mpmath: expectations by ``mpmath.quad`` of
        the same integrand (the exact integral, not the Gauss–Hermite rule), roots and
        stationary points by ``mpmath.findroot`` from the float64 solution."""
        lo = self.validate_options({"loss": loss})["loss"]
        vals = self.validate(point)
        be = get_backend("numpy")
        flt = self.evaluate({k: be.asarray(np.atleast_1d(v)) for k, v in vals.items()}, be,
                            loss=lo)
        with mpmath.workdps(dps):
            mp = mpmath.mp
            vals = dict(vals, loss=LOSS_NAMES[lo])
            pv = [mpmath.mpf(float(vals[nm])) for nm in KERNEL_PARAMS]
            Lm, Rm, pim, thm, _be, etaw, _eq, a0, b1m, lossm = pv
            ki = self.kernel("integrand", "mpmath")

            def E(name: str) -> Any:
                f = lambda zz: ki(mp, zz, Lm, Rm, pim, thm, etaw, a0, b1m, lossm)[name] \
                    * mp.npdf(zz)
                return mp.quad(f, [-mp.inf, -5, 0, 5, mp.inf])

            al = self.kernel("alignment", "mpmath")(mp, *pv, E("h_p"), E("h_m"), E("h2_p"), E("h2_m"))
            out = {nm: al[nm] for nm in ("m1", "u2", "cos_w", "q_xi", "q_norm", "s_q")}
            orc = self.kernel("oracle_pool", "mpmath")(mp, Lm, Rm, pim, thm)
            out.update(e_pool=orc["e_pool"], e_vec=orc["e_vec"])
            if thm == 0:
                out.update(e_attn_max=min(pim, 1 - pim), b_max=mp.inf)
            else:
                kf = self.kernel("max_detector_fdf", "mpmath")
                b0 = mpmath.mpf(float(flt["b_max"][0]))
                bs = mp.findroot(lambda b: kf(mp, b, Lm, Rm, pim, thm)["g_max"], b0)
                out["b_max"] = bs
                out["e_attn_max"] = self.kernel("max_detector", "mpmath")(mp, bs, Lm, Rm, pim, thm)["e_max"]
            kc = self.kernel("capacity_pool", "mpmath")
            t0v = mpmath.mpf(float(np.arctanh(flt["m_pool"][0])))
            b0v = mpmath.mpf(float(flt["b_pool"][0]))
            ts, bsol = mp.findroot(lambda tt, b_: (kc(mp, tt, b_, Lm, Rm, pim, thm)["J_t"],
                                                   kc(mp, tt, b_, Lm, Rm, pim, thm)["J_b"]),
                                   (t0v, b0v))
            a = mp.exp(-kc(mp, ts, bsol, Lm, Rm, pim, thm)["J"])
            out.update(alpha_pool=a, alpha_vec=Lm * a, m_pool=mp.tanh(ts), b_pool=bsol)
            return out

    # ---- attention capacity (Monte Carlo over the token scores) ------------------------
    def attention_features(self, *, L: int, R: int, pi: float, theta: float, beta_q: float,
                           s_q: float, n: int, rng: np.random.Generator,
                           backend: Backend | None = None) -> dict[int, dict[str, Any]]:
        r"""Latent samples $\omega=(y,t)$, $t\sim\mathcal N(0,I_L)$, and their attention features
        $(\rho,\nu,\kappa)$ (§3.3) from the generated kernels ``attention_token`` /
        ``attention_features`` (:attr:`attention_feature_terms`); sums and the max-shift over
        tokens are generic reductions. Stratified: ``n`` positives and ``n`` negatives (weights
        ``pi``, ``1 - pi``); the signal sits on the first ``R`` tokens (exchangeable)."""
        be = backend or get_backend("numpy")
        xp, sp_ = be.xp, be.special
        kt, kf = self.kernel("attention_token"), self.kernel("attention_features")
        v = xp.asarray((np.arange(L) < R).astype(float))[None, :]
        out = {}
        for lab in (1, -1):
            t = be.asarray(rng.standard_normal((n, L)))
            yp = 1.0 if lab == 1 else 0.0
            sc = kt(xp, sp_, t, v, yp, theta, s_q, beta_q, 0.0)["score"]
            o = kt(xp, sp_, t, v, yp, theta, s_q, beta_q, xp.max(sc, axis=1, keepdims=True))
            sums = [xp.sum(xp.broadcast_to(o[nm], t.shape), axis=1) for nm in ("e", "ex", "ev", "e2")]
            f = kf(xp, sp_, *sums, yp, theta, s_q)
            out[lab] = {nm: xp.broadcast_to(f[nm], (n,)) for nm in ("rho", "nu", "kappa")}
        return out

    def attention_capacity(self, *, L: int, R: int, pi: float, theta: float, beta_q: float,
                           s_q: float, n_mc: int = 20000, n_rep: int = 4, seed: int = 0,
                           maxiter: int = 60) -> dict[str, float]:
        r"""$\alpha^\star_A=\max_{t,w_q,b}(1-\tanh^2t)/\mathbb E_\omega F(y(w_q\rho+b+\tanh(t)\nu)/\kappa)$
        (§3.4), on ``n_rep`` independent Monte-Carlo samples of ``n_mc`` per class, all
        minimised at once by ``numerics.prox.newton_minimize`` (one row per replica) on
        $J=\log\mathbb E_\omega F-\log(1-\tanh^2t)$, whose value, gradient and Hessian come from
        the generated per-sample kernel ``capacity_attention`` (chain rule for the log of the
        average). Returns the mean over replicas, its standard error, and the maximiser."""
        from numerics.prox import newton_minimize

        be = get_backend("numpy")
        xp, sp_ = be.xp, be.special
        k = self.kernel("capacity_attention")
        rng = np.random.default_rng(seed)
        feats = [self.attention_features(L=L, R=R, pi=pi, theta=theta, beta_q=beta_q, s_q=s_q,
                                         n=n_mc, rng=rng, backend=be) for _ in range(n_rep)]
        gnames, hnames = ("F_t", "F_wq", "F_b"), ("F_tt", "F_twq", "F_tb", "F_wqwq", "F_wqb", "F_bb")
        kj, tags = self.kernel("capacity_objective"), ("t", "wq", "b")
        iu = [(0, 0), (0, 1), (0, 2), (1, 1), (1, 2), (2, 2)]

        def fgh(x: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
            m = len(rows)
            D, g, H = np.zeros(m), np.zeros((m, 3)), np.zeros((m, 3, 3))
            for j, r in enumerate(rows):
                for lab, w in ((1, pi), (-1, 1 - pi)):
                    f = feats[int(r)][lab]
                    with np.errstate(all="ignore"):
                        o = k(xp, sp_, x[j, 0], x[j, 1], x[j, 2], float(lab), f["rho"], f["nu"],
                              f["kappa"])
                    D[j] += w * xp.mean(o["F"])
                    g[j] += w * np.array([xp.mean(o[nm]) for nm in gnames])
                    for (a, b), nm in zip(iu, hnames):
                        H[j, a, b] += w * xp.mean(o[nm])
            o = kj(xp, sp_, x[:, 0], D, *(g[:, i] for i in range(3)),
                   *(H[:, a, b] for a, b in iu))  # chain rule: generated (capacity_objective)
            gJ = np.stack([o[f"J_{t_}"] for t_ in tags], axis=1)
            HJ = np.empty((len(rows), 3, 3))
            for (a, b) in iu:
                HJ[:, a, b] = HJ[:, b, a] = o[f"J_{tags[a]}{tags[b]}"]
            return np.broadcast_to(o["J_att"], (len(rows),)).copy(), gJ, HJ

        x0 = np.tile([0.3, 0.5, 0.0], (n_rep, 1))
        res = newton_minimize(fgh, x0, gtol=1e-10, maxiter=maxiter, xp=np)
        conv = bool(np.all(res.grad_norm < 1e-7))
        v = np.exp(-res.fun)
        xm = res.x.mean(axis=0)
        return dict(alpha_attn=float(v.mean()),
                    alpha_attn_sem=float(v.std(ddof=1) / math.sqrt(len(v))) if len(v) > 1 else float("nan"),
                    m=float(math.tanh(xm[0])), w_q=float(xm[1]), b=float(xm[2]), converged=conv)

    def trained_readout(self, **kwargs: Any) -> dict[str, dict]:
        """Test error / training loss of the trained readout (§3.3, Thm 4/5): attention (given
        ``beta_q = beta |q2|`` and ``s_q``), pooled and vectorised, along ``alpha1``; see
        :func:`derive.models.sparse_token.readout.readout_errors`."""
        from .readout import readout_errors

        return readout_errors(**kwargs)

    def random_points(self, n: int, rng: np.random.Generator) -> list[dict[str, float]]:
        """Random points over a practical domain: L in [2, 1e4], R in [1, min(L, 10)],
        pi in [0.05, 0.95], theta in [0.1, 10], alpha0 in [0.1, 20], both biases (the loss is
        an option)."""
        pts = []
        for _ in range(n):
            Lv = int(10 ** rng.uniform(np.log10(2), 4))
            Rv = int(rng.integers(1, min(Lv, 10) + 1))
            piv = rng.uniform(0.05, 0.95)
            pts.append(dict(L=Lv, R=Rv, pi=piv, theta=10 ** rng.uniform(-1, 1),
                            beta=10 ** rng.uniform(-1, 1), eta_w=10 ** rng.uniform(-1, 0.5),
                            eta_q=10 ** rng.uniform(-1, 0.5), alpha0=10 ** rng.uniform(-1, 1.3),
                            b1=0.0 if rng.random() < 0.5 else math.log(piv / (1 - piv)),
                            alpha1=10 ** rng.uniform(-0.5, 1), lam=10 ** rng.uniform(-3, 0)))
        return pts

    # ---- finite-size check -----------------------------------------------------------
    def simulate(self, **kwargs: Any) -> Any:
        """Finite-d simulation (independent of this module): see
        :mod:`numerics.simulate.sparse_token`."""
        from numerics.simulate import sparse_token

        return sparse_token.simulate_alignment(**kwargs)

    def simulate_point(self, *, d: int, trials: int = 1, seed: int = 0, backend: str = "numpy",
                       loss: str = "logistic", **params: Any) -> SimulationResult:
        """The alignment after the two steps (``m1, cos_w, q_xi, q_norm, s_q``) measured by the
        independent simulator (:func:`numerics.simulate.sparse_token.simulate_alignment`) at
        dimension ``d``: mean and standard error over ``trials`` seeds."""
        from numerics.simulate import sparse_token

        v = {k: float(x) for k, x in self.validate(params).items()}
        kw = {k: v[k] for k in ("alpha0", "pi", "theta", "beta", "eta_w", "eta_q", "b1")}
        runs = [sparse_token.simulate_alignment(d=d, L=int(v["L"]), R=int(v["R"]), loss=loss,
                                                seed=seed + t, **kw) for t in range(trials)]
        names = ("m1", "cos_w", "q_xi", "q_norm", "s_q")
        mean = {k: float(np.mean([getattr(r, k) for r in runs])) for k in names}
        sem = {k: float(np.std([getattr(r, k) for r in runs], ddof=1) / math.sqrt(trials))
               if trials > 1 else float("nan") for k in names}
        return SimulationResult(self.name, dict(params), mean, sem, d, trials, seed)


#: the registry entry (see derive/models/__init__.py)
MODEL = SparseToken
