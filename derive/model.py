"""The model object: parameters, equations, programs, and the numeric pipeline hooks.

A model states its physics once, as SymPy: :class:`Equation` objects to render,
and :class:`~derive.codegen.Program` objects from which kernels are generated for
every target. Subclasses implement :meth:`Model.evaluate` (the batched pipeline over
a flat grid, run on a backend) and :meth:`Model.evaluate_mp` (the same pipeline
in mpmath at one point); neither contains a formula, only the order in which
generated kernels and generic solvers are called.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Mapping

import sympy as sp

from .codegen import Kernel, Program, generate
from .params import Parameter

__all__ = ["Equation", "Model"]


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
    #: non-grid keyword options of ``derive.solve`` (branch, quadrature order...) -> default
    options: Mapping[str, Any] = {}

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
        for name, prog in self._programs.items():
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

    def kernel(self, program: str, target: str = "xp") -> Kernel:
        """The generated kernel of ``program`` for ``target`` ("xp" or "mpmath"), cached."""
        cache = self.__dict__.setdefault("_kernels", {})
        k = (program, target)
        if k not in cache:
            try:
                prog = self._programs[program]
            except KeyError:
                raise KeyError(f"model {self.name!r} has no program {program!r}; "
                               f"it has {sorted(self._programs)}") from None
            cache[k] = generate(prog, target)
        return cache[k]

    def kernels(self, target: str = "xp") -> dict[str, Kernel]:
        return {name: self.kernel(name, target) for name in self._programs}

    @property
    def equations_hash(self) -> str:
        """SHA-256 over the keys of all generated kernels: changes iff the equations do."""
        h = hashlib.sha256()
        for name in sorted(self._programs):
            h.update(self.kernel(name, "xp").key.encode())
        return h.hexdigest()

    # -- kernels that depend on options (sizes such as L, r): sweeps hash and ship these -------
    def kernels_for(self, options: Mapping[str, Any]) -> dict[str, Kernel]:
        """The generated array kernels :meth:`evaluate` uses with ``options``: by default every
        program's. A model whose equations depend on an option (e.g. the number of tokens)
        overrides this and :meth:`install_kernels_for`."""
        return self.kernels("xp")

    def install_kernels_for(self, options: Mapping[str, Any], kernels: Mapping[str, Kernel]) -> None:
        """Put ``kernels`` (rebuilt from shipped source) where :meth:`evaluate` finds them."""
        cache = self.__dict__.setdefault("_kernels", {})
        for name, k in kernels.items():
            old = cache.get((name, "xp"))
            if old is not None and old.key != k.key:
                raise ValueError(f"kernel {name!r}: this process already holds other equations")
            cache.setdefault((name, "xp"), k)

    def equations_hash_for(self, options: Mapping[str, Any]) -> str:
        """:attr:`equations_hash` of the kernels used with ``options`` (see :meth:`kernels_for`)."""
        h = hashlib.sha256()
        ks = self.kernels_for(options)
        for name in sorted(ks):
            h.update(ks[name].key.encode())
        return h.hexdigest()

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
        unknown = set(options) - set(self.options)
        if unknown:
            raise ValueError(f"model {self.name!r} has no parameter or option(s) {sorted(unknown)}; "
                             f"its parameters are {[p.name for p in self.parameters]}, its options "
                             f"{dict(self.options)}")
        return {**dict(self.options), **dict(options)}

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
