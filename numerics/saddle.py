r"""A shared driver for replica saddle points whose channel needs a proximal step.

The replica-symmetric saddle point of a model with a non-convex per-sample loss reads

    x = F(x),   F(x) = U( E_z[ I(prox(z; x), z; x) ], x ),

with ``x`` the order parameters (``k`` numbers per grid point), ``z ~ N(0, I_dim)`` the
Gaussian channel variables, ``prox(z; x) = argmin_y M(y; z, x)`` the global minimiser of a
small smooth objective (the Moreau envelope of the loss), ``I`` the integrands (conjugate
updates, loss, test error at ``z``) and ``U`` the closed-form conjugate-then-overlap update.
The driver only orders calls to **kernels supplied as callables** (generated from SymPy by
the model); it contains no model formula:

1. **Quadrature with an error estimate** — ``R`` independent randomised (scrambled Sobol')
   rules of ``n`` points each, optionally closed under the channel's symmetries
   (:func:`replica_rule`). Every grid point is solved once per replica (the replicas are
   extra rows of the batch); the reported fixed point is the replica mean and its
   quadrature error the standard error ``sd_r/√R`` — the work of one pooled rule of ``R·n``
   points, and an error bar that needs no linearisation.
2. **Deterministic global prox** — Newton from a fixed set of starts per node (the model's
   ``starts``: e.g. ``h`` and its images under the loss's symmetries), keeping the lowest
   minimum (:func:`numerics.prox.minimize_multistart`). No warm start enters the reported
   map, so ``F`` is a function of ``x`` alone and the fixed point does not depend on the
   iteration path.
3. **Expectations → conjugates → overlaps** — ``U`` (a generated program).
4. **Fixed point** — a cheap first phase in which each node's prox is continued from its last
   minimiser, then the global map: chord-Newton steps ``x ← x − (J − I)^{-1}(F(x) − x)``, then
   Anderson acceleration (:func:`numerics.fixed_point.solve_fixed_point`) where needed; the
   stopping rule is always the **undamped** residual of every free order parameter.
5. **Jacobian and stability** — central differences of ``F`` at the fixed point with the prox
   continued from its minimisers (local branch), its leading eigenvalue (a spinodal where it
   crosses 1).
6. **Observables** — every (P,) entry returned by ``U`` besides ``map`` (free energy, test
   error, conjugates), with its replica standard error.
7. **Continuation** (:func:`continuation`): a sweep along one parameter, each step started at
   the previous step's fixed point.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from .fixed_point import solve_fixed_point, undamped_residual
from .prox import minimize_multistart
from .quadrature import NodeSet, Rule, sobol_normal
from .results import Status

__all__ = ["ReplicaRule", "replica_rule", "SaddleProblem", "SaddleResult", "SaddleDriver",
           "continuation", "branch_ends", "sign_crossing"]


#: undamped residual at which the warm first phase of :meth:`SaddleDriver.solve` stops (its fixed
#: point, with minimisers continued rather than global, is only the start of the second phase)
WARM_TOL = 1e-8

# --------------------------------------------------------------------------- quadrature
@dataclass(frozen=True)
class ReplicaRule(NodeSet):
    """``R`` randomised rules pooled: ``nodes`` (R·n, dim), equal ``weights`` summing to 1,
    ``replica`` (R·n,) the replica index of each node (nodes of replica ``r`` are contiguous)."""

    nodes: Any
    weights: Any
    replica: Any
    n_replicas: int
    kind: str

    def to(self, xp: Any) -> "ReplicaRule":
        return ReplicaRule(xp.asarray(self.nodes), xp.asarray(self.weights), xp.asarray(self.replica),
                           self.n_replicas, self.kind)


def replica_rule(n: int, dim: int, replicas: int = 4, seed: int = 0,
                 close: Callable[[Rule], Rule] | None = None) -> ReplicaRule:
    """``replicas`` independent scrambled Sobol' rules (seeds ``seed, seed+1, …``) of ``n`` points
    each after closure (``close`` maps a rule to its symmetrisation, multiplying its size by the
    group order ``g``: the Sobol' base has ``n/g`` points, rounded up to a power of two)."""
    if replicas < 1:
        raise ValueError(f"replicas must be >= 1, got {replicas}")
    rules = []
    for r in range(replicas):
        base = sobol_normal(1, dim, seed=seed + r)
        g = 1 if close is None else close(base).size // base.size
        rule = sobol_normal(max(1, int(n) // g), dim, seed=seed + r)
        rules.append(rule if close is None else close(rule))
    nodes = np.concatenate([r.nodes for r in rules])
    weights = np.concatenate([r.weights for r in rules]) / replicas
    rep = np.concatenate([np.full(r.size, i) for i, r in enumerate(rules)])
    return ReplicaRule(nodes, weights, rep, replicas, rules[0].kind)


# --------------------------------------------------------------------------- the problem
@dataclass
class SaddleProblem:
    """The kernels of one model, as callables (rows = (point, node) pairs, point-major).

    channel(x_rows, pt_rows, z_rows) -> dict   per-row channel quantities; must hold ``"h"``
        (rows, n_prox), the natural Newton start.
    fgh(y, ch, rows) -> (f, g, H)   the prox objective at ``y`` (rows', n_prox) for rows ``rows``.
    integrands(y, ch, z_rows, x_rows, pt_rows) -> dict[str, (rows,)]   at the prox ``y``.
    update(E, x, idx) -> dict   ``E``: name -> (P,) expectations; must hold ``"map"`` (P, k);
        every other (P,) entry is an observable (its quadrature error is reported).
    starts(ch) -> list of (rows, n_prox)   deterministic Newton starts (default: ``[h]``).
    inside(x, idx) -> bool (P,)   the map's domain (Anderson steps outside it are rejected).
    pins: indices of ``x`` held at 0 (gauge fixing); their map values are reported apart.
    context: free-form data of the model's glue (not used by the driver).
    compiled: optional, the channel → global prox → integrands → weighted sum step as one
        compiled loop (:class:`numerics.compiled.NodeLoop`): ``compiled(x, pt, rep, nodes,
        weights, y0, gtol, maxiter) -> (E, y, prox_ok, multi)`` with ``nodes`` (R, N, dim),
        ``y0`` (P, N, n_prox) or None (the deterministic starts). Used instead of the four
        callables above on the NumPy backend; the same map to round-off.
    """

    n_state: int
    channel: Callable[[Any, Any, Any], dict]
    fgh: Callable[[Any, Mapping[str, Any], Any], tuple[Any, Any, Any]]
    integrands: Callable[..., dict]
    update: Callable[[Mapping[str, Any], Any, Any], dict]
    starts: Callable[[Mapping[str, Any]], list] | None = None
    inside: Callable[[Any, Any], Any] | None = None
    pins: Sequence[int] = ()
    names: Sequence[str] | None = None
    #: whatever the model's glue keeps with its callables (parameters, backend functions)
    context: dict = field(default_factory=dict)
    compiled: Callable[..., tuple] | None = None


@dataclass
class SaddleResult:
    """Per point: fixed point ``x`` (P, k), convergence, the quadrature error ``x_error`` (P, k),
    observables ``obs`` with ``obs_error``, the Jacobian's leading eigenvalue ``lead`` (real part)
    and spectral ``radius`` (NaN where not computed), ``jacobian`` (P, k_free, k_free) or None."""

    x: Any
    converged: Any
    residual: Any
    iterations: Any
    status: Any
    x_error: Any
    obs: dict
    obs_error: dict
    lead: Any
    radius: Any
    jacobian: Any = None
    gauge_residual: Any = None
    multiple_minima: Any = None
    extras: dict = field(default_factory=dict)


class SaddleDriver:
    """Batched saddle-point solver over ``n_points`` grid points (see the module docstring).

    Internally every point is solved once per replica rule (batch rows ``point·R + r``, replica
    ``r`` using its own ``n`` nodes): the reported fixed point is the replica mean, its error the
    standard error ``sd_r/√R`` — the same work as one pooled rule of ``R·n`` nodes, and an
    error estimate that needs no linearisation."""

    def __init__(self, problem: SaddleProblem, rule: ReplicaRule, n_points: int, xp: Any = np,
                 gtol: float = 1e-13, prox_maxiter: int = 60) -> None:
        self.pb, self.xp = problem, xp
        self.R = int(rule.n_replicas)
        rule = rule.to(xp)
        self.N = rule.size // self.R
        self.nodes = rule.nodes.reshape(self.R, self.N, rule.dim)
        self.weights = rule.weights.reshape(self.R, self.N) * self.R
        self.P = int(n_points)
        self.n = self.P * self.R  # internal batch: (point, replica)
        self.gtol, self.prox_maxiter = gtol, prox_maxiter
        #: minimisers of the last global prox per (row, node): the start of the local prox
        self.last: Any = None
        #: last minimiser per (row, node) inside the iteration (``warm`` evaluations)
        self.warm: Any = None
        self.evaluations = 0

    # -- one evaluation of the map --------------------------------------------------------------
    def _prox(self, ch: Mapping[str, Any], idx: Any, local_from: Any | None) -> tuple[Any, Any, Any]:
        xp = self.xp
        fgh = lambda y, rows: self.pb.fgh(y, ch, rows)  # noqa: E731
        if local_from is not None:
            starts = [local_from]
        else:
            starts = self.pb.starts(ch) if self.pb.starts is not None else [ch["h"]]
        res, distinct = minimize_multistart(fgh, starts, gtol=self.gtol, maxiter=self.prox_maxiter, xp=xp)
        P = idx.shape[0]
        return res.x, res.converged.reshape(P, self.N).all(axis=1), (distinct > 0).reshape(P, self.N).sum(axis=1)

    def evaluate(self, x: Any, idx: Any, *, local_from: Any | None = None, keep: bool = False,
                 warm: bool = False) -> dict:
        """``U(E_r[I])`` at the internal rows ``idx`` (state ``x``, (P, k); row ``i`` is grid point
        ``i // R`` with replica rule ``i % R``). ``local_from`` (P·n, n_prox): continue the prox from
        these minimisers only (derivatives along the local branch). ``warm``: continue from the
        last minimisers of these rows where they exist (the cheap first phase of :meth:`solve`;
        never the reported map). ``keep`` stores the minimisers in :attr:`last`."""
        xp = self.xp
        self.evaluations += 1
        P, N = idx.shape[0], self.N
        rep = idx % self.R
        if self.pb.compiled is not None:
            return self._evaluate_compiled(x, idx, rep, local_from, keep, warm)
        pt = xp.repeat(idx // self.R, N)
        z = self.nodes[rep].reshape(P * N, -1)
        xr = xp.repeat(x, N, axis=0)
        ch = self.pb.channel(xr, pt, z)
        if warm and self.warm is not None:
            prev = self.warm[idx].reshape(P * N, -1)
            if bool(xp.all(xp.isfinite(prev))):
                local_from = prev
        y, prox_ok, multi = self._prox(ch, idx, local_from)
        if warm or local_from is None:
            if self.warm is None:
                self.warm = xp.full((self.n, N, y.shape[1]), np.nan)
            self.warm[idx] = y.reshape(P, N, -1)
        if keep:
            self.last = y
        I = self.pb.integrands(y, ch, z, xr, pt)
        W = self.weights[rep]
        E = {k: (v.reshape(P, N) * W).sum(axis=1) for k, v in I.items()}
        out = dict(self.pb.update(E, x, idx // self.R))
        out["prox_ok"] = prox_ok
        out["multiple_minima"] = multi
        return out

    def _evaluate_compiled(self, x: Any, idx: Any, rep: Any, local_from: Any | None, keep: bool,
                           warm: bool) -> dict:
        """:meth:`evaluate` through the problem's compiled loop (same starts, same map)."""
        P, N = idx.shape[0], self.N
        if warm and self.warm is not None:
            prev = self.warm[idx]
            if bool(np.all(np.isfinite(prev))):
                local_from = prev
        y0 = None if local_from is None else np.asarray(local_from).reshape(P, N, -1)
        E, y3, prox_ok, multi = self.pb.compiled(x, idx // self.R, rep, self.nodes, self.weights, y0,
                                                 self.gtol, self.prox_maxiter)
        if warm or local_from is None:
            if self.warm is None:
                self.warm = np.full((self.n, N, y3.shape[2]), np.nan)
            self.warm[idx] = y3
        if keep:
            self.last = y3.reshape(P * N, -1)
        out = dict(self.pb.update(E, x, idx // self.R))
        out["prox_ok"] = prox_ok
        out["multiple_minima"] = multi
        return out

    # -- the solve ----------------------------------------------------------------------------
    def solve(self, x0: Any, *, tol: float = 1e-10, maxiter: int = 400, damping: float = 0.2,
              anderson: int = 5, jacobian: bool = True, rel_step: float = 1e-5, warm_phase: bool = True,
              chord: int = 4, jac_step: float = 1e-3,
              callback: Callable[[int, Any, Any], None] | None = None,
              start_replicas: Any | None = None, jac0: Any | None = None,
              secant_steps: int = 10) -> SaddleResult:
        """Fixed point from ``x0`` (P, k) at every point and replica, then (``jacobian``) its
        Jacobian and stability. ``warm_phase``: first iterate with each node's prox continued
        from its last minimiser (several times cheaper), then with the deterministic global prox
        to ``tol`` (the reported map): ``chord`` chord-Newton steps with the Jacobian of the
        local branch, then Anderson where they did not reach ``tol``. The reported Jacobian (stability) is that of the global
        map, central differences of relative step ``jac_step``.

        Refinement (a larger rule started from a smaller one's solution): ``start_replicas``
        (P, R, k) starts each replica row at its own state, and ``jac0`` (P·R, k_free, k_free) is
        the Jacobian of the map there (e.g. the smaller rule's ``extras["secant_jacobian"]``): the
        warm phase is skipped and up to ``secant_steps`` Newton steps on the global map start
        from it, with Broyden's (secant) update of the Jacobian after each. The matrix used last
        is returned in ``extras["secant_jacobian"]`` (None where no Newton step was taken)."""
        xp, pb, R = self.xp, self.pb, self.R
        K = int(np.asarray(x0).shape[-1])
        if start_replicas is not None:
            x0 = xp.array(start_replicas, dtype=float).reshape(-1, K)
            if x0.shape[0] != self.n:
                raise ValueError(f"start_replicas must have shape ({self.P}, {R}, {K}), got "
                                 f"{np.asarray(start_replicas).shape}")
        else:
            x0 = xp.repeat(xp.array(x0, dtype=float), R, axis=0)
        n, K = x0.shape
        pins = np.array(sorted(pb.pins), dtype=int)
        free = np.setdiff1d(np.arange(K), pins)
        if pins.size:
            x0[:, pins] = 0.0
        inside = None
        if pb.inside is not None:
            inside = lambda x, idx: pb.inside(x, idx // R)  # noqa: E731

        def make_F(warm: bool) -> Callable[[Any, Any], Any]:
            def F(x: Any, idx: Any) -> Any:
                out = self.evaluate(x, idx, warm=warm)
                fx = out["map"].copy()
                if pins.size:
                    fx[:, pins] = 0.0
                fx[~out["prox_ok"]] = xp.nan  # a failed prox is never averaged silently
                return fx
            return F

        self.warm = None
        iters = xp.zeros(n, dtype=np.int64)
        x = x0
        refining = jac0 is not None
        if warm_phase and not refining:
            # phase 1: each node's prox continued from its previous minimiser (cheap); its fixed
            # point is a start for phase 2 only, never reported
            fp1 = solve_fixed_point(make_F(True), x, damping=damping, anderson=anderson, tol=max(tol, WARM_TOL),
                                    maxiter=maxiter, xp=xp, project=inside, names=pb.names, callback=callback)
            ok1 = xp.all(xp.isfinite(fp1.x), axis=1)
            x = xp.where(ok1[:, None], fp1.x, x0)
            iters = iters + fp1.iterations
        idx = xp.arange(n)
        # phase 2: the deterministic global prox (the map whose fixed point is reported), Newton
        # steps with a secant (Broyden) update of the Jacobian after each
        done = xp.zeros(n, dtype=bool)
        eye = np.eye(free.size)[None]
        A = None if jac0 is None else np.array(jac0, dtype=float) - eye  # J − I
        fin = J = None
        steps = secant_steps if refining else (chord if warm_phase else 0)
        g_prev = dx = None
        for _ in range(int(steps)):
            fin = self.evaluate(x, idx, keep=True)
            iters = iters + (~done)
            g = fin["map"] - x
            if pins.size:
                g[:, pins] = 0.0
            r = undamped_residual(x, x + g, xp)
            done = done | ((r <= tol) & fin["prox_ok"])
            if bool(xp.all(done)):
                break
            gf = np.asarray(g[:, free])
            if A is None:
                J, _ = self._jacobian(x, idx, free, rel_step, [])
                A = J - eye
            elif refining and g_prev is not None:  # Broyden: A ← A + (Δg − A Δx) Δxᵀ / Δxᵀ Δx on rows that moved
                nrm = (dx * dx).sum(axis=1)
                moved = (nrm > 0) & np.all(np.isfinite(gf), axis=1) & np.all(np.isfinite(g_prev), axis=1)
                if moved.any():
                    dg = gf - g_prev
                    u = dg - np.einsum("pij,pj->pi", A, dx)
                    A[moved] += (u[:, :, None] * dx[:, None, :])[moved] / nrm[moved, None, None]
            with np.errstate(all="ignore"):
                step = np.linalg.solve(A, -gf[..., None])[..., 0]
            xn = x.copy()
            xn[:, free] = x[:, free] + step
            ok = np.all(np.isfinite(xn), axis=1) & ~np.asarray(done)
            if inside is not None:
                ok &= np.asarray(inside(xn, idx), dtype=bool)
            x = xp.where(ok[:, None], xn, x)
            dx = np.where(ok[:, None], step, 0.0)
            g_prev = gf
        if fin is not None and bool(xp.all(done)):
            # every row reached tol in the Newton phase: its last evaluation is at the final x
            fp_iters, fp_status, fp_res = xp.zeros(n, dtype=np.int64), xp.full(n, int(Status.OK), dtype=np.int8), None
        else:
            fp = solve_fixed_point(make_F(False), x, damping=damping, anderson=anderson, tol=tol, maxiter=maxiter,
                                   xp=xp, project=inside, names=pb.names, callback=callback)
            fp_iters, fp_status, fp_res = fp.iterations, fp.status, fp.residual
            x = fp.x
            fin = self.evaluate(x, idx, keep=True)
        fp_iters = fp_iters + iters
        obs_keys = [k for k, v in fin.items() if k not in ("map", "prox_ok", "multiple_minima")
                    and getattr(v, "shape", None) == (n,)]
        lead = xp.full(n, np.nan)
        radius = xp.full(n, np.nan)
        if jacobian:
            # the global map, with a step wide enough that the nodes whose well switches (the
            # moving jump surface: a boundary term of the exact derivative) are averaged over
            J, _ = self._jacobian(x, idx, free, jac_step, [], local=False)
            ev = np.linalg.eigvals(np.where(np.isfinite(J), J, 0.0))
            lead = xp.asarray(ev.real.max(axis=1))
            radius = xp.asarray(np.abs(ev).max(axis=1))
        rel = xp.abs(fin["map"] - x) / xp.maximum(1.0, xp.abs(x))
        res_full = xp.max(rel[:, free], axis=1)
        gauge = xp.max(rel[:, pins], axis=1) if pins.size else xp.zeros(n)
        converged = (res_full <= tol) & fin["prox_ok"] & xp.all(xp.isfinite(fin["map"]), axis=1)
        status = fp_status.copy()
        status[converged] = int(Status.OK)
        status[~converged & (status == int(Status.OK))] = int(Status.MAXITER)
        residual = res_full if fp_res is None else xp.where(xp.isfinite(res_full), res_full, fp_res)

        # reduce over replicas: mean, standard error; converged only if every replica is
        P = self.P
        sh = lambda v: v.reshape((P, R) + tuple(v.shape[1:]))  # noqa: E731

        def mean_err(v: Any) -> tuple[Any, Any]:
            a = sh(v)
            m = a.mean(axis=1)
            e = a.std(axis=1, ddof=1) / np.sqrt(R) if R >= 2 else xp.full(m.shape, np.nan)
            return m, e

        X, Xerr = mean_err(x)
        if pins.size:
            Xerr[:, pins] = 0.0
        obs, obs_err = {}, {}
        for k in obs_keys:
            obs[k], obs_err[k] = mean_err(fin[k])
        conv = sh(converged).all(axis=1)
        st = sh(status).max(axis=1)
        st[conv] = int(Status.OK)
        return SaddleResult(x=X, converged=conv, residual=sh(residual).max(axis=1),
                            iterations=sh(fp_iters).max(axis=1), status=st.astype(np.int8), x_error=Xerr,
                            obs=obs, obs_error=obs_err, lead=sh(lead).mean(axis=1), radius=sh(radius).mean(axis=1),
                            jacobian=None if J is None else sh(np.asarray(J)).mean(axis=1),
                            gauge_residual=sh(gauge).max(axis=1),
                            multiple_minima=sh(fin["multiple_minima"]).sum(axis=1),
                            extras={"replica_x": sh(x), "replica_converged": sh(converged),
                                    "secant_jacobian": None if A is None else A + eye})

    def _jacobian(self, x: Any, idx: Any, free: np.ndarray, rel_step: float,
                  obs_keys: Sequence[str], local: bool = True) -> tuple[np.ndarray, dict]:
        """Central differences of the map (and of the observables ``obs_keys``) along each free
        coordinate, the prox continued from the minimisers at ``x`` (the local branch of each
        node; call :meth:`evaluate` with ``keep=True`` at ``x`` first)."""
        xp = self.xp
        P = x.shape[0]
        kf = free.size
        J = np.empty((P, kf, kf))
        grads = {k: np.empty((P, kf)) for k in obs_keys}
        start = self.last if local else None
        for a, j in enumerate(free):
            h = rel_step * xp.maximum(1.0, xp.abs(x[:, j]))
            xp_, xm = x.copy(), x.copy()
            xp_[:, j] += h
            xm[:, j] -= h
            op = self.evaluate(xp_, idx, local_from=start)
            om = self.evaluate(xm, idx, local_from=start)
            J[:, :, a] = np.asarray((op["map"] - om["map"])[:, free] / (2 * h)[:, None])
            for k in obs_keys:
                grads[k][:, a] = np.asarray((op[k] - om[k]) / (2 * h))
        return J, grads


def continuation(solve: Callable[..., SaddleResult], values: Sequence[Any], x0: Any, *,
                 on_branch: Callable[[SaddleResult], Any] | None = None,
                 patience: int | None = None) -> list[SaddleResult]:
    """Sweep ``values`` (one parameter, in order): ``solve(value, start)`` from the previous
    step's fixed point where it converged (else from ``x0``), the branch followed to its end.

    With ``on_branch`` (``res -> (n,) bool``) and ``patience``: a column that is off its branch
    for ``patience`` consecutive steps (after leaving it, or from the first step) has **ended** —
    it is not solved again (a cold restart past the end of a branch costs a full iteration
    budget and finds nothing new). Sweep each branch from where it exists towards its end.
    ``solve`` is then called as ``solve(value, start, live)`` with the ``(n,)`` mask of live
    columns and must return full-size results (dead columns unconverged)."""
    out: list[SaddleResult] = []
    start = np.array(x0, dtype=float, copy=True)
    track = on_branch is not None and patience is not None
    if track and int(patience) < 1:
        raise ValueError(f"continuation: 'patience' must be an integer >= 1, got {patience!r}")
    n = start.shape[0]
    off = np.zeros(n, dtype=int)
    live = np.ones(n, dtype=bool)
    for v in values:
        res = solve(v, start, live.copy()) if track else solve(v, start)
        out.append(res)
        conv = np.asarray(res.converged)
        start = np.where(conv[:, None], np.asarray(res.x), start)
        if track:
            on = np.asarray(on_branch(res), dtype=bool) & live
            off = np.where(on, 0, off + 1)
            live &= off < int(patience)
    return out


def branch_ends(values: Sequence[float], on_first: Any, on_second: Any) -> tuple[np.ndarray, np.ndarray]:
    """Per column of the ``(len(values), n)`` masks: the last value where the first branch is on
    its branch, and the first value where the second one is (NaN where never) — the grid ends
    of two branches followed in opposite directions along ``values`` (ascending)."""
    v = np.asarray(values, dtype=float)
    a, b = np.asarray(on_first, bool), np.asarray(on_second, bool)
    last = np.array([v[np.nonzero(a[:, j])[0].max()] if a[:, j].any() else np.nan for j in range(a.shape[1])])
    first = np.array([v[np.nonzero(b[:, j])[0].min()] if b[:, j].any() else np.nan for j in range(b.shape[1])])
    return last, first


def sign_crossing(values: Sequence[float], d: Any, d_err: Any, both: Any, second: Any
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per column of ``d`` ``(len(values), n)`` (e.g. Φ₂ − Φ₁ of two branches): the first value
    where ``d`` turns from negative to non-negative between neighbouring rows where ``both``
    branches exist, by linear interpolation, with the error ``max(d_err)/slope`` of the two rows.
    Where no such pair exists but the second branch, at the first row it exists (``second``),
    already has ``d >= 0`` and the row before exists too, the crossing is the end of that branch:
    the middle of the grid interval, error half its width, ``at_end`` True."""
    v = np.asarray(values, dtype=float)
    d, de = np.asarray(d, float), np.asarray(d_err, float)
    both, sec = np.asarray(both, bool), np.asarray(second, bool)
    nw = d.shape[1]
    root, err, at_end = np.full(nw, np.nan), np.full(nw, np.nan), np.zeros(nw, dtype=bool)
    for j in range(nw):
        for i in range(v.size - 1):
            if both[i, j] and both[i + 1, j] and d[i, j] < 0 <= d[i + 1, j]:
                slope = (d[i + 1, j] - d[i, j]) / (v[i + 1] - v[i])
                root[j] = v[i] - d[i, j] / slope
                err[j] = max(de[i, j], de[i + 1, j]) / slope
                break
        else:
            first = np.nonzero(sec[:, j])[0]
            if first.size and first[0] > 0 and both[first[0], j] and d[first[0], j] >= 0:
                i = first[0]
                root[j], err[j], at_end[j] = 0.5 * (v[i - 1] + v[i]), 0.5 * (v[i] - v[i - 1]), True
    return root, err, at_end
