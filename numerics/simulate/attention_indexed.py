r"""Gradient descent on the attention-indexed model with the authors' protocol (finite d).

Teacher and student (spec ``attention_indexed_multitoken.md`` §1, §6): $S=WW^\top/\sqrt{Rd}$ with
$W\in\mathbb R^{d\times R}$, $R=\lfloor\rho d\rfloor$ (matched width, tied $W$); per sample $\mu$ and
tokens $x_{\mu a}\sim N(0,I_d)$, $a=1..T$,

.. math::  h_{ab}=\frac{x_a^\top W W^\top x_b-\delta_{ab}\,\|W\|_F^2}{d\sqrt R}
           =\frac{x_a^\top S x_b-\delta_{ab}\operatorname{Tr}S}{\sqrt d},\qquad
           \hat y_{a\cdot}=\operatorname{softmax}(h_{a\cdot})\quad(\beta=1).

Training (``GD_softmax_averaged.py`` of ``FabrizioBoncoraglio/BO_ExtensiveRankAttention`` @ 5f1b99c,
run as ``python GD_softmax_averaged.py i`` with ``lr = 0.1``): PyTorch, hence **float32**; Adam
(lr 0.1, $\beta=(0.9,0.999)$, $\epsilon=10^{-8}$, PyTorch's update
$W\leftarrow W-\frac{\mathrm{lr}}{1-\beta_1^t}\,m/(\sqrt{v/(1-\beta_2^t)}+\epsilon)$), 1000 full-batch
steps on $L=\sum_{\mu,a,b}(\hat y_{\mu ab}-y_{\mu ab})^2/d$, $W$ initialised $N(0,1)$,
$n=\lfloor\alpha d^2\rfloor$. ``GD_single``: $\|\hat S-S^*\|_F^2/d$ of one student; ``GD_averaged``:
$\|\bar S-S^*\|_F^2/d$ with $\bar S$ the mean of 32 students' $\hat S$ (same data, independent
initialisations); both then averaged over 16 data sets.

Implementation: the gradient is analytic (back-propagation written out below, checked against
central differences by :func:`check_gradient`), and the K students of one data set are trained as
ONE tensor problem: their weights are the column blocks of a single $(d, KR)$ matrix, so the two
$O(nTdKR)$ contractions per step are single BLAS GEMMs ($P=XW$ and $\nabla_W=X^\top\partial P$);
the $O(nT^2KR)$ per-sample contractions are einsums / batched matmuls over all samples and students.
No Python loop over samples or students.

Gradient (per student, $c=d\sqrt R$, $P_{\mu a}=W^\top x_{\mu a}$, $G=\partial L/\partial\hat y=2(\hat y-y)/d$):

.. math::  \partial_{h_{ab}}L=\hat y_{ab}\big(G_{ab}-\textstyle\sum_c G_{ac}\hat y_{ac}\big),\qquad
           \nabla_W L=\frac1c\sum_{\mu ab}(\partial_{h_{ab}}L+\partial_{h_{ba}}L)\,x_{\mu a}P_{\mu b}^\top
           -\frac{2W}{c}\sum_{\mu a}\partial_{h_{aa}}L .

Error bookkeeping: for one data set with K students, the Gram matrix
$G_{ij}=\langle\hat S_i-S^*,\hat S_j-S^*\rangle_F/d$ holds everything: the single-student errors are
its diagonal, the K-average error is $\sum_{ij}G_{ij}/K^2$, and since the students are i.i.d. given
the data, $E_{K'}=c+(s-c)/K'$ with $s=\overline{G_{ii}}$, $c=\overline{G_{i\ne j}}$ is an unbiased
estimate of the $K'$-student average error for any $K'$ (used for $K'=32$ when fewer students are
affordable).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["sample_data", "train_students", "gd_error", "GDResult", "check_gradient", "error_gram",
           "averaged_error_estimate"]


def _softmax_last(h: np.ndarray, axis: int) -> np.ndarray:
    z = h - h.max(axis=axis, keepdims=True)
    e = np.exp(z)
    e /= e.sum(axis=axis, keepdims=True)
    return e


class _Batch:
    """Forward/backward for K students stacked as column blocks of ``W`` (d, K·R).

    Shapes: ``X2`` (n·T, d) with rows ordered (μ, a); ``P`` (n, T, K, R); ``h``, ``ŷ`` (n, T, T, K)
    (axis 2 = b, the softmax axis).
    """

    def __init__(self, X: np.ndarray, R: int, K: int, dtype: Any) -> None:
        n, T, d = X.shape
        self.n, self.T, self.d, self.R, self.K = n, T, d, R, K
        self.dtype = np.dtype(dtype)
        self.X2 = np.ascontiguousarray(X.reshape(n * T, d), dtype=self.dtype)
        self.X2T = np.ascontiguousarray(self.X2.T)
        self.c = float(d * np.sqrt(R))
        self.diag = np.arange(T)

    def forward(self, W: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``P = XW`` and ``h`` (eq. in the module docstring)."""
        n, T, d, R, K = self.n, self.T, self.d, self.R, self.K
        P = (self.X2 @ W).reshape(n, T, K, R)
        h = np.empty((n, T, T, K), dtype=self.dtype)
        for a in range(T):
            for b in range(a, T):
                s = np.einsum("nkr,nkr->nk", P[:, a], P[:, b])
                h[:, a, b] = s
                if b != a:
                    h[:, b, a] = s
        tr = np.einsum("dkr,dkr->k", W.reshape(d, K, R), W.reshape(d, K, R))     # ‖W_k‖_F²
        h[:, self.diag, self.diag] -= tr
        h *= self.dtype.type(1.0 / self.c)
        return P, h

    def loss_grad(self, W: np.ndarray, y: np.ndarray, need_loss: bool = False
                  ) -> tuple[np.ndarray, np.ndarray | None]:
        """∇_W L for every student (column blocks), and optionally the per-student losses."""
        n, T, d, R, K = self.n, self.T, self.d, self.R, self.K
        P, h = self.forward(W)
        yh = _softmax_last(h, axis=2)
        diff = yh - y                                                     # y broadcast over K
        loss = np.einsum("nabk,nabk->k", diff, diff) / d if need_loss else None
        G = diff * self.dtype.type(2.0 / d)                               # ∂L/∂ŷ
        dh = yh * (G - np.sum(G * yh, axis=2, keepdims=True))            # softmax backward, rows
        sym = dh + dh.transpose(0, 2, 1, 3)
        sym *= self.dtype.type(1.0 / self.c)
        dP = np.empty_like(P)                                             # dP_a = Σ_b sym_ab P_b
        np.matmul(sym.transpose(0, 3, 1, 2), P.transpose(0, 2, 1, 3), out=dP.transpose(0, 2, 1, 3))
        gW = self.X2T @ dP.reshape(n * T, K * R)
        tr_coef = dh[:, self.diag, self.diag].sum(axis=(0, 1)) * self.dtype.type(2.0 / self.c)  # (K,)
        gW.reshape(d, K, R)[...] -= W.reshape(d, K, R) * tr_coef[None, :, None]
        return gW, loss


