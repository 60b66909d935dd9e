"""Float64 pipeline vs the same equations in mpmath: agreeing digits per point.

Check 1 of the architecture: every generated float64 kernel (run through the
model's batched pipeline) is compared with the mpmath printing of the *same*
expressions, solved and evaluated at ``dps`` digits.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

from numerics.backend import get_backend
from numerics.highprec import agreeing_digits

from .model import Model

__all__ = ["VerifyReport", "verify"]


@dataclass
class VerifyReport:
    """Agreeing significant digits (float64 vs mpmath) per observable and point."""

    model: str
    points: list[dict[str, float]]
    digits: dict[str, np.ndarray]
    float64: dict[str, np.ndarray]
    reference: dict[str, list[Any]]
    dps: int

    def min_digits(self, name: str) -> float:
        return float(np.min(self.digits[name]))

    def table(self) -> str:
        rows = [f"{self.model}: float64 pipeline vs mpmath at {self.dps} digits, "
                f"{len(self.points)} points", "",
                "| observable | min digits | median digits | worst point |", "|---|---|---|---|"]
        for name, d in self.digits.items():
            i = int(np.argmin(d))
            worst = ", ".join(f"{k}={v:.3g}" for k, v in self.points[i].items())
            rows.append(f"| {name} | {d.min():.1f} | {np.median(d):.1f} | {worst} |")
        return "\n".join(rows)


def verify(model: Model, points: Sequence[Mapping[str, float]], *, dps: int = 50,
           observables: Sequence[str] | None = None) -> VerifyReport:
    """Evaluate ``points`` with the float64 pipeline and with mpmath; count agreeing digits."""
    be = get_backend("numpy")
    names = list(observables or model.observables)
    pts = [dict(p) for p in points]
    flat = {p.name: be.asarray([pt[p.name] for pt in pts]) for p in model.parameters}
    for p in model.parameters:
        p.validate(flat[p.name])
    out = model.evaluate(flat, be)
    ref: dict[str, list[Any]] = {n: [] for n in names}
    for pt in pts:
        mp_out = model.evaluate_mp(pt, dps=dps)
        for n in names:
            ref[n].append(mp_out[n])
    digits = {n: agreeing_digits(out[n], np.array(ref[n], dtype=object)) for n in names}
    return VerifyReport(model.name, pts, digits, {n: np.asarray(out[n]) for n in names},
                        ref, dps)
