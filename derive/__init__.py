"""attention-theory: the symbolic layer and the user-facing engine.

>>> import derive
>>> derive.models.names()
['icl-linear-attention']
>>> ds = derive.solve("icl-linear-attention", tau=[0.5, 2.0], alpha=10.0, kappa=0.5,
...                   rho=0.01, lam=0.0)

``import derive`` is light: SymPy, xarray, matplotlib and typer are imported when first used
(``derive.solve`` imports xarray; deriving or rendering equations imports SymPy; a solve whose
kernels are in the cache never does; see docs/architecture.md, "Start-up").
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from . import models

if TYPE_CHECKING:  # pragma: no cover
    from .solve import solve

__all__ = ["models", "solve"]


def __getattr__(name: str) -> Any:
    if name == "solve":
        from .solve import solve

        globals()["solve"] = solve
        return solve
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
