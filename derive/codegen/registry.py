"""The one kernel registry: every kernel a model uses, declared by name, generated and cached here.

A model declares its programs -- scalar :class:`~derive.codegen.Program` s (``Model.programs``),
tensor programs (``Model.tensor_programs``, see :mod:`derive.codegen.tensor`) and programs that
depend on options such as a size (declared on demand with :meth:`KernelRegistry.declare`, e.g.
the general-(L, r) positional/semantic construction) -- and asks :meth:`KernelRegistry.kernel`
for the generated kernel. :func:`compile_program` is the single dispatch from a program to the
stage that lowers it. Nothing else caches kernels: hashing (``Model.equations_hash``), the
50-digit check (``Model.verify_kernels``), ``attn-theory codegen``, the GPU parity test and the
sweep's kernel bundles all read the registry, so they see every kernel.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Mapping, Union

import sys

from .kernel import Kernel, Program, generate

if TYPE_CHECKING:  # pragma: no cover
    from .tensor import TensorProgram


def _is_tensor_program(program: object) -> bool:
    """``isinstance(program, TensorProgram)`` without importing the tensor stage (SymPy): a
    tensor program cannot exist unless its module was imported."""
    mod = sys.modules.get(f"{__package__}.tensor")
    return mod is not None and isinstance(program, mod.TensorProgram)

__all__ = ["AnyProgram", "KernelRegistry", "compile_program"]

#: what a model may declare
AnyProgram = Union[Program, "TensorProgram"]


def compile_program(program: AnyProgram, target: str = "xp") -> Kernel:
    """Generate ``program`` for ``target``: scalar programs by :func:`~derive.codegen.generate`
    ("xp" or "mpmath"), tensor programs by :func:`~derive.codegen.tensor.generate_tensor` ("xp"
    only: their mpmath check unrolls them, :func:`~derive.codegen.tensor.unrolled_program`)."""
    if _is_tensor_program(program):
        from .tensor import generate_tensor

        if target != "xp":
            raise ValueError(f"tensor program {program.name!r} has only the 'xp' target; its mpmath "
                             "check prints derive.codegen.tensor.unrolled_program(...) instead")
        return generate_tensor(program)
    if isinstance(program, Program):
        return generate(program, target)
    raise TypeError(f"not a program: {program!r}")


class KernelRegistry:
    """Declared programs of one owner (a model) by name, and their generated kernels per target.

    ``declared``: called once, lazily, for the statically declared programs (deriving them may
    run SymPy). Further programs are added with :meth:`declare`. Kernels rebuilt from shipped
    source (Dask workers) are put in with :meth:`install`, which refuses other equations under a
    name already held.
    """

    def __init__(self, owner: str, declared: Callable[[], Mapping[str, AnyProgram]]) -> None:
        self.owner = owner
        self._declared_fn = declared
        self._declared: dict[str, AnyProgram] | None = None
        self._extra: dict[str, AnyProgram] = {}
        #: (name, target) -> Kernel: the cache
        self.kernels: dict[tuple[str, str], Kernel] = {}

    # -- declarations ---------------------------------------------------------------------
    def programs(self) -> dict[str, AnyProgram]:
        """Every declared program (static ones first, then those declared on demand)."""
        if self._declared is None:
            self._declared = dict(self._declared_fn())
        return {**self._declared, **self._extra}

    def declare(self, name: str, program: AnyProgram) -> None:
        """Declare ``program`` under ``name`` (idempotent for equal programs)."""
        old = self._extra.get(name)
        if old is not None and old != program:
            raise ValueError(f"{self.owner}: program {name!r} is already declared with other equations")
        self._extra[name] = program

    def program(self, name: str) -> AnyProgram:
        progs = self.programs()
        try:
            return progs[name]
        except KeyError:
            raise KeyError(f"{self.owner!r} has no program {name!r}; it has {sorted(progs)}") from None

    def is_tensor(self, name: str) -> bool:
        return _is_tensor_program(self.program(name))

    # -- kernels ----------------------------------------------------------------------------
    def kernel(self, name: str, target: str = "xp") -> Kernel:
        """The generated kernel of program ``name`` for ``target``, cached."""
        k = (name, target)
        if k not in self.kernels:
            self.kernels[k] = compile_program(self.program(name), target)
        return self.kernels[k]

    def declared_kernel(self, name: str, make: Callable[[], AnyProgram], target: str = "xp") -> Kernel:
        """The kernel of ``name``, declaring its program on first use with ``make()`` (programs that
        depend on a size or an option, e.g. the general-(L, r) construction; an installed kernel
        is returned without deriving anything)."""
        k = (name, target)
        if k not in self.kernels:
            if name not in self._extra:
                self._extra[name] = make()
            self.kernels[k] = compile_program(self._extra[name], target)
        return self.kernels[k]

    def install(self, name: str, kernel: Kernel) -> None:
        """Put a kernel rebuilt from shipped source under ``name`` (array target)."""
        old = self.kernels.get((name, kernel.target))
        if old is not None and old.key != kernel.key:
            raise ValueError(f"kernel {name!r}: this process already holds other equations")
        self.kernels.setdefault((name, kernel.target), kernel)
