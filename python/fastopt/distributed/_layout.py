"""Where every element lives: the params flattened into virtual buffers, cut into shards, and the
bucket plan of the collectives. Pure data, the same on every process; no MPI here.

The keys of one param dtype make one virtual buffer: their elements in key order, each array in
its own memory order. (One buffer per dtype, because a collective moves one element type; a model
usually has one.) The buffer is cut into N contiguous shards of near-equal size, one per process;
a cut may fall inside an array, so a process holds at most one contiguous piece of each array.

Cuts inside an array fall on multiples of BLOCK elements from its start. That keeps int8 state's
blocks of 256 (and their absmaxes) whole on one process, so a sharded int8 state quantizes exactly
the blocks one process would, and puts every piece on a 1 KiB (float32) boundary of its array.
"""

from __future__ import annotations

import bisect
import hashlib
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from .._compact import BLOCK
from .._flat import Entry as Entry  # one key of the layout


@dataclass(frozen=True)
class Piece:
    """One process's part of one array: elements [lo, hi) of the array in its memory order, at
    offset ``at`` of the process's shard."""

    key: Hashable
    index: int  # the entry's position in the layout
    lo: int
    hi: int
    at: int


# A copy between an array and a packed buffer: (entry index, lo, hi, position in the buffer).
Copy = tuple[int, int, int, int]


