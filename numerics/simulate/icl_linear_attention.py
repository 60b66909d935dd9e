r"""Finite-size simulator for in-context learning by linear attention.

Model of Lu, Letey, Zavatone-Veth, Maiti, Pehlevan, *Asymptotic theory of in-context
learning by linear attention* (arXiv:2405.11751); conventions of
``shared/specs/icl_linear_attention.md`` (the "spec"), §1 and §3. This module is the
*independent check* of the asymptotic theory: it uses no formula from the theory
(no Marchenko-Pastur law, no ε equation) and imports nothing from ``derive/``.

Model (spec §1)
---------------
Tokens :math:`x_i\sim\mathcal N(0,I_d/d)`, labels :math:`y_i=\langle x_i,w\rangle+\epsilon_i`,
:math:`\epsilon_i\sim\mathcal N(0,\rho)`, :math:`i\le\ell`, tasks uniform on the sphere
:math:`\|w\|=\sqrt d`. A context is summarised by (spec §1.2)

.. math:: h=(v,s),\qquad v=\frac d\ell\sum_{i\le\ell}y_ix_i,\qquad s=\frac1\ell\sum_{i\le\ell}y_i^2,

the query :math:`x_{\ell+1}\sim\mathcal N(0,I_d/d)`, target
:math:`y_{\ell+1}=\langle x_{\ell+1},w\rangle+\epsilon`, prediction
:math:`\hat y=x_{\ell+1}^\top\Gamma h`, :math:`\Gamma\in\mathbb R^{d\times(d+1)}`, i.e. a
linear model on the feature :math:`\phi=\mathrm{vec}(x_{\ell+1}h^\top)\in\mathbb R^p`,
:math:`p=d(d+1)` (row-major ``vec``: ``Gamma.reshape(p)``).

Sizes: :math:`\ell=\mathrm{round}(\alpha d)`; a finite pool has :math:`k=\mathrm{round}(\kappa d)`
tasks, each used :math:`n/k` times with :math:`n=k\max(1,\mathrm{round}(\tau d^2/k))` (as the
authors' fast simulator, spec §3); for κ = ∞ every context gets a fresh task and
:math:`n=\mathrm{round}(\tau d^2)` (then the "pool" is the set of these n tasks, k = n:
a pool of n i.i.d. tasks each used once *is* the fresh-task design).

Ridge (spec §1.3):
:math:`\Gamma^*=\arg\min\sum_\mu(y^\mu-\langle\Gamma,x^\mu h^{\mu\top}\rangle)^2+\frac nd\lambda\|\Gamma\|_F^2`.

Exact O(d) sampler of h given w (derivation)
--------------------------------------------
Fix :math:`w`, :math:`r=\|w\|`, :math:`u=w/r`. Decompose each token as
:math:`x_i=u\,a_i+x_i^\perp` with :math:`a_i=\langle u,x_i\rangle\sim\mathcal N(0,1/d)` and
:math:`x_i^\perp=P_\perp x_i\sim\mathcal N(0,P_\perp/d)`, :math:`P_\perp=I-uu^\top`. For an
isotropic Gaussian :math:`a_i` and :math:`x_i^\perp` are independent; both are independent
of the noise :math:`e_i`. Then :math:`y_i=r a_i+e_i` depends on :math:`(a_i,e_i)` only, and

.. math::
    \sum_i y_ix_i = u\sum_i y_ia_i + \sum_i y_ix_i^\perp,\qquad
    \sum_i y_ia_i = rS_{aa}+S_{ae},\qquad
    \sum_i y_i^2 = r^2S_{aa}+2rS_{ae}+S_{ee},

with :math:`S=\sum_{i\le\ell}(a_i,e_i)^\top(a_i,e_i)`, a 2×2 Wishart matrix
:math:`W_2(\ell,\Sigma)`, :math:`\Sigma=\mathrm{diag}(1/d,\rho)`. Conditionally on
:math:`(a,e)` (hence on y) the vector :math:`\sum_iy_ix_i^\perp` is a fixed linear
combination of the independent :math:`x_i^\perp`, so it is
:math:`\mathcal N\big(0,\tfrac{\sum_iy_i^2}{d}P_\perp\big)`; we draw it as
:math:`\sqrt{\sum_iy_i^2/d}\,P_\perp g` with :math:`g\sim\mathcal N(0,I_d)`.

*Bartlett decomposition* of :math:`W_2(\ell,I)`: :math:`L=\begin{pmatrix}c_1&0\\z&c_2\end{pmatrix}`
with :math:`c_1^2\sim\chi^2_\ell`, :math:`c_2^2\sim\chi^2_{\ell-1}`, :math:`z\sim\mathcal N(0,1)`
independent, :math:`LL^\top\sim W_2(\ell,I)`; then :math:`S=\Sigma^{1/2}LL^\top\Sigma^{1/2}`:

.. math:: S_{aa}=c_1^2/d,\qquad S_{ae}=\sqrt{\rho/d}\;c_1z,\qquad S_{ee}=\rho\,(z^2+c_2^2).

(Direct reading: :math:`S_{aa}=\|a\|^2`; given a, :math:`\langle a,e\rangle=\|a\|\sqrt\rho\,z`, and
:math:`\|e\|^2=\rho(z^2+\chi^2_{\ell-1})` with the remainder orthogonal to a.) ρ = 0 gives
:math:`S_{ae}=S_{ee}=0` with no special case; ℓ = 1 gives :math:`c_2=0`. Hence

.. math:: v=\frac d\ell\Big(u\,(rS_{aa}+S_{ae})+\sqrt{\tfrac{\textstyle\sum y_i^2}{d}}\,P_\perp g\Big),\qquad
          s=\frac1\ell\sum_iy_i^2 .

Cost: 3 scalar variates and d normals per context. :func:`sample_h_direct` draws the ℓ×d
tokens instead (for checks). Moments (spec §1.5), with :math:`\|w\|^2=d`:
:math:`\mathbb E[v|w]=w`, :math:`\mathbb E[s|w]=1+\rho`,
:math:`\mathbb E[vv^\top|w]=(1+\frac1\ell)ww^\top+\frac{1+\rho}{\alpha}I`,
:math:`\mathbb E[vs|w]=(1+\rho)(1+\frac2\ell)w`, :math:`\mathbb E[s^2|w]=(1+\rho)^2(1+\frac2\ell)`
(α = ℓ/d exactly).

Randomness is drawn on the host with NumPy (identical draws on every backend) and moved
to the array backend ``xp`` (NumPy or CuPy) where all linear algebra happens.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from numbers import Integral, Real
from typing import Any, Callable

import numpy as np

from numerics.backend import Backend, get_backend

__all__ = [
    "ICLSimulation",
    "RidgeSolution",
    "CGNotConvergedError",
    "simulate",
    "problem_sizes",
    "sample_tasks",
    "sample_h_fast",
    "sample_h_direct",
    "sample_contexts",
    "solve_ridge",
    "ridge_normal_residual",
    "exact_test_error",
    "mc_test_error",
    "train_mse",
]

SOLVERS = ("auto", "primal", "dual", "pcg", "dual_cg")
TEST_ERRORS = ("both", "mc", "exact")
_CHUNK_ELEMS = 1 << 22  # ~32 MB of float64 per sampling / Gram chunk


class CGNotConvergedError(RuntimeError):
    """Preconditioned CG did not reach the requested relative residual."""


# --------------------------------------------------------------------------- sizes

def problem_sizes(d: int, tau: float, alpha: float, kappa: float) -> dict[str, int]:
    """Integer sizes (spec §1.3-1.4, §3): ell, k, n, p.

    ``ell = round(alpha d)``; finite κ: ``k = round(kappa d)``,
    ``n = k * max(1, round(tau d^2 / k))``; κ = ∞: ``n = max(1, round(tau d^2))`` and
    ``k = n`` (one fresh task per context). ``p = d(d+1)``.
    """
    ell = int(round(alpha * d))
    if ell < 1:
        raise ValueError(f"alpha={alpha!r} gives context length round(alpha*d)={ell} < 1 at d={d}; "
                         "need alpha*d >= 0.5")
    if math.isinf(kappa):
        n = max(1, int(round(tau * d * d)))
        k = n
    else:
        k = int(round(kappa * d))
        if k < 1:
            raise ValueError(f"kappa={kappa!r} gives round(kappa*d)={k} < 1 pretraining tasks at d={d}; "
                             "need kappa*d >= 0.5")
        n = k * max(1, int(round(tau * d * d / k)))
    return {"d": d, "ell": ell, "k": k, "n": n, "p": d * (d + 1)}


# --------------------------------------------------------------------------- sampling

def sample_tasks(rng: np.random.Generator, m: int, d: int) -> np.ndarray:
    """m tasks uniform on the sphere of radius sqrt(d) (spec §1.1); shape (m, d)."""
    g = rng.standard_normal((m, d))
    return g * (math.sqrt(d) / np.linalg.norm(g, axis=1, keepdims=True))


def sample_h_fast(rng: np.random.Generator, W: np.ndarray, ell: int, rho: float) -> np.ndarray:
    """Exact draw of h = (v, s) given each row of W, O(d) per context (module docstring).

    Returns H of shape (m, d+1): ``H[:, :d] = v``, ``H[:, d] = s``.
    """
    m, d = W.shape
    r = np.linalg.norm(W, axis=1)
    u = W / r[:, None]
    c1sq = rng.chisquare(ell, size=m)
    z = rng.standard_normal(m)
    c2sq = rng.chisquare(ell - 1, size=m) if ell > 1 else np.zeros(m)
    s_aa = c1sq / d
    s_ae = math.sqrt(rho / d) * np.sqrt(c1sq) * z
    s_ee = rho * (z * z + c2sq)
    s_ya = r * s_aa + s_ae                      # sum_i y_i a_i
    s_yy = r * r * s_aa + 2.0 * r * s_ae + s_ee  # sum_i y_i^2
    g = rng.standard_normal((m, d))
    g -= u * np.einsum("ij,ij->i", u, g)[:, None]  # P_perp g
    H = np.empty((m, d + 1))
    H[:, :d] = (d / ell) * (u * s_ya[:, None] + np.sqrt(s_yy / d)[:, None] * g)
    H[:, d] = s_yy / ell
    return H


def sample_h_direct(rng: np.random.Generator, W: np.ndarray, ell: int, rho: float) -> np.ndarray:
    """h = (v, s) from explicitly drawn tokens (ℓ×d per context; for small checks)."""
    m, d = W.shape
    out = np.empty((m, d + 1))
    step = max(1, _CHUNK_ELEMS // (ell * d))
    for a in range(0, m, step):
        Wc = W[a:a + step]
        Xc = rng.standard_normal((Wc.shape[0], ell, d)) / math.sqrt(d)
        yc = np.einsum("mld,md->ml", Xc, Wc) + math.sqrt(rho) * rng.standard_normal((Wc.shape[0], ell))
        out[a:a + step, :d] = (d / ell) * np.einsum("ml,mld->md", yc, Xc)
        out[a:a + step, d] = np.mean(yc * yc, axis=1)
    return out


def sample_contexts(rng: np.random.Generator, W: np.ndarray, ell: int, rho: float,
                    method: str = "fast") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Contexts for the tasks in the rows of W: (queries X (m,d), summaries H (m,d+1), targets y (m,)).

    ``X ~ N(0, I/d)``, ``y = X w + sqrt(rho) z`` (spec §1.1); H from :func:`sample_h_fast`
    (``method="fast"``) or :func:`sample_h_direct` (``"direct"``).
    """
    m, d = W.shape
    if method == "fast":
        H = sample_h_fast(rng, W, ell, rho)
    elif method == "direct":
        H = sample_h_direct(rng, W, ell, rho)
    else:
        raise ValueError(f"method={method!r}; valid: 'fast', 'direct'")
    X = rng.standard_normal((m, d)) / math.sqrt(d)
    y = np.einsum("md,md->m", X, W) + math.sqrt(rho) * rng.standard_normal(m)
    return X, H, y


