"""No memory growth: many update() calls, and optimizers made and dropped with their state."""

from __future__ import annotations

import gc
import os
import sys

import fastopt
import numpy as np
import pytest

pytestmark = [
    pytest.mark.skipif(sys.platform != "linux", reason="reads /proc/self/statm"),
    pytest.mark.skipif(
        os.environ.get("FASTOPT_SANITIZED") == "1",
        reason="under AddressSanitizer freed memory is quarantined, so RSS grows by design",
    ),
]


def rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def test_100k_updates_and_optimizer_lifecycles_do_not_grow_memory(rng):
    params = {i: rng.standard_normal(8) for i in range(22)}
    grads = {i: rng.standard_normal(8) for i in range(22)}
    scalar_params = {"x": 1.0, "y": np.float32(2.0)}  # the scalar path makes new objects per call
    opt, book, clipped = fastopt.Adam(), fastopt.SGD(), fastopt.optim.AdamW(max_grad_norm=1.0)

    def churn(calls: int) -> None:
        for _ in range(calls):
            opt.update(params, grads)
        for _ in range(calls // 20):
            book.update(scalar_params, {"x": 0.1, "y": 0.1})
            clipped.update(params, grads)
        for _ in range(calls // 50):  # optimizers with state, made and dropped
            fresh = fastopt.optim.NAdam(per_key={0: {"lr": 0.1}})
            fresh.update(params, grads)
            del fresh

    churn(10_000)  # warm-up: caches, the allocator's pools, the per-thread scratch vectors
    gc.collect()
    before = rss_bytes()
    churn(100_000)
    gc.collect()
    grown = rss_bytes() - before
    # 100k calls touching ~90 objects each: a leak of one 16-byte object per call would be 1.6 MB.
    assert grown < 1_000_000, f"RSS grew by {grown / 1e6:.2f} MB"
