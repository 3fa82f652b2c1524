"""Timing: medians of interleaved repetitions, so that machine drift hits every contender alike."""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

# A timed batch lasts at least this long, so that the timer's resolution and one-off hiccups
# (an interrupt, a page fault) are a small part of it.
MIN_BATCH_SECONDS = 2e-3


def _batch_size(fn: Callable[[], None]) -> int:
    """How many calls make one batch of at least MIN_BATCH_SECONDS (after a warm-up call)."""
    fn()
    calls = 1
    while True:
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        elapsed = time.perf_counter() - start
        if elapsed >= MIN_BATCH_SECONDS:
            return calls
        calls = max(calls * 2, int(calls * MIN_BATCH_SECONDS / max(elapsed, 1e-9)) + 1)


def interleaved(contenders: dict[str, Callable[[], None]], repeats: int = 7) -> dict[str, float]:
    """Median seconds per call of each contender, timed A B C A B C ... `repeats` times."""
    batches = {name: _batch_size(fn) for name, fn in contenders.items()}
    samples: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(repeats):
        for name, fn in contenders.items():
            calls = batches[name]
            start = time.perf_counter()
            for _ in range(calls):
                fn()
            samples[name].append((time.perf_counter() - start) / calls)
    return {name: float(np.median(times)) for name, times in samples.items()}
