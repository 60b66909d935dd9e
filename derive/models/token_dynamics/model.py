"""The token-dynamics model: derivations (equiangular reduction, long context, Kuramoto,
Burger et al.), scalar programs and the pipeline. The statement of what is stated and what is
derived, with references, is the package docstring (:mod:`derive.models.token_dynamics`)."""
from __future__ import annotations

import math
from functools import cached_property
from typing import Any, Mapping

import mpmath
import numpy as np
import sympy as sp

from numerics.backend import Backend
from numerics.results import Status

from ...codegen import Kernel, Program
from ...codegen.tensor import TensorProgram
from ...declarations import Observable, declare
from ...model import Equation, Model, SimulationResult
from .programs import (BETA, DYNAMICS, E_out, E_pair, E_row, MASK, QX, SHIFT, THETA, VX, KX, Km,
                       L, Qm, R, S, U, Vm, W, X, a_, b_, c_, d_dim, energy_program, i_, j_,
                       kuramoto_program, n_tok, v_out, velocity_program)
from .reduction import (BETA_P, N_P, RHO0_P, SYMBOL_NAMES, TARGET_P, Fs, Gs, GramVector, beta,
                        cos_out, gamma, gram_velocity, n, primitive, rho, rho0, rho_t, rhodot_sa,
                        rhodot_usa, t, t_sa, t_usa, target)

__all__ = ["TokenDynamics", "MODEL"]


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
        x1, x2 = GramVector({0: 1}), GramVector({1: 1})
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
        sa = primitive(2 * n / self.equiangular_rhs["SA"])
        usa = primitive(2 / self.equiangular_rhs["USA"])
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
        return primitive(sp.simplify(2 * n / self.equiangular_rhs["SA"].subs(beta, 0)))

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

    def random_points(self, n: int, rng: np.random.Generator) -> list[dict[str, float]]:
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

    def simulate_point(self, *, d: int, trials: int = 1, seed: int = 0, backend: str = "numpy",
                       **params: Any) -> SimulationResult:
        """``attn-theory simulate``: the hitting times ``t_sa``, ``t_usa`` measured by integrating
        ``n`` hand-written particles from the equiangular start in dimension ``d >= n + 1``
        (:func:`numerics.simulate.token_dynamics.equiangular_hitting_time`; deterministic, so
        ``trials``/``seed`` are unused and the error bar is 0). Step: 1/2000 of the predicted time."""
        from numerics.simulate.token_dynamics import equiangular_hitting_time

        v = {k: float(x) for k, x in self.validate(params).items()}
        self._check_target(v["rho0"], v["target"])
        n = int(v["n"])
        if d < n + 1:
            raise ValueError(f"simulate: dimension d = {d} must be >= n + 1 = {n + 1} for the "
                             f"equiangular start of n = {n} tokens")
        out = {}
        for dyn, key in (("SA", "t_sa"), ("USA", "t_usa")):
            t_th = self.equiangular_hitting_time(v["beta"], n, dyn, v["rho0"], v["target"])
            h = min(1e-2, t_th / 2000) if np.isfinite(t_th) and t_th > 0 else 1e-2
            t_max = 2 * t_th + 1 if np.isfinite(t_th) else 1e3
            out[key] = equiangular_hitting_time(n, d, v["beta"], v["rho0"], v["target"], dyn,
                                                h=h, t_max=t_max)
        return SimulationResult(self.name, v, out, {k: 0.0 for k in out}, d, trials, seed)


#: the registry entry (see derive/models/__init__.py)
MODEL = TokenDynamics
