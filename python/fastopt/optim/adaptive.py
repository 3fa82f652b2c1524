"""torch.optim.Adagrad, RMSprop and Adadelta: adaptive rates without a momentum moment."""

from __future__ import annotations

from typing import Any

from .._base import Optimizer
from .._checks import closed_unit_interval, finite_nonnegative
from .._settings import Hyperparameter
from .._spec import Scalars, per_step
from .._state import OptimizerState, state
from ._common import l2, nonnegative, on_off


class Adagrad(Optimizer):
    """torch.optim.Adagrad.

    Per element, step t::

        g = g + weight_decay*p                          (if weight_decay)
        clr = lr / (1 + (t-1)*lr_decay)
        sum = sum + g*g
        p = p + (-clr*g) / (sqrt(sum) + eps)

    State: ``sum``, starting at initial_accumulator_value (one value for all keys: it cannot be set
    per key).
    """

    rule = "torch_adagrad"
    constant_scalars = False
    lr_decay = nonnegative()
    weight_decay = nonnegative()
    initial_accumulator_value = Hyperparameter(finite_nonnegative, shared=True)
    eps = nonnegative()
    maximize = on_off()
    sum = state()

    def __init__(
        self,
        lr: float = 1e-2,
        lr_decay: float = 0,
        weight_decay: float = 0,
        initial_accumulator_value: float = 0,
        eps: float = 1e-10,
        *,
        maximize: bool = False,
    ) -> None:
        self.lr, self.lr_decay, self.weight_decay = lr, lr_decay, weight_decay
        self.initial_accumulator_value, self.eps = initial_accumulator_value, eps
        self.maximize = maximize

    @staticmethod
    def kernel_options(h: Any, state: OptimizerState) -> dict[str, bool]:
        return l2(h)

    @staticmethod
    def first_state_value(h: Any) -> float:
        return float(h.initial_accumulator_value)

    @per_step("maximize", "wd", "eps", "neg_clr")
    def step_scalars(h: Any, state: OptimizerState) -> Scalars:
        clr = h.lr / (1 + state.steps * h.lr_decay)
        return (1.0 if h.maximize else 0.0, h.weight_decay, h.eps, -clr)


class RMSprop(Optimizer):
    """torch.optim.RMSprop, with optional centering and momentum.

    Per element::

        g = g + weight_decay*p                          (if weight_decay)
        square_avg = square_avg*alpha + ((1-alpha)*g)*g
        grad_avg = grad_avg + (1-alpha)*(g - grad_avg)  (if centered)
        avg = sqrt(square_avg - grad_avg*grad_avg) if centered else sqrt(square_avg); avg += eps
        buf = buf*momentum + g/avg; p = p - lr*buf      (if momentum > 0)
        p = p + (-lr*g)/avg                             (otherwise)

    State: ``square_avg``, ``grad_avg`` (if centered), ``momentum_buffer`` (if momentum > 0).
    """

    rule = "torch_rmsprop"
    alpha = nonnegative()
    eps = nonnegative()
    weight_decay = nonnegative()
    momentum = nonnegative()
    centered = on_off()
    maximize = on_off()
    square_avg = state()
    grad_avg = state()
    momentum_buffer = state()

    def __init__(
        self,
        lr: float = 1e-2,
        alpha: float = 0.99,
        eps: float = 1e-8,
        weight_decay: float = 0,
        momentum: float = 0,
        centered: bool = False,
        *,
        maximize: bool = False,
    ) -> None:
        self.lr, self.alpha, self.eps, self.weight_decay = lr, alpha, eps, weight_decay
        self.momentum, self.centered, self.maximize = momentum, centered, maximize

    @staticmethod
    def kernel_options(h: Any, state: OptimizerState) -> dict[str, bool]:
        return {**l2(h), "centered": h.centered, "momentum": h.momentum > 0}

    @per_step("maximize", "wd", "alpha", "one_minus_alpha", "eps", "momentum", "neg_lr")
    def step_scalars(h: Any, state: OptimizerState) -> Scalars:
        alpha = h.alpha
        return (
            1.0 if h.maximize else 0.0,
            h.weight_decay,
            alpha,
            1 - alpha,
            h.eps,
            h.momentum,
            -h.lr,
        )


class Adadelta(Optimizer):
    """torch.optim.Adadelta.

    Per element::

        g = g + weight_decay*p                          (if weight_decay)
        square_avg = square_avg*rho + ((1-rho)*g)*g
        delta = (sqrt(acc_delta + eps) / sqrt(square_avg + eps)) * g
        acc_delta = acc_delta*rho + ((1-rho)*delta)*delta
        p = p - lr*delta

    State: ``square_avg``, ``acc_delta``.
    """

    rule = "torch_adadelta"
    rho = Hyperparameter(closed_unit_interval)
    eps = nonnegative()
    weight_decay = nonnegative()
    maximize = on_off()
    square_avg = state()
    acc_delta = state()

    def __init__(
        self,
        lr: float = 1.0,
        rho: float = 0.9,
        eps: float = 1e-6,
        weight_decay: float = 0,
        *,
        maximize: bool = False,
    ) -> None:
        self.lr, self.rho, self.eps, self.weight_decay = lr, rho, eps, weight_decay
        self.maximize = maximize

    @staticmethod
    def kernel_options(h: Any, state: OptimizerState) -> dict[str, bool]:
        return l2(h)

    @per_step("maximize", "wd", "rho", "one_minus_rho", "eps", "neg_lr")
    def step_scalars(h: Any, state: OptimizerState) -> Scalars:
        return (1.0 if h.maximize else 0.0, h.weight_decay, h.rho, 1 - h.rho, h.eps, -h.lr)
