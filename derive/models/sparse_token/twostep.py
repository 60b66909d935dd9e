r"""The two gradient steps of the sparse-token model (spec §3.2, Thm 3), derived by SymPy.

Nothing here is typed from the result: SymPy differentiates the classifier, takes the Gaussian
expectations over the data model, and identifies the dependence on $(L, R)$.

1. **Gradients at initialisation** (:func:`gradients_at_init`): for a concrete $L$ the score
   $s(w,q)=w^\top X^\top\operatorname{softmax}(\beta Xq)+b$ is written with a symbolic token
   matrix and differentiated: $\nabla_w s|_{q=0}=\bar x$, $\nabla_q s|_{q=0}=\frac\beta LX^\top PXw$,
   $P=I-\frac1L\mathbf 1\mathbf 1^\top$ (returned, and checked against those forms in the tests).
2. **Step 1** (:func:`step1_derived`): $w^{(1)}=-\eta_w\frac1{n_0}\sum_i\ell'(y_i,b^{(1)})\bar x_i$,
   its mean (class average, SymPy sum over $y=\pm1$), its noise ($\|\bar z\|^2\to d/L$,
   $n_0=\alpha_0d$) and the self-interaction of a training sample with its own gradient.
3. **Step 2** (:func:`step2_moments`): per sample, $G=h(S)\,X^\top PXw^{(1)}$ with
   $h=\ell'(y,S)$, $S=b^{(1)}+w^{(1)\top}\bar x$. In the frame $(\xi,\hat u,\text{rest})$,
   $w^{(1)}=m_1\xi+|u|\hat u$, the token vectors $z_\xi=Z\xi$, $z_u=Z\hat u$ are i.i.d.
   $\mathcal N(0,I_L)$ and $S=\mu_y+\sigma_1\zeta$ with $\zeta=c^\top(z_\xi,z_u)$. For a concrete
   $(L,R)$ SymPy builds the quadratic forms $G_\xi=h\,(X\xi)^\top PXw$, $G_u=h\,z_u^\top PXw$,
   $N=h^2\|PXw\|^2$, and conditions on $\zeta$ exactly:
   $\mathbb E[z^\top Az+a^\top z\mid\zeta]=\zeta^2c^\top Ac+\operatorname{tr}A-c^\top Ac+\zeta a^\top c$;
   the $\zeta$-dependent parts are returned (they vanish: $P\mathbf 1=0$), the rest multiplies
   $\mathbb E_y[h]$ or $\mathbb E_y[h^2]$, which stay symbols (1-D integrals lowered to
   Gauss–Hermite quadrature on the generated integrand kernel).
4. **General $(L,R)$** (:func:`step2_general`): $L\cdot A$, $\mathbb E[G_u]$ and $L\cdot C$ are
   polynomials in $(L,R)$ of total degree $\le3$ (entries of $P$ are $1$ and $1/L$, at most two
   $P$'s per form); SymPy solves for their coefficients exactly from all $1\le R\le L\le5$
   and checks the result at held-out $(L,R)$ in the tests.

$A=\mathbb E[G_\xi]$, $B^2=\mathbb E[G_u]^2$, $C=\mathbb E[N]/\alpha_0$ (the $d$ rest directions,
averaged over $n_0=\alpha_0d$ samples); $\langle q^{(2)},\xi\rangle=-\eta_q\beta A/L$,
$\|q^{(2)}\|=\frac{\eta_q\beta}L\sqrt{A^2+B^2+C}$.
"""
from __future__ import annotations

from functools import lru_cache

import sympy as sp

from . import statement as st

__all__ = ["gradients_at_init", "step1_derived", "step2_moments", "step2_general"]


def gradients_at_init(Lc: int, dc: int = 2) -> dict[str, sp.Matrix]:
    r"""SymPy gradients of the attention score at ``q = 0`` for a concrete ``L, d``:
    ``grad_w`` (at any ``w``), ``grad_q`` (at ``q = 0``), and the stated forms ``xbar``,
    ``(beta / L) X^T P X w`` for comparison."""
    X = sp.Matrix(Lc, dc, lambda i, j: sp.Symbol(f"X_{i}{j}", real=True))
    q = sp.Matrix(dc, 1, lambda i, j: sp.Symbol(f"q_{i}", real=True))
    w = sp.Matrix(dc, 1, lambda i, j: sp.Symbol(f"w_{i}", real=True))
    s = st.beta * X * q
    e = s.applyfunc(sp.exp)
    a = e / sum(e)
    score = (w.T * X.T * a)[0] + st.bb
    zero = {qi: 0 for qi in q}
    gw = sp.Matrix([sp.diff(score, wi) for wi in w]).subs(zero)
    gq = sp.Matrix([sp.diff(score, qi) for qi in q]).subs(zero)
    P = sp.eye(Lc) - sp.ones(Lc, Lc) / Lc
    return dict(grad_w=gw.applyfunc(sp.simplify), grad_q=gq.applyfunc(sp.simplify),
                xbar=X.T * sp.ones(Lc, 1) / Lc, stated_q=st.beta / Lc * X.T * P * X * w)


