r"""Sparse-token model: the statement's parameters, symbols and SymPy building blocks.

Imported by the model (``model.py``), the two-step derivation (``twostep.py``) and the readout
programs (``readout.py``); it imports none of them (no import circle).
"""
from __future__ import annotations

import math

import sympy as sp

from ...codegen.functions import LogAddExp, Softplus  # noqa: F401 - re-exported building blocks
from ...params import Domain, Parameter, nonnegative, positive


#: loss codes (the ``loss`` parameter)
LOSSES = {0: "logistic", 1: "square"}

# ----------------------------------------------------------------------------- parameters
integer_ge1 = Domain(1.0, math.inf, lo_closed=True, integer=True)
open_unit = Domain(0.0, 1.0)
real_line = Domain(-math.inf, math.inf)
loss_codes = Domain(0.0, 1.0, lo_closed=True, hi_closed=True, integer=True)

L_P = Parameter("L", integer_ge1, "L", "sequence length (tokens)")
R_P = Parameter("R", integer_ge1, "R", "informative tokens per positive sample (R <= L)")
PI_P = Parameter("pi", open_unit, r"\pi", "class prior P(y = +1)")
THETA_P = Parameter("theta", nonnegative, r"\theta", "signal strength")
BETA_P = Parameter("beta", positive, r"\beta", "softmax inverse temperature")
ETAW_P = Parameter("eta_w", positive, r"\eta_w", "learning rate of the readout step")
ETAQ_P = Parameter("eta_q", positive, r"\eta_q", "learning rate of the query step")
ALPHA0_P = Parameter("alpha0", positive, r"\alpha_0", "samples per dimension in D0, n0/d")
B1_P = Parameter("b1", real_line, r"b^{(1)}", "step-1 bias (0, or logit(pi) = fitted bias)")
#: the loss is a model *option* (``loss='logistic'|'square'``, or the old codes 0 / 1); its
#: symbol is an input of the kernels (0 = logistic, 1 = square)
LOSS_P = Parameter("loss", loss_codes, r"\ell", "loss: 0 = logistic, 1 = square")
ALPHA1_P = Parameter("alpha1", positive, r"\alpha_1",
                     "samples per dimension for the readout, n1/d (default 2; quantity='readout')")
LAM_P = Parameter("lam", positive, r"\lambda",
                  "ridge penalty: lam d / 2 times the squared norm of w (default 1e-2; "
                  "quantity='readout')")
#: defaults of the parameters that only the trained readout uses (filled in by ``validate``)
READOUT_DEFAULTS = {"alpha1": 2.0, "lam": 1e-2}

PARAMETERS = (L_P, R_P, PI_P, THETA_P, BETA_P, ETAW_P, ETAQ_P, ALPHA0_P, B1_P, ALPHA1_P, LAM_P)
(L, R, pi, theta, beta, eta_w, eta_q, alpha0, b1, alpha1, lam) = (p.symbol for p in PARAMETERS)
loss = LOSS_P.symbol
#: the parameters of the two-step / oracle / capacity kernels, in their input order
KERNEL_PARAMS = ("L", "R", "pi", "theta", "beta", "eta_w", "eta_q", "alpha0", "b1", "loss")

TWO_STEP_OBS = ("m1", "u2", "cos_w", "q_xi", "q_norm", "s_q", "e_pool", "e_vec",
                "e_attn_max", "b_max", "alpha_pool", "alpha_vec", "m_pool", "b_pool")
READOUT_OBS = ("m", "Q", "V", "w_q", "b", "test_error", "train_loss", "train_error")
QUANTITIES = ("two_step", "readout", "capacity_attention")
CLASSIFIERS = ("attention", "pooled", "vectorised")
LOSS_NAMES = {"logistic": 0.0, "square": 1.0}

# ----------------------------------------------------------------------------- symbols
y, z = sp.symbols("y z", real=True)  # label, pre-activation
zeta = sp.Symbol("zeta", real=True)  # standard Gaussian (quadrature node)
c_p, c_m = sp.symbols("c_p c_m", real=True)
m1, u2 = sp.Symbol("m1", real=True), sp.Symbol("u2", nonnegative=True)
cos_w, sigma1 = sp.Symbol("cos_w"), sp.Symbol("sigma1", positive=True)
mu_p, mu_m = sp.symbols("mu_p mu_m", real=True)
h_p, h_m, h2_p, h2_m = sp.symbols("h_p h_m h2_p h2_m", real=True)
Eh_p, Eh_m, Eh2_p, Eh2_m = sp.symbols("Eh_p Eh_m Eh2_p Eh2_m", real=True)
hbar, A, B2, C = sp.Symbol("hbar"), sp.Symbol("A"), sp.Symbol("B2"), sp.Symbol("C")
q_xi, q_norm, s_q = sp.Symbol("q_xi"), sp.Symbol("q_norm"), sp.Symbol("s_q")
mu, t0, e_pool, e_vec = sp.Symbol("mu", nonnegative=True), sp.Symbol("t0"), *sp.symbols("e_pool e_vec")
bb = sp.Symbol("b", real=True)  # a threshold / bias
a_ = sp.Symbol("a", real=True)
e_max, g_max, gp_max = sp.symbols("e_max g_max gp_max")
logPhi_m, log1mQ = sp.symbols("logPhi_m log1mQ")
t_m = sp.Symbol("t", real=True)  # m = tanh(t)
J, Jt, Jb, Jtt, Jtb, Jbb = sp.symbols("J J_t J_b J_tt J_tb J_bb")
alpha_pool, alpha_vec = sp.symbols("alpha_pool alpha_vec")
m_cap = sp.Symbol("m_cap")
# attention capacity (per Monte-Carlo sample of the token scores)
wq, rho_s, nu_s, kap_s = sp.Symbol("w_q", real=True), sp.Symbol("rho", real=True), \
    sp.Symbol("nu", real=True), sp.Symbol("kappa", positive=True)

