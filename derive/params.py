"""Control parameters that carry their domain.

A :class:`Parameter` is a SymPy symbol together with the set of values it may
take. Validation rejects NaN and anything outside the domain with a
``ValueError`` that names the parameter, the offending value and the valid range.
"""
from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np

__all__ = ["Parameter", "Domain", "positive", "nonnegative", "unit_interval", "positive_or_inf",
           "InputTypeError"]


class InputTypeError(TypeError, ValueError):
    """An input (parameter or option) of the wrong type: complex, boolean or string where a real
    number is expected. Both a ``TypeError`` and a ``ValueError`` (older callers catch the latter)."""


@dataclass(frozen=True)
class Domain:
    """An interval of the extended real line, ``lo < x < hi`` or with closed ends."""

    lo: float
    hi: float
    lo_closed: bool = False
    hi_closed: bool = False
    integer: bool = False

    def contains(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=float)
        ok = (x >= self.lo) if self.lo_closed else (x > self.lo)
        ok &= (x <= self.hi) if self.hi_closed else (x < self.hi)
        if self.integer:
            ok &= np.isfinite(x) & (np.floor(x) == x)
        return ok & ~np.isnan(x)

    def __str__(self) -> str:
        def fmt(v: float) -> str:
            if math.isinf(v):
                return "∞" if v > 0 else "-∞"
            return f"{v:g}"

        s = ("[" if self.lo_closed else "(") + fmt(self.lo) + ", " + fmt(self.hi)
        s += "]" if self.hi_closed else ")"
        return ("integers in " + s) if self.integer else s

    def sympy_assumptions(self) -> dict[str, bool]:
        """SymPy assumptions implied by the domain (used to simplify derivations)."""
        a: dict[str, bool] = {"real": True}
        if self.lo > 0 or (self.lo == 0 and not self.lo_closed):
            a["positive"] = True
        elif self.lo >= 0:
            a["nonnegative"] = True
        if self.integer:
            a["integer"] = True
        return a


positive = Domain(0.0, math.inf)
nonnegative = Domain(0.0, math.inf, lo_closed=True)
positive_or_inf = Domain(0.0, math.inf, hi_closed=True)
unit_interval = Domain(0.0, 1.0, lo_closed=True, hi_closed=True)


@dataclass(frozen=True)
class Parameter:
    """A control parameter: name (the spec's), symbol, domain, LaTeX, meaning.

    ``symbol`` carries SymPy assumptions derived from the domain; a domain whose
    closed upper end is ∞ (e.g. κ = ∞, unbounded task diversity) admits ``inf``.
    """

    name: str
    domain: Domain
    latex: str
    description: str

    @cached_property
    def symbol(self) -> "sp.Symbol":
        """The SymPy symbol, with the assumptions of the domain. Built on first use, so that
        importing a model (and solving from cached kernels) never imports SymPy."""
        import sympy as sp

        return sp.Symbol(self.name, **self.domain.sympy_assumptions())

    def validate(self, value: Any) -> np.ndarray:
        """Return ``value`` as a float array, or raise ``ValueError``/``TypeError`` naming the
        parameter. Only real numbers are accepted: complex values, booleans and strings are
        refused (never cut to their real part or read as 0/1); NaN and values outside the
        domain (``inf`` unless the domain's closed end is ∞) are refused."""
        raw = value
        if not isinstance(raw, np.ndarray):
            try:
                raw = np.asarray(value)
            except (TypeError, ValueError):
                raw = np.asarray(value, dtype=object)
        kind = raw.dtype.kind
        if kind == "O":
            flat = raw.reshape(-1).tolist()
            if not all(isinstance(e, numbers.Real) and not isinstance(e, (bool, np.bool_))
                       for e in flat):
                bad_e = next(e for e in flat if not (isinstance(e, numbers.Real)
                                                    and not isinstance(e, (bool, np.bool_))))
                raise InputTypeError(f"parameter '{self.name}' ({self.description}) must be a real "
                                f"number or an array of real numbers, got {bad_e!r}")
        elif kind not in "fiu":
            what = {"c": "complex", "b": "boolean", "U": "string", "S": "bytes"}.get(kind, raw.dtype.name)
            raise InputTypeError(f"parameter '{self.name}' ({self.description}) must be a real number "
                            f"or an array of real numbers, got a {what} value {value!r}")
        try:
            arr = np.asarray(raw, dtype=float)
        except (TypeError, ValueError, OverflowError):
            raise ValueError(
                f"parameter '{self.name}' ({self.description}) must be a number or an array "
                f"of numbers, got {repr(value)[:80]}"
            ) from None
        if arr.size == 0:
            raise ValueError(f"parameter '{self.name}' is an empty array")
        bad = ~self.domain.contains(arr)
        if bad.any():
            first = arr.reshape(-1)[np.argmax(bad.reshape(-1))]
            what = "NaN" if np.isnan(first) else f"{first:g}"
            raise ValueError(
                f"parameter '{self.name}' ({self.description}) = {what} is outside its valid "
                f"range {self.domain}"
            )
        return arr
