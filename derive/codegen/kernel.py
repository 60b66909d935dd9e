"""Lowering SymPy programs to generated Python kernels.

A :class:`Program` is an ordered list of assignments ``symbol <- expression`` with
named inputs and outputs. :func:`generate` lowers it for a target:

1. unevaluated operators are replaced by their closed forms (:func:`derive.operators.lower`);
2. every ``Piecewise`` becomes a helper function. On the array target the helper
   evaluates each branch only on the points where that branch is taken (boolean
   masks), so an untaken branch can never produce NaN, overflow or a warning; on
   mpmath it is a plain ``if``;
3. common subexpressions are eliminated per assignment and emitted as one
   statement per temporary (huge single expressions can overflow ``compile()``);
4. the result is printed by the target's printer.

The :class:`Kernel` keeps the generated source and a SHA-256 key of the lowered
expressions; the source is cached on disk under that key (tamper-evident: see
:func:`read_verified`) and compiled with ``compile``/``exec`` -- nothing lambdified is ever pickled.
"""
from __future__ import annotations

import hashlib
from functools import lru_cache
import linecache
import os
import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence



class _Lazy:
    """A module-level name imported on first use, which then replaces itself in this module's
    globals: loading cached kernels (:class:`Kernel`, :func:`read_verified`) never imports SymPy;
    lowering (:func:`generate`) imports it on its first call."""

    def __init__(self, module: str, attr: str | None, alias: str,
                 namespace: dict[str, Any] | None = None) -> None:
        self._where = (module, attr, alias, namespace)

    def _load(self) -> Any:
        import importlib

        module, attr, alias, namespace = self._where
        obj = importlib.import_module(module, __package__)
        if attr is not None:
            obj = getattr(obj, attr)
        (globals() if namespace is None else namespace)[alias] = obj
        return obj

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        return getattr(self._load(), name)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._load()(*args, **kwargs)

    def __getitem__(self, key: Any) -> Any:
        return self._load()[key]

    def __contains__(self, key: Any) -> bool:
        return key in self._load()

    def __iter__(self) -> Any:
        return iter(self._load())


sp: Any = _Lazy("sympy", None, "sp")
lower: Any = _Lazy("..operators", "lower", "lower")
PRINTERS: Any = _Lazy(".printer", "PRINTERS", "PRINTERS")
check_supported: Any = _Lazy(".printer", "check_supported", "check_supported")
identifier: Any = _Lazy(".printer", "identifier", "identifier")
unique_nodes: Any = _Lazy(".printer", "unique_nodes", "unique_nodes")
xp_imports: Any = _Lazy(".printer", "xp_imports", "xp_imports")

__all__ = ["Program", "Kernel", "generate", "cache_dir", "CODEGEN_VERSION", "KernelCacheWarning",
           "equations_digest", "derivation_key", "DerivationCache"]

#: Bump when the lowering or the printers change what source a program produces.
CODEGEN_VERSION = "4"

_MP_PRELUDE = '''
def _mp_logaddexp(mp, a, b):
    """log(e^a + e^b) without overflow."""
    m = max(a, b)
    if mp.isinf(m):
        return m
    return m + mp.log(mp.exp(a - m) + mp.exp(b - m))
'''


_NUMBA_PRELUDE = '''
import math

from numerics.compiled import jit as _jit, expit as _expit, logaddexp as _logaddexp, ndtr as _ndtr, sign as _sign
'''


@dataclass(frozen=True)
class Program:
    """Ordered assignments ``lhs <- rhs`` from ``inputs`` to ``outputs``.

    Later right-hand sides may use earlier left-hand sides; ``outputs`` are
    left-hand sides (or inputs) returned, in order, as a ``dict`` keyed by name.
    """

    name: str
    inputs: tuple[sp.Symbol, ...]
    assignments: tuple[tuple[sp.Symbol, sp.Expr], ...]
    outputs: tuple[sp.Symbol, ...]
    doc: str = ""

    def __post_init__(self) -> None:
        known = set(self.inputs)
        for lhs, rhs in self.assignments:
            missing = _free_symbols(sp.sympify(rhs)) - known
            if missing:
                raise ValueError(
                    f"program {self.name!r}: {lhs} uses {sorted(map(str, missing))} "
                    "before they are defined"
                )
            known.add(lhs)
        for out in self.outputs:
            if out not in known:
                raise ValueError(f"program {self.name!r}: output {out} is never assigned")

    def expression(self, out: sp.Symbol) -> sp.Expr:
        """The output ``out`` with every intermediate substituted (for derivations and tests)."""
        expr = out
        for lhs, rhs in reversed(self.assignments):
            expr = expr.subs(lhs, rhs)
        return expr


def _free_symbols(expr: sp.Basic) -> set[sp.Symbol]:
    """Free symbols by a DAG walk (``Basic.free_symbols`` recurses over the tree)."""
    return {n for n in unique_nodes(expr) if isinstance(n, sp.Symbol)}


class KernelCacheWarning(UserWarning):
    """A cached kernel (or the cache folder) failed its integrity check and was not used."""


def _cache_root() -> Path:
    root = os.environ.get("ATTN_THEORY_CACHE")
    return Path(root) if root else Path.home() / ".cache" / "attention-theory"


