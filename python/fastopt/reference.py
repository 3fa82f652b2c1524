"""Plain NumPy ground truth for every fastopt algorithm: obvious code, no tricks.

Each class has the name, signature and state attributes of its fastopt counterpart. It is written
straight from the formulas, one NumPy operation per step in the documented order. It is the oracle
of the tests and the baseline of the benchmarks.

For the book's six classes it gives the numbers of common/optimizer.py of "Deep Learning from
Scratch" (oreilly-japan/deep-learning-from-scratch), with three documented points that fastopt
shares:

- a grad is first converted to its param's dtype;
- a scalar param comes back as a NumPy float64 scalar;
- Nesterov updates the param with the OLD velocity, as the book's text derives it
  (p += momentum**2 * v_old - (1 + momentum) * lr * g, Bengio et al.'s form of NAG), exactly as
  the book repository's current common/optimizer.py does (since its commit "Fix Nesterov update
  function"). The repository's first version updated v first and stepped with the new v; that
  gives other numbers, and fastopt does not follow it.
"""

from __future__ import annotations

import math
from collections.abc import Hashable

import numpy as np

from ._types import Grads, Params

__all__ = ["SGD", "Momentum", "Nesterov", "AdaGrad", "RMSprop", "Adam", "optim"]


def _param(params: Params, key: Hashable) -> np.ndarray:
    """The param as an array to update in place (a 0-d float64 copy for a scalar param)."""
    value = params[key]
    return value if isinstance(value, np.ndarray) else np.array(value, dtype=np.float64)


def _grad(grads: Grads, key: Hashable, param: np.ndarray) -> np.ndarray:
    return np.asarray(grads[key], dtype=param.dtype)


def _store(params: Params, key: Hashable, param: np.ndarray) -> None:
    """Put a scalar param's new value back; arrays were updated in place already."""
    if not isinstance(params[key], np.ndarray):
        params[key] = param[()]


def _state(states: dict[Hashable, np.ndarray], key: Hashable, param: np.ndarray) -> np.ndarray:
    if key not in states:
        states[key] = np.zeros_like(param)
    return states[key]


class SGD:
    def __init__(self, lr: float = 0.01) -> None:
        self.lr = lr

    def update(self, params: Params, grads: Grads) -> None:
        for key in params:
            p = _param(params, key)
            g = _grad(grads, key, p)
            p[...] = p - self.lr * g
            _store(params, key, p)


class Momentum:
    def __init__(self, lr: float = 0.01, momentum: float = 0.9) -> None:
        self.lr = lr
        self.momentum = momentum
        self.v: dict[Hashable, np.ndarray] = {}

    def update(self, params: Params, grads: Grads) -> None:
        for key in params:
            p = _param(params, key)
            g = _grad(grads, key, p)
            v = _state(self.v, key, p)
            v[...] = self.momentum * v - self.lr * g
            p[...] = p + v
            _store(params, key, p)


class Nesterov:
    def __init__(self, lr: float = 0.01, momentum: float = 0.9) -> None:
        self.lr = lr
        self.momentum = momentum
        self.v: dict[Hashable, np.ndarray] = {}

    def update(self, params: Params, grads: Grads) -> None:
        for key in params:
            p = _param(params, key)
            g = _grad(grads, key, p)
            v = _state(self.v, key, p)
            p[...] = p + self.momentum * self.momentum * v
            p[...] = p - (1 + self.momentum) * self.lr * g
            v[...] = self.momentum * v
            v[...] = v - self.lr * g
            _store(params, key, p)


class AdaGrad:
    def __init__(self, lr: float = 0.01, *, eps: float = 1e-7) -> None:
        self.lr = lr
        self.eps = eps
        self.h: dict[Hashable, np.ndarray] = {}

    def update(self, params: Params, grads: Grads) -> None:
        for key in params:
            p = _param(params, key)
            g = _grad(grads, key, p)
            h = _state(self.h, key, p)
            h[...] = h + g * g
            p[...] = p - self.lr * g / (np.sqrt(h) + self.eps)
            _store(params, key, p)


class RMSprop:
    def __init__(self, lr: float = 0.01, decay_rate: float = 0.99, *, eps: float = 1e-7) -> None:
        self.lr = lr
        self.decay_rate = decay_rate
        self.eps = eps
        self.h: dict[Hashable, np.ndarray] = {}

    def update(self, params: Params, grads: Grads) -> None:
        for key in params:
            p = _param(params, key)
            g = _grad(grads, key, p)
            h = _state(self.h, key, p)
            h[...] = h * self.decay_rate
            h[...] = h + (1 - self.decay_rate) * g * g
            p[...] = p - self.lr * g / (np.sqrt(h) + self.eps)
            _store(params, key, p)


class Adam:
    def __init__(
        self, lr: float = 0.001, beta1: float = 0.9, beta2: float = 0.999, *, eps: float = 1e-7
    ) -> None:
        self.lr = lr
        self.beta1 = beta1
        self.beta2 = beta2
        self.eps = eps
        self.iter = 0
        self.m: dict[Hashable, np.ndarray] = {}
        self.v: dict[Hashable, np.ndarray] = {}

    def update(self, params: Params, grads: Grads) -> None:
        self.iter += 1
        lr_t = self.lr * math.sqrt(1.0 - self.beta2**self.iter) / (1.0 - self.beta1**self.iter)
        for key in params:
            p = _param(params, key)
            g = _grad(grads, key, p)
            m = _state(self.m, key, p)
            v = _state(self.v, key, p)
            m[...] = m + (1 - self.beta1) * (g - m)
            v[...] = v + (1 - self.beta2) * (g * g - v)
            p[...] = p - lr_t * m / (np.sqrt(v) + self.eps)
            _store(params, key, p)


# The torch.optim-style algorithms (fastopt.optim) in plain NumPy: fastopt.reference.optim.Adam.
from . import _reference_optim as optim  # noqa: E402
