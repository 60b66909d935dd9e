r"""Rotationally-invariant denoising (RIE): Stieltjes-transform polynomials derived by SymPy.

Shared by ``bilinear-sequence-regression`` (rectangular case) and
``extensive-width-quadratic`` (symmetric case). Everything here is symbolic; the numeric
half (roots, support, quadrature) is :mod:`numerics.rie`.

Free-probability inputs (the only things *stated*):

* the S-transform of a Marchenko–Pastur law with mean 1 and ratio $c$ is $1/(1+c\psi)$;
  S-transforms of free products multiply, $S_{aX}=S_X/a$;
* the moment generating function $\psi(w)=wG(w)-1$ and $1/w=S(\psi)\,\psi/(1+\psi)$;
* subordination for Gaussian noise: symmetric, $G_Y(z)=G_S(z-\Delta G_Y(z))$; rectangular
  (operator-valued over the two blocks of the Hermitisation),
  $\lambda_1=z-\Delta\sqrt\beta\,g_2$, $\lambda_2=z-\Delta g_1/\sqrt\beta$,
  $g_1=\lambda_2 m_{AA^\top}(\lambda_1\lambda_2)$, $g_2=\lambda_1 m_{A^\top A}(\lambda_1\lambda_2)$.

*Derived* here: the cubic of MP $\boxplus$ semicircle, the quartic of the rectangular
convolution (after eliminating $g_2$, $\lambda_{1,2}$ and the signal's transform), and the
discriminants whose real roots are the bulk edges.
"""
from __future__ import annotations

from functools import cached_property, lru_cache
from typing import Any

import sympy as sp

__all__ = ["rs_stationarity", "G", "g1", "z", "mp_equation", "product_wishart_equation", "mp_semicircle_cubic",
           "rectangular_quartic", "edge_polynomial", "coefficients", "edges_of", "density_programs"]

G = sp.Symbol("G")
g1 = sp.Symbol("g_1")
z = sp.Symbol("z")
_psi = sp.Symbol("psi")
_w = sp.Symbol("w")


def _from_s_transform(S: sp.Expr, w: sp.Expr, Gs: sp.Symbol) -> sp.Expr:
    """Polynomial ``P(G, w) = 0`` equivalent to ``1/w = S(ψ) ψ/(1+ψ)``, ``ψ = wG − 1``."""
    rel = sp.numer(sp.together(1 / _w - S * _psi / (1 + _psi)))
    rel = sp.factor(sp.expand(rel.subs(_psi, _w * Gs - 1)))
    # drop factors free of G (a power of w: the relation holds for w != 0)
    keep = sp.Mul(*[f for f in sp.Mul.make_args(rel) if f.has(Gs)])
    return sp.expand(keep.subs(_w, w))


def mp_equation(c: sp.Expr, w: sp.Expr = _w, Gs: sp.Symbol = G) -> sp.Expr:
    """Marchenko–Pastur (mean 1, ratio ``c``) from its S-transform ``1/(1 + c ψ)``."""
    return _from_s_transform(1 / (1 + c * _psi), w, Gs)


def product_wishart_equation(rho: sp.Expr, s: sp.Expr, w: sp.Expr = _w,
                             Gs: sp.Symbol = G) -> sp.Expr:
    r"""$K=(\sqrt\beta/\rho)\,W_UW_V$ ($W_U$, $W_V$ free MP laws with ratios $\rho$, $\rho/\beta$):
    the $r\times r$ core of $AA^\top$, $A=UV^\top/(\sqrt r\,(DL)^{1/4})$; ``s`` is $\sqrt\beta$."""
    S = rho / (s * (1 + rho * _psi) * (1 + rho * _psi / s**2))
    return _from_s_transform(S, w, Gs)


@lru_cache(maxsize=None)
def mp_semicircle_cubic(kappa: sp.Symbol, delta: sp.Symbol) -> sp.Poly:
    r"""$G$ of $\mathrm{MP}(1/\kappa)\boxplus$ semicircle of variance $\Delta$: substitute
    $w=z-\Delta G$ into the MP equation (multiplied by $-\kappa$ to make it monic in the
    authors' normalisation). A cubic in $G$."""
    P = mp_equation(1 / kappa, z - delta * G)
    return sp.Poly(sp.expand(-kappa * P), G)