def cache_dir() -> Path:
    """Where generated sources are cached: ``$ATTN_THEORY_CACHE/kernels`` or
    ``~/.cache/attention-theory/kernels`` (see :func:`trusted_cache_dir` for the checks)."""
    return _cache_root() / "kernels"


# -- tamper-evident kernel cache -------------------------------------------------------------
#
# Threat model. Cached sources are ``exec``-uted, so a cached file must be exactly what this
# package generated. Defended against: (i) a cached kernel edited or replaced after it was written
# (by hand, by another tool, a partial write, a disk error) -- the edit alone cannot produce a
# valid record; (ii) files planted in advance under the predictable names, or a cache folder
# prepared by another user (e.g. ``ATTN_THEORY_CACHE=/tmp/x`` on a shared machine) -- a folder
# or file owned by another user, or writable by group/others, is never trusted; (iii) a record
# (``.sig``) copied from another kernel -- it is bound to the file name. Every cached file has a
# sidecar ``<file>.sig`` holding HMAC-SHA256(secret, name, SHA-256 of the source), where the
# secret is 32 random bytes in ``<cache>/.secret`` (mode 0600, folder 0700). Anyone who can
# edit the ``.py`` but cannot read the secret cannot forge its record. NOT defended against:
# someone who can act as the same user (or root): they can read the secret, or edit this package.
# A file failing any check is regenerated (a :class:`KernelCacheWarning` is emitted) and rewritten.

_SECRET_NAME = ".secret"
_MISSING = object()
_secrets: dict[str, bytes] = {}


def _warn(msg: str) -> None:
    import warnings

    warnings.warn(msg, KernelCacheWarning, stacklevel=4)


def _unsafe_stat(st: os.stat_result, what: str) -> str | None:
    """Why a file/folder with stat ``st`` is not trusted (None if it is)."""
    getuid = getattr(os, "getuid", None)
    if getuid is not None and st.st_uid != getuid():
        return f"{what} is owned by another user (uid {st.st_uid})"
    if st.st_mode & 0o022:
        return f"{what} is writable by group or others (mode {st.st_mode & 0o777:o})"
    return None


def trusted_cache_dir() -> Path | None:
    """The kernel cache folder, created with mode 0700, or ``None`` (no disk cache, with a
    warning) when it, or the cache root, is a symlink, is owned by another user, or is writable
    by group/others and cannot be tightened."""
    d = cache_dir()
    try:
        for p in (d.parent, d):
            try:
                p.mkdir(mode=0o700, parents=True, exist_ok=True)
            except FileExistsError:
                pass
            st = os.lstat(p)
            import stat as _stat

            if not _stat.S_ISDIR(st.st_mode):
                _warn(f"kernel cache {p} is not a folder (a symlink?): cache not used")
                return None
            why = _unsafe_stat(st, f"kernel cache folder {p}")
            if why and "another user" not in why:  # ours but too open: tighten it
                os.chmod(p, 0o700)
                why = _unsafe_stat(os.lstat(p), f"kernel cache folder {p}")
            if why:
                _warn(f"{why}: cache not used (kernels are regenerated in memory)")
                return None
        return d
    except OSError:
        return None  # a read-only home only costs regeneration


def _secret(d: Path) -> bytes | None:
    """The per-user HMAC secret of cache folder ``d`` (created on first use, mode 0600). A secret
    file that is readable or writable by others, or owned by another user, is replaced (which
    invalidates every record signed with it)."""
    k = str(d)
    if k in _secrets:
        return _secrets[k]
    path = d / _SECRET_NAME
    for _ in range(3):
        try:
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
        except FileNotFoundError:
            fd = None
        except OSError:
            fd = None
            try:
                path.unlink()
            except OSError:
                return None
        if fd is not None:
            try:
                st = os.fstat(fd)
                data = os.read(fd, 64)
            finally:
                os.close(fd)
            why = _unsafe_stat(st, f"kernel cache secret {path}")
            if why is None and st.st_mode & 0o077:
                why = f"kernel cache secret {path} is readable by others"
            if why is None and len(data) == 32:
                _secrets[k] = data
                return data
            if why is None and len(data) == 0:  # another process is creating it
                import time

                time.sleep(0.05)
                continue
            _warn(f"{why or f'kernel cache secret {path} is malformed'}: replaced; every cached "
                  f"kernel will be regenerated")
            try:
                path.unlink()
            except OSError:
                return None
        import tempfile

        try:
            fd, tmp = tempfile.mkstemp(dir=d, prefix=".secret-")  # mode 0600, random name
            try:
                os.write(fd, os.urandom(32))
            finally:
                os.close(fd)
            try:
                os.link(tmp, path)  # atomic, fails if another process won the race
            except FileExistsError:
                pass
            finally:
                os.unlink(tmp)
        except OSError:
            return None
    return None


def _record(secret: bytes, name: str, source: bytes) -> str:
    import hmac

    msg = b"attention-theory kernel cache v1\0" + name.encode() + b"\0" + \
        hashlib.sha256(source).hexdigest().encode()
    return "hmac-sha256 " + hmac.new(secret, msg, hashlib.sha256).hexdigest() + "\n"


