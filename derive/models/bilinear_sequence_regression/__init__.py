r"""Bilinear sequence regression: Bayes-optimal MMSE by state evolution with a rectangular RIE.

V. Erba, E. Troiani, L. Biggio, A. Maillard, L. Zdeborová, *Bilinear sequence regression: a
model for learning from long sequences of high-dimensional tokens*, arXiv:2410.18858, PRX 2025.
Spec: ``shared/specs/bayes_optimal_sequence_models.md`` §B2 (equation tags there).

A sequence $X\in\mathbb R^{D\times L}$ with i.i.d. $N(0,1)$ entries, target
$S^*=UV^\top/\sqrt r$ ($U\in\mathbb R^{D\times r}$, $V\in\mathbb R^{L\times r}$ Gaussian),
label $y=\operatorname{Tr}(X^\top S^*)/\sqrt{DL}+\sqrt\Delta\,\xi$. Limit $D,L,r,N\to\infty$ with
$\alpha=N/(DL)$, $\beta=L/D\ge1$, $\rho=r/D$ (relative to the smaller side).

Stated (spec §B2, authors' code): the scalar state evolution
$\hat q=\alpha/(\Delta+1-q)$, $q=1-\mathrm{mmse}_{\rm RIE}(1/\hat q)$; the rectangular RIE
error $\mathrm{mmse}_{\rm RIE}(\Delta)=\Delta-\frac{\Delta^2}{\beta^{3/2}}\big[(\beta-1)^2\!\int\!\frac{\mu_Y}{x^2}
+\frac{4\pi^2}{3}\!\int\!\mu_Y^3\big]$; the $\beta\to\infty$ fixed-point equation; the
perfect-recovery threshold $\alpha_{\rm PR}=\rho(1+\beta-\rho)/\beta$ ($\rho<1$), 1 otherwise.

Derived here (SymPy): the quartic for the Stieltjes transform of $\mu_Y$ and its edge
polynomial (:mod:`derive.models._rie`), and the $\beta=\infty$, $\Delta=0$ closed form
$\mathrm{mmse}=(1-\alpha)(1-\alpha/\rho)$ from the stated $\beta\to\infty$ equation.
The order parameter iterated is $m=1-q$ (the MMSE itself).

Runtime model here (SymPy-free; shared numerics: :mod:`derive.models._rie_se`), statement in :mod:`.statement`.
"""
from __future__ import annotations

import math
from typing import Any, Mapping

import numpy as np

from numerics.backend import Backend

from ...declarations import Observable, Option, declare
from ...lazy_statement import statement_getattr
from ...params import Domain, Parameter, nonnegative, positive
from .._rie_se import (RIEStateEvolution, output_names, rie_se_options, stability_observable,
                       statement_loader)

__all__ = ["BilinearSequenceRegression", "MODEL"]

ALPHA = Parameter("alpha", positive, r"\alpha", "samples per matrix entry, N/(D L)")
BETA = Parameter("beta", Domain(1.0, math.inf, lo_closed=True, hi_closed=True), r"\beta",
                 "sequence length over dimension, L/D (>= 1; inf accepted)")
RHO = Parameter("rho", positive, r"\rho", "rank over the smaller side, r/D")
DELTA = Parameter("delta", nonnegative, r"\Delta", "label-noise variance")

#: outputs of the ``quartic`` (its coefficients, lowest degree first) and ``edges`` programs
COEFF_NAMES, EDGE_NAMES = output_names("c", 5), output_names("e", 11)
#: the one :class:`~.statement.BSRStatement` (SymPy, imported on the first call)
_statement = statement_loader(__name__, "BSRStatement")
__getattr__ = statement_getattr(__name__)


