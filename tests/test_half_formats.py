"""The half formats' conversions (src/cpp/kernels/half.hpp) against the NumPy reference
(fastopt._reference_half), and the reference against NumPy's float16 and ml_dtypes' bfloat16.

These run at the active SIMD level; tests/test_simd.py runs a half workload at every level and
compares the bits.
"""

from __future__ import annotations

import numpy as np
import pytest
from fastopt import _core
from fastopt import _reference_half as ref

ml_dtypes = pytest.importorskip("ml_dtypes")
FORMATS = ("bfloat16", "float16")


def float_patterns(count: int, seed: int = 0) -> np.ndarray:
    """Random float32 bit patterns (every class: normal, subnormal, inf, nan) and the edges."""
    rng = np.random.default_rng(seed)
    bits = rng.integers(0, 2**32, count, dtype=np.uint64).astype(np.uint32)
    edges = np.array(
        [0, 0x80000000, 0x7F800000, 0xFF800000, 0x7FC00000, 0xFFC00000, 0x7F800001, 0x7FBFFFFF,
         0x00000001, 0x007FFFFF, 0x00800000, 0x7F7FFFFF, 0x477FEFFF, 0x477FF000, 0x477FF001,
         0x47800000, 0x38800000, 0x387FFFFF, 0x33000000, 0x33000001, 0x32FFFFFF, 0x33800000,
         0x3F808000, 0x3F818000, 0x3F807FFF, 0x7F7F8000, 0x7F7F7FFF],
        dtype=np.uint32,
    )  # fmt: skip
    return np.concatenate([edges, bits]).view(np.float32)


@pytest.mark.parametrize("fmt", FORMATS)
def test_widening_every_pattern_matches_the_reference(fmt):
    bits = np.arange(2**16, dtype=np.uint16)
    assert np.array_equal(
        _core._widen_half(bits, fmt).view(np.uint32), ref.widen(bits, fmt).view(np.uint32)
    )


@pytest.mark.parametrize("fmt", FORMATS)
def test_widening_is_numpys_cast_but_for_signalling_nan(fmt):
    bits = np.arange(2**16, dtype=np.uint16)
    dtype = ml_dtypes.bfloat16 if fmt == "bfloat16" else np.float16
    theirs = bits.view(dtype).astype(np.float32)
    ours = ref.widen(bits, fmt)
    nan = np.isnan(theirs)
    assert np.array_equal(ours[~nan].view(np.uint32), theirs[~nan].view(np.uint32))
    # A NaN stays a NaN of its sign: bfloat16's bits as they are (the high half of a float),
    # float16's made quiet, as vcvtph2ps does.
    assert np.isnan(ours[nan]).all()
    assert np.array_equal(np.signbit(ours[nan]), np.signbit(theirs[nan]))
    quiet = 0x400000
    assert fmt == "bfloat16" or (ours[nan].view(np.uint32) & quiet).all()


@pytest.mark.parametrize("fmt", FORMATS)
def test_rounding_to_nearest_matches_the_reference_and_numpy(fmt):
    x = float_patterns(1_000_000)
    ours = _core._round_half(x, fmt, False)
    assert np.array_equal(ours, ref.round_half(x, fmt))
    dtype = ml_dtypes.bfloat16 if fmt == "bfloat16" else np.float16
    with np.errstate(over="ignore", invalid="ignore"):
        theirs = x.astype(dtype).view(np.uint16)
    nan = np.isnan(x)
    assert np.array_equal(ours[~nan], theirs[~nan])
    # NaN keeps its sign and stays NaN.
    back = ref.widen(ours[nan], fmt)
    assert np.isnan(back).all()
    assert np.array_equal(np.signbit(back), np.signbit(x[nan]))


def test_bfloat16_float64_is_rounded_once_from_float32_by_fastopt():
    """ml_dtypes' float64 -> bfloat16 rounds twice; fastopt computes in float32 and rounds once,
    so the reference (from float32) is what a half param receives."""
    x = np.float32(1.0) + np.float32(2.0**-8) + np.float32(2.0**-20)  # just above a tie
    assert ref.round_half(np.array([x]), "bfloat16")[0] == 0x3F81


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("index0", [0, 5, 2**32 - 3, 2**33 + 1])
def test_stochastic_rounding_matches_the_reference(fmt, index0):
    x = float_patterns(200_000, seed=1)
    if index0 % 2**32 > 2**32 - x.size:  # a call may not cross a multiple of 2**32
        x = x[: 2**32 - index0 % 2**32]
    ours = _core._round_half(x, fmt, True, 0xDEADBEEF, index0)
    assert np.array_equal(ours, ref.round_half(x, fmt, 0xDEADBEEF, index0))


@pytest.mark.parametrize("fmt", FORMATS)
def test_stochastic_rounding_is_unbiased_and_lands_on_a_neighbour(fmt):
    value = np.float32(1.0 + 1e-3)  # between two half values
    x = np.full(200_000, value, np.float32)
    bits = _core._round_half(x, fmt, True, 12345, 0)
    down = ref.round_half(np.array([value]), fmt)[0]
    lo, hi = sorted({int(b) for b in bits})
    assert hi == lo + 1 and down in (lo, hi)  # only the two neighbours
    widened = ref.widen(bits, fmt).astype(np.float64)
    low, high = ref.widen(np.array([lo, hi], np.uint16), fmt).astype(np.float64)
    p = (float(value) - low) / (high - low)
    sigma = np.sqrt(p * (1 - p) / x.size) * (high - low)
    assert abs(widened.mean() - float(value)) < 4 * sigma


@pytest.mark.parametrize("fmt", FORMATS)
def test_stochastic_rounding_keeps_exact_values_and_specials(fmt):
    exact = ref.widen(np.arange(0, 2**16, 7, dtype=np.uint16), fmt)
    exact = exact[np.isfinite(exact)]
    assert np.array_equal(
        _core._round_half(exact, fmt, True, 99, 0), _core._round_half(exact, fmt, False)
    )
    specials = np.array([np.inf, -np.inf, np.nan, -0.0, 0.0], np.float32)
    back = ref.widen(_core._round_half(specials, fmt, True, 99, 0), fmt)
    assert np.array_equal(back[:2], specials[:2]) and np.isnan(back[2])
    assert np.array_equal(np.signbit(back), np.signbit(specials))


def test_random_bits_depend_on_seed_step_and_key():
    keys = {ref.random_key(s, t, k) for s in (0, 1) for t in (1, 2) for k in ("w", "b", (1, 2))}
    assert len(keys) == 12  # 2 seeds x 2 steps x 3 keys, all distinct
