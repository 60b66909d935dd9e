"""The kernel cache is tamper-evident (issue 15.4).

An edited cached kernel (the attack of the issue: ``e_icl = 0.123456`` inserted) must not be
executed: ``derive.solve`` gives the value computed from the regenerated source, with a
:class:`~derive.codegen.kernel.KernelCacheWarning`. Planted files (no record, a record copied from
another kernel), files writable by others and a cache folder writable by others are not trusted.
The reference value is the authors' closed form at lam = 0, tau > 1, kappa = inf (spec §2.3):
independent of the cache.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import sympy as sp

import derive
from derive.codegen import Program, generate
from derive.codegen.kernel import KernelCacheWarning, cache_dir, trusted_cache_dir

x, out = sp.symbols("x out")

POINT = dict(tau=2.0, alpha=10.0, kappa=np.inf, rho=0.01, lam=0.0)


def _fresh_models():
    """Drop the in-process model instances so kernels are read from disk again."""
    derive.models.get.cache_clear()


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("ATTN_THEORY_CACHE", str(tmp_path / "c"))
    _fresh_models()
    yield tmp_path / "c" / "kernels"
    _fresh_models()


@pytest.fixture(scope="module")
def _warm_icl(tmp_path_factory):
    """A kernel cache holding the ICL model's kernels and derivation (derived once per module)."""
    base = tmp_path_factory.mktemp("warm") / "c"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ATTN_THEORY_CACHE", str(base))
        _fresh_models()
        derive.solve("icl-linear-attention", **POINT)
    _fresh_models()
    return base


@pytest.fixture
def icl_cache(_warm_icl, tmp_path, monkeypatch):
    """A private copy of the warm ICL cache (same secret, other folder), used by this test."""
    import shutil

    target = tmp_path / "c"
    shutil.copytree(_warm_icl, target)
    monkeypatch.setenv("ATTN_THEORY_CACHE", str(target))
    _fresh_models()
    yield target / "kernels"
    _fresh_models()


def _icl_observables_file(d: Path) -> Path:
    files = sorted(d.glob("icl_observables-xp-*.py"))
    assert len(files) == 1, files
    return files[0]


def test_cache_folder_is_private(cache):
    generate(Program("privy", (x,), ((out, x + 1),), (out,)))
    assert cache.is_dir()
    assert cache.stat().st_mode & 0o777 == 0o700
    assert (cache / ".secret").stat().st_mode & 0o777 == 0o600
    for f in cache.iterdir():
        assert f.stat().st_mode & 0o077 == 0, f  # temp names from mkstemp: 0600
        assert not f.name.endswith(".part"), "temporary file left behind"


ATTACK = "    e_icl = 0.123456\n    return {"


def _tamper(d: Path) -> None:
    """The attack of the issue: ``e_icl = 0.123456`` inserted before the return of the cached
    observables kernel (its recorded key line kept), in the kernel file and in the model's
    derivation cache (which holds the same source for the warm start)."""
    f = _icl_observables_file(d)
    f.write_text(f.read_text().replace("    return {", ATTACK, 1))
    assert "e_icl = 0.123456" in f.read_text()
    (man,) = d.glob("model-icl-linear-attention-*.json")
    data = json.loads(man.read_text())
    rec = data["kernels"]["observables|xp"]
    rec["source"] = rec["source"].replace("    return {", ATTACK, 1)
    man.write_text(json.dumps(data, sort_keys=True))


def test_edited_cached_kernel_is_not_executed(icl_cache):
    cache = icl_cache
    ref = derive.solve("icl-linear-attention", **POINT)
    e_ref = float(ref.e_icl)
    assert abs(e_ref - 0.123456) > 1e-3
    _tamper(cache)
    _fresh_models()
    with pytest.warns(KernelCacheWarning, match="does not match its integrity record"):
        ds = derive.solve("icl-linear-attention", **POINT)
    assert float(ds.e_icl) == e_ref
    assert ds.attrs["equations_sha256"] == ref.attrs["equations_sha256"]
    # the file was regenerated: a third process-equivalent run is silent
    assert "0.123456" not in _icl_observables_file(cache).read_text()
    assert "0.123456" not in next(cache.glob("model-icl-linear-attention-*.json")).read_text()
    _fresh_models()
    with warnings.catch_warnings():
        warnings.simplefilter("error", KernelCacheWarning)
        assert float(derive.solve("icl-linear-attention", **POINT).e_icl) == e_ref


