"""Shipping a model's kernels to Dask workers as generated source plus hash.

Workers never receive pickled functions: a :class:`KernelBundle` carries, per program, the
generated source text, its SHA-256, and the equation key it was generated from. A worker
rebuilds each :class:`~derive.codegen.Kernel` from the text (``exec`` of our own source),
checks both hashes, and installs it in its model's kernel cache, so it neither re-derives the
equations in SymPy nor can silently run different ones.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, Mapping

from .codegen import Kernel
from .model import Model

__all__ = ["KernelBundle", "kernel_bundle", "install_kernels", "KernelMismatchError"]


class KernelMismatchError(RuntimeError):
    """A worker received kernels whose text or equations do not match what was sent."""


@dataclass(frozen=True)
class KernelBundle:
    """Generated kernels of one model: ``programs[name] = (function name, inputs, outputs, key,
    source, source_sha256, target)`` (target ``xp``, or ``numba`` for a compiled loop's kernels;
    a 6-tuple is ``xp``); ``equations_sha256`` is the model's :meth:`Model.equations_hash_for`
    (over the ``xp`` kernels, which cover every program)."""

    model: str
    equations_sha256: str
    package_version: str
    programs: Mapping[str, tuple]

    def equations_hash(self) -> str:
        """The equations hash recomputed from the shipped keys (as :attr:`Model.equations_hash`)."""
        from .codegen.kernel import equations_digest

        return equations_digest({n: (p[3], p[5]) for n, p in self.programs.items()
                                 if (p[6] if len(p) > 6 else "xp") == "xp"})  # as Model.equations_hash_for


def kernel_bundle(model: Model, package_version: str, options: Mapping[str, Any] = {}) -> KernelBundle:
    """The kernels ``model`` uses with ``options`` (:meth:`Model.kernels_for`: array-target, and
    ``numba``-target where a compiled loop runs) as text + hashes + target, generated here, on the client. The text is the *verified* source (a cached
    kernel that fails its integrity record is regenerated, see
    :func:`derive.codegen.kernel.read_verified`), and ``equations_sha256`` covers its hash."""
    progs = {}
    for name, k in model.kernels_for(options).items():
        progs[name] = (k.name, tuple(k.inputs), tuple(k.outputs), k.key, k.source, k.source_sha256, k.target)
    return KernelBundle(model.name, model.equations_hash_for(options), package_version, progs)


def install_kernels(model: Model, bundle: KernelBundle, package_version: str,
                    options: Mapping[str, Any] = {}) -> None:
    """Install ``bundle`` where ``model.evaluate`` finds its kernels, after checking it (on a
    worker). Raises :class:`KernelMismatchError` if the model name, the package version, a
    source hash or the equations hash differs from what the bundle declares, or if the worker
    already holds other equations under the same names."""
    if bundle.model != model.name:
        raise KernelMismatchError(f"bundle is for model {bundle.model!r}, worker model is {model.name!r}")
    if bundle.package_version != package_version:
        raise KernelMismatchError(
            f"client runs attention-theory {bundle.package_version}, this worker "
            f"{package_version}: install the same version on every worker")
    if bundle.equations_hash() != bundle.equations_sha256:
        raise KernelMismatchError("the shipped kernel keys do not hash to the declared equations hash")
    kernels: dict[str, Kernel] = {}
    for name, rec in bundle.programs.items():
        fname, inputs, outputs, key, source, sha = rec[:6]
        target = rec[6] if len(rec) > 6 else "xp"
        if target not in ("xp", "numba"):
            raise KernelMismatchError(f"kernel {name!r}: unknown target {target!r}")
        if hashlib.sha256(source.encode()).hexdigest() != sha:
            raise KernelMismatchError(f"kernel {name!r}: source does not match its SHA-256")
        kernels[name] = Kernel(name=fname, target=target, inputs=tuple(inputs), outputs=tuple(outputs),
                               key=key, source=source)
    try:
        model.install_kernels_for(options, kernels)
    except ValueError as exc:
        raise KernelMismatchError(str(exc)) from None
