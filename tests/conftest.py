"""Shared fixtures: the reference data of the authors' own code (shared/reference)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

REFERENCE_DIR = Path(__file__).resolve().parents[2] / "shared" / "reference"


def load_reference(name: str) -> dict:
    """Load ``shared/reference/<name>.json``; skip the test if the folder is absent
    (e.g. an installed package tested outside the project checkout)."""
    path = REFERENCE_DIR / f"{name}.json"
    if not path.exists():
        pytest.skip(f"reference data {path} not available", allow_module_level=True)
    return json.loads(path.read_text())
