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

__all__ = ["VerifyReport", "verify", "pipeline_check_available"]


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


def pipeline_check_available(model: Model) -> str:
    """"" when ``model`` states the whole contract for check 1 -- its own ``evaluate_mp`` and its
    own ``random_points`` (valid points of its domain) -- else the reason it does not (then
    ``attn-theory verify`` checks every generated kernel against mpmath instead)."""
    if model.mp_unavailable:
        return f"no mpmath pipeline ({model.mp_unavailable})"
    if type(model).evaluate_mp is Model.evaluate_mp:
        return "no mpmath pipeline (evaluate_mp not implemented)"
    if type(model).random_points is Model.random_points:
        return "no model-specific random_points for the whole pipeline"
    return ""


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
    mp_outs = [model.evaluate_mp(pt, dps=dps) for pt in pts]
    if observables is None:  # the observables the mpmath pipeline computes
        names = [n for n in names if all(n in o for o in mp_outs)]
    ref: dict[str, list[Any]] = {n: [o[n] for o in mp_outs] for n in names}
    digits = {n: agreeing_digits(out[n], np.array(ref[n], dtype=object)) for n in names}
    return VerifyReport(model.name, pts, digits, {n: np.asarray(out[n]) for n in names},
                        ref, dps)
