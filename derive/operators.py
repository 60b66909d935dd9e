r"""Unevaluated operators and their lowering to closed forms.

An operator is a SymPy ``Function`` that prints the way the paper writes it and has
a ``_eval_lower`` method returning a closed form that code generation can print.
:func:`lower` replaces every operator by its lowering, repeatedly, so lowering is
explicit and testable on its own.

Operators here:

* :class:`MarchenkoPasturTrace` -- $M_\kappa(x)=\lim\frac1d\operatorname{tr}(\hat S+x)^{-1}$
  for a Wishart matrix with aspect ratio $d/k=1/\kappa$, defined as the positive root of its
  self-consistent quadratic; its derivative is obtained by implicit differentiation.
"""
from __future__ import annotations

import sympy as sp

__all__ = ["lower", "quadratic_root", "MarchenkoPasturTrace", "mp_self_consistency"]


def lower(expr: sp.Basic) -> sp.Basic:
    """Replace every operator (anything with ``_eval_lower``) by its closed form."""
    for _ in range(20):
        if not any(hasattr(e, "_eval_lower") for e in _nodes(expr)):
            return expr
        new = expr.replace(lambda e: hasattr(e, "_eval_lower"), lambda e: e._eval_lower())
        if new == expr:
            return new
        expr = new
    raise RecursionError("operator lowering did not reach a fixed point")


def _nodes(expr: sp.Basic):
    from .codegen.printer import unique_nodes

    return unique_nodes(expr)


def quadratic_root(a: sp.Expr, b: sp.Expr, c: sp.Expr, sign: int) -> sp.Piecewise:
    r"""The root $(-b+s\sqrt{b^2-4ac})/(2a)$, $s=\pm1$, written without cancellation.

    When $s\,b>0$ the textbook form subtracts nearly equal numbers; there the same
    root is $2c/(-b-s\sqrt{b^2-4ac})$ (multiply numerator and denominator by the
    conjugate), which also stays finite when $a\to0$. Returned as a ``Piecewise``
    whose branches are algebraically equal.
    """
    if sign not in (1, -1):
        raise ValueError("sign must be +1 or -1")
    disc = sp.sqrt(b**2 - 4 * a * c)
    conj = 2 * c / (-b - sign * disc)
    textbook = (-b + sign * disc) / (2 * a)
    return sp.Piecewise((conj, sign * b >= 0), (textbook, True))


_M = sp.Symbol("M")


def mp_self_consistency(M: sp.Expr, x: sp.Expr, kappa: sp.Expr) -> sp.Expr:
    r"""Left side of $\frac x\kappa M^2+(x+1-\frac1\kappa)M-1=0$ (spec icl §2.1).

    Equivalent to $1/M=x+1-1/\kappa+xM/\kappa$: the Stieltjes transform of the
    Marchenko–Pastur law of $\hat S=\frac1k\sum_j w_jw_j^\top$, $k/d=\kappa$.
    """
    return x / kappa * M**2 + (x + 1 - 1 / kappa) * M - 1


class MarchenkoPasturTrace(sp.Function):
    r"""$M_\kappa(x)=\lim_{d\to\infty}\frac1d\operatorname{tr}(\hat S+xI)^{-1}$, $x>0$.

    Arguments ``(x, kappa)``. Defined as the positive root of
    :func:`mp_self_consistency`; the derivative in ``x`` follows from implicit
    differentiation of that quadratic and is expressed through $M$ itself.
    """

    nargs = 2

    @classmethod
    def eval(cls, x, kappa):  # noqa: D102 - stays unevaluated
        return None

    def fdiff(self, argindex: int = 1) -> sp.Expr:
        X, K = sp.Dummy("x", positive=True), sp.Dummy("kappa", positive=True)
        F = mp_self_consistency(_M, X, K)
        var = X if argindex == 1 else K
        # Implicit differentiation, dM = -F_var / F_M. Multiplying through by M and
        # reducing the denominator modulo F (M F_M = 2 - b M on F = 0, with b the linear
        # coefficient) leaves a denominator that is a sum of positive terms for every
        # kappa in (0, oo] -- no cancellation, and no oo/oo at kappa = oo.
        num = -sp.expand(_M * sp.diff(F, var))
        den = sp.rem(sp.expand(_M * sp.diff(F, _M)), sp.expand(F), _M)
        den = sp.collect(sp.expand(den), _M)
        return (num / den).subs({X: self.args[0], K: self.args[1]}).subs(_M, self)

    def closed_form(self) -> sp.Expr:
        """The positive root of the quadratic, via :func:`quadratic_root` (stable, a=0 safe)."""
        x, kappa = self.args
        poly = sp.Poly(mp_self_consistency(_M, x, kappa), _M)
        a, b, c = (sp.expand(co) for co in poly.all_coeffs())
        # a = x/kappa > 0 and c = -1 < 0: the roots have opposite signs; the "+" root is positive.
        return quadratic_root(a, b, c, sign=1)

    def _eval_lower(self) -> sp.Expr:
        return self.closed_form()

    def _latex(self, printer) -> str:
        x, kappa = self.args
        return r"M_{%s}\left(%s\right)" % (printer._print(kappa), printer._print(x))

    def _pretty(self, printer):
        from sympy.printing.pretty.stringpict import prettyForm

        x, kappa = self.args
        head = prettyForm("M_" + sp.pretty(kappa, use_unicode=True))
        return prettyForm(*head.right(prettyForm(*printer._print(x).parens())))

    def _sympystr(self, printer) -> str:
        x, kappa = self.args
        return f"M_{{{printer._print(kappa)}}}({printer._print(x)})"


def vanishes_modulo(expr: sp.Expr, var: sp.Symbol, relation: sp.Expr) -> bool:
    """True if ``expr`` = 0 whenever ``relation(var) = 0`` (``relation`` a polynomial in
    ``var``): the numerator of ``expr`` is reduced modulo ``relation`` and simplified.

    Used to prove rewritings of resolvent expressions that hold on the self-consistent
    equation, e.g. ``1 - x M = M/(1 + M/kappa)`` on the Marchenko–Pastur quadratic.
    """
    num = sp.numer(sp.together(sp.expand(expr)))
    rel = sp.numer(sp.together(sp.expand(relation)))
    rem = sp.rem(sp.expand(num), sp.expand(rel), var)
    return sp.simplify(rem) == 0
