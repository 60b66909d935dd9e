"""Code generation: SymPy programs -> Python source for NumPy/CuPy (``xp``) and mpmath."""
from .functions import LogAddExp, Sigmoid, Softplus
from .kernel import CODEGEN_VERSION, Kernel, Program, cache_dir, generate
from .printer import FUNCTION_TABLE, MpmathPrinter, UnmappedNodeError, XpPrinter, check_supported
from .registry import KernelRegistry, compile_program
from .tensor import Softmax, TensorProgram, generate_tensor

__all__ = [
    "CODEGEN_VERSION", "FUNCTION_TABLE", "Kernel", "LogAddExp", "MpmathPrinter", "Program",
    "Sigmoid", "Softplus", "UnmappedNodeError", "XpPrinter", "cache_dir", "check_supported", "generate",
    "KernelRegistry", "compile_program", "Softmax", "TensorProgram", "generate_tensor",
]
