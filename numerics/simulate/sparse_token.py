"""Finite-size experiments for sparse-token classification (Barnfield, Cui, Lu).

Written from the model's definition only (spec §1, §3.1), independently of the symbolic
layer: sample the data, run the actual gradient steps of the attention classifier (the
softmax Jacobian is computed at the current query, not assumed), measure overlaps; estimate
oracle errors by Monte Carlo; test linear separability by a linear-programming feasibility
problem (HiGHS).

Data: ``X = theta * y+ * v xi^T + Z`` with ``Z`` i.i.d. N(0, 1), ``v`` a uniformly random
R-subset of the L positions, ``P(y = +1) = pi``, ``xi = e_1`` (rotation invariance).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
from scipy.optimize import linprog
from scipy.special import expit

__all__ = ["simulate_readout", "ReadoutResult", "fit_readout", "sample", "loss_derivative", "simulate_alignment", "AlignmentResult",
           "oracle_errors_mc", "separable", "separability_scan", "separable_nnls",
           "critical_alpha", "critical_alpha_scan", "pooled_features",
           "attention_features", "vectorised_features"]


def sample(n: int, d: int, L: int, R: int, pi: float, theta: float,
           rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``n`` samples: ``X`` of shape (n, L, d) (signal along e_1) and labels ``y`` in {+1, -1}."""
    if not 1 <= R <= L:
        raise ValueError(f"R = {R} must be in [1, L = {L}]")
    y = np.where(rng.random(n) < pi, 1.0, -1.0)
    X = rng.standard_normal((n, L, d))
    pos = np.flatnonzero(y > 0)
    if pos.size:
        # a uniformly random R-subset per positive sample
        idx = np.argsort(rng.random((pos.size, L)), axis=1)[:, :R]
        X[pos[:, None], idx, 0] += theta
    return X, y


def loss_derivative(loss: str) -> Callable[[np.ndarray, Any], np.ndarray]:
    """d loss(y, z) / dz: logistic ``log(1 + e^{-yz})`` or square ``(y - z)^2 / 2``."""
    if loss == "logistic":
        return lambda yy, zz: -yy * expit(-yy * zz)
    if loss == "square":
        return lambda yy, zz: zz - yy
    raise ValueError(f"loss must be 'logistic' or 'square', got {loss!r}")


def _softmax(s: np.ndarray) -> np.ndarray:
    s = s - s.max(axis=-1, keepdims=True)
    e = np.exp(s)
    return e / e.sum(axis=-1, keepdims=True)


@dataclass
class AlignmentResult:
    """Overlaps after the readout step (w1) and the query step (q2), one trial."""

    m1: float
    w1_norm: float
    cos_w: float
    q_xi: float
    q_norm: float
    s_q: float


def simulate_alignment(*, d: int, alpha0: float, L: int, R: int, pi: float, theta: float,
                       beta: float, eta_w: float, eta_q: float, b1: float, loss: str = "logistic",
                       seed: int = 0, chunk: int = 2000) -> AlignmentResult:
    """Steps 2–3 of the protocol (§3.1) on ``n0 = round(alpha0 d)`` samples.

    Step 2: ``w1 = -eta_w * grad_w (1/n0) sum loss(y, w^T f_0(X) + b1)`` at ``w = 0, q = 0``.
    Step 3: ``q2 = -eta_q * grad_q (1/n0) sum loss(y, w1^T f_q(X) + b1)`` at ``q = 0``, with
    ``grad_q [w^T X^T a(q)] = beta X^T (diag a - a a^T) X w``, ``a = softmax(beta X q)``.
    Samples are generated in chunks from per-chunk seeds and regenerated for step 3, so
    memory stays at ``chunk * L * d``.
    """
    n0 = int(round(alpha0 * d))
    dl = loss_derivative(loss)
    starts = list(range(0, n0, chunk))

    def chunk_data(k: int, s: int) -> tuple[np.ndarray, np.ndarray]:
        rng = np.random.default_rng([seed, k])
        return sample(min(chunk, n0 - s), d, L, R, pi, theta, rng)

    q = np.zeros(d)
    gw = np.zeros(d)
    for k, s in enumerate(starts):
        X, yv = chunk_data(k, s)
        a = _softmax(beta * X @ q)  # uniform at q = 0
        f = np.einsum("nl,nld->nd", a, X)
        gw += (dl(yv, b1)[:, None] * f).sum(axis=0)
    w1 = -eta_w * gw / n0
    gq = np.zeros(d)
    for k, s in enumerate(starts):
        X, yv = chunk_data(k, s)
        a = _softmax(beta * X @ q)
        f = np.einsum("nl,nld->nd", a, X)
        h = dl(yv, f @ w1 + b1)
        Xw = X @ w1  # (n, L)
        J = a * Xw - a * (a * Xw).sum(axis=1, keepdims=True)  # (diag a - a a^T) X w
        gq += beta * np.einsum("n,nl,nld->d", h, J, X)
    q2 = -eta_q * gq / n0
    m1 = float(w1[0])
    wn = float(np.linalg.norm(w1))
    qn = float(np.linalg.norm(q2))
    return AlignmentResult(m1=m1, w1_norm=wn, cos_w=m1 / wn, q_xi=float(q2[0]), q_norm=qn,
                           s_q=float(q2[0]) / qn)


