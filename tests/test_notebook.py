"""docs/notebook.md runs top to bottom (issue 14, item 2): every ```python cell, in order, in
one namespace, as a reader pasting the cells into Jupyter would."""
from __future__ import annotations

import re
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

PAGE = Path(__file__).resolve().parents[1] / "docs" / "notebook.md"


def cells(text: str) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", text, flags=re.S | re.M)


def test_notebook_page_runs(tmp_path, monkeypatch) -> None:
    import matplotlib.pyplot as plt

    code = cells(PAGE.read_text())
    assert len(code) >= 8
    monkeypatch.chdir(tmp_path)
    ns: dict = {"__name__": "__notebook__"}
    for i, cell in enumerate(code):
        exec(compile(cell, f"{PAGE.name}[cell {i}]", "exec"), ns)  # noqa: S102 - our own docs
    # what the cells display in Jupyter
    assert ns["m"]._repr_markdown_().startswith("### ")
    assert ns["eq"]._repr_latex_().startswith("$$")
    assert "<details>" in ns["k"]._repr_html_()
    assert ns["fig"].axes[0].get_ylabel()
    plt.close("all")
