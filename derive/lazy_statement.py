"""SymPy-free model packages: the plumbing that reads a model's statement only when needed.

A model package ``derive/models/<name>/`` keeps its SymPy statement in ``statement.py`` and
its runtime model (parameters, options, observables, the pipeline hook) in a SymPy-free
``__init__.py`` (see ``docs/architecture.md``, "Start-up"). With a warm kernel cache nothing
here imports SymPy; the first symbolic request does:

* :func:`statement_getattr` -- a module ``__getattr__`` for the package: unknown names
  (symbols such as ``alpha``, ``C``) are read from ``<package>.statement``;
* :class:`FromStatement` -- a class attribute forwarded to the one statement object
  (``ExtensiveWidthQuadratic.Q0_def``, ``model.qhat_map``), on the class and on instances;
* :class:`StatementSymbolNames` -- ``Model.symbol_names`` read from ``statement.SYMBOL_NAMES``.
"""
from __future__ import annotations

import importlib
from typing import Any, Callable

__all__ = ["statement_getattr", "FromStatement", "StatementSymbolNames"]


def statement_getattr(package: str) -> Callable[[str], Any]:
    """A module-level ``__getattr__`` for ``package`` that reads missing names from
    ``package + '.statement'`` (importing SymPy on first use)."""

    def __getattr__(name: str) -> Any:
        if name.startswith("__") or name == "statement":
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        statement = importlib.import_module(f"{package}.statement")
        try:
            return getattr(statement, name)
        except AttributeError:
            raise AttributeError(f"module {package!r} has no attribute {name!r}") from None

    return __getattr__


class FromStatement:
    """An attribute of the statement object returned by ``factory()`` (a definition or a
    derivation), readable on the model class and its instances; SymPy on first use."""

    def __init__(self, factory: Callable[[], Any]) -> None:
        self.factory = factory
        self.name = ""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, obj: Any, owner: type | None = None) -> Any:
        return getattr(self.factory(), self.name)


class StatementSymbolNames:
    """``symbol_names`` of ``<package>.statement`` (its ``SYMBOL_NAMES``), on the class and
    its instances; SymPy on first use."""

    def __init__(self, package: str) -> None:
        self.package = package

    def __get__(self, obj: Any, owner: type | None = None) -> Any:
        return importlib.import_module(f"{self.package}.statement").SYMBOL_NAMES
