"""The collectives of one sharded update, on mpi4py's buffer interface (no pickling of arrays).

Reduce-scatter. Each bucket is exchanged with one ``Alltoallv``: process q receives every other
process's grads of its part and sums them with its own, in rank order: ``((g0 + g1) + g2) / N``,
one element at a time. MPI_Reduce_scatter with MPI_SUM would leave the order of the additions to
the MPI library (it may pick another algorithm, and so another order, for another message size or
process count);
summing the received parts locally makes the result the same run after run, for any thread count,
and equal to that expression computed on one process. The bytes on the wire are a reduce-scatter's:
each process sends every other its part of each bucket.

Half grads (float16, bfloat16) travel as their 16-bit words (MPI has no bfloat16 type, and
ml_dtypes arrays refuse the buffer protocol: their uint16 view shares the memory). They are summed
widened to float32 (exact), and the float32 average is what the shard's update reads: nothing is
rounded back to half before the optimizer sees it.

All-gather. Each process packs its part of the bucket's params, ``Allgatherv`` fills the rest of
the buffer in place (MPI.IN_PLACE), and the other processes' parts are copied into the params.
The params are separate arrays, so a bounded buffer between them and MPI is what keeps a second
full copy of the model out of memory.
"""

from __future__ import annotations

import builtins
from typing import Any

import numpy as np
from mpi4py import MPI

from .._dtypes import is_bfloat16
from ._layout import Copy, Group

_WIRE = {2: MPI.UINT16_T, 4: MPI.FLOAT, 8: MPI.DOUBLE}


def _wire(array: np.ndarray) -> np.ndarray:
    return array.view(np.uint16) if array.dtype.itemsize == 2 else array


def _pack(buffer: np.ndarray, base: int, copies: list[Copy], flats: list[Any]) -> None:
    for index, lo, hi, at in copies:
        np.copyto(buffer[base + at : base + at + hi - lo], flats[index][lo:hi], casting="unsafe")


def _unpack(buffer: np.ndarray, base: int, copies: list[Copy], flats: list[Any]) -> None:
    for index, lo, hi, at in copies:
        np.copyto(flats[index][lo:hi], buffer[base + at : base + at + hi - lo])


def _widen(part: np.ndarray, into: np.ndarray) -> np.ndarray:
    """A half part as float32, exactly (bfloat16: its bits are the top half of a float32's)."""
    if is_bfloat16(part.dtype):
        np.left_shift(part.view(np.uint16), 16, out=into.view(np.uint32), dtype=np.uint32)
    else:
        np.copyto(into, part)
    return into


def reduce_scatter(
    comm: Any, group: Group, grads: list[Any], out: np.ndarray, send: np.ndarray,
    recv: np.ndarray, widened: np.ndarray,
) -> None:  # fmt: skip
    """This process's shard of the average of every process's ``grads`` (flat views, by entry),
    into ``out``, bucket by bucket. The grads travel in the dtype of ``send`` and ``recv`` (see
    wire_dtype); ``out`` is float32 when that is a half one, else the same."""
    ranks, me = comm.Get_size(), comm.Get_rank()
    kind = _WIRE[send.dtype.itemsize]
    for bucket in group.buckets:
        mine = bucket.counts[me]
        received = [p * mine for p in range(ranks)]
        # This process's own part goes straight to its place among the received ones, not
        # through MPI: one copy fewer (counts of 0 to and from itself).
        sends, receives = list(bucket.counts), [mine] * ranks
        sends[me] = receives[me] = 0
        for q in range(ranks):
            if q != me:
                _pack(send, bucket.displs[q], bucket.copies[q], grads)
        _pack(recv, received[me], bucket.copies[me], grads)
        comm.Alltoallv(
            [_wire(send), sends, bucket.displs, kind], [_wire(recv), receives, received, kind]
        )
        parts = [recv[at : at + mine] for at in received]
        half = send.dtype.itemsize == 2
        _average(parts, out[bucket.at : bucket.at + mine], widened[:mine] if half else None)


def _average(parts: list[np.ndarray], total: np.ndarray, widened: np.ndarray | None) -> None:
    """((parts[0] + parts[1]) + ...) / len(parts) into total, element by element, in this order
    (half parts widened to float32 first)."""
    if widened is not None:
        _widen(parts[0], total)
        for part in parts[1:]:
            np.add(total, _widen(part, widened), out=total)
    elif len(parts) == 1:
        np.copyto(total, parts[0])
    else:
        np.add(parts[0], parts[1], out=total)
        for part in parts[2:]:
            np.add(total, part, out=total)
    if len(parts) > 1:  # x / 1 is x: no pass for one process
        np.divide(total, len(parts), out=total)


