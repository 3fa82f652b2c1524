"""A sharded optimizer's state as one process's would be, and back: the pieces every process keeps
(flat, one per array it holds part of) assembled into whole arrays shaped and ordered like their
params, and whole arrays cut into this process's pieces. This is how checkpoints are consolidated,
loaded on any number of processes, and how the state follows a new layout.

int8 states keep an absmax per block of BLOCK elements (the dicts ``<state>_absmax``); cuts fall on
block boundaries (see _layout), so a piece's absmaxes are a contiguous run of the whole array's.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import Any

import numpy as np

from .._compact import ABSMAX, BLOCK
from ._layout import Entry, Layout, Piece


def _span(name: str, piece: Piece) -> tuple[int, int]:
    """The elements of a state's whole flat array that a piece covers."""
    if name.endswith(ABSMAX):
        return piece.lo // BLOCK, -(-piece.hi // BLOCK)
    return piece.lo, piece.hi


def _whole_size(name: str, entry: Entry) -> int:
    return -(-entry.size // BLOCK) if name.endswith(ABSMAX) else entry.size


def assemble(layout: Layout, states: list[Mapping[str, Mapping[Hashable, np.ndarray]]]) -> dict:
    """Whole arrays {name: {key: array}} from every process's pieces (``states[rank]``), in the
    layout's key order."""
    entries = {entry.key: entry for entry in layout.entries}
    order = {entry.key: index for index, entry in enumerate(layout.entries)}
    pieces = [{piece.key: piece for _, piece in layout.pieces(r)} for r in range(len(states))]
    whole: dict[str, dict[Hashable, np.ndarray]] = {}
    for name in states[0]:
        arrays: dict[Hashable, np.ndarray] = {}
        for rank, state in enumerate(states):
            for key, part in state.get(name, {}).items():
                entry = entries[key]
                target = arrays.get(key)
                if target is None:
                    if name.endswith(ABSMAX):
                        target = np.zeros(_whole_size(name, entry), part.dtype)
                    else:
                        target = np.zeros(entry.shape, part.dtype, order=entry.order)
                    arrays[key] = target
                lo, hi = _span(name, pieces[rank][key])
                target.reshape(-1, order=entry.order)[lo:hi] = part.reshape(-1)
        whole[name] = {key: arrays[key] for key in sorted(arrays, key=order.__getitem__)}
    return whole


def _same_order(name: str, key: Hashable, array: np.ndarray, entry: Entry, state: Any) -> None:
    """int8 codes follow their param's memory order block by block, with an absmax per block:
    they cannot follow a param into the other order (as one process refuses too)."""
    absmax = state.get(name + ABSMAX)
    if (
        array.ndim < 2
        or name.endswith(ABSMAX)
        or not isinstance(absmax, Mapping)
        or key not in absmax
    ):
        return
    order = "C" if array.flags.c_contiguous else "F"
    if order != entry.order:
        raise ValueError(
            f"params[{key!r}] is in {entry.order} order but its int8 state {name!r} is in "
            f"{order} order: int8 blocks follow memory order, so the state cannot follow the param"
        )


def cut(layout: Layout, rank: int, state: Mapping[str, Mapping[Hashable, Any]]) -> dict:
    """This process's pieces {name: {key: flat copy}} of whole arrays {name: {key: array}};
    every array is checked against its param's size first (ValueError naming it)."""
    entries = {entry.key: entry for entry in layout.entries}
    pieces = {piece.key: piece for _, piece in layout.pieces(rank)}
    mine: dict[str, dict[Hashable, np.ndarray]] = {}
    for name, arrays in state.items():
        if not isinstance(arrays, Mapping):
            raise ValueError(f"the state dict's state[{name!r}] must be a dict")
        mine[name] = {}
        for key, value in arrays.items():
            entry = entries.get(key)
            if entry is None:
                raise ValueError(
                    f"params has no key {key!r}, which has optimizer state ({name!r}): every "
                    "update of a Sharded includes every key with state (its pieces are cut by "
                    "the layout of all the keys)"
                )
            array = np.asarray(value)
            absmax = name.endswith(ABSMAX)
            if array.size != _whole_size(name, entry) or not (absmax or array.shape == entry.shape):
                raise ValueError(
                    f"state[{name!r}][{key!r}] has shape {array.shape}; params[{key!r}] of shape "
                    f"{entry.shape} needs "
                    + (
                        f"{_whole_size(name, entry)} elements" if absmax else f"{entry.shape}"
                    )  # fmt: skip
                )
            _same_order(name, key, array, entry, state)
            piece = pieces.get(key)
            if piece is not None:
                lo, hi = _span(name, piece)
                flat = array.reshape(-1, order=entry.order)
                mine[name][key] = np.array(flat[lo:hi], copy=True)
    return mine
