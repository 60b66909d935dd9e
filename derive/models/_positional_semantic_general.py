r"""General $L$ tokens, rank-$r$ tied query/key: the positional-semantic model with matrix order
parameters (Cui, Behrens, Krzakala, Zdeborová, arXiv:2402.03902; spec §7).

Built in SymPy **per** $(L, r, r_*)$ with every matrix entry a symbol; the $L=2$, $r=1$ model of
:mod:`derive.models.positional_semantic` is the special case (tested: same kernels' values, same
fixed point).

Setting. Tokens $x_\ell=p_\ell+z_\ell$, $z_\ell\sim\mathcal N(0,\sigma^2 I_d)$, positional encodings
$p_\ell=\sum_j C_{\ell j}e_j$ on orthonormal vectors $e_1..e_k$ (default: $L=2$, $C=(1,-1)^\top$,
$k=1$, the paper's opposite encodings; $L>2$: $C=I_L$). Student $Q\in\mathbb R^{d\times r}$,
teacher $Q_*\in\mathbb R^{d\times r_*}$.

Order parameters (all per dimension, as the $r=1$ tables): $q=\sigma^2Q^\top Q/d$ ($r\times r$),
$m_j=Q^\top e_j\sqrt d/d$ (rows of $m\in\mathbb R^{k\times r}$), $\theta=\sigma^2Q^\top Q_*/d$
($r\times r_*$), the response $V$ ($r\times r$), $\rho=\sigma^2Q_*^\top Q_*/d$; conjugates
$\hat q,\hat m,\hat\theta,\hat V$.

Channel at $\xi\in\mathbb R^{L\times r}$, $w\in\mathbb R^{L\times r_*}$ i.i.d. standard normal:
$h_\ell=(Cm)_\ell+L_q\xi_\ell$, $t_\ell=\theta^\top q^{-1}L_q\xi_\ell+Bw_\ell$ with the Cholesky
factors $L_qL_q^\top=q$, $BB^\top=\rho-\theta^\top q^{-1}\theta$ (the law of $(h,t)$ does not depend
on the choice of square root; $r=1$: $L_q=\sqrt q$, $B=V_*$).

Proximal objective ($x\in\mathbb R^{L\times r}$): $\mathcal M(x)=\sum_\ell(x_\ell-h_\ell)^\top V^{-1}
(x_\ell-h_\ell)+\sigma^2\|\mathrm{softmax}(xx^\top)-T\|_F^2$, $T=(1-\omega)\mathrm{softmax}(tt^\top)
+\omega A$.

Free energy (matrix form of spec §5; $R=(\lambda I_r+\sigma^2\hat V)^{-1}$):
$\Phi=\tfrac12\mathrm{tr}(\hat Vq-\hat qV)-\sum_j m_j^\top\hat m_j-\mathrm{tr}(\theta^\top\hat\theta)
+\tfrac12\mathrm{tr}[(\sigma^2\hat q+\sum_j\hat m_j\hat m_j^\top+\sigma^2\hat\theta\rho\hat\theta^\top)R]
-\tfrac\alpha2\mathbb E\min_x\mathcal M$.

Overlap updates (from $\partial\Phi/\partial\,\widehat{\cdot}=0$; checked by SymPy):
$V=\sigma^2R$, $m_j=R\hat m_j$, $\theta=\sigma^2R\hat\theta\rho$,
$q=\sigma^2R(\sigma^2\hat q+\sum_j\hat m_j\hat m_j^\top+\sigma^2\hat\theta\rho\hat\theta^\top)R$.

Conjugate updates, with $g_\ell=V^{-1}(x^*_\ell-h_\ell)$ (Gaussian integration by parts of the
envelope-theorem forms $\partial\Phi/\partial\cdot=0$; both are generated, and tested equal):
$\hat q=\alpha\mathbb E\sum_\ell g_\ell g_\ell^\top$, $\hat m_j=\alpha\mathbb E\sum_\ell C_{\ell j}g_\ell$,
$\hat\theta=\alpha\mathbb E\sum_\ell g_\ell w_\ell^\top B^{-1}$,
$\hat V=\mathrm{sym}\big(-\alpha\mathbb E\sum_\ell g_\ell\xi_\ell^\top L_q^{-1}+\hat\theta\theta^\top q^{-1}\big)$.

The paper states the general result (its main theorem) with these objects; its text could not be
read in full here, so the matrix forms above are derived and checked three ways: reduction to the
stated $r=1$ equations, $\partial\Phi$ derivations, and finite-$d$ simulations at $r=2$.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any, Mapping

import numpy as np
import sympy as sp

from numerics.quadrature import Rule
from numerics.saddle import SaddleProblem

from ..codegen import Program, Sigmoid, generate
from ..params import Parameter, nonnegative, positive, unit_interval

__all__ = ["GeneralLR", "general_problem", "general_outputs", "default_encodings", "default_A", "GENERAL_BRANCHES"]

alpha, omega, sigma, lam = (Parameter(n, d, n, "").symbol for n, d in
                            (("alpha", positive), ("omega", unit_interval), ("sigma", positive),
                             ("lam", nonnegative)))
GENERAL_BRANCHES = ("positional", "semantic", "agnostic", "mixed")


def default_encodings(L: int) -> tuple[tuple[int, ...], ...]:
    """$C$ ($L\\times k$): $L=2$ opposite encodings $(+p,-p)$ ($k=1$); $L>2$ orthonormal ($C=I_L$)."""
    if L == 2:
        return ((1,), (-1,))
    return tuple(tuple(int(i == j) for j in range(L)) for i in range(L))


def default_A(L: int) -> tuple[tuple[float, ...], ...]:
    """The teacher's positional matrix: the paper's $A$ for $L=2$; $0.6$ on the diagonal and
    $0.4/(L-1)$ elsewhere for $L>2$ (row-stochastic)."""
    if L == 2:
        return ((0.6, 0.4), (0.4, 0.6))
    off = 0.4 / (L - 1)
    return tuple(tuple(0.6 if i == j else off for j in range(L)) for i in range(L))


def _sym(prefix: str, n: int, real: bool = True) -> sp.Matrix:
    """Symmetric ``n×n`` matrix of symbols ``prefix_a_b`` (a ≤ b shared)."""
    S = {}
    for a in range(n):
        for b in range(a, n):
            S[a, b] = S[b, a] = sp.Symbol(f"{prefix}_{a + 1}{b + 1}", real=real)
    return sp.Matrix(n, n, lambda a, b: S[a, b])


def _mat(prefix: str, n: int, k: int) -> sp.Matrix:
    return sp.Matrix(n, k, lambda a, b: sp.Symbol(f"{prefix}_{a + 1}_{b + 1}", real=True))


def _upper(M: sp.Matrix) -> list[sp.Expr]:
    return [M[a, b] for a in range(M.rows) for b in range(a, M.cols)]


def _flat(M: sp.Matrix) -> list[sp.Expr]:
    return [M[a, b] for a in range(M.rows) for b in range(M.cols)]


def softmax_rows(u: sp.Matrix) -> sp.Matrix:
    r"""Row-wise softmax of the score matrix $uu^\top$ ($u$: $L\times r$). Two tokens: sigmoids
    (as the $r=1$ model); $L>2$: $S_{\ell k}=1/\sum_j e^{s_{\ell j}-s_{\ell k}}$ (never overflows)."""
    L = u.rows
    s = u * u.T
    if L == 2:
        return sp.Matrix(2, 2, lambda a, b: Sigmoid(s[a, b] - s[a, 1 - b]))
    return sp.Matrix(L, L, lambda a, b: 1 / sum(sp.exp(s[a, j] - s[a, b]) for j in range(L)))


@dataclass(frozen=True)
class GeneralLR:
    """SymPy objects and generated programs of the model for one ``(L, r, rs, C)``."""

    L: int
    r: int
    rs: int = 1
    C: tuple[tuple[int, ...], ...] | None = None

    # ---- symbols ------------------------------------------------------------------------
    @property
    def enc(self) -> sp.Matrix:
        return sp.Matrix(self.C if self.C is not None else default_encodings(self.L))

    @property
    def k(self) -> int:
        return self.enc.cols

    @cached_property
    def S(self) -> dict[str, Any]:
        L, r, rs, k = self.L, self.r, self.rs, self.k
        return dict(
            xi=_mat("xi", L, r), w=_mat("w", L, rs), x=_mat("x", L, r), h=_mat("h", L, r),
            T=_mat("T", L, L), A=_mat("a", L, L),
            q=_sym("q", r), V=_sym("v", r), m=_mat("m", k, r), th=_mat("theta", r, rs), rho=_sym("rho", rs),
            qh=_sym("qhat", r), Vh=_sym("vhat", r), mh=_mat("mhat", k, r), thh=_mat("thetahat", r, rs),
            Eq=_sym("E_qhat", r), Em=_mat("E_mhat", k, r), Eth=_mat("E_thetahat", r, rs),
            EV=_mat("E_vhat", r, r), EM=sp.Symbol("E_M", real=True),
        )

    # ---- state layout --------------------------------------------------------------------
    @cached_property
    def state_symbols(self) -> list[sp.Symbol]:
        """Flattened state: upper triangle of q (row-major), m (k×r row-major), upper
        triangle of V, θ (r×rs row-major)."""
        S = self.S
        return _upper(S["q"]) + _flat(S["m"]) + _upper(S["V"]) + _flat(S["th"])

    @cached_property
    def state_names(self) -> tuple[str, ...]:
        return tuple(str(s) for s in self.state_symbols)

    # ---- stated objects -----------------------------------------------------------------
    def teacher_factor(self) -> tuple[sp.Matrix, sp.Matrix, sp.Matrix]:
        """$(L_q, \\theta^\\top q^{-1}L_q, B)$ of the channel."""
        S = self.S
        Lq = S["q"].cholesky(hermitian=False)
        qinv = S["q"].inv()
        Bsq = S["rho"] - S["th"].T * qinv * S["th"]
        B = Bsq.cholesky(hermitian=False)
        return Lq, S["th"].T * qinv * Lq, B

    @cached_property
    def channel(self) -> tuple[sp.Matrix, sp.Matrix]:
        """(h, T) at the Gaussian point (ξ, w)."""
        S = self.S
        Lq, G, B = self.teacher_factor()
        h = self.enc * S["m"] + S["xi"] * Lq.T
        t = S["xi"] * G.T + S["w"] * B.T
        T = (1 - omega) * softmax_rows(t) + omega * S["A"]
        return h, T

    def loss(self, u: sp.Matrix) -> sp.Expr:
        D = softmax_rows(u) - self.S["T"]
        return sigma**2 * sum(D[a, b] ** 2 for a in range(self.L) for b in range(self.L))

    @cached_property
    def moreau(self) -> sp.Expr:
        S = self.S
        Vinv = S["V"].inv()
        R = S["x"] - S["h"]
        quad = sum((R[l, :] * Vinv * R[l, :].T)[0, 0] for l in range(self.L))
        return quad + self.loss(S["x"])

    def prior_terms(self) -> sp.Expr:
        S = self.S
        r = self.r
        Rm = (lam * sp.eye(r) + sigma**2 * S["Vh"]).inv()
        X = sigma**2 * S["qh"] + S["mh"].T * S["mh"] + sigma**2 * S["thh"] * S["rho"] * S["thh"].T
        return (sp.Rational(1, 2) * (S["Vh"] * S["q"] - S["qh"] * S["V"]).trace()
                - (S["m"].T * S["mh"]).trace() - (S["th"].T * S["thh"]).trace()
                + sp.Rational(1, 2) * (X * Rm).trace())

    def stated_overlaps(self, hats: Mapping[str, sp.Matrix] | None = None) -> dict[str, sp.Matrix]:
        S = self.S
        H = hats or {"qh": S["qh"], "Vh": S["Vh"], "mh": S["mh"], "thh": S["thh"]}
        Rm = (lam * sp.eye(self.r) + sigma**2 * H["Vh"]).inv()
        X = sigma**2 * H["qh"] + H["mh"].T * H["mh"] + sigma**2 * H["thh"] * S["rho"] * H["thh"].T
        return {"V": sigma**2 * Rm, "m": (Rm * H["mh"].T).T, "th": sigma**2 * Rm * H["thh"] * S["rho"],
                "q": sigma**2 * Rm * X * Rm}

    def hat_integrands(self) -> dict[str, sp.Matrix]:
        """Per-node integrands (with the prox ``x`` and channel ``h`` as symbols)."""
        S = self.S
        Lq, _, B = self.teacher_factor()
        Vinv = S["V"].inv()
        g = (S["x"] - S["h"]) * Vinv  # rows g_ℓ^T (V symmetric)
        Iq = g.T * g
        Im = self.enc.T * g
        Ith = g.T * S["w"] * B.inv()
        IV = -(g.T * S["xi"]) * Lq.inv()
        return {"q": Iq, "m": Im, "th": Ith, "V": IV}

    # ---- derivations ------------------------------------------------------------------------
    def check_overlaps(self, seed: int = 0) -> bool:
        """∂Φ/∂(every conjugate entry) vanishes at the stated overlap updates (exact rational
        arithmetic at a random point)."""
        S = self.S
        rng = np.random.default_rng(seed)
        Phi = self.prior_terms()
        hat_syms = _upper(S["qh"]) + _flat(S["mh"]) + _upper(S["Vh"]) + _flat(S["thh"])
        vals = {s: sp.Rational(int(rng.integers(1, 9)), int(rng.integers(2, 7))) for s in hat_syms}
        vals.update({s: sp.Rational(int(rng.integers(1, 9)), 10) for s in _upper(S["rho"])})
        for s in _upper(S["Vh"]):  # keep λ + σ² V̂ invertible: V̂ diagonally dominant
            vals[s] = vals[s] + (10 if s.name[-1] == s.name[-2] else 0)
        vals.update({lam: sp.Rational(1, 100), sigma: sp.Rational(1, 2)})
        ov = {k: v.subs(vals) for k, v in self.stated_overlaps().items()}
        sub = dict(vals)
        for key, mat in (("q", S["q"]), ("V", S["V"]), ("m", S["m"]), ("th", S["th"])):
            for a in range(mat.rows):
                for b in range(mat.cols):
                    sub[mat[a, b]] = ov[key][a, b]
        return all(sp.simplify(sp.diff(Phi, s).subs(sub)) == 0 for s in hat_syms)

    def envelope_hats(self) -> tuple[dict[sp.Symbol, sp.Expr], list[sp.Symbol]]:
        r"""∂Φ/∂(state entry) = 0 solved for the conjugates, with $\partial_p\mathbb E\mathcal M^*$
        replaced by symbols ``dM_<p>`` (envelope theorem: $=\mathbb E\,\partial_p\mathcal M$ at $x^*$)."""
        S = self.S
        dM = [sp.Symbol(f"dM_{s}", real=True) for s in self.state_symbols]
        Phi = self.prior_terms()
        eqs = [sp.diff(Phi, s) - alpha / 2 * d for s, d in zip(self.state_symbols, dM)]
        hat_syms = _upper(S["qh"]) + _flat(S["mh"]) + _upper(S["Vh"]) + _flat(S["thh"])
        sol = sp.solve(eqs, hat_syms, dict=True)
        assert len(sol) == 1, sol
        return sol[0], dM

    def envelope_integrands(self) -> list[sp.Expr]:
        """$\\partial_p\\mathcal M(x; h(q, m), T(t(q,\\theta)), V)$ at fixed $x$, per state entry."""
        S = self.S
        h, T = self.channel
        sub = {S["h"][a, b]: h[a, b] for a in range(self.L) for b in range(self.r)}
        sub.update({S["T"][a, b]: T[a, b] for a in range(self.L) for b in range(self.L)})
        M = self.moreau.xreplace(sub)
        return [sp.diff(M, s) for s in self.state_symbols]

    # ---- programs -------------------------------------------------------------------------------
    def programs(self) -> dict[str, Program]:
        S = self.S
        r = self.r
        h, T = self.channel
        hs, Ts, xs = _flat(S["h"]), _flat(S["T"]), _flat(S["x"])
        a_in = tuple(_flat(S["A"]))
        rho_in = tuple(_upper(S["rho"]))
        q_in, V_in, m_in, th_in = (tuple(_upper(S["q"])), tuple(_upper(S["V"])), tuple(_flat(S["m"])),
                                   tuple(_flat(S["th"])))
        M = self.moreau
        grad = [sp.diff(M, v) for v in xs]
        n = len(xs)
        gsyms = [sp.Symbol(f"g_{i}", real=True) for i in range(n)]
        Hsyms = {(i, j): sp.Symbol(f"H_{i}_{j}", real=True) for i in range(n) for j in range(i, n)}
        Mv = sp.Symbol("M", real=True)
        hess = [((i, j), sp.diff(grad[i], xs[j])) for i in range(n) for j in range(i, n)]
        I = self.hat_integrands()
        Iq = [(sp.Symbol(f"i_qhat_{a + 1}{b + 1}"), I["q"][a, b]) for a in range(r) for b in range(a, r)]
        Im = [(sp.Symbol(f"i_mhat_{j + 1}_{a + 1}"), I["m"][j, a]) for j in range(self.k) for a in range(r)]
        Ith = [(sp.Symbol(f"i_thetahat_{a + 1}_{e + 1}"), I["th"][a, e]) for a in range(r) for e in range(self.rs)]
        IV = [(sp.Symbol(f"i_vhat_{a + 1}_{b + 1}"), I["V"][a, b]) for a in range(r) for b in range(r)]
        iloss, iM, imse = sp.symbols("i_loss i_M i_mse", real=True)
        # update: hats from E[.], then overlaps
        Eq, Em, Eth, EV = S["Eq"], S["Em"], S["Eth"], S["EV"]
        qinv = S["q"].inv()
        thh_v = alpha * Eth
        Vh_raw = alpha * EV + thh_v * S["th"].T * qinv
        Vh_v = (Vh_raw + Vh_raw.T) / 2
        hats = {"qh": alpha * Eq, "mh": alpha * Em, "thh": thh_v, "Vh": Vh_v}
        hat_assign = []
        hat_syms = {}
        for key in ("qh", "mh", "thh", "Vh"):
            src = hats[key]
            tgt = S[key]
            sym_mat = sp.Matrix(tgt.rows, tgt.cols, lambda a, b: tgt[a, b])
            if key in ("qh", "Vh"):
                for a in range(r):
                    for b in range(a, r):
                        hat_assign.append((tgt[a, b], src[a, b]))
            else:
                for a in range(tgt.rows):
                    for b in range(tgt.cols):
                        hat_assign.append((tgt[a, b], src[a, b]))
            hat_syms[key] = sym_mat
        ov = self.stated_overlaps(hat_syms)
        new = []
        for key, mat, flat in (("q", ov["q"], _upper), ("m", ov["m"], _flat), ("V", ov["V"], _upper),
                               ("th", ov["th"], _flat)):
            base = {"q": S["q"], "m": S["m"], "V": S["V"], "th": S["th"]}[key]
            for s, e in zip(flat(base), flat(mat)):
                new.append((sp.Symbol(f"new_{s}", real=True), e))
        E_in = tuple(_upper(Eq)) + tuple(_flat(Em)) + tuple(_flat(Eth)) + tuple(_flat(EV))
        phi = sp.Symbol("phi", real=True)
        ETs = [sp.Symbol(f"E{t}", real=True) for t in Ts]
        ETT, mse_lin = sp.symbols("ETT mse_linear", real=True)
        hat_out = tuple(lhs for lhs, _ in hat_assign)
        hat_in = tuple(_upper(S["qh"]) + _flat(S["mh"]) + _upper(S["Vh"]) + _flat(S["thh"]))
        return {
            "channel": Program(
                "channel_general", tuple(_flat(S["xi"])) + tuple(_flat(S["w"])) + q_in + m_in + th_in + rho_in
                + (omega,) + a_in,
                tuple(zip(hs, _flat(h))) + tuple(zip(Ts, _flat(T))), tuple(hs) + tuple(Ts),
                "pre-activations h and teacher attention T at (ξ, w)"),
            "prox_fgh": Program(
                "prox_fgh_general", tuple(xs) + tuple(hs) + V_in + (sigma,) + tuple(Ts),
                ((Mv, M),) + tuple(zip(gsyms, grad)) + tuple((Hsyms[ij], e) for ij, e in hess),
                (Mv,) + tuple(gsyms) + tuple(Hsyms[ij] for ij, _ in hess),
                "M, gradient and Hessian for the Newton prox"),
            "hat_integrands": Program(
                "hat_integrands_general", tuple(xs) + tuple(hs) + tuple(_flat(S["xi"])) + tuple(_flat(S["w"]))
                + q_in + V_in + th_in + rho_in + (sigma,) + tuple(Ts),
                tuple(Iq + Im + Ith + IV) + ((iloss, self.loss(S["x"])), (iM, M)),
                tuple(s for s, _ in Iq + Im + Ith + IV) + (iloss, iM), "conjugate integrands at the prox"),
            "update": Program(
                "update_general", (alpha,) + E_in + q_in + th_in + (sigma,) + rho_in + (lam,),
                tuple(hat_assign) + tuple(new), hat_out + tuple(s for s, _ in new),
                "conjugates, then overlaps"),
            "free_energy": Program(
                "free_energy_general", q_in + m_in + V_in + th_in + hat_in + (sigma,) + rho_in + (lam, alpha, S["EM"]),
                ((phi, self.prior_terms() - alpha / 2 * S["EM"]),), (phi,), "Φ at the fixed point"),
            "mse_integrand": Program(
                "mse_integrand_general", tuple(hs) + (sigma,) + tuple(Ts), ((imse, self.loss(S["h"])),), (imse,),
                "test-error integrand"),
            "baseline": Program(
                "baseline_general", tuple(ETs) + (ETT, sigma),
                ((mse_lin, sigma**2 * (ETT - sum(e**2 for e in ETs))),), (mse_lin,),
                "MSE of the best dense linear positional map Ŵ = E T (θ = 0, t ~ N(0, ρ I))"),
        }

    def envelope_program(self) -> Program:
        """∂_p M at fixed x per state entry (for the check of the conjugate forms)."""
        S = self.S
        env = self.envelope_integrands()
        dsyms = [sp.Symbol(f"dM_{s}", real=True) for s in self.state_symbols]
        return Program(
            "envelope_integrands_general", tuple(_flat(S["x"])) + tuple(_flat(S["xi"])) + tuple(_flat(S["w"]))
            + tuple(_upper(S["q"])) + tuple(_flat(S["m"])) + tuple(_upper(S["V"])) + tuple(_flat(S["th"]))
            + tuple(_upper(S["rho"])) + (sigma, omega) + tuple(_flat(S["A"])),
            tuple(zip(dsyms, env)), tuple(dsyms), "∂_p M at fixed x (envelope theorem)")

    def program(self, name: str) -> Program:
        """One program by name (cached; ``envelope_integrands`` built on demand)."""
        if "_programs" not in self._kernels:
            self._kernels["_programs"] = self.programs()
        progs = self._kernels["_programs"]
        if name == "envelope_integrands" and name not in progs:
            progs[name] = self.envelope_program()
        return progs[name]

    @cached_property
    def _kernels(self) -> dict[str, Any]:
        return {}

    def attach(self, registry: Any, prefix: str) -> None:
        """Generate and cache this construction's kernels in ``registry`` (the model's one kernel
        registry, :class:`derive.codegen.registry.KernelRegistry`) under ``prefix + name``."""
        self.__dict__["_registry"] = (registry, prefix)

    def kernel(self, name: str, target: str = "xp") -> Any:
        """The generated kernel of program ``name``, from the kernel registry this construction
        is attached to (a private one when used on its own)."""
        if "_registry" not in self.__dict__:
            from ..codegen.registry import KernelRegistry

            self.attach(KernelRegistry(f"general L={self.L} r={self.r}", dict), "")
        reg, prefix = self.__dict__["_registry"]
        return reg.declared_kernel(prefix + name, lambda: self.program(name), target)


# ------------------------------------------------------------------------------------ numerics
def symmetrized_rule(rule: Rule, L: int, r: int, rs: int) -> Rule:
    """Close a rule over (ξ, w) under: the teacher flip ``w → −w`` (θ = 0 stays invariant),
    the token reversal (with m → −m for the opposite encodings: m = 0 stays invariant), and,
    for r ≥ 2, the reflection of each student coordinate j ≥ 2 (its off-diagonal entries,
    m[:, j] and θ[j] = 0 stay invariant). Same node order as the r = 1 model for (L, r) = (2, 1)."""
    z = rule.nodes
    nxi = L * r
    wflip = np.concatenate([np.ones(nxi), -np.ones(L * rs)])
    perm = np.concatenate([(np.arange(L)[::-1][:, None] * r + np.arange(r)[None, :]).reshape(-1),
                           nxi + (np.arange(L)[::-1][:, None] * rs + np.arange(rs)[None, :]).reshape(-1)])
    flip = z * wflip
    swap = z[:, perm]
    nodes = [z, flip, swap, swap * wflip]
    for j in range(1, r):
        refl = np.ones(z.shape[1])
        refl[[l * r + j for l in range(L)]] = -1.0
        nodes = nodes + [n * refl for n in nodes]
    Z = np.concatenate(nodes)
    g = len(nodes)
    return Rule(Z, np.tile(rule.weights, g) / g, rule.kind + "-symmetrized", rule.order * g)


def branch_init(spec: GeneralLR, branch: str) -> tuple[np.ndarray, list[int]]:
    """Initial flattened state of ``branch`` and the gauge-pinned indices (held at 0).

    Gauge (r ≥ 2): Q → QO leaves everything invariant, so the saddle point is an orbit. It is
    fixed by pinning: θ along e₁ (θ[j≥2] = 0) on the branches with θ ≠ 0; m₁ along e₁
    (m[0, j≥2] = 0) on the positional branch; q, V diagonal on the agnostic one. r = 1: none."""
    r, k, rs = spec.r, spec.k, spec.rs
    q = np.eye(r) * 0.02
    V = np.eye(r) * 14.575
    m = np.zeros((k, r))
    th = np.zeros((r, rs))
    if branch == "positional":
        q[0, 0] = 0.0206838209589
        m[:, 0] = 0.2 * np.linspace(1.0, -1.0, k) if k > 1 else 0.2  # distinct shifts per token
    elif branch == "semantic":
        q[0, 0], V[0, 0], th[0, 0] = 0.1, 15.0, 0.14
    elif branch == "mixed":
        if r < 2:
            raise ValueError("branch 'mixed' (θ along e₁, m along e₂) needs rank r >= 2")
        q[0, 0], q[1, 1], V[0, 0], th[0, 0] = 0.1, 0.03, 15.0, 0.14
        m[:, 1] = 0.2 * np.linspace(1.0, -1.0, k) if k > 1 else 0.2
    elif branch == "agnostic":
        q[0, 0] = 0.05
    else:
        raise ValueError(f"branch must be one of {GENERAL_BRANCHES}, got {branch!r}")
    x = np.concatenate([q[np.triu_indices(r)], m.reshape(-1), V[np.triu_indices(r)], th.reshape(-1)])
    names = spec.state_names
    pins = []
    if r >= 2:
        for i, nm in enumerate(names):
            if branch in ("semantic", "mixed") and nm.startswith("theta_") and not nm.startswith("theta_1_"):
                pins.append(i)
            elif branch == "positional" and nm.startswith("m_1_") and not nm.endswith("_1"):
                pins.append(i)
            elif branch == "agnostic" and (nm.startswith("q_") or nm.startswith("v_")) and nm[-1] != nm[-2]:
                pins.append(i)
    return x, pins


def general_problem(spec: GeneralLR, p: Mapping[str, Any], o: Mapping[str, Any], xp: Any,
                    sp_: Any) -> SaddleProblem:
    """The general-(L, r) kernels wrapped as the driver's callables (argument order only): symmetrized
    QMC over (ξ, w) ∈ R^{L(r+r*)}, a deterministic multistart prox over x ∈ R^{L×r} from h with each
    column's sign flipped (S(x) is invariant under x[:, j] → −x[:, j]: 2^r mirror wells)."""
    L, r, rs = spec.L, spec.r, spec.rs
    k = {nm: spec.kernel(nm) for nm in ("channel", "prox_fgh", "hat_integrands", "update", "free_energy",
                                         "mse_integrand")}
    A = np.asarray(o["A"], dtype=float).reshape(-1)
    nq, nm_, nth = r * (r + 1) // 2, spec.k * r, r * rs
    nx = L * r
    pairs = [(i, j) for i in range(nx) for j in range(i, nx)]
    names = spec.state_names
    S = spec.S

    def split(x: Any) -> tuple[list[Any], list[Any], list[Any], list[Any]]:
        cols = [x[:, i] for i in range(x.shape[1])]
        return cols[:nq], cols[nq:nq + nm_], cols[nq + nm_:2 * nq + nm_], cols[2 * nq + nm_:2 * nq + nm_ + nth]

    def rho(sig: Any) -> list[Any]:
        return [sig**2 if a == b else 0 * sig for a in range(rs) for b in range(a, rs)]

    def channel(xr: Any, pt: Any, z: Any) -> dict:
        qs, ms, Vs, ths = split(xr)
        sig = p["sigma"][pt]
        a_in = [xp.full(xr.shape[0], a) for a in A]
        c = k["channel"](xp, sp_, *[z[:, i] for i in range(z.shape[1])], *qs, *ms, *ths, *rho(sig),
                         p["omega"][pt], *a_in)
        h = xp.stack([c[str(s)] for s in _flat(S["h"])], axis=1)
        T = [c[str(s)] for s in _flat(S["T"])]
        return dict(h=h, T_list=T, V=Vs, q=qs, th=ths, sigma=sig)

    def fgh(y: Any, c: Mapping[str, Any], rows: Any):
        with np.errstate(over="ignore"):
            out = k["prox_fgh"](xp, sp_, *[y[:, i] for i in range(nx)], *[c["h"][rows, i] for i in range(nx)],
                                *[v[rows] for v in c["V"]], c["sigma"][rows], *[t[rows] for t in c["T_list"]])
        g = xp.stack([out[f"g_{i}"] for i in range(nx)], axis=1)
        H = xp.empty((y.shape[0], nx, nx))
        for (i, j) in pairs:
            H[:, i, j] = out[f"H_{i}_{j}"]
            H[:, j, i] = out[f"H_{i}_{j}"]
        f = xp.asarray(out["M"], dtype=float) + 0.0 * y[:, 0]
        # far trial points of the line search can overflow exp() in the L > 2 softmax
        # derivatives (inf/inf): report them as f = inf, so the search rejects them
        bad = ~(xp.isfinite(f) & xp.all(xp.isfinite(g), axis=1) & xp.all(xp.isfinite(H), axis=(1, 2)))
        if bool(xp.any(bad)):
            f = xp.where(bad, xp.inf, f)
            g[bad] = 0.0
            H[bad] = xp.eye(nx)[None]
        return f, g, H

    def integrands(y: Any, c: Mapping[str, Any], z: Any, xr: Any, pt: Any) -> dict:
        with np.errstate(over="ignore"):
            I = dict(k["hat_integrands"](xp, sp_, *[y[:, i] for i in range(nx)], *[c["h"][:, i] for i in range(nx)],
                                         *[z[:, i] for i in range(z.shape[1])], *c["q"], *c["V"], *c["th"],
                                         *rho(c["sigma"]), c["sigma"], *c["T_list"]))
            I["i_mse"] = k["mse_integrand"](xp, sp_, *[c["h"][:, i] for i in range(nx)], c["sigma"],
                                            *c["T_list"])["i_mse"]
        return I

    def update(E: Mapping[str, Any], x: Any, idx: Any) -> dict:
        qs, ms, Vs, ths = split(x)
        Ein = ([E[f"i_qhat_{a + 1}{b + 1}"] for a in range(r) for b in range(a, r)]
               + [E[f"i_mhat_{j + 1}_{a + 1}"] for j in range(spec.k) for a in range(r)]
               + [E[f"i_thetahat_{a + 1}_{e + 1}"] for a in range(r) for e in range(rs)]
               + [E[f"i_vhat_{a + 1}_{b + 1}"] for a in range(r) for b in range(r)])
        sig = p["sigma"][idx]
        u = k["update"](xp, sp_, p["alpha"][idx], *Ein, *qs, *ths, sig, *rho(sig), p["lam"][idx])
        hat_in = [u[str(s)] for s in hat_in_syms(S)]
        f = k["free_energy"](xp, sp_, *qs, *ms, *Vs, *ths, *hat_in, sig, *rho(sig), p["lam"][idx],
                             p["alpha"][idx], E["i_M"])
        out = {"map": xp.stack([u[f"new_{nm}"] for nm in names], axis=1), "phi": f["phi"],
               "mse": E["i_mse"], "train_loss": E["i_loss"]}
        out.update({str(s): u[str(s)] for s in hat_in_syms(S)})
        return out

    def starts(c: Mapping[str, Any]) -> list:
        h = c["h"]
        out = []
        for signs in range(2**r):
            s = np.array([-1.0 if (signs >> j) & 1 else 1.0 for j in range(r)])
            out.append(h * xp.asarray(np.tile(s, L))[None, :])
        return out

    sig2 = np.asarray(p["sigma"]) ** 2
    iu = np.triu_indices(r)

    def inside(x: Any, idx: Any) -> Any:
        q, V, th = _mats(x, r, rs, nq, nm_)
        with np.errstate(invalid="ignore"):
            ok = (np.linalg.eigvalsh(q)[:, 0] > 0) & (np.linalg.eigvalsh(V)[:, 0] > 0)
            qi = np.linalg.inv(np.where(ok[:, None, None], q, np.eye(r)))
            Bs = sig2[np.asarray(idx)][:, None, None] * np.eye(rs) - np.einsum("nae,nab,nbf->nef", th, qi, th)
            ok &= np.linalg.eigvalsh(Bs)[:, 0] > 0
        return xp.asarray(ok)

    del iu
    return SaddleProblem(len(names), channel, fgh, integrands, update, starts, inside, (), names)


