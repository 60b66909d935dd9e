"""Property-based fuzzing of ``derive.solve`` over every model's parameters and options (issue 15).

For every registered model (``derive.models.names()``) hypothesis draws grid parameters (typical,
edge and extreme values inside each parameter's domain, and now and then an invalid one: complex,
boolean, string, NaN, outside the domain) and options (inside each declared domain or choice set,
and now and then an invalid one). Every example must end in one of two ways:

* ``derive.solve`` raises a ``ValueError``/``TypeError`` whose message names an input (a parameter
  or option of the call), or
* it returns a dataset in which every converged point has every declared observable finite and
  inside its physical range (:class:`derive.declarations.Observable`, checked here by the test's
  own code), every non-converged point holds NaN observables, and the call took no longer than
  its wall-clock budget (``time_limit`` plus a slack for code that cannot be interrupted).

Fast suite: a few examples per model (about a minute in all). Slow variant (``-m slow``): at least
10^4 examples in all (:data:`SLOW_EXAMPLES`; ``FUZZ_SCALE`` multiplies), weighted towards the cheap models.
Profiles: ``fuzz-fast`` and ``fuzz-slow`` (hypothesis settings).
"""
from __future__ import annotations

import math
import os
import time
import warnings
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis import given

import derive
from derive import models
from derive.declarations import Option

MODELS = models.names()

settings.register_profile(
    "fuzz-fast", max_examples=4, deadline=None, database=None, derandomize=True,
    suppress_health_check=list(HealthCheck), print_blob=True)
settings.register_profile(
    "fuzz-slow", max_examples=1250, deadline=None, database=None,
    suppress_health_check=list(HealthCheck), print_blob=True)

#: examples per model in the slow run (10^4 in all; the cheap closed forms get more; a model not
#: listed gets 200); ``FUZZ_SCALE`` multiplies them
SLOW_EXAMPLES = {"icl-linear-attention": 3500, "token-dynamics": 3500, "sparse-token": 1500,
                 "extensive-width-quadratic": 500, "bilinear-sequence-regression": 300,
                 "attention-indexed": 300, "positional-semantic": 250, "sequence-multi-index": 150}
#: examples per model in the fast suite (the expensive models get fewer)
FAST_EXAMPLES = {"icl-linear-attention": 8, "token-dynamics": 8, "sparse-token": 4,
                 "extensive-width-quadratic": 3, "bilinear-sequence-regression": 3,
                 "attention-indexed": 2, "positional-semantic": 2, "sequence-multi-index": 1}

#: cost caps of valid option values in the fuzz (outside them a point is slow, not wrong: the
#: budget test covers that with the time limit): (lo, hi) for numbers, or a fixed value
CAPS: dict[tuple[str, str], Any] = {
    ("positional-semantic", "n_quad"): (64, 512),
    ("positional-semantic", "maxiter"): (1, 150),
    ("positional-semantic", "L"): (2, 2),
    ("positional-semantic", "r"): (1, 1),
    ("positional-semantic", "quadrature"): "qmc",
    ("sparse-token", "n_mc"): (100, 1500),
    ("sparse-token", "gh"): (4, 32),
    ("sequence-multi-index", "staircase"): False,
    ("attention-indexed", "maxiter"): (1, 300),
    ("attention-indexed", "panels"): (1, 20),
    ("attention-indexed", "nodes"): (1, 12),
}


def _budget(slow: bool) -> float:
    return 20.0 if slow else 8.0


#: slack over the budget for work outside the interruptible pipeline (validation, meshing,
#: the dataset) and for C calls that finish before the alarm is seen
SLACK = 10.0


