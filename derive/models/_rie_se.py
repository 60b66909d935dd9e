r"""The numeric side shared by the RIE state-evolution models (SymPy-free).

``bilinear-sequence-regression`` (rectangular RIE, a quartic) and ``extensive-width-quadratic``
(symmetric RIE, a cubic) iterate one scalar state, $m=\mathrm{mmse}$, through

$$m\;\mapsto\;\mathrm{mmse}_{\rm RIE}\big(\Delta_{\rm eff}(m)\big),\qquad
\mathrm{mmse}_{\rm RIE}(\Delta)=\Delta-\Delta^2\sum_j c_j\int f_j(\mu_\Delta(x),x)\,dx,$$

where $\mu_\Delta$ is the density whose Stieltjes transform solves the model's derived polynomial
(:mod:`derive.models._rie`). This module orders, for both, the same calls: generated kernels for
the coefficients and the edge polynomial, :func:`numerics.rie.batched_support` and
:func:`numerics.rie.integrate_density_batch` over the whole grid, and
:func:`numerics.state_evolution.solve_two_stage` (a cheap quadrature to ``1e-7``, then the
accurate map to ``tol`` on the undamped residual). No solver and no formula lives here: each model
supplies its integrands, their weights $\Delta^2c_j$ and its generated ``mmse_rie`` kernel.

Nothing here imports SymPy: each model package's ``__init__`` is the numeric side (parameters,
observables, the pipeline that orders generated kernels and generic solvers) and its SymPy
statement (symbols, definitions, derivations, programs, equations) lives in ``statement.py``,
imported only when equations are needed, so a solve from cached kernels never imports SymPy
(docs/architecture.md, "Start-up").
"""
from __future__ import annotations

import importlib
from functools import lru_cache
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from numerics.fixed_point import FixedPointResult
from numerics.rie import DensityIntegrals, batched_support, density_batch, integrate_density_batch
from numerics.state_evolution import solve_two_stage

from ..declarations import Observable, Option, declare, init_option, stability_option
from ..lazy_statement import FromStatement, StatementSymbolNames
from ..model import Model
from ..params import Domain
from ._bayes_fp import check_stability_option, leading_eigenvalue, parse_init

__all__ = ["RIEStateEvolution", "rie_se_options", "stability_observable", "statement_loader", "output_names", "WEIGHTED_TOL",
           "COARSE_NODES", "COARSE_TOL"]

#: a quadrature piece is also accepted once its error estimate moves the mmse by at most this
#: times the quadrature tolerance (``weights`` of :func:`numerics.rie.integrate_density_batch`)
WEIGHTED_TOL = 1e-2
#: the first stage's map: ``COARSE_NODES``/``2·COARSE_NODES`` angle rules to ``COARSE_TOL``
COARSE_NODES, COARSE_TOL = 16, 1e-6
#: the first stage stops at this undamped residual (of the coarse map)
COARSE_RESIDUAL = 1e-7


def statement_loader(package: str, cls: str) -> Callable[[], Any]:
    """``() -> the one <package>.statement.<cls>()`` (imports SymPy on the first call only)."""

    @lru_cache(maxsize=None)
    def load() -> Any:
        return getattr(importlib.import_module(f"{package}.statement"), cls)()

    load.__doc__ = f"The one :class:`{package}.statement.{cls}` (imports SymPy)."
    return load


def output_names(prefix: str, n: int) -> tuple[str, ...]:
    """``prefix0 … prefix{n−1}``: the outputs of a coefficient program, lowest degree first (the
    statement's symbols carry the same names)."""
    return tuple(f"{prefix}{i}" for i in range(n))


def stability_observable() -> Observable:
    """The optional ``stability`` output: dF/dm of the undamped map at the fixed point."""
    return Observable("stability", "leading eigenvalue of the Jacobian of the undamped map (real part)",
                      r"\lambda_{\max}", "1", optional=True, computed=lambda o: bool(o.get("stability")))


def rie_se_options(*extra: Option, tol: float = 1e-11, maxiter: int = 3000) -> Mapping[str, Option]:
    """``init``, ``stability``, ``tol``, ``maxiter`` (and ``extra``) as declared options."""
    return declare(
        init_option(("mmse",)), stability_option(), *extra,
        Option("tol", tol, "undamped residual |F(m) − m| at which the accurate map's fixed point "
               "is accepted (its quadrature is refined to the same tolerance)", kind="float",
               domain=Domain(1e-14, 1e-6, True, True)),
        Option("maxiter", maxiter, "map evaluations per point and stage", kind="int",
               domain=Domain(1, 100_000, True, True, integer=True)),
    )


