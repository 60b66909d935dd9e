r"""In-context learning by linear attention: exact learning curves.

Y. M. Lu, M. I. Letey, J. A. Zavatone-Veth, A. Maiti, C. Pehlevan, *Asymptotic theory of
in-context learning by linear attention*, arXiv:2405.11751, PNAS 122(28) e2502599122 (2025).
Equation numbers refer to the project spec ``shared/specs/icl_linear_attention.md``
(the paper's full text was not available; its formulas were taken from the authors'
code and re-derived, see the spec's confidence tags).

Scaling: $\alpha=\ell/d$, $\kappa=k/d$, $\tau=n/d^2$, noise variance $\rho$, ridge $\lambda$.

Stated here (the definitions):

* $q=(1+\rho)/\alpha$;
* $M_\kappa$: the Marchenko–Pastur resolvent trace (:class:`~derive.operators.MarchenkoPasturTrace`);
* the effective-ridge equation $\varepsilon M_\kappa(q+\varepsilon)=1-\tau+\tau\lambda/\varepsilon$ (§2.2);
* $D$, $N$, $e_{\rm IDG}$, $e_{\rm ICL}$, $e_{\rm train}$ for $\lambda>0$ (§2.3).

Derived here by SymPy (and tested against the spec's stated forms):

* $M_\kappa$ in closed form and $M'_\kappa$ (implicit differentiation), their $\kappa\to\infty$ limits;
* the ridgeless effective ridge $\varepsilon_0$ for $\tau<1$ (a quadratic obtained by eliminating $M$);
* the ridgeless limit of $\lambda/\varepsilon$ in both branches, hence $e_{\rm train}$ at $\lambda=0$;
* the ridgeless learning curves in both branches, by substitution into the general ones.

The model class here is the numeric side (parameters, observables, the pipeline that orders
generated kernels and generic solvers); the SymPy statement (symbols, definitions, derivations,
programs, equations) lives in :mod:`.statement`, imported only when equations are needed, so a
solve from cached kernels never imports SymPy (docs/architecture.md, "Start-up").
"""
from __future__ import annotations

from functools import cached_property
from typing import Any, Mapping

import numpy as np

from numerics.backend import Backend
from numerics.results import Status
from numerics.roots import bracketed_root, expand_bracket

from ...declarations import Observable, declare
from ...lazy_statement import statement_getattr
from ...model import Model
from ...params import Domain, Parameter, nonnegative, positive, positive_or_inf

__all__ = ["ICLLinearAttention"]

# ----------------------------------------------------------------------------- parameters
TAU = Parameter("tau", positive, r"\tau", "pretraining contexts per parameter, n/d^2")
ALPHA = Parameter("alpha", positive, r"\alpha", "context length per dimension, l/d")
KAPPA = Parameter("kappa", positive_or_inf, r"\kappa",
                  "task diversity k/d (inf = a fresh task per context)")
RHO = Parameter("rho", nonnegative, r"\rho", "label-noise variance")
LAM = Parameter("lam", nonnegative, r"\lambda", "ridge strength (0 = ridgeless limit)")

#: attributes of the statement (definitions and derivations) reachable on the model instance
_STATEMENT_ATTRS = frozenset({
    "q_def", "eps_equation", "D_def", "N_def", "e_idg_def", "e_icl_def", "e_train_def",
    "stable_forms", "check_stable_forms", "M_closed_form", "Mprime", "kappa_infinity",
    "lam_over_eps", "eps0", "r_ridgeless", "eps_ridgeless", "ridgeless_forms", "stated_forms",
    "_observables_program",
})


__getattr__ = statement_getattr(__name__)


