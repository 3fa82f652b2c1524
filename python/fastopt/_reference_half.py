"""The NumPy reference of the half-precision formats (src/cpp/kernels/half.hpp), bit for bit.

Plain integer NumPy on the float32 bit patterns: widening, rounding to nearest even, stochastic
rounding with the same counter-based random bits, and the key those bits are drawn under. The
tests compare the compiled kernels with these at every SIMD level, and these with NumPy's own
float16 cast and ml_dtypes' bfloat16 cast (which agree on everything but NaN payloads).
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Literal

import numpy as np

_U32 = np.uint32
_M32 = 0xFFFFFFFF
_M64 = 0xFFFFFFFFFFFFFFFF


def _bits(x: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(x, dtype=np.float32).view(_U32)


def _mix32(x: np.ndarray) -> np.ndarray:
    x = x ^ (x >> _U32(16))
    x = x * _U32(0x85EBCA6B)
    x = x ^ (x >> _U32(13))
    x = x * _U32(0xC2B2AE35)
    return x ^ (x >> _U32(16))


def element_bits(random_key: int, index: np.ndarray) -> np.ndarray:
    """The 32 random bits of each element index (int64) under ``random_key``."""
    index = np.asarray(index, dtype=np.int64).astype(np.uint64)
    high = (index >> np.uint64(32)).astype(_U32)
    key = _U32(random_key) ^ (high * _U32(0x27D4EB2F))
    low = (index & np.uint64(_M32)).astype(_U32)
    return _mix32((low * _U32(0x9E3779B1)) ^ key)


def _splitmix64(z: int) -> int:
    z = (z + 0x9E3779B97F4A7C15) & _M64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _M64
    return z ^ (z >> 31)


def random_key(seed: int, step: int, key: Hashable) -> int:
    """The key of one array's random bits at one step: FNV-1a of repr(key), mixed with both."""
    fnv = 0xCBF29CE484222325
    for byte in repr(key).encode("utf-8"):
        fnv = ((fnv ^ byte) * 0x100000001B3) & _M64
    return _splitmix64(seed ^ _splitmix64(step ^ _splitmix64(fnv))) & _M32


# ---- bfloat16 ----


def widen_bf16(bits: np.ndarray) -> np.ndarray:
    return (np.asarray(bits, np.uint16).astype(_U32) << _U32(16)).view(np.float32)


def round_bf16(x: np.ndarray, random: np.ndarray | None = None) -> np.ndarray:
    """float32 -> bfloat16 bits, to nearest even (random None) or stochastically."""
    b = _bits(x)
    if random is None:
        addend = _U32(0x7FFF) + ((b >> _U32(16)) & _U32(1))
    else:
        addend = random & _U32(0xFFFF)
    rounded = (b + addend) >> _U32(16)
    nan = (b & _U32(0x7FFFFFFF)) > _U32(0x7F800000)
    return np.where(nan, (b >> _U32(16)) | _U32(0x40), rounded).astype(np.uint16)


# ---- float16 ----


def widen_f16(bits: np.ndarray) -> np.ndarray:
    h = np.asarray(bits, np.uint16).astype(_U32)
    sign = (h & _U32(0x8000)) << _U32(16)
    e = (h >> _U32(10)) & _U32(0x1F)
    m = h & _U32(0x3FF)
    normal = sign | ((e + _U32(112)) << _U32(23)) | (m << _U32(13))
    quiet = np.where(m != 0, _U32(0x400000), _U32(0))
    special = sign | _U32(0x7F800000) | (m << _U32(13)) | quiet
    subnormal = sign | (m.astype(np.float32) * np.float32(2.0**-24)).view(_U32)
    out = np.where(e == 0, subnormal, np.where(e == 31, special, normal))
    return out.astype(_U32).view(np.float32)


def round_f16(x: np.ndarray, random: np.ndarray | None = None) -> np.ndarray:
    """float32 -> float16 bits, to nearest even (random None) or stochastically."""
    b = _bits(x).astype(np.int64)  # wide enough that no step below wraps
    sign = (b >> 16) & 0x8000
    a = b & 0x7FFFFFFF
    e = a >> 23
    normal = e >= 113
    value = np.where(normal, a - 0x38000000, (a & 0x7FFFFF) | 0x800000)
    wide = np.where(normal, 13, 126 - e)
    shift = np.minimum(wide, 31)
    nearest = (np.int64(1) << (shift - 1)) - 1 + ((value >> shift) & 1)
    if random is None:
        addend = nearest
    else:
        addend = random.astype(np.int64) & ((np.int64(1) << shift) - 1)
    h = np.minimum((value + addend) >> shift, 0x7C00)
    h = np.where(wide > 31, 0, h)
    h = np.where(a > 0x7F800000, 0x7E00 | ((a >> 13) & 0x3FF), h)
    return (sign | h).astype(np.uint16)


def widen(bits: np.ndarray, fmt: str) -> np.ndarray:
    """Half bits (uint16) of format "bfloat16" or "float16" -> float32 values."""
    return widen_bf16(bits) if fmt == "bfloat16" else widen_f16(bits)


def round_half(
    x: np.ndarray, fmt: str, stochastic_key: int | None = None, index0: int = 0
) -> np.ndarray:
    """float32 values -> half bits, to nearest even, or stochastically with the bits of elements
    index0, index0 + 1, ... in memory order (a Fortran-ordered array's too) under
    ``stochastic_key``."""
    x = np.asarray(x)
    order: Literal["C", "F"] = "F" if x.flags.f_contiguous and not x.flags.c_contiguous else "C"
    flat = np.ravel(x, order=order)
    random = None
    if stochastic_key is not None:
        random = element_bits(stochastic_key, index0 + np.arange(flat.size, dtype=np.int64))
    out = round_bf16(flat, random) if fmt == "bfloat16" else round_f16(flat, random)
    return out.reshape(x.shape, order=order)
