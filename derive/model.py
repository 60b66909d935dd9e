"""The model object: parameters, equations, programs, and the numeric pipeline hooks.

A model states its physics once, as SymPy: :class:`Equation` objects to render,
and :class:`~derive.codegen.Program` objects from which kernels are generated for
every target. Subclasses implement :meth:`Model.evaluate` (the batched pipeline over
a flat grid, run on a backend) and :meth:`Model.evaluate_mp` (the same pipeline
in mpmath at one point); neither contains a formula, only the order in which
generated kernels and generic solvers are called.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any, Mapping

from .codegen import Kernel, Program, generate
from .codegen.kernel import _Lazy

#: SymPy, imported on first use (rendering equations, deriving programs): a model whose kernels
#: are in the cache solves without it (issue 14.1)
sp: Any = _Lazy("sympy", None, "sp", globals())
from .declarations import Observable, Option, check_outputs
from .params import Parameter

__all__ = ["Equation", "Model", "SimulationResult", "NUMERICAL_ERRORS", "BudgetExceeded"]


class BudgetExceeded(Exception):
    """The wall-clock budget of a batch ran out (its points get status ``maxiter``)."""


#: exceptions of a pipeline that mean "this point could not be computed", not "bad input"
NUMERICAL_ERRORS: tuple[type[BaseException], ...] = (
    ArithmeticError, ValueError, RuntimeError, MemoryError)


def _is_input_error(exc: BaseException) -> bool:
    """A ``ValueError`` that names an input (``option '...'``, ``parameter '...'``), an
    unfinished feature, or a ``TypeError``: these propagate instead of becoming statuses."""
    if isinstance(exc, (NotImplementedError, TypeError, RecursionError)):
        return True
    if isinstance(exc, ValueError) and not exc.__class__.__name__ == "LinAlgError":
        msg = str(exc)
        return msg.startswith(("option ", "parameter ", "model ")) or getattr(exc, "input_error", False)
    return False


def _failed_value(name: str, dtype: Any) -> Any:
    from numerics.results import Status, fill_value

    return fill_value(name, dtype, Status.FAILED)


class _time_limit:
    """``with _time_limit(seconds):`` raise :class:`BudgetExceeded` inside the block after
    ``seconds`` (SIGALRM; a no-op off the main thread, on Windows, or with ``None``)."""

    def __init__(self, seconds: float | None) -> None:
        self.seconds = seconds
        self.active = False

    def __enter__(self) -> "_time_limit":
        import signal
        import threading

        if (self.seconds is None or not hasattr(signal, "setitimer")
                or threading.current_thread() is not threading.main_thread()):
            return self

        def handler(signum: int, frame: Any) -> None:
            raise BudgetExceeded(f"wall-clock budget of {self.seconds:g} s exceeded")

        import time as _t

        self.old = signal.signal(signal.SIGALRM, handler)
        self.t0 = _t.monotonic()
        # an outer timer (e.g. pytest-timeout, an enclosing budget) is restored on exit
        self.outer = signal.setitimer(signal.ITIMER_REAL, float(self.seconds))
        self.active = True
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.active:
            import signal

            import time as _t

            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, self.old)
            delay, interval = self.outer
            if delay > 0:
                left = max(delay - (_t.monotonic() - self.t0), 1e-3)
                signal.setitimer(signal.ITIMER_REAL, left, interval)


@dataclass(frozen=True)
class Equation:
    """One displayed equation: ``lhs = rhs`` with its provenance.

    ``source`` says where it comes from: ``"paper"``, ``"code+mp"`` (authors' code,
    checked in mpmath), ``"derived"`` (obtained here by SymPy from other equations,
    and tested against the stated form), or ``"definition"``.
    """

    label: str
    lhs: sp.Basic
    rhs: sp.Basic
    source: str = "paper"
    reference: str = ""
    note: str = ""

    def latex(self, symbol_names: Mapping[sp.Symbol, str] | None = None) -> str:
        names = dict(symbol_names or {})
        return (f"{sp.latex(self.lhs, symbol_names=names)} = "
                f"{sp.latex(self.rhs, symbol_names=names)}")

    def pretty(self) -> str:
        return sp.pretty(sp.Eq(self.lhs, self.rhs, evaluate=False), use_unicode=True)

    # -- Jupyter display -----------------------------------------------------------------
    def provenance(self) -> str:
        """``source, reference`` (e.g. ``paper, eq. (12)``)."""
        return self.source + (f", {self.reference}" if self.reference else "")

    def _repr_latex_(self) -> str:
        return f"$$ {self.latex()} $$"

    def _repr_markdown_(self) -> str:
        out = f"**{_md(self.label)}** [{_md(self.provenance())}]\n\n$$ {self.latex()} $$"
        return out + (f"\n\n*{_md(self.note)}*" if self.note else "")


def _random_points_n_rng(fn: Any) -> Any:
    """Wrap a model's ``random_points`` so that it is called as the contract states,
    ``random_points(n, rng)``, whichever order the model wrote (older models: ``(rng, n)``)."""
    import functools
    import inspect

    first = list(inspect.signature(fn).parameters)[1:2]
    rng_first = first == ["rng"]

    @functools.wraps(fn)
    def random_points(self: Any, n: Any, rng: Any) -> Any:
        n, rng = _count_and_rng(n, rng)
        return fn(self, rng, n) if rng_first else fn(self, n, rng)

    random_points._contract = True  # type: ignore[attr-defined]
    return random_points


def _count_and_rng(n: Any, rng: Any) -> tuple[int, Any]:
    """``(n, rng)`` in either order (older models wrote ``random_points(rng, n)``)."""
    if not isinstance(n, (int,)) and isinstance(rng, (int,)):
        n, rng = rng, n
    return int(n), rng


@dataclass(frozen=True)
class SimulationResult:
    """A finite-size simulation at one point: ``mean[obs]`` and its standard error ``sem[obs]``
    over ``trials`` independent runs at dimension ``d`` from ``seed`` (the one result type of
    :meth:`Model.simulate_point`). ``items()`` yields ``(obs, (mean, sem))``."""

    model: str
    point: dict[str, float]
    mean: dict[str, float]
    sem: dict[str, float]
    d: int
    trials: int
    seed: int

    def items(self):
        return ((k, (self.mean[k], self.sem.get(k, float("nan")))) for k in self.mean)

    def summary(self) -> str:
        return "\n".join(f"{k}: {m:.6g} ± {s:.2g}" for k, (m, s) in self.items())


class Model:
    """Base class: subclasses set the class attributes and implement the hooks."""

    name: str = ""
    title: str = ""
    paper: str = ""
    parameters: tuple[Parameter, ...] = ()
    #: LaTeX names of symbols whose SymPy name is an identifier (``eps`` -> ``\\varepsilon``)
    symbol_names: Mapping[sp.Symbol, str] = {}
    #: data variables of ``derive.solve``'s dataset, in order
    observables: tuple[str, ...] = ()
    #: non-grid keyword options of ``derive.solve`` (branch, quadrature order...) -> default.
    #: Derived from :attr:`option_info` where a model declares it (undeclared extra keys kept).
    options: Mapping[str, Any] = {}
    #: observable name -> :class:`~derive.declarations.Observable` (CF metadata and physical
    #: range). Contract: :meth:`evaluate_checked` (used by ``derive.solve`` and sweeps) flags a
    #: point converged only if every declared observable that the options compute is finite and
    #: inside its range; otherwise ``converged = False`` with status ``nonfinite``,
    #: ``nonphysical`` or ``precision``, and every observable of a non-converged point is NaN.
    observable_info: Mapping[str, Observable] = {}
    #: option name -> :class:`~derive.declarations.Option` (type, domain or choices, default).
    #: Contract: :meth:`validate_options` validates every declared option by its domain and
    #: refuses names that are neither declared nor in :attr:`options`, with a ``ValueError`` /
    #: ``TypeError`` naming the option and its valid values.
    option_info: Mapping[str, Option] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        rp = cls.__dict__.get("random_points")
        if rp is not None and not getattr(rp, "_contract", False):  # the contract: (n, rng)
            cls.random_points = _random_points_n_rng(rp)
        info = cls.__dict__.get("option_info")
        if info:
            extra = {k: v for k, v in dict(cls.__dict__.get("options", {})).items() if k not in info}
            cls.options = {**{k: o.default for k, o in info.items()}, **extra}

    # -- symbolic content ---------------------------------------------------------------
    def equations(self) -> list[Equation]:  # pragma: no cover - abstract
        raise NotImplementedError

    def programs(self) -> dict[str, Program]:  # pragma: no cover - abstract
        raise NotImplementedError

    # -- numeric hooks ------------------------------------------------------------------
    def evaluate(self, params: Mapping[str, Any], backend: Any) -> dict[str, Any]:  # pragma: no cover
        """Batched pipeline on flat, equally shaped backend arrays; returns observables
        plus ``converged``, ``residual``, ``iterations``, ``status``."""
        raise NotImplementedError

    def evaluate_mp(self, point: Mapping[str, Any], dps: int = 50) -> dict[str, Any]:  # pragma: no cover
        """The same pipeline in mpmath at one point."""
        raise NotImplementedError

    # -- the model contract (tests/test_model_contract.py runs it over every registered model) --
    #: why :meth:`evaluate_mp` is not available ("" when it is): a declared "not available"
    mp_unavailable: str = ""
    #: why :meth:`simulate_point` is not available ("" when it is)
    simulate_unavailable: str = ""

    def random_points(self, n: int, rng: Any) -> list[dict[str, float]]:
        """``n`` valid parameter points (name -> float) for ``attn-theory verify`` and the contract
        test. Default: each parameter drawn from its domain restricted to a practical range
        (log-uniform in [1e-2, 1e2] on an unbounded positive side, uniform on a bounded domain,
        integers rounded). Models with constraints between parameters override this."""
        import math

        import numpy as np

        n, rng = _count_and_rng(n, rng)
        pts = []
        for _ in range(n):
            pt = {}
            for p in self.parameters:
                d = p.domain
                lo = d.lo if math.isfinite(d.lo) else -10.0
                hi = d.hi if math.isfinite(d.hi) else None
                if hi is None:
                    base = max(lo, 0.0)
                    v = base + 10 ** rng.uniform(-2, 2) if lo >= 0 else rng.uniform(lo, 10.0)
                else:
                    a, b = lo, hi
                    pad = 1e-3 * (b - a)
                    v = rng.uniform(a + pad, b - pad)
                if d.integer:
                    v = float(max(math.ceil(lo), round(v)))
                pt[p.name] = float(v)
            pts.append(pt)
        return pts

    def simulate_point(self, *, d: int, trials: int = 1, seed: int = 0, backend: str = "numpy",
                       **params: Any) -> "SimulationResult":
        """Finite-size simulation at one point: mean and standard error per observable
        (:class:`SimulationResult`). Default: the model's ``simulate(d=, trials=, seed=, backend=,
        **params)`` whose result has ``mean(name)``/``sem(name)``; a model without a simulator
        declares :attr:`simulate_unavailable` (raised as ``NotImplementedError``)."""
        sim = getattr(self, "simulate", None)
        if self.simulate_unavailable or sim is None:
            raise NotImplementedError(f"model {self.name!r}: no point simulation: "
                                      f"{self.simulate_unavailable or 'no finite-size simulator'}")
        res = sim(d=d, trials=trials, seed=seed, backend=backend, **params)
        if isinstance(res, SimulationResult):
            return res
        mean, sem = {}, {}
        for o in self.observables:
            try:
                mean[o], sem[o] = float(res.mean(o)), float(res.sem(o))
            except (KeyError, AttributeError, ValueError):
                continue
        if not mean:
            raise NotImplementedError(f"model {self.name!r}: its simulate() result has no "
                                      "mean/sem of any observable")
        return SimulationResult(self.name, {k: float(v) for k, v in params.items()}, mean, sem,
                                d, trials, seed)

    # -- fixed-point models (saddle-point / state-evolution equations) --------------------
    #: observables that make up the state ``x`` of the model's fixed-point map, in order.
    #: Empty for models without a fixed point (closed forms, dynamics). A model with a state
    #: must also (i) accept the option ``init``: ``None`` (its default start), a length-k
    #: sequence (one start for every point) or an ``(n, k)`` array (per-point starts, rows with
    #: NaN use the default) - this is how sweeps warm-start and continue; (ii) accept the
    #: option ``stability`` (bool) and always return the observable ``stability``: the real
    #: part of the leading eigenvalue of the Jacobian of the *undamped* map at the fixed point
    #: (NaN where not computed or not converged); (iii) implement :meth:`random_states`.
    state: tuple[str, ...] = ()

    def random_states(self, n: int, rng: Any) -> Any:  # pragma: no cover - abstract
        """``(n, k)`` random starting states inside the domain of the map (multi-start)."""
        raise NotImplementedError(f"model {self.name!r} has no random_states (not a fixed-point model?)")

    #: for :meth:`verify_kernels`: input symbol name -> (low, high) of its random values
    kernel_input_ranges: Mapping[str, tuple[float, float]] = {}

    def verify_kernels(self, n: int = 40, seed: int = 0, dps: int = 50) -> dict[str, float]:
        """Every generated float64 kernel vs its mpmath print at ``dps`` digits, at ``n``
        random inputs (ranges from :attr:`kernel_input_ranges`, default [-2, 2]); returns
        the fewest agreeing significant digits per program (outputs below 1e-12 skipped)."""
        import mpmath
        import numpy as np

        from numerics.backend import get_backend
        from numerics.highprec import agreeing_digits

        be = get_backend("numpy")
        rng = np.random.default_rng(seed)
        out: dict[str, float] = {}
        for name, prog in self.registry.programs().items():
            if self.registry.is_tensor(name):  # unrolled at small shapes, printed for mpmath
                from .codegen.tensor import verify_tensor_kernel

                out[name] = verify_tensor_kernel(prog, self.kernel(name), rng, dps,
                                                 self.kernel_input_ranges)
                continue
            kx, km = self.kernel(name), self.kernel(name, "mpmath")
            args = [rng.uniform(*self.kernel_input_ranges.get(s.name, (-2.0, 2.0)), size=n)
                    for s in prog.inputs]
            vals = kx(be.xp, be.special, *args)
            worst = 17.0
            with mpmath.workdps(dps):
                for i in range(n):
                    ref = km(mpmath, *(mpmath.mpf(float(a[i])) for a in args))
                    for k, v in ref.items():
                        if isinstance(v, mpmath.mpc):  # outside the real domain: float must be NaN
                            worst = min(worst, 17.0 if np.isnan(vals[k][i]) else 0.0)
                        elif abs(v) > 1e-12:
                            worst = min(worst, float(agreeing_digits(vals[k][i], v)))
            out[name] = worst
        return out

    # -- shared machinery ---------------------------------------------------------------
    @cached_property
    def _programs(self) -> dict[str, Program]:
        return self.programs()

    def tensor_programs(self) -> dict[str, Any]:
        """Tensor programs (:class:`derive.codegen.tensor.TensorProgram`: batched statements over
        indexed arrays, e.g. a self-attention velocity field); none by default."""
        return {}

    @cached_property
    def registry(self) -> Any:
        """The one kernel registry of this model (:class:`derive.codegen.registry.KernelRegistry`):
        its scalar and tensor programs, and programs declared on demand (sizes, options)."""
        from .codegen.registry import KernelRegistry

        reg = KernelRegistry(self.name, lambda: {**self._programs, **self.tensor_programs()})
        self.__dict__["_kernels"] = reg.kernels  # the same dict (read by older callers and tests)
        return reg

    def _derivation_cache(self) -> Any:
        """The on-disk record of this model's derivation (:class:`derive.codegen.kernel.
        DerivationCache`), or ``None`` for a class whose source cannot be hashed."""
        if "_dcache" not in self.__dict__:
            from .codegen.kernel import DerivationCache, derivation_key

            key = derivation_key(type(self))
            self.__dict__["_dcache"] = DerivationCache(self.name, key) if key else None
        return self.__dict__["_dcache"]

    def kernel(self, program: str, target: str = "xp") -> Kernel:
        """The generated kernel of ``program`` for ``target`` ("xp" or "mpmath"), cached in
        :attr:`registry` (scalar, tensor, or declared on demand).

        Warm start: a statically declared program's kernel is read from the model's derivation
        cache when present (no SymPy, no program built); otherwise the programs are derived,
        the kernel generated, and the derivation cache updated."""
        reg = self.registry
        k = (program, target)
        if k in reg.kernels:
            return reg.kernels[k]
        dc = self._derivation_cache()
        if dc is not None and program not in reg._extra:
            warm = dc.kernel(program, target)
            if warm is not None:
                return reg.kernels.setdefault(k, warm)
        try:
            kern = reg.kernel(program, target)
        except KeyError:
            raise KeyError(f"model {self.name!r} has no program {program!r}; "
                           f"it has {sorted(self.registry.programs())}") from None
        if dc is not None and reg._declared is not None and program in reg._declared:
            dc.record(program, target, kern,
                      {n: reg.is_tensor(n) for n in reg._declared})
        return kern

    def _program_names(self) -> dict[str, bool]:
        """Declared program name -> is a tensor program; from the derivation cache when it has
        the list (no SymPy), plus programs declared on demand."""
        reg = self.registry
        dc = self._derivation_cache()
        static = dc.programs if dc is not None and reg._declared is None else None
        if static is None:
            return {n: reg.is_tensor(n) for n in reg.programs()}
        return {**static, **{n: reg.is_tensor(n) for n in reg._extra}}

    def kernels(self, target: str = "xp") -> dict[str, Kernel]:
        """Every declared kernel for ``target`` (tensor programs only for "xp")."""
        return {name: self.kernel(name, target) for name, tensor in self._program_names().items()
                if target == "xp" or not tensor}

    @property
    def equations_hash(self) -> str:
        """SHA-256 over the keys and verified sources of all generated kernels
        (:func:`~derive.codegen.kernel.equations_digest`): changes iff the equations or the
        generated code do."""
        from .codegen.kernel import equations_digest

        ks = self.kernels("xp")
        return equations_digest({n: (k.key, k.source_sha256) for n, k in ks.items()})

    # -- kernels that depend on options (sizes such as L, r): sweeps hash and ship these -------
    def kernels_for(self, options: Mapping[str, Any]) -> dict[str, Kernel]:
        """The generated array kernels :meth:`evaluate` uses with ``options``: by default every
        program's. A model whose equations depend on an option (e.g. the number of tokens)
        overrides this and :meth:`install_kernels_for`."""
        return self.kernels("xp")

    def install_kernels_for(self, options: Mapping[str, Any], kernels: Mapping[str, Kernel]) -> None:
        """Put ``kernels`` (rebuilt from shipped source) where :meth:`evaluate` finds them."""
        for name, k in kernels.items():
            self.registry.install(name, k)

    def equations_hash_for(self, options: Mapping[str, Any]) -> str:
        """:attr:`equations_hash` of the kernels used with ``options`` (see :meth:`kernels_for`): the
        array-target ones, which cover every program; ``numba``-target kernels are the same
        programs printed for a compiled loop, so a result's identity does not depend on whether
        Numba is installed."""
        from .codegen.kernel import equations_digest

        ks = {n: k for n, k in self.kernels_for(options).items() if k.target == "xp"}
        return equations_digest({n: (k.key, k.source_sha256) for n, k in ks.items()})

    def parameter(self, name: str) -> Parameter:
        for p in self.parameters:
            if p.name == name:
                return p
        raise KeyError(f"model {self.name!r} has no parameter {name!r}; "
                       f"its parameters are {[p.name for p in self.parameters]}")

    def validate(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """Check names and domains; return validated float arrays keyed by name."""
        known = {p.name for p in self.parameters}
        unknown = set(params) - known
        if unknown:
            raise ValueError(f"model {self.name!r} has no parameter(s) {sorted(unknown)}; "
                             f"its parameters are {[p.name for p in self.parameters]}")
        missing = [p.name for p in self.parameters if p.name not in params]
        if missing:
            raise ValueError(f"model {self.name!r} needs values for {missing} "
                             f"(parameters: {self.describe_parameters()})")
        return {p.name: p.validate(params[p.name]) for p in self.parameters}

    def validate_options(self, options: Mapping[str, Any]) -> dict[str, Any]:
        """Options with defaults filled in; an unknown option is an error naming the valid ones.
        Models override this to check values (and call ``super()``)."""
        unknown = set(options) - set(self.options) - set(self.option_info)
        if unknown:
            raise ValueError(f"model {self.name!r} has no parameter or option(s) {sorted(unknown)}; "
                             f"its parameters are {[p.name for p in self.parameters]}, its options "
                             f"{dict(self.options)}")
        out = {**dict(self.options), **dict(options)}
        for k, opt in self.option_info.items():
            if k in options:  # defaults are valid by declaration
                out[k] = opt.validate(out[k])
        return out

    # -- the checked pipeline: failure isolation, physical ranges, NaN where not converged -----
    def evaluate_checked(self, params: Mapping[str, Any], backend: Any, *,
                         time_limit: float | None = None, raise_if_all_failed: bool = False,
                         **options: Any) -> dict[str, Any]:
        """:meth:`evaluate`, made honest point by point (``derive.solve`` and sweeps call this).

        1. *Failure isolation*: a numerical exception of the pipeline on the batch
           (:data:`NUMERICAL_ERRORS`: ``LinAlgError``, ``ArithmeticError``, ``ValueError`` not
           about an input, ``RuntimeError``, ``MemoryError``) re-runs the batch by bisection;
           the points that still fail alone get status ``failed`` (a ``RuntimeWarning`` names
           the first error; with ``raise_if_all_failed`` the first error is raised when every
           point failed, as sweeps do to record and retry a failed unit). A ``TypeError`` or a ``ValueError`` naming an ``option``/
           ``parameter`` (bad input) propagates.
        2. *Budget*: with ``time_limit`` (seconds of wall clock for the batch; main thread on
           POSIX only) a batch that runs past it is stopped and its points get status
           ``maxiter``.
        3. *Honest flags* (:func:`~derive.declarations.check_outputs` over
           :attr:`observable_info`): a converged point with a non-finite observable becomes
           ``nonfinite``, one outside its physical range ``nonphysical``, one below its
           resolution ``precision``, each with ``converged = False``; every observable of a
           non-converged point is NaN.

        Returns flat NumPy arrays (observables and ``converged``, ``residual``, ``iterations``,
        ``status``).
        """
        import warnings

        import numpy as np

        from numerics.results import Status

        opts = self.validate_options(options)
        n = int(np.asarray(backend.to_numpy(next(iter(params.values())))).reshape(-1).shape[0]) \
            if params else 1
        errors: list[BaseException] = []

        def run(lo: int, hi: int) -> dict[str, np.ndarray] | None:
            sub = {k: v[lo:hi] for k, v in params.items()}
            o = dict(options)
            init = o.get("init")
            if init is not None and np.ndim(init) == 2 and np.shape(init)[0] == n and hi - lo != n:
                o["init"] = np.asarray(init)[lo:hi]
            try:
                out = self.evaluate(sub, backend, **o)
            except NUMERICAL_ERRORS as exc:
                if _is_input_error(exc):
                    raise
                if hi - lo == 1:
                    errors.append(exc)
                    return None
                mid = (lo + hi) // 2
                a, b = run(lo, mid), run(mid, hi)
                return _join(a, b, mid - lo, hi - mid)
            return {k: np.broadcast_to(np.asarray(backend.to_numpy(v)), (hi - lo,) + np.shape(v)[1:]).copy()
                    if np.ndim(v) else np.full(hi - lo, backend.to_numpy(v)) for k, v in out.items()}

        def _join(a, b, na, nb):
            if a is None and b is None:
                return None
            a = a if a is not None else _failed_like(b, na)
            b = b if b is not None else _failed_like(a, nb)
            return {k: np.concatenate([a[k], b[k]]) for k in a}

        def _failed_like(ref, m):
            return {k: np.full((m,) + v.shape[1:], _failed_value(k, v.dtype), dtype=v.dtype)
                    for k, v in ref.items()}

        out = None
        budget_hit = False
        try:
            with _time_limit(time_limit):
                out = run(0, n)
        except BudgetExceeded:
            if out is None:  # (an alarm between the end of the run and its cancellation is moot)
                errors.clear()
                budget_hit = True
        if out is None and errors and raise_if_all_failed:
            raise errors[0]
        if out is None:
            ref = {k: np.zeros(1) for k in self.observables}
            ref.update(converged=np.zeros(1, bool), residual=np.zeros(1),
                       iterations=np.zeros(1, np.int64), status=np.zeros(1, np.int8))
            out = _failed_like(ref, n)
            if budget_hit:
                out["status"][:] = int(Status.MAXITER)
        if errors:
            warnings.warn(f"model {self.name!r}: {len(errors)} point(s) failed; first error: "
                          f"{type(errors[0]).__name__}: {errors[0]}", RuntimeWarning, stacklevel=2)
        return self.check_outputs(params, out, opts, backend)

    def check_outputs(self, params: Mapping[str, Any], out: dict[str, Any], options: Mapping[str, Any],
                      backend: Any = None) -> dict[str, Any]:
        """Step 3 of :meth:`evaluate_checked` on NumPy outputs ``out`` (modified and returned)."""
        import numpy as np

        from numerics.results import Status

        conv = np.asarray(out["converged"]).astype(bool).reshape(-1)
        n = conv.shape[0]
        status = np.asarray(out["status"]).astype(np.int8).reshape(-1).copy()
        if self.observable_info:
            p = {k: np.broadcast_to(np.asarray(backend.to_numpy(v) if backend is not None else v,
                                               dtype=float).reshape(-1), (n,)) for k, v in params.items()}
            nonfinite, nonphys, prec = check_outputs(self.observable_info, p, out, options)
            ok = conv & (status == int(Status.OK))
            status[ok & nonfinite] = int(Status.NONFINITE)
            status[ok & ~nonfinite & nonphys] = int(Status.NONPHYSICAL)
            status[ok & ~nonfinite & ~nonphys & prec] = int(Status.PRECISION)
            conv = conv & ~(nonfinite | nonphys | prec)
        status[~conv & (status == int(Status.OK))] = int(Status.NOT_COMPUTED)
        for k, v in out.items():
            if k in ("converged", "residual", "iterations", "status"):
                continue
            v = np.asarray(v)
            if v.dtype.kind == "f" and v.shape[:1] == (n,) and (~conv).any():
                v = v.copy()
                v[~conv] = np.nan
                out[k] = v
        out["converged"] = conv
        out["status"] = status
        return out

    def describe_parameters(self) -> str:
        return "; ".join(f"{p.name} ∈ {p.domain} ({p.description})" for p in self.parameters)

    def show(self, fmt: str = "pretty") -> str:
        """All equations, as unicode pretty print (``fmt="pretty"``) or LaTeX (``"latex"``)."""
        out = [f"{self.title}\n{self.paper}\n"]
        for eq in self.equations():
            tag = f"[{eq.source}{', ' + eq.reference if eq.reference else ''}]"
            if fmt == "latex":
                out.append(f"% {eq.label} {tag}\n$$ {eq.latex(self.symbol_names)} $$")
            elif fmt == "pretty":
                out.append(f"{eq.label} {tag}\n{eq.pretty()}")
            else:
                raise ValueError(f"fmt must be 'pretty' or 'latex', got {fmt!r}")
            if eq.note:
                out.append(f"    ({eq.note})")
        return "\n\n".join(out)

    def __repr__(self) -> str:
        return f"<model {self.name!r}: {self.title}>"

    # -- Jupyter display: equations with provenance, parameters, options, observables ---------
    def _equation_latex(self) -> list[tuple[Equation, str]]:
        """``(equation, its LaTeX)`` for every equation (computed once per model)."""
        cache = self.__dict__.get("_eq_latex")
        if cache is None:
            cache = [(eq, eq.latex(self.symbol_names)) for eq in self.equations()]
            self.__dict__["_eq_latex"] = cache
        return cache

    def _repr_latex_(self) -> str:
        """Every equation as a display formula tagged with its label and provenance (MathJax)."""
        out = [f"$$\\textbf{{{_tex_text(self.title)}}}$$"]
        for eq, tex in self._equation_latex():
            out.append(f"$$ {tex} \\qquad \\text{{[{_tex_text(eq.label)}; "
                       f"{_tex_text(eq.provenance())}]}} $$")
        return "\n".join(out)

    def _repr_markdown_(self) -> str:
        """The model as a notebook page: title and paper, parameters with their domains,
        options with valid values, observables with long names and units, then every
        equation with its provenance."""
        lines = [f"### {_md(self.title)}", "", f"`{self.name}` · {_md(self.paper)}", ""]
        if self.parameters:
            lines += ["**Parameters**", "", "| name | symbol | domain | meaning |", "|---|---|---|---|"]
            lines += [f"| `{p.name}` | ${p.latex}$ | {_md(str(p.domain))} | {_md(p.description)} |"
                      for p in self.parameters]
            lines.append("")
        if self.options:
            info = getattr(self, "option_info", {}) or {}
            lines += ["**Options**", "", "| option | default | valid values | meaning |", "|---|---|---|---|"]
            for k, v in self.options.items():
                o = info.get(k)
                default = repr(v) if not hasattr(v, "shape") else f"array{tuple(v.shape)}"
                valid = o.describe() if o else ""
                desc = o.description if o else ""
                lines.append(f"| `{k}` | `{_md(default[:40])}` | {_md(valid if valid != desc else '–')} | "
                             f"{_md(desc)} |")
            lines.append("")
        if self.observables:
            info = getattr(self, "observable_info", {}) or {}
            has_units = any(getattr(info.get(k), "units", "") not in ("", "1") for k in self.observables)
            lines += ["**Observables**" + ("" if has_units else " (dimensionless)"), "",
                      "| name | symbol | meaning |" + (" units |" if has_units else "") + " range |",
                      "|---|---|---|" + ("---|" if has_units else "") + "---|"]
            for k in self.observables:
                ob = info.get(k)
                sym = f"${ob.symbol}$" if ob is not None and ob.symbol else ""
                units = ob.units if ob is not None and ob.units not in ("", "1") else "–"
                rng = ob.range_str() if ob is not None and hasattr(ob, "range_str") else ""
                lines.append(f"| `{k}` | {sym} | {_md(ob.long_name if ob else '')} |"
                             + (f" {_md(units)} |" if has_units else "") + f" {_md(rng)} |")
            lines.append("")
        eqs = self._equation_latex()
        if eqs:
            lines += [f"**Equations** ({len(eqs)})", ""]
            for eq, tex in eqs:
                lines += [f"*{_md(eq.label)}* [{_md(eq.provenance())}]", "", f"$$ {tex} $$", ""]
                if eq.note:
                    lines += [f"> {_md(eq.note)}", ""]
        return "\n".join(lines)


def _md(s: str) -> str:
    """Text for a Markdown table cell or line: pipes escaped, newlines flattened."""
    return str(s).replace("|", "\\|").replace("\n", " ")


_TEX_SPECIAL = {"\\": r"\textbackslash{}", "{": r"\{", "}": r"\}", "$": r"\$", "&": r"\&",
                "#": r"\#", "%": r"\%", "_": r"\_", "^": r"\^{}", "~": r"\~{}"}


def _tex_text(s: str) -> str:
    """``s`` escaped for ``\\text{...}`` (MathJax and LaTeX)."""
    return "".join(_TEX_SPECIAL.get(c, c) for c in str(s))
