"""Record one gradient-descent point with the authors' protocol (slow; run once):
``python tests/data/attention_indexed_gd_record.py`` writes ``attention_indexed_gd.json``."""
from __future__ import annotations

import json
import time
from pathlib import Path

from numerics.simulate.attention_indexed import gd_error

POINT = dict(d=200, alpha=0.010172489316, rho=0.5, T=6, students=8, datasets=1, seed=0)

if __name__ == "__main__":
    t0 = time.time()
    r = gd_error(**POINT)
    rec = dict(POINT, averaged=r.averaged.tolist(), single=r.single.tolist(), seconds=time.time() - t0,
               protocol="Adam lr 0.1, 1000 full-batch steps, N(0,1) init, loss sum (yhat - y)^2 / d")
    Path(__file__).with_name("attention_indexed_gd.json").write_text(json.dumps(rec, indent=1))
    print(rec)
