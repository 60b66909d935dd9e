#!/usr/bin/env python
"""Start-up cost of a fresh process that solves a small grid with a warm kernel cache (issue 14.1).

Three kinds of fresh interpreters, each run ``--repeats`` times (default 3), **interleaved**
(bare, warm, cold, bare, warm, cold, ...) so that a busy machine slows all of them alike; the
median wall time of each is reported:

* **bare**: ``import numpy, scipy, xarray`` and nothing else (the floor any xarray-returning
  tool pays);
* **warm**: ``derive.solve('icl-linear-attention', ...)`` on a small grid (2 x 8 x 2 points,
  both the ridgeless closed form and the ridge root finder), with the kernel and derivation
  caches filled by a previous process; it also reports whether SymPy was imported;
* **cold**: the same with an empty cache (derivation in SymPy and code generation), for scale.

Also: ``attn-theory --help`` and a warm-cache solve of each other converted model
(extensive-width-quadratic, bilinear-sequence-regression; median of the same number of runs). Target: warm / bare <= 1.3 and
``'sympy' not in sys.modules`` for the warm process; ``--help`` well under a second.

Usage::

    python benchmarks/bench_startup.py [--repeats 3] [--out REPORT.md]
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from _machine import emit_report  # noqa: E402 - sibling module (scripts run from this folder)

ROOT = Path(__file__).resolve().parents[1]
TARGET = 1.3

BARE = "import numpy, scipy, xarray\n"
SOLVE = """
import json, sys
import numpy as np
import derive
ds = derive.solve("icl-linear-attention", tau=np.geomspace(0.1, 10, 8), alpha=[1.0, 10.0],
                  kappa=0.5, rho=0.01, lam=[0.0, 1e-3])