# ----------------------------------------------------------------------------- the model
class ICLLinearAttention(Model):
    """Deterministic-equivalent learning curves of linear attention trained by ridge (Lu et al.)."""

    name = "icl-linear-attention"
    title = "In-context learning by linear attention (Lu, Letey, Zavatone-Veth, Maiti, Pehlevan 2024)"
    paper = "arXiv:2405.11751; PNAS 122(28) e2502599122 (2025)"
    parameters = (TAU, ALPHA, KAPPA, RHO, LAM)
    observables = ("e_icl", "e_idg", "e_train", "eps", "q", "nu", "M", "Mp", "D", "N")
    #: physical ranges: errors are mean squares (>= 0), M a positive resolvent trace, M' <= 0
    observable_info = declare(
        Observable("e_icl", "in-context-learning test error", r"e_{\rm ICL}", "1", 0.0),
        Observable("e_idg", "in-distribution generalisation error", r"e_{\rm IDG}", "1", 0.0),
        Observable("e_train", "training error", r"e_{\rm train}", "1", 0.0),
        Observable("eps", "effective ridge", r"\varepsilon", "1"),
        Observable("q", "(1 + rho) / alpha", "q", "1", 0.0),
        Observable("nu", "q + eps", r"\nu", "1"),
        Observable("M", "Marchenko-Pastur resolvent trace at nu", "M", "1", 0.0),
        Observable("Mp", "derivative of the resolvent trace", "M'", "1", hi=0.0),
        Observable("D", "denominator D of the error formulas", "D", "1"),
        Observable("N", "numerator N of the error formulas", "N", "1"),
    )

    # ---- the statement (SymPy), loaded on demand ---------------------------------------
    @cached_property
    def statement(self) -> Any:
        """The :class:`~.statement.ICLStatement` (imports SymPy)."""
        from .statement import ICLStatement

        return ICLStatement()

    @property
    def symbol_names(self) -> Mapping[Any, str]:  # type: ignore[override]
        from .statement import SYMBOL_NAMES

        return SYMBOL_NAMES

    def programs(self) -> dict[str, Any]:
        return self.statement.programs()

    def equations(self) -> list[Any]:
        return self.statement.equations()

    def __getattr__(self, name: str) -> Any:
        if name in _STATEMENT_ATTRS:
            return getattr(self.statement, name)
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    # ---- numeric pipeline ------------------------------------------------------------
    def evaluate(self, params: Mapping[str, Any], backend: Backend) -> dict[str, Any]:
        """ε (closed form at λ = 0, bracketed safeguarded Newton at λ > 0), then §2.3."""
        xp, sp_ = backend.xp, backend.special
        t, a, k, rh, lm = (params[n] for n in ("tau", "alpha", "kappa", "rho", "lam"))
        shape = t.shape
        ridge = lm > 0
        pole = (~ridge) & (t == 1)
        eps_v = xp.full(shape, xp.nan)
        residual = xp.zeros(shape)
        iterations = xp.zeros(shape, dtype=xp.int64)
        status = xp.zeros(shape, dtype=xp.int8)

        rl = ~ridge & ~pole
        if bool(xp.any(rl)):
            e0 = self.kernel("eps_ridgeless")(xp, sp_, t[rl], a[rl], k[rl], rh[rl])["eps"]
            eps_v[rl] = e0
        if bool(xp.any(ridge)):
            args = tuple(v[ridge] for v in (t, a, k, rh, lm))
            f_k = self.kernel("eps_residual")
            fdf_k = self.kernel("eps_residual_fdf")

            def f(e: Any, *p: Any) -> Any:
                return f_k(xp, sp_, e, *p)["f"]

            def fdf(e: Any, *p: Any) -> tuple[Any, Any]:
                o = fdf_k(xp, sp_, e, *p)
                return o["f"], o["fprime"]

            br = self.kernel("eps_bracket")(xp, sp_, *args)
            # f(hi) of the expansion is passed on, not evaluated again (numerics.roots)
            lo, hi, ok, f_hi = expand_bracket(f, br["lo"], br["hi"], args, return_f_hi=True,
                                              backend=backend)
            res = bracketed_root(f, lo, hi, args, fdf=fdf, log_space=True, rtol=1e-15,
                                 f_hi=f_hi, backend=backend)
            eps_v[ridge] = res.x
            residual[ridge] = res.residual
            iterations[ridge] = res.iterations
            status[ridge] = xp.where(ok, res.status, int(Status.NO_BRACKET))
        status[pole] = int(Status.POLE)
        with np.errstate(all="ignore"):
            out = self.kernel("observables")(xp, sp_, t, a, k, rh, lm, eps_v)
        out = dict(out)
        out["eps"] = eps_v
        finite = xp.ones(shape, dtype=bool)
        for name in ("e_icl", "e_idg", "e_train"):
            finite &= xp.isfinite(out[name])
        status = xp.where((status == 0) & ~finite, int(Status.NONFINITE), status)
        converged = status == 0
        for name in self.observables:
            out[name] = xp.where(converged, out[name], xp.nan)
        out.update(converged=converged, residual=residual, iterations=iterations, status=status)
        return out

    def evaluate_mp(self, point: Mapping[str, Any], dps: int = 50) -> dict[str, Any]:
        """The same pipeline at one point in mpmath with ``dps`` digits."""
        import mpmath

        from numerics.highprec import mp_bracketed_newton

        vals = self.validate(point)
        with mpmath.workdps(dps):
            mp = mpmath.mp
            t, a, k, rh, lm = (mpmath.mpf(float(vals[n])) for n in
                               ("tau", "alpha", "kappa", "rho", "lam"))
            if lm == 0 and t == 1:
                raise ZeroDivisionError("tau = 1 with lam = 0 is a pole of the learning curves")
            if lm == 0:
                e = self.kernel("eps_ridgeless", "mpmath")(mp, t, a, k, rh)["eps"]
                iters = 0
            else:
                fk = self.kernel("eps_residual", "mpmath")
                fpk = self.kernel("eps_residual_prime", "mpmath")
                br = self.kernel("eps_bracket", "mpmath")(mp, t, a, k, rh, lm)
                lo, hi = br["lo"], br["hi"]

                def f(e: Any) -> Any:
                    return fk(mp, e, t, a, k, rh, lm)["f"]

                while f(hi) <= 0:
                    lo, hi = hi, 4 * hi
                e, iters = mp_bracketed_newton(
                    f, lambda e: fpk(mp, e, t, a, k, rh, lm)["fprime"], lo, hi)
            out = dict(self.kernel("observables", "mpmath")(mp, t, a, k, rh, lm, e))
            out["eps"] = e
            out["iterations"] = iters
            return out

    def random_points(self, rng: np.random.Generator, n: int) -> list[dict[str, float]]:
        """Random points spanning the domain on log scales (spec §6): q ∈ [1e-6, 1e3],
        κ ∈ [1e-2, 1e3] ∪ {∞}, τ ∈ [1e-3, 1e3], λ ∈ {0} ∪ [1e-12, 10], ρ ∈ {0} ∪ [1e-3, 10]."""
        pts = []
        for _ in range(n):
            rho_v = 0.0 if rng.random() < 0.15 else 10 ** rng.uniform(-3, 1)
            q_v = 10 ** rng.uniform(-6, 3)
            kap = np.inf if rng.random() < 0.1 else 10 ** rng.uniform(-2, 3)
            lam_v = 0.0 if rng.random() < 0.3 else 10 ** rng.uniform(-12, 1)
            pts.append(dict(tau=10 ** rng.uniform(-3, 3), alpha=(1 + rho_v) / q_v, kappa=kap,
                            rho=rho_v, lam=lam_v))
        return pts

    # ---- finite-size check -----------------------------------------------------------
    def simulate(self, **kwargs: Any) -> Any:
        """Finite-d simulation (independent of this module): see
        :func:`numerics.simulate.icl_linear_attention.simulate`."""
        from numerics.simulate.icl_linear_attention import simulate

        return simulate(**kwargs)


#: the registry entry (see derive/models/__init__.py)
MODEL = ICLLinearAttention
