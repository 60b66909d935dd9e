"""Record gradient-descent points with the authors' protocol at d = 200, rho = 0.5 (slow; CPU).

    OPENBLAS_NUM_THREADS=1 nice -n 10 python tests/data/attention_indexed_gd_run.py BATCH [BATCH ...]

appends one row per point to ``attention_indexed_gd_points.csv`` (header comments = provenance).
Each point: one data set (``np.random.default_rng(seed)``, seed = 1000*T + row index of the
authors' table + 100*rep, rep = 0 for the first data set of a point), 32 students trained together (float32, Adam lr 0.1, 1000 full-batch steps; see
``numerics/simulate/attention_indexed.py``). The alphas are the authors' grid values (rows of
``GD_averaged_T{T}_rho0.5`` in ``tests/data/reference/attention_indexed_multitoken.json``).
"""
from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")   # 2 shared cores: one BLAS thread is fastest

import datetime  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))
from numerics.simulate.attention_indexed import gd_error  # noqa: E402

CSV = HERE / "attention_indexed_gd_points.csv"
REF = json.loads((HERE / "reference" / "attention_indexed_multitoken.json").read_text())
STUDENTS = 32
COLUMNS = ["T", "alpha", "n", "alpha_over_alpha_PR", "seed", "datasets", "students",
           "averaged", "averaged_sem", "single_mean", "single_sem", "single_std",
           "authors_averaged", "authors_averaged_std", "authors_single", "authors_single_std",
           "seconds", "date_utc"]

# (T, row index in the reference GD table, rep); cheapest first within each batch
BATCHES: dict[str, list[tuple[int, int, int]]] = {
    "A": [(2, 2, 0), (4, 4, 0), (2, 6, 0), (5, 4, 0), (6, 4, 0), (3, 6, 0), (4, 6, 0)],
    "B": [(5, 6, 0), (6, 6, 0), (3, 8, 0), (4, 8, 0), (2, 10, 0)],
    "C": [(6, 7, 0), (5, 8, 0), (3, 10, 0), (2, 12, 0)],
    "C1": [(6, 7, 0), (5, 8, 0)],
    "R": [(3, 6, 1)],                    # a second data set where the first fell 3 std off
}


def authors(kind: str, T: int, row: int) -> tuple[float, float, float]:
    a, m, s = REF["tables"][f"GD_{kind}_T{T}_rho0.5"]["rows"][row]
    return float(a), float(m), float(s)


def header() -> str:
    return "\n".join([
        "# Gradient descent, attention-indexed model, softmax, d = 200, rho = 0.5, authors' protocol",
        "# (FabrizioBoncoraglio/BO_ExtensiveRankAttention @ 5f1b99c GD_softmax_averaged.py, lr = 0.1):",
        "# Adam lr 0.1 betas (0.9, 0.999) eps 1e-8, 1000 full-batch steps, loss sum (yhat - y)^2 / d,",
        "# W ~ N(0,1), R = int(rho d) = 100, n = int(alpha d^2), float32 (PyTorch default).",
        "# Produced by: OPENBLAS_NUM_THREADS=1 nice -n 10 python tests/data/attention_indexed_gd_run.py A B C",
        f"# numpy {np.__version__}, Python {platform.python_version()}, {platform.machine()}; "
        "code numerics/simulate/attention_indexed.py (analytic gradient, students batched).",
        "# One data set per point: np.random.default_rng(seed) draws teacher, tokens, then the 32 students' init.",
        "# averaged = ||mean_k S_k - S*||_F^2/d over the 32 students (the authors' GD_averaged quantity);",
        "# averaged_sem = leave-one-student-out jackknife s.e. (student noise only, not data-set noise);",
        "# single_mean/std/sem = ||S_k - S*||_F^2/d over the 32 students (the authors' GD_single quantity).",
        "# authors_* = their mean and std over 16 data sets (reference JSON, same alpha, same n).",
        "# seconds = wall time of the point on 2 shared cores (1 BLAS thread, nice 10).",
        ",".join(COLUMNS),
    ]) + "\n"


def run_point(T: int, row: int, rep: int = 0) -> dict:
    alpha, m_avg, s_avg = authors("averaged", T, row)
    a2, m_one, s_one = authors("single", T, row)
    assert a2 == alpha
    seed = 1000 * T + row + 100 * rep
    r = gd_error(d=200, alpha=alpha, rho=0.5, T=T, students=STUDENTS, datasets=1, seed=seed)
    single = r.single
    return dict(T=T, alpha=alpha, n=r.n, alpha_over_alpha_PR=alpha * (T * T + T - 2) / 0.75, seed=seed,
                datasets=1, students=STUDENTS, averaged=r.mean("averaged"),
                averaged_sem=r.jackknife_sem(STUDENTS), single_mean=float(single.mean()),
                single_sem=float(single.std(ddof=1) / np.sqrt(single.size)),
                single_std=float(single.std(ddof=1)), authors_averaged=m_avg, authors_averaged_std=s_avg,
                authors_single=m_one, authors_single_std=s_one, seconds=round(r.seconds, 1),
                date_utc=datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%MZ"))


def fmt(v: object) -> str:
    return f"{v:.6g}" if isinstance(v, float) else str(v)


if __name__ == "__main__":
    if not CSV.exists():
        CSV.write_text(header())
    done = {int(line.split(",")[4]) for line in CSV.read_text().splitlines() if line and line[0].isdigit()}
    for name in sys.argv[1:]:
        for T, row, rep in BATCHES[name]:
            if 1000 * T + row + 100 * rep in done:          # seed already recorded
                continue
            rec = run_point(T, row, rep)
            done.add(rec["seed"])
            with CSV.open("a") as f:
                f.write(",".join(fmt(rec[c]) for c in COLUMNS) + "\n")
            print({k: rec[k] for k in ("T", "alpha", "averaged", "authors_averaged", "single_mean",
                                       "authors_single", "seconds")}, flush=True)