def test_edited_kernel_in_a_fresh_process_is_not_executed(icl_cache):
    cache = icl_cache
    """The same attack through a separate interpreter (nothing held in memory)."""
    code = ("import warnings, numpy as np, derive\n"
            "with warnings.catch_warnings(record=True) as w:\n"
            "    warnings.simplefilter('always')\n"
            "    ds = derive.solve('icl-linear-attention', tau=2.0, alpha=10.0, kappa=np.inf, "
            "rho=0.01, lam=0.0)\n"
            "print(repr(float(ds.e_icl)), sum('integrity' in str(x.message) for x in w))\n")
    env = dict(os.environ, ATTN_THEORY_CACHE=str(cache.parent))
    first = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                           check=True).stdout.split()
    _tamper(cache)
    second = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                            check=True).stdout.split()
    assert first[0] == second[0] and float(second[0]) != 0.123456
    assert first[1] == "0" and int(second[1]) >= 1


def test_planted_file_without_record_is_regenerated(cache):
    p = Program("planted", (x,), ((out, x + 1),), (out,))
    k = generate(p)
    f = next(cache.glob("planted-xp-*.py"))
    (cache / (f.name + ".sig")).unlink()
    f.write_text(k.source.replace("out = x + 1", "out = x + 2"))  # keeps the key line
    with pytest.warns(KernelCacheWarning, match="no integrity record"):
        k2 = generate(p)
    assert k2.source == k.source
    assert k2(np, None, 1.0)["out"] == 2.0


def test_record_copied_from_another_kernel_is_refused(cache):
    pa = Program("plant_a", (x,), ((out, x + 1),), (out,))
    pb = Program("plant_b", (x,), ((out, x + 5),), (out,))
    ka, kb = generate(pa), generate(pb)
    fa, fb = next(cache.glob("plant_a-*.py")), next(cache.glob("plant_b-*.py"))
    # swap in b's source (renamed) together with b's valid record
    fa.write_text(kb.source.replace("plant_b", "plant_a").replace(kb.key, ka.key))
    (cache / (fa.name + ".sig")).write_bytes((cache / (fb.name + ".sig")).read_bytes())
    with pytest.warns(KernelCacheWarning):
        assert generate(pa)(np, None, 1.0)["out"] == 2.0


@pytest.mark.skipif(not hasattr(os, "getuid"), reason="POSIX permissions")
def test_group_writable_file_is_not_trusted(cache):
    p = Program("gw", (x,), ((out, x * 3),), (out,))
    k = generate(p)
    f = next(cache.glob("gw-xp-*.py"))
    f.chmod(0o664)
    with pytest.warns(KernelCacheWarning, match="writable by group or others"):
        assert generate(p).source == k.source
    assert f.stat().st_mode & 0o077 == 0  # rewritten private


@pytest.mark.skipif(not hasattr(os, "getuid"), reason="POSIX permissions")
def test_open_cache_folder_is_tightened_and_secret_replaced(cache):
    p = Program("opendir", (x,), ((out, x - 1),), (out,))
    generate(p)
    cache.chmod(0o777)
    assert trusted_cache_dir() == cache
    assert cache.stat().st_mode & 0o777 == 0o700
    (cache / ".secret").chmod(0o644)  # the secret may have been read: replaced, all regenerated
    from derive.codegen import kernel as kmod

    kmod._secrets.clear()
    with pytest.warns(KernelCacheWarning):
        assert generate(p)(np, None, 3.0)["out"] == 2.0
    assert (cache / ".secret").stat().st_mode & 0o777 == 0o600


def test_symlinked_cache_file_is_not_followed(cache, tmp_path):
    p = Program("linked", (x,), ((out, x * 7),), (out,))
    k = generate(p)
    f = next(cache.glob("linked-xp-*.py"))
    evil = tmp_path / "evil.py"
    evil.write_text(k.source)
    f.unlink()
    f.symlink_to(evil)
    with pytest.warns(KernelCacheWarning):
        assert generate(p).source == k.source
    assert not f.is_symlink()


def test_cache_dir_is_under_the_environment_variable(cache):
    assert cache_dir() == cache
