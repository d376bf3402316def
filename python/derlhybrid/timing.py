"""Wall-clock timing shared by the demo and the benchmarks."""

from __future__ import annotations

import time


def best_of(fn, repeats: int) -> float:
    """Best wall-clock time of ``repeats`` calls of ``fn()`` in seconds (the least disturbed
    run on a shared machine)."""
    best = float("inf")
    for _ in range(max(1, repeats)):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best
