"""The command line's errors (issue 15, item 6): one line naming what is wrong, exit code 2 for bad
input, no traceback (``--debug`` shows it), output paths checked before any solve, repeated
options refused."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time

import pytest
from typer.testing import CliRunner

from derive.cli import app

ICL = ["solve", "icl-linear-attention", "--alpha", "1", "--kappa", "1", "--rho", "0.1", "--lam", "0.01"]


def _invoke(args: list[str]):
    return CliRunner().invoke(app, args)


def _stderr(r) -> str:
    try:
        return r.stderr
    except ValueError:  # older click: stderr mixed into output
        return r.output


def _one_line_error(r, *words: str) -> None:
    err = _stderr(r).strip()
    assert r.exit_code == 2, (r.exit_code, r.output)
    assert "Traceback" not in r.output and "Traceback" not in err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), err
    for w in words:
        assert w in lines[0], (w, lines[0])


@pytest.mark.parametrize("args, words", [
    (ICL + ["--tau", "2", "--tau", "3"], ["--tau", "more than once"]),
    (ICL + ["--tau", "x"], ["--tau", "'x'"]),
    (ICL + ["--tau", "2", "--bogus", "1"], ["bogus"]),
    (ICL + ["--tau", "-1"], ["'tau'"]),
    (ICL + ["--tau", "2", "--chunk", "0"], ["--chunk"]),
    (["solve", "no-such-model"], ["no-such-model"]),
    (["solve", "positional-semantic", "--alpha", "1", "--omega", "0.3", "--sigma", "0.5", "--lam",
      "0.01", "--n-quad", "abc"], ["n_quad", "'abc'"]),
    (["solve", "positional-semantic", "--alpha", "1", "--omega", "0.3", "--sigma", "0.5", "--lam",
      "0.01", "--tol", "1"], ["'tol'"]),
    (["solve", "positional-semantic", "--alpha", "1", "--omega", "0.3", "--sigma", "0.5", "--lam",
      "0.01", "--stability", "maybe"], ["stability"]),
    (["verify", "icl-linear-attention", "--points", "-1"], ["--points"]),
    (["verify", "icl-linear-attention", "--dps", "0"], ["--dps"]),
    (["simulate", "icl-linear-attention", "--d", "0"], ["--d"]),
    (["simulate", "sparse-token", "--L", "3"], ["sparse-token"]),
])
def test_bad_input_is_one_line_exit_2(args, words):
    _one_line_error(_invoke(args), *words)


def test_output_into_a_missing_folder_fails_before_solving(tmp_path):
    t0 = time.perf_counter()
    r = _invoke(["solve", "positional-semantic", "--alpha", "0.5:2:50", "--omega", "0.3", "--sigma", "0.5",
                 "--lam", "0.01", "-o", str(tmp_path / "missing" / "out.nc")])
    _one_line_error(r, "missing", "does not exist")
    assert time.perf_counter() - t0 < 30  # nothing was solved (50 saddle points would take minutes)
    r = _invoke(ICL + ["--tau", "2", "-o", str(tmp_path / "out.txt")])
    _one_line_error(r, ".zarr", ".nc")


def test_cupy_without_a_gpu_is_one_line():
    try:
        import cupy  # noqa: F401

        pytest.skip("CuPy is installed here")
    except ImportError:
        pass
    _one_line_error(_invoke(ICL + ["--tau", "2", "--backend", "cupy"]), "cupy")


def test_a_locked_store_is_one_line(tmp_path):
    store = tmp_path / "s.zarr"
    lock = tmp_path / "s.zarr.lock"
    # a lock written by a sweep on another host cannot be checked from here: always refused
    lock.write_text(json.dumps({"pid": 12345, "host": socket.gethostname() + "-elsewhere",
                                "started": time.time()}))
    r = _invoke(ICL + ["--tau", "2", "-o", str(store)])
    _one_line_error(r)
    assert "lock" in _stderr(r).lower() or "writing" in _stderr(r).lower()


def test_debug_shows_the_traceback():
    r = _invoke(["--debug"] + ICL + ["--tau", "x"])
    assert r.exit_code != 0 and r.exception is not None


def test_good_commands_still_work(tmp_path):
    r = _invoke(ICL + ["--tau", "2,3", "-o", str(tmp_path / "ok.nc"), "--rows", "0"])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "ok.nc").exists()


def test_simulate_token_dynamics_compares_with_the_theory():
    r = _invoke(["simulate", "token-dynamics", "--beta", "1", "--n", "4", "--rho0", "0.1",
                 "--target", "0.9", "--d", "8"])
    assert r.exit_code == 0, r.output
    vals = {}
    for line in r.output.splitlines():
        if line.startswith(("t_sa:", "t_usa:")):
            parts = line.split()
            vals[parts[0]] = (float(parts[2]), float(parts[-1]))
    assert set(vals) == {"t_sa:", "t_usa:"}
    for sim, th in vals.values():  # independent particle integration vs the closed form
        assert abs(sim - th) <= 1e-3 * th


def test_console_script_prints_no_traceback():
    """The installed entry point (not only the test runner) turns errors into one line."""
    r = subprocess.run([sys.executable, "-c", "from derive.cli import main; main()", *ICL,
                        "--tau", "2", "--tau", "3"], capture_output=True, text=True, timeout=120,
                       env={**os.environ, "ATTN_THEORY_PROGRESS": "0"})
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.strip().startswith("error:") and len(r.stderr.strip().splitlines()) == 1
