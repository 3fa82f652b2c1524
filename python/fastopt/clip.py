"""Gradient clipping: by global norm, and by value.

The norm is the L2 norm over every element of every gradient, summed in double over chunks fixed by
the data (see kernels/reduce.hpp), so it has the same bits for every thread count and SIMD level.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, MutableMapping
from typing import Any

import numpy as np

from . import _core

__all__ = ["global_norm", "clip_grad_norm", "clip_grad_value"]

Grads = MutableMapping[Hashable, Any]


def _float_arrays(grads: Grads, writeable: bool) -> dict[Hashable, np.ndarray]:
    arrays = {}
    for key, value in grads.items():
        if not writeable and isinstance(value, np.ndarray) and value.dtype.kind == "f":
            arrays[key] = value  # the common case, in as few operations as possible
            continue
        if not isinstance(value, np.ndarray) or value.dtype.kind not in "fiu":
            if (
                writeable
                or not isinstance(value, (int, float, np.integer, np.floating))
                or isinstance(value, bool)
            ):
                raise TypeError(
                    f"grads[{key!r}] must be a numpy.ndarray of real numbers; got "
                    f"{type(value).__name__}"
                )
        if writeable and not (value.dtype.kind == "f" and value.flags.writeable):
            raise TypeError(
                f"grads[{key!r}] is clipped in place, so it must be a writeable floating-point "
                f"array; got {value.dtype}{'' if value.flags.writeable else ' (read-only)'}"
            )
        arrays[key] = value
    return arrays


def global_norm(grads: Grads) -> float:
    """The L2 norm of all gradients together: sqrt of the sum of every element squared."""
    # The core reads float32/float64 arrays in place and converts anything else (ints, scalars,
    # other layouts) to float64 itself.
    return math.sqrt(_core.sum_of_squares(list(_float_arrays(grads, writeable=False).values())))


def clip_grad_norm(grads: Grads, max_norm: float, *, error_if_nonfinite: bool = False) -> float:
    """Scale every gradient in place so that their global L2 norm is at most max_norm.

    Like torch.nn.utils.clip_grad_norm_: the scale is max_norm / (norm + 1e-6), applied when it
    is below 1. Returns the norm before clipping (inf or nan if a gradient is not finite; the
    grads are then left as they are).

    Raises
    ------
    FloatingPointError
        error_if_nonfinite=True and the norm is not finite; nothing is changed.
    TypeError
        A gradient is not a writeable floating-point ndarray.
    ValueError
        max_norm is not finite and > 0.
    """
    if not (isinstance(max_norm, (int, float)) and math.isfinite(max_norm) and max_norm > 0):
        raise ValueError(f"max_norm must be a finite number > 0; got {max_norm!r}")
    arrays = _float_arrays(grads, writeable=True)
    norm = global_norm(arrays)
    if not math.isfinite(norm):
        if error_if_nonfinite:
            raise FloatingPointError(
                f"the total gradient norm is {norm}: some gradient holds inf or nan"
            )
        return norm
    scale = max_norm / (norm + 1e-6)
    if scale < 1.0:
        for value in arrays.values():
            np.multiply(value, scale, out=value)
    return norm


def clip_grad_value(grads: Grads, clip: float) -> None:
    """Clip every gradient element to [-clip, clip], in place (nan stays nan)."""
    if not (isinstance(clip, (int, float)) and math.isfinite(clip) and clip >= 0):
        raise ValueError(f"clip must be a finite number >= 0; got {clip!r}")
    for value in _float_arrays(grads, writeable=True).values():
        np.clip(value, -clip, clip, out=value)
