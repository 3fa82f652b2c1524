"""fastopt's thread pool as seen by threadpoolctl, when threadpoolctl is installed.

threadpoolctl is how the scientific Python stack inspects and limits native thread pools
(scikit-learn uses it to keep BLAS and OpenMP from oversubscribing the cores). It finds a pool by
looking through the shared objects loaded in the process for a known file-name prefix and known C
symbols; fastopt's extension exports ``fastopt_get_num_threads`` and ``fastopt_set_num_threads``
for it (src/cpp/bindings/register_threads.cpp). So ``threadpool_info()`` lists fastopt's pool
with ``user_api`` ``"fastopt"``, and ``threadpool_limits(n)`` limits it with the others, or
alone with ``user_api="fastopt"``.

Registering is done once, at ``import fastopt``, and only if threadpoolctl (3.2 or newer, which
has ``register``) can be imported; fastopt never requires it.
"""

from __future__ import annotations

import ctypes

# The extension's file name starts with this; the symbols tell it apart from other packages'
# modules of the same name.
_PREFIX = "_core"
_SYMBOLS = ("fastopt_get_num_threads", "fastopt_set_num_threads")
# The largest count the core takes (a C int); threadpoolctl passes whatever the user asked for.
_MAX_THREADS = 2**31 - 1
_registered = False


def register() -> bool:
    """Make threadpoolctl see fastopt's pool (once); False when threadpoolctl is absent or old."""
    global _registered
    if _registered:
        return True
    try:
        import threadpoolctl
    except ImportError:
        return False
    if not hasattr(threadpoolctl, "register") or not hasattr(threadpoolctl, "LibController"):
        return False

    class FastoptController(threadpoolctl.LibController):
        """fastopt's pool: the thread count update() may use (process-wide)."""

        user_api = "fastopt"
        internal_api = "fastopt"
        filename_prefixes = (_PREFIX,)
        check_symbols = _SYMBOLS

        def get_num_threads(self) -> int | None:
            get = getattr(self.dynlib, _SYMBOLS[0], None)
            if get is None:  # another package's _core module, checked before check_symbols
                return None
            get.restype = ctypes.c_int
            return int(get())

        def set_num_threads(self, num_threads: int) -> None:
            set_ = getattr(self.dynlib, _SYMBOLS[1], None)
            if set_ is not None:
                set_.argtypes = [ctypes.c_int]
                set_(max(1, min(int(num_threads), _MAX_THREADS)))

        def get_version(self) -> str:
            from . import __version__

            return __version__

    threadpoolctl.register(FastoptController)
    _registered = True
    return True