# ------------------------------------------------------------------------- strategies
def _float_in(dom: Any, integer: bool) -> st.SearchStrategy[float]:
    lo, hi = dom.lo, dom.hi
    if integer:
        a = int(max(math.ceil(lo), -100)) if math.isfinite(lo) else -100
        a = a + (0 if dom.lo_closed or a != lo else 1)
        b = int(min(math.floor(hi), a + 100)) if math.isfinite(hi) else a + 100
        b = b - (0 if dom.hi_closed or b != hi else 1)
        picks = [st.integers(a, max(a, b)).map(float)]
        if not math.isfinite(hi) or hi >= 1000:
            picks.append(st.sampled_from([1000.0]))
        return st.one_of(*picks)
    cands: list[float] = []
    for v in (1e-300, 1e-12, 1e-6, 1e-3, 0.1, 0.5, 1.0, 1.001, 2.0, 10.0, 1e3, 1e6, 1e12, 1e100, 1e300,
              -1e-300, -1e-6, -0.5, -1.0, -10.0, -1e6, -1e300, 0.0):
        if dom.contains(np.array(v)).item():
            cands.append(v)
    for e in (lo, hi):
        if math.isfinite(e) and dom.contains(np.array(e)).item():
            cands.append(float(e))
    if dom.hi == math.inf and dom.hi_closed:
        cands.append(math.inf)
    fl_lo = lo if math.isfinite(lo) else -1e6
    fl_hi = hi if math.isfinite(hi) else 1e6
    typical = st.floats(min_value=fl_lo, max_value=fl_hi, allow_nan=False, allow_infinity=False,
                        exclude_min=not dom.lo_closed, exclude_max=not dom.hi_closed)
    logt = st.floats(-2, 2).map(lambda x: 10.0 ** x).filter(lambda v: bool(dom.contains(np.array(v))))
    unit = st.floats(0.05, 0.95).filter(lambda v: bool(dom.contains(np.array(v))))
    return st.one_of(logt, unit, st.sampled_from(cands) if cands else typical, typical, logt)


def _invalid_number(dom: Any) -> st.SearchStrategy[Any]:
    bad: list[Any] = [1 + 2j, True, "1.0", float("nan"), None]
    if math.isfinite(dom.lo):
        bad.append(dom.lo - 1.0)
    if math.isfinite(dom.hi):
        bad.append(dom.hi + 1.0)
    elif not dom.hi_closed:
        bad.append(math.inf)
    return st.sampled_from(bad)


def _option_value(name: str, opt: Option, slow: bool) -> st.SearchStrategy[Any]:
    cap = CAPS.get((name, opt.name))
    if cap is not None and not isinstance(cap, tuple) and not (slow and opt.kind == "choice"):
        return st.just(cap)
    if opt.kind == "bool":
        return st.booleans()
    if opt.kind == "choice":
        return st.sampled_from(list(opt.choices))
    if opt.kind in ("int", "float"):
        dom = opt.domain
        if isinstance(cap, tuple):
            lo, hi = cap
            return (st.integers(lo, hi) if opt.kind == "int"
                    else st.floats(lo, hi, allow_nan=False))
        if dom is None:
            return st.just(opt.default)
        if opt.kind == "int":
            lo = int(dom.lo) if math.isfinite(dom.lo) else -10
            hi = int(min(dom.hi, lo + 1000)) if math.isfinite(dom.hi) else lo + 1000
            return st.integers(lo + (0 if dom.lo_closed else 1), hi)
        lo = dom.lo if math.isfinite(dom.lo) else -1e6
        hi = dom.hi if math.isfinite(dom.hi) else 1e6
        if lo > 0:
            return st.floats(math.log10(lo), math.log10(hi)).map(lambda x: float(10.0 ** x)).filter(
                lambda v: bool(dom.contains(np.array(v))))
        return st.floats(lo, hi, allow_nan=False, exclude_min=not dom.lo_closed,
                         exclude_max=not dom.hi_closed)
    return st.just(opt.default)


def _invalid_option(opt: Option) -> st.SearchStrategy[Any]:
    if opt.kind == "bool":
        return st.sampled_from(["yes", "x", 1, 0.0])
    if opt.kind == "choice":
        return st.sampled_from(["no-such-choice", 3, 1.5])
    if opt.kind in ("int", "float"):
        bad: list[Any] = ["x", 1j, True, float("nan")]
        if opt.kind == "int":
            bad.append(2.5)
        d = opt.domain
        if d is not None and math.isfinite(d.lo):
            bad.append(d.lo - 1 if opt.kind == "int" else (d.lo * 0.1 if d.lo > 0 else d.lo - 1.0))
        if d is not None and math.isfinite(d.hi):
            bad.append(d.hi * 10 + 1)
        return st.sampled_from(bad)
    if opt.name == "init":
        return st.sampled_from([[1j], "x", [[math.inf]], [[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0]]])
    return st.sampled_from(["x", 1j, [[1.0, "a"]]])


