r"""Tokens as interacting particles: self-attention dynamics on the sphere.

B. Geshkovski, C. Letrouit, Y. Polyanskiy, P. Rigollet, *A mathematical perspective on
Transformers* (arXiv:2312.10794) and *The emergence of clusters in self-attention dynamics*
(arXiv:2305.05465); P. Rigollet, *The mean-field dynamics of Transformers* (arXiv:2512.01868);
M. Burger, S. Kabri, Y. Korolev, T. Roith, L. Weigand (arXiv:2501.03096); Chen, Lin,
Polyanskiy, Rigollet (arXiv:2510.05554). Section numbers refer to the project spec
``shared/specs/token_dynamics.md``.

Stated here (definitions, spec §1.1):

* the SA velocity $\dot x_i=\mathbf P_{x_i}\sum_j\operatorname{softmax}_j(\beta\langle Qx_i,Kx_j\rangle)Vx_j$,
  the USA velocity with $\frac1n e^{\beta\langle Qx_i,Kx_j\rangle}$ instead of the softmax,
  the causal mask ($j\le i$), the Euclidean variant (no projection), as *tensor programs*
  (ordered SymPy assignments over indexed arrays, :class:`TensorProgram`);
* the interaction energy $E_\beta=\frac1{2\beta n^2}\sum_{ij}e^{\beta\langle x_i,Ax_j\rangle}$ (§1.4).

Derived here by SymPy (and tested):

* the equiangular reduction $\dot\rho$ (SA, USA) by substituting the equiangular Gram ansatz
  into the particle velocity (§2.1), for symbolic $n$ and explicitly for small $n$;
* its hitting times in closed form (exponential integral) by partial fractions and
  integration, proved by differentiation; the $\beta=0$ solution $\rho(t)$;
* the one-layer long-context Gram reduction and its critical limit $4\rho/(1+3\rho)$ (§2.5);
* the Kuramoto reduction in $d=2$ for general $V$ (Kuramoto–Sakaguchi plus a
  non-conformal term), and the first integral of the reversible case $V=\omega J$, $n=3$ (§2.4);
* the 4-particle energy and stationarity condition of Burger et al. (§2.7).

The batched velocity kernel is generated from the tensor program by :func:`generate_tensor`:
contractions become ``xp.einsum`` (BLAS-backed), the softmax is lowered to the stable
max-shifted form, every elementwise formula is printed by the project's ``XpPrinter``. The
same tensor program is *unrolled* at small sizes into scalar SymPy expressions (softmax by
its definition, no shift) and printed for mpmath: the 50-digit check of the kernel.
(The tensor IR is local to this model; it could move to ``derive/codegen`` if another
model needs it.)
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Mapping

import mpmath
import numpy as np
import sympy as sp

from numerics.backend import Backend
from numerics.results import Status

from ..codegen import Kernel, Program
from ..codegen.tensor import Softmax, TensorProgram, generate_tensor, tensor_sum, unroll
from ..declarations import Observable, declare
from ..model import Equation, Model
from ..params import Domain, Parameter, nonnegative

__all__ = ["TokenDynamics", "TensorProgram", "Softmax", "generate_tensor", "unroll",
           "velocity_program", "energy_program", "kuramoto_program"]

# ============================================================================ tensor programs
#: index symbols: batch (b), query token (i), key token (j), features (a, c)
b_, i_, j_, a_, c_ = sp.symbols("b i j a c", integer=True)
#: size symbols, bound from the input shapes by the generated kernel
n_tok = sp.Symbol("n", positive=True, integer=True)
d_dim = sp.Symbol("d", positive=True, integer=True)
_sum = tensor_sum


# --- the definitions -------------------------------------------------------------------
X = sp.IndexedBase("X")
Qm, Km, Vm = sp.IndexedBase("Q"), sp.IndexedBase("K"), sp.IndexedBase("V")
BETA = sp.IndexedBase("beta")
SHIFT = sp.IndexedBase("shift")
MASK = sp.IndexedBase("mask")
THETA = sp.IndexedBase("theta")
(QX, KX, VX, S, L, W, U, R, v_out, E_out, E_row, E_pair) = (
    sp.IndexedBase(n) for n in ("QX", "KX", "VX", "S", "L", "W", "U", "R", "v", "E", "Erow",
                                 "Epair"))

DYNAMICS = ("SA", "USA")


def velocity_program(dynamics: str = "SA", weights: str = "identity", geometry: str = "sphere",
                     causal: bool = False) -> TensorProgram:
    r"""The velocity field as a tensor program (spec §1.1, §1.2).

    ``dynamics``: "SA" ($\operatorname{softmax}_j$) or "USA" ($\frac1n e^{L_{ij}-s_b}$, the
    factor $e^{-s_b}$ a per-system time rescaling, $s_b=0$ gives the USA field itself);
    ``weights``: "identity" ($Q=K=V=I$) or "general" ($Q,K,V$ inputs); ``geometry``:
    "sphere" (tangent projection) or "euclidean" (none); ``causal``: mask input, $j\le i$.
    """
    if dynamics not in DYNAMICS:
        raise ValueError(f"dynamics must be one of {DYNAMICS}, got {dynamics!r}")
    if weights not in ("identity", "general"):
        raise ValueError(f"weights must be 'identity' or 'general', got {weights!r}")
    if geometry not in ("sphere", "euclidean"):
        raise ValueError(f"geometry must be 'sphere' or 'euclidean', got {geometry!r}")
    b, i, j, a, c = b_, i_, j_, a_, c_
    inputs: list[tuple[str, int]] = [("X", 3), ("beta", 1)]
    st: list[tuple[str, tuple, sp.Expr]] = []
    if weights == "general":
        inputs += [("Q", 2), ("K", 2), ("V", 2)]
        st += [("QX", (b, i, c), _sum(Qm[c, a] * X[b, i, a], a, d_dim)),
               ("KX", (b, i, c), _sum(Km[c, a] * X[b, i, a], a, d_dim)),
               ("S", (b, i, j), _sum(QX[b, i, c] * KX[b, j, c], c, d_dim)),
               ("VX", (b, i, a), _sum(Vm[a, c] * X[b, i, c], c, d_dim))]
        vx = VX
    else:
        st += [("S", (b, i, j), _sum(X[b, i, a] * X[b, j, a], a, d_dim))]
        vx = X
    st.append(("L", (b, i, j), BETA[b] * S[b, i, j]))
    if dynamics == "SA":
        w = Softmax(L[b, i, j], j, MASK[i, j]) if causal else Softmax(L[b, i, j], j)
    else:
        inputs.append(("shift", 1))
        w = sp.exp(L[b, i, j] - SHIFT[b]) / n_tok
        if causal:
            w = w * MASK[i, j]
    if causal:
        inputs.append(("mask", 2))
    st += [("W", (b, i, j), w), ("U", (b, i, a), _sum(W[b, i, j] * vx[b, j, a], j, n_tok))]
    if geometry == "sphere":
        st += [("R", (b, i), _sum(U[b, i, a] * X[b, i, a], a, d_dim)),
               ("v", (b, i, a), U[b, i, a] - R[b, i] * X[b, i, a])]
    else:
        st += [("v", (b, i, a), U[b, i, a])]
    name = f"velocity_{dynamics.lower()}_{weights}_{geometry}" + ("_causal" if causal else "")
    return TensorProgram(name, tuple(inputs), ((n_tok, "X", 1), (d_dim, "X", 2)), tuple(st),
                         ("v",), doc=f"{dynamics} velocity, {weights} weights, {geometry}"
                         + (", causal" if causal else "") + " (spec §1.1)",
                         input_kinds=(("X", "unit_rows"), ("mask", "causal_mask")))


def energy_program(weights: str = "identity") -> TensorProgram:
    r"""$E_\beta=\frac1{2\beta n^2}\sum_{ij}e^{\beta\langle x_i,Ax_j\rangle}$ per system (§1.4)."""
    b, i, j, a, c = b_, i_, j_, a_, c_
    Am = sp.IndexedBase("A")
    inputs: list[tuple[str, int]] = [("X", 3), ("beta", 1)]
    if weights == "general":
        inputs.append(("A", 2))
        st = [("KX", (b, i, a), _sum(Am[a, c] * X[b, i, c], c, d_dim)),
              ("S", (b, i, j), _sum(X[b, i, a] * KX[b, j, a], a, d_dim))]
    else:
        st = [("S", (b, i, j), _sum(X[b, i, a] * X[b, j, a], a, d_dim))]
    st += [("Epair", (b, i, j), sp.exp(BETA[b] * S[b, i, j])),
           ("Erow", (b, i), _sum(E_pair[b, i, j], j, n_tok)),
           ("E", (b,), _sum(E_row[b, i] / (2 * BETA[b] * n_tok**2), i, n_tok))]
    return TensorProgram(f"energy_{weights}", tuple(inputs), ((n_tok, "X", 1), (d_dim, "X", 2)),
                         tuple(st), ("E",), doc="interaction energy (spec §1.4)",
                         input_kinds=(("X", "unit_rows"),))


# ============================================================================ scalar symbols
BETA_P = Parameter("beta", nonnegative, r"\beta", "inverse temperature")
N_P = Parameter("n", Domain(2.0, float("inf"), lo_closed=True, integer=True), "n",
                "number of tokens")
RHO0_P = Parameter("rho0", Domain(0.0, 1.0, lo_closed=True), r"\rho_0",
                   "initial pairwise inner product (equiangular start)")
TARGET_P = Parameter("target", Domain(0.0, 1.0), r"\rho_\star",
                     "inner product whose hitting time is returned")

beta, n, rho0, target = (p.symbol for p in (BETA_P, N_P, RHO0_P, TARGET_P))
rho = sp.Symbol("rho", real=True)
t = sp.Symbol("t", nonnegative=True)
gamma = sp.Symbol("gamma", positive=True)
t_sa, t_usa, rhodot_sa, rhodot_usa, rho_t = sp.symbols("t_sa t_usa rhodot_sa rhodot_usa rho_t")
cos_out = sp.Symbol("cos_out")
Fs, Gs = sp.Function("F"), sp.Function("G")

SYMBOL_NAMES = {t_sa: r"t_{\rm SA}", t_usa: r"t_{\rm USA}", rhodot_sa: r"\dot\rho_{\rm SA}",
                rhodot_usa: r"\dot\rho_{\rm USA}", rho_t: r"\rho(t)", rho0: r"\rho_0",
                target: r"\rho_\star", cos_out: r"\langle\theta_1,\theta_2\rangle_{\rm out}"}


class _GramVector:
    """A vector written as a combination of the tokens, ``{token: coefficient}``; inner
    products through a symbolic Gram matrix. Used to substitute the equiangular ansatz
    into the particle velocity without coordinates."""

    def __init__(self, coeffs: Mapping[int, sp.Expr]):
        self.c = dict(coeffs)

    def __sub__(self, other: "_GramVector") -> "_GramVector":
        out = dict(self.c)
        for k, v in other.c.items():
            out[k] = out.get(k, 0) - v
        return _GramVector(out)

    def scale(self, s: sp.Expr) -> "_GramVector":
        return _GramVector({k: s * v for k, v in self.c.items()})

    def dot(self, other: "_GramVector", G: sp.Matrix) -> sp.Expr:
        return sp.Add(*[a * b * G[k, l] for k, a in self.c.items() for l, b in other.c.items()])


def gram_velocity(G: sp.Matrix, dynamics: str, beta_: sp.Expr) -> list[_GramVector]:
    r"""The identity-weight velocity (§1.1) of every token, as combinations of the tokens:
    $v_i=U_i-\langle U_i,x_i\rangle x_i$, $U_i=\sum_jw_{ij}x_j$, $w$ the SA/USA weights of
    the logits $\beta G_{ij}$ (the same statements as :func:`velocity_program`)."""
    m = G.shape[0]
    out = []
    for i in range(m):
        logits = [beta_ * G[i, j] for j in range(m)]
        if dynamics == "SA":
            Z = sp.Add(*[sp.exp(lg) for lg in logits])
            w = [sp.exp(lg) / Z for lg in logits]
        else:
            w = [sp.exp(lg) / m for lg in logits]
        Ui = _GramVector({j: w[j] for j in range(m)})
        xi = _GramVector({i: 1})
        out.append(Ui - xi.scale(Ui.dot(xi, G)))
    return out


def _primitive(expr: sp.Expr) -> sp.Expr:
    r"""An antiderivative in $\rho$ of ``expr`` = (sum of $C e^{k\rho}$) / (product of linear
    factors positive on $[0,1)$): partial fractions of the rational part, then term-wise
    $\int e^{k\rho}/(1+a\rho)\,d\rho=e^{-k/a}\mathrm{Ei}(k(1+a\rho)/a)/a$ or a logarithm."""
    num, den = sp.fraction(sp.factor(expr))
    poly = sp.Mul(*[f for f in sp.Mul.make_args(den) if f.is_polynomial(rho)])
    rest = sp.powsimp(sp.expand(num * poly / den))  # exponential factors of 1/den
    total = sp.Integer(0)
    for pf in sp.Add.make_args(sp.apart(1 / poly, rho)):
        pnum, lin = sp.fraction(sp.factor(pf))
        a1, a0 = sp.Poly(lin, rho).all_coeffs()
        # normalise the linear factor to u = 1 + (a1/a0) rho, positive on [0, 1)
        pnum, lin, a1 = sp.cancel(pnum / a0), sp.expand(lin / a0), sp.cancel(a1 / a0)
        for term in sp.Add.make_args(sp.expand(pnum * rest)):
            k = sp.cancel(sp.diff(sp.log(term), rho))  # term = C e^{k rho}
            C = sp.simplify(term * sp.exp(-k * rho))
            if k == 0:
                total += sp.cancel(C / a1) * sp.log(lin)
            else:  # u = 1 + a1 rho > 0: int e^{k rho}/u drho = e^{-k/a1} Ei(k u/a1)/a1
                total += (sp.cancel(C / a1) * sp.exp(sp.cancel(-k / a1))
                          * sp.Ei(sp.factor(k * lin / a1)))
    total = sp.powsimp(sp.expand(total))
    return sp.collect(total, sorted(total.atoms(sp.Ei) | total.atoms(sp.log),
                                    key=sp.default_sort_key), sp.factor)



# ============================================================================ the model
class TokenDynamics(Model):
    """Self-attention dynamics of tokens on the sphere: equiangular hitting times and more."""

    name = "token-dynamics"
    title = ("Tokens as interacting particles: self-attention dynamics "
             "(Geshkovski, Letrouit, Polyanskiy, Rigollet)")
    paper = "arXiv:2312.10794, arXiv:2305.05465, arXiv:2512.01868, arXiv:2501.03096"
    parameters = (BETA_P, N_P, RHO0_P, TARGET_P)
    symbol_names = SYMBOL_NAMES
    observables = ("t_sa", "t_usa")
    #: hitting times are non-negative (and finite where the target is reached)
    observable_info = declare(
        Observable("t_sa", "hitting time of the target cosine, self-attention dynamics", r"t_{\rm SA}", "1", 0.0),
        Observable("t_usa", "hitting time of the target cosine, unnormalised self-attention",
                   r"t_{\rm USA}", "1", 0.0),
    )

    # ---- §2.1 equiangular reduction -------------------------------------------------------
    def equiangular_rhs_explicit(self, m: int, dynamics: str) -> sp.Expr:
        r"""$\dot\rho=\frac{d}{dt}\langle x_1,x_2\rangle$ for $m$ explicit tokens with the
        equiangular Gram matrix substituted (derived from the particle velocity)."""
        G = sp.Matrix(m, m, lambda k, l: 1 if k == l else rho)
        v = gram_velocity(G, dynamics, beta)
        x1, x2 = _GramVector({0: 1}), _GramVector({1: 1})
        return sp.simplify(v[0].dot(x2, G) + x1.dot(v[1], G))

    @cached_property
    def equiangular_rhs(self) -> dict[str, sp.Expr]:
        r"""$\dot\rho$ for symbolic $n$: the sums over $j$ split into $j=k$, $j=l$ and the
        $n-2$ others, each class with its Gram entries (derived). Checked against
        :meth:`equiangular_rhs_explicit` for small $n$ in the tests."""
        out = {}
        for dyn in DYNAMICS:
            if dyn == "SA":
                Z = sp.exp(beta) + (n - 1) * sp.exp(beta * rho)
                w_self, w_other = sp.exp(beta) / Z, sp.exp(beta * rho) / Z
            else:
                w_self, w_other = sp.exp(beta) / n, sp.exp(beta * rho) / n
            # <U_k, x_l> = w_kk rho + w_kl * 1 + (n-2) w_kj rho;  <U_k, x_k> = w_kk + (n-1) w_kj rho
            U_kl = w_self * rho + w_other + (n - 2) * w_other * rho
            U_kk = w_self + (n - 1) * w_other * rho
            v_kl = U_kl - U_kk * rho
            out[dyn] = sp.factor(sp.simplify(2 * v_kl))
        return out

    @cached_property
    def stated_rhs(self) -> dict[str, sp.Expr]:
        """The spec's stated forms (for verification only)."""
        return {"SA": 2 * sp.exp(beta * rho) * (1 - rho) * ((n - 1) * rho + 1)
                / (sp.exp(beta) + (n - 1) * sp.exp(beta * rho)),
                "USA": 2 / n * sp.exp(beta * rho) * (1 - rho) * ((n - 1) * rho + 1)}

    @cached_property
    def antiderivatives(self) -> dict[str, sp.Expr]:
        r"""$F$ with $F'(\rho)=2n/\dot\rho_{\rm SA}$ and $G$ with $G'(\rho)=2/\dot\rho_{\rm USA}$,
        so that $t=(F(\rho)-F(\rho_0))/(2n)$ resp. $(G(\rho)-G(\rho_0))/2$ (derived:
        partial fractions in $\rho$, then term-wise integration; exp_polar removed)."""
        sa = _primitive(2 * n / self.equiangular_rhs["SA"])
        usa = _primitive(2 / self.equiangular_rhs["USA"])
        return {"SA": sa, "USA": usa}

    @cached_property
    def stated_antiderivatives(self) -> dict[str, sp.Expr]:
        F = (-sp.Ei(beta * (1 - rho)) + sp.exp(beta * n / (n - 1))
             * sp.Ei(-beta * (1 + (n - 1) * rho) / (n - 1))
             + (n - 1) * sp.log((1 + (n - 1) * rho) / (1 - rho)))
        G = (-sp.exp(-beta) * sp.Ei(beta * (1 - rho)) + sp.exp(beta / (n - 1))
             * sp.Ei(-beta * (1 + (n - 1) * rho) / (n - 1)))
        return {"SA": F, "USA": G}

    @cached_property
    def antiderivative_beta0(self) -> sp.Expr:
        r"""$F_0$ with $F_0'=2n/\dot\rho$ at $\beta=0$ (SA = USA there; derived)."""
        return _primitive(sp.simplify(2 * n / self.equiangular_rhs["SA"].subs(beta, 0)))

    @cached_property
    def beta0_solution(self) -> sp.Expr:
        r"""$\rho(t)$ at $\beta=0$: $e^{F_0/n}$ is a Möbius function of $\rho$; solve
        $e^{F_0(\rho)/n}=e^{F_0(\rho_0)/n}e^{2t}$ (linear in $\rho$; derived)."""
        y = sp.simplify(sp.exp(sp.expand(self.antiderivative_beta0 / n)))
        (sol,) = sp.solve(sp.Eq(y, y.subs(rho, rho0) * sp.exp(2 * t)), rho)
        return sp.factor(sol)

    def hitting_time_exprs(self) -> dict[str, sp.Expr]:
        """Closed forms of the hitting times from rho0 to target (β = 0 branch separate)."""
        F, G = self.antiderivatives["SA"], self.antiderivatives["USA"]
        F0 = self.antiderivative_beta0
        t0 = sp.expand((F0.subs(rho, target) - F0.subs(rho, rho0)) / (2 * n))
        tsa = (F.subs(rho, target) - F.subs(rho, rho0)) / (2 * n)
        tusa = (G.subs(rho, target) - G.subs(rho, rho0)) / 2
        return {"SA": sp.Piecewise((t0, sp.Eq(beta, 0)), (tsa, True)),
                "USA": sp.Piecewise((t0, sp.Eq(beta, 0)), (tusa, True)),
                "beta0": t0}

    # ---- §2.5 long context ------------------------------------------------------------
    @cached_property
    def long_context_cos(self) -> sp.Expr:
        r"""Output cosine of one SA layer (no residual) on equiangular unit inputs with
        correlation $\rho$ and $\beta=\gamma\log n$, written with $a=e^{\beta(1-\rho)}$:
        $y_i=\sum_jw_{ij}x_j$, $\cos=\langle y_1,y_2\rangle/|y_1|^2$ (derived by the Gram
        algebra with the classes $j=1$, $j=2$, others)."""
        a = sp.Symbol("a", positive=True)
        Z = a + n - 1
        p, q = a / Z, 1 / Z  # weights divided by e^{beta rho}
        # y_1 = (p - q) x_1 + q S, S = sum_j x_j ; <x_i,S> = 1 + (n-1) rho ; <S,S> = n(1+(n-1)rho)
        xs = 1 + (n - 1) * rho
        SS = n * xs
        y12 = (p - q) ** 2 * rho + 2 * (p - q) * q * xs + q**2 * SS
        y11 = (p - q) ** 2 + 2 * (p - q) * q * xs + q**2 * SS
        return sp.simplify(y12 / y11).subs(a, n ** (gamma * (1 - rho)))

    @cached_property
    def long_context_critical_limit(self) -> sp.Expr:
        """Limit n -> ∞ of the output cosine at γ = 1/(1-ρ) (derived by ``limit``)."""
        e = self.long_context_cos.subs(gamma, 1 / (1 - rho))
        return sp.simplify(sp.limit(sp.simplify(e), n, sp.oo))

    # ---- §2.4 Kuramoto reduction (d = 2) ------------------------------------------------
    @cached_property
    def kuramoto_pair_term(self) -> dict[str, sp.Expr]:
        r"""$\langle t_i,Vx_j\rangle$ with $x=(\cos\theta,\sin\theta)$, $t_i=(-\sin\theta_i,\cos\theta_i)$,
        for general $V$ and its decomposition $V=\alpha I+\omega J+\sigma S_\chi$ (derived):
        $\alpha\sin(\theta_j-\theta_i)+\omega\cos(\theta_j-\theta_i)-\sigma\sin(\theta_i+\theta_j-2\chi)$."""
        th_i, th_j = sp.symbols("theta_i theta_j", real=True)
        v11, v12, v21, v22 = sp.symbols("v11 v12 v21 v22", real=True)
        al, om, sg, chi = sp.symbols("alpha omega sigma chi", real=True)
        xj = sp.Matrix([sp.cos(th_j), sp.sin(th_j)])
        ti = sp.Matrix([-sp.sin(th_i), sp.cos(th_i)])
        Vgen = sp.Matrix([[v11, v12], [v21, v22]])
        general = sp.expand((ti.T * Vgen * xj)[0])
        Vdec = (al * sp.eye(2) + om * sp.Matrix([[0, -1], [1, 0]])
                + sg * sp.Matrix([[sp.cos(2 * chi), sp.sin(2 * chi)],
                                  [sp.sin(2 * chi), -sp.cos(2 * chi)]]))
        dec = (ti.T * Vdec * xj)[0]
        reduced = (al * sp.sin(th_j - th_i) + om * sp.cos(th_j - th_i)
                   - sg * sp.sin(th_i + th_j - 2 * chi))
        return {"general": general, "decomposed": dec, "reduced": reduced,
                "logit": sp.cos(th_i - th_j)}

    def kuramoto_reduction_holds(self) -> bool:
        """True iff the decomposed pair term equals the Kuramoto form identically."""
        k = self.kuramoto_pair_term
        return sp.simplify(sp.expand_trig(k["decomposed"] - k["reduced"])) == 0

    @cached_property
    def hamiltonian_n3(self) -> tuple[sp.Expr, sp.Expr]:
        """:meth:`first_integral_n3` for an even coupling (the case V = ωJ)."""
        return self.first_integral_n3(even=True)

    def first_integral_n3(self, even: bool = True) -> tuple[sp.Expr, sp.Expr]:
        r"""For $\dot\theta_i=\frac1n\sum_jf(\theta_j-\theta_i)$ with $f$ even (USA with
        $V=\omega J$: $f(\phi)=\omega e^{\beta\cos\phi}\cos\phi$), $n=3$: the first integral
        $H=\frac13[F(\theta_2-\theta_1)+F(\theta_3-\theta_2)+F(\theta_1-\theta_3)]$, $F'=f$,
        $F$ odd. Returns $(H, dH/dt)$, simplified using evenness when ``even`` (derived: 0;
        without evenness it does not vanish)."""
        th = sp.symbols("theta1:4", real=True)
        f, Fp = sp.Function("f"), sp.Function("F")
        m = 3
        thdot = [sp.Add(*[f(th[j] - th[i]) for j in range(m)]) / m for i in range(m)]
        H = (Fp(th[1] - th[0]) + Fp(th[2] - th[1]) + Fp(th[0] - th[2])) / m
        dH = sp.Add(*[sp.diff(H, th[i]) * thdot[i] for i in range(m)])
        dH = dH.doit().replace(lambda e: isinstance(e, sp.Derivative),
                               lambda e: f(e.variables[0])).doit()
        dH = dH.replace(lambda e: isinstance(e, sp.Subs), lambda e: e.doit())

        def canon(e: sp.Expr) -> sp.Expr:  # evenness: f(x) = f(-x), one representative
            a = e.args[0]
            return f(min(a, sp.expand(-a), key=sp.default_sort_key))

        if even:
            dH = dH.replace(lambda e: getattr(e, "func", None) == f, canon)
        return H, sp.simplify(sp.expand(dH))

    # ---- §2.3 linearisation around uniform on the circle ----------------------------------
    @cached_property
    def circle_mode_rate(self) -> dict[str, sp.Expr]:
        r"""Growth rate of mode $k$ around the uniform measure on the circle (spec §2.3):
        $\lambda_k^{\rm USA}=k^2I_k(\beta)/\beta$, $\lambda_k^{\rm SA}=k^2I_k(\beta)/(\beta I_0(\beta))$
        [derived in the spec; evaluated with SymPy/mpmath, no generated kernel]."""
        k = sp.Symbol("k", positive=True, integer=True)
        return {"k": k, "USA": k**2 * sp.besseli(k, beta) / beta,
                "SA": k**2 * sp.besseli(k, beta) / (beta * sp.besseli(0, beta))}

    def fastest_circle_mode(self, beta_value: float) -> int:
        """argmax_k λ_k(β) (the same for SA and USA), by mpmath evaluation of the SymPy form."""
        k = self.circle_mode_rate["k"]
        f = sp.lambdify((k, beta), self.circle_mode_rate["USA"], modules="mpmath")
        vals = [float(f(kk, beta_value)) for kk in range(1, 200)]
        return int(np.argmax(vals)) + 1

    # ---- §2.7 Burger et al., 4 particles ------------------------------------------------
    @cached_property
    def four_particle(self) -> dict[str, sp.Expr]:
        r"""Tokens $(\pm a,\pm b)$, weights 1/4, $D=\mathrm{diag}(\lambda_1,\lambda_2)$:
        $E=\frac1{16}\sum e^{\langle x,Dy\rangle}$ summed explicitly and simplified, and the
        stationarity residual $dE/d(a^2)$ on $a^2+b^2=1$, divided by $\cosh\cosh$ (derived)."""
        s, l1, l2 = sp.symbols("s lambda1 lambda2", positive=True)  # s = a^2
        a, bb = sp.sqrt(s), sp.sqrt(1 - s)
        pts = [sp.Matrix([sa * a, sb * bb]) for sa in (1, -1) for sb in (1, -1)]
        D = sp.diag(l1, l2)
        E = sp.Add(*[sp.exp((p.T * D * q)[0]) for p in pts for q in pts]) / 16
        stated = sp.cosh(l1 * s) * sp.cosh(l2 * (1 - s))
        dE = sp.diff(stated, s)
        resid = sp.simplify(dE / (sp.cosh(l1 * s) * sp.cosh(l2 * (1 - s))))
        return {"E": E, "E_stated": stated, "stationarity": resid, "s": s, "l1": l1, "l2": l2}

    # ---- programs ---------------------------------------------------------------------------
    def programs(self) -> dict[str, Program]:
        hit = self.hitting_time_exprs()
        rhs = self.equiangular_rhs
        fp = self.four_particle
        return {
            "hitting_time": Program(
                "td_hitting_time", (beta, n, rho0, target),
                ((t_sa, hit["SA"]), (t_usa, hit["USA"])), (t_sa, t_usa),
                doc="equiangular hitting times, Ei closed forms (derived, spec §2.1)"),
            "equiangular_rhs": Program(
                "td_equiangular_rhs", (rho, beta, n),
                ((rhodot_sa, rhs["SA"]), (rhodot_usa, rhs["USA"])), (rhodot_sa, rhodot_usa),
                doc="reduced ODE of the equiangular ansatz (derived, spec §2.1)"),
            "equiangular_beta0": Program(
                "td_equiangular_beta0", (t, n, rho0), ((rho_t, self.beta0_solution),), (rho_t,),
                doc="rho(t) at beta = 0 (derived)"),
            "long_context": Program(
                "td_long_context", (rho, gamma, n), ((cos_out, self.long_context_cos),),
                (cos_out,), doc="one-layer output cosine, beta = gamma log n (derived, §2.5)"),
            "four_particle": Program(
                "td_four_particle", (fp["s"], fp["l1"], fp["l2"]),
                ((sp.Symbol("E4"), fp["E_stated"]), (sp.Symbol("dE4"), fp["stationarity"])),
                (sp.Symbol("E4"), sp.Symbol("dE4")),
                doc="Burger et al. 4-particle energy and stationarity residual (derived, §2.7)"),
        }

    def tensor_programs(self) -> dict[str, TensorProgram]:
        """Every velocity variant, the energy and the Kuramoto fields (declared kernels)."""
        out: dict[str, TensorProgram] = {}
        for dyn in DYNAMICS:
            for w in ("identity", "general"):
                for geo in ("sphere", "euclidean"):
                    for causal in (False, True):
                        tp = velocity_program(dyn, w, geo, causal)
                        out[tp.name] = tp
        for w in ("identity", "general"):
            tp = energy_program(w)
            out[tp.name] = tp
        for dyn in DYNAMICS:
            tp = kuramoto_program(dyn)
            out[tp.name] = tp
        return out

    def tensor_kernel(self, name: str) -> Kernel:
        """The generated kernel of tensor program ``name`` (from the model's kernel registry)."""
        progs = self.registry.programs()
        if not isinstance(progs.get(name), TensorProgram):
            raise KeyError(f"no tensor program {name!r}; have "
                           f"{sorted(k for k, p in progs.items() if isinstance(p, TensorProgram))}")
        return self.kernel(name)

    def velocity_kernel(self, dynamics: str = "SA", weights: str = "identity",
                        geometry: str = "sphere", causal: bool = False) -> Kernel:
        """The generated batched velocity kernel ``(xp, special, X, beta, [Q, K, V],
        [shift], [mask]) -> {'v': (B, n, d)}``."""
        return self.tensor_kernel(velocity_program(dynamics, weights, geometry, causal).name)

    def equations(self) -> list[Equation]:
        vp = velocity_program("SA", "general")
        st = {nm: ex for nm, _i, ex in vp.statements}
        fp = self.four_particle
        k = self.kuramoto_pair_term
        return [
            Equation("logits", L[b_, i_, j_], BETA[b_] * sp.Sum(Qm[c_, a_] * X[b_, i_, a_]
                     * Km[c_, sp.Symbol("e")] * X[b_, j_, sp.Symbol("e")], (a_, 0, d_dim - 1),
                     (c_, 0, d_dim - 1), (sp.Symbol("e"), 0, d_dim - 1)), "definition", "§1.1"),
            Equation("SA weights", W[b_, i_, j_], st["W"], "definition", "§1.1",
                     "lowered to the max-shifted (log-sum-exp) form"),
            Equation("USA weights", W[b_, i_, j_],
                     velocity_program("USA", "general").statements[5][2], "definition", "§1.1",
                     "shift_b rescales time; shift = 0 is the USA field"),
            Equation("attention output", U[b_, i_, a_], st["U"], "definition", "§1.1"),
            Equation("tangent projection", v_out[b_, i_, a_],
                     st["v"].subs(R[b_, i_], st["R"].xreplace({a_: c_})), "definition", "§1.1"),
            Equation("interaction energy", sp.Symbol("E_beta"),
                     sp.Sum(sp.exp(BETA[b_] * sp.Sum(X[b_, i_, a_] * sp.IndexedBase("A")[a_, c_]
                                                     * X[b_, j_, c_], (a_, 0, d_dim - 1),
                                                     (c_, 0, d_dim - 1))),
                            (i_, 0, n_tok - 1), (j_, 0, n_tok - 1)) / (2 * BETA[b_] * n_tok**2),
                     "definition", "§1.4"),
            Equation("equiangular ODE (SA)", rhodot_sa, self.equiangular_rhs["SA"], "derived",
                     "§2.1", "ansatz substituted into the particle velocity"),
            Equation("equiangular ODE (USA)", rhodot_usa, self.equiangular_rhs["USA"], "derived",
                     "§2.1"),
            Equation("SA antiderivative", Fs(rho), self.antiderivatives["SA"], "derived", "§2.1",
                     "t_SA = (F(target) - F(rho0))/(2n)"),
            Equation("USA antiderivative", Gs(rho), self.antiderivatives["USA"], "derived", "§2.1",
                     "t_USA = (G(target) - G(rho0))/2"),
            Equation("β = 0 solution", rho_t, self.beta0_solution, "derived", "§2.1"),
            Equation("long-context output cosine", cos_out, self.long_context_cos, "derived",
                     "§2.5", "β = γ log n, one SA layer on equiangular inputs"),
            Equation("long-context critical limit", sp.Symbol("c_crit"),
                     self.long_context_critical_limit, "derived", "§2.5", "γ = 1/(1-ρ), n → ∞"),
            Equation("Kuramoto pair term (d = 2)", sp.Symbol("K_ij"), k["reduced"], "derived",
                     "§2.4", "θ̇_i = Σ_j w_ij K_ij, V = αI + ωJ + σS_χ"),
            Equation("4-particle energy", sp.Symbol("E_4"), fp["E_stated"], "derived", "§2.7",
                     "equal to the explicit 16-term sum (tested)"),
            Equation("4-particle stationarity", sp.Symbol("r_4"), fp["stationarity"], "derived",
                     "§2.7", "zero at the critical a²"),
        ]

    # ---- pipeline ---------------------------------------------------------------------------
    def _check_target(self, r0: Any, tg: Any) -> None:
        if np.any(np.asarray(tg) <= np.asarray(r0)):
            raise ValueError("parameter 'target' must exceed 'rho0' (the equiangular flow "
                             f"increases rho); got target={tg!r}, rho0={r0!r}")

    def evaluate(self, params: Mapping[str, Any], backend: Backend) -> dict[str, Any]:
        """Hitting times by the generated closed-form kernel; non-finite values flagged."""
        xp, spc = backend.xp, backend.special
        bt, nn, r0, tg = (params[k] for k in ("beta", "n", "rho0", "target"))
        self._check_target(backend.to_numpy(r0), backend.to_numpy(tg))
        with np.errstate(all="ignore"):
            out = dict(self.kernel("hitting_time")(xp, spc, bt, nn, r0, tg))
        shape = bt.shape
        ok = xp.isfinite(out["t_sa"]) & xp.isfinite(out["t_usa"])
        status = xp.where(ok, int(Status.OK), int(Status.NONFINITE)).astype(xp.int8)
        for k in self.observables:
            out[k] = xp.where(ok, xp.broadcast_to(out[k], shape), xp.nan)
        out.update(converged=ok, residual=xp.zeros(shape), iterations=xp.zeros(shape, dtype=xp.int64),
                   status=status)
        return out

    def evaluate_mp(self, point: Mapping[str, Any], dps: int = 50) -> dict[str, Any]:
        vals = self.validate(point)
        self._check_target(vals["rho0"], vals["target"])
        with mpmath.workdps(dps):
            args = [mpmath.mpf(float(vals[k])) for k in ("beta", "n", "rho0", "target")]
            out = dict(self.kernel("hitting_time", "mpmath")(mpmath.mp, *args))
        out["iterations"] = 0
        return out

    def equiangular_hitting_time(self, beta: float, n: int, dynamics: str = "SA",
                                 rho0: float = 0.0, target: float = 0.999) -> float:
        r"""Time for the equiangular inner product to go from ``rho0`` to ``target``
        (spec §2.1; $Q=K=V=I$), ``dynamics`` "SA" or "USA"."""
        if dynamics not in DYNAMICS:
            raise ValueError(f"dynamics must be 'SA' or 'USA', got {dynamics!r}")
        vals = self.validate(dict(beta=beta, n=n, rho0=rho0, target=target))
        from numerics.backend import get_backend

        be = get_backend("numpy")
        out = self.evaluate({k: be.asarray(np.atleast_1d(v)) for k, v in vals.items()}, be)
        return float(out["t_sa" if dynamics == "SA" else "t_usa"][0])

    def random_points(self, rng: np.random.Generator, n: int) -> list[dict[str, float]]:
        """Random points of the domain (for ``attn-theory verify``): β ∈ {0} ∪ [1e-3, 60]
        (log scale), n ∈ [2, 1e5] (log scale, integer), ρ0 ∈ {0} ∪ [0, 0.9], target ∈ (ρ0, 1 - 1e-6)."""
        pts = []
        for _ in range(n):
            b = 0.0 if rng.random() < 0.1 else 10 ** rng.uniform(-3, math.log10(60))
            nn = float(max(2, round(10 ** rng.uniform(math.log10(2), 5))))
            r0 = 0.0 if rng.random() < 0.3 else rng.uniform(0, 0.9)
            tg = r0 + (1 - 1e-6 - r0) * rng.uniform(0.05, 1.0)
            pts.append(dict(beta=b, n=nn, rho0=r0, target=tg))
        return pts

    def simulate(self, **kwargs: Any) -> Any:
        """Independent particle simulation: :func:`numerics.simulate.token_dynamics.simulate`."""
        from numerics.simulate.token_dynamics import simulate

        return simulate(**kwargs)


