"""Argument checks shared by the numeric drivers and the model programs (no SymPy)."""
from __future__ import annotations

from typing import Any, Iterable

__all__ = ["one_of"]


def one_of(name: str, value: Any, choices: Iterable[Any]) -> Any:
    """Return ``value`` if it is one of ``choices``, else raise ``ValueError`` naming
    ``name``, the valid values and the value given."""
    choices = tuple(choices)
    if value in choices:
        return value
    valid = (f"{choices[0]!r} or {choices[1]!r}" if len(choices) == 2
             else f"one of {choices}")
    raise ValueError(f"{name} must be {valid}, got {value!r}")
