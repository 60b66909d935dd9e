"""Persisting results: one-shot netCDF files (SciPy's netCDF3 writer, no extra dependency)
and the resumable, self-checking Zarr store of sweeps (:class:`ZarrSweepStore`)."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import xarray as xr

__all__ = ["write_dataset", "read_dataset", "ZarrSweepStore", "StoreMismatchError", "StoreLockedError",
           "StoreTargetError", "StoreCorruptError", "UnitProblem", "DIGEST_VAR"]


def write_dataset(ds: xr.Dataset, path: str | Path) -> Path:
    """Write ``ds`` to netCDF. Booleans are stored as int8 (netCDF3 has no bool) and
    restored by :func:`read_dataset`; infinite coordinates (κ = ∞) are kept."""
    p = Path(path)
    out = ds.copy()
    for name, var in out.data_vars.items():
        if var.dtype == bool:
            out[name] = var.astype(np.int8)
            out[name].attrs["dtype"] = "bool"
    out.to_netcdf(p, engine="scipy")
    return p


def read_dataset(path: str | Path) -> xr.Dataset:
    ds = xr.load_dataset(path, engine="scipy")
    for name, var in ds.data_vars.items():
        if var.attrs.get("dtype") == "bool":
            ds[name] = var.astype(bool)
    return ds


# -- resumable sweep store (Zarr) ----------------------------------------------------------------

class StoreMismatchError(ValueError):
    """An existing sweep store was written for other equations, grid or settings: refused."""


class StoreTargetError(ValueError):
    """The store path exists and is not a sweep store (nor an empty folder): refused, untouched."""


class StoreCorruptError(ValueError):
    """A store's metadata cannot be read (the file is named)."""


class StoreLockedError(RuntimeError):
    """Another live process is writing this sweep store."""


class StoreIntegrityWarning(UserWarning):
    """A finished unit failed its digest check and is recomputed."""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


#: attributes that must agree between a store and the sweep resuming into it
IDENTITY_ATTRS = ("model", "equations_sha256", "grid_sha256")

#: the per-unit, per-variable SHA-256 digests: ``(unit, digest_var, sha256_byte)`` uint8
DIGEST_VAR = "unit_sha256"
#: variables never digested: the completion flag (written last) and the digests themselves
_NOT_DIGESTED = ("finished", DIGEST_VAR)


def _zarr():
    try:
        import zarr  # noqa: F401
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise ImportError("a .zarr sweep store needs zarr: pip install 'attention-theory[sweep]'") from exc


def _digest(a: np.ndarray) -> bytes:
    """SHA-256 of an array's dtype, shape and bytes (C order)."""
    a = np.ascontiguousarray(a)
    h = hashlib.sha256()
    h.update(f"{a.dtype.str}{a.shape}".encode())
    h.update(repr(a.tolist()).encode() if a.dtype.kind in "OUS" else a.tobytes())
    return h.digest()


@dataclass(frozen=True)
class UnitProblem:
    """A finished unit whose stored values fail their check: ``files`` are the chunk files."""

    unit: int
    region: tuple[slice, ...]
    reason: str
    files: tuple[str, ...]

    def __str__(self) -> str:
        where = ", ".join(self.files) if self.files else "?"
        return f"unit {self.unit}: {self.reason} ({where})"


def _host() -> str:
    return socket.gethostname()


