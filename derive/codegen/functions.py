"""SymPy functions that exist for numerically stable code generation.

``Sigmoid(x) = 1/(1 + e^{-x})`` prints to ``special.expit`` (no overflow at either
end) and differentiates to ``Sigmoid(x)·Sigmoid(−x)`` (no cancellation in ``1 − σ``).

``Softplus(x) = log(1 + e^x)`` and ``LogAddExp(a, b) = log(e^a + e^b)`` print to
``xp.logaddexp``, which never overflows (``log1p(exp(x))`` does for x ≳ 710).
"""
from __future__ import annotations

import sympy as sp

__all__ = ["Softplus", "LogAddExp", "Sigmoid"]


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
