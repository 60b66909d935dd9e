"""Record the GAMP-RIE finite-size runs of the attention-indexed model (slow, run once):

    OPENBLAS_NUM_THREADS=1 nice -n 10 python tests/data/attention_indexed_amp_record.py [case ...]

writes ``attention_indexed_amp_runs.csv`` (one row per case, d and seed: final error, oracle-best
error, iterations, AMP's own variance) and ``attention_indexed_amp_traces.csv`` (hardmax runs:
the error and V at every iteration), each with a provenance header. Cases are named
``<activation>-<derivative>-T<T>-a<alpha>``; with arguments only those cases are re-run (rows of
the other cases are kept). Instances: ``sample_problem(d, alpha, 0.5, T, activation,
np.random.default_rng(seed))``; AMP: :func:`numerics.amp.attention_indexed.gamp_rie` with its
default damping (none for the hardmax, 0.5 for the softmax), ``n_iter`` below, tol 1e-6.
"""
from __future__ import annotations

import csv
import datetime
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from numerics.amp.attention_indexed import default_damping, gamp_rie, sample_problem

HERE = Path(__file__).resolve().parent
RUNS = HERE / "attention_indexed_amp_runs.csv"
TRACES = HERE / "attention_indexed_amp_traces.csv"
RHO = 0.5
#: name -> (activation, derivative, T, alpha, n_iter, {d: seeds})
CASES = {
    "hardmax-correct-T2-a1.0": ("hardmax", "correct", 2, 1.0, 30,
                                {50: range(8), 100: range(6), 150: range(4), 200: range(4)}),
    "hardmax-correct-T2-a0.5": ("hardmax", "correct", 2, 0.5, 30,
                                {50: range(8), 100: range(6), 150: range(4), 200: range(4)}),
    "hardmax-authors-T2-a1.0": ("hardmax", "authors", 2, 1.0, 30,
                                {50: range(4), 100: range(4), 150: range(2)}),
    "softmax-correct-T2-a0.1": ("softmax", "correct", 2, 0.1, 40,
                                {40: range(4), 70: range(4), 100: range(4), 150: range(2)}),
    "softmax-correct-T3-a0.04": ("softmax", "correct", 3, 0.04, 40,
                                 {40: range(4), 70: range(4), 100: range(4)}),
}
RUN_COLS = ["case", "activation", "derivative", "T", "rho", "alpha", "d", "seed", "damping", "n_iter",
            "iterations", "mse", "best", "v", "seconds"]
TRACE_COLS = ["case", "d", "seed", "t", "mse", "v"]


def _header() -> list[str]:
    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                             cwd=HERE).stdout.strip()
    except OSError:
        rev = "?"
    cases = "; ".join(f"{k}: d/seeds {', '.join(f'{d}:{list(s)}' for d, s in v[5].items())}, n_iter {v[4]}"
                      for k, v in CASES.items())
    return [f"# GAMP-RIE, attention-indexed model, rho = {RHO}; recorded {datetime.date.today()} at git {rev}",
            "# command: OPENBLAS_NUM_THREADS=1 nice -n 10 python tests/data/attention_indexed_amp_record.py",
            "# instance: sample_problem(d, alpha, rho, T, activation, np.random.default_rng(seed)); "
            "tol 1e-6 on |dS|^2/d",
            f"# cases: {cases}",
            "# mse = |S_hat - S*|_F^2/d at the last iterate; best = min over iterates (oracle, uses S*); "
            "v = AMP's own error estimate"]


def _read(path: Path) -> list[dict]:
    if not path.exists():
        return []
    with path.open() as f:
        return list(csv.DictReader(line for line in f if not line.startswith("#")))


def _write(path: Path, cols: list[str], rows: list[dict]) -> None:
    with path.open("w", newline="") as f:
        f.write("\n".join(_header()) + "\n")
        w = csv.DictWriter(f, cols, lineterminator="\n")
        w.writeheader()
        w.writerows(rows)


def main(names: list[str]) -> None:
    names = names or list(CASES)
    runs = [r for r in _read(RUNS) if r["case"] not in names]
    traces = [r for r in _read(TRACES) if r["case"] not in names]
    for name in names:
        act, der, T, a, n_iter, plan = CASES[name]
        for d, seeds in plan.items():
            for s in seeds:
                t0 = time.time()
                prob = sample_problem(d, a, RHO, T, act, np.random.default_rng(s))
                tr = gamp_rie(prob, n_iter, der)
                del prob
                row = dict(case=name, activation=act, derivative=der, T=T, rho=RHO, alpha=a, d=d, seed=s,
                           damping=default_damping(act), n_iter=n_iter, iterations=len(tr.mse) - 1,
                           mse=f"{tr.mse[-1]:.6g}", best=f"{np.nanmin(tr.mse[1:]):.6g}",
                           v=f"{tr.v[-1]:.6g}", seconds=f"{time.time() - t0:.1f}")
                runs.append(row)
                if act == "hardmax":
                    traces += [dict(case=name, d=d, seed=s, t=t, mse=f"{m:.6g}", v=f"{v:.6g}")
                               for t, (m, v) in enumerate(zip(tr.mse, tr.v))]
                print(row, flush=True)
                _write(RUNS, RUN_COLS, runs)
                _write(TRACES, TRACE_COLS, traces)


if __name__ == "__main__":
    main(sys.argv[1:])
