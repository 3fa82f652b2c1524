"""The number of threads update() may use."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

from . import _core

# The largest count the core takes (a C int).
_MAX_THREADS = 2**31 - 1

# The open num_threads() blocks of every Python thread, in the order they were entered, each as
# [count, the count to restore]. One lock guards it with the core's count.
_lock = threading.Lock()
_blocks: list[list[int]] = []


def get_num_threads() -> int:
    """The number of threads update() may use.

    The default is the number of cores this process may run on (its CPU affinity), or the
    environment variable ``FASTOPT_NUM_THREADS`` when it is set at import.
    """
    return _core.get_num_threads()


def set_num_threads(threads: int) -> None:
    """Let update() use up to ``threads`` threads (process-wide, like ``torch.set_num_threads``).

    Small updates use fewer: each thread gets at least 2**15 elements, so a small dict never pays
    for waking threads. Results are bit-identical for every thread count.

    Raises
    ------
    ValueError
        ``threads`` < 1 or > 2**31 - 1.
    TypeError
        ``threads`` is not an integer.
    """
    if isinstance(threads, bool) or not isinstance(threads, int):
        raise TypeError(f"threads must be an int; got {type(threads).__name__}")
    if not 1 <= threads <= _MAX_THREADS:
        raise ValueError(f"threads must be an int from 1 to {_MAX_THREADS}; got {threads}")
    _core.set_num_threads(threads)


@contextlib.contextmanager
def num_threads(threads: int) -> Iterator[None]:
    """Use ``threads`` threads inside a ``with`` block, then restore the previous count.

    The count is process-wide (the core has one pool): it applies to update() calls from every
    Python thread while the block runs. Blocks may overlap across threads; the open blocks form
    one process-wide stack, guarded by a lock:

    - while blocks are open, the count is that of the most recently entered one still open;
    - when the most recent one exits, the count goes back to what it was when that block was
      entered (nested blocks in one thread behave as before);
    - when an older one exits first (another thread's block is still open), the count is left
      to the open block, which inherits the older block's count to restore.

    So once every block has exited, the count is the one from before the first block, whatever
    the order in which the threads left them. A set_num_threads() call inside a block lasts until
    that block exits.

    >>> import fastopt
    >>> with fastopt.num_threads(1):
    ...     fastopt.get_num_threads()
    1

    Raises
    ------
    ValueError, TypeError
        As set_num_threads(); nothing changes.
    """
    with _lock:
        block = [threads, get_num_threads()]
        set_num_threads(threads)  # raises before the block is recorded
        _blocks.append(block)
    try:
        yield
    finally:
        with _lock:
            _leave(block)


def _leave(block: list[int]) -> None:
    index = next(i for i, open_block in enumerate(_blocks) if open_block is block)
    del _blocks[index]
    if index == len(_blocks):  # the most recent block: restore what it found
        _core.set_num_threads(block[1])
    else:  # a newer block is still open: keep its count, and hand it this block's restore
        _blocks[index][1] = block[1]