def _read_private(path: Path) -> tuple[bytes, str | None] | None:
    """Contents of ``path`` and why it is not trusted (None: trusted); None if absent. Opened
    without following symlinks; ownership and mode checked on the open file."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except FileNotFoundError:
        return None
    except OSError as exc:
        return b"", f"{path} cannot be opened safely ({exc.strerror}; a symlink?)"
    try:
        st = os.fstat(fd)
        chunks = []
        while True:
            b = os.read(fd, 1 << 20)
            if not b:
                break
            chunks.append(b)
    finally:
        os.close(fd)
    return b"".join(chunks), _unsafe_stat(st, str(path))


def read_verified(path: Path) -> str | None:
    """The text of cached file ``path`` if its record ``<path>.sig`` verifies, else ``None``
    (absent: silently; present but failing a check: with a :class:`KernelCacheWarning`)."""
    import hmac

    got = _read_private(path)
    if got is None:
        return None
    data, why = got
    d = path.parent
    secret = _secret(d)
    if secret is None:
        return None
    if why is None:
        sig = _read_private(path.with_name(path.name + ".sig"))
        if sig is None:
            why = f"{path} has no integrity record"
        elif sig[1] is not None:
            why = sig[1]
        elif not hmac.compare_digest(sig[0].decode("ascii", "replace"),
                                     _record(secret, path.name, data)):
            why = f"{path} does not match its integrity record (edited or replaced?)"
    if why is not None:
        _warn(f"{why}: not used, regenerated")
        return None
    try:
        return data.decode()
    except UnicodeDecodeError:
        _warn(f"{path} is not text: not used, regenerated")
        return None


def _atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a randomly named 0600 temporary file, then rename."""
    import tempfile

    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def write_verified(path: Path, text: str) -> bool:
    """Write ``text`` to ``path`` and its integrity record (``False`` if the cache is unusable)."""
    secret = _secret(path.parent)
    if secret is None:
        return False
    data = text.encode()
    try:
        _atomic_write(path, data)
        _atomic_write(path.with_name(path.name + ".sig"), _record(secret, path.name, data).encode())
    except OSError:
        return False
    return True


# -- warm start: what a model's derivation produced, cached (no SymPy when warm) ----------------

_DERIVE_DIR = Path(__file__).resolve().parents[1]


def _module_files(module_name: str) -> list[Path] | None:
    """Source files a class defined in ``module_name`` depends on: its file, and the whole
    package when the module belongs to a model package (``derive/models/<pkg>/``)."""
    import sys

    mod = sys.modules.get(module_name)
    f = getattr(mod, "__file__", None)
    if not f:
        return None
    p = Path(f).resolve()
    models_dir = _DERIVE_DIR / "models"
    if p.parent != models_dir and models_dir in p.parents:  # a model package: all its files
        pkg = p.parent
        while pkg.parent != models_dir:
            pkg = pkg.parent
        return sorted(pkg.rglob("*.py"))
    return [p]


def derivation_key(cls: type) -> str | None:
    """SHA-256 of everything a model class's derived programs depend on: the source files of the
    class and its bases (a model package: all its files), the shared symbolic layer
    (``derive/model.py``, ``params.py``, ``operators.py``, ``models/_*.py``), the code generator
    (``derive/codegen/*.py``) and the SymPy version (read with :mod:`importlib.metadata`, without
    importing SymPy). ``None`` -- the model is then always derived -- when a source file cannot
    be found (a class typed at the prompt), for a class defined inside a function (its programs
    may depend on the closure), and for a class with a constructor (instances may differ)."""
    from importlib.metadata import PackageNotFoundError, version

    if "<locals>" in cls.__qualname__:  # may depend on its closure: not identified by its source
        return None
    files: set[Path] = set()
    for klass in cls.__mro__:
        if klass is object:
            continue
        if "__init__" in vars(klass):  # instances may differ (constructor arguments)
            return None
        got = _module_files(klass.__module__)
        if got is None:
            return None
        files.update(got)
    files.update((_DERIVE_DIR / "codegen").glob("*.py"))
    files.update(_DERIVE_DIR / n for n in ("model.py", "params.py", "operators.py"))
    files.update((_DERIVE_DIR / "models").glob("_*.py"))
    h = hashlib.sha256()
    try:
        h.update(f"sympy {version('sympy')}\0codegen {CODEGEN_VERSION}\0".encode())
    except PackageNotFoundError:  # pragma: no cover
        return None
    h.update(f"{cls.__module__}.{cls.__qualname__}\0".encode())
    for f in sorted(files):
        try:
            data = f.read_bytes()
        except OSError:
            return None
        h.update(str(f.relative_to(f.anchor)).encode() + b"\0")
        h.update(hashlib.sha256(data).digest())
    return h.hexdigest()


