"""The one progress bar of every long operation (solves, sweeps, simulations, ``reproduce``).

A bar is drawn only where someone watches: on a terminal (``sys.stderr.isatty()``) or in a
Jupyter kernel (tqdm's notebook widget). Piped or redirected output stays quiet, so logs and
files written by ``attn-theory ... > log`` hold results, not carriage-return noise.

The environment variable ``ATTN_THEORY_PROGRESS`` overrides the detection: ``0`` never draws
a bar, ``1`` always does (e.g. to watch a batch job's log).
"""
from __future__ import annotations

import os
import sys
from typing import Any, Iterable

__all__ = ["progress_bar", "interactive", "show_progress"]


def _in_notebook() -> bool:
    """True inside a Jupyter (ipykernel) kernel."""
    if "ipykernel" not in sys.modules:
        return False
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover
        return False
    ip = get_ipython()
    return ip is not None and "IPKernelApp" in getattr(ip, "config", {})


def interactive() -> bool:
    """Whether a progress bar has a watcher: stderr is a terminal, or a Jupyter kernel runs us
    (``ATTN_THEORY_PROGRESS=0/1`` forces the answer)."""
    env = os.environ.get("ATTN_THEORY_PROGRESS", "").strip().lower()
    if env in ("0", "false", "no", "off"):
        return False
    if env in ("1", "true", "yes", "on"):
        return True
    try:
        if sys.stderr is not None and sys.stderr.isatty():
            return True
    except (AttributeError, ValueError):  # closed or replaced stream
        pass
    return _in_notebook()


def show_progress(flag: bool | None, default: bool = True) -> bool:
    """Resolve a ``progress=`` argument: ``False`` never; ``True`` whenever :func:`interactive`;
    ``None`` when ``default`` (the caller's "long enough to deserve a bar") and interactive."""
    if flag is False or (flag is None and not default):
        return False
    return interactive()


def progress_bar(iterable: Iterable[Any] | None = None, *, desc: str = "", total: int | None = None,
                 unit: str = "it", enabled: bool | None = True, default: bool = True,
                 leave: bool = True, **kwargs: Any) -> Any:
    """A ``tqdm`` bar (``tqdm.auto``: a widget in Jupyter) over ``iterable``, or a manual one
    (``total=``, ``.update(n)``), disabled unless :func:`show_progress` ``(enabled, default)``.

    A disabled bar is a real, silent ``tqdm`` object, so ``update``, ``set_postfix`` and
    ``close`` always work and callers need no branch."""
    from tqdm.auto import tqdm

    return tqdm(iterable, desc=desc, total=total, unit=unit, leave=leave,
                disable=not show_progress(enabled, default), file=sys.stderr, **kwargs)