class Group:
    """The keys of one dtype: their virtual buffer, its shards, and its bucket plan."""

    def __init__(
        self,
        dtype: np.dtype[Any],
        entries: list[tuple[int, Entry]],
        ranks: int,
        min_piece: Callable[[int], int],
        bucket_bytes: int,
    ) -> None:
        self.dtype = dtype
        self.indices = [index for index, _ in entries]
        sizes = [entry.size for _, entry in entries]
        self.offsets = [0]
        for size in sizes:
            self.offsets.append(self.offsets[-1] + size)
        self.total = self.offsets[-1]
        self.bounds = _cuts(self.offsets, ranks, min_piece)
        self.pieces = [self._pieces(r, entries) for r in range(ranks)]
        self.chunk = max(1, bucket_bytes // dtype.itemsize // ranks)
        largest = max(self.bounds[r + 1] - self.bounds[r] for r in range(ranks))
        self.buckets = [self._bucket(b, ranks) for b in range(-(-largest // self.chunk))]

    def shard_size(self, rank: int) -> int:
        return self.bounds[rank + 1] - self.bounds[rank]

    def _pieces(self, rank: int, entries: list[tuple[int, Entry]]) -> list[Piece]:
        start, stop = self.bounds[rank], self.bounds[rank + 1]
        pieces = [
            Piece(entries[k][1].key, self.indices[k], lo, hi, at)
            for k, lo, hi, at in self._spans(start, stop)
        ]
        # An empty array has no element to cut, but its (empty) state is kept, as one process
        # keeps it: by the process whose shard its place in the buffer falls in.
        last = len(self.bounds) - 2
        for k, (index, entry) in enumerate(entries):
            offset = self.offsets[k]
            if entry.size == 0 and min(bisect.bisect_right(self.bounds, offset) - 1, last) == rank:
                pieces.append(Piece(entry.key, index, 0, 0, offset - start))
        return sorted(pieces, key=lambda piece: piece.index)

    def _spans(self, start: int, stop: int) -> list[tuple[int, int, int, int]]:
        """The virtual range [start, stop) as (position in the group, lo, hi, offset from start)
        per array it covers, in order."""
        spans = []
        origin = start
        k = bisect.bisect_right(self.offsets, start) - 1
        while start < stop:
            first, last = self.offsets[k], self.offsets[k + 1]
            if last > start:
                hi = min(stop, last)
                spans.append((k, start - first, hi - first, start - origin))
                start = hi
            k += 1
        return spans

    def copies(self, start: int, stop: int) -> list[Copy]:
        """The copies that pack the virtual range [start, stop) into a buffer at 0."""
        return [(self.indices[k], lo, hi, at) for k, lo, hi, at in self._spans(start, stop)]

    def _bucket(self, b: int, ranks: int) -> Bucket:
        """Bucket b: the b-th chunk of every shard, so every process sends and receives in
        every bucket (a bucket of one shard alone would leave the other links idle)."""
        counts, copies = [], []
        for q in range(ranks):
            start = self.bounds[q] + b * self.chunk
            count = max(0, min(self.chunk, self.bounds[q + 1] - start))
            counts.append(count)
            copies.append(self.copies(start, start + count))
        displs = [0]
        for count in counts[:-1]:
            displs.append(displs[-1] + count)
        return Bucket(b * self.chunk, counts, displs, copies)


@dataclass(frozen=True)
class Bucket:
    """One round of the collectives: process q's part is ``counts[q]`` elements of its shard from
    offset ``at``, packed at ``displs[q]`` of the bucket buffer by ``copies[q]``."""

    at: int
    counts: list[int]
    displs: list[int]
    copies: list[list[Copy]]


class Layout:
    """Every key's entry and the groups (one per dtype) they are sharded in."""

    def __init__(
        self, entries: list[Entry], ranks: int, min_piece: Callable[[int], int], bucket_bytes: int
    ) -> None:
        self.entries = entries
        self.ranks = ranks
        self.fingerprint = fingerprint(entries)
        by_dtype: dict[np.dtype[Any], list[tuple[int, Entry]]] = {}
        for index, entry in enumerate(entries):
            by_dtype.setdefault(entry.dtype, []).append((index, entry))
        self.groups = [
            Group(dtype, members, ranks, min_piece, bucket_bytes)
            for dtype, members in by_dtype.items()
        ]

    def pieces(self, rank: int) -> list[tuple[Group, Piece]]:
        return [(group, piece) for group in self.groups for piece in group.pieces[rank]]

    def sent_bytes(self, rank: int, wires: list[int]) -> dict[str, int]:
        """The bytes this process sends to others in one update, by collective: the reduce-scatter
        sends every other process its part of each bucket (``wires``: each group's grads' bytes
        per element); the all-gather sends each of them this process's part (as one allreduce
        would: 2 (N-1)/N of the params, for equal shards)."""
        scatter = gather = 0
        for group, wire in zip(self.groups, wires):
            for bucket in group.buckets:
                scatter += wire * (sum(bucket.counts) - bucket.counts[rank])
                gather += group.dtype.itemsize * bucket.counts[rank] * (self.ranks - 1)
        return {"reduce_scatter": scatter, "all_gather": gather}


def fingerprint(entries: list[Entry]) -> str:
    """A digest of the keys, shapes, dtypes and memory orders, equal on every process that holds
    the same params (repr, not hash(): str hashes differ between processes)."""
    text = repr([(repr(e.key), e.shape, e.dtype.str, e.dtype.name, e.order, e.scalar)
                 for e in entries])  # fmt: skip
    return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()


def _cuts(offsets: list[int], ranks: int, min_piece: Callable[[int], int]) -> list[int]:
    """N+1 shard bounds: each cut is the allowed point nearest to r/N of the buffer."""
    total = offsets[-1]
    bounds = [0]
    for r in range(1, ranks):
        ideal = (r * total + ranks // 2) // ranks
        bounds.append(max(bounds[-1], _allowed_near(offsets, ideal, min_piece)))
    bounds.append(total)
    return bounds


def _allowed_near(offsets: list[int], x: int, min_piece: Callable[[int], int]) -> int:
    """The allowed cut nearest to x: an array's start or end, or a multiple of BLOCK inside it
    that leaves both pieces at least min_piece(size) long."""
    k = bisect.bisect_right(offsets, x) - 1
    if k >= len(offsets) - 1:
        return offsets[-1]
    start, size = offsets[k], offsets[k + 1] - offsets[k]
    candidates = [start, start + size]
    least = max(1, min_piece(size))
    low = -(-least // BLOCK) * BLOCK
    high = (size - least) // BLOCK * BLOCK
    if low <= high:
        inside = round((x - start) / BLOCK) * BLOCK
        candidates.append(start + min(max(inside, low), high))
    return min(candidates, key=lambda c: (abs(c - x), c))


def min_piece(settings: dict[str, Any]) -> Any:
    """The least piece a cut may leave of an array of ``size`` elements. int8 state quantizes
    arrays of compact_min_size elements or more: a cut never leaves a piece of such an array below
    it, so every piece is stored as the whole array is on one process."""
    fmt, least = settings.get("state_format"), settings.get("compact_min_size", 4096)
    return lambda size: least if fmt == "int8" and size >= least else 0
