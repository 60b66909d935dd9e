"""Declarations of a model's observables and options: what a number means and where it may lie.

Two frozen dataclasses, declared by every model next to its observables and options:

* :class:`Observable`: an output of ``derive.solve`` with its CF-style metadata (``long_name``,
  ``units``; ``"1"`` for dimensionless), its LaTeX ``symbol``, and its *physical range*
  ``lo <= x <= hi``. The ends may be numbers or callables ``(params, outputs) -> array`` (the
  range of an mmse is ``[0, Q0]`` with ``Q0`` its prior value, which depends on the point). A
  point is converged only if every observable that the options compute is finite (unless
  ``finite=False``) and inside its range (:func:`check_outputs`, applied centrally by
  :meth:`derive.model.Model.evaluate_checked`).
* :class:`Option`: a non-grid keyword of ``derive.solve`` with its type (``kind``), its
  :class:`~derive.params.Domain` (numbers) or ``choices``, and :meth:`Option.validate`, which
  raises a ``ValueError``/``TypeError`` naming the option and its valid range or choices.

Nothing here imports SymPy-generated kernels; checks run on NumPy arrays.
"""
from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence, Union

import numpy as np

from .params import Domain, InputTypeError

__all__ = ["Observable", "Option", "check_outputs", "RangeEnd", "declare", "check_real_array",
           "init_option", "stability_option", "progress_option", "unit_interval_observable"]

#: one end of a physical range: a number, or ``(params, outputs) -> array`` per point
RangeEnd = Union[float, Callable[[Mapping[str, Any], Mapping[str, Any]], Any]]


@dataclass(frozen=True)
class Observable:
    """An observable of a model, with its physical range.

    ``lo``/``hi``: ends of the closed range (``-inf``/``inf``: unbounded), numbers or callables
    ``(params, outputs) -> array`` of flat per-point NumPy arrays. ``slack``: relative tolerance
    on the ends (``|x| * slack + slack`` beyond an end is still inside: rounding of a converged
    fixed point). ``finite=False`` admits ``±inf`` inside the range (e.g. a capacity that is
    infinite by theory). ``optional=True``: NaN means "not computed at this point" and is
    accepted (e.g. a stability eigenvalue where it was not asked for); ``computed``: a predicate
    on the validated options, False where the options do not compute this observable (it is
    then not checked at all). ``resolution``: values with ``0 < |x| < resolution`` are below the
    precision floor of the pipeline (flagged ``precision``, not converged).
    """

    name: str
    long_name: str = ""
    symbol: str = ""
    units: str = ""
    lo: RangeEnd = -math.inf
    hi: RangeEnd = math.inf
    finite: bool = True
    optional: bool = False
    computed: Callable[[Mapping[str, Any]], bool] | None = None
    resolution: float = 0.0
    slack: float = 1e-9

    def is_computed(self, options: Mapping[str, Any]) -> bool:
        return True if self.computed is None else bool(self.computed(options))

    def bounds(self, params: Mapping[str, Any], outputs: Mapping[str, Any], n: int
               ) -> tuple[np.ndarray, np.ndarray]:
        """``(lo, hi)`` per point (flat float arrays of length ``n``)."""
        def end(e: RangeEnd) -> np.ndarray:
            v = e(params, outputs) if callable(e) else e
            return np.broadcast_to(np.asarray(v, dtype=float), (n,))
        return end(self.lo), end(self.hi)

    def range_str(self) -> str:
        def f(e: RangeEnd) -> str:
            if callable(e):
                return getattr(e, "__doc__", None) or getattr(e, "__name__", "f(point)")
            return "∞" if e == math.inf else "-∞" if e == -math.inf else f"{e:g}"
        return f"[{f(self.lo)}, {f(self.hi)}]"


def _is_real_number(v: Any) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, (bool, np.bool_))


