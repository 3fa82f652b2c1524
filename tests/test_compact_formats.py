"""The int8 format of compact state: the kernels' block quantization (fastopt._core._quantize,
_dequantize, at the active SIMD level) equals the NumPy reference (fastopt._compact) bit for bit,
every SIMD level gives the same bits, and the map is Dettmers et al.'s dynamic map, quantized to
the nearest value (src/cpp/kernels/quant_map.hpp defines the format)."""

from __future__ import annotations

import os
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import fastopt
import numpy as np
import pytest
from fastopt import _compact, _core

SIGNS = (True, False)
SIZES = (1, 7, 8, 255, 256, 257, 4095, 4096, 4097)
F32 = np.float32


def bits(x: np.ndarray) -> np.ndarray:
    return np.asarray(x, F32).view(np.uint32)


def map_values(signed: bool) -> np.ndarray:
    return _compact.dynamic_map(signed)


def special_values(signed: bool) -> np.ndarray:
    """Map values, thresholds, the midpoints of neighbouring values and the floats beside them,
    with zeros, subnormals, inf and NaN: each |y| <= 1 and 1.0 itself, so that a block holding
    them has absmax 1 (NaN aside) and y = x exactly."""
    values = np.unique(map_values(signed))
    wide = values.astype(np.float64)
    mids = ((wide[:-1] + wide[1:]) / 2).astype(F32)
    edges = np.concatenate([_compact.thresholds(signed), mids, values])
    near = np.concatenate([edges, np.nextafter(edges, F32(2)), np.nextafter(edges, F32(-2))])
    tiny = np.array([0.0, -0.0, 1e-45, -1e-45, 1e-40, -3e-39, 1.1754942e-38, 1e-30], F32)
    out = np.concatenate([near, -near, tiny, [1.0]]).astype(F32)
    return out[np.abs(out) <= 1]


def decades(rng: np.random.Generator, n: int) -> np.ndarray:
    """Values over 30 decades, both signs."""
    sign = np.where(rng.random(n) < 0.5, -1.0, 1.0)
    return (sign * 10.0 ** rng.uniform(-25, 5, n)).astype(F32)


def patterns(rng: np.random.Generator) -> list[np.ndarray]:
    """Blocks of every kind (each array is quantized in blocks of 256 from its start)."""
    out = []
    for signed in SIGNS:
        special = special_values(signed)
        for scale in (1.0, 2.0**-30, 3.0, 1e-20, 7e15):
            out.append((special * F32(scale)).astype(F32))
    wide = rng.permutation(np.concatenate([special_values(True), special_values(False)]))
    out.append(wide)
    out.append(np.concatenate([wide, [np.nan, np.inf, -np.inf]]).astype(F32))
    for bad in (np.nan, -np.nan, np.inf, -np.inf):
        block = decades(rng, 300)
        block[17] = bad
        out.append(block)
    out.append(np.zeros(600, F32))
    out.append(np.array([-0.0] * 9 + [0.0] * 3, F32))
    # Subnormal absmax: 1 / absmax overflows to inf (y = +-inf, and 0 * inf = NaN), or not.
    out.append(np.array([1e-40, -1e-40, 3e-41, 0.0, -0.0, 1e-45, -2e-45], F32))
    out.append(np.array([2.0**-127, -(2.0**-128), 0.0, 2.0**-140], F32))
    out.append(rng.integers(0, 2**32, 5000, dtype=np.uint64).astype(np.uint32).view(F32))
    for size in SIZES:
        out.append(decades(rng, size))
        out.append((rng.standard_normal(size) * 1e-3).astype(F32))
    return out


def assert_same_quantization(x: np.ndarray, signed: bool) -> None:
    codes, absmax = _core._quantize(x, signed)
    ref_codes, ref_absmax = _compact.quantize(x, signed)
    assert codes.dtype == np.uint8 and np.array_equal(codes, ref_codes)
    nan = np.isnan(ref_absmax)
    assert np.array_equal(np.isnan(absmax), nan)  # a NaN's payload is not part of the format
    assert np.array_equal(bits(absmax[~nan]), bits(ref_absmax[~nan]))
    found = _core._dequantize(codes, absmax, signed)
    assert np.array_equal(bits(found), bits(_compact.dequantize(codes, absmax, signed)))


@pytest.mark.parametrize("signed", SIGNS)
def test_kernel_equals_the_reference(signed):
    rng = np.random.default_rng(1)
    for x in patterns(rng):
        assert_same_quantization(x, signed)
    x = np.concatenate(patterns(rng))
    for start in range(0, 9):  # the same values at every offset in the vectors and blocks
        assert_same_quantization(x[start:], signed)


@pytest.mark.parametrize("signed", SIGNS)
@pytest.mark.parametrize("size", SIZES)
def test_kernel_equals_the_reference_at_each_size(signed, size):
    rng = np.random.default_rng(size)
    special = rng.choice(np.concatenate([special_values(signed), [np.nan, np.inf]]), size)
    for x in (decades(rng, size), special.astype(F32), np.zeros(size, F32)):
        assert_same_quantization(x, signed)


