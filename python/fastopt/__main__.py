"""``python -m fastopt``: the SIMD level in use, and each optimizer timed against the book's NumPy.

Times one update() of each optimizer on two workloads, fastopt and fastopt.reference interleaved
(A B A B ...) in this process so that machine drift cancels, and prints the medians and their
ratio. Takes a few seconds.
"""

from __future__ import annotations

import argparse
import time
from functools import partial
from typing import Callable

import numpy as np

import fastopt
from fastopt import reference

OPTIMIZERS = ("SGD", "Momentum", "Nesterov", "AdaGrad", "RMSprop", "Adam")

# The book's TwoLayerNet on MNIST (784-50-10), in the book's float64; and one large float32 buffer.
WORKLOADS: dict[str, tuple[list[tuple[int, ...]], type]] = {
    "TwoLayerNet float64": ([(784, 50), (50,), (50, 10), (10,)], np.float64),
    "1M elements float32": ([(1 << 20,)], np.float32),
}


def _arrays(shapes: list[tuple[int, ...]], dtype: type, rng: np.random.Generator) -> dict:
    return {f"W{i}": rng.standard_normal(shape).astype(dtype) for i, shape in enumerate(shapes)}


def _median_seconds(
    step: Callable[[], None], other: Callable[[], None], repeats: int
) -> tuple[float, float]:
    """Medians of `repeats` timings of each of two callables, interleaved, after a warm-up."""
    step()
    other()
    times_a: list[float] = []
    times_b: list[float] = []
    for _ in range(repeats):
        for fn, times in ((step, times_a), (other, times_b)):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
    return float(np.median(times_a)), float(np.median(times_b))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fastopt", description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15, help="timed calls per optimizer")
    args = parser.parse_args(argv)

    print(
        f"fastopt {fastopt.__version__}: SIMD level {fastopt.simd_level()} "
        f"(this CPU supports: {', '.join(fastopt.available_simd_levels())})"
    )
    rng = np.random.default_rng(0)
    for workload, (shapes, dtype) in WORKLOADS.items():
        n = sum(int(np.prod(shape)) for shape in shapes)
        print(
            f"\n{workload}: {len(shapes)} arrays, {n:,} elements; median of {args.repeats} "
            "update() calls"
        )
        print(f"  {'optimizer':<10} {'fastopt':>11} {'reference':>11} {'speed-up':>9}")
        for name in OPTIMIZERS:
            fast, slow = getattr(fastopt, name)(), getattr(reference, name)()
            params_fast, params_slow = _arrays(shapes, dtype, rng), _arrays(shapes, dtype, rng)
            grads = _arrays(shapes, dtype, rng)
            t_fast, t_slow = _median_seconds(
                partial(fast.update, params_fast, grads),
                partial(slow.update, params_slow, grads),
                args.repeats,
            )
            print(
                f"  {name:<10} {t_fast * 1e6:>8.1f} us {t_slow * 1e6:>8.1f} us "
                f"{t_slow / t_fast:>8.1f}x"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
