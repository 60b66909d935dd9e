"""Parsing command-line grid specifications, without ``eval`` or ``sympify``.

Accepted forms (whitespace ignored):

* ``0.5``            a single value (scalar: becomes a dataset attribute);
* ``1,10,100``       a list (a dimension, even with one element: ``10,``);
* ``0.1:10:200``     ``numpy.linspace(0.1, 10, 200)``;
* ``1e-3:1e3:61:log`` ``numpy.geomspace(1e-3, 1e3, 61)``;
* ``inf``            infinity (e.g. ``kappa=inf``), also inside lists.
"""
from __future__ import annotations

import math
import re

import numpy as np

__all__ = ["parse_grid", "GridSpecError"]

_NUMBER = re.compile(r"^[+-]?(inf|infinity|((\d+\.?\d*|\.\d+)([eE][+-]?\d+)?))$", re.IGNORECASE)


class GridSpecError(ValueError):
    """A grid specification could not be parsed."""


def _number(tok: str, name: str, spec: str) -> float:
    t = tok.strip()
    if not _NUMBER.match(t):
        raise GridSpecError(f"--{name} {spec!r}: {t!r} is not a number")
    return float(t)


def parse_grid(spec: str, name: str = "value") -> float | np.ndarray:
    """Parse ``spec`` into a float (scalar) or a 1-d array (a grid dimension)."""
    s = spec.replace(" ", "")
    if not s:
        raise GridSpecError(f"--{name}: empty value")
    if ":" in s:
        parts = s.split(":")
        scale = "lin"
        if len(parts) == 4:
            scale = parts.pop().lower()
            if scale not in ("lin", "log"):
                raise GridSpecError(f"--{name} {spec!r}: the 4th field must be 'lin' or 'log'")
        if len(parts) != 3:
            raise GridSpecError(f"--{name} {spec!r}: expected start:stop:num[:log]")
        a, b = _number(parts[0], name, spec), _number(parts[1], name, spec)
        if not re.fullmatch(r"\d+", parts[2]) or int(parts[2]) < 1:
            raise GridSpecError(f"--{name} {spec!r}: num must be a positive integer")
        n = int(parts[2])
        if not (math.isfinite(a) and math.isfinite(b)):
            raise GridSpecError(f"--{name} {spec!r}: range ends must be finite")
        if scale == "log":
            if a <= 0 or b <= 0:
                raise GridSpecError(f"--{name} {spec!r}: a log grid needs positive ends")
            return np.geomspace(a, b, n)
        return np.linspace(a, b, n)
    if "," in s:
        toks = [t for t in s.split(",") if t != ""]
        if not toks:
            raise GridSpecError(f"--{name} {spec!r}: empty list")
        return np.array([_number(t, name, spec) for t in toks])
    return _number(s, name, spec)