class DerivationCache:
    """The cached outcome of one model's derivation, in the kernel cache folder (signed like every
    cached kernel, see :func:`read_verified`): the names of its statically declared programs
    (and which are tensor programs), and per ``(program, target)`` the generated kernel (name,
    inputs, outputs, expressions key, source). Keyed by :func:`derivation_key`: any change to
    the model's source, the symbolic layer, the code generator or SymPy starts a new one.
    :meth:`Model.kernel <derive.model.Model.kernel>` reads kernels from here without building
    the SymPy programs."""

    def __init__(self, model_name: str, key: str) -> None:
        self.key = key
        d = trusted_cache_dir()
        self.path = (d / f"model-{_safe(model_name)}-{key[:32]}.json") if d is not None else None
        self.data: dict[str, Any] = {"derivation_key": key, "model": model_name,
                                     "programs": None, "kernels": {}}
        if self.path is not None:
            text = read_verified(self.path)
            if text is not None:
                import json

                try:
                    got = json.loads(text)
                except ValueError:
                    got = None
                if isinstance(got, dict) and got.get("derivation_key") == key:
                    self.data = got

    @property
    def programs(self) -> dict[str, bool] | None:
        """Static program name -> is a tensor program (``None``: not recorded yet)."""
        return self.data.get("programs")

    def kernel(self, program: str, target: str) -> Kernel | None:
        rec = self.data["kernels"].get(f"{program}|{target}")
        if rec is None:
            return None
        source = rec["source"]
        if f"{rec['key']}" not in source:  # every generated source records its key
            return None
        return Kernel(name=rec["name"], target=rec["target"], inputs=tuple(rec["inputs"]),
                      outputs=tuple(rec["outputs"]), key=rec["key"], source=source)

    def record(self, program: str, target: str, kernel: Kernel,
               programs: Mapping[str, bool] | None = None) -> None:
        """Add ``kernel`` (and the static program list) and rewrite the signed file."""
        self.data["kernels"][f"{program}|{target}"] = {
            "name": kernel.name, "target": kernel.target, "inputs": list(kernel.inputs),
            "outputs": list(kernel.outputs), "key": kernel.key, "source": kernel.source}
        if programs is not None:
            self.data["programs"] = dict(programs)
        if self.path is not None:
            import json

            write_verified(self.path, json.dumps(self.data, sort_keys=True))


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in name)


def equations_digest(kernels: Mapping[str, tuple[str, str]]) -> str:
    """SHA-256 over ``name -> (expressions key, source sha256)`` in name order: what
    ``equations_sha256`` of datasets and stores is (it changes iff a verified source does)."""
    h = hashlib.sha256()
    for name in sorted(kernels):
        key, sha = kernels[name]
        h.update(key.encode())
        h.update(b":")
        h.update(sha.encode())
        h.update(b"\0")
    return h.hexdigest()


@dataclass(frozen=True)
class Kernel:
    """Generated source of one program for one target, its key, and the compiled function.

    Array target: ``kernel(xp, special, *inputs) -> dict``. mpmath target:
    ``kernel(mp, *inputs) -> dict``. ``numba`` target: ``kernel(*inputs) -> tuple`` (float64
    scalars, in the order of ``outputs``), compiled by Numba on first call; a model links such
    kernels into a module of its per-node loop (:func:`derive.codegen.link.load_module`).
    """

    name: str
    target: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    key: str
    source: str
    _fn: list = field(default_factory=list, repr=False, compare=False)

    @property
    def function(self) -> Callable[..., dict[str, Any]]:
        if not self._fn and self.target == "numba":  # compiled (Numba), cached next to its source
            from .link import load_module

            self._fn.append(getattr(load_module(f"kernel_{self.name}", self.source), self.name))
        if not self._fn:
            filename = f"<attn-kernel {self.name} {self.key[:12]}>"
            linecache.cache[filename] = (
                len(self.source), None, self.source.splitlines(True), filename
            )
            namespace: dict[str, Any] = {}
            exec(compile(self.source, filename, "exec"), namespace)  # noqa: S102 - our own source
            self._fn.append(namespace[self.name])
        return self._fn[0]

    def __call__(self, *args: Any) -> dict[str, Any]:
        return self.function(*args)

    @property
    def source_sha256(self) -> str:
        """SHA-256 of the (verified) generated source."""
        return hashlib.sha256(self.source.encode()).hexdigest()

    def write(self, path: str | os.PathLike) -> Path:
        """Write the generated source to ``path`` (a self-contained Python module)."""
        p = Path(path)
        p.write_text(self.source)
        return p

    def _repr_html_(self) -> str:
        """Jupyter: the kernel's signature and key, and its generated source (highlighted by
        Pygments where installed), folded in a ``<details>`` element."""
        import html

        head = (f"<b>kernel</b> <code>{html.escape(self.name)}</code> ({html.escape(self.target)}): "
                f"{html.escape(', '.join(self.inputs))} &rarr; {html.escape(', '.join(self.outputs))}"
                f" &middot; key <code>{self.key[:12]}</code> &middot; {len(self.source.splitlines())} lines")
        try:
            from pygments import highlight
            from pygments.formatters import HtmlFormatter
            from pygments.lexers import PythonLexer

            body = highlight(self.source, PythonLexer(), HtmlFormatter(noclasses=True, nobackground=True))
        except ImportError:  # pragma: no cover - pygments ships with Jupyter
            body = f"<pre>{html.escape(self.source)}</pre>"
        return f"<details><summary>{head}</summary>{body}</details>"