def sample_data(d: int, alpha: float, rho: float, T: int, rng: np.random.Generator,
                dtype: Any = np.float32) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    r"""Teacher $S^*$ (d, d), tokens ``X`` (n, T, d) and softmax labels ``y`` (n, T, T, 1), as the
    authors: $R=\lfloor\rho d\rfloor$, $n=\lfloor\alpha d^2\rfloor$, labels from the teacher's forward
    pass in ``dtype``. Draw order: teacher W, then X."""
    R = max(1, int(rho * d))
    n = int(alpha * d * d)
    W = rng.standard_normal((d, R)).astype(dtype)
    X = rng.standard_normal((n, T, d)).astype(dtype)
    _, h = _Batch(X, R, 1, dtype).forward(W)
    Wd = W.astype(np.float64)
    return Wd @ Wd.T / np.sqrt(R * d), X, _softmax_last(h, axis=2)


def train_students(X: np.ndarray, y: np.ndarray, R: int, students: int, rng: np.random.Generator,
                   steps: int = 1000, lr: float = 0.1, betas: tuple[float, float] = (0.9, 0.999),
                   eps: float = 1e-8, dtype: Any = np.float32, W0: np.ndarray | None = None
                   ) -> np.ndarray:
    """Adam (PyTorch's update) on all students at once; returns their weights, shape (students, d, R).

    Initial weights: one ``rng.standard_normal((d, students*R))`` draw, student k = columns
    ``k*R:(k+1)*R``; or ``W0`` (students, d, R) if given (then ``rng`` is unused)."""
    n, T, d = X.shape
    dt = np.dtype(dtype)
    batch = _Batch(X, R, students, dt)
    y = np.asarray(y, dtype=dt).reshape(n, T, T, 1)
    if W0 is None:
        W = rng.standard_normal((d, students * R)).astype(dt)
    else:
        W = np.ascontiguousarray(np.asarray(W0).transpose(1, 0, 2).reshape(d, students * R), dtype=dt)
    m = np.zeros_like(W)
    v = np.zeros_like(W)
    b1, b2 = betas
    for t in range(1, steps + 1):
        g, _ = batch.loss_grad(W, y)
        m *= dt.type(b1)
        m += dt.type(1 - b1) * g
        v *= dt.type(b2)
        g *= g
        v += dt.type(1 - b2) * g
        denom = np.sqrt(v)
        denom *= dt.type(1.0 / np.sqrt(1 - b2**t))
        denom += dt.type(eps)
        W -= dt.type(lr / (1 - b1**t)) * m / denom
    return np.ascontiguousarray(W.reshape(d, students, R).transpose(1, 0, 2))


def error_gram(Ws: np.ndarray, S: np.ndarray) -> np.ndarray:
    r"""$G_{ij}=\langle\hat S_i-S^*,\hat S_j-S^*\rangle_F/d$ (float64) for students' weights ``Ws`` (K, d, R)."""
    K, d, R = Ws.shape
    Wd = Ws.astype(np.float64)
    E = (np.einsum("kdr,ker->kde", Wd, Wd) / np.sqrt(R * d) - S).reshape(K, d * d)
    return E @ E.T / d