def kuramoto_program(dynamics: str = "SA") -> TensorProgram:
    r"""$\dot\theta_i=\sum_jw_{ij}[\alpha\sin(\theta_j-\theta_i)+\omega\cos(\theta_j-\theta_i)
    -\sigma\sin(\theta_i+\theta_j-2\chi)]$, $w$ = softmax or $\frac1n e^{\cdot}$ of
    $\beta\cos(\theta_i-\theta_j)$ (§2.4, derived in :attr:`TokenDynamics.kuramoto_pair_term`).
    Inputs ``theta (B, n)``, ``beta, alpha, omega, sigma, chi`` of shape (B,)."""
    b, i, j = b_, i_, j_
    th_i, th_j = sp.symbols("theta_i theta_j", real=True)
    al, om, sg, chi = sp.symbols("alpha omega sigma chi", real=True)
    P = {s: sp.IndexedBase(s.name) for s in (al, om, sg, chi)}
    pair = (al * sp.sin(th_j - th_i) + om * sp.cos(th_j - th_i)
            - sg * sp.sin(th_i + th_j - 2 * chi))
    sub = {th_i: THETA[b, i], th_j: THETA[b, j], **{s: P[s][b] for s in P}}
    logit = BETA[b] * sp.cos(THETA[b, i] - THETA[b, j])
    st: list[tuple[str, tuple, sp.Expr]] = [("L", (b, i, j), logit)]
    if dynamics == "SA":
        st.append(("W", (b, i, j), Softmax(L[b, i, j], j)))
    else:
        st.append(("W", (b, i, j), sp.exp(L[b, i, j]) / n_tok))
    st.append(("K", (b, i, j), pair.xreplace(sub)))
    Kt = sp.IndexedBase("K")
    st.append(("thetadot", (b, i), _sum(W[b, i, j] * Kt[b, i, j], j, n_tok)))
    inputs = (("theta", 2), ("beta", 1), ("alpha", 1), ("omega", 1), ("sigma", 1), ("chi", 1))
    return TensorProgram(f"kuramoto_{dynamics.lower()}", inputs, ((n_tok, "theta", 1),),
                         tuple(st), ("thetadot",), doc=f"{dynamics} Kuramoto reduction, d = 2 (§2.4)")


#: the registry entry (see derive/models/__init__.py)
MODEL = TokenDynamics
