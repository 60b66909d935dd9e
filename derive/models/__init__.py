"""Registry of models, keyed by stable names (``icl-linear-attention``, ...).

Discovery, not a central list: every public module ``derive/models/<module>.py`` or package
``derive/models/<module>/`` (``pkgutil.iter_modules`` lists both; a big model may be split into
a package whose ``__init__`` names the class) is one model, registered under ``<module>`` with
``_`` written ``-``, and names its class in a module attribute ``MODEL``. Names starting with
``_`` are private helpers, not models. Adding a model touches no shared file.
"""
from __future__ import annotations

import pkgutil
from functools import lru_cache
from importlib import import_module

from ..model import Model

__all__ = ["names", "get", "register", "module_name", "Model"]

#: models registered at run time by :func:`register` (a user's own, outside this package)
_REGISTERED: dict[str, Model] = {}


def module_name(name: str) -> str:
    """``positional-semantic`` -> ``positional_semantic``."""
    return name.replace("-", "_")


def names() -> list[str]:
    """Registered model names (found without importing the model modules), plus those added
    by :func:`register`."""
    found = {m.name.replace("_", "-") for m in pkgutil.iter_modules(__path__)
             if not m.name.startswith("_")}
    return sorted(found | set(_REGISTERED))


def register(model: Model | type[Model], *, replace: bool = False) -> Model:
    """Make a model defined outside ``derive/models`` (your own, see ``docs/tutorial.md``)
    available to :func:`get`, ``derive.solve`` and sweeps under ``model.name``; returns the
    instance. A class is instantiated. Re-registering a name needs ``replace=True``; a built-in
    name cannot be taken."""
    inst = model() if isinstance(model, type) else model
    if not isinstance(inst, Model):
        raise TypeError(f"register() needs a derive.model.Model (subclass or instance), got {model!r}")
    name = inst.name
    if not name or not isinstance(name, str):
        raise ValueError("a registered model needs a non-empty string attribute 'name'")
    builtin = {m.name.replace("_", "-") for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_")}
    if name in builtin:
        raise ValueError(f"{name!r} is a built-in model name; choose another")
    if name in _REGISTERED and not replace:
        raise ValueError(f"a model named {name!r} is already registered (pass replace=True)")
    _REGISTERED[name] = inst
    get.cache_clear()
    return inst


@lru_cache(maxsize=None)
def get(name: str) -> Model:
    """The model registered as ``name`` (one instance per process; models are immutable)."""
    if name in _REGISTERED:
        return _REGISTERED[name]
    if name not in names():
        raise KeyError(f"unknown model {name!r}; registered models are {names()}")
    module = import_module(f"{__name__}.{module_name(name)}")
    cls = getattr(module, "MODEL", None)
    if cls is None:
        raise TypeError(f"module {module.__name__} defines no MODEL class")
    return cls()