def averaged_error_estimate(G: np.ndarray, K: int) -> float:
    """Unbiased estimate of the K-student-average error from a Gram matrix of ≥ 2 i.i.d. students
    (module docstring); equals ``G.mean()`` when K = G.shape[0]."""
    k = G.shape[0]
    s = float(np.trace(G) / k)
    if k == 1:
        return s if K == 1 else float("nan")
    c = float((G.sum() - np.trace(G)) / (k * (k - 1)))
    return c + (s - c) / K


@dataclass
class GDResult:
    """Per data set: the error Gram matrix of the K students (see :func:`error_gram`)."""

    grams: list[np.ndarray]
    d: int
    alpha: float
    rho: float
    T: int
    students: int
    seed: int
    n: int
    seconds: float = 0.0
    meta: dict = field(default_factory=dict)

    @property
    def averaged(self) -> np.ndarray:
        """Error of the average of all K students, per data set."""
        return np.array([G.mean() for G in self.grams])

    @property
    def single(self) -> np.ndarray:
        """Single-student errors, all students of all data sets (flattened)."""
        return np.concatenate([np.diag(G) for G in self.grams])

    def averaged_as(self, K: int) -> np.ndarray:
        """Unbiased estimate of the K-student-average error, per data set."""
        return np.array([averaged_error_estimate(G, K) for G in self.grams])

    def jackknife_sem(self, K: int) -> float:
        """Leave-one-student-out jackknife s.e.m. of ``averaged_as(K)`` (mean over data sets)."""
        ests = []
        for G in self.grams:
            k = G.shape[0]
            if k < 3:
                return float("nan")
            loo = np.array([averaged_error_estimate(np.delete(np.delete(G, i, 0), i, 1), K) for i in range(k)])
            ests.append((k - 1) / k * np.sum((loo - loo.mean()) ** 2))
        return float(np.sqrt(np.sum(ests)) / len(self.grams))

    def mean(self, name: str = "averaged") -> float:
        return float(np.mean(getattr(self, name)))

    def std(self, name: str = "averaged") -> float:
        a = getattr(self, name)
        return float(np.std(a, ddof=1)) if a.size > 1 else float("nan")


def gd_error(d: int = 200, alpha: float = 0.01, rho: float = 0.5, T: int = 2, students: int = 32,
             datasets: int = 1, seed: int = 0, steps: int = 1000, lr: float = 0.1,
             dtype: Any = np.float32) -> GDResult:
    """The authors' protocol on ``datasets`` independent data sets; data set i uses
    ``np.random.default_rng(seed + i)`` (teacher, tokens, then the students' initial weights)."""
    import time

    t0 = time.perf_counter()
    grams, n = [], 0
    for i in range(datasets):
        rng = np.random.default_rng(seed + i)
        S, X, y = sample_data(d, alpha, rho, T, rng, dtype)
        n = X.shape[0]
        R = max(1, int(rho * d))
        Ws = train_students(X, y, R, students, rng, steps=steps, lr=lr, dtype=dtype)
        G = error_gram(Ws, S)
        if not np.all(np.isfinite(G)):
            raise FloatingPointError(f"non-finite GD error at alpha={alpha}, T={T}, data set {i}")
        grams.append(G)
    return GDResult(grams, d, alpha, rho, T, students, seed, n, time.perf_counter() - t0,
                    dict(steps=steps, lr=lr, dtype=np.dtype(dtype).name))


def check_gradient(seed: int = 0, T: int = 3, K: int = 2) -> float:
    """Max relative error of the analytic gradient (all K students at once) against central
    differences of the loss, float64, on a tiny problem (d = 6, R = 3, n = 5)."""
    rng = np.random.default_rng(seed)
    d, R, n = 6, 3, 5
    X = rng.standard_normal((n, T, d))
    y = _softmax_last(rng.standard_normal((n, T, T, 1)), axis=2)
    W = rng.standard_normal((d, K * R))
    batch = _Batch(X, R, K, np.float64)
    g, _ = batch.loss_grad(W, y)

    def total_loss(Wv: np.ndarray) -> float:
        _, L = batch.loss_grad(Wv, y, need_loss=True)
        return float(np.sum(L))

    fd = np.zeros_like(W)
    e = 1e-6
    for idx in np.ndindex(W.shape):
        Wp, Wm = W.copy(), W.copy()
        Wp[idx] += e
        Wm[idx] -= e
        fd[idx] = (total_loss(Wp) - total_loss(Wm)) / (2 * e)
    return float(np.max(np.abs(fd - g)) / np.max(np.abs(fd)))


def _check_gradient(seed: int = 0) -> float:  # backwards-compatible name
    return check_gradient(seed)


def simulate(**kwargs: Any) -> GDResult:
    """Alias of :func:`gd_error`."""
    return gd_error(**kwargs)
