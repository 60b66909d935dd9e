"""Linking ``numba``-target kernels into one module of compiled per-node functions.

A model whose saddle point runs the compiled loop of :mod:`numerics.compiled` supplies four
small functions (channel, starts, prox objective, integrands) that only move numbers between
the loop's arrays and its generated kernels' arguments. They are written here as text from the
kernels' declared inputs and outputs -- :func:`call` maps each input *by name* to an argument
expression, and names each output -- so the linking code never restates a formula and cannot
pass arguments out of order. :func:`module_source` joins the kernels' sources and that text into
one module (:func:`load_module` compiles and caches it).
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

from .kernel import Kernel

__all__ = ["call", "node_glue", "module_source", "load_module"]


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


#: modules loaded in this process, by name (the SHA-256 of their source)
_modules: dict[str, Any] = {}


def load_module(tag: str, source: str) -> Any:
    """The module of compiled functions ``source`` (``numba``-target kernels and a model's linking
    code), named by the SHA-256 of its text, imported once per process.

    Where the kernel cache folder is usable (:func:`~derive.codegen.kernel.trusted_cache_dir`),
    the source is written there with its integrity record (and a copy that fails its record is
    rewritten, as for every cached kernel), and Numba keeps its compiled code next to it
    (``__pycache__`` inside that private folder): a later process loads the machine code
    instead of compiling (seconds). Otherwise it is compiled in memory, without a disk cache."""
    import hashlib
    import importlib.util
    import sys

    digest = hashlib.sha256(source.encode()).hexdigest()
    name = f"_attn_compiled_{tag}_{digest[:20]}"
    if name in _modules:
        return _modules[name]
    path = None
    try:
        from .kernel import read_verified, trusted_cache_dir, write_verified

        d = trusted_cache_dir()
        if d is not None:
            p = d / f"{name}.py"
            if read_verified(p) == source or write_verified(p, source):
                path = p
    except OSError:  # a cache problem only costs compilation
        path = None
    if path is not None:
        spec = importlib.util.spec_from_file_location(name, str(path))
        mod = importlib.util.module_from_spec(spec)
        sys.modules[name] = mod  # Numba's cache re-imports the module by name
        spec.loader.exec_module(mod)
    else:
        import types

        mod = types.ModuleType(name)
        sys.modules[name] = mod
        text = source.replace("import jit as _jit", "import jit_nocache as _jit")  # no file: no disk cache
        exec(compile(text, f"<{name}>", "exec"), mod.__dict__)  # noqa: S102 - our own source
    _modules[name] = mod
    return mod


def node_glue(channel: tuple[str, Sequence[str]], starts: Sequence[tuple[str, str]],
              fgh: tuple[str, Sequence[str]], integrands: tuple[Sequence[str], Sequence[str]]) -> str:
    """The four functions the generic per-node loop (:data:`numerics.compiled.LOOP_SOURCE`) calls,
    as source: ``node_channel(x, par, z, c)``, ``node_start(c, k)``, ``node_fgh(y0, y1, c)``,
    ``node_integrands(y0, y1, x, par, z, c, out)``.

    ``channel``: (a :func:`call` statement, the expressions stored in ``c[0], c[1], …``);
    ``starts``: the ``(y0, y1)`` expressions of each Newton start, in ``c``; ``fgh``: (a call, the
    six expressions returned: objective, gradient, Hessian ``H00, H01, H11``); ``integrands``:
    (calls, the expressions stored in ``out[0], out[1], …``). Expressions name the loop's arrays
    (``x``, ``par``, ``z``, ``c``, ``y0``, ``y1``) and the locals the calls define: plumbing only."""
    if len(fgh[1]) != 6:
        raise ValueError(f"node_fgh returns (f, g0, g1, H00, H01, H11); got {len(fgh[1])} expressions")
    if not starts:
        raise ValueError("at least one Newton start is needed")
    lines = ["@_jit", "def node_channel(x, par, z, c):", channel[0],
             *[f"    c[{i}] = {v}" for i, v in enumerate(channel[1])], "", "",
             "@_jit", "def node_start(c, k):"]
    for k, (a, b) in enumerate(starts[:-1]):
        lines += [f"    if k == {k}:", f"        return {a}, {b}"]
    lines += [f"    return {starts[-1][0]}, {starts[-1][1]}", "", "",
              "@_jit", "def node_fgh(y0, y1, c):", fgh[0], "    return " + ", ".join(fgh[1]), "", "",
              "@_jit", "def node_integrands(y0, y1, x, par, z, c, out):", *integrands[0],
              *[f"    out[{i}] = {v}" for i, v in enumerate(integrands[1])], ""]
    return "\n".join(lines)
