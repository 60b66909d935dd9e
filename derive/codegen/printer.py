"""Printers that turn SymPy expressions into Python source for an array namespace or mpmath.

Printers are visitors (``_print_<Class>`` methods, as in ``sympy.printing``). Every
function goes through an explicit table; a node that is not in the table raises
:class:`UnmappedNodeError` *before* anything is printed, so a kernel can never call
``math.erf`` on an array or silently print ``f(x)`` for an unknown ``f``.

Three targets:

* ``XpPrinter`` -- NumPy/CuPy source over the names ``xp`` (array module) and
  ``special`` (``scipy.special`` / ``cupyx.scipy.special``);
* ``MpmathPrinter`` -- scalar source over the name ``mp`` (``mpmath``), with exact
  rational and float literals so nothing is rounded to float64;
* ``ScalarPrinter`` -- float64 scalar source over ``math`` and the scalar special functions
  of :mod:`numerics.compiled` (``_expit``, ``_logaddexp``, ``_ndtr``), compiled with Numba
  (the ``numba`` target: per-node loops such as a Newton prox, with no array temporaries).

``Piecewise`` is not printed by either printer: the kernel builder lowers it into
helper functions whose untaken branches are never evaluated (see ``kernel.py``).
"""
from __future__ import annotations

import keyword
import re
from typing import Any, Callable

import sympy as sp
from sympy.codegen.cfunctions import expm1, log1p
from sympy.logic.boolalg import BooleanFalse, BooleanTrue
from sympy.printing.precedence import PRECEDENCE, precedence
from sympy.printing.str import StrPrinter

from .functions import BivariateNormalCDF, LogAddExp, NormalCDF, Sigmoid, Softplus

__all__ = ["XpPrinter", "MpmathPrinter", "ScalarPrinter", "SCALAR_TABLE", "UnmappedNodeError", "check_supported", "identifier",
           "XP_IMPORTS", "xp_imports"]


class UnmappedNodeError(TypeError):
    """An expression contains a node the code printers have no mapping for."""


# --- the explicit function tables -------------------------------------------------------
# SymPy function class -> (xp-target template, mpmath-target template); "{0}", "{1}" are
# the printed arguments.
FUNCTION_TABLE: dict[type, tuple[str, str]] = {
    sp.exp: ("xp.exp({0})", "mp.exp({0})"),
    sp.log: ("xp.log({0})", "mp.log({0})"),
    sp.Abs: ("xp.abs({0})", "abs({0})"),
    sp.sin: ("xp.sin({0})", "mp.sin({0})"),
    sp.cos: ("xp.cos({0})", "mp.cos({0})"),
    sp.tan: ("xp.tan({0})", "mp.tan({0})"),
    sp.sinh: ("xp.sinh({0})", "mp.sinh({0})"),
    sp.cosh: ("xp.cosh({0})", "mp.cosh({0})"),
    sp.tanh: ("xp.tanh({0})", "mp.tanh({0})"),
    sp.atan: ("xp.arctan({0})", "mp.atan({0})"),
    sp.asin: ("xp.arcsin({0})", "mp.asin({0})"),
    sp.acos: ("xp.arccos({0})", "mp.acos({0})"),
    sp.atan2: ("xp.arctan2({0}, {1})", "mp.atan2({0}, {1})"),
    sp.erf: ("special.erf({0})", "mp.erf({0})"),
    sp.erfc: ("special.erfc({0})", "mp.erfc({0})"),
    sp.Ei: ("special.expi({0})", "mp.ei({0})"),
    sp.gamma: ("special.gamma({0})", "mp.gamma({0})"),
    sp.loggamma: ("special.gammaln({0})", "mp.loggamma({0})"),
    sp.sign: ("xp.sign({0})", "mp.sign({0})"),
    sp.floor: ("xp.floor({0})", "mp.floor({0})"),
    sp.ceiling: ("xp.ceil({0})", "mp.ceil({0})"),
    log1p: ("xp.log1p({0})", "mp.log1p({0})"),
    expm1: ("xp.expm1({0})", "mp.expm1({0})"),
    Softplus: ("xp.logaddexp(0.0, {0})", "_mp_logaddexp(mp, 0, {0})"),
    LogAddExp: ("xp.logaddexp({0}, {1})", "_mp_logaddexp(mp, {0}, {1})"),
    Sigmoid: ("special.expit({0})", "(1 / (1 + mp.exp(-({0}))))"),
    NormalCDF: ("special.ndtr({0})", "mp.ncdf({0})"),
    # array: numerics.special.bvn_cdf on the kernel's xp and special (Owen's T formula, tails
    # relative-accurate; NumPy and CuPy), imported by the kernel module (XP_IMPORTS);
    # mpmath: Plackett, Φ2 = Φ(h)Φ(k) + ∫_0^r φ2(h, k; t) dt at the working precision
    BivariateNormalCDF: (
        "_bvn_cdf({0}, {1}, {2}, xp=xp, special=special)",
        "(mp.ncdf({0})*mp.ncdf({1}) + mp.quad(lambda _t: mp.exp(-(({0})**2 - 2*_t*({0})*({1})"
        " + ({1})**2)/(2*(1 - _t**2)))/(2*mp.pi*mp.sqrt(1 - _t**2)), [0, {2}]))"),
}