# --------------------------------------------------------------------------- ridge

@dataclass(frozen=True)
class RidgeSolution:
    """Ridge fit Γ (backend array, d×(d+1)) and diagnostics.

    ``residual`` is the relative residual of the primal normal equations
    ``||Φᵀy - (ΦᵀΦ + (n/d)λ)vecΓ|| / ||Φᵀy||`` recomputed matrix-free for every solver;
    ``iterations`` is the PCG iteration count (0 for direct solvers).
    """

    gamma: Any
    solver: str
    iterations: int
    residual: float
    seconds: float


def _phi_matvec(xp: Any, X: Any, H: Any, G: Any) -> Any:
    """Φ vec(G) = rowsum((X G) ∘ H), i.e. x_μᵀ G h_μ for every μ."""
    return xp.sum((X @ G) * H, axis=1)


def _phi_rmatvec(xp: Any, X: Any, H: Any, r: Any) -> Any:
    """Φᵀ r = Xᵀ diag(r) H (a d×(d+1) matrix)."""
    return X.T @ (r[:, None] * H)


def ridge_normal_residual(xp: Any, X: Any, H: Any, y: Any, lam: float, G: Any) -> float:
    """Relative residual of (ΦᵀΦ + (n/d)λ I) vecG = Φᵀy (Frobenius norms)."""
    n, d = X.shape
    b = _phi_rmatvec(xp, X, H, y)
    res = b - _phi_rmatvec(xp, X, H, _phi_matvec(xp, X, H, G)) - (n / d) * lam * G
    nb = float(xp.linalg.norm(b))
    return float(xp.linalg.norm(res)) / (nb if nb > 0 else 1.0)