@pytest.mark.parametrize("signed", SIGNS)
def test_every_code_decodes_as_the_map_and_encodes_back(signed):
    values = map_values(signed)
    for absmax in (1.0, 0.25, 3.0, 1e-30, np.inf, np.nan, 1e-40):
        scale = np.full(1, absmax, F32)
        found = _core._dequantize(np.arange(256, dtype=np.uint8), scale, signed)
        with np.errstate(invalid="ignore", over="ignore"):
            assert np.array_equal(bits(found), bits(values * scale[0]))
    # A block holding every value (1.0 among them, so absmax 1): each value's own code.
    codes, absmax = _core._quantize(values, signed)
    assert absmax[0] == 1 and np.array_equal(codes, np.arange(256))


def test_special_codes():
    for signed, one in ((True, 0x80), (False, 255)):
        x = np.array([1.0, 0.0, -0.0, 1e-45, -1e-45, 0.9999999], F32)
        codes, _ = _core._quantize(x, signed)
        assert list(codes) == [one, 0, 0, 0, 0, one]
        # A NaN: its block's absmax is NaN, inv 0, every y NaN or 0, so every code is 0.
        codes, absmax = _core._quantize(np.array([1.0, np.nan, -0.5], F32), signed)
        assert list(codes) == [0, 0, 0] and np.isnan(absmax[0])
    codes, _ = _core._quantize(np.array([-1.0, 0.5], F32), True)
    assert codes[0] == 0xFF  # no -1.0: the largest negative magnitude
    codes, _ = _core._quantize(np.array([-1.0, 0.5], F32), False)
    assert codes[0] == 255  # unsigned: |y|
    # NaN y is code 0; a zero in a block whose absmax is subnormal (0 * inf) reads back 0.
    x = np.array([1e-40, 0.0, -1e-40], F32)
    codes, absmax = _core._quantize(x, True)
    assert list(codes) == [0x80, 0, 0xFF]
    assert np.array_equal(_core._dequantize(codes, absmax, True)[1:2], [0.0])


# The same quantizations at each SIMD level, each in its own process (the level is chosen once).
WORKLOAD = r"""
import sys
import numpy as np
sys.path.insert(0, TESTS)
import fastopt
from fastopt import _core
from test_compact_formats import patterns
out = {"level": np.array(fastopt.simd_level())}
x = np.concatenate(patterns(np.random.default_rng(5)))
for signed in (True, False):
    for start in range(9):
        codes, absmax = _core._quantize(x[start:], signed)
        tag = f"{signed}-{start}"
        out[f"codes-{tag}"], out[f"absmax-{tag}"] = codes, absmax.view(np.uint32)
        out[f"values-{tag}"] = _core._dequantize(codes, absmax, signed).view(np.uint32)
    every = np.arange(256, dtype=np.uint8)
    for scale in (1.0, 3.0, np.nan, np.inf, 1e-40):
        found = _core._dequantize(every, np.array([scale], np.float32), signed)
        out[f"decode-{signed}-{scale}"] = found.view(np.uint32)
np.savez(sys.argv[1], **out)
""".replace("TESTS", repr(str(Path(__file__).resolve().parent)))