class BilinearSequenceRegression(RIEStateEvolution):
    """Bayes-optimal MMSE of bilinear sequence regression (Erba et al. 2024)."""

    name = "bilinear-sequence-regression"
    title = "Bilinear sequence regression, Bayes-optimal (Erba, Troiani, Biggio, Maillard, Zdeborová 2024)"
    paper = "arXiv:2410.18858 (PRX 2025)"
    parameters = (ALPHA, BETA, RHO, DELTA)
    # the state is m = 1 − q (the MMSE), RIEStateEvolution.state; the rectangular RIE (a
    # quartic in g₁, the even density integrated over x > 0)
    coeff_program, coeff_names, edge_names, support_lo = "quartic", COEFF_NAMES, EDGE_NAMES, 0.0
    observables = ("mmse", "q", "qhat", "alpha_pr", "mse_ridge", "stability")
    option_info = rie_se_options(
        Option("m0", 0.5, "start of the iteration, the MMSE m = 1 − q (the authors' q = 0.5) where "
               "init does not give one", kind="float", domain=Domain(0.0, 1.0, False, True)))
    #: the :class:`~.statement.BSRStatement` (SymPy), for ``statement``/``programs``/``equations``
    statement_factory = staticmethod(_statement)
    #: physical ranges (a point is converged only inside them): the prior has unit variance
    observable_info = declare(
        Observable("mmse", "minimum mean squared error", r"\mathrm{mmse}", "1", 0.0, 1.0),
        Observable("q", "overlap with the teacher, 1 - mmse", "q", "1", 0.0, 1.0),
        Observable("qhat", "conjugate overlap", r"\hat q", "1", 0.0),
        Observable("alpha_pr", "perfect-recovery threshold (noiseless)", r"\alpha_{\rm PR}", "1", 0.0, 1.0),
        Observable("mse_ridge", "test error of ridge regression at lambda = Delta",
                   r"\mathrm{mse}_{\rm ridge}", "1", 0.0, 1.0),
        stability_observable(),
    )

    # ---- the statement (SymPy, :mod:`.statement`), loaded on demand ------------------------
    from_statement = ("qhat_def", "mmse_rie_def", "alpha_pr_def", "ridge_def",
                      "rie_beta_inf", "beta_inf_equation", "mmse_beta_inf",
                      "noiseless_beta_inf_closed_form", "psi_out_def", "psi_den_derivative",
                      "free_entropy", "stationarity", "free_entropy_on_shell",
                      "log_potential_symbols", "psi_den_log_potential",
                      "log_potential_scaling", "free_entropy_log_potential", "quartic",
                      "edges")

    # ---- free entropy, numerically --------------------------------------------------------
    def psi_den_numeric(self, qhat_v: float, rho_v: float, beta_v: float, n: int = 24) -> float:
        """Ψ_den(q̂) − Ψ_den(0) = ½∫₀^q̂ (1 − mmse_RIE(1/t)) dt (I-MMSE), Gauss–Legendre in t."""
        return self.immse_integral(
            qhat_v, lambda t: (1 - self.mmse_rie(1 / t, np.full(t.size, rho_v), np.full(t.size, beta_v))) / 2, n)

    def free_entropy_numeric(self, alpha_v: float, beta_v: float, rho_v: float, delta_v: float,
                             m_v: float) -> float:
        """Φ at the fixed point with mmse ``m_v`` (up to a parameter-dependent constant common to
        all branches at the same (α, β, ρ, Δ))."""
        k = self.kernel("free_entropy")
        qv = 1 - m_v
        qh = float(self.kernel("channel")(np, None, alpha_v, delta_v, m_v)["qhat"])   # α/(Δ + m)
        return float(k(np, None, alpha_v, delta_v, qv,
                       self.psi_den_numeric(qh, rho_v, beta_v))["Phi"])

    # ---- numerics -----------------------------------------------------------------------
    def mmse_rie_batch(self, delta_eff: np.ndarray, rho_v: np.ndarray, beta_v: np.ndarray,
                       n_nodes: int = 32, tol: float | None = 1e-11
                       ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(mmse_RIE, error estimate, ok)`` per point, batched over the grid.

        μ_Y = max |Im g₁|/π of the derived quartic (closed form, :func:`numerics.rie.density_batch`)
        on x > 0 (μ_Y is even; the integrals over ℝ are twice those); support from the real roots
        of the edge polynomial; ``∫μ³`` and ``∫μ/x²`` by the adaptive angle rule
        (:meth:`RIEStateEvolution.rie_integrals`). β = 1: the ``∫μ/x²`` term has the factor
        (β − 1)² = 0 (and diverges), so it is not computed. β = ∞: the stated β → ∞ form.
        Δ_eff ≤ 1e-14 gives 0."""
        de_v, r_v, b_v = np.broadcast_arrays(*(np.asarray(v, float).reshape(-1)
                                               for v in (delta_eff, rho_v, beta_v)))
        out = np.zeros(de_v.shape)
        err = np.zeros(de_v.shape)
        ok = np.ones(de_v.shape, dtype=bool)
        bad_in = ~(np.isfinite(de_v) & np.isfinite(r_v) & (r_v > 0) & (de_v >= 0) & (b_v >= 1))
        out[bad_in], err[bad_in], ok[bad_in] = np.nan, np.nan, False
        tiny = (de_v <= 1e-14) & ~bad_in
        inf = np.isinf(b_v) & ~tiny & ~bad_in
        with np.errstate(all="ignore"):
            if inf.any():
                out[inf] = self.kernel("mmse_beta_inf")(np, None, r_v[inf], de_v[inf])["m_new"]
        rows = np.flatnonzero(~inf & ~tiny & ~bad_in)
        if rows.size == 0:
            return out, err, ok
        rr, br, dr = r_v[rows], b_v[rows], de_v[rows]
        has_j = br > 1

        def integrand(mu: np.ndarray, xs: np.ndarray, idx: np.ndarray) -> np.ndarray:
            j = np.where(has_j[idx][:, None], mu / xs**2, 0.0)
            return np.stack([mu * mu * mu, j], axis=-1)        # (μ**3 is a slow pow)

        with np.errstate(all="ignore"):
            # ∂mmse/∂(∫μ³), ∂mmse/∂(∫μ/x²) (the integrals over x > 0 enter doubled), from
            # mmse = Δ − Δ²/β^{3/2}[(β − 1)²∫μ/x² + (4π²/3)∫μ³]
            w = 2 * dr[:, None] ** 2 / br[:, None] ** 1.5 * np.stack(
                [np.full(br.shape, 4 * np.pi**2 / 3), np.where(has_j, (br - 1) ** 2, 0.0)], axis=-1)
            res, found = self.rie_integrals((rr, br), dr, integrand, w, n_nodes, tol)
            i3, j2 = res.values[:, 0], res.values[:, 1]
            m_new = np.asarray(self.kernel("mmse_rie")(np, None, br, dr, 2 * i3, 2 * j2)["m_new"], float)
            # error of m from the integrals' estimate: |∂m/∂I3|, |∂m/∂J2| ≤ Δ²/β^{3/2}·max(4π²/3, (β−1)²)
            e_m = 2 * res.error * dr**2 / br**1.5 * np.maximum(4 * np.pi**2 / 3, (br - 1) ** 2)
        out[rows], err[rows], ok[rows] = self.accept(res, found, m_new, e_m)
        return out, err, ok

    def se_map(self, m_v: np.ndarray, a: np.ndarray, b: np.ndarray, r: np.ndarray,
               dl: np.ndarray, n_nodes: int = 32, tol: float | None = 1e-11) -> np.ndarray:
        """The undamped state-evolution map m ↦ mmse_RIE((Δ + m)/α) (batched)."""
        ch = self.kernel("channel")(np, None, a, dl, m_v)
        return self.mmse_rie(ch["Delta_eff"], r, b, n_nodes=n_nodes, tol=tol)

    def random_states(self, n: int, rng: Any) -> np.ndarray:
        """``(n, 1)`` starts m ~ U(0.001, 1): the MMSE lies in [0, 1] (q ∈ [0, 1])."""
        return np.random.default_rng(rng).uniform(1e-3, 1.0, size=(int(n), 1))

    def evaluate(self, params: Mapping[str, Any], backend: Backend, *, init: Any = None,
                 stability: bool = False, m0: float = 0.5, tol: float = 1e-11,
                 maxiter: int = 3000) -> dict[str, Any]:
        """The SE from q = 0.5 (the authors' start; ``m0``) or from ``init`` (per point), all
        points (:meth:`RIEStateEvolution.solve_state_evolution`); ``stability``: dF/dm of the
        undamped map."""
        be = backend
        a, b, r, dl = (be.to_numpy(params[k]).astype(float) for k in ("alpha", "beta", "rho", "delta"))
        n = a.size
        res, F, stab = self.solve_state_evolution((a, b, r, dl), self.start(init, np.full((n, 1), m0)),
                                                  tol=tol, maxiter=maxiter, stability=stability)
        mm = np.where(res.converged, np.clip(res.x[:, 0], 0.0, None), np.nan)
        ex = self.kernel("extras")(np, None, a, b, r, dl)
        with np.errstate(all="ignore"):
            qh = np.where(res.converged, self.kernel("channel")(np, None, a, dl, mm)["qhat"], np.nan)
        out = {"mmse": mm, "q": 1 - mm, "qhat": qh,
               "alpha_pr": np.asarray(ex["alpha_PR"], float) * np.ones(n),
               "mse_ridge": np.asarray(ex["mse_ridge"], float) * np.ones(n),
               "stability": self.leading(F, res, res.converged, stab),
               "converged": res.converged, "residual": res.residual,
               "iterations": res.iterations, "status": res.status}
        return {k: be.asarray(v) for k, v in out.items()}

    def evaluate_mp(self, point: Mapping[str, Any], dps: int = 50) -> dict[str, Any]:
        raise NotImplementedError("the SE needs the numeric density quadrature; the generated "
                                  "kernels are checked against their mpmath versions instead")


MODEL = BilinearSequenceRegression
