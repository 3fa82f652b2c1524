"""Compact optimizer state (the ``state_format`` option): the formats in NumPy, bit for bit as the
kernels store them (src/cpp/kernels/quant_map.hpp and compact.hpp), and the read-only float32
views of them that ``opt.exp_avg`` and friends show.

``"bfloat16"``: each state element is stored as bfloat16 bits (uint16), rounded from float32 to
nearest even, or stochastically with ``rounding="stochastic"``.

``"int8"``: 8-bit blockwise quantization (Dettmers et al., "8-bit Optimizers via Block-wise
Quantization", ICLR 2022): blocks of 256 consecutive elements in memory order, each with one
float32 absmax, and one uint8 code per element for the value of x / absmax in their dynamic map
(signed for states of either sign, unsigned for non-negative ones). The codes are not indices of
the sorted map: a signed code is a sign bit and 7 bits m, an unsigned code 8 bits m, and m gives
a decade (level L = floor(log2 m), or of m + 1 unsigned) and an index j in it, so that code and
value convert with a few float32 operations and no table gathers (src/cpp/kernels/quant_map.hpp
defines the format; the functions below are an independent NumPy implementation of it, bit for
bit). Quantizing picks the nearest value, up to an ulp near the midpoints. Arrays under
``compact_min_size`` elements (4096 by default, as in bitsandbytes) keep compute-type state, as
does a running maximum (AMSGrad's), which requantizing could lower.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, Literal

import numpy as np

from ._reference_half import _mix32, widen_bf16

FORMATS = (None, "bfloat16", "int8")
BLOCK = 256
MIN_SIZE = 4096  # compact_min_size's default
ABSMAX = "_absmax"  # the int8 absmaxes of state "exp_avg" are in dict "exp_avg_absmax"
# Decade i = 0..6 of the map spans [10^(i-7), 10^(i-6)): its start, and its width over 0.9.
_STARTS = (1e-7, 1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1)
_DECADES = (1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1e0)


def levels(signed: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(base, step, inv_step, cap), float32 [8] by level L (decade i = L signed, L - 1 unsigned):
    base = 10^(i-7), step = 0.9 * 10^(i-6) / n and inv_step = its inverse (both in double), and
    cap = n - 1, for the n values of the decade. The unused level holds zeros."""
    base, step, inv_step, cap = (np.zeros(8, np.float32) for _ in range(4))
    for i, (start, decade) in enumerate(zip(_STARTS, _DECADES)):
        level, n = (i, 2**i) if signed else (i + 1, 2 ** (i + 1))
        base[level] = np.float32(start)
        step[level] = np.float32(0.9 * decade / n)
        inv_step[level] = np.float32(n / (0.9 * decade))
        cap[level] = n - 1
    return base, step, inv_step, cap


def _level_and_index(m: np.ndarray, signed: bool) -> tuple[np.ndarray, np.ndarray]:
    """Level L and index j in the decade of the magnitude codes m (1..127 signed, 1..254
    unsigned): L = floor(log2 k), j = k - 2^L, with k = m (signed) or m + 1 (unsigned)."""
    k = m.astype(np.int64) + (0 if signed else 1)
    level = np.frexp(k)[1].astype(np.int64) - 1  # k = f * 2^e with f in [0.5, 1): exact
    return level, k - (1 << level)


def dynamic_map(signed: bool) -> np.ndarray:
    """The value of each code 0..255, float32: what code c dequantizes to, times absmax.

    Signed: bit 7 is the sign, the low 7 bits m; m = 0 is 0 (code 0x00) and code 0x80 is +1.0.
    Unsigned: m = 0 is 0 and 255 is 1.0. Any other m is index j of level L (_level_and_index),
    whose value is base[L] + (float(j) + 0.5) * step[L] in float32 (levels): the means of the
    decades of Dettmers et al.'s dynamic map (bitsandbytes' create_dynamic_map(signed, 7, 8))."""
    base, step, _, _ = levels(signed)
    codes = np.arange(256)
    m = codes & 0x7F if signed else codes
    regular = (m != 0) & (m != 255)
    level, j = _level_and_index(np.where(regular, m, 1), signed)
    half = np.float32(0.5)
    values = base[level] + (j.astype(np.float32) + half) * step[level]
    values = np.where(regular, values, np.float32(0)).astype(np.float32)
    if signed:
        values[0x80:] = -values[0x80:]
        values[0x80] = 1.0
    else:
        values[255] = 1.0
    return values