def all_gather(comm: Any, group: Group, params: list[Any], buffer: np.ndarray) -> None:
    """Every process's updated part of the params (flat views, by entry) into every process's,
    through ``buffer`` (of the params' dtype)."""
    ranks, me = comm.Get_size(), comm.Get_rank()
    if ranks == 1:
        return
    kind = _WIRE[buffer.dtype.itemsize]
    for bucket in group.buckets:
        _pack(buffer, bucket.displs[me], bucket.copies[me], params)
        comm.Allgatherv(MPI.IN_PLACE, [_wire(buffer), bucket.counts, bucket.displs, kind])
        for q in range(ranks):
            if q != me:
                _unpack(buffer, bucket.displs[q], bucket.copies[q], params)


def agree(comm: Any, error: BaseException | None, value: Any = None) -> list[Any]:
    """Every process's ``value``, in rank order, once every process has got here without an error.
    If any process reports one, every process raises: its own error where it has one, else the
    first failing process's, as the same built-in type with the message prefixed by its rank."""
    reported = None if error is None else (_builtin_base(error), type(error).__name__, str(error))
    replies = comm.allgather((reported, value))
    for rank, (failure, _) in enumerate(replies):
        if failure is None:
            continue
        if error is not None:
            raise error
        base, name, message = failure
        raise getattr(builtins, base)(f"on process {rank}: {name}: {message}")
    return [value for _, value in replies]


def _builtin_base(error: BaseException) -> str:
    """The nearest built-in Exception class of ``error`` (CheckpointError: ValueError), or
    RuntimeError for what is not an Exception (KeyboardInterrupt, SystemExit on one process:
    the others raise, and do not wait for it)."""
    for kind in type(error).__mro__:
        if getattr(builtins, kind.__name__, None) is kind and issubclass(kind, Exception):
            return kind.__name__
    return "RuntimeError"


def wire_dtype(param: np.dtype[Any], grads: Any) -> np.dtype[Any]:
    """The dtype a group's grads travel and are summed in: the param's, or a wider one that every
    grad needs so that nothing is rounded before the average one process would take of it
    (float32 grads of bfloat16 params go as float32); two different half dtypes meet in float32.
    ``grads``: the grads' dtypes, of every process."""
    needed = {param} | {_needed(param, np.dtype(dtype)) for dtype in grads}
    if len(needed) == 1:
        return param
    widest = max(dtype.itemsize for dtype in needed)
    return np.dtype(np.float64) if widest == 8 else np.dtype(np.float32)


def _needed(param: np.dtype[Any], grad: np.dtype[Any]) -> np.dtype[Any]:
    """What a grad of this dtype must travel in, for params of that one: a half grad as itself,
    a float32 one as float32, wider floats as float64 (what the kernels compute in at most:
    longdouble is not carried further); integers as the params' dtype, or float32 for half
    params (an int32 grad of 2049 is not a float16)."""
    if grad.kind == "f" or is_bfloat16(grad):
        return grad if grad.itemsize <= 4 else np.dtype(np.float64)
    return np.dtype(np.float32) if param.itemsize == 2 else param


def same_everywhere(values: list[Any], what: str, advice: str) -> None:
    """Raise on every process when the processes' ``values`` (one each, in rank order) differ,
    naming the first difference from process 0's (every process has every value, so every
    process raises the same error)."""
    for rank, value in enumerate(values):
        if value == values[0]:
            continue
        mine, first = value, values[0]
        if isinstance(value, list) and isinstance(first, list):  # entry by entry: the first
            at = next((i for i, (a, b) in enumerate(zip(value, first)) if a != b),
                      min(len(value), len(first)))  # fmt: skip
            mine = value[at] if at < len(value) else "nothing"
            first = values[0][at] if at < len(values[0]) else "nothing"
            what = f"{what}, at #{at}"
        raise ValueError(
            f"the processes' {what} differ: process {rank} has {_short(mine)} where process 0 "
            f"has {_short(first)}; {advice}"
        )


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 300 else text[:297] + "..."
