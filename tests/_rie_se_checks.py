"""Checks shared by the tests of the two RIE state-evolution models (bilinear sequence regression,
the extensive-width quadratic network): the fixed-point protocol's ``stability`` output against
an independent measurement."""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import pytest

import derive


def solve_with_stability(model: Any, name: str, alpha: np.ndarray, point: dict[str, float],
                         se_args: Sequence[float], e0: float = 1e-3, steps: int = 3) -> np.ndarray:
    """Solve at ``alpha`` (and the scalar ``point``) with ``stability=True`` and check, per point,
    that the reported leading eigenvalue lies in (0, 1) and equals the contraction ratio of the
    undamped map measured independently: ``steps`` iterations of ``model.se_map`` from
    ``m* + e0`` (``se_args``: the map's arguments after α), ratio ``(e_steps / e0)^(1/steps)``.
    Returns the fixed points m*."""
    ds = derive.solve(name, alpha=alpha, stability=True, **point)
    assert model.state == ("mmse",) and "stability" in model.observables
    m_star = ds.mmse.values
    lead = ds.stability.values
    assert np.all((lead > 0) & (lead < 1))
    for i, a in enumerate(np.atleast_1d(alpha)):
        m = np.array([m_star[i] + e0])
        for _ in range(steps):
            m = model.se_map(m, np.array([a]), *(np.array([v]) for v in se_args))
        ratio = (float(m[0] - m_star[i]) / e0) ** (1 / steps)
        assert lead[i] == pytest.approx(ratio, rel=5e-3)
    return m_star