def level_result(level: str, folder: Path) -> dict:
    out = folder / f"{level}.npz"
    env = dict(os.environ, FASTOPT_SIMD=level)
    done = subprocess.run(
        [sys.executable, "-c", WORKLOAD, str(out)], env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    result = dict(np.load(out))
    assert str(result.pop("level")) == level
    return result


def test_every_simd_level_gives_the_same_bits(tmp_path: Path):
    levels = [v for v in _core.compiled_simd_levels() if v in fastopt.available_simd_levels()]
    if len(levels) < 2:
        pytest.skip("one SIMD level runs here")
    baseline = level_result(levels[0], tmp_path)
    for level in levels[1:]:
        result = level_result(level, tmp_path)
        assert result.keys() == baseline.keys()
        for key, value in baseline.items():
            assert np.array_equal(result[key], value), (level, key)


@pytest.mark.parametrize("signed", SIGNS)
def test_the_kernels_map_is_the_references(signed):
    found = _core._quant_map(signed)
    expected = (
        _compact.dynamic_map(signed),
        _compact.thresholds(signed),
        *_compact.levels(signed),
    )
    assert len(found) == len(expected)
    for a, b in zip(found, expected):
        assert np.array_equal(bits(a), bits(b))


def dynamic_means(signed: bool) -> list[float]:
    """The positive map values below 1, from the formula in double."""
    out = []
    for i in range(7):
        n = 2**i if signed else 2 ** (i + 1)
        out += [10.0 ** (i - 6) * (0.1 + 0.9 * (2 * j + 1) / (2 * n)) for j in range(n)]
    return out


@pytest.mark.parametrize("signed", SIGNS)
def test_the_map_is_the_dynamic_map(signed):
    values = map_values(signed)
    assert len(np.unique(values)) == 256  # 0, 1.0 and the means (and their negatives)
    positive = np.sort(values[(values > 0) & (values < 1)]).astype(np.float64)
    expected = np.array(dynamic_means(signed))
    assert np.allclose(positive, expected, rtol=1e-6, atol=0)
    if signed:
        negative = np.sort(-values[values < 0]).astype(np.float64)
        assert np.array_equal(negative, positive)
    assert set(values[(values == 0) | (values >= 1)]) == {0.0, 1.0}
    assert np.sum(values == 0) == 1 and np.sum(values == 1) == 1
    # The decades' starts are 10^(i-7) correctly rounded to float32.
    base = _compact.levels(signed)[0]
    for i, start in enumerate(base[0:7] if signed else base[1:8]):
        exact = Fraction(1, 10 ** (7 - i))
        below, above = np.nextafter(start, F32(0)), np.nextafter(start, F32(1))
        assert abs(Fraction(float(start)) - exact) <= abs(Fraction(float(below)) - exact)
        assert abs(Fraction(float(start)) - exact) <= abs(Fraction(float(above)) - exact)


@pytest.mark.parametrize("signed", SIGNS)
def test_the_map_is_bitsandbytes_dynamic_map(signed):
    torch = pytest.importorskip("torch")
    functional = pytest.importorskip("bitsandbytes.functional")
    theirs = functional.create_dynamic_map(signed, 7, 8).to(torch.float32).numpy()
    ours = np.sort(map_values(signed))
    assert np.allclose(np.sort(theirs), ours, rtol=0, atol=1e-5)


def sorted_map(signed: bool) -> np.ndarray:
    return np.unique(map_values(signed)).astype(np.float64)


def quantize_unit(a: np.ndarray, signed: bool) -> np.ndarray:
    """The decoded values of a (|a| <= 1) in blocks of 255 values and a 1.0 (absmax 1: y = a)."""
    blocks = np.ones((-(-a.size // 255), 256), F32)
    blocks[:, 1:].flat[: a.size] = a
    codes, absmax = _core._quantize(blocks.ravel(), signed)
    assert np.all(absmax == 1)
    decoded = _core._dequantize(codes, absmax, signed).reshape(blocks.shape)
    return decoded[:, 1:].ravel()[: a.size]


@pytest.mark.parametrize("signed", SIGNS)
def test_quantization_is_to_the_nearest_value(signed):
    rng = np.random.default_rng(2)
    a = rng.random(200_000).astype(F32)
    a = np.concatenate([a, (10.0 ** rng.uniform(-8, 0, 200_000)).astype(F32)])
    if signed:
        a = np.concatenate([a, -a])
    values = sorted_map(signed)
    decoded = quantize_unit(a, signed).astype(np.float64)
    wide = a.astype(np.float64)
    # The nearest value (a tie either way), and a within an ulp of a midpoint.
    at = np.clip(np.searchsorted(values, wide), 1, values.size - 1)
    low, high = values[at - 1], values[at]
    distance = np.minimum(wide - low, high - wide)
    nearest = np.abs(decoded - wide) <= distance
    mids = (low + high) / 2
    ulp = np.spacing(np.abs(a)).astype(np.float64)
    near_mid = np.abs(wide - mids) <= ulp
    if signed:  # no -1.0: below the most negative value, that value is the nearest
        nearest |= (wide < values[0]) & (decoded == values[0])
    assert np.all(nearest | near_mid), a[~(nearest | near_mid)][:10]
    assert np.mean(near_mid) < 1e-3


@pytest.mark.parametrize("signed", SIGNS)
def test_round_trip_error_is_within_half_the_local_spacing(signed):
    rng = np.random.default_rng(3)
    x = np.concatenate(
        [decades(rng, 100_000), (rng.standard_normal(100_000) * 0.01).astype(F32)]
    ).astype(F32)
    if not signed:
        x = np.abs(x)
    codes, absmax = _core._quantize(x, signed)
    back = _core._dequantize(codes, absmax, signed).astype(np.float64)
    scale = np.repeat(absmax.astype(np.float64), 256)[: x.size]
    a = x / scale  # in [-1, 1]
    values = sorted_map(signed)
    gaps = np.diff(values)
    # The gap of the map values around a (the outermost gap beyond the ends).
    at = np.clip(np.searchsorted(values, a) - 1, 0, gaps.size - 1)
    bound = gaps[at] / 2 * scale
    # float32 roundings: of y = x * (1 / absmax), of the threshold, and of value * absmax.
    slack = 4 * np.spacing(np.abs(x).astype(F32)).astype(np.float64) + 1e-6 * bound
    assert np.all(np.abs(back - x) <= bound + slack)