def _postorder(expr: sp.Basic, first_arg_first: bool = False) -> Iterator[sp.Basic]:
    """Every distinct node of ``expr`` once, each after all of its arguments (an iterative
    DAG walk: linear in the distinct nodes, no recursion limit). Arguments are visited last
    to first, or first to last with ``first_arg_first``."""
    done: set[sp.Basic] = set()
    stack: list[tuple[sp.Basic, bool]] = [(expr, False)]
    while stack:
        e, expanded = stack.pop()
        if e in done:
            continue
        if e.args and not expanded:
            stack.append((e, True))
            args = reversed(e.args) if first_arg_first else e.args
            stack.extend((a, False) for a in args if a not in done)
            continue
        done.add(e)
        yield e


def _fingerprint(expr: sp.Basic, h: "hashlib._Hash") -> None:
    """Feed a DAG serialisation of ``expr`` to ``h``: each distinct node once, children by
    index (``srepr`` is exponential in the nesting depth of shared subexpressions)."""
    index: dict[sp.Basic, int] = {}
    for e in _postorder(expr, first_arg_first=True):
        if e.args:
            line = f"{type(e).__name__}({','.join(str(index[a]) for a in e.args)})"
        else:
            line = sp.srepr(e)
        index[e] = len(index)
        h.update(line.encode())
        h.update(b";")


@lru_cache(maxsize=1)
def generator_digest() -> str:
    """SHA-256 of the code generator's own sources (``derive/codegen/*.py``, the operator
    lowering in ``derive/operators.py``) and :data:`CODEGEN_VERSION`.

    The expressions' key says *what* is computed; this says *how it is printed*. A cached source
    is reused only if both match, so a change to the function table or a printer (a new template
    for ``erfc``, say) regenerates every kernel instead of running stale source. It is not part
    of the key, so stores and ``equations_sha256`` do not change when only the printing does."""
    h = hashlib.sha256(f"codegen {CODEGEN_VERSION}\0".encode())
    here = Path(__file__).resolve().parent
    for f in sorted(here.glob("*.py")) + [here.parent / "operators.py"]:
        h.update(f.name.encode() + b"\0")
        h.update(hashlib.sha256(f.read_bytes()).digest())
    return h.hexdigest()


def _expr_key(program: Program, lowered: Sequence[tuple[sp.Symbol, sp.Expr]], target: str) -> str:
    h = hashlib.sha256()
    for part in (CODEGEN_VERSION, target, program.name, repr([s.name for s in program.inputs]),
                 repr([s.name for s in program.outputs])):
        h.update(part.encode())
        h.update(b"\0")
    for lhs, rhs in lowered:
        h.update(sp.srepr(lhs).encode())
        h.update(b"=")
        _fingerprint(rhs, h)
        h.update(b"\0")
    return h.hexdigest()


