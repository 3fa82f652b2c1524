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

import contextlib
import math
import signal
import threading
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
from mpi4py import MPI

from .. import _core
from .._base import Optimizer
from .._checks import count
from .._compact import state_bytes
from .._flat import Inputs
from .._tensors import written
from ._checkpoints import TIED, Checkpoints
from ._collectives import agree, all_gather, reduce_scatter, same_everywhere, wire_dtype
from ._layout import Group, Layout, fingerprint, min_piece
from ._state import assemble, cut


class _Buffers:
    """One group's buffers, kept while its layout and wire dtype stand: the shard's averaged
    grads, and the bucket buffers the collectives pack into (bounded by bucket_bytes, whatever
    the model). The all-gather packs the params into the send buffer's memory."""

    def __init__(self, group: Group, rank: int, ranks: int, wire: np.dtype[Any]) -> None:
        totals = [sum(bucket.counts) for bucket in group.buckets] or [0]
        mine = max([bucket.counts[rank] for bucket in group.buckets] or [0])
        self.wire = wire
        half = wire.itemsize == 2
        self.shard = np.empty(group.shard_size(rank), np.float32 if half else wire)
        self.send = np.empty(max(totals), wire)
        self.recv = np.empty(ranks * mine, wire)
        self.widened = np.empty(mine if half else 0, np.float32)
        # wire is never narrower than the params' dtype: their bucket fits in send's bytes.
        self.gather = self.send.view(np.uint8)[: max(totals) * group.dtype.itemsize].view(
            group.dtype
        )


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
        self._broken: str | None = None  # why updates are refused (a failure mid-update)
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
        if self._layout is None:
            return {}
        return self._layout.sent_bytes(self.rank, [b.wire.itemsize for b in self._buffers])

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
        with self.optimizer._lock, _interrupts_deferred():
            self._update(params, grads)

    def _update(self, params: dict[Any, Any], grads: Any) -> None:
        if self._broken is not None:
            raise RuntimeError(self._broken)
        clock = time.perf_counter
        begun = clock()
        opt, comm = self.optimizer, self.comm
        inputs = self._agree_on_inputs(params, grads)
        scattered = clock()
        layout = self._layout
        assert layout is not None
        for group, buffers in zip(layout.groups, self._buffers):
            reduce_scatter(comm, group, inputs.grads, buffers.shard, buffers.send,
                           buffers.recv, buffers.widened)  # fmt: skip
        updating = clock()
        shard_params, shard_grads = self._shard(inputs)
        norm, made = self._agree_on_update(shard_params, shard_grads)
        if not made:  # nonfinite="skip" and some process's part of the average is not finite
            opt.last_grad_norm = norm
            opt.skipped_updates += 1
            return
        self._apply(shard_params, shard_grads, norm)
        gathering = clock()
        for group, buffers in zip(layout.groups, self._buffers):
            all_gather(comm, group, inputs.params, buffers.gather)
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

    def _agree_on_inputs(self, params: dict[Any, Any], grads: Any) -> Inputs:
        """The first agreement: every process's params and grads readable, of the same layout,
        with the same optimizer settings; the layout (and the buffers) made to fit them."""
        opt, inputs, error = self.optimizer, None, None
        try:
            inputs = Inputs(params, grads, tied=TIED)
            mark = (fingerprint(inputs.entries), _settings(opt, params), inputs.grad_dtypes)
        except BaseException as caught:  # reported to every process by agree()
            error, mark = caught, None
        marks = agree(self.comm, error, mark)
        assert inputs is not None
        self._same_everywhere(inputs, marks)
        wanted: dict[Any, set[Any]] = {}
        for _, _, dtypes in marks:
            for dtype, found in dtypes.items():
                wanted.setdefault(dtype, set()).update(found)
        self._follow(inputs)
        assert self._layout is not None
        for index, group in enumerate(self._layout.groups):
            wire = wire_dtype(group.dtype, wanted.get(group.dtype, ()))
            if self._buffers[index].wire != wire:
                self._buffers[index] = _Buffers(group, self.rank, self.size, wire)
        return inputs

    def _same_everywhere(self, inputs: Inputs, marks: list[Any]) -> None:
        """Raise on every process when the processes' layouts or settings differ, naming the
        first difference (its description is gathered then: the marks hold only digests)."""
        if any(mark[0] != marks[0][0] for mark in marks):
            described = [(repr(e.key), e.shape, str(e.dtype), e.order) for e in inputs.entries]
            same_everywhere(self.comm.allgather(described), "params (key, shape, dtype, order)",
                            "keys must be equal, with equal reprs, on every process")  # fmt: skip
        same_everywhere([mark[1] for mark in marks], "optimizers (step count, settings)",
                        "change settings on every process alike")  # fmt: skip

    def _agree_on_update(self, params: dict[Any, Any], grads: dict[Any, Any]) -> tuple[Any, bool]:
        """The second agreement, before anything is written: every process's shard validated by
        the wrapped optimizer (check_only), its non-finite verdict, and its sum of squares.
        (global norm or None, whether every process makes the update)."""
        opt, verdict, partial = self.optimizer, True, None
        error: BaseException | None = None
        try:
            if opt.max_grad_norm is not None:
                partial = _core.sum_of_squares([b.shard for b in self._buffers])
            local = None if partial is None else math.sqrt(partial)
            verdict = opt._update(params, grads, norm=local, check_only=True)
        except FloatingPointError as caught:  # nonfinite="raise": say whose average it is
            error = FloatingPointError(
                f"the average of the processes' grads is not finite in the part process "
                f"{self.rank} updates (any process's grads may hold the inf or nan): {caught}"
            )
        except BaseException as caught:
            error = caught
        replies = agree(self.comm, error, (verdict, partial))
        norm = None
        if opt.max_grad_norm is not None:
            total = 0.0
            for _, value in replies:  # in rank order: the same sum on every process
                total += value
            norm = math.sqrt(total)
        return norm, all(made for made, _ in replies)

    def _apply(self, params: dict[Any, Any], grads: dict[Any, Any], norm: Any) -> None:
        """The update of this process's shard, then a third agreement: the check before it sees
        all an update can raise but what only making new state can (no memory for it), or a
        signal. Then the processes' states differ and nothing can undo it: every process raises,
        and this Sharded refuses further updates (load a checkpoint into a new one)."""
        error = None
        try:
            self.optimizer._update(params, grads, norm=norm, known_finite=True)
        except BaseException as caught:
            error = caught
        try:
            agree(self.comm, error)
        except BaseException as failed:
            self._broken = (
                f"a process failed during the update, after the others had updated their shards "
                f"({type(failed).__name__}: {failed}); the processes' params and states now "
                "differ: load a checkpoint with its params (load(path, params))"
            )
            raise

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
                if old is not None:
                    _same_params(old, layout, whole)
                mine = cut(layout, self.rank, whole)
            except ValueError as caught:
                error = ValueError(f"the params changed since the state was made: {caught}")
            agree(self.comm, error)
            _replace_arrays(opt, mine)
        self._set_layout(layout, key)

    def _set_layout(self, layout: Layout | None, key: Any) -> None:
        self._layout, self._layout_key = layout, key
        self._buffers = [] if layout is None else [
            _Buffers(group, self.rank, self.size, group.dtype) for group in layout.groups
        ]  # fmt: skip


