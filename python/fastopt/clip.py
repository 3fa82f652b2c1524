"""Gradient clipping: by global norm, and by value.

The norm is the L2 norm over every element of every gradient, summed in double over chunks fixed by
the data (see kernels/reduce.hpp), so it has the same bits for every thread count and SIMD level.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Hashable, MutableMapping
from typing import Any

import numpy as np

from . import _core
from ._dtypes import is_floating, is_half
from ._tensors import as_array

__all__ = ["global_norm", "clip_grad_norm", "clip_grad_value"]

Grads = MutableMapping[Hashable, Any]


def _is_real_scalar(value: Any) -> bool:
    """A Python or NumPy real number (not a bool; a bfloat16 scalar too): a grad update() takes
    for a scalar param."""
    if isinstance(value, np.generic) and is_floating(value.dtype):
        return True
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(
        value, (bool, np.bool_)
    )


def _readable(grads: Grads) -> list[Any]:
    """The grads the norm reads: real arrays of any layout and dtype, and real scalars."""
    values = []
    for key, value in grads.items():
        if not isinstance(value, np.ndarray):
            value = _view_if_tensor(value, key)
        if isinstance(value, np.ndarray) and is_floating(value.dtype):
            values.append(value)  # the common case, in as few operations as possible
        elif (isinstance(value, np.ndarray) and value.dtype.kind in "iu") or _is_real_scalar(value):
            values.append(value)
        else:
            raise TypeError(
                f"grads[{key!r}] must be a numpy.ndarray of real numbers or a real number; got "
                f"{type(value).__name__}"
            )
    return values


def _view_if_tensor(value: Any, key: Hashable) -> Any:
    """A torch tensor's NumPy view (the same memory: clipping scales the tensor itself), or the
    value as it is."""
    view = as_array(value, "grads", key, writes=False)
    return value if view is None else view


def _clippable(grads: Grads) -> tuple[dict[Hashable, np.ndarray], dict[Hashable, Any]]:
    """The grads to clip: ({key: array clipped in place}, {key: scalar replaced in the dict}).

    Checked before anything is clipped, so a bad grad changes nothing."""
    arrays, scalars = {}, {}
    for key, value in grads.items():
        value = _view_if_tensor(value, key)
        if _is_real_scalar(value):
            scalars[key] = value
        elif not isinstance(value, np.ndarray):
            raise TypeError(
                f"grads[{key!r}] must be a numpy.ndarray or torch tensor of real numbers, or a "
                f"real number; got {type(value).__name__}"
            )
        elif not (is_floating(value.dtype) and value.flags.writeable):
            raise TypeError(
                f"grads[{key!r}] is clipped in place, so it must be a writeable floating-point "
                f"array; got {value.dtype}{'' if value.flags.writeable else ' (read-only)'}"
            )
        else:
            arrays[key] = value
    return arrays, scalars


def _positive_real(name: str, value: Any, *, zero: bool) -> float:
    """max_norm (> 0) or clip (>= 0): any finite real number, NumPy's included, but a bool."""
    real = isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))
    if not (real and math.isfinite(value) and (value > 0 or (zero and value == 0))):
        raise ValueError(f"{name} must be a finite number {'>=' if zero else '>'} 0; got {value!r}")
    return float(value)


def global_norm(grads: Grads) -> float:
    """The L2 norm of all gradients together: sqrt of the sum of every element squared."""
    # The core reads float32/float64 arrays in place and converts anything else (ints, scalars,
    # other layouts) to float64 itself.
    return math.sqrt(_core.sum_of_squares(_readable(grads)))


def clip_grad_norm(grads: Grads, max_norm: float, *, error_if_nonfinite: bool = False) -> float:
    """Scale every gradient in place so that their global L2 norm is at most max_norm.

    Like torch.nn.utils.clip_grad_norm_: the scale is max_norm / (norm + 1e-6), applied when it
    is below 1. Returns the norm before clipping (inf or nan if a gradient is not finite; the
    grads are then left as they are). Arrays are scaled in place; a scalar grad (a Python or
    NumPy number, as update() takes for a scalar param) is replaced in the dict by its clipped
    value, a NumPy float64 scalar, as update() replaces a scalar param.

    Raises
    ------
    FloatingPointError
        error_if_nonfinite=True and the norm is not finite; nothing is changed.
    TypeError
        A gradient is neither a writeable floating-point ndarray nor a real number.
    ValueError
        max_norm is not a finite real number > 0 (a bool is not a number here).
    """
    max_norm = _positive_real("max_norm", max_norm, zero=False)
    arrays, scalars = _clippable(grads)
    norm = math.sqrt(_core.sum_of_squares([*arrays.values(), *scalars.values()]))
    if not math.isfinite(norm):
        if error_if_nonfinite:
            raise FloatingPointError(
                f"the total gradient norm is {norm}: some gradient holds inf or nan"
            )
        return norm
    scale = max_norm / (norm + 1e-6)
    if scale < 1.0:
        # Each array once: a grad shared by two keys (tied weights) is one gradient in memory,
        # and the fused max_grad_norm path scales each key's reads once too.
        for value in {id(value): value for value in arrays.values()}.values():
            np.multiply(value, _factor(value, scale), out=value, casting="same_kind")
        for key, value in scalars.items():
            grads[key] = np.float64(value) * scale
    return norm


def _factor(array: np.ndarray, value: float) -> Any:
    """`value` for arithmetic with `array`: a float32 for a half array (NumPy would otherwise round
    a Python float to float16 or bfloat16 first: a clipping scale under 6e-8 became 0), computed
    in float32 and rounded once into the array, as the fused max_grad_norm does."""
    return np.float32(value) if is_half(array.dtype) else value


def clip_grad_value(grads: Grads, clip: float) -> None:
    """Clip every gradient element to [-clip, clip], in place (nan stays nan); a scalar grad is
    replaced in the dict by its clipped value, a NumPy float64 scalar."""
    clip = _positive_real("clip", clip, zero=True)
    arrays, scalars = _clippable(grads)
    for value in arrays.values():
        bound = _factor(value, clip)
        np.clip(value, -bound, bound, out=value, casting="same_kind")
    for key, value in scalars.items():
        grads[key] = np.clip(np.float64(value), -clip, clip)