class ZarrSweepStore:
    """A sweep persisted to Zarr, one chunk per work unit, written as each unit finishes.

    Every variable has the sweep's dimensions (plus ``solution`` for multi-start). A unit is
    written in this order: its values and ``sweep_run``; the SHA-256 of every variable's values
    in the unit (:data:`DIGEST_VAR`, one chunk per unit); then ``finished``. Each chunk file is
    replaced atomically, so a process killed at any moment leaves every point either finished
    with its values and digests, or not finished. On resume (and in ``attn-theory inspect``)
    every finished unit is read back and checked against its digests: a unit whose chunk is
    missing, altered, truncated or undecodable is reported with its files named and recomputed,
    never read as converged (:meth:`verify`). A restarted sweep recomputes exactly the
    unfinished and failing units. ``sweep_run`` records which run (1, 2, ...) computed each
    point. A store whose identity attributes (:data:`IDENTITY_ATTRS`: model, equations hash,
    grid) differ from the sweep's is refused.

    Creation is atomic: the empty store is written to a hidden sibling folder
    (``.NAME.creating-RANDOM``) and renamed into place, so a crash mid-creation leaves no store
    (the leftover is removed by the next sweep that takes the lock). A path that exists and is
    not a sweep store (nor an empty folder) is refused (:class:`StoreTargetError`), never
    overwritten.
    """

    def __init__(self, path: str | Path) -> None:
        _zarr()
        self.path = Path(path)
        self._g = None
        self._lock_fd: int | None = None

    def exists(self) -> bool:
        return (self.path / "zarr.json").exists() or (self.path / ".zgroup").exists()

    def check_target(self) -> None:
        """Refuse a path that exists and is neither a sweep store nor an empty folder."""
        p = self.path
        if self.exists() or not (p.exists() or p.is_symlink()):
            return
        if p.is_dir() and not any(p.iterdir()):
            return
        what = "a folder that is not a sweep store" if p.is_dir() else "a file"
        raise StoreTargetError(f"refusing to write a sweep store to {p}: it exists and is {what}; "
                               f"nothing was changed (choose a new path, or remove it yourself)")

    def _open_dataset(self) -> xr.Dataset:
        try:
            ds = xr.open_zarr(self.path, consolidated=False)
        except Exception as exc:  # noqa: BLE001 - re-raised naming the store
            raise StoreCorruptError(f"store {self.path}: its metadata cannot be read "
                                    f"({type(exc).__name__}: {exc}); check {self.path}/zarr.json "
                                    f"and the zarr.json of each variable") from None
        return ds.drop_vars([DIGEST_VAR], errors="ignore")

    def open(self, identity: dict[str, str]) -> xr.Dataset:
        """The stored dataset (lazy), after the identity check (see :meth:`verify` for the
        finished mask)."""
        ds = self._open_dataset()
        for key in IDENTITY_ATTRS:
            have, want = ds.attrs.get(key), identity.get(key)
            if have != want:
                what = {"model": "another model",
                        "equations_sha256": "other equations (the model's generated kernels differ)",
                        "grid_sha256": "another grid or settings (dimensions, coordinates, fixed "
                                       "parameters, options, continuation, starts or seed)"}[key]
                raise StoreMismatchError(
                    f"store {self.path} was written for {what}: its {key} is {have!r}, this "
                    f"sweep's is {want!r}; refusing to mix results (use a new store path, or "
                    f"delete the old one)")
        return ds

    # -- creation ---------------------------------------------------------------------------
    def create(self, template: xr.Dataset, chunks: dict[str, int], n_units: int) -> None:
        """Write the template (coordinates, attributes, fill values) with unit-aligned chunks,
        plus the digest array for ``n_units`` units, atomically (temporary sibling + rename)."""
        import tempfile

        digested = [k for k in template.data_vars if k not in _NOT_DIGESTED]
        tpl = template.copy()
        tpl[DIGEST_VAR] = (("unit", "digest_var", "sha256_byte"),
                           np.zeros((n_units, len(digested), 32), dtype=np.uint8))
        tpl.attrs["digest_vars"] = json.dumps(digested)
        enc = {}
        for name, var in tpl.data_vars.items():
            if name == DIGEST_VAR:
                enc[name] = {"chunks": (1, len(digested), 32)}
            else:
                enc[name] = {"chunks": tuple(chunks.get(d, tpl.sizes[d]) for d in var.dims)}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=self.path.parent, prefix=f".{self.path.name}.creating-"))
        try:
            self._write_template(tpl, tmp, enc)
            self._publish(tmp)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        self._g = None

    def _write_template(self, tpl: xr.Dataset, tmp: Path, enc: dict) -> None:
        tpl.to_zarr(tmp, mode="w", encoding=enc, consolidated=False, zarr_format=3)

    def _publish(self, tmp: Path) -> None:
        """Rename the finished template into place (over an empty folder, if any)."""
        if self.path.is_dir() and not self.path.is_symlink() and not any(self.path.iterdir()):
            self.path.rmdir()
        os.rename(tmp, self.path)

    def _remove_stale_creations(self) -> None:
        for p in self.path.parent.glob(f".{self.path.name}.creating-*"):
            shutil.rmtree(p, ignore_errors=True)

    # -- writing ----------------------------------------------------------------------------
    def _group(self):
        import zarr

        if self._g is None:
            self._g = zarr.open_group(str(self.path), mode="r+")
        return self._g

    def digest_vars(self) -> list[str]:
        return list(json.loads(self._group().attrs.get("digest_vars", "[]")))

    def write_unit(self, region: dict[str, slice], values: dict[str, np.ndarray], run: int,
                   unit: int) -> None:
        """Write unit ``unit``'s values and ``sweep_run``, then their digests, then mark its
        points finished (in that order). Writes go straight to the Zarr arrays (chunk-aligned:
        each chunk file is replaced atomically)."""
        g = self._group()
        sl = tuple(region.values())
        shape = tuple(s.stop - s.start for s in sl)
        stored: dict[str, np.ndarray] = {}
        for name, v in values.items():
            arr = np.asarray(v, dtype=g[name].dtype)
            g[name][sl] = arr
            stored[name] = arr
        stored["sweep_run"] = np.full(shape, run, dtype=np.int16)
        g["sweep_run"][sl] = stored["sweep_run"]
        names = self.digest_vars()
        dig = np.zeros((1, len(names), 32), dtype=np.uint8)
        for j, name in enumerate(names):
            # a variable the unit did not return keeps its fill values: digest what is stored
            a = stored[name] if name in stored else np.asarray(g[name][sl])
            dig[0, j] = np.frombuffer(_digest(a), dtype=np.uint8)
        g[DIGEST_VAR][unit:unit + 1] = dig
        g["finished"][sl] = np.ones(shape, dtype=bool)

    def mark_unfinished(self, region: tuple[slice, ...]) -> None:
        """Clear the ``finished`` flags of ``region`` (a unit that failed its check: until it is
        recomputed, it must not read as finished even if its recomputation fails)."""
        shape = tuple(s.stop - s.start for s in region)
        self._group()["finished"][region] = np.zeros(shape, dtype=bool)

    def set_attrs(self, attrs: dict) -> None:
        self._group().attrs.update(attrs)

    # -- checking ---------------------------------------------------------------------------
    def _chunk_files(self, name: str, region: Sequence[slice]) -> list[str]:
        """The chunk file(s) of variable ``name`` holding ``region`` (Zarr v3 default keys)."""
        arr = self._group()[name]
        idx: list[list[int]] = []
        for k, c in enumerate(arr.chunks):
            if k < len(region):
                s = region[k]
                idx.append(list(range(s.start // c, (s.stop - 1) // c + 1)))
            else:
                idx.append(list(range(0, -(-arr.shape[k] // c))))
        from itertools import product

        return [str(self.path / name / "c" / Path(*map(str, ix))) if ix else
                str(self.path / name / "c") for ix in product(*idx)]

    def verify(self, units: Sequence[tuple[slice, ...]]) -> tuple[np.ndarray, list[UnitProblem]]:
        """The ``finished`` mask after checking every finished unit against its digests, and the
        problems found (a failing unit's points are returned as not finished). A unit fails if
        any of its chunks cannot be read (undecodable, truncated) or if a variable's values do
        not hash to the digest recorded when the unit was written (a missing chunk reads as
        fill values; an altered or copied chunk reads as other values)."""
        g = self._group()
        names = self.digest_vars()
        shape = g["finished"].shape
        finished = np.zeros(shape, dtype=bool)
        problems: list[UnitProblem] = []
        has_digests = DIGEST_VAR in g
        for i, u in enumerate(units):
            try:
                f = np.asarray(g["finished"][u], dtype=bool)
            except Exception as exc:  # noqa: BLE001 - undecodable flag chunk
                problems.append(UnitProblem(i, u, f"its finished flags cannot be read "
                                            f"({type(exc).__name__})", tuple(self._chunk_files("finished", u))))
                continue
            if not f.any():
                continue
            if not f.all():
                problems.append(UnitProblem(i, u, "only part of its points are flagged finished",
                                            tuple(self._chunk_files("finished", u))))
                continue
            if not has_digests:
                problems.append(UnitProblem(i, u, "no digests recorded (a store of an older "
                                            "version): cannot be verified", (str(self.path),)))
                continue
            try:
                rec = np.asarray(g[DIGEST_VAR][i:i + 1], dtype=np.uint8)[0]
            except Exception as exc:  # noqa: BLE001
                problems.append(UnitProblem(i, u, f"its digests cannot be read ({type(exc).__name__})",
                                            tuple(self._chunk_files(DIGEST_VAR, (slice(i, i + 1),)))))
                continue
            bad: list[str] = []
            why: list[str] = []
            for j, name in enumerate(names):
                files = self._chunk_files(name, u)
                try:
                    a = np.asarray(g[name][u])
                except Exception as exc:  # noqa: BLE001 - undecodable / truncated chunk
                    bad += files
                    why.append(f"{name} cannot be decoded ({type(exc).__name__})")
                    continue
                if _digest(a) != rec[j].tobytes():
                    missing = [fn for fn in files if not Path(fn).exists()]
                    bad += missing or files
                    why.append(f"{name} {'is missing' if missing else 'does not match its digest'}")
            if why:
                problems.append(UnitProblem(i, u, "; ".join(why), tuple(bad)))
                continue
            finished[u] = True
        return finished, problems

    # -- locking ----------------------------------------------------------------------------
    @property
    def lock_file(self) -> Path:
        """``<store>.lock`` beside the store, at its *real* path (symlinks resolved, so two
        spellings of one store share one lock)."""
        real = Path(os.path.realpath(self.path))
        return real.with_name(real.name + ".lock")

    def _read_lock(self, fd: int) -> dict[str, Any] | None:
        os.lseek(fd, 0, os.SEEK_SET)
        raw = os.read(fd, 4096).decode("utf-8", "replace").strip()
        if not raw:
            return None
        try:
            info = json.loads(raw)
            if isinstance(info, int):
                raise ValueError
        except ValueError:
            try:  # the older format: just a PID, written on this host
                return {"pid": int(raw), "host": _host()}
            except ValueError:
                return None
        return info if isinstance(info, dict) else None

    def lock(self) -> None:
        """Claim the store for this process. The file ``<store>.lock`` (at the real path) holds
        ``{"pid", "host", "started"}`` and, where the OS has it, an exclusive ``flock`` held
        while the sweep runs (released by the kernel when the process dies, however it dies).
        Another holder is refused with :class:`StoreLockedError` naming its host and PID. A lock
        left by a dead process on this host is stale and taken over. A lock written on *another
        host* cannot be checked from here (its ``flock`` is seen only on file systems that
        propagate it, and a free ``flock`` may just mean they do not): it is always refused;
        delete the lock file by hand once that sweep is known to be gone (docs/sweeps.md)."""
        try:
            import fcntl
        except ImportError:  # pragma: no cover - Windows
            fcntl = None
        f = self.lock_file
        f.parent.mkdir(parents=True, exist_ok=True)
        for _ in range(20):
            fd = os.open(f, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                if fcntl is not None:
                    try:
                        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    except OSError:
                        info = self._read_lock(fd) or {}
                        raise StoreLockedError(self._locked_msg(info)) from None
                    try:  # the file we locked must still be the one at the path
                        if os.fstat(fd).st_ino != os.stat(f).st_ino:
                            os.close(fd)
                            continue
                    except FileNotFoundError:
                        os.close(fd)
                        continue
                info = self._read_lock(fd)
                if info:
                    pid, host = int(info.get("pid", 0) or 0), str(info.get("host", ""))
                    same_host = host == _host()
                    if not same_host:  # cannot be checked from here: never taken over
                        raise StoreLockedError(self._locked_msg(info))
                    if pid and pid != os.getpid() and _alive(pid):
                        raise StoreLockedError(self._locked_msg(info))
                me = json.dumps({"pid": os.getpid(), "host": _host(), "started": _now()})
                os.ftruncate(fd, 0)
                os.lseek(fd, 0, os.SEEK_SET)
                os.write(fd, me.encode())
                os.fsync(fd)
            except BaseException:
                os.close(fd)
                raise
            self._lock_fd = fd
            self._remove_stale_creations()
            return
        raise StoreLockedError(f"could not take the lock {f} (it keeps changing)")

    def _locked_msg(self, info: dict[str, Any]) -> str:
        who = f"process {info.get('pid', '?')} on host {info.get('host', '?')}"
        return (f"store {self.path} is being written by {who} (lock {self.lock_file}); wait for "
                f"it (or stop it, then rerun to resume). If that process is gone and the lock "
                f"remains (a crashed node of a shared file system), delete {self.lock_file}")

    def unlock(self) -> None:
        """Release the lock (remove the file while holding it, then close)."""
        fd = self._lock_fd
        if fd is None:
            return
        self._lock_fd = None
        try:
            info = self._read_lock(fd) or {}
            if info.get("pid") == os.getpid() and info.get("host") == _host():
                self.lock_file.unlink(missing_ok=True)
        finally:
            os.close(fd)

    def load(self) -> xr.Dataset:
        return self._open_dataset().load()


def _now() -> str:
    import datetime

    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