def _spd_solve(backend: Backend, A: Any, b: Any) -> Any:
    """Solve A x = b for symmetric positive (semi)definite A (Cholesky on NumPy, LU fallback)."""
    if backend.name == "numpy":
        import scipy.linalg

        try:
            return scipy.linalg.solve(A, b, assume_a="pos")
        except (np.linalg.LinAlgError, scipy.linalg.LinAlgError):
            return np.linalg.solve(A, b)
    return backend.xp.linalg.solve(A, b)


def _solve_primal(backend: Backend, X: Any, H: Any, y: Any, lam: float) -> Any:
    """Dense normal equations (ΦᵀΦ + (n/d)λ I) vecΓ = Φᵀy, Gram accumulated in row chunks."""
    xp = backend.xp
    n, d = X.shape
    p = d * (d + 1)
    gram = xp.zeros((p, p))
    rhs = xp.zeros(p)
    step = max(1, _CHUNK_ELEMS // p)
    for a in range(0, n, step):
        Phi = (X[a:a + step, :, None] * H[a:a + step, None, :]).reshape(-1, p)
        gram += Phi.T @ Phi
        rhs += Phi.T @ y[a:a + step]
    idx = xp.arange(p)
    gram[idx, idx] += (n / d) * lam
    return _spd_solve(backend, gram, rhs).reshape(d, d + 1)


def _solve_dual(backend: Backend, X: Any, H: Any, y: Any, lam: float) -> Any:
    """Kernel form Γ = Φᵀ(K + (n/d)λ I)⁻¹y, K = (XXᵀ)∘(HHᵀ); λ = 0 gives the min-norm interpolant."""
    xp = backend.xp
    n, d = X.shape
    K = (X @ X.T) * (H @ H.T)
    idx = xp.arange(n)
    K[idx, idx] += (n / d) * lam
    c = _spd_solve(backend, K, y)
    return _phi_rmatvec(xp, X, H, c)


def _pcg(xp: Any, op: Callable[[Any], Any], precond: Callable[[Any], Any], b: Any,
         dot: Callable[[Any, Any], float], *, rtol: float, maxiter: int) -> tuple[Any, int, float]:
    """Preconditioned conjugate gradients for ``op(x) = b`` (``op`` symmetric positive
    definite in the inner product ``dot``; ``precond(r)`` applies M⁻¹), from x = 0.

    Stops when the recursive residual ‖r‖/‖b‖ <= ``rtol`` or after ``maxiter`` iterations;
    returns (x, iterations, last relative residual). b = 0 returns (0, 0, 0.0).
    """
    nb = float(xp.linalg.norm(b))
    x = xp.zeros_like(b)
    if nb == 0.0:
        return x, 0, 0.0
    r = b.copy()
    z = precond(r)
    pdir = z.copy()
    rz = dot(r, z)
    rel = 1.0
    it = 0
    while it < maxiter:
        ap = op(pdir)
        step = rz / dot(pdir, ap)
        x += step * pdir
        r -= step * ap
        it += 1
        rel = float(xp.linalg.norm(r)) / nb
        if rel <= rtol:
            break
        z = precond(r)
        rz_new = dot(r, z)
        pdir = z + (rz_new / rz) * pdir
        rz = rz_new
    return x, it, rel


def _solve_pcg(backend: Backend, X: Any, H: Any, y: Any, lam: float, *, rtol: float,
               maxiter: int) -> tuple[Any, int, float]:
    """Matrix-free preconditioned CG on the primal normal equations.

    Operator A(G) = Xᵀdiag(Φ vecG)H + (n/d)λG. Preconditioner: A ≈ I_d ⊗ (n/d)E[hhᵀ] (x ⟂ h,
    E xxᵀ = I/d), estimated as M(G) = G C with C = HᵀH/d + (n/d)λ I (+ a tiny jitter), applied
    as right-multiplication by C⁻¹. Returns (Γ, iterations, last recursive relative residual).
    """
    xp = backend.xp
    n, d = X.shape
    c = (n / d) * lam
    C = (H.T @ H) / d
    jitter = 1e-12 * float(xp.trace(C)) / (d + 1)
    idx = xp.arange(d + 1)
    C[idx, idx] += c + jitter
    Cinv = xp.linalg.inv(C)
    Cinv = 0.5 * (Cinv + Cinv.T)

    def op(G: Any) -> Any:
        return _phi_rmatvec(xp, X, H, _phi_matvec(xp, X, H, G)) + c * G

    return _pcg(xp, op, lambda R: R @ Cinv, _phi_rmatvec(xp, X, H, y),
                lambda a, b: float(xp.sum(a * b)), rtol=rtol, maxiter=maxiter)


def _solve_dual_cg(backend: Backend, X: Any, H: Any, y: Any, lam: float, *, rtol: float,
                   maxiter: int) -> tuple[Any, int, float]:
    """Matrix-free Jacobi-preconditioned CG on the dual system (K + (n/d)λ I)c = y, Γ = Φᵀc.

    K c = Φ(Φᵀc) costs two n×d×(d+1) products; diag K = ‖x_μ‖²‖h_μ‖². Starting from c = 0 the
    iterates stay in range(Φᵀ) for Γ, so λ = 0 (n < p) converges to the min-norm interpolant.
    """
    xp = backend.xp
    n, d = X.shape
    cr = (n / d) * lam
    dinv = 1.0 / (xp.sum(X * X, axis=1) * xp.sum(H * H, axis=1) + cr)

    def op(c: Any) -> Any:
        return _phi_matvec(xp, X, H, _phi_rmatvec(xp, X, H, c)) + cr * c

    c, it, rel = _pcg(xp, op, lambda r: dinv * r, y, lambda a, b: float(a @ b), rtol=rtol,
                      maxiter=maxiter)
    return _phi_rmatvec(xp, X, H, c), it, rel


def solve_ridge(X: Any, H: Any, y: Any, lam: float, *, solver: str = "auto",
                backend: str | Backend = "numpy", rtol: float = 1e-10, maxiter: int = 5000,
                dense_max_p: int = 2500, dual_max_n: int = 10000) -> RidgeSolution:
    r"""Γ* = argmin Σ_μ (y_μ - x_μᵀΓh_μ)² + (n/d)λ‖Γ‖_F² (spec §1.3).

    ``solver``:

    * ``"primal"``: dense normal equations (ΦᵀΦ + (n/d)λI)vecΓ = Φᵀy, p×p Gram;
    * ``"dual"``: dense kernel form Γ = Φᵀ(K + (n/d)λI)⁻¹y, K = (XXᵀ)∘(HHᵀ) (n×n);
    * ``"pcg"``: matrix-free preconditioned CG on the primal normal equations
      (preconditioner I_d ⊗ (HᵀH/d + (n/d)λ), see :func:`_solve_pcg`);
    * ``"dual_cg"``: matrix-free Jacobi-preconditioned CG on the dual system;
    * ``"auto"``: primal if p ≤ ``dense_max_p``; otherwise, if n < p, dual when
      n ≤ ``dual_max_n`` else dual_cg; if n ≥ p, pcg.

    λ = 0 with n < p (interpolation): the primal system is singular; auto uses the dual
    (min-norm interpolant) and ``"primal"``/``"pcg"`` raise ValueError. λ = 0 with n > p:
    the dual system is singular and ``"dual"``/``"dual_cg"`` raise ValueError.
    The CG solvers raise :class:`CGNotConvergedError` if the recursive relative residual is
    still above ``rtol`` after ``maxiter`` iterations, or if the explicitly recomputed
    normal-equation residual exceeds ``1e3·rtol``.
    X (n×d), H (n×(d+1)), y (n,) must already be ``backend`` arrays.
    """
    be = get_backend(backend)
    xp = be.xp
    if solver not in SOLVERS:
        raise ValueError(f"solver={solver!r}; valid solvers are {SOLVERS}")
    n, d = X.shape
    p = d * (d + 1)
    if solver == "auto":
        if p <= dense_max_p and not (lam == 0 and n < p):
            solver = "primal"
        elif n < p or (lam == 0 and n == p):
            solver = "dual" if n <= dual_max_n else "dual_cg"
        else:
            solver = "pcg"
    if lam == 0 and n < p and solver in ("primal", "pcg"):
        raise ValueError(f"lam=0 with n={n} < p={p}: the primal normal equations are singular; "
                         "use solver='dual' or 'dual_cg' (min-norm interpolant), or lam > 0")
    if lam == 0 and n > p and solver in ("dual", "dual_cg"):
        raise ValueError(f"lam=0 with n={n} > p={p}: the kernel matrix is singular; "
                         "use solver='primal' or 'pcg', or lam > 0")
    t0 = time.perf_counter()
    iters = 0
    rel = 0.0
    if solver == "primal":
        G = _solve_primal(be, X, H, y, lam)
    elif solver == "dual":
        G = _solve_dual(be, X, H, y, lam)
    elif solver == "pcg":
        G, iters, rel = _solve_pcg(be, X, H, y, lam, rtol=rtol, maxiter=maxiter)
    else:
        G, iters, rel = _solve_dual_cg(be, X, H, y, lam, rtol=rtol, maxiter=maxiter)
    be.synchronize()
    secs = time.perf_counter() - t0
    res = ridge_normal_residual(xp, X, H, y, lam, G)
    if solver in ("pcg", "dual_cg") and (not rel <= rtol or not res <= 1e3 * rtol):
        raise CGNotConvergedError(
            f"{solver} did not converge: {iters} iterations (maxiter={maxiter}), recursive "
            f"relative residual {rel:.3e} (rtol={rtol:.1e}), recomputed normal-equation residual "
            f"{res:.3e} (n={n}, p={p}, lam={lam}); raise maxiter or use a dense solver")
    return RidgeSolution(gamma=G, solver=solver, iterations=iters, residual=res, seconds=secs)


# --------------------------------------------------------------------------- errors

def exact_test_error(gamma: Any, mu: Any, R: Any, ell: int, rho: float,
                     backend: str | Backend = "numpy") -> float:
    r"""Exact test error of a fixed Γ for fresh Gaussian contexts (spec §1.5).

    e(Γ) = 1+ρ − (2/d) tr(ΓA) + (1/d) tr(ΓBΓᵀ), A = [R; (1+ρ)μᵀ],
    B = [[(1+ρ)/α I + (1+1/ℓ)R, (1+ρ)(1+2/ℓ)μ], [·ᵀ, (1+ρ)²(1+2/ℓ)]], α = ℓ/d, for test
    tasks with E w = μ, E wwᵀ = R and ‖w‖² = d. ICL: μ = 0, R = I; IDG: pool mean / second moment.
    """
    xp = get_backend(backend).xp
    d = gamma.shape[0]
    mu = xp.asarray(mu, dtype=xp.float64).reshape(d)
    R = xp.asarray(R, dtype=xp.float64)
    a1 = 1.0 + rho
    A = xp.concatenate([R, a1 * mu[None, :]], axis=0)
    B = xp.empty((d + 1, d + 1))
    B[:d, :d] = (1.0 + 1.0 / ell) * R + (a1 * d / ell) * xp.eye(d)
    B[:d, d] = a1 * (1.0 + 2.0 / ell) * mu
    B[d, :d] = B[:d, d]
    B[d, d] = a1 * a1 * (1.0 + 2.0 / ell)
    return float(a1 - (2.0 / d) * xp.sum(gamma * A.T) + (1.0 / d) * xp.sum((gamma @ B) * gamma))


def mc_test_error(gamma: Any, rng: np.random.Generator, n_test: int, ell: int, rho: float, *,
                  pool: np.ndarray | None = None, backend: str | Backend = "numpy",
                  method: str = "fast") -> tuple[float, float]:
    """Monte-Carlo test error over ``n_test`` fresh contexts: (mean squared error, its standard error).

    Test tasks are fresh (uniform on the sphere; e_ICL) when ``pool`` is None, else drawn
    uniformly from the rows of ``pool`` (e_IDG). Contexts and queries are always fresh.
    """
    be = get_backend(backend)
    xp = be.xp
    d = gamma.shape[0]
    step = max(1, _CHUNK_ELEMS // (2 * d + 2))
    tot = 0.0
    tot2 = 0.0
    for a in range(0, n_test, step):
        m = min(step, n_test - a)
        W = sample_tasks(rng, m, d) if pool is None else pool[rng.integers(0, pool.shape[0], size=m)]
        X, H, y = sample_contexts(rng, W, ell, rho, method=method)
        X, H, y = be.asarray(X), be.asarray(H), be.asarray(y)
        sq = (y - _phi_matvec(xp, X, H, gamma)) ** 2
        tot += float(xp.sum(sq))
        tot2 += float(xp.sum(sq * sq))
    mean = tot / n_test
    var = max(tot2 / n_test - mean * mean, 0.0) * n_test / max(n_test - 1, 1)
    return mean, math.sqrt(var / n_test)


def train_mse(X: Any, H: Any, y: Any, gamma: Any, backend: str | Backend = "numpy") -> float:
    """Training mean squared residual (1/n)Σ(y_μ − x_μᵀΓh_μ)², without the penalty."""
    xp = get_backend(backend).xp
    return float(xp.mean((y - _phi_matvec(xp, X, H, gamma)) ** 2))


# --------------------------------------------------------------------------- driver

@dataclass(frozen=True)
class ICLSimulation:
    """Result of :func:`simulate`: inputs, integer sizes, per-trial errors and diagnostics.

    Per-trial arrays (length ``trials``): ``e_icl``/``e_idg`` (Monte Carlo, n_test contexts)
    with standard errors ``e_icl_mc_se``/``e_idg_mc_se``; ``e_icl_exact``/``e_idg_exact``
    (spec §1.5 formula for the fitted Γ); ``e_train`` (training MSE without penalty);
    ``cg_iterations`` (0 unless PCG), ``cg_residual`` (relative residual of the normal
    equations, every solver), ``seconds`` (wall time per trial), ``solve_seconds``.
    Unrequested errors are NaN. ``tau_eff = n/(d(d+1))`` (spec §2.5, §4). ``solver`` holds
    the solver used in each trial. ``seed_entropy`` is the SeedSequence entropy actually used
    (equals ``seed`` when given; with ``seed=None`` pass it back as ``seed`` to reproduce).
    """

    d: int
    tau: float
    alpha: float
    kappa: float
    rho: float
    lam: float
    trials: int
    seed: int | None
    n_test: int
    backend: str
    test_error: str
    ell: int
    k: int
    n: int
    p: int
    tau_eff: float
    solver: tuple[str, ...]
    e_icl: np.ndarray
    e_idg: np.ndarray
    e_train: np.ndarray
    e_icl_mc_se: np.ndarray
    e_idg_mc_se: np.ndarray
    e_icl_exact: np.ndarray
    e_idg_exact: np.ndarray
    cg_iterations: np.ndarray
    cg_residual: np.ndarray
    seconds: np.ndarray
    solve_seconds: np.ndarray
    seed_entropy: int = field(default=0)

    _ARRAYS = ("e_icl", "e_idg", "e_train", "e_icl_mc_se", "e_idg_mc_se", "e_icl_exact",
               "e_idg_exact", "cg_iterations", "cg_residual", "seconds", "solve_seconds")

    def _arr(self, name: str) -> np.ndarray:
        if name not in self._ARRAYS:
            raise ValueError(f"unknown quantity {name!r}; valid: {self._ARRAYS}")
        return np.asarray(getattr(self, name), dtype=float)

    def mean(self, name: str) -> float:
        """Mean over trials of a per-trial quantity."""
        return float(np.mean(self._arr(name)))

    def sem(self, name: str) -> float:
        """Standard error over trials, std(ddof=1)/sqrt(trials); NaN for one trial."""
        a = self._arr(name)
        if a.size < 2:
            return float("nan")
        return float(np.std(a, ddof=1) / math.sqrt(a.size))

    def summary(self) -> dict[str, Any]:
        """Plain dict: inputs, sizes, mean/sem of every per-trial quantity, solvers used."""
        out: dict[str, Any] = {
            k: getattr(self, k)
            for k in ("d", "tau", "alpha", "kappa", "rho", "lam", "trials", "seed", "n_test",
                      "backend", "test_error", "ell", "k", "n", "p", "tau_eff", "seed_entropy")
        }
        out["solver"] = sorted(set(self.solver))
        for name in self._ARRAYS:
            out[name] = {"mean": self.mean(name), "sem": self.sem(name)}
        return out


def _check_real(name: str, value: Any, *, low: float, strict: bool, allow_inf: bool = False) -> float:
    rng_txt = f"{'>' if strict else '>='} {low}" + (" (inf allowed)" if allow_inf else ", finite")
    if isinstance(value, bool) or not isinstance(value, Real):
        raise ValueError(f"{name}={value!r} must be a real number {rng_txt}")
    v = float(value)
    if math.isnan(v) or (math.isinf(v) and not (allow_inf and v > 0)) or (v <= low if strict else v < low):
        raise ValueError(f"{name}={value!r} is out of range; valid: {name} {rng_txt}")
    return v


def _check_int(name: str, value: Any, *, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, Integral):
        raise ValueError(f"{name}={value!r} must be an integer >= {low}")
    if int(value) < low:
        raise ValueError(f"{name}={value!r} is out of range; valid: integer {name} >= {low}")
    return int(value)


def simulate(*, d: int, tau: float, alpha: float, kappa: float, rho: float, lam: float,
             trials: int = 1, seed: int | None = 0, n_test: int = 4096,
             solver: str = "auto", backend: str | Backend = "numpy",
             test_error: str = "both", rtol: float = 1e-10, maxiter: int = 5000) -> ICLSimulation:
    """Finite-d simulation of pretraining + test of the linear-attention ICL model.

    Per trial (seed ``SeedSequence(seed).spawn(trials)[t]``): draw the task pool (k = κd tasks
    on the sphere, or a fresh task per context for κ = ∞), n pretraining contexts with the
    exact O(d) sampler, fit Γ* by ridge (spec §1.3, regulariser (n/d)λ), then measure
    e_ICL (fresh tasks) and e_IDG (tasks uniform over the pool) by Monte Carlo over
    ``n_test`` fresh contexts and by the exact formula of spec §1.5, plus the training MSE.
    ``test_error``: ``"both"``, ``"mc"`` or ``"exact"``. See :func:`solve_ridge` for ``solver``.
    """
    d = _check_int("d", d, low=2)
    tau = _check_real("tau", tau, low=0.0, strict=True)
    alpha = _check_real("alpha", alpha, low=0.0, strict=True)
    kappa = _check_real("kappa", kappa, low=0.0, strict=True, allow_inf=True)
    rho = _check_real("rho", rho, low=0.0, strict=False)
    lam = _check_real("lam", lam, low=0.0, strict=False)
    trials = _check_int("trials", trials, low=1)
    if seed is not None:
        seed = _check_int("seed", seed, low=0)
    if test_error not in TEST_ERRORS:
        raise ValueError(f"test_error={test_error!r}; valid: {TEST_ERRORS}")
    do_mc = test_error in ("both", "mc")
    do_exact = test_error in ("both", "exact")
    n_test = _check_int("n_test", n_test, low=2) if do_mc else int(n_test)
    if solver not in SOLVERS:
        raise ValueError(f"solver={solver!r}; valid solvers are {SOLVERS}")
    be = get_backend(backend)
    xp = be.xp
    sz = problem_sizes(d, tau, alpha, kappa)
    ell, k, n, p = sz["ell"], sz["k"], sz["n"], sz["p"]

    root = np.random.SeedSequence(seed)
    children = root.spawn(trials)
    nan = float("nan")
    rec: dict[str, list[float]] = {name: [] for name in ICLSimulation._ARRAYS}
    solvers_used: list[str] = []
    for t in range(trials):
        t0 = time.perf_counter()
        ss_pool, ss_train, ss_icl, ss_idg = children[t].spawn(4)
        rng_pool = np.random.default_rng(ss_pool)
        rng_train = np.random.default_rng(ss_train)
        pool = sample_tasks(rng_pool, k, d)  # κ = ∞: one task per context (k = n)
        reps = n // k
        X = xp.empty((n, d))
        H = xp.empty((n, d + 1))
        y = xp.empty(n)
        step = max(1, _CHUNK_ELEMS // (2 * d + 2))
        for a in range(0, n, step):
            b = min(n, a + step)
            W = pool[np.arange(a, b) // reps]
            Xc, Hc, yc = sample_contexts(rng_train, W, ell, rho)
            X[a:b] = be.asarray(Xc)
            H[a:b] = be.asarray(Hc)
            y[a:b] = be.asarray(yc)
        sol = solve_ridge(X, H, y, lam, solver=solver, backend=be, rtol=rtol, maxiter=maxiter)
        G = sol.gamma
        rec["e_train"].append(train_mse(X, H, y, G, be))
        del X, H, y
        if do_exact:
            mu_pool = pool.mean(axis=0)
            R_pool = (pool.T @ pool) / pool.shape[0]
            rec["e_icl_exact"].append(exact_test_error(G, np.zeros(d), np.eye(d), ell, rho, be))
            rec["e_idg_exact"].append(exact_test_error(G, mu_pool, R_pool, ell, rho, be))
        else:
            rec["e_icl_exact"].append(nan)
            rec["e_idg_exact"].append(nan)
        if do_mc:
            m_icl, se_icl = mc_test_error(G, np.random.default_rng(ss_icl), n_test, ell, rho, backend=be)
            m_idg, se_idg = mc_test_error(G, np.random.default_rng(ss_idg), n_test, ell, rho,
                                          pool=pool, backend=be)
        else:
            m_icl = se_icl = m_idg = se_idg = nan
        rec["e_icl"].append(m_icl)
        rec["e_icl_mc_se"].append(se_icl)
        rec["e_idg"].append(m_idg)
        rec["e_idg_mc_se"].append(se_idg)
        rec["cg_iterations"].append(sol.iterations)
        rec["cg_residual"].append(sol.residual)
        rec["solve_seconds"].append(sol.seconds)
        solvers_used.append(sol.solver)
        be.synchronize()
        rec["seconds"].append(time.perf_counter() - t0)

    arrays = {name: np.asarray(v, dtype=float) for name, v in rec.items()}
    arrays["cg_iterations"] = arrays["cg_iterations"].astype(int)
    entropy = root.entropy if isinstance(root.entropy, int) else 0
    return ICLSimulation(
        d=d, tau=tau, alpha=alpha, kappa=kappa, rho=rho, lam=lam, trials=trials, seed=seed,
        n_test=n_test, backend=be.name, test_error=test_error, ell=ell, k=k, n=n, p=p,
        tau_eff=n / p, solver=tuple(solvers_used), seed_entropy=entropy, **arrays,
    )