@lru_cache(maxsize=None)
def rectangular_quartic(rho: sp.Symbol, beta: sp.Symbol, delta: sp.Symbol) -> sp.Poly:
    r"""Symmetrised singular-value Stieltjes transform $g_1$ of
    $Y=(UV^\top/\sqrt r+\sqrt\Delta Z)/(DL)^{1/4}$ ($D\times L$, $\beta=L/D$, $\rho=r/D$).

    Elimination: the block relation $g_2\lambda_2=\lambda_1g_1/\beta+1-1/\beta$ gives
    $g_2=(zg_1/\beta+1-1/\beta)/z$; $m_{AA^\top}=\rho G_K+(1-\rho)/w$; substituting into the
    product-Wishart equation leaves a rational function of $g_1$ whose numerator factors
    into two linear factors (spurious) and one quartic, returned here.
    """
    s = sp.Symbol("s", positive=True)  # sqrt(beta); substituted back at the end
    g2 = (z * g1 / s**2 + 1 - 1 / s**2) / z
    l1 = z - delta * s * g2
    l2 = z - delta * g1 / s
    GK = (g1 / l2 - (1 - rho) / (l1 * l2)) / rho
    P = product_wishart_equation(rho, s, _w, G)
    num = sp.numer(sp.together(P.subs(G, GK).subs(_w, l1 * l2)))
    quartics = [f for f in sp.Mul.make_args(sp.factor(num))
                if f.has(g1) and sp.degree(f, g1) == 4]
    if len(quartics) != 1:
        raise ArithmeticError("rectangular elimination: expected exactly one quartic factor")
    return sp.Poly(sp.expand(quartics[0].subs(s, sp.sqrt(beta))), g1)


def edge_polynomial(P: sp.Poly, var: sp.Symbol = z) -> sp.Poly:
    """The factor of the discriminant of ``P`` (in its generator) of highest degree in
    ``var``: its real roots are the candidate edges of the density (monomial factors
    ``var**k`` and constants are dropped)."""
    gens = P.free_symbols - {P.gen, var}
    # factor over plain symbols: replace sqrt(b) by a positive symbol, then put it back
    roots = {sp.sqrt(b): sp.Symbol(f"_sqrt_{b}", positive=True) for b in gens}
    expr = P.as_expr().subs(roots)
    d = sp.factor(sp.discriminant(sp.Poly(expr, P.gen)).as_expr())
    back = {v: k for k, v in roots.items()}
    facs = [f for f in sp.Mul.make_args(d) if f.has(var) and not (
        f.is_Pow and f.base == var) and f != var]
    if not facs:
        raise ArithmeticError("discriminant has no edge factor")
    best = max(facs, key=lambda f: sp.degree(f, var))
    base = best.base if best.is_Pow else best
    return sp.Poly(sp.expand(base.subs(back)), var)


def coefficients(P: sp.Poly) -> list[sp.Expr]:
    """Coefficients lowest degree first."""
    return [sp.expand(c) for c in reversed(P.all_coeffs())]


def padded_coefficients(P: sp.Poly, n: int) -> list[sp.Expr]:
    """Coefficients lowest degree first, padded with zeros to ``n`` (the program's outputs)."""
    c = coefficients(P)
    if len(c) > n:
        raise ArithmeticError(f"polynomial degree {len(c) - 1} larger than expected ({n - 1})")
    return c + [sp.Integer(0)] * (n - len(c))


def rs_stationarity(free_entropy: sp.Expr, q: sp.Symbol, qhat: sp.Symbol, psi_den: sp.Function,
                    psi_den_derivative: sp.Expr) -> dict[str, sp.Expr]:
    r"""Stationarity of a replica-symmetric free entropy $\Phi(q,\hat q)$ of an RIE model:
    $\partial\Phi/\partial q=0$ solved for $\hat q$, and $\partial\Phi/\partial\hat q=0$ solved
    for $q$ after the I-MMSE relation replaces $\Psi_{\rm den}'(\hat q)$ by
    ``psi_den_derivative`` (derived; shared by the bilinear and the quadratic-network models)."""
    dq = sp.diff(free_entropy, q)
    dqh = sp.diff(free_entropy, qhat).subs(sp.Derivative(psi_den(qhat), qhat), psi_den_derivative)
    (qh_sol,) = sp.solve(sp.Eq(dq, 0), qhat)
    (q_sol,) = sp.solve(sp.Eq(dqh, 0), q)
    return {"qhat": sp.simplify(qh_sol), "q": sp.simplify(q_sol)}


def edges_of(poly_attr: str) -> cached_property:
    """A statement's ``edges`` property: :func:`edge_polynomial` of its polynomial ``poly_attr``."""
    def edges(self: Any) -> sp.Poly:
        return edge_polynomial(getattr(self, poly_attr), z)

    edges.__doc__ = f"Edge polynomial of ``{poly_attr}`` in x (its discriminant's factor, derived)."
    return cached_property(edges)


def density_programs(stem: str, name: str, P: sp.Poly, edges: sp.Poly, x: sp.Symbol,
                     params: tuple[sp.Symbol, ...], C: tuple[sp.Symbol, ...], E: tuple[sp.Symbol, ...],
                     doc: str, edges_doc: str) -> dict[str, Any]:
    """The two programs of an RIE model's spectral density: ``name`` (the coefficients of ``P`` at
    ``z = x``, lowest degree first, outputs ``C``) and ``edges`` (the edge polynomial's
    coefficients, padded to ``E``), both over ``params`` (after ``x`` for the first)."""
    from ..codegen import Program

    pc = coefficients(P)
    ec = padded_coefficients(edges, len(E))
    return {
        name: Program(f"{stem}_{name}", (x, *params), tuple((c, e.subs(z, x)) for c, e in zip(C, pc)),
                      C, doc=doc),
        "edges": Program(f"{stem}_edges", tuple(params), tuple(zip(E, ec)), E, doc=edges_doc),
    }
