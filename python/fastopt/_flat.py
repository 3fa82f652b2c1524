"""Params and grads seen as one vector: every key checked (the messages name it), each array seen
as a flat view in its memory order. Nothing is written here.

For the optimizers that work on all keys as one vector rather than key by key:
fastopt.distributed (which cuts that vector into shards) and the line-search methods
(fastopt.optim.LBFGS, ConjugateGradient). A sharded step checks all of a process's keys, not only
those of its shard: the all-gather writes every element of every param, so a param that could not
take its update anywhere fails everywhere first.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from ._dtypes import is_bfloat16
from ._tensors import as_array
from .clip import _is_real_scalar

_PARAM_DTYPES = (np.dtype(np.float32), np.dtype(np.float64), np.dtype(np.float16))


@dataclass(frozen=True)
class Entry:
    """One key of the params: what a flat layout needs of it."""

    key: Hashable
    shape: tuple[int, ...]
    dtype: np.dtype[Any]
    order: Literal["C", "F"]  # the memory order its elements are flattened in: "C" or "F"
    scalar: bool  # a Python or NumPy number (replaced by the update, as update() does)

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))


class Inputs:
    """The entries (layout), flat param and grad views by entry, and the param tensors."""

    __slots__ = ("entries", "params", "grads", "tensors", "grad_dtypes")

    def __init__(self, params: Any, grads: Any = None, *, tied: str = "") -> None:
        """``grads`` None: the params alone (their layout), as a load reads them. ``tied``: why
        params that share memory are refused, for the message."""
        if not isinstance(params, dict):
            raise TypeError(
                f"params must be a dict mapping keys to arrays; got {type(params).__name__}"
            )
        if grads is not None and not isinstance(grads, Mapping):
            raise TypeError(f"grads must be a mapping; got {type(grads).__name__}")
        self.entries: list[Entry] = []
        self.params: list[np.ndarray] = []
        self.grads: list[np.ndarray] = []
        self.tensors: list[Any] = []
        # The grads' dtypes by param dtype: what the grads of each group travel in depends on them.
        self.grad_dtypes: dict[np.dtype[Any], set[np.dtype[Any]]] = {}
        for key, value in params.items():
            entry, flat = self._param(key, value)
            self.entries.append(entry)
            self.params.append(flat)
            if grads is not None:
                self.grads.append(_grad(key, grads, entry))
                self.grad_dtypes.setdefault(entry.dtype, set()).add(self.grads[-1].dtype)
        _refuse_shared_memory(self.entries, self.params, tied)

    def _param(self, key: Any, value: Any) -> tuple[Entry, np.ndarray]:
        if _is_real_scalar(value):
            return Entry(key, (), np.dtype(np.float64), "C", True), np.array([value], np.float64)
        array = value
        if not isinstance(value, np.ndarray):
            array = as_array(value, "params", key, True)
            if array is None:
                raise TypeError(
                    f"params[{key!r}] must be an ndarray, a torch CPU tensor or a real number; "
                    f"got {type(value).__name__}"
                )
            self.tensors.append(value)
        if not (array.dtype in _PARAM_DTYPES or is_bfloat16(array.dtype)):
            raise TypeError(
                f"params[{key!r}] must be float32, float64, float16 or bfloat16; got {array.dtype}"
            )
        if not (array.flags.c_contiguous or array.flags.f_contiguous):
            raise ValueError(f"params[{key!r}] must be C- or Fortran-contiguous (updated in place)")
        if not array.flags.writeable:
            raise ValueError(f"params[{key!r}] is read-only; it is updated in place")
        order: Literal["C", "F"] = "C" if array.flags.c_contiguous else "F"
        return Entry(key, array.shape, array.dtype, order, False), array.reshape(-1, order=order)


def _grad(key: Any, grads: Mapping[Any, Any], entry: Entry) -> np.ndarray:
    """The grad of ``key`` as a flat array in the param's memory order (a view when it has it)."""
    try:
        value = grads[key]
    except KeyError:
        raise KeyError(f"grads has no key {key!r} (every key of params needs a gradient)") from None
    array = value if isinstance(value, np.ndarray) else as_array(value, "grads", key, False)
    if array is None:
        if not _is_real_scalar(value):
            raise TypeError(
                f"grads[{key!r}] must be an ndarray, a torch CPU tensor or a real number; "
                f"got {type(value).__name__}"
            )
        array = np.asarray(value)
    if not (array.dtype.kind in "fiu" or is_bfloat16(array.dtype)):
        raise TypeError(f"grads[{key!r}] must hold real numbers; got {array.dtype}")
    if array.shape != entry.shape:
        raise ValueError(
            f"grads[{key!r}] has shape {array.shape}; params[{key!r}] has shape {entry.shape}"
        )
    return array.reshape(-1, order=entry.order)


def _refuse_shared_memory(entries: list[Entry], flats: list[np.ndarray], why: str) -> None:
    """Two keys over the same memory (tied weights): refused, naming both, saying ``why``."""
    spans = []
    for entry, flat in zip(entries, flats):
        if not entry.scalar and flat.size:
            start = flat.__array_interface__["data"][0]
            spans.append((start, start + flat.nbytes, entry.key))
    spans.sort(key=lambda span: span[:2])
    for (_, end, first), (start, _, second) in zip(spans, spans[1:]):
        if start < end:
            raise ValueError(
                f"params[{first!r}] and params[{second!r}] share memory (tied weights): {why}, so "
                "give each key its own array and add the tied grads together first"
            )