def _mats(x: Any, r: int, rs: int, nq: int, nm: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(q, V, θ) matrices per row of the flattened state."""
    iu = np.triu_indices(r)
    xn = np.asarray(x)
    n = xn.shape[0]
    q = np.zeros((n, r, r))
    V = np.zeros((n, r, r))
    q[:, iu[0], iu[1]] = xn[:, :nq]
    q[:, iu[1], iu[0]] = xn[:, :nq]
    V[:, iu[0], iu[1]] = xn[:, nq + nm:2 * nq + nm]
    V[:, iu[1], iu[0]] = xn[:, nq + nm:2 * nq + nm]
    th = xn[:, 2 * nq + nm:2 * nq + nm + r * rs].reshape(n, r, rs)
    return q, V, th


def general_outputs(spec: GeneralLR, res: Any, X: np.ndarray, xp: Any) -> dict[str, Any]:
    """Observables of the general model: every state entry (sign representative, see
    :func:`canonical_signs`), the summaries q = tr q, v = tr V, m = ‖m‖, θ = ‖θ‖, the extreme
    eigenvalues of q, mse, Φ, training loss, the gauge residual."""
    r, rs = spec.r, spec.rs
    nq, nm = r * (r + 1) // 2, spec.k * r
    X = canonical_signs(spec, X)
    out = {nm_: xp.asarray(X[:, i]) for i, nm_ in enumerate(spec.state_names)}
    q, V, th = _mats(X, r, rs, nq, nm)
    mm = X[:, nq:nq + nm]
    out.update(q=xp.asarray(np.trace(q, axis1=1, axis2=2)), v=xp.asarray(np.trace(V, axis1=1, axis2=2)),
               m=xp.asarray(np.sqrt((mm**2).sum(1))), theta=xp.asarray(np.sqrt((th**2).sum((1, 2)))))
    qe = np.linalg.eigvalsh(q)
    out["q_eig_min"], out["q_eig_max"] = xp.asarray(qe[:, 0]), xp.asarray(qe[:, -1])
    out.update(mse=res.obs["mse"], phi=res.obs["phi"], free_energy=-res.obs["phi"],
               train_loss=res.obs["train_loss"])
    out["gauge_residual"] = res.gauge_residual
    return out


def hat_in_syms(S: Mapping[str, sp.Matrix]) -> list[sp.Symbol]:
    return _upper(S["qh"]) + _flat(S["mh"]) + _upper(S["Vh"]) + _flat(S["thh"])


def canonical_signs(spec: GeneralLR, X: np.ndarray) -> np.ndarray:
    """Representative of the reflections Q[:, j] → −Q[:, j]: per student coordinate j, the first
    of θ[j, 0], m[0, j], m[1, j], … above 1e-12 in size is made positive."""
    r, k, rs = spec.r, spec.k, spec.rs
    names = spec.state_names
    pos = {nm: i for i, nm in enumerate(names)}
    X = X.copy()
    for j in range(1, r + 1):
        keys = [f"theta_{j}_{e}" for e in range(1, rs + 1)] + [f"m_{i}_{j}" for i in range(1, k + 1)]
        vals = np.stack([X[:, pos[kk]] for kk in keys], axis=1)
        big = np.abs(vals) > 1e-12
        first = np.argmax(big, axis=1)
        s = np.where(big.any(axis=1), np.sign(vals[np.arange(len(X)), first]), 1.0)
        s[s == 0] = 1.0
        for i, nm in enumerate(names):
            head, *rest = nm.split("_")
            if head in ("q", "v"):
                a, b = int(rest[0][0]), int(rest[0][1])
                if (a == j) != (b == j):
                    X[:, i] *= s
            elif head == "m" and int(rest[1]) == j:
                X[:, i] *= s
            elif head == "theta" and int(rest[0]) == j:
                X[:, i] *= s
    return X

