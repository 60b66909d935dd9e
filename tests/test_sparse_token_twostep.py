"""sparse-token: the two gradient steps derived by SymPy (item 3 of the issue).

References: the earlier hand derivation (``SparseToken.step1_hand`` / ``step2_hand``, itself
checked against simulation in ``tests/data/sparse_token_sim_trend.md``), the gradient forms
stated in the spec, direct SymPy evaluation at (L, R) not used to identify the polynomial
dependence, and mpmath at 50 digits. Agreement with finite-d simulation of the derived forms:
``tests/test_sparse_token_simulation.py::test_alignment_*`` (they evaluate ``derive.solve``).
"""
from __future__ import annotations

import mpmath
import numpy as np
import pytest
import sympy as sp

from derive.models.sparse_token import twostep as ts
from derive.models import sparse_token as st

MODEL = st.SparseToken()


@pytest.mark.parametrize("Lc", [2, 3, 4])
def test_gradients_at_init_by_differentiation(Lc):
    """SymPy's gradient of the softmax-attention score at q = 0 is (beta/L) X^T P X w, and
    the w-gradient is the pooled token x_bar."""
    g = ts.gradients_at_init(Lc)
    assert (g["grad_q"] - g["stated_q"]).applyfunc(sp.simplify) == sp.zeros(2, 1)
    assert (g["grad_w"] - g["xbar"]).applyfunc(sp.simplify) == sp.zeros(2, 1)


def test_step1_derived_equals_hand_form():
    der, hand = dict(ts.step1_derived()), dict(MODEL.step1_hand)
    assert der.keys() == hand.keys()
    for k in hand:
        assert sp.simplify(der[k] - hand[k]) == 0, k


def test_step2_derived_equals_hand_form():
    hand = dict(MODEL.step2_hand)
    hand_sub = {k: v.subs(st.hbar, hand[st.hbar]) for k, v in hand.items()}
    der = ts.step2_general()
    for name, sym in (("A", st.A), ("B2", st.B2), ("C", st.C)):
        assert sp.simplify(der[name] - hand_sub[sym]) == 0, name
    # the model's program uses the derived forms
    prog = dict(MODEL.step2)
    assert sp.simplify(prog[st.A] - der["A"]) == 0


@pytest.mark.parametrize("Lc, Rc", [(6, 2), (7, 7)])
def test_general_form_at_held_out_sizes(Lc, Rc):
    """Direct conditioning at (L, R) outside the fit points equals the identified form, and
    the zeta-dependent parts vanish (P kills the direction the pre-activation depends on)."""
    m = ts.step2_moments(Lc, Rc)
    assert all(t == 0 for t in m["zeta_terms"])
    g = ts.step2_general()
    sub = {st.L: Lc, st.R: Rc}
    assert sp.simplify(m["A"] - g["A"].subs(sub)) == 0
    assert sp.simplify(m["E_u"]**2 - g["B2"].subs(sub)) == 0
    assert sp.simplify(m["N"] / st.alpha0 - g["C"].subs(sub)) == 0


def test_derived_alignment_kernel_vs_hand_form_mpmath50():
    """Float64 kernel of the derived forms vs the hand forms evaluated at 50 digits."""
    rng = np.random.default_rng(3)
    k = MODEL.kernel("alignment")
    import scipy.special

    hand = dict(MODEL.step1_hand)
    h2 = dict(MODEL.step2_hand)
    order = [st.c_p, st.c_m, st.m1, st.u2]
    for _ in range(6):
        Lv, Rv = int(rng.integers(2, 50)), 1
        pt = {st.L: Lv, st.R: Rv, st.pi: rng.uniform(0.1, 0.9), st.theta: rng.uniform(0.5, 5),
              st.beta: rng.uniform(0.5, 2), st.eta_w: rng.uniform(0.2, 2),
              st.eta_q: rng.uniform(0.2, 2), st.alpha0: rng.uniform(0.3, 5),
              st.b1: rng.uniform(-1, 1), st.loss: float(rng.integers(0, 2))}
        Eh = {st.Eh_p: rng.uniform(-1, 0), st.Eh_m: rng.uniform(0, 1),
              st.Eh2_p: rng.uniform(0, 1), st.Eh2_m: rng.uniform(0, 1)}
        ksyms = (st.L, st.R, st.pi, st.theta, st.beta, st.eta_w, st.eta_q, st.alpha0, st.b1, st.loss)
        args = [np.atleast_1d(float(pt[sym])) for sym in ksyms]
        out = k(np, scipy.special, *args, *[np.atleast_1d(Eh[s]) for s in
                                            (st.Eh_p, st.Eh_m, st.Eh2_p, st.Eh2_m)])
        with mpmath.workdps(50):
            sub = {s: sp.Float(v, 50) for s, v in {**pt, **Eh}.items()}
            for s in order:
                sub[s] = sp.N(hand[s].subs(sub), 50)
            sub[st.hbar] = sp.N(h2[st.hbar].subs(sub), 50)
            for s in (st.A, st.B2, st.C):
                sub[s] = sp.N(h2[s].subs(sub), 50)
            for s in (st.q_xi, st.q_norm, st.s_q):
                ref = float(sp.N(h2[s].subs(sub), 50))
                assert abs(out[str(s)][0] - ref) <= 1e-12 * max(1.0, abs(ref)), (s, out[str(s)], ref)
