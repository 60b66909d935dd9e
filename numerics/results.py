"""Result types that say, point by point, whether a computation succeeded and why.

Modelled on ``scipy.optimize.OptimizeResult``, but batched: every field is an
array over the parameter grid, and ``status`` carries a reason code per point.
"""
from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import Any

import numpy as np

__all__ = ["Status", "BatchOutcome", "PointwiseResult", "STATUS_MEANINGS", "fill_value"]


class Status(IntEnum):
    """Per-point outcome codes (stored as ``int8`` in datasets)."""

    OK = 0
    MAXITER = 1  #: iteration budget exhausted before the tolerance was met
    NO_BRACKET = 2  #: no sign change found: the root is not where the model says it is
    NONFINITE = 3  #: a non-finite value appeared (overflow, division by zero)
    POLE = 4  #: the quantity is infinite here by theory (e.g. tau = 1 at lam = 0)
    NOT_COMPUTED = 5  #: outside the branch this routine handles
    FAILED = 6  #: the computation of this point raised an error (sweeps record it and go on)
    NONPHYSICAL = 7  #: converged, but an observable lies outside its declared physical range
    PRECISION = 8  #: an observable is below the precision floor of the pipeline (not resolved)


STATUS_MEANINGS = {int(s): s.name.lower() for s in Status}


def fill_value(name: str, dtype: Any, status: Status) -> Any:
    """What a result field holds at a point that has no value: ``status`` for the field
    named "status", False for booleans, 0 for integers, NaN otherwise."""
    if name == "status":
        return int(status)
    kind = np.dtype(dtype).kind
    if kind == "b":
        return False
    if kind in "iu":
        return 0
    return float("nan")


class BatchOutcome:
    """What every batched result reports from its ``converged``, ``status`` and
    ``iterations`` arrays (one entry per point): shared by :class:`PointwiseResult` and
    :class:`numerics.fixed_point.FixedPointResult`."""

    converged: Any
    status: Any
    iterations: Any
    #: how :meth:`summary` words "converged" (a subclass may add the tolerance and residual)
    _converged_words = "converged"

    @property
    def all_converged(self) -> bool:
        return bool(np.all(np.asarray(self.converged)))

    def summary(self) -> str:
        st = np.asarray(self.status).reshape(-1)
        counts = {STATUS_MEANINGS[int(k)]: int((st == k).sum()) for k in np.unique(st)}
        it = np.asarray(self.iterations)
        return (f"{int(np.sum(np.asarray(self.converged)))}/{st.size} {self._converged_words}; "
                f"status counts {counts}; max iterations {int(it.max()) if it.size else 0}")


@dataclass
class PointwiseResult(BatchOutcome):
    """Outcome of a batched solve.

    Attributes
    ----------
    x: solution per point (NaN where ``converged`` is False).
    converged: True where the tolerance was met.
    residual: |f(x)| (root finding) or the undamped-map residual (fixed points).
    iterations: iterations used per point.
    status: :class:`Status` code per point.
    """

    x: Any
    converged: Any
    residual: Any
    iterations: Any
    status: Any