def _settings(opt: Optimizer, params: dict[Any, Any]) -> list[tuple[str, str]]:
    """What must be the same on every process, item by item (a difference is named): the step
    count, hyperparameters, counters and options, and each key's per_key settings as resolved (a
    where() predicate has no repr that two processes share)."""
    items = [("steps", opt.steps), *((name, getattr(opt, name)) for name in opt._hyperparameters)]
    items += [(name, value) for name, value in opt._state.counters.items()]
    items += [("max_grad_norm", opt.max_grad_norm), ("nonfinite", opt.nonfinite)]
    if opt._per_key is not None:
        items += [(f"per_key for {k!r}", s) for k, s in opt._per_key.groups(params).items()]
    return [(name, repr(value)) for name, value in items]


@contextlib.contextmanager
def _interrupts_deferred() -> Iterator[None]:
    """Ctrl-C (SIGINT, with Python's own handler) during an update takes effect when the update
    is over: on one process alone it would otherwise leave the others waiting in a collective,
    or its params half gathered. The main thread only (where Python runs handlers)."""
    if (
        threading.current_thread() is not threading.main_thread()
        or signal.getsignal(signal.SIGINT) is not signal.default_int_handler
    ):
        yield
        return
    caught: list[int] = []
    signal.signal(signal.SIGINT, lambda number, frame: caught.append(number))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    if caught:
        raise KeyboardInterrupt


def _same_params(old: Layout, new: Layout, whole: dict[str, Any]) -> None:
    """A key with state keeps its shape and dtype under a new layout (as one process requires);
    its memory order, its place among the keys, and new keys beside it may change."""
    before = {entry.key: entry for entry in old.entries}
    after = {entry.key: entry for entry in new.entries}
    for key in {key: None for arrays in whole.values() for key in arrays}:
        was, now = before.get(key), after.get(key)
        if was is not None and now is not None and (was.shape, was.dtype) != (now.shape, now.dtype):
            raise ValueError(
                f"params[{key!r}] is {now.dtype}{now.shape} but its optimizer state was made for "
                f"{was.dtype}{was.shape}"
            )


def _has_arrays(opt: Optimizer) -> bool:
    return any(opt._state.arrays.values())


def _replace_arrays(opt: Optimizer, arrays: Any) -> None:
    """The state's arrays replaced by the same states re-cut for a new layout (checked by cut)."""
    for name, per_key in arrays.items():
        opt._state.arrays[name] = per_key