def _repair(name: str, p: dict[str, Any]) -> None:
    """Most draws respect the models' cross-parameter constraints (R <= L, target > rho0)."""
    if name == "sparse-token" and "R" in p and "L" in p:
        p["R"] = np.minimum(np.asarray(p["R"], float), np.min(np.asarray(p["L"], float)))
        if np.ndim(p["R"]) == 0:
            p["R"] = float(p["R"])
    if name == "token-dynamics" and "rho0" in p and "target" in p:
        r0 = np.asarray(p["rho0"], float)
        if np.all(np.isfinite(r0)) and np.max(r0) < 1:
            p["target"] = float(np.max(r0) + (1 - np.max(r0)) * 0.5)


@st.composite
def call(draw: Any, name: str, slow: bool) -> tuple[dict[str, Any], dict[str, Any], bool]:
    """``(params, options, expect_error)``."""
    m = models.get(name)
    params: dict[str, Any] = {}
    invalid = False
    arrays = draw(st.integers(0, min(2, len(m.parameters))))
    for i, p in enumerate(m.parameters):
        integer = p.domain.integer
        if draw(st.integers(0, 29)) == 29:
            params[p.name] = draw(_invalid_number(p.domain))
            invalid = True
            continue
        if i < arrays:
            vals = draw(st.lists(_float_in(p.domain, integer), min_size=1, max_size=3))
            params[p.name] = np.asarray(vals, dtype=float)
        else:
            params[p.name] = draw(_float_in(p.domain, integer))
    if not invalid and draw(st.integers(0, 9)) < 9:
        _repair(name, params)
    opts: dict[str, Any] = {}
    for k, opt in m.option_info.items():
        if draw(st.integers(0, 2)) == 0:
            continue  # default
        if draw(st.integers(0, 19)) == 19:
            opts[k] = draw(_invalid_option(opt))
            invalid = True
        else:
            v = draw(_option_value(name, opt, slow))
            if k == "init" and m.state and draw(st.booleans()):
                v = np.asarray(m.random_states(1, np.random.default_rng(draw(st.integers(0, 99)))),
                               float).reshape(-1)
                if v.size != len(m.state):
                    continue
            opts[k] = v
    return params, opts, invalid


# ------------------------------------------------------------------------- the checks
def _names_an_input(msg: str, params: dict[str, Any], opts: dict[str, Any], name: str) -> bool:
    m = models.get(name)
    words = set(params) | set(opts) | {p.name for p in m.parameters} | set(m.option_info)
    return any(f"'{w}'" in msg or f"{w} " in msg or f"{w}=" in msg or f"--{w}" in msg for w in words)


def _flat_params(ds: Any, m: Any) -> dict[str, np.ndarray]:
    out = {}
    for p in m.parameters:
        if p.name in ds.coords:
            out[p.name] = np.asarray(ds[p.name].broadcast_like(ds["converged"]).transpose(
                *ds["converged"].dims).values, dtype=float).reshape(-1)
        else:
            out[p.name] = np.full(ds["converged"].size, float(ds.attrs.get(p.name, np.nan)))
    return out