@dataclass(frozen=True)
class Option:
    """A keyword option of a model's pipeline, validated like a grid parameter.

    ``kind``: ``"bool"`` (only ``True``/``False``), ``"int"`` (an integer, or an integral real
    number; never a bool), ``"float"`` (a real number; never complex or bool; non-finite only
    if ``domain`` admits it), ``"choice"`` (one of ``choices``), ``"str"``, or ``"any"``
    (structured values: arrays, tuples), checked by ``check``. ``domain``: for ``int``/``float``,
    the interval of valid values. ``allow_none``: ``None`` is a valid value (e.g. "the model's
    default start"). ``check``: an extra validator ``value -> normalised value`` run after the
    kind/domain checks (raising ``ValueError``/``TypeError``). ``cli``: whether the command line
    can set it (``--name value``).
    """

    name: str
    default: Any
    description: str = ""
    kind: str = "any"
    domain: Domain | None = None
    choices: Sequence[Any] = ()
    allow_none: bool = False
    check: Callable[[Any], Any] | None = None
    cli: bool = True

    def __post_init__(self) -> None:
        if self.kind not in ("bool", "int", "float", "choice", "str", "any"):
            raise ValueError(f"option {self.name!r}: unknown kind {self.kind!r}")
        if self.kind == "choice" and not self.choices:
            raise ValueError(f"option {self.name!r}: kind 'choice' needs choices")

    def describe(self) -> str:
        """``kind`` and valid values, for messages and documentation."""
        if self.kind == "bool":
            s = "True or False"
        elif self.kind == "choice":
            s = "one of " + ", ".join(repr(c) for c in self.choices)
        elif self.kind == "int":
            s = "an integer"
            if self.domain is not None:
                d = self.domain
                lo = d.lo if d.lo_closed or math.isinf(d.lo) else math.floor(d.lo) + 1
                hi = d.hi if d.hi_closed or math.isinf(d.hi) else math.ceil(d.hi) - 1
                s += f" in [{'-∞' if lo == -math.inf else int(lo)}, {'∞' if hi == math.inf else int(hi)}]"
        elif self.kind == "float":
            s = "a real number" + (f" in {self.domain}" if self.domain is not None else "")
        elif self.kind == "str":
            s = "a string"
        else:
            s = self.description or "a value"
        return s + (" or None" if self.allow_none and self.kind != "any" else "")

    def _fail(self, value: Any, exc: type = ValueError) -> Exception:
        exc = InputTypeError if exc is TypeError else exc
        return exc(f"option {self.name!r} = {value!r} is invalid: it must be {self.describe()}"
                   + (f" ({self.description})" if self.description and self.kind != "any" else ""))

    def validate(self, value: Any) -> Any:
        """Return the normalised value, or raise ``ValueError``/``TypeError`` naming the option."""
        if value is None:
            if self.allow_none:
                return None
            raise self._fail(value, TypeError)
        if self.kind == "bool":
            if isinstance(value, (bool, np.bool_)):
                return bool(value)
            raise self._fail(value, TypeError)
        if self.kind in ("int", "float"):
            if isinstance(value, np.ndarray) and value.ndim == 0:
                value = value[()]
            if not _is_real_number(value):
                raise self._fail(value, TypeError)
            x = float(value)
            if self.kind == "int":
                if not (math.isfinite(x) and x == math.floor(x)):
                    raise self._fail(value)
                out: Any = int(value) if isinstance(value, (int, np.integer)) else int(x)
            else:
                out = x
            if math.isnan(x) or (self.domain is not None and not bool(self.domain.contains(x))):
                raise self._fail(value)
            if self.kind == "float" and math.isinf(x) and self.domain is None:
                raise self._fail(value)
            value = out
        elif self.kind == "choice":
            ok = False
            for c in self.choices:
                try:
                    ok = type(c) is type(value) and c == value
                except Exception:  # noqa: BLE001 - arrays compare element-wise
                    ok = False
                if ok:
                    break
            if not ok:
                raise self._fail(value, ValueError if isinstance(value, str) else TypeError)
        elif self.kind == "str":
            if not isinstance(value, str):
                raise self._fail(value, TypeError)
        if self.check is not None:
            value = self.check(value)
        return value


