"""Linking ``numba``-target kernels into one module of compiled per-node functions.

A model whose saddle point runs the compiled loop of :mod:`numerics.compiled` supplies four
small functions (channel, starts, prox objective, integrands) that only move numbers between
the loop's arrays and its generated kernels' arguments. They are written here as text from the
kernels' declared inputs and outputs -- :func:`call` maps each input *by name* to an argument
expression, and names each output -- so the linking code never restates a formula and cannot
pass arguments out of order. :func:`module_source` joins the kernels' sources and that text into
one module (:func:`numerics.compiled.load_module` compiles and caches it).
"""
from __future__ import annotations

from typing import Mapping, Sequence

from .kernel import Kernel

__all__ = ["call", "module_source"]


def call(kernel: Kernel, args: Mapping[str, str], indent: str = "    ") -> tuple[str, dict[str, str]]:
    """One statement calling ``kernel`` (``numba`` target) with each input taken from ``args``
    (input name -> expression) and its outputs unpacked into locals ``_<kernel>_<output>``;
    returns the statement and the map output name -> local."""
    if kernel.target != "numba":
        raise ValueError(f"kernel {kernel.name!r} has target {kernel.target!r}; link 'numba' kernels")
    missing = [n for n in kernel.inputs if n not in args]
    extra = sorted(set(args) - set(kernel.inputs))
    if missing or extra:
        raise ValueError(f"kernel {kernel.name!r} takes {kernel.inputs}; missing {missing}, unknown {extra}")
    outs = {o: f"_{kernel.name}_{o}" for o in kernel.outputs}
    lhs = "".join(f"{v}, " for v in outs.values())
    return f"{indent}{lhs}= {kernel.name}({', '.join(args[n] for n in kernel.inputs)})", outs


def module_source(kernels: Sequence[Kernel], glue: str) -> str:
    """The kernels' sources (each defines its function and helpers, all compiled), ``glue`` (which
    defines ``node_channel``, ``node_start``, ``node_fgh``, ``node_integrands``) and the entry point
    ``node_loop`` (:data:`numerics.compiled.LOOP_SOURCE`)."""
    for k in kernels:
        if k.target != "numba":
            raise ValueError(f"kernel {k.name!r} has target {k.target!r}; link 'numba' kernels")
    from numerics.compiled import LOOP_SOURCE

    parts = [k.source for k in kernels]
    parts.append("from numerics.compiled import jit as _jit\n\n" + glue)
    parts.append(LOOP_SOURCE)
    return "\n\n".join(p.strip("\n") + "\n" for p in parts)