@lru_cache(maxsize=None)
def step1_derived() -> tuple[tuple[sp.Symbol, sp.Expr], ...]:
    r"""Step 1 by SymPy: $c_\pm=\partial_z\ell(\pm1,z)|_{b^{(1)}}$ (differentiation of the loss),
    $m_1=\langle w^{(1)},\xi\rangle=-\eta_w\mathbb E[c_y\,\theta y^+R/L]$ (class average),
    $u^2=\eta_w^2\mathbb E[c_y^2]\,\mathbb E\|\bar z\|^2/n_0$ with $\mathbb E\|\bar z\|^2=d/L$,
    $n_0=\alpha_0d$; a training sample's pre-activation $S=b^{(1)}+w^{(1)\top}\bar x_i$ has mean
    $\mu_y=b^{(1)}+m_1\theta y^+R/L-\eta_wc_y\|\bar x_i\|^2/n_0$ (its own term) and standard
    deviation $\sigma_1=\sqrt{(m_1^2+u^2)/L}$."""
    d, n0, zz = sp.symbols("d n_0 z", positive=True)
    cy = {1: st.c_p, -1: st.c_m}
    prob = {1: st.pi, -1: 1 - st.pi}
    yplus = {1: 1, -1: 0}
    c_def = {yv: sp.diff(st.loss_fn(sp.Integer(yv), zz), zz).subs(zz, st.b1) for yv in (1, -1)}
    # mean of -eta_w c_y xbar along xi: xbar . xi = theta y+ R / L (+ noise of mean 0)
    m1e = -st.eta_w * sum(prob[yv] * cy[yv] * st.theta * yplus[yv] * st.R / st.L for yv in (1, -1))
    # noise: (eta_w / n0)^2 sum_i c_i^2 |zbar_i|^2 -> eta_w^2 E[c^2] (d / L) / n0
    u2e = (st.eta_w**2 * sum(prob[yv] * cy[yv]**2 for yv in (1, -1)) * (d / st.L) / n0)
    u2e = sp.simplify(u2e.subs(n0, st.alpha0 * d))
    mu = {yv: sp.simplify((st.b1 + st.m1 * st.theta * yplus[yv] * st.R / st.L
                           - st.eta_w * cy[yv] * (d / st.L) / n0).subs(n0, st.alpha0 * d))
          for yv in (1, -1)}
    return ((st.c_p, c_def[1]), (st.c_m, c_def[-1]), (st.m1, m1e), (st.u2, u2e),
            (st.cos_w, st.m1 / sp.sqrt(st.m1**2 + st.u2)),
            (st.sigma1, sp.sqrt((st.m1**2 + st.u2) / st.L)),
            (st.mu_p, mu[1]), (st.mu_m, mu[-1]))


def _cond_expect(Q: sp.Expr, z: list[sp.Symbol], c: sp.Matrix, zeta: sp.Symbol) -> sp.Expr:
    r"""$\mathbb E[Q(z)\mid c^\top z=\zeta]$ for $z\sim\mathcal N(0,I)$, $\|c\|=1$, $Q$ quadratic:
    $z\mid\zeta\sim\mathcal N(c\zeta,I-cc^\top)$."""
    poly = sp.Poly(sp.expand(Q), *z)
    n = len(z)
    A = sp.zeros(n, n)
    a = sp.zeros(n, 1)
    a0 = sp.Integer(0)
    for mon, coef in poly.terms():
        deg = [i for i, k in enumerate(mon) for _ in range(k)]
        if len(deg) == 2:
            i, j = deg
            A[i, j] += coef / 2
            A[j, i] += coef / 2
        elif len(deg) == 1:
            a[deg[0]] += coef
        elif len(deg) == 0:
            a0 += coef
        else:
            raise ValueError("quadratic forms only")
    cAc = (c.T * A * c)[0]
    return zeta**2 * cAc + A.trace() - cAc + zeta * (a.T * c)[0] + a0