#: SymPy function class -> float64 scalar template (the ``numba`` target). Explicit like the table
#: above: a function missing here cannot be printed for the scalar target.
SCALAR_TABLE: dict[type, str] = {
    sp.exp: "math.exp({0})", sp.log: "math.log({0})", sp.Abs: "abs({0})",
    sp.sin: "math.sin({0})", sp.cos: "math.cos({0})", sp.tan: "math.tan({0})",
    sp.sinh: "math.sinh({0})", sp.cosh: "math.cosh({0})", sp.tanh: "math.tanh({0})",
    sp.atan: "math.atan({0})", sp.asin: "math.asin({0})", sp.acos: "math.acos({0})",
    sp.atan2: "math.atan2({0}, {1})", sp.erf: "math.erf({0})", sp.erfc: "math.erfc({0})",
    sp.gamma: "math.gamma({0})", sp.loggamma: "math.lgamma({0})",
    sp.sign: "_sign({0})", sp.floor: "math.floor({0})", sp.ceiling: "math.ceil({0})",
    log1p: "math.log1p({0})", expm1: "math.expm1({0})",
    Softplus: "_logaddexp(0.0, {0})", LogAddExp: "_logaddexp({0}, {1})",
    Sigmoid: "_expit({0})", NormalCDF: "_ndtr({0})",
}

#: Functions whose array template calls a name the kernel module imports (from ``numerics``,
#: never SymPy): SymPy function class -> the import line, emitted once per kernel that uses it.
XP_IMPORTS: dict[type, str] = {
    BivariateNormalCDF: "from numerics.special import bvn_cdf as _bvn_cdf",
}


def xp_imports(exprs: Any) -> list[str]:
    """The :data:`XP_IMPORTS` lines the array source of ``exprs`` needs (sorted, no repeats)."""
    lines: set[str] = set()
    for expr in exprs:
        for node in unique_nodes(sp.sympify(expr)):
            line = XP_IMPORTS.get(type(node))
            if line is not None:
                lines.add(line)
    return sorted(lines)


# Structural nodes every target prints by itself.
_STRUCTURAL: tuple[type, ...] = (
    sp.Symbol, sp.Integer, sp.Rational, sp.Float, sp.Add, sp.Mul, sp.Pow,
    sp.core.numbers.Pi, sp.core.numbers.Exp1, sp.core.numbers.Infinity,
    sp.core.numbers.NegativeInfinity, sp.core.numbers.NegativeOne, sp.core.numbers.One,
    sp.core.numbers.Zero, sp.core.numbers.Half,
    sp.Max, sp.Min, sp.Piecewise, sp.functions.elementary.piecewise.ExprCondPair,
    sp.StrictLessThan, sp.LessThan, sp.StrictGreaterThan, sp.GreaterThan, sp.Eq, sp.Ne,
    sp.And, sp.Or, sp.Not, BooleanTrue, BooleanFalse,
)


def unique_nodes(expr: sp.Basic) -> list[sp.Basic]:
    """Every distinct subexpression once (a DAG walk: linear in the number of distinct
    nodes, where ``preorder_traversal`` is exponential in the nesting of shared ones)."""
    seen: set[sp.Basic] = set()
    order: list[sp.Basic] = []
    stack = [expr]
    while stack:
        e = stack.pop()
        if e in seen:
            continue
        seen.add(e)
        order.append(e)
        stack.extend(e.args)
    return order