def thresholds(signed: bool) -> np.ndarray:
    """float32 [8]: D_0 .. D_6, the least |y| of each decade's codes, and ONE, the least |y| that
    is 1.0. Midpoints of neighbouring map values, computed in double: D_0 of 0 and the least
    positive value, D_i of decade i - 1's largest value and decade i's least, ONE of the largest
    value below 1 and 1."""
    base, step, _, cap = levels(signed)
    first = 0 if signed else 1
    least = [base[L] + np.float32(0.5) * step[L] for L in range(first, first + 7)]
    most = [base[L] + (cap[L] + np.float32(0.5)) * step[L] for L in range(first, first + 7)]
    edges = list(zip([np.float32(0)] + most, least + [np.float32(1)]))
    return np.array([(np.float64(lo) + np.float64(hi)) / 2 for lo, hi in edges], np.float32)


_MAPS = {signed: dynamic_map(signed) for signed in (True, False)}
_THRESHOLDS = {signed: thresholds(signed) for signed in (True, False)}
_LEVELS = {signed: levels(signed) for signed in (True, False)}


_RAW: dict[str, np.dtype[Any]] = {"bfloat16": np.dtype(np.uint16), "int8": np.dtype(np.uint8)}


def format_for(state_format: str | None, kind: str, size: int, min_size: int) -> str | None:
    """How a state of `kind` ("signed", "unsigned", "running_max") of an array of `size` is
    stored: as the core decides (src/cpp/bindings/compact_state.cpp, format_for)."""
    if state_format == "int8" and (kind == "running_max" or size < min_size):
        return None
    return state_format


def raw_dtype(state_format: str | None) -> np.dtype[Any] | None:
    """The dtype of a compact state's raw array (None: the compute type)."""
    return _RAW.get(state_format or "")


def _order(x: np.ndarray) -> Literal["C", "F"]:
    return "F" if x.flags.f_contiguous and not x.flags.c_contiguous else "C"


def _codes_of(y: np.ndarray, signed: bool) -> np.ndarray:
    """The codes of y = x / absmax (float32), by the definition (compact.hpp computes the same):
    c = the number of thresholds D_0..D_6 at or below |y| (0 for NaN); c = 0 is code 0; else
    level L = c - 1 (signed) or c (unsigned), t = (|y| - base[L]) * inv_step[L] in float32, capped
    at n - 1 (t >= 0 here), and j = int(t). |y| >= ONE is 1.0, unless y < 0 (signed: the largest
    negative magnitude is m = 127); a negative y of the signed map sets bit 7."""
    base, _, inv_step, cap = _LEVELS[signed]
    bounds = _THRESHOLDS[signed]
    a = np.abs(y)
    count = np.zeros(a.shape, np.int64)
    for bound in bounds[:7]:
        count += a >= bound  # False for NaN
    level = count - 1 if signed else count
    level = np.where(count > 0, level, 1)  # any valid level: those codes are 0 below
    with np.errstate(invalid="ignore", over="ignore"):
        t = (a - base[level]) * inv_step[level]  # inf stays inf; float32 throughout
    t = np.where(t < cap[level], t, cap[level])
    j = np.where(count > 0, t, np.float32(0)).astype(np.int64)
    codes = (1 << level) - (0 if signed else 1) + j
    if signed:
        codes = np.where((count > 0) & (y < 0), codes | 0x80, codes)
        codes = np.where(y >= bounds[7], 0x80, codes)
    else:
        codes = np.where(a >= bounds[7], 255, codes)
    return np.where(count > 0, codes, 0).astype(np.uint8)