class RIEStateEvolution(Model):
    """Base of the scalar RIE state-evolution models: the batched spectral quadrature and the
    two-stage solve. Subclasses set the program and output names and implement
    :meth:`mmse_rie_batch` (their integrands and weights) and :meth:`se_map`."""

    #: fixed-point protocol (derive.model): the state is m = mmse
    state = ("mmse",)
    #: generated program with the polynomial's coefficients in x (``coeff_names``, lowest first)
    coeff_program: str = ""
    coeff_names: tuple[str, ...] = ()
    #: outputs of the ``edges`` program (the edge polynomial, lowest first)
    edge_names: tuple[str, ...] = ()
    #: lower end of the candidate edges: 0 for an even density integrated over x > 0, None for
    #: the whole line
    support_lo: float | None = None

    #: ``() -> statement object`` (SymPy; imported on first use): its ``programs()`` and
    #: ``equations()`` are the model's
    statement_factory: Callable[[], Any]
    #: names of the statement's definitions and derivations readable on the model (class and
    #: instances; :class:`derive.lazy_statement.FromStatement`, SymPy on first use)
    from_statement: tuple[str, ...] = ()

    @property
    def statement(self) -> Any:
        """The model's SymPy statement (imports SymPy)."""
        return type(self).statement_factory()

    def programs(self) -> dict[str, Any]:
        return self.statement.programs()

    def equations(self) -> list[Any]:
        return self.statement.equations()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "symbol_names" not in cls.__dict__:
            cls.symbol_names = StatementSymbolNames(cls.__module__)
        for name in cls.__dict__.get("from_statement", ()):
            attr = FromStatement(cls.statement_factory)
            attr.__set_name__(cls, name)
            setattr(cls, name, attr)

    # ---- the spectral quadrature -----------------------------------------------------------
    def rie_integrals(self, spectral: Sequence[np.ndarray], delta_eff: np.ndarray,
                      integrand: Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray],
                      weights: np.ndarray, n_nodes: int, tol: float | None
                      ) -> tuple[DensityIntegrals, np.ndarray]:
        r"""``∫ f_j(μ(x), x) dx`` over the support at every point (``spectral``: the coefficient
        program's parameters after ``x`` and before ``Δ_eff``, flat arrays; ``integrand(mu, x, rows)``
        returns ``(*x.shape, J)``; ``weights`` ``(P, J)`` the sensitivities ``∂mmse/∂I_j``).

        Returns the integrals and, per point, whether a bulk was found. ``tol`` None: the
        ``n_nodes`` rule once per bulk (no error estimate)."""
        ck, ek = self.kernel(self.coeff_program), self.kernel("edges")
        names = self.coeff_names

        def coeffs(xs: np.ndarray, idx: np.ndarray) -> list[Any]:
            o = ck(np, None, xs, *(v[idx][:, None] for v in spectral), delta_eff[idx][:, None])
            return [o[c] for c in names]          # columns: numerics.rie broadcasts them

        eo = ek(np, None, *spectral, delta_eff)
        ecs = np.stack([np.broadcast_to(np.asarray(eo[e], float), delta_eff.shape)
                        for e in self.edge_names], axis=-1)
        a, b, valid = batched_support(ecs, lambda xs, idx: density_batch(coeffs(xs, idx)),
                                      lo=self.support_lo)
        res = integrate_density_batch(coeffs, a, b, valid, integrand, np.shape(weights)[-1], n_nodes,
                                      tol=tol or 0.0, adaptive=tol is not None, weights=weights,
                                      weighted_tol=(tol or 0.0) * WEIGHTED_TOL)
        return res, valid.any(axis=1)

    @staticmethod
    def accept(res: DensityIntegrals, found: np.ndarray, m_new: np.ndarray, e_m: np.ndarray
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(mmse, error, ok)`` from the quadrature: a value counts only where the integrals are
        finite, a bulk was found, ``m_new`` is finite and every piece met the tolerance — or the
        piece budget ran out where the integrals move the mmse by at most 1e-13 (a narrow, tall
        bulk at small Δ_eff, whose integrals enter with weight Δ_eff²)."""
        good = res.ok & found & np.isfinite(m_new) & (res.met | (e_m <= 1e-13))
        return np.where(good, m_new, np.nan), np.where(good, e_m, np.nan), good

    def mmse_rie_batch(self, delta_eff: np.ndarray, *spectral: np.ndarray, n_nodes: int = 32,
                       tol: float | None = 1e-11) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(mmse_RIE, error estimate, ok)`` per point (model-specific)."""
        raise NotImplementedError

    def mmse_rie(self, delta_eff: np.ndarray, *spectral: np.ndarray, n_nodes: int = 32,
                 tol: float | None = 1e-11) -> np.ndarray:
        """``mmse_RIE(Δ_eff)`` for all points at once (NaN where the spectral computation failed;
        see :meth:`mmse_rie_batch`)."""
        return self.mmse_rie_batch(delta_eff, *spectral, n_nodes=n_nodes, tol=tol)[0]

    def se_map(self, m_v: np.ndarray, *point: np.ndarray, n_nodes: int = 32,
               tol: float | None = 1e-11) -> np.ndarray:  # pragma: no cover - abstract
        """The undamped state-evolution map ``m ↦ mmse_RIE(Δ_eff(m))`` (batched)."""
        raise NotImplementedError

    # ---- the state evolution ----------------------------------------------------------------
    def solve_state_evolution(self, point: Sequence[np.ndarray], x0: np.ndarray, *, tol: float,
                              maxiter: int, stability: Any = False
                              ) -> tuple[FixedPointResult, Callable[[np.ndarray, np.ndarray], np.ndarray], bool]:
        """Fixed points of :meth:`se_map` at the grid ``point`` (the map's arguments after ``m``),
        from ``x0`` ``(n, 1)`` (or the validated ``init``): two stages
        (:func:`numerics.state_evolution.solve_two_stage`), the secant method (Anderson depth 1,
        the state is a scalar), converged on the undamped residual of the accurate map.

        Strict positivity: at Δ = 0, m = 0 is an exact (unstable below α_PR) fixed point that an
        accelerated step could land on; it is reached only asymptotically, never by a jump.
        Returns ``(result, F, stability requested)`` (``F`` the accurate map, for the Jacobian)."""
        stab = check_stability_option(stability)

        def F(xv: np.ndarray, idx: np.ndarray) -> np.ndarray:
            return self.se_map(np.clip(xv[:, 0], 0.0, None), *(v[idx] for v in point))[:, None]

        def F_coarse(xv: np.ndarray, idx: np.ndarray) -> np.ndarray:
            return self.se_map(np.clip(xv[:, 0], 0.0, None), *(v[idx] for v in point),
                               n_nodes=COARSE_NODES, tol=COARSE_TOL)[:, None]

        with np.errstate(all="ignore"):
            res = solve_two_stage(F, F_coarse, x0, tol=tol, coarse_tol=COARSE_RESIDUAL,
                                  coarse_maxiter=200, maxiter=maxiter, damping=0.5, anderson=1,
                                  project=lambda xv, idx: xv[:, 0] > 0)
        return res, F, stab

    @staticmethod
    def start(init: Any, default: np.ndarray) -> np.ndarray:
        """The ``(n, 1)`` start: ``init`` (validated, NaN rows: ``default``) or ``default``."""
        return parse_init(init, default, domain=lambda rows: rows[:, 0] >= 0)

    @staticmethod
    def leading(F: Callable[[np.ndarray, np.ndarray], np.ndarray], res: FixedPointResult,
                mask: np.ndarray, stab: bool) -> np.ndarray:
        """dF/dm of the undamped map at the fixed points in ``mask`` (NaN elsewhere, or all NaN
        when not requested)."""
        if not stab:
            return np.full(res.x.shape[0], np.nan)
        return leading_eigenvalue(F, np.clip(res.x, 0.0, None), mask)

    # ---- the free entropy's denoising part, numerically ---------------------------------------
    @staticmethod
    def immse_integral(qhat_v: float, integrand: Callable[[np.ndarray], np.ndarray],
                       n: int = 24) -> float:
        r"""``∫₀^q̂ integrand(t) dt`` by ``n``-node Gauss–Legendre (the I-MMSE integral
        $\Psi_{\rm den}(\hat q)-\Psi_{\rm den}(0)$ of both models, with their integrands)."""
        u, w = np.polynomial.legendre.leggauss(n)
        t = qhat_v * (u + 1) / 2
        return float(qhat_v / 2 * np.dot(w, integrand(t)))