def check_supported(expr: sp.Basic) -> None:
    """Raise :class:`UnmappedNodeError` if ``expr`` has a node no printer maps."""
    for node in unique_nodes(expr):
        if isinstance(node, _STRUCTURAL):
            continue
        if type(node) in FUNCTION_TABLE:
            continue
        if isinstance(node, sp.Tuple):
            continue
        raise UnmappedNodeError(
            f"cannot generate code for {type(node).__name__} in {node}: it has no entry in "
            "derive.codegen.printer.FUNCTION_TABLE (add one, or lower the operator first)"
        )


_IDENT = re.compile(r"[^0-9a-zA-Z_]")


def identifier(name: str) -> str:
    """A valid Python identifier for a symbol name (``M'`` -> ``M_p``, ``lambda`` -> ``lambda_``)."""
    s = name.replace("'", "_p")
    s = _IDENT.sub("_", s)
    if not s or s[0].isdigit():
        s = "v_" + s
    if keyword.iskeyword(s) or s in {"xp", "special", "mp", "math"}:
        s += "_"
    return s


def _constant(template: str) -> Callable[[Any, Any], str]:
    """A printer method for a constant: ``template`` with ``{ns}`` the target's namespace."""

    def _print(self: "_BasePrinter", expr: Any) -> str:
        return template.format(ns=self._ns)

    return _print


class _BasePrinter(StrPrinter):
    """Shared visitor: operators and precedence from ``StrPrinter``, leaves mapped here."""

    _target_index = 0  # column of FUNCTION_TABLE
    _ns = "xp"  # the target's namespace for constants and sqrt
    _default_settings = dict(StrPrinter._default_settings)

    def __init__(self, names: dict[sp.Symbol, str] | None = None) -> None:
        super().__init__()
        self._names = names or {}

    def doprint(self, expr: Any) -> str:  # noqa: D102 - see class docstring
        check_supported(sp.sympify(expr))
        return super().doprint(expr)

    # -- leaves --
    def _print_Symbol(self, expr: sp.Symbol) -> str:
        return self._names.get(expr, identifier(expr.name))

    def _template(self, expr: sp.Function) -> str:
        """The target's template for ``expr``'s function (its column of :data:`FUNCTION_TABLE`)."""
        try:
            return FUNCTION_TABLE[type(expr)][self._target_index]
        except KeyError:
            raise UnmappedNodeError(f"no code mapping for {type(expr).__name__}") from None

    def _print_Function(self, expr: sp.Function) -> str:
        return self._template(expr).format(*[self._print(a) for a in expr.args])

    _print_exp = _print_Function
    _print_Abs = _print_Function
    _print_sign = _print_Function
    _print_floor = _print_Function
    _print_ceiling = _print_Function

    def _print_log(self, expr: sp.log) -> str:
        # log(1 + exp(x)) and log(exp(a) + exp(b)) never overflow: print as logaddexp.
        arg = expr.args[0]
        if isinstance(arg, sp.Add) and len(arg.args) == 2:
            parts = []
            for t in arg.args:
                if t == 1:
                    parts.append(sp.Integer(0))
                elif isinstance(t, sp.exp):
                    parts.append(t.args[0])
                else:
                    break
            else:
                return self._print_Function(LogAddExp(*parts, evaluate=False))
        return self._print_Function(expr)

    def _print_Piecewise(self, expr: sp.Piecewise) -> str:
        raise UnmappedNodeError(
            "Piecewise must be lowered by the kernel builder (derive.codegen.kernel), "
            "not printed inline"
        )

    def _print_Eq(self, expr: sp.Eq) -> str:
        return f"({self._print(expr.lhs)} == {self._print(expr.rhs)})"

    def _print_Ne(self, expr: sp.Ne) -> str:
        return f"({self._print(expr.lhs)} != {self._print(expr.rhs)})"

    def _print_Relational(self, expr: sp.core.relational.Relational) -> str:
        return f"({self._print(expr.lhs)} {expr.rel_op} {self._print(expr.rhs)})"

    def _print_Pow(self, expr: sp.Pow, rational: bool = False) -> str:
        base, e = expr.args
        pb = self.parenthesize(base, PRECEDENCE["Pow"], strict=False)
        if e == sp.S.Half:
            return self._sqrt(self._print(base))
        if e == -sp.S.Half:
            return f"1/{self._sqrt(self._print(base))}"
        if e == -1:
            return f"1/{self.parenthesize(base, PRECEDENCE['Mul'], strict=False)}"
        if e.is_Integer:
            return f"{pb}**{int(e)}" if e > 0 else f"{pb}**({int(e)})"
        return f"{pb}**({self._print(e)})"

    # -- constants and sqrt: the same names in the target's namespace (``xp.pi``, ``mp.pi``) --
    def _sqrt(self, arg: str) -> str:
        return f"{self._ns}.sqrt({arg})"

    _print_Pi = _constant("{ns}.pi")
    _print_Exp1 = _constant("{ns}.e")
    _print_Infinity = _constant("{ns}.inf")
    _print_NegativeInfinity = _constant("(-{ns}.inf)")
    _print_BooleanTrue = _constant("True")
    _print_BooleanFalse = _constant("False")


