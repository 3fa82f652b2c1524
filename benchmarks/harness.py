"""Timing: interleaved repetitions, so that machine drift hits every contender alike.

Memory bandwidth on a shared VM drifts by up to 2x over minutes. Each round times every contender
once, back to back; a ratio is the median over rounds of the per-round ratio, so a slow round slows
both sides of each ratio and cancels.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

# A timed batch lasts at least this long, so that the timer's resolution and one-off hiccups
# (an interrupt, a page fault) are a small part of it.
MIN_BATCH_SECONDS = 2e-3


class Timings:
    """Seconds per call of each contender in each round."""

    def __init__(self, samples: dict[str, list[float]]) -> None:
        self.samples = samples

    def __contains__(self, name: str) -> bool:
        return name in self.samples

    def __getitem__(self, name: str) -> float:
        """The median seconds per call."""
        return float(np.median(self.samples[name]))

    def get(self, name: str) -> float | None:
        return self[name] if name in self else None

    def ratio(self, slower: str, faster: str) -> float | None:
        """Median over rounds of time(slower) / time(faster); None if either is missing."""
        if slower not in self or faster not in self:
            return None
        pairs = zip(self.samples[slower], self.samples[faster])
        return float(np.median([a / b for a, b in pairs]))

    def items(self):
        return ((name, self[name]) for name in self.samples)


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


def interleaved(contenders: dict[str, Callable[[], None]], repeats: int = 7) -> Timings:
    """Time every contender once per round, A B C A B C ..., for `repeats` rounds."""
    batches = {name: _batch_size(fn) for name, fn in contenders.items()}
    samples: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(repeats):
        for name, fn in contenders.items():
            calls = batches[name]
            start = time.perf_counter()
            for _ in range(calls):
                fn()
            samples[name].append((time.perf_counter() - start) / calls)
    return Timings(samples)