def check_dataset(name: str, ds: Any, opts: dict[str, Any]) -> dict[str, int]:
    """The properties of a returned dataset; returns counts (converged, not converged)."""
    m = models.get(name)
    o = m.validate_options(opts)
    assert ds["converged"].dtype == bool and ds["status"].dtype == np.int8
    conv = np.asarray(ds["converged"].values).reshape(-1)
    status = np.asarray(ds["status"].values).reshape(-1)
    assert np.all(status[conv] == 0), "a converged point has a non-zero status"
    p = _flat_params(ds, m)
    outs = {k: np.asarray(ds[k].values).reshape(-1) for k in ds.data_vars}
    for k, ob in m.observable_info.items():
        if k not in outs or not ob.is_computed(o):
            continue
        x = outs[k].astype(float)
        lo, hi = ob.bounds(p, outs, x.size)
        xc, loc, hic = x[conv], lo[conv], hi[conv]
        nan = np.isnan(xc)
        if not ob.optional:
            assert not nan.any(), f"{name}: converged point with {k} = NaN"
        if ob.finite:
            assert not np.isinf(xc).any(), f"{name}: converged point with {k} = ±inf"
        tol = ob.slack * (1 + np.abs(xc))
        with np.errstate(invalid="ignore"):
            bad = ~nan & ((xc < loc - tol) | (xc > hic + tol))
        assert not bad.any(), (f"{name}: converged point with {k} = {xc[bad][0]!r} outside "
                               f"[{loc[bad][0]}, {hic[bad][0]}]")
        if ob.resolution > 0:
            tiny = ~nan & (xc != 0) & (np.abs(xc) < ob.resolution)
            assert not tiny.any(), f"{name}: converged {k} = {xc[tiny][0]} below its resolution"
    for k, v in outs.items():
        if k in ("converged", "residual", "iterations", "status") or v.dtype.kind != "f":
            continue
        assert np.all(np.isnan(v[~conv])), f"{name}: non-converged point with a finite {k}"
    return {"converged": int(conv.sum()), "not_converged": int((~conv).sum())}


COUNTS: dict[str, dict[str, int]] = {}


def _one(name: str, params: dict[str, Any], opts: dict[str, Any], invalid: bool, slow: bool) -> None:
    c = COUNTS.setdefault(name, {"examples": 0, "errors": 0, "converged": 0, "not_converged": 0,
                                 "max_seconds_x1000": 0})
    c["examples"] += 1
    budget = _budget(slow)
    t0 = time.perf_counter()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = derive.solve(name, time_limit=budget, **params, **opts)
    except (ValueError, TypeError) as exc:
        msg = str(exc)
        assert _names_an_input(msg, params, opts, name), \
            f"{name}: {type(exc).__name__} that names no input: {msg!r} (params {params}, options {opts})"
        c["errors"] += 1
        _dump()
        return
    dt = time.perf_counter() - t0
    c["max_seconds_x1000"] = max(c["max_seconds_x1000"], int(dt * 1000))
    assert dt <= budget + SLACK, f"{name}: {dt:.1f} s > budget {budget} s (params {params}, options {opts})"
    res = check_dataset(name, ds, opts)
    c["converged"] += res["converged"]
    c["not_converged"] += res["not_converged"]
    _dump()


def _dump() -> None:
    """With ``FUZZ_COUNTS_FILE`` set, the running counts are written there (a time-boxed run)."""
    path = os.environ.get("FUZZ_COUNTS_FILE")
    if path:
        import json

        with open(path, "w") as f:
            json.dump(COUNTS, f)


def _warm(name: str) -> None:
    """Generate the model's kernels before timing anything (code generation is not a solve)."""
    m = models.get(name)
    try:
        m.kernels("xp")
    except Exception:  # noqa: BLE001 - a model under construction: the fuzz will say more
        pass


# ------------------------------------------------------------------------- the tests
@pytest.mark.parametrize("name", MODELS)
def test_fuzz_solve(name: str) -> None:
    """Fast: a handful of examples per model (a few seconds each)."""
    _warm(name)

    @settings(settings.get_profile("fuzz-fast"), max_examples=FAST_EXAMPLES.get(name, 2))
    @given(call(name, slow=False))
    def run(c: tuple[dict[str, Any], dict[str, Any], bool]) -> None:
        _one(name, *c, slow=False)

    run()
    print(f"\nFUZZ {name}: {COUNTS.get(name)}")


@pytest.mark.slow
@pytest.mark.parametrize("name", MODELS)
def test_fuzz_solve_slow(name: str) -> None:
    """Slow: >= 10^4 examples over all models (:data:`SLOW_EXAMPLES`, times ``FUZZ_SCALE``)."""
    n = max(1, int(round(SLOW_EXAMPLES.get(name, 200) * float(os.environ.get("FUZZ_SCALE", "1")))))
    _warm(name)

    @settings(settings.get_profile("fuzz-slow"), max_examples=n)
    @given(call(name, slow=True))
    def run(c: tuple[dict[str, Any], dict[str, Any], bool]) -> None:
        _one(name, *c, slow=True)

    try:
        run()
    finally:
        print(f"\nFUZZ {name}: {COUNTS.get(name)}")
