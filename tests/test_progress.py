"""Progress bars: drawn where someone watches (a terminal), silent when piped (issue 14, item 6)."""
from __future__ import annotations

import io
import subprocess
import sys

import pytest

from numerics import progress


class _TTY(io.StringIO):
    def isatty(self) -> bool:  # a terminal
        return True


def test_quiet_when_piped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ATTN_THEORY_PROGRESS", raising=False)
    err = io.StringIO()  # not a terminal
    monkeypatch.setattr(sys, "stderr", err)
    assert not progress.interactive()
    assert list(progress.progress_bar(range(5), desc="x")) == list(range(5))
    assert err.getvalue() == ""


def test_bar_on_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ATTN_THEORY_PROGRESS", raising=False)
    err = _TTY()
    monkeypatch.setattr(sys, "stderr", err)
    assert progress.interactive()
    assert sum(progress.progress_bar(range(5), desc="busy")) == 10
    assert "busy" in err.getvalue() and "5/5" in err.getvalue()
    # progress=False is never drawn; None only when the caller's default says the job is long
    assert not progress.show_progress(False)
    assert not progress.show_progress(None, default=False)
    assert progress.show_progress(None, default=True)


def test_environment_override(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "stderr", _TTY())
    monkeypatch.setenv("ATTN_THEORY_PROGRESS", "0")
    assert not progress.interactive()
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    monkeypatch.setenv("ATTN_THEORY_PROGRESS", "1")
    assert progress.interactive()


def test_cli_solve_piped_has_no_bar(tmp_path) -> None:
    """``attn-theory solve ... | cat``: the summary line and the table, no bar characters."""
    r = subprocess.run([sys.executable, "-m", "derive.cli", "solve", "icl-linear-attention",
                        "--tau", "0.5,2", "--alpha", "1,10", "--kappa", "0.5", "--rho", "0.01",
                        "--lam", "0", "--chunk", "1", "--rows", "0"],
                       capture_output=True, text=True, timeout=120,
                       env={**__import__("os").environ, "ATTN_THEORY_PROGRESS": ""})
    assert r.returncode == 0, r.stderr
    assert "4/4 points converged" in r.stdout
    assert "it/s" not in r.stderr and "pt/s" not in r.stderr and "%|" not in r.stderr