# ----------------------------------------------------------------------------- oracles
def _scores(n: int, L: int, R: int, theta: float, positive: bool,
            rng: np.random.Generator) -> np.ndarray:
    """Token projections ``s_l = x_l^T xi`` (all that an oracle with q, w along xi sees)."""
    s = rng.standard_normal((n, L))
    if positive:
        idx = np.argsort(rng.random((n, L)), axis=1)[:, :R]
        np.put_along_axis(s, idx, np.take_along_axis(s, idx, axis=1) + theta, axis=1)
    return s


def _best_threshold_error(sp_: np.ndarray, sn: np.ndarray, pi: float) -> float:
    """Smallest ``pi P(T+ <= b) + (1 - pi) P(T- > b)`` over thresholds b (empirical)."""
    allv = np.concatenate([sp_, sn])
    lab = np.concatenate([np.ones(sp_.size), np.zeros(sn.size)])
    order = np.argsort(allv)
    lab = lab[order]
    # threshold just above the k-th smallest: positives below, negatives above
    fn = np.concatenate([[0.0], np.cumsum(lab)]) / sp_.size
    fp = 1.0 - np.concatenate([[0.0], np.cumsum(1 - lab)]) / sn.size
    return float(np.min(pi * fn + (1 - pi) * fp))


def oracle_errors_mc(*, L: int, R: int, pi: float, theta: float, n: int = 20000,
                     taus: np.ndarray | None = None, seed: int = 0,
                     chunk_tokens: int = 4_000_000) -> dict[str, float]:
    """Monte-Carlo oracle errors with ``q = tau xi``, ``w = xi``: attention ``T_tau =
    sum s e^{tau s} / sum e^{tau s}`` (best tau on the grid and best b), the max-detector
    (``tau = inf``), and the pooled statistic ``sum s / sqrt L`` (best b).

    Best-threshold errors are selected on the same samples (an optimistic bias of order
    ``n^{-1/2}``); the returned ``*_se`` are binomial standard errors.
    """
    taus = np.array([0.5, 1.0, 2.0, 3.0, 5.0]) if taus is None else np.asarray(taus)
    rng = np.random.default_rng(seed)
    per = max(1, chunk_tokens // L)
    stats: dict[str, list[list[np.ndarray]]] = {}
    keys = ["max", "pool"] + [f"tau{t:g}" for t in taus]
    for k in keys:
        stats[k] = [[], []]
    for cls, positive in ((0, True), (1, False)):
        left = n
        while left > 0:
            m = min(per, left)
            s = _scores(m, L, R, theta, positive, rng)
            stats["max"][cls].append(s.max(axis=1))
            stats["pool"][cls].append(s.sum(axis=1) / math.sqrt(L))
            for t in taus:
                a = _softmax(t * s)
                stats[f"tau{t:g}"][cls].append((a * s).sum(axis=1))
            left -= m
    out = {}
    for k in keys:
        out[k] = _best_threshold_error(np.concatenate(stats[k][0]), np.concatenate(stats[k][1]), pi)
    att = min(out[f"tau{t:g}"] for t in taus)
    res = dict(attention=min(att, out["max"]), max_detector=out["max"], pooled=out["pool"])
    for k, v in list(res.items()):
        res[k + "_se"] = math.sqrt(max(v * (1 - v), 1.0 / n) / n)
    return res


# ----------------------------------------------------------------------------- separability
def pooled_features(X: np.ndarray) -> np.ndarray:
    """``x_bar = X^T 1 / L``."""
    return X.mean(axis=1)


def vectorised_features(X: np.ndarray) -> np.ndarray:
    """``vec(X)`` (L d features)."""
    return X.reshape(X.shape[0], -1)


def attention_features(X: np.ndarray, q: np.ndarray, beta: float = 1.0) -> np.ndarray:
    """``f_q(X) = X^T softmax(beta X q)``."""
    a = _softmax(beta * X @ q)
    return np.einsum("nl,nld->nd", a, X)


def separable(F: np.ndarray, y: np.ndarray, tol: float = 1e-8) -> bool:
    """Is there ``(w, b)`` with ``y_i (w^T F_i + b) > 0`` for all i?

    Max-margin LP in the box ``|w_j| <= 1`` (HiGHS): maximise ``t`` subject to
    ``y_i (w^T F_i + b) >= t``, ``t <= 1``. It is always feasible and bounded, so the solver
    never has to certify infeasibility; the data are separable iff ``t* > tol``.
    """
    n, p = F.shape
    A = np.hstack([-y[:, None] * F, -y[:, None], np.ones((n, 1))])
    c = np.zeros(p + 2)
    c[-1] = -1.0
    bounds = [(-1.0, 1.0)] * p + [(None, None), (None, 1.0)]
    res = linprog(c, A_ub=A, b_ub=np.zeros(n), bounds=bounds, method="highs")
    if res.status != 0:
        raise RuntimeError(f"linprog failed: {res.message}")
    return bool(-res.fun > tol)


def separable_nnls(F: np.ndarray, y: np.ndarray, *, rtol: float = 1e-9,
                   lp_fallback: bool = True) -> tuple[bool, dict[str, Any]]:
    """Exact separability test with a certificate either way (Lawson–Hanson NNLS).

    With ``g_i = y_i (F_i, 1)`` the data are strictly separable iff ``0`` is not in the convex
    hull of the ``g_i`` (Gordan). Solve ``min_{lam >= 0} |G lam|^2 + (1^T lam - 1)^2`` by NNLS
    (``scipy.optimize.nnls``, an active-set method that terminates at the exact optimum). With
    the residual ``r = (G lam, 1^T lam - 1)``, the KKT conditions give ``g_i . r_G >= -r_1 > 0``
    whenever the residual is nonzero, so ``w = r_G`` is a separator (checked directly: every
    margin ``g_i . w`` must be positive); when it is zero, ``lam >= 0`` with ``G lam = 0`` and
    ``1^T lam = 1`` is a certificate of non-separability (checked: ``|G lam|`` at round-off).
    Either certificate is verified on the data; if neither verifies (margin within round-off)
    the max-margin LP :func:`separable` decides (``info['method'] = 'lp'``).

    Returns ``(separable, info)``: ``info['w'], info['b']`` (separator) or ``info['lam']``
    (certificate), and ``info['method']``.
    """
    from scipy.optimize import nnls

    n, p = F.shape
    G = y[:, None] * np.hstack([F, np.ones((n, 1))])  # (n, p + 1)
    M = np.vstack([G.T, np.ones((1, n))])
    rhs = np.zeros(p + 2)
    rhs[-1] = 1.0
    lam, _ = nnls(M, rhs, maxiter=max(50 * n, 1000))
    r = M @ lam - rhs
    w = r[:-1]
    marg = G @ w
    scale = float(np.max(np.linalg.norm(G, axis=1)))
    if np.all(marg > rtol * scale * max(np.linalg.norm(w), 1e-300)) and np.linalg.norm(w) > 0:
        return True, dict(w=w[:-1], b=float(w[-1]), method="nnls")
    if lam.sum() > 0.5 and np.linalg.norm(G.T @ lam) <= rtol * scale * lam.sum():
        return False, dict(lam=lam, method="nnls")
    if not lp_fallback:
        raise RuntimeError("NNLS separability certificate not verified")
    return separable(F, y), dict(method="lp")


def critical_alpha(F: np.ndarray, y: np.ndarray, d: int, *, n0: int, rel_tol: float = 0.005,
                   step: float = 0.03) -> dict[str, Any]:
    """Critical sample count of one nested data set: the largest ``n`` such that the first
    ``n`` rows of ``(F, y)`` are linearly separable (separability is monotone in ``n``).

    Galloping from ``n0`` (steps ``step * n0``, doubling) then bisection until the bracket is
    below ``rel_tol * n0``; every test is :func:`separable_nnls`, and its certificates tighten
    the bracket beyond the tested ``n`` (a separator often separates more rows; a
    non-separability certificate is supported on the first ``max(supp) + 1`` rows).
    Returns ``lo`` (largest count known separable), ``hi`` (smallest known non-separable;
    ``N + 1`` if all ``N`` rows are separable), ``alpha_c = (lo + hi - 1) / (2 d)``, ``solves``.
    """
    N = F.shape[0]
    lo = min(F.shape[1] + 1, N)  # n <= p + 1 points in general position: separable
    hi = N + 1
    tol = int(round(rel_tol * n0))  # 0: the exact critical count
    n, s = min(max(n0, lo + 1), N), max(1, int(round(step * n0)))
    solves, methods, tested_sep = 0, [], False
    while hi - 1 - lo > tol:
        sep, info = separable_nnls(F[:n], y[:n])
        solves += 1
        methods.append(info["method"])
        if sep:
            tested_sep = True
            lo = max(lo, n)
            if "w" in info:
                ok = y * (F @ info["w"] + info["b"]) > 0
                lo = max(lo, int(np.argmin(ok)) if not ok.all() else N)
        else:
            hi = min(hi, n)
            if "lam" in info:
                hi = min(hi, int(np.flatnonzero(info["lam"] > 0).max()) + 1)
        if hi == N + 1:  # no non-separable count found yet: gallop up
            if lo >= N:
                break
            n = min(lo + s, N)
            s *= 2
        elif not tested_sep:  # gallop down
            n = max(hi - s, lo + 1)
            s *= 2
        else:
            n = (lo + hi) // 2
    return dict(lo=lo, hi=hi, alpha_c=(lo + hi - 1) / (2 * d), solves=solves,
                lp_fallbacks=methods.count("lp"), censored=hi == N + 1)


def critical_alpha_scan(*, d: int, trials: int, L: int, R: int, pi: float, theta: float,
                        alpha_star: float, features: str = "pooled", q_overlap: float = 1.0,
                        q_norm_beta: float = 1.0, span: float = 1.3, seed: int = 0,
                        rel_tol: float = 0.005, progress: bool = False) -> list[dict[str, Any]]:
    """:func:`critical_alpha` on ``trials`` independent nested data sets of
    ``round(span * alpha_star * d)`` samples (``alpha_star`` only sets the start and the size).
    P(separable at alpha) is then the fraction of data sets with ``alpha_c > alpha``."""
    from ..progress import progress_bar

    q = np.zeros(d)
    q[0] = q_overlap
    if d > 1:
        q[1] = math.sqrt(max(0.0, 1 - q_overlap**2))
    q *= q_norm_beta
    N = int(round(span * alpha_star * d))
    out = []
    for t in progress_bar(range(trials), enabled=progress, desc=f"alpha_c {features} d={d}"):
        rng = np.random.default_rng([seed, d, t])
        X, y = sample(N, d, L, R, pi, theta, rng)
        F = _features(X, features, q)
        del X
        out.append(critical_alpha(F, y, d, n0=int(round(alpha_star * d)), rel_tol=rel_tol))
    return out


def separability_scan(*, d: int, alphas: np.ndarray, trials: int, L: int, R: int, pi: float,
                      theta: float, features: str = "pooled", q_overlap: float = 1.0,
                      q_norm_beta: float = 1.0, seed: int = 0,
                      progress: bool = False) -> np.ndarray:
    """Fraction of separable data sets of ``n = round(alpha d)`` samples, per alpha.

    ``features``: ``"pooled"``, ``"vectorised"`` or ``"attention"`` (query
    ``q = q_norm_beta * (s xi + sqrt(1 - s^2) e_2)``, ``s = q_overlap``, with beta = 1).
    """
    from ..progress import progress_bar

    out = np.zeros(len(alphas))
    q = np.zeros(d)
    q[0] = q_overlap
    if d > 1:
        q[1] = math.sqrt(max(0.0, 1 - q_overlap**2))
    q *= q_norm_beta
    it = [(i, t) for i in range(len(alphas)) for t in range(trials)]
    for i, t in progress_bar(it, enabled=progress, desc=f"separability {features} d={d}"):
        rng = np.random.default_rng([seed, d, i, t])
        n = int(round(alphas[i] * d))
        X, y = sample(n, d, L, R, pi, theta, rng)
        if features == "pooled":
            F = pooled_features(X)
        elif features == "vectorised":
            F = vectorised_features(X)
        elif features == "attention":
            F = attention_features(X, q)
        else:
            raise ValueError(f"features must be pooled, vectorised or attention, got {features!r}")
        out[i] += separable(F, y)
    return out / trials



# ----------------------------------------------------------------------------- trained readout
def _features(X: np.ndarray, features: str, q: np.ndarray | None) -> np.ndarray:
    if features == "pooled":
        return pooled_features(X)
    if features == "vectorised":
        return vectorised_features(X)
    if features == "attention":
        return attention_features(X, q)
    raise ValueError(f"features must be pooled, vectorised or attention, got {features!r}")


def fit_readout(F: np.ndarray, y: np.ndarray, lam_total: float, loss: str) -> tuple[np.ndarray, float]:
    """``argmin_{w,b} sum_i loss(y_i, w^T F_i + b) + lam_total/2 |w|^2`` (b unpenalised).

    Square loss: exact (centred ridge, primal or dual form, whichever is smaller). Logistic:
    L-BFGS-B to a gradient tolerance of 1e-10 (relative to n).
    """
    n, p = F.shape
    if loss == "square":
        Fm, ym = F.mean(axis=0), y.mean()
        Fc, yc = F - Fm, y - ym
        if p <= n:
            w = np.linalg.solve(Fc.T @ Fc + lam_total * np.eye(p), Fc.T @ yc)
        else:
            w = Fc.T @ np.linalg.solve(Fc @ Fc.T + lam_total * np.eye(n), yc)
        return w, float(ym - Fm @ w)
    if loss != "logistic":
        raise ValueError(f"loss must be 'logistic' or 'square', got {loss!r}")
    from scipy.optimize import minimize

    def fg(x: np.ndarray) -> tuple[float, np.ndarray]:
        w, b = x[:-1], x[-1]
        z = y * (F @ w + b)
        val = np.logaddexp(0.0, -z).sum() + 0.5 * lam_total * w @ w
        r = -y * expit(-z)
        return val / n, np.concatenate([F.T @ r + lam_total * w, [r.sum()]]) / n

    res = minimize(fg, np.zeros(p + 1), jac=True, method="L-BFGS-B",
                   options=dict(maxiter=20000, gtol=1e-10, ftol=0.0, maxcor=30))
    return res.x[:-1], float(res.x[-1])


@dataclass
class ReadoutResult:
    """Test error (fresh samples), training loss (without penalty) and training error."""

    test_error: float
    train_loss: float
    train_error: float
    n: int


def simulate_readout(*, d: int, alpha1: float, lam: float, loss: str, L: int, R: int, pi: float,
                     theta: float, features: str, q_norm_beta: float = 1.0, q_overlap: float = 1.0,
                     n_test: int = 20000, seed: int = 0, chunk: int = 2000) -> ReadoutResult:
    """Step 4 of the protocol (§3.1): ERM of ``(w, b)`` on ``n1 = round(alpha1 d)`` samples with
    objective ``sum loss + (lam d / 2)|w|^2``, for fixed features; attention uses the query
    ``q = q_norm_beta (s xi + sqrt(1 - s^2) e_2)`` at beta = 1."""
    n = int(round(alpha1 * d))
    q = np.zeros(d)
    q[0] = q_overlap
    q[1] = math.sqrt(max(0.0, 1 - q_overlap**2))
    q *= q_norm_beta
    rng = np.random.default_rng([seed, d, 1])

    def draw(m: int) -> tuple[np.ndarray, np.ndarray]:
        Fs, ys = [], []
        for s in range(0, m, chunk):
            X, yv = sample(min(chunk, m - s), d, L, R, pi, theta, rng)
            Fs.append(_features(X, features, q))
            ys.append(yv)
        return np.concatenate(Fs), np.concatenate(ys)

    F, y = draw(n)
    w, b = fit_readout(F, y, lam * d, loss)
    z = F @ w + b
    if loss == "square":
        tl = float(np.mean((y - z) ** 2) / 2)
    else:
        tl = float(np.mean(np.logaddexp(0.0, -y * z)))
    te = float(np.mean(y * z <= 0))
    Ft, yt = draw(n_test)
    err = float(np.mean(yt * (Ft @ w + b) <= 0))
    return ReadoutResult(test_error=err, train_loss=tl, train_error=te, n=n)
