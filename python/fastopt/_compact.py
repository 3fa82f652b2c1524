"""Compact optimizer state (the ``state_format`` option): the formats in NumPy, bit for bit as the
kernels store them (src/cpp/kernels/quant_map.hpp and compact.hpp), and the read-only float32
views of them that ``opt.exp_avg`` and friends show.

``"bfloat16"``: each state element is stored as bfloat16 bits (uint16), rounded from float32 to
nearest even, or stochastically with ``rounding="stochastic"``.

``"int8"``: 8-bit blockwise quantization (Dettmers et al., "8-bit Optimizers via Block-wise
Quantization", ICLR 2022): blocks of 256 consecutive elements in memory order, each with one
float32 absmax, and one uint8 code per element, the index of the nearest value of a dynamic map
(signed for states of either sign, unsigned for non-negative ones). Arrays under
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
_DECADES = (1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1e0)


def dynamic_map(signed: bool) -> np.ndarray:
    """The 256 map values, ascending, float32: as quant_map.cpp computes them, in double."""
    values: list[float] = []
    for i, decade in enumerate(_DECADES):
        n = 2**i if signed else 2 ** (i + 1)
        for j in range(n):
            mean = 0.9 * (2 * j + 1) / (2 * n) + 0.1
            values.append(float(np.float32(decade * mean)))
            if signed:
                values.append(float(np.float32(-(decade * mean))))
    values += [0.0, 1.0]
    assert len(values) == 256
    return np.sort(np.array(values, dtype=np.float32))


def thresholds(values: np.ndarray) -> np.ndarray:
    """The 255 midpoints between neighbouring map values, float32 (computed in double)."""
    wide = values.astype(np.float64)
    return ((wide[:-1] + wide[1:]) / 2).astype(np.float32)


_MAPS = {signed: dynamic_map(signed) for signed in (True, False)}
_THRESHOLDS = {signed: thresholds(_MAPS[signed]) for signed in (True, False)}


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
    codes = np.searchsorted(_THRESHOLDS[signed], y, side="left")
    # NaN: the kernels' table lookup gives the top code for +NaN and 0 for -NaN.
    nan = np.isnan(y)
    codes[nan] = np.where(np.signbit(y[nan]), 0, 255)
    return codes.astype(np.uint8).reshape(x.shape, order=order), absmax.astype(np.float32)


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
    """The float values a state array holds, whatever its format (a new array, or a view)."""
    if raw.dtype == np.uint8:
        if absmax is None:
            raise ValueError("int8 state codes without their absmaxes")
        return dequantize(raw, absmax, signed)
    if raw.dtype == np.uint16:
        order = _order(raw)
        return widen_bf16(np.ravel(raw, order=order)).reshape(raw.shape, order=order)
    return raw.view()


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
