"""Start-up (issue 14.1): with a warm cache, a fresh process solves without importing SymPy.

The first process derives the ICL model's programs (SymPy) and fills the kernel cache and the
model's derivation cache; a second, fresh process must solve the same grid to the same bits
with ``'sympy' not in sys.modules``. ``import derive`` and the CLI module are light (no SymPy,
xarray, matplotlib). The derivation key follows the model's source, SymPy's version and the code
generator. (Timings are measured by ``benchmarks/bench_startup.py``, not asserted here.)
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

SOLVE = """
import json, sys
import numpy as np
import derive
ds = derive.solve("icl-linear-attention", tau=np.geomspace(0.1, 10, 7), alpha=[1.0, 10.0],
                  kappa=0.5, rho=0.01, lam=[0.0, 1e-3])
print(json.dumps({"e_icl": ds.e_icl.values.ravel().tolist(), "sha": ds.attrs["equations_sha256"],
                  "sympy": "sympy" in sys.modules,
                  "heavy": sorted(m for m in ("sympy", "matplotlib", "typer") if m in sys.modules)}))
"""


def _run(code: str, cache) -> dict:
    env = dict(os.environ, ATTN_THEORY_CACHE=str(cache), OPENBLAS_NUM_THREADS="1")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_warm_cache_icl_solve_does_not_import_sympy(tmp_path):
    cold = _run(SOLVE, tmp_path)
    assert cold["sympy"]  # the first process derived the programs
    warm = _run(SOLVE, tmp_path)
    assert not warm["sympy"] and warm["heavy"] == []
    assert warm["e_icl"] == cold["e_icl"] and warm["sha"] == cold["sha"]  # bit for bit


def test_import_derive_and_cli_are_light():
    code = ("import sys, derive, derive.cli\n"
            "print(sorted(m for m in ('sympy', 'xarray', 'matplotlib', 'scipy.optimize') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "[]"


def test_importing_the_icl_model_does_not_import_sympy():
    code = ("import sys\nfrom derive import models\nm = models.get('icl-linear-attention')\n"
            "m.validate({'tau': 1.0, 'alpha': 1.0, 'kappa': 1.0, 'rho': 0.0, 'lam': 0.0})\n"
            "print('sympy' in sys.modules)\nm.equations()\nprint('sympy' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.stdout.split() == ["False", "True"], out.stderr[-2000:]


def test_derivation_key_follows_sources_sympy_and_codegen(monkeypatch, tmp_path):
    import importlib.metadata

    from derive import models
    from derive.codegen import kernel as kmod

    cls = type(models.get("icl-linear-attention"))
    k0 = kmod.derivation_key(cls)
    assert k0 is not None and k0 == kmod.derivation_key(cls)
    real = importlib.metadata.version
    monkeypatch.setattr(importlib.metadata, "version",
                        lambda n: "0.0-other" if n == "sympy" else real(n))
    assert kmod.derivation_key(cls) != k0  # another SymPy
    monkeypatch.setattr(importlib.metadata, "version", real)
    monkeypatch.setattr(kmod, "CODEGEN_VERSION", "other")
    assert kmod.derivation_key(cls) != k0  # another code generator
    # another model source: the key covers every file of the model package
    pkg = kmod._module_files(cls.__module__)
    assert any(p.name == "statement.py" for p in pkg) and any(p.name == "__init__.py" for p in pkg)
    fake = tmp_path / "statement.py"
    fake.write_text("# edited\n")
    monkeypatch.setattr(kmod, "_module_files",
                        lambda m: [fake if p.name == "statement.py" else p for p in pkg]
                        if m == cls.__module__ else [kmod._DERIVE_DIR / "model.py"])
    assert kmod.derivation_key(cls) != k0


@pytest.mark.parametrize("attr", ["tau", "eps", "M", "Mk", "SYMBOL_NAMES"])
def test_statement_symbols_stay_reachable_from_the_model_module(attr):
    from derive.models import icl_linear_attention as icl

    assert getattr(icl, attr) is not None
