"""Code generation: explicit function table, safe Piecewise, CSE statements, hashing, mpmath."""
from __future__ import annotations

import warnings

import mpmath
import numpy as np
import pytest
import scipy.special
import sympy as sp

from derive.codegen import (FUNCTION_TABLE, MpmathPrinter, Program, Softplus, UnmappedNodeError,
                            XpPrinter, generate)

x, y = sp.symbols("x y", real=True)
out = sp.Symbol("out")


def run(expr, *args, target="xp", inputs=(x,)):
    k = generate(Program("t_" + str(abs(hash(sp.srepr(expr))))[:10], inputs, ((out, expr),), (out,)),
                 target)
    if target == "xp":
        return k(np, scipy.special, *args)["out"], k
    return k(mpmath.mp, *args)["out"], k


def test_every_table_function_prints_and_runs():
    vals = np.array([0.3, 0.7])
    for fn in FUNCTION_TABLE:
        if fn is sp.atan2 or fn.__name__ == "LogAddExp":
            expr = fn(x, y)
            args, inputs = (vals, vals + 0.1), (x, y)
        else:
            expr, args, inputs = fn(x, evaluate=False), (vals,), (x,)
        got, _ = run(expr, *args, inputs=inputs)
        ref = sp.lambdify(inputs, expr.rewrite(sp.log) if fn.__module__.startswith("derive") else expr,
                          modules=["scipy", "numpy"])(*args)
        np.testing.assert_allclose(got, ref, rtol=1e-14, err_msg=str(fn))


def test_unmapped_function_raises_before_printing():
    for bad in (sp.besselj(0, x), sp.Function("f")(x), sp.Integral(x, (x, 0, 1)), sp.zeta(x)):
        with pytest.raises(UnmappedNodeError):
            XpPrinter().doprint(bad)
        with pytest.raises(UnmappedNodeError):
            MpmathPrinter().doprint(bad)


def test_no_math_module_and_sqrt_on_arrays():
    src = XpPrinter().doprint(sp.erf(x) + sp.sqrt(x) + 1 / sp.sqrt(y) + sp.loggamma(x))
    assert "math." not in src
    assert "special.erf(x)" in src and "xp.sqrt(x)" in src and "special.gammaln(x)" in src


def test_softplus_and_log1pexp_do_not_overflow():
    xs = np.array([-800.0, -1.0, 0.0, 30.0, 800.0])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        a, k = run(sp.log(1 + sp.exp(x)), xs)
        b, _ = run(Softplus(x), xs)
    assert "logaddexp" in k.source
    np.testing.assert_allclose(a, np.logaddexp(0, xs), rtol=1e-15)
    np.testing.assert_allclose(b, np.logaddexp(0, xs), rtol=1e-15)


def test_piecewise_untaken_branch_never_evaluated():
    """sqrt(x) for x >= 0, log(-x) otherwise: a plain ``where`` would warn (and give NaN
    gradients); the masked helper evaluates each branch only on its own points."""
    expr = sp.Piecewise((sp.sqrt(x) + 1 / x, x > 0), (sp.log(-x), x < 0), (0, True))
    xs = np.array([-4.0, -1.0, 0.0, 1.0, 4.0])
    with np.errstate(all="raise"):
        got, k = run(expr, xs)
    np.testing.assert_allclose(got, [np.log(4), 0.0, 0.0, 2.0, 2.25], rtol=1e-15)
    assert "xp.where" not in k.source and "[_m]" in k.source
    with np.errstate(all="raise"):  # all points in the first branch: the fast path
        got, _ = run(expr, np.array([1.0, 4.0]))
    np.testing.assert_allclose(got, [2.0, 2.25])
    got, _ = run(expr, mpmath.mpf(-4), target="mpmath")  # mpmath: a plain if
    assert abs(got - mpmath.log(4)) < 1e-14


def test_piecewise_broadcasts_scalars_and_arrays():
    expr = sp.Piecewise((x * y, x > y), (x + y, True))
    k = generate(Program("pw_bcast", (x, y), ((out, expr),), (out,)), "xp")
    got = k(np, scipy.special, np.array([[1.0], [3.0]]), np.array([2.0, 0.5]))["out"]
    np.testing.assert_allclose(got, [[3.0, 0.5], [6.0, 1.5]])


def test_cse_one_statement_per_temporary_and_huge_expressions_compile():
    # a deep expression with many repeated subexpressions: a single-line lambdify source
    # of this size is what overflows compile(); here every temporary is its own statement
    a, b = sp.symbols("a b")  # no assumptions: assumption queries also walk the tree
    e = a
    for i in range(30):  # 4^30 nodes as a tree, a few hundred distinct
        e = sp.sin(e + i) * sp.cos(e - b) + e**2 / (1 + e**2)
    k = generate(Program("deep", (a, b), ((out, e),), (out,)), "xp")
    lines = [ln for ln in k.source.splitlines() if ln.strip().startswith("_t")]
    assert len(lines) > 80
    assert max(len(ln) for ln in k.source.splitlines() if not ln.lstrip().startswith("#")) < 400
    v = k(np, scipy.special, 0.1, 0.2)["out"]
    assert np.isfinite(v)


def test_key_is_content_hash_and_source_is_cached(tmp_path, monkeypatch):
    monkeypatch.setenv("ATTN_THEORY_CACHE", str(tmp_path))
    p1 = Program("hashme", (x,), ((out, sp.exp(x) + 1),), (out,))
    p2 = Program("hashme", (x,), ((out, sp.exp(x) + 2),), (out,))
    k1, k1b, k2 = generate(p1), generate(p1), generate(p2)
    assert k1.key == k1b.key != k2.key
    assert f"# expressions sha256: {k1.key}" in k1.source
    cached = list((tmp_path / "kernels").glob("hashme-xp-*.py"))
    assert len(cached) == 2
    # a cache file whose recorded key does not match is ignored, not trusted
    f = next(c for c in cached if k1.key[:32] in c.name)
    f.write_text("def hashme(xp, special, x):\n    return {'out': 0}\n")
    assert generate(p1).source == k1.source
    w = k1.write(tmp_path / "k.py")
    ns: dict = {}
    exec(compile(w.read_text(), str(w), "exec"), ns)
    assert ns["hashme"](np, scipy.special, 0.0)["out"] == 2.0


def test_mpmath_printer_keeps_rationals_exact():
    expr = sp.Rational(1, 3) + sp.Float("0.1", 30) * x + x**sp.Rational(3, 2)
    with mpmath.workdps(50):
        got, k = run(expr, mpmath.mpf(2), target="mpmath")
        ref = mpmath.mpf(1) / 3 + mpmath.mpf("0.1") * 2 + mpmath.mpf(2) ** mpmath.mpf(1.5)
        assert abs(got - ref) < mpmath.mpf(10) ** -28
    assert "mp.mpf(1)/3" in k.source


def test_program_validates_order():
    with pytest.raises(ValueError, match="before they are defined"):
        Program("bad", (x,), ((out, x + y),), (out,))
    with pytest.raises(ValueError, match="never assigned"):
        Program("bad", (x,), ((out, x),), (y,))
