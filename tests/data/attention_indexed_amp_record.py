"""Record the GAMP-RIE finite-size trend of the attention-indexed model (run once, slow):
``python tests/data/attention_indexed_amp_record.py`` writes ``attention_indexed_amp.json``
next to this file; ``attention_indexed_amp.md`` is the human-readable table of the same run."""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from numerics.amp.attention_indexed import run

CASES = [  # (activation, derivative, T, rho, alpha)
    ("softmax", "correct", 2, 0.5, 0.1),
    ("softmax", "correct", 3, 0.5, 0.04),
    ("hardmax", "correct", 2, 0.5, 0.5),
    ("hardmax", "correct", 2, 0.5, 1.0),
    ("hardmax", "authors", 2, 0.5, 1.0),
]
DS = (40, 70, 100)
SEEDS = (0, 1, 2, 3)


def main(cases=CASES, keep: bool = False) -> None:
    path = Path(__file__).with_name("attention_indexed_amp.json")
    out = json.loads(path.read_text()) if keep and path.exists() else []
    for act, der, T, rho, a in cases:
        for d in DS:
            t0 = time.time()
            r = run(d=d, alpha=a, rho=rho, T=T, activation=act, derivative=der, seeds=SEEDS)
            out.append(dict(activation=act, derivative=der, T=T, rho=rho, alpha=a, d=d, seeds=list(SEEDS),
                            mse=r["mse"].tolist(), mean=r["mean"], sem=r["sem"],
                            best=r["best"].tolist(), best_mean=r["best_mean"],
                            iterations=[len(t.mse) - 1 for t in r["traces"]], seconds=time.time() - t0))
            print(out[-1], flush=True)
            path.write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    import sys

    if "--authors-only" in sys.argv:   # re-run the authors'-g rows, keeping the others
        main([c for c in CASES if c[1] == "authors"], keep=True)
    else:
        main()
