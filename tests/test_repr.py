"""Jupyter display of models, equations and kernels (issue 14, item 2)."""
from __future__ import annotations

import re

import pytest

from derive import models

_ENV = re.compile(r"\\(begin|end)\{(\w+\*?)\}")


def _balanced(tex: str) -> None:
    """Braces (unescaped), \\left/\\right and \\begin/\\end pairs match."""
    t = tex.replace(r"\{", "").replace(r"\}", "")
    depth = 0
    for ch in t:
        depth += {"{": 1, "}": -1}.get(ch, 0)
        assert depth >= 0, f"unbalanced '}}' in {tex[:120]}"
    assert depth == 0, f"unbalanced '{{' in {tex[:120]}"
    assert len(re.findall(r"\\left\b", tex)) == len(re.findall(r"\\right\b", tex)), tex[:120]
    stack = []
    for kind, env in _ENV.findall(tex):
        if kind == "begin":
            stack.append(env)
        else:
            assert stack and stack.pop() == env, f"\\end{{{env}}} unmatched in {tex[:120]}"
    assert not stack


@pytest.fixture(scope="module")
def ps():
    return models.get("positional-semantic")


def test_latex_renders_every_equation(ps) -> None:
    from matplotlib.mathtext import MathTextParser

    eqs = ps.equations()
    tex = ps._repr_latex_()
    blocks = re.findall(r"\$\$(.*?)\$\$", tex, flags=re.S)
    assert len(blocks) == len(eqs) + 1 and "Positional" in blocks[0]  # title + one per equation
    parser = MathTextParser("path")
    parsed = 0
    for eq, block in zip(eqs, blocks[1:]):
        assert block.strip() and eq.label.replace("_", r"\_") in block
        _balanced(block)
        body = eq.latex(ps.symbol_names)
        if r"\begin{" not in body:  # matplotlib's mathtext has no matrix/cases environments
            parser.parse(f"${body}$")
            parsed += 1
    assert parsed >= len(eqs) - 2


def test_markdown_page(ps) -> None:
    md = ps._repr_markdown_()
    assert md.startswith("### Positional vs semantic")
    for p in ps.parameters:
        assert f"| `{p.name}` | ${p.latex}$ | {p.domain} |" in md
    for k in ps.options:
        assert f"| `{k}` |" in md
    for k in ps.observables:
        ob = ps.observable_info[k]
        assert f"| `{k}` |" in md and ob.long_name.replace("|", r"\|") in md
    for eq in ps.equations():
        assert f"*{eq.label}* [{eq.provenance()}]" in md
    for block in re.findall(r"\$\$(.*?)\$\$", md, flags=re.S):
        _balanced(block)


def test_ipython_formats(ps) -> None:
    IPython = pytest.importorskip("IPython")
    from IPython.core.formatters import DisplayFormatter

    fmt, _ = DisplayFormatter().format(ps)
    assert {"text/markdown", "text/latex", "text/plain"} <= set(fmt)
    eq = ps.equations()[0]
    fmt, _ = DisplayFormatter().format(eq)
    assert fmt["text/latex"].startswith("$$") and eq.label in fmt["text/markdown"]
    k = models.get("icl-linear-attention").kernel("observables")
    fmt, _ = DisplayFormatter().format(k)
    html = fmt["text/html"]
    assert html.startswith("<details>") and "icl_observables" in html and "e_icl" in html
    assert "def " in re.sub(r"<[^>]+>", "", html)  # the source itself, highlighted
    assert IPython is not None


@pytest.mark.slow
@pytest.mark.parametrize("name", models.names())
def test_every_model_displays(name: str) -> None:
    m = models.get(name)
    tex = m._repr_latex_()
    for block in re.findall(r"\$\$(.*?)\$\$", tex, flags=re.S):
        _balanced(block)
    assert len(re.findall(r"\$\$", tex)) == 2 * (len(m.equations()) + 1)
    assert m._repr_markdown_().startswith("### ")
