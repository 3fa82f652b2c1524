"""torch.optim.SGD."""

from __future__ import annotations

from typing import Any

from .._base import Optimizer
from .._checks import real
from .._settings import Hyperparameter
from .._spec import Scalars, per_step
from .._state import OptimizerState, state
from ._common import l2, nonnegative, on_off


class SGD(Optimizer):
    """torch.optim.SGD: stochastic gradient descent, with optional (Nesterov) momentum.

    Per element, with g the gradient (negated if maximize)::

        g = g + weight_decay*p                          (if weight_decay)
        buf = g on the first step, else momentum*buf + (1-dampening)*g
        g = g + momentum*buf if nesterov else buf       (if momentum)
        p = p - lr*g

    State: ``momentum_buffer`` (when momentum != 0).
    """

    rule = "torch_sgd"
    constant_scalars = False  # the first step differs
    momentum = nonnegative()
    dampening = Hyperparameter(real)
    weight_decay = nonnegative()
    nesterov = on_off()
    maximize = on_off()
    momentum_buffer = state()

    def __init__(
        self,
        lr: float = 1e-3,
        momentum: float = 0,
        dampening: float = 0,
        weight_decay: float = 0,
        nesterov: bool = False,
        *,
        maximize: bool = False,
    ) -> None:
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("nesterov momentum requires a momentum > 0 and zero dampening")
        self.lr, self.momentum, self.dampening = lr, momentum, dampening
        self.weight_decay, self.nesterov, self.maximize = weight_decay, nesterov, maximize

    @staticmethod
    def kernel_options(h: Any, state: OptimizerState) -> dict[str, bool]:
        return {**l2(h), "momentum": h.momentum != 0, "nesterov": h.nesterov}

    @per_step("maximize", "wd", "momentum_coef", "grad_coef", "momentum", "neg_lr")
    def step_scalars(h: Any, state: OptimizerState) -> Scalars:
        first = state.steps == 0
        momentum_coef = 0.0 if first else h.momentum
        grad_coef = 1.0 if first else 1 - h.dampening
        return (
            1.0 if h.maximize else 0.0,
            h.weight_decay,
            momentum_coef,
            grad_coef,
            h.momentum,
            -h.lr,
        )
