"""fastopt: fused, SIMD-vectorized optimizer updates for NumPy arrays.

The six optimizers of "Deep Learning from Scratch" with the book's ``update(params, grads)`` API
and the book's numbers, updated in place by compiled kernels.

The SIMD level is chosen once, at import, as the best this CPU supports; set the environment
variable ``FASTOPT_SIMD`` to ``baseline``, ``avx2`` or ``avx512`` before importing to force one
(a level the CPU lacks makes the import fail with a clear message). Every level gives
bit-identical results.

Large updates run on a persistent thread pool: ``set_num_threads``, ``get_num_threads`` and the
context manager ``num_threads`` control it, and so does threadpoolctl when it is installed
(``threadpool_limits(1)``; ``threadpool_info()`` lists it with user_api "fastopt"). The default is
every core this process may use.
"""

from __future__ import annotations

from . import _threadpoolctl, init, optim, schedules
from ._core import available_simd_levels, simd_level
from ._per_key import where
from ._threads import get_num_threads, num_threads, set_num_threads
from .checkpoint import CheckpointError, load, save
from .clip import clip_grad_norm, clip_grad_value, global_norm
from .ema import EMA
from .optim import (
    LBFGS,
    AdaBelief,
    Adadelta,
    Adamax,
    AdamW,
    ConjugateGradient,
    Lion,
    NAdam,
    RAdam,
)
from .optimizers import SGD, AdaGrad, Adam, Momentum, Nesterov, RMSprop

__all__ = [
    "SGD",
    "Momentum",
    "Nesterov",
    "AdaGrad",
    "RMSprop",
    "Adam",
    "AdamW",
    "Adamax",
    "NAdam",
    "RAdam",
    "Adadelta",
    "Lion",
    "AdaBelief",
    "LBFGS",
    "ConjugateGradient",
    "where",
    "optim",
    "init",
    "schedules",
    "save",
    "load",
    "CheckpointError",
    "clip_grad_norm",
    "clip_grad_value",
    "global_norm",
    "EMA",
    "simd_level",
    "available_simd_levels",
    "get_num_threads",
    "set_num_threads",
    "num_threads",
]
__version__ = "0.1.0"

_threadpoolctl.register()
