"""numerics/: backends, batched bracketed roots, agreeing digits, parameter domains, grid specs."""
from __future__ import annotations

import math

import mpmath
import numpy as np
import pytest

from derive.grid import GridSpecError, parse_grid
from derive.params import Domain, Parameter
from numerics.backend import BackendUnavailableError, get_backend
from numerics.highprec import agreeing_digits, mp_bracketed_newton
from numerics.results import Status
from numerics.roots import bracketed_root, expand_bracket


def test_backend_default_and_errors():
    be = get_backend()
    assert be.name == "numpy" and be.xp is np
    with pytest.raises(ValueError, match="unknown backend"):
        get_backend("torch")


def test_cupy_absent_is_a_clear_error():
    try:
        import cupy  # noqa: F401
    except ImportError:
        with pytest.raises(BackendUnavailableError, match="pip install attention-theory\\[gpu\\]"):
            get_backend("cupy")
    else:
        pytest.skip("CuPy is installed here")


def test_bracketed_root_newton_and_bisection_agree():
    a = np.geomspace(1e-8, 1e8, 33)
    f = lambda x, a: x**3 - a  # noqa: E731
    fp = lambda x, a: 3 * x**2  # noqa: E731
    for fprime in (fp, None):
        r = bracketed_root(f, 1e-6, 1e6, (a,), fprime=fprime, log_space=True, rtol=1e-15)
        assert r.all_converged
        np.testing.assert_allclose(r.x, np.cbrt(a), rtol=4e-15)
    r = bracketed_root(f, 1e-6, 1e6, (a,), fprime=fp, log_space=True, rtol=1e-15)
    assert r.iterations.max() < 80


def test_bracketed_root_flags_points():
    f = lambda x, c: x - c  # noqa: E731
    c = np.array([0.5, 5.0, np.nan])
    r = bracketed_root(f, 0.0, 1.0, (c,))
    assert r.converged.tolist() == [True, False, False]
    assert r.status[1] == Status.NO_BRACKET
    assert r.status[2] in (Status.NO_BRACKET, Status.NONFINITE)
    assert math.isnan(r.x[1]) and math.isnan(r.x[2])
    r = bracketed_root(f, 0.0, 1.0, (np.array([0.3]),), maxiter=3)
    assert r.status[0] == Status.MAXITER and not r.converged[0]
    lo, hi, ok = expand_bracket(lambda x, c: x - c, 0.0, 1.0, (np.array([3.0, 1e30]),),
                                max_steps=10)
    assert ok.tolist() == [True, False]


def test_agreeing_digits_and_mp_newton():
    with mpmath.workdps(50):
        third = mpmath.mpf(1) / 3
        d = agreeing_digits([1 / 3, 0.3333, np.inf], np.array([third, third, mpmath.inf]))
        assert d[0] > 15.5 and 3.5 < d[1] < 4.5 and d[2] == 17
        root, _ = mp_bracketed_newton(lambda x: x**2 - 2, lambda x: 2 * x, 0, 2)
        assert abs(root - mpmath.sqrt(2)) < mpmath.mpf(10) ** -44
    with pytest.raises(ArithmeticError):
        mp_bracketed_newton(lambda x: x**2 + 1, lambda x: 2 * x, 0, 2)


def test_parameter_domain_messages():
    p = Parameter("omega", Domain(0, 1, True, True), r"\omega", "semantic strength")
    np.testing.assert_array_equal(p.validate([0, 0.5, 1]), [0, 0.5, 1])
    with pytest.raises(ValueError, match=r"'omega' \(semantic strength\) = 1.5 is outside its valid range \[0, 1\]"):
        p.validate([0.2, 1.5])
    with pytest.raises(ValueError, match="NaN"):
        p.validate(float("nan"))
    with pytest.raises(ValueError, match="number"):
        p.validate("abc")
    n = Parameter("L", Domain(2, math.inf, True, integer=True), "L", "tokens")
    with pytest.raises(ValueError, match="integers in"):
        n.validate(2.5)


def test_grid_specs():
    assert parse_grid("0.5") == 0.5
    np.testing.assert_allclose(parse_grid("0.1:10:5"), np.linspace(0.1, 10, 5))
    np.testing.assert_allclose(parse_grid("1e-3:1e3:7:log"), np.geomspace(1e-3, 1e3, 7))
    np.testing.assert_array_equal(parse_grid("1, 10,inf"), [1, 10, math.inf])
    assert parse_grid("10,").shape == (1,)
    for bad in ("__import__('os')", "1:2", "1:2:x", "0:1:5:log", "a,b", "1:inf:3", "", "2**10"):
        with pytest.raises(GridSpecError):
            parse_grid(bad, "tau")
