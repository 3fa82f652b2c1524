"""Sharded: data-parallel updates with the optimizer state split over the processes (ZeRO stage 1,
with stage 2's reduce-scatter of the grads; Rajbhandari et al., 2020).

One update, on every process together:
  read      check this process's params and grads (every key); the layout they make
  agree     one small allgather: any process's error raises on every process (nothing changed);
            the layouts, settings and step counts must match
  scatter   the grads, averaged in rank order, bucket by bucket: this process's shard (_collectives)
  check     the wrapped optimizer validates its shard (check_only: nothing written), and the
            per-shard sums of squares are taken for max_grad_norm
  agree     a second allgather: errors, the non-finite verdicts and the sums, in rank order
  update    the wrapped optimizer updates its shard in place (fused kernels, its state only)
  gather    the updated params, bucket by bucket, into every process's arrays

Nothing is written before the second agreement, so an error on any process (bad input, a state
that does not fit, a non-finite grad under "raise") raises on every process and changes nothing.
"""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np
from mpi4py import MPI

from .. import _core
from .._base import Optimizer
from .._checks import count
from .._compact import state_bytes
from .._tensors import written
from ._checkpoints import Checkpoints
from ._collectives import agree, all_gather, reduce_scatter, same_everywhere
from ._inputs import Inputs
from ._layout import Group, Layout, fingerprint, min_piece
from ._state import assemble, cut


class _Buffers:
    """One group's buffers, made with its layout and kept: the shard's averaged grads, and the
    bucket buffers the collectives pack into (bounded by bucket_bytes, whatever the model)."""

    def __init__(self, group: Group, rank: int, ranks: int) -> None:
        totals = [sum(bucket.counts) for bucket in group.buckets] or [0]
        mine = max([bucket.counts[rank] for bucket in group.buckets] or [0])
        self.shard = np.empty(group.shard_size(rank), group.accum)
        self.send = np.empty(max(totals), group.dtype)
        self.recv = np.empty(ranks * mine, group.dtype)
        self.widened = np.empty(mine if group.half else 0, np.float32)


