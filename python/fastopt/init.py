"""Weight initializers from the textbook formulas: Xavier/Glorot, He/Kaiming and LeCun.

Each returns a new array of the given shape, drawn from a NumPy Generator (pass one for
reproducible weights). Fans follow "Deep Learning from Scratch"'s layouts: a 2-D weight is
``(fan_in, fan_out)``, as in ``x @ W``; a convolution filter is ``(FN, C, FH, FW)``, with
``fan_in = C*FH*FW`` and ``fan_out = FN*FH*FW``; a 1-D shape has ``fan_in = fan_out = shape[0]``.

=================  ======================================  =====================================
initializer        uniform on [-limit, limit]              normal with standard deviation
=================  ======================================  =====================================
xavier (Glorot)    limit = gain * sqrt(6 / (in + out))     std = gain * sqrt(2 / (in + out))
he (Kaiming)       limit = sqrt(6 / fan)                   std = sqrt(2 / fan)
lecun              limit = sqrt(3 / fan)                   std = sqrt(1 / fan)
=================  ======================================  =====================================

For He and LeCun, ``fan`` is ``fan_in`` (the default, which keeps the forward pass's variance) or
``fan_out`` (which keeps the backward pass's), chosen with ``mode``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from numpy.typing import DTypeLike

__all__ = [
    "fans",
    "xavier_uniform",
    "xavier_normal",
    "he_uniform",
    "he_normal",
    "lecun_uniform",
    "lecun_normal",
]

Shape = Sequence[int]


def fans(shape: Shape) -> tuple[int, int]:
    """(fan_in, fan_out) of a weight of this shape, in the book's layouts (see the module doc)."""
    shape = tuple(int(n) for n in shape)
    if len(shape) == 0 or any(n <= 0 for n in shape):
        raise ValueError(f"a weight shape needs at least one dimension, all positive; got {shape}")
    if len(shape) == 1:
        return shape[0], shape[0]
    if len(shape) == 2:
        return shape[0], shape[1]
    receptive_field = math.prod(shape[2:])
    return shape[1] * receptive_field, shape[0] * receptive_field


def _fan(shape: Shape, mode: str) -> int:
    fan_in, fan_out = fans(shape)
    if mode == "fan_in":
        return fan_in
    if mode == "fan_out":
        return fan_out
    raise ValueError(f"mode must be 'fan_in' or 'fan_out'; got {mode!r}")


def _draw(
    shape: Shape, dtype: DTypeLike, rng: object, *, uniform: bool, scale: float
) -> np.ndarray:
    """U(-scale, scale) if `uniform`, else N(0, scale^2). `rng` is checked here, so any object."""
    floating = np.dtype(dtype)
    if floating.kind != "f":
        raise TypeError(f"dtype must be a floating-point type; got {floating}")
    rng = np.random.default_rng() if rng is None else rng
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a numpy.random.Generator; got {type(rng).__name__}")
    if uniform:
        values = rng.uniform(-scale, scale, size=tuple(shape))
    else:
        values = rng.normal(0.0, scale, size=tuple(shape))
    return values.astype(floating, copy=False)


def xavier_uniform(
    shape: Shape,
    *,
    gain: float = 1.0,
    dtype: DTypeLike = np.float64,
    rng: np.random.Generator | None = None,
) -> np.ndarray:
    """Glorot & Bengio (2010): U(-limit, limit), limit = gain*sqrt(6/(fan_in + fan_out))."""
    fan_in, fan_out = fans(shape)
    return _draw(shape, dtype, rng, uniform=True, scale=gain * math.sqrt(6.0 / (fan_in + fan_out)))


def xavier_normal(
    shape: Shape,
    *,
    gain: float = 1.0,
    dtype: DTypeLike = np.float64,
    rng: np.random.Generator | None = None,
) -> np.ndarray:
    """Glorot & Bengio (2010): N(0, std^2), std = gain*sqrt(2/(fan_in + fan_out))."""
    fan_in, fan_out = fans(shape)
    return _draw(shape, dtype, rng, uniform=False, scale=gain * math.sqrt(2.0 / (fan_in + fan_out)))


def he_uniform(
    shape: Shape,
    *,
    mode: str = "fan_in",
    dtype: DTypeLike = np.float64,
    rng: np.random.Generator | None = None,
) -> np.ndarray:
    """He et al. (2015), for ReLU: U(-limit, limit), limit = sqrt(6/fan)."""
    return _draw(shape, dtype, rng, uniform=True, scale=math.sqrt(6.0 / _fan(shape, mode)))


def he_normal(
    shape: Shape,
    *,
    mode: str = "fan_in",
    dtype: DTypeLike = np.float64,
    rng: np.random.Generator | None = None,
) -> np.ndarray:
    """He et al. (2015), for ReLU: N(0, std^2), std = sqrt(2/fan). The book's "He initial value"."""
    return _draw(shape, dtype, rng, uniform=False, scale=math.sqrt(2.0 / _fan(shape, mode)))


def lecun_uniform(
    shape: Shape,
    *,
    mode: str = "fan_in",
    dtype: DTypeLike = np.float64,
    rng: np.random.Generator | None = None,
) -> np.ndarray:
    """LeCun et al. (1998): U(-limit, limit), limit = sqrt(3/fan)."""
    return _draw(shape, dtype, rng, uniform=True, scale=math.sqrt(3.0 / _fan(shape, mode)))


def lecun_normal(
    shape: Shape,
    *,
    mode: str = "fan_in",
    dtype: DTypeLike = np.float64,
    rng: np.random.Generator | None = None,
) -> np.ndarray:
    """LeCun et al. (1998): N(0, std^2), std = sqrt(1/fan)."""
    return _draw(shape, dtype, rng, uniform=False, scale=math.sqrt(1.0 / _fan(shape, mode)))
