"""Gaussian expectations over a few variables: Gauss–Hermite and quasi-Monte-Carlo rules.

A :class:`Rule` approximates ``E f(z)`` for ``z ~ N(0, I_dim)`` by ``Σ_i w_i f(z_i)``.
Correlated Gaussians are reached through a Cholesky factor (``z ↦ μ + C z``).
Every rule comes with an error estimate: Gauss–Hermite compares two orders
(``n`` and ``n + step`` per dimension), randomised QMC uses the spread of independent
scrambles. Rules are plain NumPy; :meth:`Rule.to` moves them to another backend.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Callable

import numpy as np

__all__ = ["Rule", "gauss_hermite", "sobol_normal", "expectation", "Expectation",
           "expectation_with_error", "graded_gauss_legendre", "tensor_rule_2d"]


class NodeSet:
    """What every quadrature rule here shares: ``nodes`` of shape ``(N, dim)``."""

    nodes: Any

    @property
    def dim(self) -> int:
        return int(self.nodes.shape[1])

    @property
    def size(self) -> int:
        return int(self.nodes.shape[0])


@dataclass(frozen=True)
class Rule(NodeSet):
    """Nodes ``(N, dim)`` and weights ``(N,)`` (summing to 1) for ``N(0, I_dim)``."""

    nodes: Any
    weights: Any
    kind: str
    order: int

    def to(self, xp: Any) -> "Rule":
        """The same rule with arrays of namespace ``xp`` (``numpy`` or ``cupy``)."""
        return Rule(xp.asarray(self.nodes), xp.asarray(self.weights), self.kind, self.order)

    def pruned(self, rel: float = 1e-14) -> "Rule":
        """Drop nodes whose weight is below ``rel`` times the largest (tensor rules in high
        dimension carry many negligible corner nodes)."""
        keep = self.weights > rel * float(self.weights.max())
        w = self.weights[keep]
        return Rule(self.nodes[keep], w / w.sum(), self.kind + "-pruned", self.order)


@lru_cache(maxsize=64)
def _gh_1d(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Probabilists' Gauss–Hermite: nodes and weights for N(0, 1), weights summing to 1."""
    if n < 1:
        raise ValueError(f"n (Gauss–Hermite order) must be an integer >= 1, got {n}")
    x, w = np.polynomial.hermite_e.hermegauss(n)
    return x, w / w.sum()


def gauss_hermite(n: int, dim: int = 1) -> Rule:
    """Tensor-product Gauss–Hermite rule with ``n`` nodes per dimension (``n**dim`` nodes).

    Exact for polynomials of degree ``≤ 2n − 1`` in each variable.
    """
    if dim < 1:
        raise ValueError(f"dim must be an integer >= 1, got {dim}")
    x, w = _gh_1d(int(n))
    grids = np.meshgrid(*([x] * dim), indexing="ij")
    wgrids = np.meshgrid(*([w] * dim), indexing="ij")
    nodes = np.stack([g.reshape(-1) for g in grids], axis=1)
    weights = np.prod(np.stack([g.reshape(-1) for g in wgrids], axis=1), axis=1)
    return Rule(nodes, weights, "gauss-hermite", int(n))


def sobol_normal(n: int, dim: int, seed: int | None = 0, scramble: bool = True) -> Rule:
    """Randomised (scrambled) Sobol' points mapped to ``N(0, I_dim)`` by the inverse CDF.

    ``n`` is rounded up to a power of two (Sobol' balance), except that ``n = 3·2^k`` is kept: the
    first ``3·2^k`` points of the sequence are two balanced nets (of ``2^(k+1)`` and ``2^k``
    points), so rules can grow by factors 1.5 and 4/3 as well as 2. Equal weights.
    """
    from scipy.special import ndtri
    from scipy.stats import qmc

    if n < 1 or dim < 1:
        raise ValueError(f"n and dim must be >= 1, got n={n}, dim={dim}")
    m = int(np.ceil(np.log2(n)))
    u = qmc.Sobol(d=dim, scramble=scramble, seed=seed).random_base2(m)
    if m >= 2 and n == 3 * 2 ** (m - 2):
        u = u[:n]
    u = np.clip(u, 1e-16, 1 - 1e-16)
    nodes = ndtri(u)  # what norm.ppf calls, without its argument checks
    return Rule(nodes, np.full(len(nodes), 1.0 / len(nodes)), "sobol", len(nodes))


def expectation(f: Callable[[Any], Any], rule: Rule, xp: Any = np) -> Any:
    """``E f(z) ≈ Σ_i w_i f(z_i)``.

    ``f`` receives the nodes as an array ``(N, dim)`` and returns ``(N, ...)``; the
    weighted sum is over the first axis.
    """
    r = rule.to(xp)
    vals = f(r.nodes)
    return xp.tensordot(r.weights, vals, axes=(0, 0))


