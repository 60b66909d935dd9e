r"""Gradient descent on the attention-indexed model with the authors' protocol (finite d).

Teacher and student (spec ``attention_indexed_multitoken.md`` §1, §6): $S=WW^\top/\sqrt{Rd}$ with
$W\in\mathbb R^{d\times R}$, $R=\rho d$ (matched width, tied $W$); per sample $\mu$ and tokens
$x_{\mu a}\sim N(0,I_d)$, $h_{ab}=(x_a^\top Sx_b-\delta_{ab}\operatorname{Tr}S)/\sqrt d$ and
$\hat y_{a\cdot}=\operatorname{softmax}(h_{a\cdot})$ ($\beta=1$). Training (``GD_softmax_averaged.py``):
Adam (lr 0.1, $\beta=(0.9,0.999)$, $\epsilon=10^{-8}$), 1000 full-batch steps on
$L=\sum_{\mu,a,b}(\hat y_{\mu ab}-y_{\mu ab})^2/d$, $W$ initialised $N(0,1)$; the $\hat S$ of
``students`` independent initialisations are averaged before the error
$\|\bar S-S^*\|_F^2/d$ is taken. The gradient is written by hand (NumPy; all students at once).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["sample_data", "train_students", "gd_error", "GDResult"]


def _softmax_rows(h: np.ndarray) -> np.ndarray:
    z = h - h.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def _forward(X: np.ndarray, W: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """``P = X W`` (…, n, T, R) and the pre-activations ``h`` (…, n, T, T)."""
    d, R = W.shape[-2], W.shape[-1]
    c = np.sqrt(R * d) * np.sqrt(d)
    n, T, _ = X.shape
    P = np.matmul(X.reshape(n * T, d), W).reshape(W.shape[:-2] + (n, T, R))      # BLAS
    tr = np.einsum("...dr,...dr->...", W, W)
    h = np.matmul(P, np.swapaxes(P, -1, -2))
    h = (h - np.asarray(tr)[..., None, None, None] * np.eye(T)) / c
    return P, h, c


def sample_data(d: int, alpha: float, rho: float, T: int, rng: np.random.Generator
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Teacher ``S*``, tokens ``X`` (n, T, d) and softmax labels ``y`` (n, T, T), n = round(α d²)."""
    R = max(1, int(round(rho * d)))
    W = rng.standard_normal((d, R))
    n = int(round(alpha * d * d))
    X = rng.standard_normal((n, T, d))
    _, h, _ = _forward(X, W)
    return W @ W.T / np.sqrt(R * d), X, _softmax_rows(h)


def train_students(X: np.ndarray, y: np.ndarray, R: int, students: int, rng: np.random.Generator,
                   steps: int = 1000, lr: float = 0.1, betas: tuple[float, float] = (0.9, 0.999),
                   eps: float = 1e-8) -> np.ndarray:
    """Adam on all students at once; returns their ``Ŝ = WWᵀ/√(Rd)``, shape (students, d, d)."""
    n, T, d = X.shape
    W = rng.standard_normal((students, d, R))
    m = np.zeros_like(W)
    v = np.zeros_like(W)
    b1, b2 = betas
    eye = np.eye(T)
    X2T = np.ascontiguousarray(X.reshape(n * T, d).T)
    for t in range(1, steps + 1):
        P, h, c = _forward(X, W)
        yh = _softmax_rows(h)
        G = 2 * (yh - y) / d                                            # dL/dŷ
        dh = yh * (G - np.sum(G * yh, axis=-1, keepdims=True))          # softmax backward (rows)
        sym = dh + np.swapaxes(dh, -1, -2)
        dP = np.matmul(sym, P) / c
        gW = np.matmul(X2T, dP.reshape(students, n * T, R))
        gW -= 2 * W * (np.einsum("knab,ab->k", dh, eye) / c)[:, None, None]
        m = b1 * m + (1 - b1) * gW
        v = b2 * v + (1 - b2) * gW * gW
        W = W - lr * (m / (1 - b1**t)) / (np.sqrt(v / (1 - b2**t)) + eps)
    return np.einsum("kdr,ker->kde", W, W) / np.sqrt(R * d)


@dataclass
class GDResult:
    """Error of the averaged students per data set, its mean and standard deviation (as the
    authors report: std over data sets), and of a single student."""

    averaged: np.ndarray
    single: np.ndarray
    d: int
    alpha: float
    rho: float
    T: int
    students: int
    seed: int

    def mean(self, name: str = "averaged") -> float:
        return float(np.mean(getattr(self, name)))

    def std(self, name: str = "averaged") -> float:
        a = getattr(self, name)
        return float(np.std(a, ddof=1)) if a.size > 1 else float("nan")


def gd_error(d: int = 200, alpha: float = 0.01, rho: float = 0.5, T: int = 2, students: int = 32,
             datasets: int = 1, seed: int = 0, steps: int = 1000, lr: float = 0.1) -> GDResult:
    """The authors' protocol on ``datasets`` independent data sets (seeds ``seed + i``)."""
    avg, single = [], []
    for i in range(datasets):
        rng = np.random.default_rng(seed + i)
        S, X, y = sample_data(d, alpha, rho, T, rng)
        R = max(1, int(round(rho * d)))
        Sh = train_students(X, y, R, students, rng, steps=steps, lr=lr)
        avg.append(float(np.sum((Sh.mean(axis=0) - S) ** 2) / d))
        single.append(float(np.sum((Sh[0] - S) ** 2) / d))
    return GDResult(np.array(avg), np.array(single), d, alpha, rho, T, students, seed)


def _check_gradient(seed: int = 0) -> float:  # pragma: no cover - used by the tests
    """Relative error of the hand-written gradient against central differences (tiny problem)."""
    rng = np.random.default_rng(seed)
    d, R, T, n = 6, 3, 3, 5
    X = rng.standard_normal((n, T, d))
    y = _softmax_rows(rng.standard_normal((n, T, T)))
    W = rng.standard_normal((1, d, R))

    def loss(Wv: np.ndarray) -> float:
        _, h, _ = _forward(X, Wv)
        return float(np.sum((_softmax_rows(h) - y) ** 2) / d)

    P, h, c = _forward(X, W)
    yh = _softmax_rows(h)
    G = 2 * (yh - y) / d
    dh = yh * (G - np.sum(G * yh, axis=-1, keepdims=True))
    sym = dh + np.swapaxes(dh, -1, -2)
    gW = np.einsum("ntd,kntr->kdr", X, np.einsum("knab,knbr->knar", sym, P) / c)
    gW -= 2 * W * (np.einsum("knab,ab->k", dh, np.eye(T)) / c)[:, None, None]
    fd = np.zeros_like(W)
    e = 1e-6
    for idx in np.ndindex(W.shape):
        Wp, Wm = W.copy(), W.copy()
        Wp[idx] += e
        Wm[idx] -= e
        fd[idx] = (loss(Wp) - loss(Wm)) / (2 * e)
    return float(np.max(np.abs(fd - gW)) / np.max(np.abs(fd)))


def simulate(**kwargs: Any) -> GDResult:
    """Alias of :func:`gd_error`."""
    return gd_error(**kwargs)
