"""Fail when the committed model pages are stale (no pytest needed).

    python docs/check_generated.py

Regenerates every model page into a temporary folder with ``docs/gen_model_pages.py``
and compares it with ``docs/models/``. Exits non-zero, printing a diff, when:

* a generated page differs from the committed one (equations, prose or kernels changed
  and ``python docs/gen_model_pages.py`` was not re-run);
* a registered model has no committed page, or a committed generated page belongs to
  no registered model;
* a model page is missing from the ``nav`` of ``mkdocs.yml``.

Fix by running ``python docs/gen_model_pages.py`` (and adding new pages to ``nav``), then commit.
Note: the LaTeX and the generated source depend on the SymPy version, so run this
with the project's pinned environment.
"""
from __future__ import annotations

import difflib
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import gen_model_pages as gen  # noqa: E402

MODELS = gen.DOCS / "models"
MKDOCS_YML = gen.ROOT / "mkdocs.yml"


def find_problems() -> list[str]:
    """Everything that is stale or missing, as messages (empty when up to date)."""
    problems: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        fresh = {p.name: p.read_text(encoding="utf-8") for p in gen.generate(Path(tmp))}
    committed = {p.name: p.read_text(encoding="utf-8") for p in MODELS.glob("*.md")
                 if p.read_text(encoding="utf-8").startswith(gen.MARKER)}

    for name, text in sorted(fresh.items()):
        old = committed.get(name)
        if old is None:
            problems.append(f"docs/models/{name} is missing (a registered model has no page)")
        elif old != text:
            diff = difflib.unified_diff(old.splitlines(True), text.splitlines(True),
                                        f"docs/models/{name} (committed)",
                                        f"docs/models/{name} (regenerated)")
            problems.append(f"docs/models/{name} is stale:\n" + "".join(diff))
    for name in sorted(set(committed) - set(fresh)):
        problems.append(f"docs/models/{name} was generated for a model that is no longer "
                        "registered; delete it")

    nav = MKDOCS_YML.read_text(encoding="utf-8")
    for name in sorted(fresh):
        if f"models/{name}" not in nav:
            problems.append(f"models/{name} is not in the nav of mkdocs.yml")
    return problems


def main() -> int:
    problems = find_problems()
    if problems:
        print("\n\n".join(problems))
        print("\nRegenerate with: python docs/gen_model_pages.py", file=sys.stderr)
        return 1
    print("docs/models is up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())
