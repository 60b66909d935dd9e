"""The installed package version (recorded in every dataset and checked by Dask workers).

Its own module so that :mod:`derive.solve` and :mod:`derive.sweep` both import it without
importing each other (``solve`` calls ``sweep``; ``sweep`` never imports ``solve``).
"""
from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

__all__ = ["package_version"]


def package_version() -> str:
    """Version of the installed ``attention-theory`` distribution (``0+unknown`` in a bare
    source tree)."""
    try:
        return version("attention-theory")
    except PackageNotFoundError:  # running from a source tree
        return "0+unknown"
