r"""Extensive-width quadratic network (attention-indexed model with T = 1): Bayes-optimal error.

A. Maillard, E. Troiani, S. Martin, F. Krzakala, L. Zdeborová, *Bayes-optimal learning of an
extensive-width neural network from quadratically many samples*, arXiv:2408.03733; the T = 1,
L = 1 case of the attention-indexed model (Boncoraglio, Troiani, Erba, Zdeborová, 2506.01582).
Spec: ``shared/specs/bayes_optimal_sequence_models.md`` §B3 (T = 1 special case).

$y=x^\top Sx/\sqrt d-\operatorname{Tr}S/\sqrt d$ (+ noise $\Delta$), $S=WW^\top/m$ with
spectrum $\mathrm{MP}(1/\kappa)$ (mean 1, $Q_0=\operatorname{Tr}S^2/d=1+1/\kappa$), $m=\kappa d$
hidden units, $n=\alpha d^2$ samples.

Stated (spec §B3, authors' ``Theory_noise.py``): the symmetric RIE error
$\mathrm{mmse}(\Delta)=\Delta-\frac{4\pi^2}{3}\Delta^2\int\mu_\Delta^3$ with
$\mu_\Delta=\mathrm{MP}(1/\kappa)\boxplus\sigma_{\rm sc}(\Delta)$; the fixed-point equation
$\frac{4\pi^2}{3}I(\hat q)/\hat q-\Delta\hat q/2=1-2\alpha$, $I(\hat q)=\int\mu_{1/\hat q}^3$;
$e_{\rm gen}=(4\alpha-\hat q\Delta)/(2\hat q)$; $\alpha_{\rm PR}=\kappa-\kappa^2/2$ ($\kappa<1$), $1/2$.

Derived here (SymPy): the cubic for the Stieltjes transform (MP S-transform + subordination),
its edge polynomial, the equivalent map $\hat q=4\alpha/(\Delta+2\,\mathrm{mmse}(1/\hat q))$
iterated on $m=\mathrm{mmse}$, and $e_{\rm gen}=m$ at the fixed point.

The quadratic network's runtime model (SymPy-free); its statement: :mod:`.statement`.
"""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from numerics.backend import Backend
from numerics.results import Status

from ...declarations import Observable, declare
from ...lazy_statement import statement_getattr
from ...params import Parameter, nonnegative, positive
from .._rie_se import (RIEStateEvolution, output_names, rie_se_options, stability_observable,
                       statement_loader)

__all__ = ["ExtensiveWidthQuadratic", "MODEL"]

#: the one :class:`~.statement.EWQStatement` (SymPy, imported on the first call)
_statement = statement_loader(__name__, "EWQStatement")
__getattr__ = statement_getattr(__name__)

ALPHA = Parameter("alpha", positive, r"\alpha", "samples over d^2, n/d^2")
KAPPA = Parameter("kappa", positive, r"\kappa", "width over dimension, m/d")
DELTA = Parameter("delta", nonnegative, r"\Delta", "label-noise parameter (as in the authors' code)")

#: outputs of the ``cubic`` (its coefficients, lowest degree first) and ``edges`` programs
COEFF_NAMES, EDGE_NAMES = output_names("c", 4), output_names("e", 5)


