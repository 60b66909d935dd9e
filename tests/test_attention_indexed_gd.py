"""Gradient descent with the authors' protocol (Adam lr 0.1, 1000 full-batch steps, d = 200,
averaged students) against their GD points (``GD_*`` tables of the reference data).

Fast: the hand-written gradient against finite differences, and the recorded d = 200 run
(``tests/data/attention_indexed_gd.json``, written by ``attention_indexed_gd_record.py``; seed in
the file). Slow: the same run again.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from numerics.simulate.attention_indexed import _check_gradient, gd_error
from tests.conftest import load_reference

REF = load_reference("attention_indexed_multitoken")
RECORD = Path(__file__).resolve().parent / "data" / "attention_indexed_gd.json"


def _authors(kind: str, T: int, alpha: float) -> tuple[float, float]:
    rows = np.asarray(REF["tables"][f"GD_{kind}_T{T}_rho0.5"]["rows"], float)
    i = int(np.argmin(np.abs(rows[:, 0] - alpha)))
    assert round(rows[i, 0] * 200**2) == round(alpha * 200**2)   # the same n at d = 200
    return float(rows[i, 1]), float(rows[i, 2])


def test_gradient_against_finite_differences() -> None:
    assert _check_gradient(0) < 1e-6


def test_recorded_gd_within_005_of_authors() -> None:
    rec = json.loads(RECORD.read_text())
    assert rec["d"] == 200 and rec["rho"] == 0.5
    m_avg, _ = _authors("averaged", rec["T"], rec["alpha"])
    m_one, _ = _authors("single", rec["T"], rec["alpha"])
    assert abs(np.mean(rec["averaged"]) - m_avg) < 0.05
    assert abs(np.mean(rec["single"]) - m_one) < 0.05


def test_small_gd_runs_and_learns() -> None:
    r = gd_error(d=30, alpha=0.05, rho=0.5, T=3, students=2, steps=150)
    assert np.all(np.isfinite(r.averaged)) and r.mean() < 1.0


@pytest.mark.slow
def test_gd_d200_against_authors() -> None:
    rec = json.loads(RECORD.read_text())
    r = gd_error(d=200, alpha=rec["alpha"], rho=0.5, T=rec["T"], students=8, datasets=1, seed=1)
    m_avg, _ = _authors("averaged", rec["T"], rec["alpha"])
    assert abs(r.mean() - m_avg) < 0.05
