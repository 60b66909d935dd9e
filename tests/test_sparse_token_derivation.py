"""The reproduction script ``derivations/sparse_token.py`` (``attn-theory reproduce sparse-token``).

One end-to-end run on a tiny configuration (small d, few trials, few Monte-Carlo samples),
checking the files, the CSV columns and coarse sim-vs-theory agreement. The tolerance bands
are wide because d is tiny; the measured agreement at realistic d is in
``tests/data/sparse_token_sim_trend.md``.
"""
from __future__ import annotations

import csv
from dataclasses import replace
from pathlib import Path

import pytest

from derivations import sparse_token as script

TINY = replace(script.QUICK, ls_L=(10.0, 100.0, 1000.0), ls_sim_L=(10, 100), ls_sim_tokens=200_000,
               al_alpha0=(0.5, 2.0), al_sim_alpha0=(2.0,), al_d=200, al_trials=3,
               te_alpha1=(0.5, 2.0, 4.0), te_sim_alpha1=(4.0,), te_d=200, te_d_vec=60,
               te_trials=2, te_n_mc=800, cap_L=(2, 4), cap_sim_L=(4,), cap_d=40, cap_trials=4,
               cap_n_mc=2000)


def _rows(p: Path) -> list[dict]:
    with p.open() as fh:
        return list(csv.DictReader(fh))


@pytest.mark.slow
def test_reproduce_tiny(tmp_path):
    files = script.main(tmp_path, config=TINY, echo=lambda *a, **k: None)
    names = {f.name for f in files}
    for n in ("long_sequence.png", "long_sequence.csv", "alignment.png", "alignment.csv",
              "test_error.png", "test_error.csv", "capacity_vs_L.png", "capacity_vs_L.csv",
              "capacity_scans.csv", "capacity_transition.png", "capacity_transition.csv",
              "summary.md"):
        assert n in names and (tmp_path / n).stat().st_size > 0
    for r in _rows(tmp_path / "long_sequence.csv"):
        assert abs(float(r["mc_pooled"]) - float(r["theory_e_pool"])) < 0.05
        assert float(r["mc_attention"]) <= float(r["theory_e_attn_max"]) + 0.03
    for r in _rows(tmp_path / "alignment.csv"):
        assert abs(float(r["s_q"]) - float(r["theory_s_q"])) < 0.08
    for r in _rows(tmp_path / "test_error.csv"):
        assert abs(float(r["test_error"]) - float(r["theory_test_error"])) < 0.05
    cap = _rows(tmp_path / "capacity_vs_L.csv")
    for r in cap:  # vectorised = L x pooled; ordering vec > attention > pooled (paper)
        assert float(r["alpha_vec"]) == pytest.approx(int(r["L"]) * float(r["alpha_pool"]), rel=1e-5)
        assert float(r["alpha_vec"]) > float(r["alpha_attn"]) > float(r["alpha_pool"])
    assert "## Capacity" in (tmp_path / "summary.md").read_text()
    ct = _rows(tmp_path / "capacity_transition.csv")
    assert {r["case"] for r in ct} == {"cover", "pooled", "attention", "vectorised"}
    for r in ct:  # tiny d: the critical alpha is within 30% of alpha*, below it P(sep) = 1
        assert abs(float(r["mean"]) - 1) < 0.3 and float(r["p_0.8"]) >= 0.8, r