class _Emitter:
    """Builds the text of one module: helpers for Piecewise, then the main function."""

    def __init__(self, target: str, prefix: str, names: dict[sp.Symbol, str]) -> None:
        self.target = target
        self.prefix = prefix
        self.names = dict(names)
        self.helpers: list[str] = []
        self._n_helpers = 0
        self._n_temps = 0

    @property
    def head_args(self) -> str:
        return {"xp": "xp, special", "mpmath": "mp"}.get(self.target, "")

    def head(self, args: str) -> str:
        """The argument list: the target's modules (none for ``numba``), then ``args``."""
        return ", ".join(a for a in (self.head_args, args) if a)

    @property
    def decorator(self) -> list[str]:
        """``numba``: every function is compiled (:func:`numerics.compiled.jit`)."""
        return ["@_jit"] if self.target == "numba" else []

    def _printer(self):
        return PRINTERS[self.target](self.names)

    def _new_temp(self) -> sp.Symbol:
        s = sp.Symbol(f"_t{self._n_temps}")
        self._n_temps += 1
        self.names[s] = s.name
        return s

    def extract_piecewise(self, expr: sp.Expr) -> tuple[sp.Expr, list[tuple[sp.Symbol, str]]]:
        """Replace top-level Piecewise nodes by placeholders; return the calls to emit."""
        calls: list[tuple[sp.Symbol, str]] = []
        mapping: dict[sp.Basic, sp.Symbol] = {}
        memo: dict[sp.Basic, sp.Basic] = {}

        def visit(e: sp.Basic) -> sp.Basic:
            if e in memo:
                return memo[e]
            memo[e] = new = _visit(e)
            return new

        def _visit(e: sp.Basic) -> sp.Basic:
            if isinstance(e, sp.Piecewise):
                if e not in mapping:
                    ph = self._new_temp()
                    args = sorted(_free_symbols(e), key=lambda s: s.name)
                    helper = self.helper_piecewise(e, args)
                    calls.append((ph, f"{helper}("
                                      + self.head(", ".join(self.names.get(a, identifier(a.name))
                                                            for a in args))
                                      + ")"))
                    mapping[e] = ph
                return mapping[e]
            if not e.args or isinstance(e, (sp.Symbol, sp.Number)):
                return e
            new_args = [visit(a) for a in e.args]
            if all(n is o for n, o in zip(new_args, e.args)):
                return e
            return e.func(*new_args)

        return visit(expr), calls

    def statements(self, lhs_name: str, expr: sp.Expr) -> list[str]:
        """Statements computing ``expr`` into ``lhs_name``: Piecewise calls, CSE temporaries."""
        expr, calls = self.extract_piecewise(expr)
        lines = [f"{self.names[ph]} = {call}" for ph, call in calls]
        temps = iter(lambda: self._new_temp(), None)
        if _tree_size(expr) > 20_000:
            replacements, reduced = _dag_cse(expr, temps)
        else:
            replacements, reduced = sp.cse([expr], symbols=temps, order="none")
        printer = self._printer()
        for sym, sub in replacements:
            lines.append(f"{self.names[sym]} = {printer.doprint(sub)}")
        lines.append(f"{lhs_name} = {printer.doprint(reduced[0])}")
        return lines

    def joint_statements(self, assignments: Sequence[tuple[sp.Symbol, str, sp.Expr]]) -> list[str]:
        """Statements for all ``(lhs, name, expr)`` with one common-subexpression elimination over
        every right-hand side (the scalar ``numba`` target: a temporary is a register, so a value
        two outputs share is computed once); each temporary is written just before the first
        statement that needs it, after the assignments it reads."""
        temps = iter(lambda: self._new_temp(), None)
        replacements, reduced = sp.cse([rhs for _, _, rhs in assignments], symbols=temps, order="none")
        defs = dict(replacements)
        order = {sym: i for i, (sym, _) in enumerate(replacements)}
        printer = self._printer()
        done: set[sp.Symbol] = set()
        lines: list[str] = []
        for (lhs, name, rhs), red in zip(assignments, reduced):
            need: set[sp.Symbol] = set()
            stack = [t for t in red.free_symbols if t in defs]
            while stack:
                t = stack.pop()
                if t in need or t in done:
                    continue
                need.add(t)
                stack += [u for u in defs[t].free_symbols if u in defs]
            lines.append(f"# {lhs} = {_short(rhs, 160)}".replace("\n", " "))
            for t in sorted(need, key=order.__getitem__):
                lines.append(f"{self.names[t]} = {printer.doprint(defs[t])}")
                done.add(t)
            lines.append(f"{name} = {printer.doprint(red)}")
        return lines

    def helper_piecewise(self, pw: sp.Piecewise, args: list[sp.Symbol]) -> str:
        """Emit a helper evaluating ``pw``; return its name."""
        name = f"_{self.prefix}_pw{self._n_helpers}"
        self._n_helpers += 1
        arg_names = [self.names.get(a, identifier(a.name)) for a in args]
        sig = "\n".join(self.decorator + [f"def {name}({self.head(', '.join(arg_names))}):"])
        doc = f'    """{_short(pw)}"""'
        body: list[str] = []
        if self.target in ("mpmath", "numba"):  # scalar targets: a plain if
            for i, (val, cond) in enumerate(pw.args):
                bname = self.branch_function(name, i, val, args)
                call = f"return {bname}({self.head(', '.join(arg_names))})"
                if cond == sp.true:
                    body.append(f"    {call}")
                    break
                c = self._printer().doprint(cond)
                body.append(f"    if {c}:\n        {call}")
            else:
                body.append("    raise ValueError('no Piecewise branch applies')")
        else:
            body += self._array_piecewise_body(name, pw, args, arg_names)
        self.helpers.append("\n".join([sig, doc, *body]))
        return name

    def _array_piecewise_body(self, name: str, pw: sp.Piecewise, args: list[sp.Symbol],
                              arg_names: list[str]) -> list[str]:
        """Body of an array-target Piecewise helper.

        Each branch is evaluated only on the points where it is taken (so an untaken
        branch can never produce NaN, overflow or a warning). The first condition is
        computed once and its points counted (one reduction; one host sync on CuPy, where
        the previous ``all``/``any`` pair took two). When it holds everywhere -- or, for two
        branches ending in ``True``, nowhere -- that branch runs on the whole arrays: no
        gather, no scatter, no output copy unless the branch is a bare argument or a
        constant. Otherwise each branch's inputs are gathered with its boolean mask and
        its values scattered into an ``empty`` output (``full(nan)`` only when some point
        may take no branch); for two branches the second mask is just the negation of the
        first, without ``_todo`` bookkeeping. Inputs already of one shape are not passed
        through ``broadcast_arrays``.
        """
        a0 = arg_names[0]
        ind = "    "
        body: list[str] = []
        conv = ", ".join(f"xp.asarray({a}, dtype=xp.float64)" for a in arg_names)
        body.append(f"{ind}{', '.join(arg_names)} = {conv}")
        if len(arg_names) > 1:
            same = " == ".join(f"{a}.shape" for a in arg_names)
            body.append(f"{ind}if not ({same}):")
            body.append(f"{ind}    {', '.join(arg_names)} = xp.broadcast_arrays({', '.join(arg_names)})")
        branches = list(pw.args)
        has_default = branches[-1][1] == sp.true
        names = [self.branch_function(name, i, val, args) for i, (val, _) in enumerate(branches)]
        full_args = ", ".join(arg_names)

        def whole(i: int) -> list[str]:
            """Statements returning branch ``i`` evaluated on every point."""
            val = branches[i][0]
            call = f"{names[i]}(xp, special, {full_args})"
            if val.free_symbols and not val.is_Atom:  # a fresh array of the full shape
                return [f"return {call}"]
            # a constant or an argument itself: a fresh array of the right shape
            return [f"_out = xp.empty({a0}.shape)", f"_out[...] = {call}", "return _out"]

        if branches[0][1] == sp.true:
            return body + [ind + ln for ln in whole(0)]
        c0 = self._printer().doprint(branches[0][1])
        body.append(f"{ind}_m = xp.asarray({c0})")
        body.append(f"{ind}if _m.shape != {a0}.shape:")
        body.append(f"{ind}    _m = xp.broadcast_to(_m, {a0}.shape)")
        body.append(f"{ind}_n = int(xp.count_nonzero(_m))")
        body.append(f"{ind}if _n == _m.size:")
        body += [ind + "    " + ln for ln in whole(0)]
        two = len(branches) == 2 and has_default
        if two:
            body.append(f"{ind}if _n == 0:")
            body += [ind + "    " + ln for ln in whole(1)]
        alloc = "xp.empty" if has_default else "xp.full"
        body.append(f"{ind}_out = {alloc}({a0}.shape{'' if has_default else ', xp.nan'})")

        def scatter(i: int) -> list[str]:
            masked = ", ".join(f"{a}[_m]" for a in arg_names)
            return [f"{ind}_out[_m] = {names[i]}(xp, special, {masked})"]

        if two:  # 0 < _n < size: both branches have points
            body += scatter(0)
            body.append(f"{ind}_m = xp.logical_not(_m)")
            body += scatter(1)
            body.append(f"{ind}return _out")
            return body
        body.append(f"{ind}if _n:")
        body += ["    " + ln for ln in scatter(0)]
        body.append(f"{ind}_todo = xp.logical_not(_m)")
        for i in range(1, len(branches)):
            cond = branches[i][1]
            last = i == len(branches) - 1
            if cond == sp.true:
                body.append(f"{ind}_m = _todo")
            else:
                c = self._printer().doprint(cond)
                body.append(f"{ind}_m = xp.logical_and(_todo, {c})")
                if not last:
                    body.append(f"{ind}_todo = xp.logical_and(_todo, xp.logical_not(_m))")
            body.append(f"{ind}if bool(_m.any()):")
            body += ["    " + ln for ln in scatter(i)]
        body.append(f"{ind}return _out")
        return body

    def branch_function(self, helper: str, i: int, val: sp.Expr, args: list[sp.Symbol]) -> str:
        name = f"{helper}_b{i}"
        arg_names = [self.names.get(a, identifier(a.name)) for a in args]
        lines = self.statements("_r", val)
        src = self.decorator + [f"def {name}({self.head(', '.join(arg_names))}):"]
        src += ["    " + ln for ln in lines]
        src.append("    return _r")
        self.helpers.append("\n".join(src))
        return name