def check_outputs(observables: Mapping[str, Observable], params: Mapping[str, Any],
                  outputs: Mapping[str, Any], options: Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per point: ``(nonfinite, nonphysical, precision)`` boolean masks over the declared
    observables that ``options`` compute (flat NumPy arrays of equal length)."""
    n = len(np.asarray(outputs["converged"]).reshape(-1))
    nonfinite = np.zeros(n, dtype=bool)
    nonphys = np.zeros(n, dtype=bool)
    prec = np.zeros(n, dtype=bool)
    for name, ob in observables.items():
        if name not in outputs or not ob.is_computed(options):
            continue
        x = np.broadcast_to(np.asarray(outputs[name], dtype=float).reshape(-1) if np.ndim(outputs[name])
                            else np.asarray(outputs[name], dtype=float), (n,))
        nan = np.isnan(x)
        bad = (nan & (not ob.optional))
        if ob.finite:
            bad = bad | np.isinf(x)
        nonfinite |= bad
        with np.errstate(invalid="ignore", over="ignore"):
            lo, hi = ob.bounds(params, outputs, n)
            tol = ob.slack * (1.0 + np.abs(x))
            out_of = ~nan & ((x < lo - tol) | (x > hi + tol))
            nonphys |= out_of & ~bad
            if ob.resolution > 0:
                prec |= ~nan & (x != 0) & (np.abs(x) < ob.resolution)
    return nonfinite, nonphys, prec


# ---- shared declarations --------------------------------------------------------------------
def declare(*items: Option | Observable) -> dict[str, Any]:
    """``{item.name: item}`` in the given order (for ``option_info`` / ``observable_info``)."""
    out: dict[str, Any] = {}
    for it in items:
        if it.name in out:
            raise ValueError(f"{it.name!r} declared twice")
        out[it.name] = it
    return out


def check_real_array(name: str, allow_nan: bool = True) -> Callable[[Any], np.ndarray]:
    """A validator: ``value`` as a float array of real numbers (no complex, bool, strings or
    ``±inf``; NaN allowed if ``allow_nan``), else ``TypeError``/``ValueError`` naming ``name``."""
    def check(value: Any) -> np.ndarray:
        try:
            raw = np.asarray(value)
        except (TypeError, ValueError):
            raise InputTypeError(f"option {name!r} must be an array of real numbers, got {value!r}") from None
        if raw.dtype.kind == "O":
            flat = raw.reshape(-1).tolist()
            if not all(_is_real_number(e) for e in flat):
                raise InputTypeError(f"option {name!r} must be an array of real numbers, got {value!r}")
        elif raw.dtype.kind not in "fiu":
            raise InputTypeError(f"option {name!r} must be an array of real numbers, got {value!r}")
        arr = np.asarray(raw, dtype=float)
        if np.isinf(arr).any() or (not allow_nan and np.isnan(arr).any()):
            raise ValueError(f"option {name!r} must hold finite numbers"
                             + (" (NaN rows: the default start)" if allow_nan else "")
                             + f", got {value!r}")
        return arr
    return check


def init_option(state: Sequence[str]) -> Option:
    """The fixed-point protocol's ``init`` (see :class:`derive.model.Model`)."""
    return Option("init", None, f"start of the fixed-point iteration: None, a length-{len(state)} "
                  f"state {tuple(state)} or an (n_points, {len(state)}) array (NaN rows: default)",
                  kind="any", allow_none=True, check=check_real_array("init"), cli=False)


def stability_option() -> Option:
    return Option("stability", False, "compute the leading eigenvalue of the Jacobian of the "
                  "undamped map at the fixed point", kind="bool")


def progress_option() -> Option:
    return Option("progress", False, "show the iteration's progress", kind="bool")


def unit_interval_observable(name: str, long_name: str, symbol: str = "", **kw: Any) -> Observable:
    """A probability or error rate in [0, 1]."""
    return Observable(name, long_name, symbol, "1", 0.0, 1.0, **kw)
