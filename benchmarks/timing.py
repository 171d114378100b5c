"""Shared by the benchmark scripts: median wall times of calls."""

from __future__ import annotations

import statistics
import time


def interleaved_median_seconds(fns: dict, repeats: int, warmup: int = 0) -> dict:
    """The median seconds of each named call, timed in turns (one call of each per round,
    ``warmup`` untimed rounds first), so that a drift of the machine's speed, which on a
    shared virtual machine reaches tens of percent within minutes, affects all alike."""
    times = {name: [] for name in fns}
    for round_ in range(warmup + repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            if round_ >= warmup:
                times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}
