"""attention-theory: the symbolic layer and the user-facing engine.

>>> import derive
>>> derive.models.names()
['icl-linear-attention']
>>> ds = derive.solve("icl-linear-attention", tau=[0.5, 2.0], alpha=10.0, kappa=0.5,
...                   rho=0.01, lam=0.0)
"""
from . import models
from .solve import solve

__all__ = ["models", "solve"]
