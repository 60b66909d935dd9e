"""MkDocs hook (``hooks:`` in mkdocs.yml): warn when the generated model pages are stale.

Under ``mkdocs build --strict`` the warning fails the build, so a site is never built
from model pages that no longer match the SymPy source. Fix with
``python docs/gen_model_pages.py``.
"""
from __future__ import annotations

import logging
import sys
from pathlib import Path

log = logging.getLogger("mkdocs.hooks.model_pages")


def on_pre_build(config, **kwargs) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    try:
        import check_generated  # noqa: PLC0415
    finally:
        sys.path.pop(0)
    for problem in check_generated.find_problems():
        log.warning("%s\n(regenerate with: python docs/gen_model_pages.py)", problem)