class _Float64Literals:
    """Literals of the float64 targets (array and numba): ``repr`` of the double, rationals as a
    true division, integers as they are."""

    def _print_Float(self, expr: sp.Float) -> str:
        return repr(float(expr))

    def _print_Rational(self, expr: sp.Rational) -> str:
        return f"({int(expr.p)}/{int(expr.q)})"

    def _print_Integer(self, expr: sp.Integer) -> str:
        return str(int(expr))


class XpPrinter(_Float64Literals, _BasePrinter):
    """Python source over ``xp`` (NumPy or CuPy) and ``special`` (their special functions)."""

    _target_index = 0

    def _print_Pow(self, expr: sp.Pow, rational: bool = False) -> str:
        # NumPy special-cases x**2 but sends x**3, x**4 through the generic (slow) power
        base, e = expr.args
        if e.is_Integer and 3 <= abs(int(e)) <= 4:
            pb = self.parenthesize(base, PRECEDENCE["Pow"], strict=False)
            prod = "(" + "*".join([pb] * abs(int(e))) + ")"
            return prod if e > 0 else f"1/{prod}"
        return super()._print_Pow(expr, rational)

    def _print_Max(self, expr: sp.Max) -> str:
        return self._nest("xp.maximum", expr.args)

    def _print_Min(self, expr: sp.Min) -> str:
        return self._nest("xp.minimum", expr.args)

    def _nest(self, fn: str, args: tuple) -> str:
        out = self._print(args[0])
        for a in args[1:]:
            out = f"{fn}({out}, {self._print(a)})"
        return out

    def _print_And(self, expr: sp.And) -> str:
        return self._nest("xp.logical_and", expr.args)

    def _print_Or(self, expr: sp.Or) -> str:
        return self._nest("xp.logical_or", expr.args)

    def _print_Not(self, expr: sp.Not) -> str:
        return f"xp.logical_not({self._print(expr.args[0])})"


class _ScalarLogic:
    """``max``/``min`` and Python's ``and``/``or``/``not``: the scalar targets (mpmath, numba)."""

    def _print_Max(self, expr: sp.Max) -> str:
        return "max(" + ", ".join(self._print(a) for a in expr.args) + ")"

    def _print_Min(self, expr: sp.Min) -> str:
        return "min(" + ", ".join(self._print(a) for a in expr.args) + ")"

    def _print_And(self, expr: sp.And) -> str:
        return "(" + " and ".join(self._print(a) for a in expr.args) + ")"

    def _print_Or(self, expr: sp.Or) -> str:
        return "(" + " or ".join(self._print(a) for a in expr.args) + ")"

    def _print_Not(self, expr: sp.Not) -> str:
        return f"(not {self._print(expr.args[0])})"


class MpmathPrinter(_ScalarLogic, _BasePrinter):
    """Scalar Python source over ``mp`` (mpmath) with exact literals."""

    _target_index = 1
    _ns = "mp"

    def _print_Float(self, expr: sp.Float) -> str:
        return f"mp.mpf({str(expr)!r})"

    def _print_Rational(self, expr: sp.Rational) -> str:
        return f"(mp.mpf({int(expr.p)})/{int(expr.q)})"

    def _print_Integer(self, expr: sp.Integer) -> str:
        return f"mp.mpf({int(expr)})" if abs(int(expr)) > 2**52 else str(int(expr))


class ScalarPrinter(_Float64Literals, _ScalarLogic, _BasePrinter):
    """float64 scalar source over ``math`` and :mod:`numerics.compiled`'s scalar functions (the
    ``numba`` target), through :data:`SCALAR_TABLE`."""

    _ns = "math"

    def _template(self, expr: sp.Function) -> str:
        try:
            return SCALAR_TABLE[type(expr)]
        except KeyError:
            raise UnmappedNodeError(f"no scalar (numba) code mapping for {type(expr).__name__}") from None


PRINTERS: dict[str, Callable[..., _BasePrinter]] = {"xp": XpPrinter, "mpmath": MpmathPrinter,
                                                      "numba": ScalarPrinter}