def _joint_cse_applies(lowered: Sequence[tuple[sp.Symbol, sp.Expr]]) -> bool:
    """One CSE over a whole program (:meth:`_Emitter.joint_statements`) where no right-hand side
    holds a Piecewise (emitted as helper calls) and the program is small enough for SymPy's
    ``cse`` (the per-statement path keeps its linear-time fallback for huge expressions)."""
    return (all(not rhs.has(sp.Piecewise) for _, rhs in lowered)
            and sum(_tree_size(rhs) for _, rhs in lowered) <= 20_000)


def _tree_size(expr: sp.Basic) -> int:
    """Number of nodes of ``expr`` printed as a tree (computed on the DAG)."""
    size: dict[sp.Basic, int] = {}
    for e in _postorder(expr):
        size[e] = 1 + sum(size[a] for a in e.args)
    return size[expr]


def _dag_cse(expr: sp.Basic, symbols) -> tuple[list[tuple[sp.Symbol, sp.Basic]], list[sp.Basic]]:
    """Linear-time CSE for very large expressions: every non-atomic node used by two or
    more distinct parents becomes a temporary (SymPy's ``cse`` walks the tree and can take
    exponential time on deeply shared expressions)."""
    uses: dict[sp.Basic, int] = {}
    for e in unique_nodes(expr):
        for a in set(e.args):
            uses[a] = uses.get(a, 0) + 1
    new: dict[sp.Basic, sp.Basic] = {}
    replacements: list[tuple[sp.Symbol, sp.Basic]] = []
    for e in _postorder(expr):
        rebuilt = e.func(*[new[a] for a in e.args], evaluate=False) if e.args else e
        if e.args and uses.get(e, 0) >= 2 and e is not expr:
            sym = next(symbols)
            replacements.append((sym, rebuilt))
            new[e] = sym
        else:
            new[e] = rebuilt
    return replacements, [new[expr]]


def _short(expr: sp.Basic, width: int = 200) -> str:
    n = _tree_size(expr)
    if n > 2000:  # printing a deep DAG as a tree is exponential
        return f"<expression of {n} nodes as a tree, {len(unique_nodes(expr))} distinct>"
    s = str(expr).replace('"""', "'''").replace("\\", "\\\\")
    return s if len(s) <= width else s[: width - 3] + "..."


