"""Validated inputs and options, honest flags, isolated failures, budgets (issue 15, items 1-3).

Two kinds of tests: the mechanisms on a toy model whose failures are planted (a ``LinAlgError`` at
some points, an out-of-range or non-finite value flagged converged, a point that never returns),
so they do not depend on any model's numerics; and the cases the issue measured on the real
models (each must now raise a clear error naming the input, or flag the point not converged).
"""
from __future__ import annotations

import time
import warnings
from typing import Any, Mapping

import numpy as np
import pytest

import derive
from derive import models
from derive.declarations import Observable, Option, declare
from derive.model import Model
from derive.params import Domain, Parameter, positive
from numerics.backend import get_backend
from numerics.results import Status

BE = get_backend("numpy")


# ----------------------------------------------------------------------------- a toy model
class Toy(Model):
    """y = x (a 'probability' in [0, 1]); planted failures by x: LinAlgError for x in (10, 20),
    y = 1.5 flagged converged for x in (20, 30), y = inf for x in (30, 40), y = NaN and
    converged for x in (40, 50), finite values flagged not converged for x in (50, 60), a
    Python busy loop (never returns) for x in (60, 70)."""

    name = "toy"
    parameters = (Parameter("x", positive, "x", "the point"),)
    observables = ("y", "z")
    option_info = declare(Option("k", 3, "an integer option", kind="int",
                                 domain=Domain(1, 10, True, True, integer=True)),
                          Option("mode", "a", "a choice", kind="choice", choices=("a", "b")))
    observable_info = declare(Observable("y", "a probability", "y", "1", 0.0, 1.0),
                              Observable("z", "bounded by x", "z", "1", 0.0, lambda p, o: p["x"]))

    def evaluate(self, params: Mapping[str, Any], backend: Any, **opts: Any) -> dict[str, Any]:
        x = np.asarray(params["x"], float)
        if np.any((x > 10) & (x < 20)):
            raise np.linalg.LinAlgError("planted: eigenvalues did not converge")
        if np.any((x > 60) & (x < 70)):
            while True:  # a solver that hangs in Python code
                time.sleep(0.01)
        y = np.where(x < 10, x / 10, 0.5)
        y = np.where((x > 20) & (x < 30), 1.5, y)
        y = np.where((x > 30) & (x < 40), np.inf, y)
        y = np.where((x > 40) & (x < 50), np.nan, y)
        conv = ~((x > 50) & (x < 60))
        status = np.where(conv, 0, int(Status.MAXITER)).astype(np.int8)
        return {"y": y, "z": x / 2, "converged": conv, "residual": np.zeros_like(x),
                "iterations": np.ones(x.shape, np.int64), "status": status}


def _run(xs: list[float], **kw: Any) -> dict[str, np.ndarray]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return Toy().evaluate_checked({"x": np.asarray(xs, float)}, BE, **kw)


def test_numerical_exception_marks_only_its_points_failed():
    out = _run([1.0, 15.0, 2.0, 16.0, 3.0])
    assert out["converged"].tolist() == [True, False, True, False, True]
    assert out["status"].tolist() == [0, Status.FAILED, 0, Status.FAILED, 0]
    assert np.isnan(out["y"][[1, 3]]).all() and np.allclose(out["y"][[0, 2, 4]], [0.1, 0.2, 0.3])


def test_out_of_range_nonfinite_and_nan_are_not_converged():
    out = _run([5.0, 25.0, 35.0, 45.0])
    assert out["converged"].tolist() == [True, False, False, False]
    assert out["status"].tolist() == [0, Status.NONPHYSICAL, Status.NONFINITE, Status.NONFINITE]
    assert np.isnan(out["y"][1:]).all() and np.isnan(out["z"][1:]).all()


def test_a_range_that_depends_on_the_point():
    class Over(Toy):
        def evaluate(self, params, backend, **opts):
            out = super().evaluate(params, backend, **opts)
            out["z"] = np.asarray(params["x"], float) * 1.01  # z > x: outside [0, x]
            return out

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = Over().evaluate_checked({"x": np.array([1.0, 2.0])}, BE)
    assert not out["converged"].any() and (out["status"] == Status.NONPHYSICAL).all()