class Sharded(Checkpoints):
    """Wrap a fastopt optimizer so that N processes train data-parallel, each keeping and updating
    1/N of the optimizer state.

    ``Sharded(optimizer, comm=None, *, bucket_bytes=2**24)`` wraps any fastopt optimizer (the
    book's six, ``fastopt.optim``, AdaBelief) with its settings: max_grad_norm, nonfinite,
    per_key, schedules, half params and state_format keep working. ``comm`` is an mpi4py
    intracommunicator (``MPI.COMM_WORLD`` by default). Every process must call every method of a
    Sharded together (they are collective), with the same keys, shapes and dtypes.

    ``update(params, grads)`` takes this process's grads, averages them over the processes (summed
    in rank order, then divided by N: the same every run, for any thread count), updates this
    process's shard of the params and of the state, and all-gathers the params: afterwards every
    process holds identical params. The reduce-scatter and the all-gather move ``bucket_bytes``
    of the model at a time.

    Checkpoints: ``save(path, params=None)`` writes one consolidated file, the one a single
    process's ``fastopt.save`` writes; ``load(path, params=None)`` reads one on any number of
    processes (or a single process's). ``state_dict()`` / ``load_state_dict()`` likewise.
    """

    def __init__(self, optimizer: Optimizer, comm: Any = None, *, bucket_bytes: int = 2**24):
        if not isinstance(optimizer, Optimizer):
            raise TypeError(
                "Sharded wraps a fastopt optimizer (fastopt.Adam(), fastopt.optim.AdamW(), ...); "
                f"got {type(optimizer).__name__}"
            )
        if comm is None:
            comm = MPI.COMM_WORLD
        if not isinstance(comm, MPI.Intracomm):
            raise TypeError(f"comm must be an mpi4py intracommunicator; got {comm!r}")
        self.bucket_bytes = count("bucket_bytes", bucket_bytes)
        if self.bucket_bytes < 1:
            raise ValueError(f"bucket_bytes must be at least 1; got {bucket_bytes!r}")
        self.optimizer = optimizer
        self.comm = comm
        self.rank, self.size = comm.Get_rank(), comm.Get_size()
        self._layout: Layout | None = None
        self._layout_key: Any = None
        self._buffers: list[_Buffers] = []
        # Seconds of the last update by phase ("reduce_scatter", "update", "all_gather", "total").
        self.timings: dict[str, float] = {}

    # ---- reports: the wrapped optimizer's, the same on every process ----

    @property
    def steps(self) -> int:
        return self.optimizer.steps

    @property
    def last_grad_norm(self) -> float | None:
        return self.optimizer.last_grad_norm

    @property
    def skipped_updates(self) -> int:
        return self.optimizer.skipped_updates

    def state_bytes(self) -> int:
        """Bytes of the state arrays this process keeps (its shard's)."""
        return state_bytes(self.optimizer)

    def sent_bytes(self) -> dict[str, int]:
        """Bytes this process sends per update, by collective ({} before the first update)."""
        return {} if self._layout is None else self._layout.sent_bytes(self.rank)

    def shard(self) -> dict[Any, tuple[int, int]]:
        """This process's part of each array it holds part of: {key: (first, end)}, elements of
        the array in its memory order ({} before the first update)."""
        if self._layout is None:
            return {}
        return {piece.key: (piece.lo, piece.hi) for _, piece in self._layout.pieces(self.rank)}

    # ---- the update ----

    def update(self, params: dict[Any, Any], grads: Any) -> None:
        """Average ``grads`` over the processes and update ``params`` in place, identically on
        every process (see the class). Raises on every process, changing nothing, when any
        process's input is bad: there the error is its own; elsewhere the same built-in type,
        naming that process."""
        with self.optimizer._lock:
            self._update(params, grads)

    def _update(self, params: dict[Any, Any], grads: Any) -> None:
        clock = time.perf_counter
        begun = clock()
        opt, comm = self.optimizer, self.comm
        inputs, error = None, None
        try:
            inputs = Inputs(params, grads)
        except Exception as caught:  # reported to every process by agree()
            error = caught
        mark = None if inputs is None else fingerprint(inputs.entries)
        marks = agree(comm, error, (mark, _settings(opt)))
        same_everywhere(marks)
        assert inputs is not None
        self._follow(inputs)
        scattered = clock()
        layout = self._layout
        assert layout is not None
        for group, buffers in zip(layout.groups, self._buffers):
            reduce_scatter(comm, group, inputs.grads, buffers.shard, buffers.send,
                           buffers.recv, buffers.widened)  # fmt: skip
        updating = clock()
        shard_params, shard_grads = self._shard(inputs)
        verdict, partial = True, None
        try:
            if opt.max_grad_norm is not None:
                partial = _core.sum_of_squares([b.shard for b in self._buffers])
            local = None if partial is None else math.sqrt(partial)
            verdict = opt._update(shard_params, shard_grads, norm=local, check_only=True)
        except Exception as caught:
            error = caught
        replies = agree(comm, error, (verdict, partial))
        norm = None
        if opt.max_grad_norm is not None:
            total = 0.0
            for _, value in replies:  # in rank order: the same sum on every process
                total += value
            norm = math.sqrt(total)
        if not all(verdict for verdict, _ in replies):  # nonfinite="skip": skipped everywhere
            opt.last_grad_norm = norm
            opt.skipped_updates += 1
            return
        opt._update(shard_params, shard_grads, norm=norm, known_finite=True)
        gathering = clock()
        for group, buffers in zip(layout.groups, self._buffers):
            all_gather(comm, group, inputs.params, buffers.send)
        for entry, flat in zip(inputs.entries, inputs.params):
            if entry.scalar:
                params[entry.key] = np.float64(flat[0])
        written(inputs.tensors)
        done = clock()
        self.timings = {
            "reduce_scatter": updating - scattered,
            "update": gathering - updating,
            "all_gather": done - gathering,
            "total": done - begun,
        }

    def _shard(self, inputs: Inputs) -> tuple[dict[Any, Any], dict[Any, Any]]:
        """The wrapped optimizer's params and grads: this process's pieces, flat views."""
        assert self._layout is not None
        params, grads = {}, {}
        for group, buffers in zip(self._layout.groups, self._buffers):
            for piece in group.pieces[self.rank]:
                params[piece.key] = inputs.params[piece.index][piece.lo : piece.hi]
                grads[piece.key] = buffers.shard[piece.at : piece.at + piece.hi - piece.lo]
        return params, grads

    # ---- the layout, and the state following it ----

    def _follow(self, inputs: Inputs) -> None:
        """Make the layout of these params when it is new; a state made under another layout
        (params added, reordered, reshaped in memory) is re-cut to follow (collective)."""
        opt = self.optimizer
        key = (fingerprint(inputs.entries), opt.state_format, opt.compact_min_size)
        if key == self._layout_key:
            return
        layout = Layout(inputs.entries, self.size, min_piece(opt.__dict__), self.bucket_bytes)
        old = self._layout
        if self.comm.allreduce(_has_arrays(opt), op=MPI.LOR):
            own = opt.state_dict()["state"]
            # Under an old layout, the pieces of every process; before any (an optimizer that
            # was given state before it was wrapped), its whole arrays, as on every process.
            whole = own if old is None else assemble(old, self.comm.allgather(own))
            error, mine = None, None
            try:
                mine = cut(layout, self.rank, whole)
            except ValueError as caught:
                error = ValueError(f"the params changed since the state was made: {caught}")
            agree(self.comm, error)
            _replace_arrays(opt, mine)
        self._set_layout(layout, key)

    def _set_layout(self, layout: Layout | None, key: Any) -> None:
        self._layout, self._layout_key = layout, key
        self._buffers = [] if layout is None else [
            _Buffers(group, self.rank, self.size) for group in layout.groups
        ]  # fmt: skip


def _settings(opt: Optimizer) -> str:
    """What must be the same on every process: the step count, hyperparameters and counters."""
    values = [getattr(opt, name) for name in opt._hyperparameters]
    return repr((opt.steps, values, opt._state.counters, opt.max_grad_norm, opt.nonfinite))


def _has_arrays(opt: Optimizer) -> bool:
    return any(opt._state.arrays.values())


def _replace_arrays(opt: Optimizer, arrays: Any) -> None:
    """The state's arrays replaced by the same states re-cut for a new layout (checked by cut)."""
    for name, per_key in arrays.items():
        opt._state.arrays[name] = per_key