def generate(program: Program, target: str = "xp") -> Kernel:
    """Lower ``program`` and return its :class:`Kernel` for ``target`` ("xp", "mpmath" or "numba").

    The source is looked up in the on-disk cache by the key of the lowered
    expressions and generated (and cached) only when absent. A cached file is used only if it
    passes :func:`read_verified` (its HMAC record, owner and permissions); otherwise it is
    regenerated and rewritten, with a :class:`KernelCacheWarning`.
    """
    if target not in PRINTERS:
        raise ValueError(f"unknown target {target!r}; valid targets are {sorted(PRINTERS)}")
    lowered = [(lhs, lower(rhs)) for lhs, rhs in _hoist_operators(program.assignments)]
    for _, rhs in lowered:
        check_supported(rhs)
    key = _expr_key(program, lowered, target)
    fn_name = identifier(program.name)
    d = trusted_cache_dir()
    path = d / f"{fn_name}-{target}-{key[:32]}.py" if d is not None else None
    source = read_verified(path) if path is not None else None
    if source is not None and f"# expressions sha256: {key}\n" not in source:
        source = None  # a verified file of another key (a 32-hex-digit prefix collision)
    if source is not None and f"# generator sha256: {generator_digest()}\n" not in source:
        source = None  # printed by another version of the generator (function table, printers)
    if source is None:
        source = _render(program, lowered, target, key, fn_name)
        if path is not None:
            write_verified(path, source)  # failure only costs regeneration next time
    return Kernel(
        name=fn_name,
        target=target,
        inputs=tuple(s.name for s in program.inputs),
        outputs=tuple(s.name for s in program.outputs),
        key=key,
        source=source,
    )


def _hoist_operators(assignments: Sequence[tuple[sp.Symbol, sp.Expr]]
                     ) -> list[tuple[sp.Symbol, sp.Expr]]:
    """Give every operator call its own assignment before lowering.

    Lowered operators are ``Piecewise``; left inside a power or product, SymPy would
    distribute the power into every branch and the operator would be evaluated again
    for ``M**2``, ``M**3``... Hoisting evaluates each distinct call once.
    """
    out: list[tuple[sp.Symbol, sp.Expr]] = []
    n = 0
    for lhs, rhs in assignments:
        rhs = sp.sympify(rhs)
        while True:
            ops = [e for e in unique_nodes(rhs) if hasattr(e, "_eval_lower")
                   and e is not rhs
                   and not any(hasattr(a, "_eval_lower") for a in unique_nodes(e)
                               if a is not e)]
            if not ops:
                break
            op = ops[0]
            sym = sp.Symbol(f"_op{n}_{lhs.name}")
            n += 1
            out.append((sym, op))
            rhs = rhs.xreplace({op: sym})
        out.append((lhs, rhs))
    return out


def _render(program: Program, lowered: list[tuple[sp.Symbol, sp.Expr]], target: str,
            key: str, fn_name: str) -> str:
    names: dict[sp.Symbol, str] = {}
    used: set[str] = set()
    for s in list(program.inputs) + [lhs for lhs, _ in lowered]:  # noqa: B020
        n = identifier(s.name)
        while n in used and names.get(s) != n:
            n += "_"
        names[s] = n
        used.add(n)
    em = _Emitter(target, fn_name, names)
    body: list[str] = []
    if target == "numba" and _joint_cse_applies(lowered):
        body += em.joint_statements([(lhs, names[lhs], rhs) for lhs, rhs in lowered])
    else:
        for lhs, rhs in lowered:
            body.append(f"# {lhs} = {_short(rhs, 160)}".replace("\n", " "))
            body += em.statements(names[lhs], rhs)
    if target == "numba":  # a tuple in the order of ``outputs`` (Numba returns no dicts)
        body.append("return (" + "".join(f"{names[s]}, " for s in program.outputs) + ")")
    else:
        ret = ", ".join(f"{s.name!r}: {names[s]}" for s in program.outputs)
        body.append(f"return {{{ret}}}")
    args = ", ".join(names[s] for s in program.inputs)
    doc = program.doc or f"Generated kernel {program.name}."
    header = textwrap.dedent(f'''\
        # Generated by attention-theory (derive.codegen), target: {target}. Do not edit:
        # regenerate from the SymPy source instead.
        # expressions sha256: {key}
        # codegen version: {CODEGEN_VERSION}
        # generator sha256: {generator_digest()}
        ''')
    parts = [header]
    if target == "mpmath":
        parts.append(_MP_PRELUDE)
    elif target == "numba":
        parts.append(_NUMBA_PRELUDE)
    else:
        imports = xp_imports(rhs for _, rhs in lowered)
        if imports:
            parts.append("\n".join(imports) + "\n")
    parts += [h + "\n" for h in em.helpers]
    main = em.decorator + [f"def {fn_name}({em.head(args)}):", f'    """{doc}"""']
    main += ["    " + ln for ln in body]
    parts.append("\n".join(main) + "\n")
    return "\n\n".join(p.strip("\n") + "\n" for p in parts)