class ExtensiveWidthQuadratic(RIEStateEvolution):
    """Bayes-optimal generalisation error of the extensive-width quadratic network."""

    # the state is m = mmse (Q0 − q), RIEStateEvolution.state; the symmetric RIE (a cubic
    # in G, the density on the whole line)
    coeff_program, coeff_names, edge_names, support_lo = "cubic", COEFF_NAMES, EDGE_NAMES, None
    parameters = (ALPHA, KAPPA, DELTA)
    name, paper = "extensive-width-quadratic", "arXiv:2408.03733; AIM: arXiv:2506.01582"
    title = ("Extensive-width quadratic network / attention-indexed model at T = 1 "
             "(Maillard, Troiani, Martin, Krzakala, Zdeborová 2024)")
    observables = ("gen_error", "mmse", "qhat", "alpha_pr", "stability")
    option_info = rie_se_options()
    #: the :class:`~.statement.EWQStatement` (SymPy), for ``statement``/``programs``/``equations``
    statement_factory = staticmethod(_statement)
    #: physical ranges: 0 <= mmse = e_gen <= Q0 = 1 + 1/kappa (the prior's second moment);
    #: the RIE quadrature does not resolve an mmse below 1e-12 (flagged ``precision``)
    observable_info = declare(
        Observable("gen_error", "Bayes-optimal generalisation error", r"e_{\rm gen}", "1", 0.0,
                   lambda p, o: 1 + 1 / p["kappa"], resolution=1e-12),
        Observable("mmse", "minimum mean squared error of the weights' Gram matrix", r"\mathrm{mmse}",
                   "1", 0.0, lambda p, o: 1 + 1 / p["kappa"], resolution=1e-12),
        Observable("qhat", "conjugate overlap (+inf at perfect recovery, Δ = 0 above α_PR)", r"\hat q",
                   "1", 0.0, finite=False),
        Observable("alpha_pr", "perfect-recovery threshold (noiseless)", r"\alpha_{\rm PR}", "1", 0.0, 0.5),
        stability_observable(),
    )

    # ---- the statement (SymPy, :mod:`.statement`), loaded on demand ------------------------
    from_statement = ("Q0_def", "mmse_rie_def", "qhat_equation", "gen_error_def",
                      "alpha_pr_def", "psi_out_def", "psi_den_derivative", "free_entropy",
                      "stationarity", "free_entropy_on_shell", "qhat_map",
                      "gen_error_at_fixed_point", "cubic", "edges")

    # ---- free entropy, numerically --------------------------------------------------------
    def psi_den_numeric(self, qhat_v: float, kappa_v: float, n: int = 24) -> float:
        """Ψ_den(q̂) − Ψ_den(0) = ¼∫₀^q̂ (Q0 − mmse_RIE(1/t)) dt, Gauss–Legendre in t."""
        q0 = 1 + 1 / kappa_v
        return self.immse_integral(
            qhat_v, lambda t: (q0 - self.mmse_rie(1 / t, np.full(t.size, kappa_v))) / 4, n)

    def free_entropy_numeric(self, alpha_v: float, kappa_v: float, delta_v: float, m_v: float) -> float:
        """Φ on the line q = Q0 − m, q̂ = 4α/(Δ + 2m) (up to a constant common to all branches)."""
        qv = 1 + 1 / kappa_v - m_v
        qh = float(self.kernel("channel")(np, None, alpha_v, delta_v, m_v)["qhat"])   # 4α/(Δ + 2m)
        k = self.kernel("free_entropy")
        return float(k(np, None, alpha_v, kappa_v, delta_v, qv, self.psi_den_numeric(qh, kappa_v))["Phi"])

    # ---- numerics -----------------------------------------------------------------------
    def mmse_rie_batch(self, delta_eff: np.ndarray, kappa_v: np.ndarray, n_nodes: int = 32,
                       tol: float | None = 1e-11) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(mmse_RIE, its quadrature error estimate, ok)`` per point, batched over the grid.

        ``μ`` = max |Im G|/π of the derived cubic (closed form, :func:`numerics.rie.density_batch`);
        support from the real roots of the edge polynomial (companion eigenvalues, batched);
        ``∫μ³`` by the adaptive angle rule (``n_nodes``/``2 n_nodes``, pieces halved until the two
        agree to ``tol``, or until a piece moves the mmse by less than ``tol/100``),
        :meth:`RIEStateEvolution.rie_integrals`. Δ_eff ≤ 1e-14 gives 0."""
        d_v, k_v = np.broadcast_arrays(*(np.asarray(v, float).reshape(-1) for v in (delta_eff, kappa_v)))
        out = np.zeros(d_v.shape)
        err = np.zeros(d_v.shape)
        ok = np.ones(d_v.shape, dtype=bool)
        bad_in = ~(np.isfinite(d_v) & np.isfinite(k_v) & (k_v > 0) & (d_v >= 0))
        out[bad_in], err[bad_in], ok[bad_in] = np.nan, np.nan, False
        rows = np.flatnonzero((d_v > 1e-14) & ~bad_in)
        if rows.size == 0:
            return out, err, ok
        kr, dr = k_v[rows], d_v[rows]
        w = (4 * np.pi**2 / 3) * dr**2          # ∂mmse/∂(∫μ³), from mmse = Δ − (4π²/3)Δ²∫μ³
        with np.errstate(all="ignore"):
            res, found = self.rie_integrals((kr,), dr, lambda mu, xs, idx: (mu * mu * mu)[..., None],
                                            w[:, None], n_nodes, tol)
            m_new = np.asarray(self.kernel("mmse_rie")(np, None, dr, res.values[:, 0])["m_new"], float)
        out[rows], err[rows], ok[rows] = self.accept(res, found, m_new, w * res.error)
        return out, err, ok

    def se_map(self, m_v: np.ndarray, a: np.ndarray, k: np.ndarray, dl: np.ndarray,
               n_nodes: int = 32, tol: float | None = 1e-11) -> np.ndarray:
        """The undamped SE map m ↦ mmse_RIE((Δ + 2m)/(4α)) (batched)."""
        ch = self.kernel("channel")(np, None, a, dl, m_v)
        return self.mmse_rie(ch["Delta_eff"], k, n_nodes=n_nodes, tol=tol)

    def random_states(self, n: int, rng: Any) -> np.ndarray:
        """``(n, 1)`` starts m ~ U(0.01, 4): the map m ↦ mmse_RIE((Δ + 2m)/(4α)) is defined for m ≥ 0."""
        return np.random.default_rng(rng).uniform(0.01, 4.0, size=(int(n), 1))

    def evaluate(self, params: Mapping[str, Any], backend: Backend, *, init: Any = None,
                 stability: bool = False, tol: float = 1e-11, maxiter: int = 3000) -> dict[str, Any]:
        """Iterate m ← mmse_RIE((Δ + 2m)/(4α)) from the uninformed m = 1/κ (or ``init``), all
        points (:meth:`RIEStateEvolution.solve_state_evolution`); ``stability``: dF/dm of the
        undamped map at the fixed point."""
        be = backend
        a, k, dl = (be.to_numpy(params[n]).astype(float) for n in ("alpha", "kappa", "delta"))
        n = a.size
        res, F, stab = self.solve_state_evolution((a, k, dl), self.start(init, (1 / k)[:, None]),
                                                  tol=tol, maxiter=maxiter, stability=stability)
        with np.errstate(all="ignore"):
            a_pr = np.asarray(self.kernel("observables")(np, None, a, k, dl, np.ones(n))["alpha_PR"],
                              float) * np.ones(n)
            # perfect recovery: at Δ = 0 the map has the exact fixed point m = 0 (mmse_RIE(0) = 0),
            # attracting iff α > α_PR (slope α_PR/α at 0, test_alpha_pr_is_low_noise_slope); the
            # iteration approaches it geometrically and its last iterates lie below the
            # quadrature's resolution, so the fixed point is reported exactly, not the iterate
            xl = res.x[:, 0]
            pr = (dl == 0) & (a > a_pr) & np.isfinite(xl) & (xl < 1e-9)
            conv = np.asarray(res.converged, bool) | pr
            status = np.where(pr, int(Status.OK), res.status).astype(np.int8)
            mm = np.where(pr, 0.0, np.where(conv, np.clip(xl, 0.0, None), np.nan))
            qh = self.kernel("channel")(np, None, a, dl, mm)["qhat"]          # +inf where m = Δ = 0
            obs = self.kernel("observables")(np, None, a, k, dl, qh)
            gen = np.where(pr, 0.0, np.where(conv, obs["gen_error"], np.nan))  # e_gen = m (derived)
        lead = self.leading(F, res, conv & ~pr, stab)
        if stab:
            lead[pr] = a_pr[pr] / a[pr]        # d/dm mmse_RIE(2m/(4α)) at 0 = 2α_PR/(2α)
        out = {"gen_error": gen, "mmse": mm,
               "qhat": qh, "alpha_pr": a_pr,
               "stability": lead,
               "converged": conv, "residual": np.where(pr, 0.0, res.residual),
               "iterations": res.iterations, "status": status}
        return {kk: be.asarray(v) for kk, v in out.items()}

    def evaluate_mp(self, point: Mapping[str, Any], dps: int = 50) -> dict[str, Any]:
        raise NotImplementedError("the SE needs the numeric density quadrature; the generated "
                                  "kernels are checked against their mpmath versions instead")


MODEL = ExtensiveWidthQuadratic