def test_non_converged_points_hold_nan():
    out = _run([5.0, 55.0])
    assert out["converged"].tolist() == [True, False]
    assert out["status"][1] == Status.MAXITER and np.isnan(out["y"][1]) and np.isnan(out["z"][1])


def test_wall_clock_budget_stops_a_hanging_point():
    t0 = time.perf_counter()
    out = _run([65.0, 1.0], time_limit=0.5)
    assert time.perf_counter() - t0 < 5.0
    assert (out["status"] == Status.MAXITER).all() and not out["converged"].any()


def test_every_point_failing_gives_failed_points_not_an_exception():
    out = _run([11.0, 12.0])
    assert (out["status"] == Status.FAILED).all() and set(out) >= {"y", "z", "converged"}


def test_input_errors_still_raise():
    class Picky(Toy):
        def evaluate(self, params, backend, **opts):
            raise ValueError("option 'k' = 7 is not allowed here")

    with pytest.raises(ValueError, match="option 'k'"):
        Picky().evaluate_checked({"x": np.array([1.0, 2.0])}, BE)

    class Buggy(Toy):
        def evaluate(self, params, backend, **opts):
            raise TypeError("unsupported operand")  # a programming error is not hidden

    with pytest.raises(TypeError):
        Buggy().evaluate_checked({"x": np.array([1.0])}, BE)


# ----------------------------------------------------------------------------- declarations
@pytest.mark.parametrize("value, exc, words", [
    (2.5, ValueError, ["'k'", "integer in [1, 10]"]),
    (True, TypeError, ["'k'"]),
    ("3", TypeError, ["'k'"]),
    (11, ValueError, ["'k'", "[1, 10]"]),
    (1j, TypeError, ["'k'"]),
])
def test_option_validation_names_the_option_and_its_range(value, exc, words):
    with pytest.raises(exc) as info:
        Toy().validate_options({"k": value})
    for w in words:
        assert w in str(info.value)


def test_option_validation_accepts_and_normalises():
    t = Toy()
    assert t.validate_options({"k": 4.0})["k"] == 4 and isinstance(t.validate_options({"k": 4.0})["k"], int)
    assert t.validate_options({})["k"] == 3 and t.options == {"k": 3, "mode": "a"}
    with pytest.raises(ValueError, match="'mode'"):
        t.validate_options({"mode": "c"})
    with pytest.raises(ValueError, match="no parameter or option"):
        t.validate_options({"nope": 1})


@pytest.mark.parametrize("value, exc", [(1 + 2j, TypeError), (True, TypeError), ("2", TypeError),
                                        (np.array([1.0, 2j]), TypeError), ([1.0, "a"], TypeError),
                                        (float("nan"), ValueError), (float("inf"), ValueError),
                                        (-1.0, ValueError)])
def test_parameters_must_be_real_and_in_domain(value, exc):
    with pytest.raises(exc, match="'tau'"):
        derive.solve("icl-linear-attention", tau=value, alpha=1.0, kappa=1.0, rho=0.1, lam=0.01)


def test_every_model_declares_its_options_and_observables():
    for name in models.names():
        m = models.get(name)
        assert set(m.options) == set(m.option_info), f"{name}: undeclared options"
        missing = set(m.observables) - set(m.observable_info)
        assert not missing, f"{name}: observables without a declared range: {missing}"


# ----------------------------------------------------------------------------- the cases
@pytest.mark.parametrize("opts, word", [
    (dict(tol=1.0), "'tol'"), (dict(n_quad=2), "'n_quad'"),
    (dict(quadrature="gauss-hermite"), "'n_quad'"),  # default 4096 nodes per variable: 2 PiB
    (dict(stability="yes"), "'stability'"), (dict(progress="x"), "'progress'"),
    (dict(init=[-1.0, 0.0, 1.0, 0.0]), "'init'"), (dict(init=[1j, 0, 1, 0]), "'init'"),
    (dict(L=2.5), "'L'"), (dict(maxiter=0), "'maxiter'"), (dict(damping=0.0), "'damping'"),
])
def test_positional_semantic_options_are_validated(opts, word):
    with pytest.raises((ValueError, TypeError)) as info:
        models.get("positional-semantic").validate_options(opts)
    assert word in str(info.value)


