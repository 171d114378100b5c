"""Shared by the benchmark scripts: the median wall time of a call."""

from __future__ import annotations

import statistics
import time


def median_seconds(fn, repeats: int, warmup: int = 0) -> float:
    """Call ``fn`` ``warmup`` times untimed, then ``repeats`` times; the median seconds."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)
