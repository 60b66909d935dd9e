"""Registry of models, keyed by stable names (``icl-linear-attention``, ...)."""
from __future__ import annotations

from functools import lru_cache
from importlib import import_module

from ..model import Model

__all__ = ["names", "get", "Model"]

#: stable name -> "module:class"; modules are imported on first use
_REGISTRY: dict[str, str] = {
    "icl-linear-attention": "derive.models.icl_linear_attention:ICLLinearAttention",
}


def names() -> list[str]:
    """Registered model names."""
    return sorted(_REGISTRY)


@lru_cache(maxsize=None)
def get(name: str) -> Model:
    """The model registered as ``name`` (one instance per process; models are immutable)."""
    try:
        target = _REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown model {name!r}; registered models are {names()}") from None
    module, cls = target.split(":")
    return getattr(import_module(module), cls)()