@dataclass(frozen=True)
class Expectation:
    """A Gaussian expectation with its error estimate (same shape as ``value``)."""

    value: Any
    error: Any
    method: str
    n_nodes: int


def expectation_with_error(f: Callable[[Any], Any], dim: int, *, method: str = "gauss-hermite",
                           n: int = 12, step: int = 4, n_replicas: int = 8, seed: int = 0,
                           xp: Any = np) -> Expectation:
    """``E f(z)``, ``z ~ N(0, I_dim)``, with an error estimate.

    - ``gauss-hermite``: value from order ``n + step``, error ``|I_{n+step} − I_n|``
      (a conservative estimate for analytic integrands, whose GH error decays geometrically).
    - ``qmc``: mean of ``n_replicas`` independent scrambled Sobol' rules of ``n`` points;
      error = standard error of that mean.
    """
    if method == "gauss-hermite":
        lo = expectation(f, gauss_hermite(n, dim), xp)
        hi_rule = gauss_hermite(n + step, dim)
        hi = expectation(f, hi_rule, xp)
        return Expectation(hi, xp.abs(hi - lo), method, hi_rule.size)
    if method == "qmc":
        reps = [expectation(f, sobol_normal(n, dim, seed=seed + k), xp) for k in range(n_replicas)]
        stack = xp.stack(reps)
        mean = stack.mean(axis=0)
        err = stack.std(axis=0, ddof=1) / np.sqrt(n_replicas)
        return Expectation(mean, err, method, n_replicas * sobol_normal(n, dim, seed=seed).size)
    raise ValueError(f"method must be 'gauss-hermite' or 'qmc', got {method!r}")


def graded_gauss_legendre(inner: Any, extent: Any, panels: int = 16, n: int = 8
                          ) -> tuple[np.ndarray, np.ndarray]:
    r"""Composite Gauss–Legendre rule for ``∫_{−L}^{L} f(x) dx``, graded for integrands with
    structure at two scales: panels of width about ``inner·h`` near 0 growing geometrically to
    the ends ``±L = ±extent`` (break points ``±inner·sinh(j h)``, ``j = 0..panels``,
    ``h = asinh(L/inner)/panels``), ``n`` nodes per panel.

    Vectorised over points: ``inner`` and ``extent`` broadcast to a batch shape ``B``; returns
    nodes and weights of shape ``B + (2·panels·n,)``. With ``n`` even no node falls on 0 (and
    the rule is symmetric). For a Gaussian weight of scale ``σ`` times a function that varies
    on scale ``1``, take ``inner = min(1, σ)`` and ``extent`` a dozen ``σ``.
    """
    inner, extent = np.broadcast_arrays(np.asarray(inner, float), np.asarray(extent, float))
    if np.any(~(inner > 0)) or np.any(~(extent > 0)):
        raise ValueError("inner and extent must be > 0")
    if panels < 1 or n < 1:
        raise ValueError(f"panels and n must be >= 1, got {panels}, {n}")
    u, w = np.polynomial.legendre.leggauss(int(n))
    h = np.arcsinh(extent / inner) / panels                                  # B
    j = np.arange(panels + 1)
    br = inner[..., None] * np.sinh(h[..., None] * j)                         # B + (panels+1,)
    a, b = br[..., :-1], br[..., 1:]
    x = (a[..., None] + b[..., None]) / 2 + (b - a)[..., None] / 2 * u        # B + (panels, n)
    wt = (b - a)[..., None] / 2 * w
    x = x.reshape(x.shape[:-2] + (-1,))
    wt = wt.reshape(wt.shape[:-2] + (-1,))
    return np.concatenate([-x[..., ::-1], x], axis=-1), np.concatenate([wt[..., ::-1], wt], axis=-1)


def tensor_rule_2d(x: Any, w: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Tensor product of a batched 1-D rule (``x``, ``w`` of shape ``B + (N,)``): nodes
    ``(x1, x2)`` and weights of shape ``B + (N*N,)``."""
    x, w = np.asarray(x, float), np.asarray(w, float)
    N = x.shape[-1]
    x1 = np.broadcast_to(x[..., :, None], x.shape[:-1] + (N, N)).reshape(x.shape[:-1] + (N * N,))
    x2 = np.broadcast_to(x[..., None, :], x.shape[:-1] + (N, N)).reshape(x.shape[:-1] + (N * N,))
    ww = (w[..., :, None] * w[..., None, :]).reshape(w.shape[:-1] + (N * N,))
    return x1, x2, ww
