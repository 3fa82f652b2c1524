"""The six optimizers of "Deep Learning from Scratch" (common/optimizer.py), on fused kernels.

Same class names, positional arguments, defaults, state attributes and numbers as the book: in
float64 every param and state is bit-identical to the book's NumPy code (fastopt.reference). The
book's constant 1e-7 is the keyword ``eps``. Each class is a configuration of the machinery in
``_base``: its rule (src/cpp/kernels/rules/book.hpp), its hyperparameters, its states and its
per-step scalars.
"""

from __future__ import annotations

import math
from typing import Any

from ._base import Optimizer
from ._checks import positive, unit_interval
from ._settings import Hyperparameter
from ._spec import Scalars, per_step
from ._state import OptimizerState, StepView, state

__all__ = ["SGD", "Momentum", "Nesterov", "AdaGrad", "RMSprop", "Adam"]


class SGD(Optimizer):
    """Stochastic gradient descent: ``p = p - lr*g``.

    Parameters
    ----------
    lr : float
        Learning rate, finite and >= 0 (or a schedule, see fastopt.schedules).
    """

    rule = "sgd"

    def __init__(self, lr: float = 0.01) -> None:
        self.lr = lr

    @per_step("lr")
    def step_scalars(h: Any, state: OptimizerState) -> Scalars:
        return (h.lr,)


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

    rule = "momentum"
    momentum = Hyperparameter(unit_interval)
    v = state()

    def __init__(self, lr: float = 0.01, momentum: float = 0.9) -> None:
        self.lr = lr
        self.momentum = momentum

    @per_step("momentum", "lr")
    def step_scalars(h: Any, state: OptimizerState) -> Scalars:
        return (h.momentum, h.lr)


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

    rule = "nesterov"
    momentum = Hyperparameter(unit_interval)
    v = state()

    def __init__(self, lr: float = 0.01, momentum: float = 0.9) -> None:
        self.lr = lr
        self.momentum = momentum

    @per_step("momentum_sq", "lr_ahead", "momentum", "lr")
    def step_scalars(h: Any, state: OptimizerState) -> Scalars:
        momentum = h.momentum
        return (momentum * momentum, (1 + momentum) * h.lr, momentum, h.lr)


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

    rule = "adagrad"
    eps = Hyperparameter(positive)
    h = state()

    def __init__(self, lr: float = 0.01, *, eps: float = 1e-7) -> None:
        self.lr = lr
        self.eps = eps

    @per_step("lr", "eps")
    def step_scalars(h: Any, state: OptimizerState) -> Scalars:
        return (h.lr, h.eps)


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

    rule = "rmsprop"
    decay_rate = Hyperparameter(unit_interval)
    eps = Hyperparameter(positive)
    h = state()

    def __init__(self, lr: float = 0.01, decay_rate: float = 0.99, *, eps: float = 1e-7) -> None:
        self.lr = lr
        self.decay_rate = decay_rate
        self.eps = eps

    @per_step("decay_rate", "one_minus_decay", "lr", "eps")
    def step_scalars(h: Any, state: OptimizerState) -> Scalars:
        return (h.decay_rate, 1 - h.decay_rate, h.lr, h.eps)


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
        The number of update() calls so far (also ``steps``).
    m, v : dict
        The first and second moment of each key.
    """

    rule = "adam"
    step_name = "iter"
    constant_scalars = False  # lr_t changes every step
    beta1 = Hyperparameter(unit_interval)
    beta2 = Hyperparameter(unit_interval)
    eps = Hyperparameter(positive)
    m = state()
    v = state()
    iter = StepView()

    def __init__(
        self, lr: float = 0.001, beta1: float = 0.9, beta2: float = 0.999, *, eps: float = 1e-7
    ) -> None:
        self.lr = lr
        self.beta1 = beta1
        self.beta2 = beta2
        self.eps = eps

    @per_step("one_minus_beta1", "one_minus_beta2", "lr_t", "eps")
    def step_scalars(h: Any, state: OptimizerState) -> Scalars:
        beta1, beta2, step = h.beta1, h.beta2, state.steps + 1
        lr_t = h.lr * math.sqrt(1.0 - beta2**step) / (1.0 - beta1**step)
        return (1 - beta1, 1 - beta2, lr_t, h.eps)
