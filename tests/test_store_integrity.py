"""Self-checking sweep stores (issue 15.5).

Every finished unit carries the SHA-256 of each of its variables; a resumed sweep and
``attn-theory inspect`` read every finished unit back and check it. A deleted, altered (copied
from another unit), truncated or garbage chunk is reported with its file named and recomputed,
never read as finished/converged. Store creation is atomic (``kill -9`` during creation leaves
a resumable path); ``kill -9`` during a unit loses nothing and the resumed result is bitwise equal
to an uninterrupted run; a folder that is not a store is refused untouched; the lock is taken at
the real path (a symlink does not bypass it) and records host and PID; the flags keep their
types (bool, int8, int64) whatever the model returns.

Reference values: an uninterrupted sweep into a fresh store (resume must reproduce it bit for
bit), and the closed-form Curie–Weiss fixed points (m = tanh(βm + h)), independent of the store.
"""
from __future__ import annotations

import json
import math
import os
import signal
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("zarr")

from derive.store import (StoreIntegrityWarning, StoreLockedError, StoreTargetError,  # noqa: E402
                          ZarrSweepStore)
from derive.sweep import sweep  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
from _curie_weiss import CurieWeiss  # noqa: E402

H = np.linspace(0.05, 0.5, 12)  # beta = 0.5: one fixed point, m = tanh(m/2 + h)
KW = dict(beta=0.5, h=H, chunk=3, progress=False)  # 4 units of 3 points


def closed_form_m(h: float, beta: float = 0.5) -> float:
    m = 0.0
    for _ in range(200):  # a contraction for beta < 1
        m = math.tanh(beta * m + h)
    return m


@pytest.fixture
def fresh(tmp_path):
    store = tmp_path / "cw.zarr"
    ref = sweep(CurieWeiss(), store=store, **KW)
    np.testing.assert_allclose(ref["m"].values, [closed_form_m(h) for h in H], rtol=1e-10)
    return store, ref


def _inspect(store: Path):
    from typer.testing import CliRunner

    from derive.cli import app

    return CliRunner().invoke(app, ["inspect", str(store)])


def _resume_and_check(store: Path, ref, bad_unit: int, fragment: str) -> None:
    with pytest.warns(StoreIntegrityWarning, match=fragment):
        ds = sweep(CurieWeiss(), store=store, **KW)
    for k in ("m", "free_energy", "converged", "iterations", "status"):
        np.testing.assert_array_equal(ds[k].values, ref[k].values)
    run = ds["sweep_run"].values
    sl = slice(3 * bad_unit, 3 * bad_unit + 3)
    assert (run[sl] == 2).all() and (np.delete(run, np.arange(sl.start, sl.stop)) == 1).all()
    assert ds.attrs["n_resumed"] == 9 and ds.attrs["n_units_rechecked_bad"] == 1
    assert _inspect(store).exit_code == 0  # repaired


def test_deleted_chunk_is_reported_and_recomputed(fresh):
    store, ref = fresh
    chunk = store / "m" / "c" / "1"
    chunk.unlink()
    out = _inspect(store)
    assert out.exit_code == 1 and str(chunk) in out.output and "m is missing" in out.output
    assert "finished: 9/12 points" in out.output
    _resume_and_check(store, ref, 1, "m is missing")


def test_chunk_copied_from_another_unit_is_detected(fresh):
    store, ref = fresh
    (store / "free_energy" / "c" / "2").write_bytes((store / "free_energy" / "c" / "0").read_bytes())
    out = _inspect(store)
    assert out.exit_code == 1 and "free_energy does not match its digest" in out.output
    assert str(store / "free_energy" / "c" / "2") in out.output
    _resume_and_check(store, ref, 2, "does not match its digest")


