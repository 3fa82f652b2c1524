"""Every size from 0 to 200 elements, for every optimizer: the tails and heads of every loop.

Meant for tools/sanitize.sh, which runs it under AddressSanitizer at every SIMD level: a read or
write past the end of an array fails there. Without sanitizers it still checks the values.
"""

from __future__ import annotations

import fastopt
import numpy as np
import pytest
from conftest import BOOK, OPTIM_CASES, case_id, clone, pair
from fastopt import reference

CASES = [(name, {}, True) for name in BOOK] + [(n, o, False) for n, o in OPTIM_CASES]


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=lambda d: d.__name__)
@pytest.mark.parametrize("name, options, book", CASES, ids=[case_id((n, o)) for n, o, _ in CASES])
def test_every_size_from_0_to_200(name, options, book, dtype):
    rng = np.random.default_rng(5)
    # Each array is exactly its size (its own allocation), so a sanitizer sees any overrun.
    params = {n: rng.standard_normal(n).astype(dtype) for n in range(201)}
    params["fortran"] = np.asfortranarray(rng.standard_normal((13, 7)).astype(dtype))
    if book:
        fast, ref = pair(name)
    else:
        fast, ref = (
            getattr(fastopt.optim, name)(**options),
            getattr(reference.optim, name)(**options),
        )
    params_ref = clone(params)
    for _ in range(2):
        grads = {k: rng.standard_normal(v.shape).astype(dtype) for k, v in params.items()}
        fast.update(params, grads)
        ref.update(params_ref, grads)
    for key in params:
        np.testing.assert_allclose(params[key], params_ref[key], rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=lambda d: d.__name__)
def test_nonfinite_check_reads_every_size_exactly(dtype):
    # nonfinite="skip" reads every grad before any update: each grad is exactly its size, so a
    # sanitizer sees an overrun, and the inf at its last element must be found.
    for size in range(1, 201):
        params = {"x": np.ones(size, dtype)}
        finite = {"x": np.full(size, 2.0, dtype)}
        bad = {"x": np.full(size, 2.0, dtype)}
        bad["x"][-1] = np.inf
        opt = fastopt.SGD(lr=0.5, nonfinite="skip")
        opt.update(params, bad)
        assert opt.skipped_updates == 1 and np.all(params["x"] == 1.0), size
        opt.update(params, finite)
        assert opt.skipped_updates == 1 and np.all(params["x"] == 0.0), size


HALF_MODES = {
    "master": {},
    "nearest": {"master_weights": False},
    "stochastic": {"rounding": "stochastic"},
    "kahan": {"compensation": True},
}


@pytest.mark.parametrize("mode", HALF_MODES)
@pytest.mark.parametrize("half", ["float16", "bfloat16"])
@pytest.mark.parametrize("name", ["Adam", "SGD", "Lion", "AdaBelief"])
def test_every_half_size_from_0_to_200_and_across_blocks(name, half, mode):
    """The blocked sweep's heads and tails (blocks of 512) and the half formats' loops: each array
    its own allocation, so a sanitizer sees an overrun; the values against a float32 twin."""
    if half == "bfloat16":
        dtype = pytest.importorskip("ml_dtypes").bfloat16
    else:
        dtype = np.float16
    rng = np.random.default_rng(6)
    sizes = [*range(201), 511, 512, 513, 1025]
    params = {n: rng.standard_normal(n).astype(np.float32).astype(dtype) for n in sizes}
    twin = {k: v.astype(np.float32) for k, v in params.items()}
    fast = getattr(fastopt.optim, name)(lr=1e-3, **HALF_MODES[mode])
    ref = getattr(fastopt.optim, name)(lr=1e-3)
    for _ in range(2):
        grads = {
            k: rng.standard_normal(v.shape).astype(np.float32).astype(dtype)
            for k, v in params.items()
        }
        fast.update(params, grads)
        ref.update(twin, {k: g.astype(np.float32) for k, g in grads.items()})
    for key in params:  # a half rounding (2**-8 relative for bfloat16) from the float32 twin
        np.testing.assert_allclose(params[key].astype(np.float32), twin[key], rtol=2e-2, atol=1e-2)


def test_nonfinite_check_reads_every_half_size_exactly():
    for size in range(1, 201):
        params = {"x": np.ones(size, np.float16)}
        bad = {"x": np.full(size, 2.0, np.float16)}
        bad["x"][-1] = np.inf
        opt = fastopt.SGD(lr=0.5, nonfinite="skip")
        opt.update(params, bad)
        assert opt.skipped_updates == 1 and np.all(params["x"] == 1.0), size


COMPACT_MODES = {
    "int8": {"state_format": "int8", "compact_min_size": 0},
    "bfloat16": {"state_format": "bfloat16"},
    "bfloat16-stochastic": {"state_format": "bfloat16", "rounding": "stochastic"},
}


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=lambda d: d.__name__)
@pytest.mark.parametrize("mode", COMPACT_MODES)
@pytest.mark.parametrize("name", ["Adam", "SGD", "Lion", "RMSprop"])
def test_every_compact_size_from_0_to_200_and_across_blocks(name, mode, dtype):
    """Compact state's loops: the fused bfloat16 one, and int8 blocks of 256 with their last
    partial block; each array (codes and absmaxes too) its own allocation, so a sanitizer sees an
    overrun; the values against float32 state within a state rounding."""
    rng = np.random.default_rng(7)
    sizes = [*range(201), 255, 256, 257, 511, 513, 4097]
    params = {n: rng.standard_normal(n).astype(dtype) for n in sizes}
    twin = clone(params)
    extra = {"momentum": 0.9} if name == "SGD" else {}
    fast = getattr(fastopt.optim, name)(lr=1e-3, **extra, **COMPACT_MODES[mode])
    ref = getattr(fastopt.optim, name)(lr=1e-3, **extra)
    for _ in range(2):
        grads = {k: rng.standard_normal(v.shape).astype(dtype) for k, v in params.items()}
        fast.update(params, grads)
        ref.update(twin, grads)
    for key in params:  # Lion steps by +-lr: a state rounding can flip one sign
        np.testing.assert_allclose(params[key], twin[key], rtol=1e-2, atol=3e-3)
