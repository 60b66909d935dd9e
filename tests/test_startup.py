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


# ---- the converted RIE models (model packages: SymPy-free __init__ + statement.py) -------------
#: small grids of each converted model: both RIE branches (symmetric; rectangular at β = 1, β > 1
#: and the β = ∞ closed form), Δ = 0 perfect recovery for the quadratic net
RIE_GRIDS = {
    "extensive-width-quadratic": ("gen_error", "dict(alpha=[0.2, 0.6], kappa=0.5, delta=[0.0, 0.1])"),
    "bilinear-sequence-regression": ("mmse", "dict(alpha=[0.3, 1.2], beta=[1.0, 2.0, np.inf], "
                                             "rho=0.5, delta=0.1)"),
}

WARM_SOLVE = """
import json, sys
import numpy as np
import derive
ds = derive.solve({name!r}, **{grid})
print(json.dumps({{"values": ds[{var!r}].values.ravel().tolist(), "sha": ds.attrs["equations_sha256"],
                  "heavy": sorted(m for m in ("sympy", "matplotlib", "typer") if m in sys.modules)}}))
"""


@pytest.mark.parametrize("name", sorted(RIE_GRIDS))
def test_warm_cache_rie_model_solve_does_not_import_sympy(name, tmp_path, monkeypatch):
    """A fresh instance of the model generates every kernel into an empty cache (the SymPy
    statement is shared in this process, so only code generation runs here); a fresh process
    solving from that cache imports no SymPy and gets the same bits as this process's solve."""
    import numpy as np

    import derive
    from derive import models

    var, grid = RIE_GRIDS[name]
    ds = derive.solve(name, **eval(grid, {"np": np}))
    monkeypatch.setenv("ATTN_THEORY_CACHE", str(tmp_path))
    type(models.get(name))().kernels("xp")  # fills the kernel and derivation caches in tmp_path
    env = dict(os.environ, ATTN_THEORY_CACHE=str(tmp_path), OPENBLAS_NUM_THREADS="1")
    out = subprocess.run([sys.executable, "-c", WARM_SOLVE.format(name=name, grid=grid, var=var)],
                         env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    warm = json.loads(out.stdout.strip().splitlines()[-1])
    assert warm["heavy"] == []
    assert warm["sha"] == ds.attrs["equations_sha256"]
    assert warm["values"] == ds[var].values.ravel().tolist()  # bit for bit (NaN-free grids)


@pytest.mark.parametrize("name", sorted(RIE_GRIDS))
def test_importing_a_converted_rie_model_does_not_import_sympy(name):
    code = ("import sys\nfrom derive import models\n"
            f"m = models.get({name!r})\n"
            "m.validate({p.name: 1.0 for p in m.parameters})\n"
            "print('sympy' in sys.modules)\nm.symbol_names\nprint('sympy' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.stdout.split() == ["False", "True"], out.stderr[-2000:]


@pytest.mark.parametrize("module, attr", [
    ("extensive_width_quadratic", a) for a in ("C", "E", "alpha", "kappa", "delta", "m", "de", "q",
                                               "mmse_at", "SYMBOL_NAMES")] + [
    ("bilinear_sequence_regression", a) for a in ("C", "E", "alpha", "beta", "rho", "delta", "m", "q",
                                                  "qhat", "mmse_at", "SYMBOL_NAMES")])
def test_rie_statement_symbols_stay_reachable_from_the_model_module(module, attr):
    import importlib

    mod = importlib.import_module(f"derive.models.{module}")
    assert getattr(mod, attr) is not None
    with pytest.raises(AttributeError):
        getattr(mod, "no_such_symbol")


def test_rie_statement_attributes_on_class_and_instance():
    """Definitions read on the class (as ``attention_indexed`` does) and derivations on the
    instance; the output names the numeric side uses are the statement's symbols' names."""
    from derive import models
    from derive.models import bilinear_sequence_regression as bsr
    from derive.models import extensive_width_quadratic as ewq

    cls = ewq.ExtensiveWidthQuadratic
    assert str(cls.Q0_def) == "1 + 1/kappa" and cls.alpha_pr_def.has(ewq.kappa)
    m = models.get("extensive-width-quadratic")
    assert m.Q0_def == cls.Q0_def and m.qhat_map is m.qhat_map
    assert tuple(c.name for c in ewq.C) == ewq.COEFF_NAMES and tuple(e.name for e in ewq.E) == ewq.EDGE_NAMES
    assert m.symbol_names[ewq.qhat] == r"\hat q"
    b = models.get("bilinear-sequence-regression")
    assert b.qhat_def == bsr.alpha / (bsr.delta + bsr.m)
    assert tuple(c.name for c in bsr.C) == bsr.COEFF_NAMES and tuple(e.name for e in bsr.E) == bsr.EDGE_NAMES
    assert b.rie_beta_inf(0, bsr.rho) == 0 and len(b.log_potential_symbols) == 4


# ---- the command line ---------------------------------------------------------------------------
def test_cli_help_imports_no_heavy_module():
    """``attn-theory --help`` runs the real entry point and imports neither SymPy, xarray,
    matplotlib nor Rich (typer renders plain click help: ``rich_markup_mode=None``); the help
    still lists every command."""
    code = ("import sys\nsys.argv = ['attn-theory', '--help']\nfrom derive.cli import main\n"
            "try:\n    main()\nexcept SystemExit as e:\n    assert not e.code, e.code\n"
            "print(sorted(m for m in ('sympy', 'xarray', 'matplotlib', 'rich', 'scipy') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "[]"
    for command in ("models", "show", "solve", "inspect", "verify", "codegen", "simulate",
                    "reproduce", "plot"):
        assert f"  {command} " in out.stdout, command


@pytest.mark.parametrize("attr", ["tau", "eps", "M", "Mk", "SYMBOL_NAMES"])
def test_statement_symbols_stay_reachable_from_the_model_module(attr):
    from derive.models import icl_linear_attention as icl

    assert getattr(icl, attr) is not None