def test_truncated_chunk_is_detected(fresh):
    store, ref = fresh
    f = store / "converged" / "c" / "3"
    data = f.read_bytes()
    f.write_bytes(data[: len(data) // 2])
    out = _inspect(store)
    assert out.exit_code == 1 and str(f) in out.output
    _resume_and_check(store, ref, 3, "converged")


def test_garbage_chunk_names_the_file(fresh):
    store, ref = fresh
    f = store / "status" / "c" / "0"
    f.write_bytes(os.urandom(64))
    out = _inspect(store)
    assert out.exit_code == 1 and str(f) in out.output and "cannot be decoded" in out.output
    _resume_and_check(store, ref, 0, "cannot be decoded")


def test_finished_flags_set_without_values_are_not_trusted(fresh):
    """A deleted digest row (or flags forged to True) never reads as finished."""
    store, ref = fresh
    (store / "unit_sha256" / "c" / "1" / "0" / "0").unlink()
    _resume_and_check(store, ref, 1, "unit 1")


# -- kill -9 ---------------------------------------------------------------------------------------

_KILL = textwrap.dedent("""
    import os, signal, sys
    import numpy as np
    sys.path.insert(0, {tests!r})
    from _curie_weiss import CurieWeiss
    from derive.store import ZarrSweepStore
    from derive.sweep import sweep

    where = sys.argv[2]
    if where == "creation":  # the template is written, not yet renamed into place
        def die(self, tmp):
            os.kill(os.getpid(), signal.SIGKILL)
        ZarrSweepStore._publish = die
    else:  # half of unit 2 written (values, no digest, no flags)
        orig = ZarrSweepStore.write_unit
        def write_unit(self, region, values, run, unit):
            if unit == 2:
                g = self._group()
                sl = tuple(region.values())
                g["m"][sl] = np.asarray(values["m"]) + 1.0
                os.kill(os.getpid(), signal.SIGKILL)
            return orig(self, region, values, run, unit)
        ZarrSweepStore.write_unit = write_unit
    sweep(CurieWeiss(), store=sys.argv[1], beta=0.5, h=np.linspace(0.05, 0.5, 12), chunk=3,
          progress=False)
""")


@pytest.mark.parametrize("where", ["creation", "unit"])
def test_kill_9_then_resume_is_bitwise_exact(tmp_path, where):
    ref = sweep(CurieWeiss(), store=tmp_path / "ref.zarr", **KW)
    store = tmp_path / "killed.zarr"
    script = tmp_path / "kill.py"
    script.write_text(_KILL.format(tests=str(Path(__file__).parent)))
    proc = subprocess.run([sys.executable, str(script), str(store), where], capture_output=True,
                          timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()[-2000:]
    if where == "creation":
        assert not store.exists()  # no half-created store at the path
        assert list(tmp_path.glob(".killed.zarr.creating-*"))  # the leftover, cleaned below
    ds = sweep(CurieWeiss(), store=store, **KW)
    for k in ("m", "free_energy", "stability", "converged", "residual", "iterations", "status"):
        np.testing.assert_array_equal(ds[k].values, ref[k].values)
    assert ds["finished"].values.all()
    assert not list(tmp_path.glob(".killed.zarr.creating-*"))
    if where == "unit":
        assert (ds["sweep_run"].values[6:9] == 2).all() and (ds["sweep_run"].values[:6] == 1).all()
    assert _inspect(store).exit_code == 0


# -- targets, locks, types ---------------------------------------------------------------------------

def test_existing_folder_that_is_not_a_store_is_refused_untouched(tmp_path):
    target = tmp_path / "mydata.zarr"
    target.mkdir()
    (target / "thesis.tex").write_text("precious")
    with pytest.raises(StoreTargetError, match="not a sweep store"):
        sweep(CurieWeiss(), store=target, **KW)
    assert (target / "thesis.tex").read_text() == "precious" and len(list(target.iterdir())) == 1
    f = tmp_path / "file.zarr"
    f.write_text("x")
    with pytest.raises(StoreTargetError, match="a file"):
        sweep(CurieWeiss(), store=f, **KW)
    empty = tmp_path / "empty.zarr"
    empty.mkdir()
    assert sweep(CurieWeiss(), store=empty, **KW)["finished"].values.all()


def test_cli_output_into_a_non_store_folder_exits_2(tmp_path):
    from typer.testing import CliRunner

    from derive.cli import app

    target = tmp_path / "res.zarr"
    target.mkdir()
    (target / "keep.txt").write_text("keep")
    out = CliRunner().invoke(app, ["solve", "icl-linear-attention", "--tau", "0.5", "--alpha", "2",
                                   "--kappa", "1", "--rho", "0.01", "--lam", "0.001", "-o", str(target)])
    assert out.exit_code == 2 and "not a sweep store" in out.output
    assert (target / "keep.txt").read_text() == "keep"


def test_lock_resolves_symlinks_and_records_host_and_pid(tmp_path):
    real = tmp_path / "real"
    real.mkdir()
    link = tmp_path / "link"
    link.symlink_to(real, target_is_directory=True)
    a, b = ZarrSweepStore(real / "s.zarr"), ZarrSweepStore(link / "s.zarr")
    assert a.lock_file == b.lock_file
    a.lock()
    try:
        info = json.loads(a.lock_file.read_text())
        assert info["pid"] == os.getpid() and info["host"] == socket.gethostname()
        with pytest.raises(StoreLockedError, match=f"on host {socket.gethostname()}"):
            b.lock()
        with pytest.raises(StoreLockedError):
            sweep(CurieWeiss(), store=link / "s.zarr", **KW)
    finally:
        a.unlock()
    assert not a.lock_file.exists()
    b.lock()
    b.unlock()


def test_lock_from_another_host_is_refused_while_held(tmp_path):
    """A live holder on another host (simulated: a subprocess holding the flock and writing a
    foreign host name) is refused with its host and PID named."""
    store = tmp_path / "s.zarr"
    lock = tmp_path / "s.zarr.lock"
    code = textwrap.dedent(f"""
        import fcntl, json, os, sys, time
        fd = os.open({str(lock)!r}, os.O_RDWR | os.O_CREAT, 0o644)
        fcntl.flock(fd, fcntl.LOCK_EX)
        os.write(fd, json.dumps({{"pid": 4242, "host": "node17"}}).encode())
        print("ready", flush=True)
        time.sleep(30)
    """)
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "ready"
        with pytest.raises(StoreLockedError, match="process 4242 on host node17"):
            ZarrSweepStore(store).lock()
    finally:
        holder.kill()
        holder.wait()


def test_flags_keep_their_types_and_unfinished_points_are_not_converged(tmp_path):
    class FloatFlags(CurieWeiss):  # a model returning float64 flags (as three models did)
        def evaluate(self, params, backend, **options):
            out = super().evaluate(params, backend, **options)
            return {**out, **{k: np.asarray(out[k], dtype=float)
                              for k in ("converged", "iterations", "status")}}

    class Fragile(FloatFlags):
        def evaluate(self, params, backend, **options):
            if np.any(np.asarray(params["h"]) > 0.4):  # every point of the last unit
                raise FloatingPointError("boom")
            return super().evaluate(params, backend, **options)

    store = tmp_path / "t.zarr"
    ds = sweep(Fragile(), store=store, **KW)
    import xarray as xr

    raw = xr.open_zarr(store, consolidated=False)
    assert raw["converged"].dtype == bool and raw["status"].dtype == np.int8
    assert raw["iterations"].dtype == np.int64
    unfinished = ~raw["finished"].values
    assert unfinished.sum() == 3 and not raw["converged"].values[unfinished].any()
    assert ds["converged"].dtype == bool and not ds["converged"].values[unfinished].any()
    out = _inspect(store)
    assert out.exit_code == 0 and "finished: 9/12" in out.output and "9 converged" in out.output
