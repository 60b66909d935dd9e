"""Array backends: the namespace ``xp`` and its special-function module.

A :class:`Backend` bundles what a generated kernel needs (``xp`` for arrays and
elementary functions, ``special`` for erf/erfc/gammaln...) plus moving arrays
to and from the host and building seeded random generators. NumPy is the
default; CuPy is used only when asked for and usable.
"""
from __future__ import annotations

from dataclasses import dataclass
from types import ModuleType
from typing import Any

import numpy as np

__all__ = ["Backend", "BackendUnavailableError", "get_backend", "available_backends"]


class BackendUnavailableError(RuntimeError):
    """The requested array backend cannot be used on this machine."""


@dataclass(frozen=True)
class Backend:
    """An array namespace and its companions.

    Attributes
    ----------
    name: ``"numpy"`` or ``"cupy"``.
    xp: the array module (``numpy`` or ``cupy``).
    special: the special-function module (``scipy.special`` or ``cupyx.scipy.special``).
    """

    name: str
    xp: ModuleType
    special: ModuleType

    def asarray(self, a: Any, dtype: Any = None) -> Any:
        """Array on this backend (float64 unless ``dtype`` says otherwise)."""
        return self.xp.asarray(a, dtype=self.xp.float64 if dtype is None else dtype)

    def to_numpy(self, a: Any) -> np.ndarray:
        """Host (NumPy) copy of an array of this backend."""
        if self.name == "cupy":
            return self.xp.asnumpy(a)
        return np.asarray(a)

    def rng(self, seed: int | None) -> Any:
        """A seeded random generator of this backend (``default_rng`` API)."""
        if self.name == "cupy":
            return self.xp.random.default_rng(seed)
        return np.random.default_rng(seed)

    def synchronize(self) -> None:
        """Wait for queued device work (no-op on NumPy); for honest timings."""
        if self.name == "cupy":
            self.xp.cuda.Stream.null.synchronize()


class _LazySpecial:
    """``scipy.special``, imported on first attribute access: a pipeline whose kernels use no
    special function never pays its import (about a third of a cold start-up)."""

    _mod = None

    def __getattr__(self, name: str):
        if name.startswith("__"):
            raise AttributeError(name)
        mod = _LazySpecial._mod
        if mod is None:
            import scipy.special as mod

            _LazySpecial._mod = mod
        return getattr(mod, name)

    def __repr__(self) -> str:
        return "<scipy.special (imported on first use)>"


def _numpy_backend() -> Backend:
    return Backend("numpy", np, _LazySpecial())


def _cupy_backend() -> Backend:
    try:
        import cupy  # type: ignore[import-not-found]
        import cupyx.scipy.special  # type: ignore[import-not-found]
    except ImportError as exc:  # pragma: no cover - depends on the machine
        raise BackendUnavailableError(
            "backend='cupy' was requested but CuPy is not installed; "
            "install it with `pip install attention-theory[gpu]` (CUDA 12) "
            "or use backend='numpy'"
        ) from exc
    try:
        n_dev = cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:  # pragma: no cover - depends on the machine
        raise BackendUnavailableError(
            f"backend='cupy' was requested but no CUDA device is usable ({exc}); "
            "use backend='numpy'"
        ) from exc
    if n_dev < 1:  # pragma: no cover - depends on the machine
        raise BackendUnavailableError(
            "backend='cupy' was requested but no CUDA device was found; use backend='numpy'"
        )
    return Backend("cupy", cupy, cupyx.scipy.special)


_FACTORIES = {"numpy": _numpy_backend, "cupy": _cupy_backend}


def get_backend(name: str | Backend = "numpy") -> Backend:
    """Return the backend called ``name`` ("numpy" or "cupy").

    Raises ``ValueError`` for an unknown name and :class:`BackendUnavailableError`
    when CuPy is asked for but not installed or no GPU is usable.
    """
    if isinstance(name, Backend):
        return name
    try:
        factory = _FACTORIES[str(name).lower()]
    except KeyError:
        raise ValueError(
            f"unknown backend {name!r}; valid backends are {sorted(_FACTORIES)}"
        ) from None
    return factory()


def available_backends() -> list[str]:
    """Names of the backends usable on this machine."""
    out = []
    for name in _FACTORIES:
        try:
            get_backend(name)
        except BackendUnavailableError:
            continue
        out.append(name)
    return out
