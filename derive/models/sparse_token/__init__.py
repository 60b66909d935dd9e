r"""Sparse-token classification by single-layer attention (Barnfield, Cui, Lu; arXiv:2509.25153).

A package: ``statement.py`` (parameters, symbols, SymPy building blocks), ``twostep.py`` (the two
gradient steps derived by SymPy), ``readout.py`` (the trained readout's programs; the fixed
point is solved by the generic driver :mod:`numerics.erm_readout` with the generated kernels),
``model.py`` (:class:`SparseToken`: equations, programs, the pipeline). The modules import
``statement`` and never each other in a circle; the public API is re-exported here.
"""
from __future__ import annotations

from .model import MODEL, SparseToken
from .statement import *  # noqa: F403
from .statement import __all__ as _statement_all

__all__ = ["SparseToken", "MODEL", *_statement_all]
