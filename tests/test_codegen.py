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
    #: independent references for the project's own functions without a log rewrite
    own = {"NormalCDF": lambda v: 0.5 * scipy.special.erfc(-v / np.sqrt(2.0))}
    for fn in FUNCTION_TABLE:
        if fn.__name__ == "BivariateNormalCDF":
            continue  # three arguments: test_bivariate_normal_cdf_is_a_table_entry below
        if fn.__name__ in own:
            got, _ = run(fn(x, evaluate=False), vals, inputs=(x,))
            np.testing.assert_allclose(got, own[fn.__name__](vals), rtol=1e-14, err_msg=str(fn))
            continue
        if fn is sp.atan2 or fn.__name__ == "LogAddExp":
            expr = fn(x, y)
            args, inputs = (vals, vals + 0.1), (x, y)
        else:
            expr, args, inputs = fn(x, evaluate=False), (vals,), (x,)
        got, _ = run(expr, *args, inputs=inputs)
        ref = sp.lambdify(inputs, expr.rewrite(sp.log) if fn.__module__.startswith("derive") else expr,
                          modules=["scipy", "numpy"])(*args)
        np.testing.assert_allclose(got, ref, rtol=1e-14, err_msg=str(fn))


def test_bivariate_normal_cdf_is_a_table_entry():
    """Φ2 prints to numerics.special.bvn_cdf on the kernel's own xp/special, imported by the
    kernel module (no ``__import__``); values against the independent mpmath target (Plackett's
    integral at 30 digits) and Sheppard's Φ2(0, 0; r) = 1/4 + asin(r)/(2π)."""
    from derive.codegen.functions import BivariateNormalCDF

    r = sp.Symbol("r", real=True)
    expr = BivariateNormalCDF(x, y, r)
    h = np.array([0.3, -1.2, 0.0, 2.5, -3.0, 0.0])
    k = np.array([0.7, 0.4, 1.1, 0.0, -0.5, 0.0])
    rr = np.array([1 / 3, -1 / 3, 0.6, -0.8, 0.2, 0.5])
    got, kern = run(expr, h, k, rr, inputs=(x, y, r))
    assert "__import__" not in kern.source
    assert "from numerics.special import bvn_cdf as _bvn_cdf" in kern.source
    assert "_bvn_cdf(x, y, r, xp=xp, special=special)" in kern.source
    mpk = generate(Program("t_bvn_mp", (x, y, r), ((out, expr),), (out,)), "mpmath")
    with mpmath.workdps(30):
        want = [float(mpk(mpmath.mp, mpmath.mpf(a), mpmath.mpf(b), mpmath.mpf(c))["out"])
                for a, b, c in zip(h, k, rr)]
    np.testing.assert_allclose(got, want, rtol=1e-14, atol=1e-16)  # Owen's formula: absolute
    assert got[-1] == pytest.approx(0.25 + np.arcsin(0.5) / (2 * np.pi), rel=1e-15)
    # a kernel without it imports nothing
    _, plain = run(sp.erf(x), np.array([0.1]))
    assert "import" not in plain.source.split("def ")[0].replace("# ", "")


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


# -- the tensor stage and the one kernel registry ------------------------------------------------

def _toy_attention():
    """v[b,i,a] = sum_j softmax_j(beta_b sum_c X[b,i,c] X[b,j,c]) X[b,j,a] - X[b,i,a]."""
    from derive.codegen.tensor import Softmax, TensorProgram, tensor_sum

    b, i, j, a, c = sp.symbols("b i j a c", integer=True)
    n, d = sp.Symbol("n", integer=True, positive=True), sp.Symbol("d", integer=True, positive=True)
    X, beta = sp.IndexedBase("X"), sp.IndexedBase("beta")
    S, L, W, U = (sp.IndexedBase(s) for s in ("S", "L", "W", "U"))
    st = (("S", (b, i, j), tensor_sum(X[b, i, c] * X[b, j, c], c, d)),
          ("L", (b, i, j), beta[b] * S[b, i, j]),
          ("W", (b, i, j), Softmax(L[b, i, j], j)),
          ("U", (b, i, a), tensor_sum(W[b, i, j] * X[b, j, a], j, n)),
          ("v", (b, i, a), U[b, i, a] - X[b, i, a]))
    return TensorProgram("toy_attention", (("X", 3), ("beta", 1)), ((n, "X", 1), (d, "X", 2)), st,
                         ("v",), doc="toy", input_kinds=(("X", "unit_rows"),))


def test_tensor_stage_reuses_buffers_and_never_writes_inputs():
    from derive.codegen.tensor import generate_tensor

    tp = _toy_attention()
    k = generate_tensor(tp)
    assert "L = S" in k.source and "W = L" in k.source and "v = U" in k.source  # one n x n buffer
    assert "xp.exp(W, out=W)" in k.source and "W -= xp.max(W, axis=2, keepdims=True)" in k.source
    rng = np.random.default_rng(0)
    X = rng.standard_normal((2, 7, 3))
    beta = np.array([0.5, 40.0])  # large beta: the max shift keeps exp finite
    X0 = X.copy()
    v = k(np, scipy.special, X, beta)["v"]
    np.testing.assert_array_equal(X, X0)
    Lg = beta[:, None, None] * (X @ X.transpose(0, 2, 1))
    P = np.exp(Lg - Lg.max(-1, keepdims=True))
    P /= P.sum(-1, keepdims=True)
    np.testing.assert_allclose(v, P @ X - X, rtol=1e-13, atol=1e-15)


def test_tensor_kernel_matches_its_unrolled_definition_at_50_digits():
    from derive.codegen.tensor import generate_tensor, verify_tensor_kernel

    tp = _toy_attention()
    assert verify_tensor_kernel(tp, generate_tensor(tp), np.random.default_rng(1), 50) >= 13.5


def test_registry_declares_generates_installs_once():
    from derive.codegen import KernelRegistry, compile_program

    tp = _toy_attention()
    p = Program("reg_scalar", (x,), ((out, sp.exp(x)),), (out,))
    calls = []
    reg = KernelRegistry("toy", lambda: calls.append(1) or {"scalar": p, "attention": tp})
    assert reg.is_tensor("attention") and not reg.is_tensor("scalar")
    assert reg.kernel("scalar") is reg.kernel("scalar") and len(calls) == 1
    assert reg.kernel("attention").key == tp.key()
    with pytest.raises(ValueError, match="only the 'xp' target"):
        compile_program(tp, "mpmath")
    made = []
    k = reg.declared_kernel("sized", lambda: made.append(1) or p)
    assert reg.declared_kernel("sized", lambda: made.append(1) or p) is k and made == [1]
    other = generate(Program("reg_other", (x,), ((out, sp.sin(x)),), (out,)))
    with pytest.raises(ValueError, match="other equations"):
        reg.install("scalar", other)
    fresh = KernelRegistry("worker", lambda: (_ for _ in ()).throw(AssertionError("no derivation")))
    fresh.install("scalar", reg.kernel("scalar"))
    assert fresh.kernel("scalar").key == reg.kernel("scalar").key  # no SymPy on the worker