# attention features of one latent sample (token score t, signal indicator v, shift)
t_tok, v_tok, yp_s, bq_s, shift_s = sp.symbols("t_tok v_tok yplus beta_q shift", real=True)
sc_s, e_s, ex_s, ev_s, e2_s = sp.symbols("score e ex ev e2", real=True)
S0_s, S1_s, Sv_s, S2_s = sp.symbols("S0 S1 Sv S2", real=True)

# display-only symbols for the model's definition (§1)
X_s, Z_s, vxi_s, yplus_s = sp.symbols("X Z vxi yplus")
fq_s, attn_s, xbar_s, pool_s = sp.symbols("fqX attn xbar pooled_score")
vec_s, vecr_s, att_score_s, att_r_s = sp.symbols("vec_score vec_rhs att_score att_rhs")

SYMBOL_NAMES = {
    X_s: "X", Z_s: "Z", vxi_s: r"v\xi^\top", yplus_s: "y^+", fq_s: "f_q(X)",
    attn_s: r"X^\top\operatorname{softmax}(\beta Xq)", xbar_s: r"\bar x",
    pool_s: r"\hat y_{\rm pool}", vec_s: r"\hat y_{\rm vec}",
    vecr_s: r"\operatorname{sign}(\langle W,X\rangle_F+b)", att_score_s: r"\hat y_{\rm att}",
    att_r_s: r"\operatorname{sign}(w^\top f_q(X)+b)",
    m1: r"m_1", u2: r"u^2", cos_w: r"\cos(w^{(1)},\xi)", sigma1: r"\sigma_1",
    mu_p: r"\mu_+", mu_m: r"\mu_-", c_p: r"c_+", c_m: r"c_-", hbar: r"\bar h",
    Eh_p: r"\mathbb E_+h", Eh_m: r"\mathbb E_-h", Eh2_p: r"\mathbb E_+h^2", Eh2_m: r"\mathbb E_-h^2",
    h_p: r"h_+", h_m: r"h_-", h2_p: r"h_+^2", h2_m: r"h_-^2", B2: r"B^2",
    q_xi: r"\langle q^{(2)},\xi\rangle", q_norm: r"\|q^{(2)}\|", s_q: r"s_q",
    e_pool: r"E^*_{\rm pool}", e_vec: r"E^*_{\rm vec}", e_max: r"E_{\max}(b)", t0: r"t_0",
    g_max: r"g(b)", gp_max: r"g'(b)", alpha_pool: r"\alpha^\star_{\rm pool}",
    alpha_vec: r"\alpha^\star_{\rm vec}", zeta: r"\zeta", wq: r"w_q", rho_s: r"\rho",
    nu_s: r"\nu", kap_s: r"\kappa", logPhi_m: r"\log\Phi(b-\theta)", log1mQ: r"\log\Phi(b)",
}


# ----------------------------------------------------------------------------- building blocks
def Phi(x: sp.Expr) -> sp.Expr:
    r"""Standard normal CDF $\Phi(x)=\tfrac12\operatorname{erfc}(-x/\sqrt2)$."""
    return sp.erfc(-x / sp.sqrt(2)) / 2


def log_Phi(x: sp.Expr) -> sp.Expr:
    r"""$\log\Phi(x)$: $\log(\tfrac12\operatorname{erfc}(-x/\sqrt2))$ for $x>-30$; below, where
    erfc underflows in float64, the asymptotic series
    $-\tfrac{x^2}2-\log(-x)-\tfrac12\log2\pi+\log(1-x^{-2}+3x^{-4}-15x^{-6}+105x^{-8}-945x^{-10})$
    (relative error of the sum below $10395/x^{12}<2\cdot10^{-14}$)."""
    series = 1 - x**-2 + 3 * x**-4 - 15 * x**-6 + 105 * x**-8 - 945 * x**-10
    asym = -x**2 / 2 - sp.log(-x) - sp.log(2 * sp.pi) / 2 + sp.log(series)
    return sp.Piecewise((sp.log(Phi(x)), x > -30), (asym, True))


def phi(x: sp.Expr) -> sp.Expr:
    """Standard normal density."""
    return sp.exp(-x**2 / 2) / sp.sqrt(2 * sp.pi)


def gardner_F(x: sp.Expr) -> sp.Expr:
    r"""$F(a)=\mathbb E_G[(G-a)_+^2]=(1+a^2)\Phi(-a)-a\varphi(a)$ (derived; tested against the
    integral in mpmath)."""
    return (1 + x**2) * Phi(-x) - x * phi(x)


def loss_fn(yy: sp.Expr, zz: sp.Expr) -> sp.Expr:
    r"""$\ell(y,\hat y)$: logistic $\log(1+e^{-y\hat y})$ (``loss = 0``) or square
    $(y-\hat y)^2/2$ (``loss = 1``)."""
    return sp.Piecewise((Softplus(-yy * zz), sp.Eq(loss, 0)), ((yy - zz)**2 / 2, True))


def loss_prime(yy: sp.Expr, zz: sp.Expr) -> sp.Expr:
    r"""$\ell'(y,\hat y)=\partial_{\hat y}\ell$, by SymPy differentiation of each branch."""
    w = sp.Dummy("w", real=True)
    return sp.Piecewise(*[(sp.diff(e, w).subs(w, zz), c) for e, c in loss_fn(yy, w).args])


__all__ = sorted(n for n, v in list(globals().items())
                 if not n.startswith("_") and n not in {
                     "annotations", "math", "sp", "Domain", "Parameter", "nonnegative", "positive",
                     "LogAddExp", "Softplus"})