@lru_cache(maxsize=None)
def step2_moments(Lc: int, Rc: int) -> dict[str, sp.Expr]:
    r"""For concrete ``(L, R)``: $A=\mathbb E[G_\xi]$, $E_u=\mathbb E[G_u]$, $N=\mathbb E[h^2\|PXw\|^2]$
    in terms of $\mathbb E_\pm[h]$, $\mathbb E_\pm[h^2]$ (symbols), and the coefficients of $\zeta$,
    $\zeta^2$ left after conditioning (``zeta_terms``; all zero)."""
    zeta = sp.Symbol("zeta_c", real=True)
    un = sp.Symbol("u_n", positive=True)  # |u| = sqrt(u2)
    zx = [sp.Symbol(f"zx{i}", real=True) for i in range(Lc)]
    zu = [sp.Symbol(f"zu{i}", real=True) for i in range(Lc)]
    v = sp.Matrix([1] * Rc + [0] * (Lc - Rc))  # the R-subset (exchangeable tokens)
    P = sp.eye(Lc) - sp.ones(Lc, Lc) / Lc
    Zx, Zu = sp.Matrix(zx), sp.Matrix(zu)
    W = st.m1 * Zx + un * Zu  # token projections of Z w1
    sig = sp.sqrt(Lc * (st.m1**2 + un**2)) / Lc  # sd of 1^T W / L
    c = sp.Matrix([st.m1] * Lc + [un] * Lc) / (Lc * sig)  # zeta = c . (zx, zu), |c| = 1
    Eh = {1: (st.Eh_p, st.Eh2_p), 0: (st.Eh_m, st.Eh2_m)}
    prob = {1: st.pi, 0: 1 - st.pi}
    out = {"A": 0, "E_u": 0, "N": 0}
    zeta_terms = []
    for yp in (1, 0):
        Xw = st.theta * yp * st.m1 * v + W
        Xxi = st.theta * yp * v + Zx
        forms = {"A": (Xxi.T * P * Xw)[0], "E_u": (Zu.T * P * Xw)[0], "N": (Xw.T * P * Xw)[0]}
        for name, Q in forms.items():
            e = sp.expand(_cond_expect(Q, zx + zu, c, zeta))
            zeta_terms += [sp.cancel(e.coeff(zeta, 1)), sp.cancel(e.coeff(zeta, 2))]
            k = 1 if name == "N" else 0  # h^2 for the noise, h for the means
            out[name] += prob[yp] * Eh[yp][k] * sp.cancel(e.coeff(zeta, 0))
    res = {k: sp.expand(v_.subs(un, sp.sqrt(st.u2))) for k, v_ in out.items()}
    res["zeta_terms"] = zeta_terms
    return res


#: (L, R) points used to identify the polynomial dependence; held-out points are in the tests
FIT_POINTS = tuple((Lc, Rc) for Lc in range(1, 6) for Rc in range(1, Lc + 1))


@lru_cache(maxsize=None)
def step2_general() -> dict[str, sp.Expr]:
    r"""$A$, $B^2$, $C$ for general $(L,R)$: $L\cdot A$, $E_u$ and $L\cdot N$ identified as
    polynomials of total degree $\le3$ in $(L,R)$ from :data:`FIT_POINTS` (exact rational
    linear algebra); $B^2=E_u^2$, $C=N/\alpha_0$."""
    mons = [(i, j) for i in range(4) for j in range(4) if i + j <= 3]
    # 15 points for 10 monomials (least squares, exact when the degree bound holds)
    M = sp.Matrix([[sp.Integer(Lc)**i * sp.Integer(Rc)**j for i, j in mons]
                   for Lc, Rc in FIT_POINTS])
    keep = []
    for k in range(len(mons)):
        if M[:, keep + [k]].rank() == len(keep) + 1:
            keep.append(k)
    Mk = M[:, keep]
    out = {}
    for name, scale in (("A", st.L), ("E_u", 1), ("N", st.L)):
        rhs = sp.Matrix([sp.expand(step2_moments(Lc, Rc)[name] * (Lc if scale == st.L else 1))
                         for Lc, Rc in FIT_POINTS])
        coef = (Mk.T * Mk).LUsolve(Mk.T * rhs)
        poly = sum(sp.expand(coef[k]) * st.L**mons[keep[k]][0] * st.R**mons[keep[k]][1]
                   for k in range(len(keep)))
        out[name] = sp.factor_terms(sp.expand(poly / scale))
    return {"A": out["A"], "B2": out["E_u"]**2, "C": out["N"] / st.alpha0, "E_u": out["E_u"]}