assert int(ds.converged.sum()) == ds.converged.size
print(json.dumps({"sympy": "sympy" in sys.modules}))
"""

#: the other converted models (model packages, docs/architecture.md "Start-up"): a warm-cache
#: solve of a small grid each, in a fresh process
MODEL_SOLVES = {
    "extensive-width-quadratic": "alpha=[0.2, 0.6], kappa=0.5, delta=[0.0, 0.1]",
    "bilinear-sequence-regression": "alpha=[0.3, 1.2], beta=[1.0, 2.0, np.inf], rho=0.5, delta=0.1",
}
MODEL_SOLVE = """
import json, sys
import numpy as np
import derive
ds = derive.solve({name!r}, {grid})
assert int(ds.converged.sum()) == ds.converged.size
print(json.dumps({{"sympy": "sympy" in sys.modules}}))
"""


def run(code: str | None, env: dict[str, str], argv: list[str] | None = None) -> tuple[float, str]:
    cmd = argv if argv is not None else [sys.executable, "-c", code]
    t0 = time.perf_counter()
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=ROOT)
    dt = time.perf_counter() - t0
    if out.returncode != 0:
        raise RuntimeError(f"{cmd[:3]} failed:\n{out.stderr[-2000:]}")
    return dt, out.stdout


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", help="also write the report to this Markdown file")
    ap.add_argument("--backend", default="numpy", choices=("numpy",),
                    help="start-up is measured on NumPy only")
    args = ap.parse_args(argv)

    base_env = dict(os.environ, OPENBLAS_NUM_THREADS="1", PYTHONDONTWRITEBYTECODE="0")
    warm_dir = Path(tempfile.mkdtemp(prefix="attn-bench-warm-"))
    warm_env = dict(base_env, ATTN_THEORY_CACHE=str(warm_dir))
    run(SOLVE, warm_env)  # fill the warm cache (and the .pyc files)
    model_code = {n: MODEL_SOLVE.format(name=n, grid=g) for n, g in MODEL_SOLVES.items()}
    for code in model_code.values():
        run(code, warm_env)
    run(BARE, base_env)
    times: dict[str, list[float]] = {"bare": [], "warm": [], "cold": [], "help": [],
                                     "pass": [], "help_m": [],
                                     **{n: [] for n in MODEL_SOLVES}}
    sympy_models: dict[str, list[bool]] = {n: [] for n in MODEL_SOLVES}
    sympy_warm: list[bool] = []
    sympy_cold: list[bool] = []
    attn = shutil.which("attn-theory")
    help_cmd = [attn, "--help"] if attn else [sys.executable, "-m", "derive.cli", "--help"]
    try:
        for _ in range(args.repeats):
            times["bare"].append(run(BARE, base_env)[0])
            dt, out = run(SOLVE, warm_env)
            times["warm"].append(dt)
            sympy_warm.append(json.loads(out.strip().splitlines()[-1])["sympy"])
            cold_dir = Path(tempfile.mkdtemp(prefix="attn-bench-cold-"))
            try:
                dt, out = run(SOLVE, dict(base_env, ATTN_THEORY_CACHE=str(cold_dir)))
            finally:
                shutil.rmtree(cold_dir, ignore_errors=True)
            times["cold"].append(dt)
            sympy_cold.append(json.loads(out.strip().splitlines()[-1])["sympy"])
            times["help"].append(run(None, base_env, help_cmd)[0])
            times["pass"].append(run("pass", base_env)[0])
            times["help_m"].append(run(None, base_env, [sys.executable, "-m", "derive.cli",
                                                        "--help"])[0])
            for n, code in model_code.items():
                dt, out = run(code, warm_env)
                times[n].append(dt)
                sympy_models[n].append(json.loads(out.strip().splitlines()[-1])["sympy"])
    finally:
        shutil.rmtree(warm_dir, ignore_errors=True)

    med = {k: statistics.median(v) for k, v in times.items()}
    ratio = med["warm"] / med["bare"]
    ok = ratio <= TARGET and not any(sympy_warm) and not any(map(any, sympy_models.values()))
    L = ["## Start-up: fresh-process solve with a warm cache vs bare imports", "",
         f"Fresh interpreters, {args.repeats} runs each, interleaved; median wall time "
         f"(`python benchmarks/bench_startup.py`). Grid: icl-linear-attention, 8 τ × 2 α × 2 λ "
         f"(λ = 0 closed form, λ = 1e-3 root finder), κ = 0.5, ρ = 0.01.", "",
         "| process | median [s] | runs [s] | SymPy imported |", "|---|---|---|---|",
         f"| bare: `import numpy, scipy, xarray` | {med['bare']:.3f} | "
         f"{', '.join(f'{t:.3f}' for t in times['bare'])} | no |",
         f"| warm cache: `derive.solve(...)` | {med['warm']:.3f} | "
         f"{', '.join(f'{t:.3f}' for t in times['warm'])} | {'yes' if any(sympy_warm) else 'no'} |",
         f"| cold cache: `derive.solve(...)` (derivation + codegen) | {med['cold']:.3f} | "
         f"{', '.join(f'{t:.3f}' for t in times['cold'])} | {'yes' if any(sympy_cold) else 'no'} |",
         f"| `attn-theory --help` (console script: {Path(help_cmd[0]).name}) | {med['help']:.3f} | "
         f"{', '.join(f'{t:.3f}' for t in times['help'])} | no |",
         f"| `python -m derive.cli --help` | {med['help_m']:.3f} | "
         f"{', '.join(f'{t:.3f}' for t in times['help_m'])} | no |",
         f"| interpreter only: `python -c pass` | {med['pass']:.3f} | "
         f"{', '.join(f'{t:.3f}' for t in times['pass'])} | no |",
         *(f"| warm cache: `derive.solve('{n}', {g})` | {med[n]:.3f} "
           f"({med[n] / med['bare']:.2f}× bare) | {', '.join(f'{t:.3f}' for t in times[n])} | "
           f"{'yes' if any(sympy_models[n]) else 'no'} |" for n, g in MODEL_SOLVES.items()),
         "",
         f"warm / bare = **{ratio:.2f}×** (target ≤ {TARGET}×: {'met' if ok else 'NOT met'}); "
         f"cold / warm = {med['cold'] / med['warm']:.1f}×.", "",
         f"<!-- headline: warm-cache solve / bare numpy+scipy+xarray import: {ratio:.2f}× "
         f"(target ≤ {TARGET}×), SymPy {'imported' if any(sympy_warm) else 'not imported'}; "
         f"attn-theory --help {med['help']:.2f} s -->", ""]
    report = "\n".join(L)
    return emit_report(report, args.out)


if __name__ == "__main__":
    sys.exit(main())
