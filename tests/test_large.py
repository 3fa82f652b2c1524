"""Sizes over 2^31 elements: 64-bit sizes and indices throughout, chunking included."""

from __future__ import annotations

import fastopt
import numpy as np
import pytest

HUGE = [2**31 + 17, 5, 2**32 + 3, 1, 3 * 2**31 - 1]


@pytest.mark.parametrize("threads", [2, 3, 8])
def test_chunk_plan_covers_huge_tasks_exactly(threads):
    """No memory is touched: the plan is the arithmetic update() uses to split the work."""
    chunk, plan = fastopt._core._chunk_plan(HUGE, threads)
    assert chunk % 64 == 0 and chunk > 2**31 // (4 * threads) - 64
    covered = {task: [] for task in range(len(HUGE))}
    starts = np.concatenate([[0], np.cumsum(HUGE, dtype=np.int64)])
    for c, task, start, stop in plan:
        assert 0 <= start < stop <= HUGE[task]
        global_start, global_stop = starts[task] + start, starts[task] + stop
        assert c * chunk <= global_start and global_stop <= (c + 1) * chunk  # inside its chunk
        covered[task].append((start, stop))
    for task, pieces in covered.items():
        assert pieces[0][0] == 0 and pieces[-1][1] == HUGE[task]
        assert all(a[1] == b[0] for a, b in zip(pieces, pieces[1:])), "gap or overlap"


def available_memory() -> int:
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


N = 2**31 + 17
NEEDED = 2 * 4 * N + 2 * 2**30  # a float32 param and grad, and room for the rest


@pytest.mark.skipif(
    available_memory() < NEEDED,
    reason=f"needs {NEEDED / 2**30:.0f} GiB free for two float32 arrays of 2^31 + 17 elements",
)
def test_sgd_end_to_end_on_more_than_2_31_elements():
    param = np.ones(N, dtype=np.float32)
    grad = np.full(N, 0.5, dtype=np.float32)
    fastopt.SGD(lr=1.0).update({"w": param}, {"w": grad})
    del grad
    for index in (0, 2**31 - 1, 2**31, 2**31 + 1, N - 1):  # around the 32-bit edge and the tail
        assert param[index] == 0.5, index
    assert np.count_nonzero(param != 0.5) == 0
