"""A toy fixed-point model for the sweep tests: the Curie–Weiss mean-field equation
``m = tanh(β m + h)``. Everything about it is known in closed form (fixed points, their
stability ``β(1 − m²)``, the spinodals ``h_s = ±(β m_s − atanh m_s)`` with ``m_s² = 1 − 1/β``),
so the generic sweep machinery (continuation, multi-start, stability, store) can be checked
against independent numbers. Not a registered model: tests pass the instance."""
from __future__ import annotations

import math
from typing import Any, Mapping

import numpy as np
import sympy as sp

from derive.codegen import Program
from derive.model import Equation, Model
from derive.params import Domain, Parameter, positive
from numerics.fixed_point import solve_fixed_point
from numerics.phases import jacobian_fd, stability

BETA = Parameter("beta", positive, r"\beta", "inverse temperature")
H = Parameter("h", Domain(-math.inf, math.inf), "h", "external field")


class CurieWeiss(Model):
    name = "curie-weiss-toy"
    title = "Curie–Weiss mean field (test toy)"
    paper = "textbook"
    parameters = (BETA, H)
    observables = ("m", "free_energy", "stability")
    state = ("m",)
    options = {"init": None, "stability": False, "tol": 1e-12, "maxiter": 5000}

    def programs(self) -> dict[str, Program]:
        b, h, m = BETA.symbol, H.symbol, sp.Symbol("m")
        m_new, f = sp.Symbol("m_new"), sp.Symbol("f")
        # free energy per spin whose stationarity is the mean-field equation
        fe = b * m**2 / 2 - sp.log(2 * sp.cosh(b * m + h))
        return {"map": Program("cw_map", (b, h, m), ((m_new, sp.tanh(b * m + h)),), (m_new,)),
                "free": Program("cw_free", (b, h, m), ((f, fe),), (f,))}

    def equations(self) -> list[Equation]:
        b, h, m = BETA.symbol, H.symbol, sp.Symbol("m")
        return [Equation("mean field", m, sp.tanh(b * m + h), "definition")]

    def random_states(self, n: int, rng: Any) -> np.ndarray:
        return rng.uniform(-1.0, 1.0, size=(n, 1))

    def evaluate(self, params: Mapping[str, Any], backend: Any, **options: Any) -> dict[str, Any]:
        o = self.validate_options(options)
        xp, sp_ = backend.xp, backend.special
        b, h = params["beta"], params["h"]
        n = b.shape[0]
        k = self.kernel("map")
        x0 = xp.full((n, 1), 0.5)
        if o["init"] is not None:
            init = xp.asarray(o["init"], dtype=float).reshape(-1, 1) * xp.ones((n, 1))
            x0 = xp.where(xp.isfinite(init), init, x0)

        def F(x: Any, idx: Any) -> Any:
            return k(xp, sp_, b[idx], h[idx], x[:, 0])["m_new"][:, None]

        fp = solve_fixed_point(F, x0, damping=0.5, anderson=3, tol=o["tol"], maxiter=o["maxiter"], xp=xp)
        m = xp.where(fp.converged, fp.x[:, 0], xp.nan)
        out = {"m": m, "free_energy": self.kernel("free")(xp, sp_, b, h, m)["f"]}
        if o["stability"]:
            lead, _ = stability(jacobian_fd(F, fp.x, xp.arange(n), xp=xp), xp)
            out["stability"] = xp.where(fp.converged, lead, xp.nan)
        else:
            out["stability"] = xp.full(n, xp.nan)
        out.update(converged=fp.converged, residual=fp.residual, iterations=fp.iterations,
                   status=fp.status)
        return out