@pytest.mark.parametrize("opts, word", [
    (dict(gh=10**6), "'gh'"), (dict(n_mc=10**9), "'n_mc'"), (dict(n_mc=2.5), "'n_mc'"),
    (dict(quantity="nope"), "'quantity'"), (dict(stability="yes"), "'stability'"),
    (dict(query=("a", 1)), "'query'"), (dict(query=(1.0, 0.5, 3.0)), "'query'"),
])
def test_sparse_token_options_are_validated(opts, word):
    with pytest.raises((ValueError, TypeError)) as info:
        models.get("sparse-token").validate_options(opts)
    assert word in str(info.value)


def test_fixed_point_models_refuse_a_non_bool_stability():
    for name in ("bilinear-sequence-regression", "extensive-width-quadratic"):
        with pytest.raises(TypeError, match="'stability'"):
            models.get(name).validate_options({"stability": "yes"})


def test_sparse_token_R_le_L_is_checked_over_the_grid():
    m = models.get("sparse-token")
    base = dict(pi=0.5, theta=1.0, beta=1.0, eta_w=1.0, eta_q=1.0, alpha0=1.0, b1=0.0)
    # R = 3 with L = 2 is a point of the outer-product grid: refused (the arrays have other lengths)
    with pytest.raises(ValueError, match="'R'"):
        m.validate(dict(base, R=np.array([1.0, 2.0, 3.0]), L=np.array([2.0, 5.0])))
    # R = [1, 2] x L = [2, 3, 5]: every point has R <= L
    m.validate(dict(base, R=np.array([1.0, 2.0]), L=np.array([2.0, 3.0, 5.0])))


def _flagged_or_physical(ds: Any, name: str) -> None:
    m = models.get(name)
    conv = ds["converged"].values.reshape(-1)
    for k, ob in m.observable_info.items():
        if k not in ds or ob.optional:
            continue
        v = ds[k].values.reshape(-1)
        ok = np.isfinite(v[conv]) if ob.finite else ~np.isnan(v[conv])  # finite=False: ±inf by theory
        assert ok.all(), f"{name}: converged {k} not finite"
        assert np.isnan(v[~conv]).all(), f"{name}: non-converged {k} not NaN"


def test_extensive_width_extremes_do_not_kill_the_grid():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = derive.solve("extensive-width-quadratic", alpha=np.array([1e-300, 1.0]), kappa=1e-4,
                          delta=1e-7, time_limit=60)
        _flagged_or_physical(ds, "extensive-width-quadratic")
        ds = derive.solve("extensive-width-quadratic", alpha=np.array([1e300, 0.5]), kappa=0.5,
                          delta=0.0, time_limit=60)
        _flagged_or_physical(ds, "extensive-width-quadratic")


def test_extensive_width_precision_floor_is_flagged():
    """Noiseless, above perfect recovery: the RIE quadrature does not resolve mmse < 1e-12."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = derive.solve("extensive-width-quadratic", alpha=10.0, kappa=0.5, delta=0.0)
    mm = float(ds["mmse"])
    assert (not bool(ds["converged"])) or mm == 0.0 or mm >= 1e-12
    if not bool(ds["converged"]):
        assert int(ds["status"]) in (Status.PRECISION, Status.NONFINITE, Status.MAXITER)


def test_bilinear_impossible_mmse_is_not_converged():
    """The issue's point: mmse = 1.0000035 > 1 (the prior variance) was flagged converged."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = derive.solve("bilinear-sequence-regression", alpha=5.52e-6, beta=6.26, rho=0.38,
                          delta=3224.0, time_limit=60)
    assert (not bool(ds["converged"])) or 0.0 <= float(ds["mmse"]) <= 1.0
    _flagged_or_physical(ds, "bilinear-sequence-regression")


def test_sequence_multi_index_alpha1_is_declared_not_computed():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = derive.solve("sequence-multi-index", skip=1.0)
    assert np.isnan(ds["alpha1"].values).all()
    assert "not computed" in ds["alpha1"].attrs.get("comment", "")
    assert models.get("sequence-multi-index").validate_options({"staircase": True})["staircase"] is True
