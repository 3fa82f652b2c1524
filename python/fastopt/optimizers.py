"""The six optimizers of "Deep Learning from Scratch" (common/optimizer.py), on fused kernels.

Same class names, positional arguments, defaults, state attributes and numbers as the book: in
float64 every param and state is bit-identical to the book's NumPy code (fastopt.reference). The
book's constant 1e-7 is the keyword ``eps``.
"""

from __future__ import annotations

import math

from ._base import Optimizer, learning_rate, positive, unit_interval

__all__ = ["SGD", "Momentum", "Nesterov", "AdaGrad", "RMSprop", "Adam"]


class SGD(Optimizer):
    """Stochastic gradient descent: ``p = p - lr*g``.

    Parameters
    ----------
    lr : float
        Learning rate, finite and >= 0.
    """

    _kernel = "sgd"
    _hyperparameters = {"lr": learning_rate}

    def __init__(self, lr: float = 0.01) -> None:
        self.lr = lr

    def _step_scalars(self) -> tuple[float, ...]:
        return (self.lr,)


class Momentum(Optimizer):
    """Momentum SGD: ``v = momentum*v - lr*g; p = p + v``.

    Parameters
    ----------
    lr : float
        Learning rate, finite and >= 0.
    momentum : float
        In [0, 1).

    Attributes
    ----------
    v : dict
        The velocity of each key, created (zeros like the param) at its first update.
    """

    _kernel = "momentum"
    _state_names = ("v",)
    _hyperparameters = {"lr": learning_rate, "momentum": unit_interval}

    def __init__(self, lr: float = 0.01, momentum: float = 0.9) -> None:
        self.lr = lr
        self.momentum = momentum
        self._init_state()

    def _step_scalars(self) -> tuple[float, ...]:
        return (self.momentum, self.lr)


class Nesterov(Optimizer):
    """Nesterov's accelerated gradient, in the book's form (the param step uses the old ``v``)::

        p = p + (momentum*momentum)*v
        p = p - ((1+momentum)*lr)*g
        v = momentum*v - lr*g

    Parameters
    ----------
    lr : float
        Learning rate, finite and >= 0.
    momentum : float
        In [0, 1).

    Attributes
    ----------
    v : dict
        The velocity of each key.
    """

    _kernel = "nesterov"
    _state_names = ("v",)
    _hyperparameters = {"lr": learning_rate, "momentum": unit_interval}

    def __init__(self, lr: float = 0.01, momentum: float = 0.9) -> None:
        self.lr = lr
        self.momentum = momentum
        self._init_state()

    def _step_scalars(self) -> tuple[float, ...]:
        momentum = self.momentum
        return (momentum * momentum, (1 + momentum) * self.lr, momentum, self.lr)


class AdaGrad(Optimizer):
    """AdaGrad: ``h = h + g*g; p = p - (lr*g)/(sqrt(h)+eps)``.

    Parameters
    ----------
    lr : float
        Learning rate, finite and >= 0.
    eps : float, keyword-only
        Added to the denominator; finite and > 0. The book's 1e-7.

    Attributes
    ----------
    h : dict
        The sum of squared gradients of each key.
    """

    _kernel = "adagrad"
    _state_names = ("h",)
    _hyperparameters = {"lr": learning_rate, "eps": positive}

    def __init__(self, lr: float = 0.01, *, eps: float = 1e-7) -> None:
        self.lr = lr
        self.eps = eps
        self._init_state()

    def _step_scalars(self) -> tuple[float, ...]:
        return (self.lr, self.eps)


class RMSprop(Optimizer):
    """RMSprop::

        h = h*decay_rate + ((1-decay_rate)*g)*g
        p = p - (lr*g)/(sqrt(h)+eps)

    Parameters
    ----------
    lr : float
        Learning rate, finite and >= 0.
    decay_rate : float
        In [0, 1).
    eps : float, keyword-only
        Added to the denominator; finite and > 0. The book's 1e-7.

    Attributes
    ----------
    h : dict
        The moving average of squared gradients of each key.
    """

    _kernel = "rmsprop"
    _state_names = ("h",)
    _hyperparameters = {"lr": learning_rate, "decay_rate": unit_interval, "eps": positive}

    def __init__(self, lr: float = 0.01, decay_rate: float = 0.99, *, eps: float = 1e-7) -> None:
        self.lr = lr
        self.decay_rate = decay_rate
        self.eps = eps
        self._init_state()

    def _step_scalars(self) -> tuple[float, ...]:
        return (self.decay_rate, 1 - self.decay_rate, self.lr, self.eps)


class Adam(Optimizer):
    """Adam, in the book's form: both bias corrections are folded into ``lr_t``::

        iter += 1   (once per update() call)
        lr_t = lr * sqrt(1 - beta2**iter) / (1 - beta1**iter)      (in double)
        m = m + (1-beta1)*(g-m)
        v = v + (1-beta2)*(g*g-v)
        p = p - (lr_t*m)/(sqrt(v)+eps)

    Parameters
    ----------
    lr : float
        Learning rate, finite and >= 0.
    beta1, beta2 : float
        In [0, 1).
    eps : float, keyword-only
        Added to the denominator; finite and > 0. The book's 1e-7.

    Attributes
    ----------
    iter : int
        The number of update() calls so far.
    m, v : dict
        The first and second moment of each key.
    """

    _kernel = "adam"
    _state_names = ("m", "v")
    _constant_scalars = False  # lr_t changes every step
    _counters = ("_updates", "iter")
    _hyperparameters = {
        "lr": learning_rate,
        "beta1": unit_interval,
        "beta2": unit_interval,
        "eps": positive,
    }

    def __init__(
        self, lr: float = 0.001, beta1: float = 0.9, beta2: float = 0.999, *, eps: float = 1e-7
    ) -> None:
        self.lr = lr
        self.beta1 = beta1
        self.beta2 = beta2
        self.eps = eps
        self.iter = 0
        self._init_state()

    def _step_scalars(self) -> tuple[float, ...]:
        beta1, beta2, step = self.beta1, self.beta2, self.iter + 1
        lr_t = self.lr * math.sqrt(1.0 - beta2**step) / (1.0 - beta1**step)
        return (1 - beta1, 1 - beta2, lr_t, self.eps)

    def _advance(self) -> None:
        # iter has no check: skip the validating __setattr__ on this per-call path.
        self.__dict__["iter"] += 1
