"""numerics.special: Owen's T by array operations (the CuPy path, run here on NumPy) and the
bivariate normal CDF, against SciPy's owens_t / multivariate_normal and mpmath."""
from __future__ import annotations

import types

import mpmath
import numpy as np
import pytest
import scipy.special
from scipy.stats import multivariate_normal

from numerics.special import bvn_cdf, owens_t

#: a special-function module without owens_t, as cupyx.scipy.special is
NO_OWENS_T = types.SimpleNamespace(ndtr=scipy.special.ndtr, ndtri=scipy.special.ndtri)


def test_owens_t_by_quadrature_matches_scipy():
    rng = np.random.default_rng(0)
    h = np.r_[rng.uniform(-10, 10, 4000), rng.uniform(-1, 1, 1000), 0.0, 0.0, 40.0]
    a = np.r_[np.tan(rng.uniform(-1.57, 1.57, 5000)), 1.0, -1e6, 0.5]
    got = owens_t(h, a, special=scipy.special)
    np.testing.assert_allclose(got, scipy.special.owens_t(h, a), rtol=0, atol=3e-16)
    assert owens_t(0.0, 2.0) == pytest.approx(np.arctan(2.0) / (2 * np.pi), rel=1e-15)


def _plackett(h: float, k: float, r: float) -> float:
    """Φ2 = Φ(h)Φ(k) + ∫_0^r φ2(h, k; t) dt at 30 digits (independent of the code under test)."""
    with mpmath.workdps(30):
        h, k, r = mpmath.mpf(h), mpmath.mpf(k), mpmath.mpf(r)
        return float(mpmath.ncdf(h) * mpmath.ncdf(k) + mpmath.quad(
            lambda t: mpmath.exp(-(h**2 - 2 * t * h * k + k**2) / (2 * (1 - t**2)))
            / (2 * mpmath.pi * mpmath.sqrt(1 - t**2)), [0, r]))


@pytest.mark.parametrize("special", [scipy.special, NO_OWENS_T], ids=["scipy", "no-owens_t"])
def test_bvn_cdf_both_paths(special):
    rng = np.random.default_rng(1)
    for r in (1 / 3, -1 / 3, 0.7):
        pts = rng.uniform(-4, 4, size=(20, 2))
        want = np.array([_plackett(a, b, r) for a, b in pts])
        got = bvn_cdf(pts[:, 0], pts[:, 1], r, special=special)
        big = want > 1e-6  # Owen's formula (absolute accuracy); below: the positive fallback
        np.testing.assert_allclose(got[big], want[big], rtol=1e-12, atol=1e-16)
        np.testing.assert_allclose(got[~big], want[~big], rtol=1e-4)
        scipy_mvn = multivariate_normal(cov=[[1, r], [r, 1]]).cdf(pts)  # abseps 1e-5 by default
        np.testing.assert_allclose(got, scipy_mvn, rtol=0, atol=1e-5)
    # h = 0 or k = 0: Owen's formula in its limit, full precision (was the 40-node fallback)
    for h, k, r in ((0.0, 1.3, 1 / 3), (0.0, -2.5, -1 / 3), (1.7, 0.0, 0.7), (-3.0, 0.0, -0.9)):
        assert bvn_cdf(h, k, r, special=special) == pytest.approx(_plackett(h, k, r), rel=1e-14)
    assert bvn_cdf(0.0, 0.0, 0.5, special=special) == pytest.approx(1 / 3, rel=1e-15)  # Sheppard
    # lower tail, relative accuracy where Owen's formula cancels
    v = float(bvn_cdf(-8.0, -1.0, -1 / 3, special=special))
    assert v == pytest.approx(_plackett(-8.0, -1.0, -1 / 3), rel=1e-4)


def test_bvn_cdf_paths_agree_to_rounding():
    rng = np.random.default_rng(2)
    h, k = rng.uniform(-9, 9, 5000), rng.uniform(-9, 9, 5000)
    r = rng.uniform(-0.99, 0.99, 5000)
    a, b = bvn_cdf(h, k, r), bvn_cdf(h, k, r, special=NO_OWENS_T)
    np.testing.assert_allclose(b, a, rtol=1e-9, atol=3e-16)
