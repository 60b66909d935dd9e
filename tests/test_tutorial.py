"""Run every ``python`` code block of ``docs/tutorial.md`` top to bottom in one namespace, in a
temporary folder (the tutorial writes a figure). A failing block fails the test with its index."""
from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

TUTORIAL = Path(__file__).resolve().parents[1] / "docs" / "tutorial.md"
BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)


def blocks() -> list[str]:
    return BLOCK.findall(TUTORIAL.read_text())


def test_tutorial_has_code() -> None:
    assert len(blocks()) >= 8


def test_tutorial_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    ns: dict = {"__name__": "tutorial"}
    try:
        for i, src in enumerate(blocks()):
            try:
                exec(compile(src, f"<docs/tutorial.md block {i}>", "exec"), ns)  # noqa: S102
            except Exception as e:  # pragma: no cover - the message names the block
                raise AssertionError(f"tutorial block {i} failed: {e!r}\n{src}") from e
        assert (tmp_path / "my_perceptron.png").exists()
    finally:
        import derive.models as dm

        dm._REGISTERED.pop("my-perceptron", None)
        dm.get.cache_clear()
        os.chdir(Path(__file__).parent)
