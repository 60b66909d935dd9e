"""SymPy functions that exist for numerically stable code generation.

``Sigmoid(x) = 1/(1 + e^{-x})`` prints to ``special.expit`` (no overflow at either
end) and differentiates to ``Sigmoid(x)·Sigmoid(−x)`` (no cancellation in ``1 − σ``).

``Softplus(x) = log(1 + e^x)`` and ``LogAddExp(a, b) = log(e^a + e^b)`` print to
``xp.logaddexp``, which never overflows (``log1p(exp(x))`` does for x ≳ 710).
"""
from __future__ import annotations

import sympy as sp

__all__ = ["Softplus", "LogAddExp", "Sigmoid", "NormalCDF", "BivariateNormalCDF"]


class Softplus(sp.Function):
    r"""$\operatorname{softplus}(x)=\log(1+e^{x})$, printed as ``logaddexp(0, x)``."""

    nargs = 1

    def fdiff(self, argindex: int = 1) -> sp.Expr:
        x = self.args[0]
        return 1 / (1 + sp.exp(-x))

    def _eval_rewrite_as_log(self, x: sp.Expr, **kwargs) -> sp.Expr:
        return sp.log(1 + sp.exp(x))

    def _latex(self, printer) -> str:
        return r"\operatorname{softplus}\left(%s\right)" % printer._print(self.args[0])


class LogAddExp(sp.Function):
    r"""$\log(e^{a}+e^{b})$, printed as ``logaddexp(a, b)``."""

    nargs = 2

    def fdiff(self, argindex: int = 1) -> sp.Expr:
        a, b = self.args
        other = b if argindex == 1 else a
        this = a if argindex == 1 else b
        return 1 / (1 + sp.exp(other - this))

    def _eval_rewrite_as_log(self, a: sp.Expr, b: sp.Expr, **kwargs) -> sp.Expr:
        return sp.log(sp.exp(a) + sp.exp(b))


class Sigmoid(sp.Function):
    r"""$\operatorname{sig}(x)=1/(1+e^{-x})$, printed as ``special.expit``; a two-token softmax row."""

    nargs = 1

    def fdiff(self, argindex: int = 1) -> sp.Expr:
        x = self.args[0]
        return Sigmoid(x) * Sigmoid(-x)

    def _eval_rewrite_as_exp(self, x: sp.Expr, **kwargs) -> sp.Expr:
        return 1 / (1 + sp.exp(-x))

    _eval_rewrite_as_log = _eval_rewrite_as_exp  # "elementary form", as for Softplus

    def _latex(self, printer, exp=None) -> str:
        base = r"\operatorname{sig}\left(%s\right)" % printer._print(self.args[0])
        return base if exp is None else r"%s^{%s}" % (base, exp)


def _normal_pdf(x: sp.Expr) -> sp.Expr:
    return sp.exp(-x**2 / 2) / sp.sqrt(2 * sp.pi)


class NormalCDF(sp.Function):  # noqa: D101 - docstring below
    r"""$\Phi(x)=\tfrac12\operatorname{erfc}(-x/\sqrt2)$, printed as ``special.ndtr`` (accurate
    relative to its value in the lower tail, where ``(1 + erf)/2`` cancels)."""

    nargs = 1

    @classmethod
    def eval(cls, x: sp.Expr):
        if x.is_zero:
            return sp.Rational(1, 2)
        return None

    def fdiff(self, argindex: int = 1) -> sp.Expr:
        return _normal_pdf(self.args[0])

    def _eval_rewrite_as_erfc(self, x: sp.Expr, **kwargs) -> sp.Expr:
        return sp.erfc(-x / sp.sqrt(2)) / 2

    def _eval_evalf(self, prec: int) -> sp.Expr | None:
        return self.rewrite(sp.erfc)._eval_evalf(prec) if self.args[0].is_number else None

    def _latex(self, printer, exp=None) -> str:
        base = r"\Phi\left(%s\right)" % printer._print(self.args[0])
        return base if exp is None else r"%s^{%s}" % (base, exp)


class BivariateNormalCDF(sp.Function):
    r"""$\Phi_2(h,k;r)=P(X\le h,\,Y\le k)$ for standard normals with correlation $r$ ($|r|<1$).

    Derivatives: $\partial_h\Phi_2=\varphi(h)\,\Phi\big((k-rh)/\sqrt{1-r^2}\big)$ (and symmetrically
    in $k$), $\partial_r\Phi_2=\varphi_2(h,k;r)$ (Plackett). Sheppard: $\Phi_2(0,0;r)=\tfrac14+
    \arcsin(r)/(2\pi)$. Array target: :func:`numerics.special.bvn_cdf` (Owen's $T$ formula, with a
    positive-integrand form in the lower tails where that formula cancels); mpmath target (and
    ``evalf``):
    $\Phi(h)\Phi(k)+\int_0^r\varphi_2(h,k;t)\,dt$ by ``mp.quad`` at the working precision.
    """

    nargs = 3

    @classmethod
    def eval(cls, h: sp.Expr, k: sp.Expr, r: sp.Expr):
        if h.is_zero and k.is_zero:
            return sp.Rational(1, 4) + sp.asin(r) / (2 * sp.pi)
        return None

    def fdiff(self, argindex: int = 1) -> sp.Expr:
        h, k, r = self.args
        s = sp.sqrt(1 - r**2)
        if argindex == 1:
            return _normal_pdf(h) * NormalCDF((k - r * h) / s)
        if argindex == 2:
            return _normal_pdf(k) * NormalCDF((h - r * k) / s)
        if argindex == 3:
            return bivariate_normal_pdf(h, k, r)
        raise sp.ArgumentIndexError(self, argindex)

    def _eval_evalf(self, prec: int) -> sp.Expr | None:
        import mpmath

        if not all(a.is_number for a in self.args):
            return None
        with mpmath.workprec(prec + 10):
            h, k, r = (mpmath.mpf(sp.Float(a.evalf(prec + 10), prec + 10)) for a in self.args)
            val = mpmath.ncdf(h) * mpmath.ncdf(k) + mpmath.quad(
                lambda t: mpmath.exp(-(h**2 - 2 * t * h * k + k**2) / (2 * (1 - t**2)))
                / (2 * mpmath.pi * mpmath.sqrt(1 - t**2)), [0, r])
            return sp.Float(val, prec)

    def _latex(self, printer, exp=None) -> str:
        base = r"\Phi_2\left(%s, %s; %s\right)" % tuple(printer._print(a) for a in self.args)
        return base if exp is None else r"\left(%s\right)^{%s}" % (base, exp)


def bivariate_normal_pdf(h: sp.Expr, k: sp.Expr, r: sp.Expr) -> sp.Expr:
    r"""$\varphi_2(h,k;r)=\exp\{-(h^2-2rhk+k^2)/(2(1-r^2))\}/(2\pi\sqrt{1-r^2})$ (elementary)."""
    return sp.exp(-(h**2 - 2 * r * h * k + k**2) / (2 * (1 - r**2))) / (2 * sp.pi * sp.sqrt(1 - r**2))