def quantize(x: Any, signed: bool) -> tuple[np.ndarray, np.ndarray]:
    """(codes, absmax) of ``x``: codes (uint8) shaped and ordered like x, blocks of 256 in memory
    order. A float64 x is rounded to float32 first, as the kernels do."""
    x = np.asarray(x)
    order = _order(x)
    flat = np.ravel(x, order=order).astype(np.float32)
    count = -(-flat.size // BLOCK)
    padded = np.zeros(count * BLOCK, np.float32)  # padding of 0: no effect on a block's max
    padded[: flat.size] = flat
    blocks = padded.reshape(count, BLOCK)
    absmax = np.abs(blocks).max(axis=1) if count else np.zeros(0, np.float32)  # NaN propagates
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        inv = np.where(absmax > 0, np.float32(1) / absmax, np.float32(0)).astype(np.float32)
        y = (blocks * inv[:, None]).ravel()[: flat.size]
    codes = _codes_of(y, signed)
    return codes.reshape(x.shape, order=order), absmax.astype(np.float32)


def dequantize(codes: np.ndarray, absmax: np.ndarray, signed: bool) -> np.ndarray:
    """float32 values of int8 codes and their blocks' absmaxes, shaped and ordered like codes."""
    order = _order(codes)
    flat = np.ravel(codes, order=order)
    scale = np.repeat(np.asarray(absmax, np.float32), BLOCK)[: flat.size]
    with np.errstate(invalid="ignore"):  # a NaN block: NaN * 0
        values = _MAPS[signed][flat] * scale
    return values.reshape(codes.shape, order=order)


def state_key(random_key: int, slot: int) -> int:
    """The stochastic-rounding key of bfloat16 state number ``slot`` (mixed.hpp's state_key)."""
    mixed = np.uint32(random_key) ^ np.uint32((0x9E3779B9 * (slot + 1)) & 0xFFFFFFFF)
    return int(_mix32(np.array([mixed], np.uint32))[0])


def values_of(raw: np.ndarray, absmax: np.ndarray | None, signed: bool) -> np.ndarray:
    """The float values a state array holds, whatever its format, as a new array."""
    if raw.dtype == np.uint8:
        if absmax is None:
            raise ValueError("int8 state codes without their absmaxes")
        return dequantize(raw, absmax, signed)
    if raw.dtype == np.uint16:
        order = _order(raw)
        return widen_bf16(np.ravel(raw, order=order)).reshape(raw.shape, order=order)
    # A copy: a view of the live array (kept in float under int8: small arrays, running maxima)
    # could be written through its base or by torch.from_numpy, whatever its writeable flag.
    return raw.copy(order="K")


class CompactStateView(Mapping[Any, np.ndarray]):
    """``opt.exp_avg`` (any state) under ``state_format``: {key: the state's float32 values},
    read-only arrays decoded from the raw arrays (``opt.raw_state``) on each read. ``del`` drops
    a key's state (and its absmaxes)."""

    __slots__ = ("_raw", "_absmax", "_signed")

    def __init__(self, raw: dict[Any, np.ndarray], absmax: dict[Any, np.ndarray], signed: bool):
        self._raw, self._absmax, self._signed = raw, absmax, signed

    def __getitem__(self, key: Any) -> np.ndarray:
        values = values_of(self._raw[key], self._absmax.get(key), self._signed)
        values.flags.writeable = False
        return values

    def __iter__(self) -> Iterator[Any]:
        return iter(self._raw)

    def __len__(self) -> int:
        return len(self._raw)

    def __setitem__(self, key: Any, value: Any) -> None:
        raise TypeError(
            "under state_format the states are stored compactly: opt.<state>[key] shows their "
            "values read-only. Write raw arrays into opt.raw_state (uint8 codes with their "
            "absmaxes, or uint16 bfloat16 bits; fastopt._compact.quantize makes them), or delete "
            "the key's state to start it afresh."
        )

    def __delitem__(self, key: Any) -> None:
        del self._raw[key]
        self._absmax.pop(key, None)

    def __repr__(self) -> str:
        return f"CompactStateView({dict(self)!r})"


def state_bytes(opt: Any) -> int:
    """Bytes of every state array the optimizer keeps (codes, absmaxes, masters included)."""
    return sum(a.nbytes for arrays in opt._state.arrays.values() for a in arrays.values())
