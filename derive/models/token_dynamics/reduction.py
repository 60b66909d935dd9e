r"""Token dynamics: scalar parameters and symbols, and the Gram-matrix algebra of the reductions
(equiangular ansatz, spec §2.1; antiderivatives by partial fractions)."""
from __future__ import annotations

from typing import Mapping

import sympy as sp

from ...params import Domain, Parameter, nonnegative

__all__ = ["BETA_P", "N_P", "RHO0_P", "TARGET_P", "SYMBOL_NAMES", "GramVector", "gram_velocity",
           "primitive"]

# ============================================================================ scalar symbols
BETA_P = Parameter("beta", nonnegative, r"\beta", "inverse temperature")
N_P = Parameter("n", Domain(2.0, float("inf"), lo_closed=True, integer=True), "n",
                "number of tokens")
RHO0_P = Parameter("rho0", Domain(0.0, 1.0, lo_closed=True), r"\rho_0",
                   "initial pairwise inner product (equiangular start)")
TARGET_P = Parameter("target", Domain(0.0, 1.0), r"\rho_\star",
                     "inner product whose hitting time is returned")

beta, n, rho0, target = (p.symbol for p in (BETA_P, N_P, RHO0_P, TARGET_P))
rho = sp.Symbol("rho", real=True)
t = sp.Symbol("t", nonnegative=True)
gamma = sp.Symbol("gamma", positive=True)
t_sa, t_usa, rhodot_sa, rhodot_usa, rho_t = sp.symbols("t_sa t_usa rhodot_sa rhodot_usa rho_t")
cos_out = sp.Symbol("cos_out")
Fs, Gs = sp.Function("F"), sp.Function("G")

SYMBOL_NAMES = {t_sa: r"t_{\rm SA}", t_usa: r"t_{\rm USA}", rhodot_sa: r"\dot\rho_{\rm SA}",
                rhodot_usa: r"\dot\rho_{\rm USA}", rho_t: r"\rho(t)", rho0: r"\rho_0",
                target: r"\rho_\star", cos_out: r"\langle\theta_1,\theta_2\rangle_{\rm out}"}


class GramVector:
    """A vector written as a combination of the tokens, ``{token: coefficient}``; inner
    products through a symbolic Gram matrix. Used to substitute the equiangular ansatz
    into the particle velocity without coordinates."""

    def __init__(self, coeffs: Mapping[int, sp.Expr]):
        self.c = dict(coeffs)

    def __sub__(self, other: "GramVector") -> "GramVector":
        out = dict(self.c)
        for k, v in other.c.items():
            out[k] = out.get(k, 0) - v
        return GramVector(out)

    def scale(self, s: sp.Expr) -> "GramVector":
        return GramVector({k: s * v for k, v in self.c.items()})

    def dot(self, other: "GramVector", G: sp.Matrix) -> sp.Expr:
        return sp.Add(*[a * b * G[k, l] for k, a in self.c.items() for l, b in other.c.items()])


def gram_velocity(G: sp.Matrix, dynamics: str, beta_: sp.Expr) -> list[GramVector]:
    r"""The identity-weight velocity (§1.1) of every token, as combinations of the tokens:
    $v_i=U_i-\langle U_i,x_i\rangle x_i$, $U_i=\sum_jw_{ij}x_j$, $w$ the SA/USA weights of
    the logits $\beta G_{ij}$ (the same statements as :func:`velocity_program`)."""
    m = G.shape[0]
    out = []
    for i in range(m):
        logits = [beta_ * G[i, j] for j in range(m)]
        if dynamics == "SA":
            Z = sp.Add(*[sp.exp(lg) for lg in logits])
            w = [sp.exp(lg) / Z for lg in logits]
        else:
            w = [sp.exp(lg) / m for lg in logits]
        Ui = GramVector({j: w[j] for j in range(m)})
        xi = GramVector({i: 1})
        out.append(Ui - xi.scale(Ui.dot(xi, G)))
    return out


def primitive(expr: sp.Expr) -> sp.Expr:
    r"""An antiderivative in $\rho$ of ``expr`` = (sum of $C e^{k\rho}$) / (product of linear
    factors positive on $[0,1)$): partial fractions of the rational part, then term-wise
    $\int e^{k\rho}/(1+a\rho)\,d\rho=e^{-k/a}\mathrm{Ei}(k(1+a\rho)/a)/a$ or a logarithm."""
    num, den = sp.fraction(sp.factor(expr))
    poly = sp.Mul(*[f for f in sp.Mul.make_args(den) if f.is_polynomial(rho)])
    rest = sp.powsimp(sp.expand(num * poly / den))  # exponential factors of 1/den
    total = sp.Integer(0)
    for pf in sp.Add.make_args(sp.apart(1 / poly, rho)):
        pnum, lin = sp.fraction(sp.factor(pf))
        a1, a0 = sp.Poly(lin, rho).all_coeffs()
        # normalise the linear factor to u = 1 + (a1/a0) rho, positive on [0, 1)
        pnum, lin, a1 = sp.cancel(pnum / a0), sp.expand(lin / a0), sp.cancel(a1 / a0)
        for term in sp.Add.make_args(sp.expand(pnum * rest)):
            k = sp.cancel(sp.diff(sp.log(term), rho))  # term = C e^{k rho}
            C = sp.simplify(term * sp.exp(-k * rho))
            if k == 0:
                total += sp.cancel(C / a1) * sp.log(lin)
            else:  # u = 1 + a1 rho > 0: int e^{k rho}/u drho = e^{-k/a1} Ei(k u/a1)/a1
                total += (sp.cancel(C / a1) * sp.exp(sp.cancel(-k / a1))
                          * sp.Ei(sp.factor(k * lin / a1)))
    total = sp.powsimp(sp.expand(total))
    return sp.collect(total, sorted(total.atoms(sp.Ei) | total.atoms(sp.log),
                                    key=sp.default_sort_key), sp.factor)
