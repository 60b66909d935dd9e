"""Shared fixtures: the reference data of the authors' own code, kept in the repository
(``tests/data/reference``, provenance in its README) so every clone runs every reference test."""
from __future__ import annotations

import json
from pathlib import Path

REFERENCE_DIR = Path(__file__).resolve().parent / "data" / "reference"


def reference_path(name: str) -> Path:
    """``tests/data/reference/<name>.json``; a missing file is an error (never a skip)."""
    path = REFERENCE_DIR / f"{name}.json"
    if not path.exists():
        raise FileNotFoundError(
            f"reference data {path} is missing: it is part of the repository "
            f"(tests/data/reference/README.md says where it comes from)")
    return path


def load_reference(name: str) -> dict:
    """Load ``tests/data/reference/<name>.json`` (raises if it is missing)."""
    return json.loads(reference_path(name).read_text())
