"""Independent pieces of work on several processes (one per core).

A grid whose columns are independent (e.g. the ω columns of a phase diagram followed by
continuation in α) is split into chunks, each solved by the same module-level function in
its own process. On Linux the workers are forked, so they inherit the parent's imported
modules and in-memory kernels (no SymPy, no kernel regeneration); elsewhere they are
spawned. Nothing but the chunk's arguments and its (NumPy) result crosses the process
boundary: no generated function is ever pickled.
"""
from __future__ import annotations

import multiprocessing as mp
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import Any, Callable, Sequence

import numpy as np

__all__ = ["split_columns", "map_chunks"]


def split_columns(n: int, parts: int) -> list[np.ndarray]:
    """Indices ``0..n-1`` dealt round-robin into ``min(parts, n)`` chunks (interleaved, so that
    neighbouring — similarly costly — columns land on different workers)."""
    if n < 0 or parts < 1:
        raise ValueError(f"split_columns: need n >= 0 and parts >= 1, got n={n}, parts={parts}")
    k = max(1, min(parts, n))
    return [np.arange(j, n, k) for j in range(k)]


def map_chunks(fn: Callable[[Any], Any], chunks: Sequence[Any], workers: int = 1,
               done: Callable[[int, int], None] | None = None) -> list[Any]:
    """``[fn(c) for c in chunks]``, on ``workers`` processes when ``workers > 1``.

    ``fn`` must be a module-level function (it is sent by reference). ``done(k, n)`` is called in
    this process after each finished chunk (``k`` finished of ``n``): a progress hook."""
    if int(workers) < 1:
        raise ValueError(f"option 'workers' must be an integer >= 1, got {workers!r}")
    n = len(chunks)
    if int(workers) == 1 or n <= 1:
        out = []
        for i, c in enumerate(chunks):
            out.append(fn(c))
            if done is not None:
                done(i + 1, n)
        return out
    ctx = mp.get_context("fork") if "fork" in mp.get_all_start_methods() else mp.get_context("spawn")
    results: list[Any] = [None] * n
    with ProcessPoolExecutor(max_workers=min(int(workers), n), mp_context=ctx) as ex:
        futs = {ex.submit(fn, c): i for i, c in enumerate(chunks)}
        for k, f in enumerate(as_completed(futs), start=1):
            results[futs[f]] = f.result()
            if done is not None:
                done(k, n)
    return results
