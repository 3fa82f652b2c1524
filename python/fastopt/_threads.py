"""The number of threads update() may use."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

from . import _core

_lock = threading.Lock()


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
        ``threads`` < 1.
    TypeError
        ``threads`` is not an integer.
    """
    if isinstance(threads, bool) or not isinstance(threads, int):
        raise TypeError(f"threads must be an int; got {type(threads).__name__}")
    _core.set_num_threads(threads)


@contextlib.contextmanager
def num_threads(threads: int) -> Iterator[None]:
    """Use ``threads`` threads inside a ``with`` block, then restore the previous count.

    The setting is process-wide: it applies to update() calls from every Python thread while the
    block runs.

    >>> import fastopt
    >>> with fastopt.num_threads(1):
    ...     fastopt.get_num_threads()
    1
    """
    with _lock:
        previous = get_num_threads()
        set_num_threads(threads)
    try:
        yield
    finally:
        with _lock:
            set_num_threads(previous)
