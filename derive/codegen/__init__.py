"""Code generation: SymPy programs -> Python source for NumPy/CuPy (``xp``) and mpmath."""
from typing import TYPE_CHECKING, Any

from .kernel import CODEGEN_VERSION, Kernel, Program, cache_dir, generate  # SymPy-free until used

if TYPE_CHECKING:  # pragma: no cover
    from .functions import LogAddExp, Sigmoid, Softplus
    from .printer import FUNCTION_TABLE, MpmathPrinter, UnmappedNodeError, XpPrinter, check_supported
    from .registry import KernelRegistry, compile_program
    from .tensor import Softmax, TensorProgram, generate_tensor

#: names imported on first access (these modules import SymPy): ``import derive`` and solving
#: from cached kernels stay free of SymPy (issue 14.1)
_LAZY = {
    "LogAddExp": "functions", "Sigmoid": "functions", "Softplus": "functions",
    "FUNCTION_TABLE": "printer", "MpmathPrinter": "printer", "UnmappedNodeError": "printer",
    "XpPrinter": "printer", "check_supported": "printer",
    "KernelRegistry": "registry", "compile_program": "registry",
    "Softmax": "tensor", "TensorProgram": "tensor", "generate_tensor": "tensor",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

__all__ = [
    "CODEGEN_VERSION", "FUNCTION_TABLE", "Kernel", "LogAddExp", "MpmathPrinter", "Program",
    "Sigmoid", "Softplus", "UnmappedNodeError", "XpPrinter", "cache_dir", "check_supported", "generate",
    "KernelRegistry", "compile_program", "Softmax", "TensorProgram", "generate_tensor",
]
