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


def kernels_agree_with_mpmath(model: Any, cases: Sequence[tuple[str, Any]], draws: int = 10,
                              digits: float = 11) -> None:
    """Each generated float64 kernel ``name`` equals its mpmath version at 50 digits to more than
    ``digits`` digits, at ``draws`` points drawn by ``gen()`` per case; outputs below 1e-10 of the
    largest output (in magnitude) are skipped (there the absolute agreement is what matters)."""
    import mpmath

    from numerics.highprec import agreeing_digits

    for name, gen in cases:
        kf, km = model.kernel(name), model.kernel(name, "mpmath")
        for _ in range(draws):
            a = gen()
            f = kf(np, None, *[np.float64(v) for v in a])
            with mpmath.workdps(50):
                ref = km(mpmath.mp, *[mpmath.mpf(float(v)) for v in a])
            big = max(abs(ref[j]) for j in ref)
            for key in f:
                if abs(ref[key]) < 1e-10 * max(1, big):
                    continue
                assert agreeing_digits(float(f[key]), ref[key]) > digits, (name, key, a)
