"""Generated float64 pipeline = the same equations in mpmath at 50 digits (check 1).

The kernels evaluate the learning curves through cancellation-free rewritings of the
resolvent combinations (``model.stable_forms``: every term a positive integral against
the Marchenko–Pastur law), proved equal to the stated definitions modulo the MP
quadratic (tests/test_icl_derivations.py). The only genuine cancellation left is
tau - D at the double-descent pole, where the *problem* is ill-conditioned.

Well-conditioned region (q in [1e-3, 10], tau in [0.05, 100] with |tau - 1| >= 0.1,
rho >= 1e-3, any kappa including inf, lam in {0} U [1e-8, 10]): 1e-12 relative
(13 digits in practice). Over the full domain of the spec (q down to 1e-6, tau down to
1e-3, lam down to 1e-12, rho = 0): 12 digits; the worst points are tau ~ 1e-3 with
lam ~ 1e-12, where the effective-ridge root eps itself is conditioned by
f'(eps) ~ tau lam / eps^2 and the pipeline inherits the root's relative error.
"""
from __future__ import annotations

import numpy as np

import derive
from derive.verify import verify

MODEL = derive.models.get("icl-linear-attention")
OBS = ("e_icl", "e_idg", "e_train", "eps", "M", "Mp")


def well_conditioned_points(n: int, seed: int) -> list[dict[str, float]]:
    rng = np.random.default_rng(seed)
    pts = []
    while len(pts) < n:
        rho = 10 ** rng.uniform(-3, 1)
        qv = 10 ** rng.uniform(-3, 1)
        tau = 10 ** rng.uniform(np.log10(0.05), 2)
        if abs(tau - 1) < 0.1:
            continue
        kap = np.inf if rng.random() < 0.15 else 10 ** rng.uniform(-2, 3)
        lam = 0.0 if rng.random() < 0.3 else 10 ** rng.uniform(-8, 1)
        pts.append(dict(tau=tau, alpha=(1 + rho) / qv, kappa=kap, rho=rho, lam=lam))
    return pts


def test_well_conditioned_region_1e12():
    rep = verify(MODEL, well_conditioned_points(80, seed=11), dps=50, observables=OBS)
    for name in OBS:
        assert rep.min_digits(name) >= 12.0, rep.table()


def test_full_domain_at_least_12_digits():
    rep = verify(MODEL, MODEL.random_points(np.random.default_rng(12), 80), dps=50,
                 observables=OBS)
    for name in OBS:
        assert rep.min_digits(name) >= 12.0, rep.table()
    # and the median point is at full float64 accuracy
    for name in ("e_icl", "e_idg"):
        assert np.median(rep.digits[name]) >= 14.0, rep.table()


def test_lambda_to_zero_is_continuous():
    """lam = 1e-12 (root find) -> lam = 0 (derived closed forms), both branches."""
    for tau in (0.3, 0.8, 1.3, 5.0):
        a = derive.solve("icl-linear-attention", tau=tau, alpha=3.0, kappa=0.7, rho=0.1, lam=0.0)
        b = derive.solve("icl-linear-attention", tau=tau, alpha=3.0, kappa=0.7, rho=0.1, lam=1e-12)
        for name in ("e_icl", "e_idg", "e_train"):
            assert abs(float(a[name]) - float(b[name])) <= 1e-8 * abs(float(a[name])) + 1e-20
