"""Registry of models, keyed by stable names (``icl-linear-attention``, ...).

Discovery, not a central list: every public module ``derive/models/<module>.py`` is
one model, registered under ``<module>`` with ``_`` written ``-``, and names its
class in a module attribute ``MODEL``. Adding a model touches no shared file.
"""
from __future__ import annotations

import pkgutil
from functools import lru_cache
from importlib import import_module

from ..model import Model

__all__ = ["names", "get", "module_name", "Model"]


def module_name(name: str) -> str:
    """``positional-semantic`` -> ``positional_semantic``."""
    return name.replace("-", "_")


def names() -> list[str]:
    """Registered model names (found without importing the model modules)."""
    return sorted(m.name.replace("_", "-") for m in pkgutil.iter_modules(__path__)
                  if not m.name.startswith("_"))


@lru_cache(maxsize=None)
def get(name: str) -> Model:
    """The model registered as ``name`` (one instance per process; models are immutable)."""
    if name not in names():
        raise KeyError(f"unknown model {name!r}; registered models are {names()}")
    module = import_module(f"{__name__}.{module_name(name)}")
    cls = getattr(module, "MODEL", None)
    if cls is None:
        raise TypeError(f"module {module.__name__} defines no MODEL class")
    return cls()
