"""torch.optim.NAdam and RAdam: Adam with Nesterov momentum, and rectified Adam."""

from __future__ import annotations

from typing import Any

from .._base import Optimizer
from .._checks import betas, finite_nonnegative
from .._settings import Hyperparameter
from .._spec import Scalars, per_step
from .._state import OptimizerState, counter, state
from ._common import beta_pair, l2, nonnegative, on_off


def _mu(beta1: float, momentum_decay: float, step: int) -> float:
    """NAdam's momentum coefficient at a step."""
    return beta1 * (1.0 - 0.5 * (0.96 ** (step * momentum_decay)))


class NAdam(Optimizer):
    """torch.optim.NAdam: Adam with Nesterov momentum and momentum decay.

    Per step t: mu_t = beta1*(1 - 0.5*0.96**(t*momentum_decay)), mu_product = prod of mu_1..mu_t.
    Per element::

        p = p*(1 - lr*weight_decay)                     (if decoupled_weight_decay)
        g = g + weight_decay*p                          (if weight_decay, not decoupled)
        m = m + (1-beta1)*(g - m);  v = v*beta2 + ((1-beta2)*g)*g
        denom = sqrt(v / (1-beta2**t)) + eps
        p = p + (-lr*(1-mu_t)/(1-mu_product) * g) / denom
        p = p + (-lr*mu_{t+1}/(1-mu_product*mu_{t+1}) * m) / denom

    State: ``exp_avg``, ``exp_avg_sq``; and ``mu_product`` (a float, per optimizer).
    """

    rule = "torch_nadam"
    constant_scalars = False
    counters = {"mu_product": 1.0}
    betas = Hyperparameter(betas, shared=True)  # they drive the shared mu_product
    eps = nonnegative()
    weight_decay = nonnegative()
    momentum_decay = Hyperparameter(finite_nonnegative, shared=True)
    decoupled_weight_decay = on_off()
    maximize = on_off()
    exp_avg = state()
    exp_avg_sq = state()
    mu_product = counter()

    def __init__(
        self,
        lr: float = 2e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0,
        momentum_decay: float = 4e-3,
        *,
        decoupled_weight_decay: bool = False,
        maximize: bool = False,
    ) -> None:
        self.lr, self.betas, self.eps, self.weight_decay = lr, betas, eps, weight_decay
        self.momentum_decay, self.decoupled_weight_decay = momentum_decay, decoupled_weight_decay
        self.maximize = maximize

    @staticmethod
    def kernel_options(h: Any, state: OptimizerState) -> dict[str, bool]:
        return l2(h)

    @per_step(
        "maximize", "wd", "decay", "one_minus_beta1", "beta2", "one_minus_beta2",
        "bias_correction2", "eps", "grad_coef", "avg_coef",
    )  # fmt: skip
    def step_scalars(h: Any, state: OptimizerState) -> Scalars:
        (beta1, beta2), step, lr = h.betas, state.steps + 1, h.lr
        mu = _mu(beta1, h.momentum_decay, step)
        mu_next = _mu(beta1, h.momentum_decay, step + 1)
        mu_product = state.counters["mu_product"] * mu
        mu_product_next = mu_product * mu_next
        return (
            1.0 if h.maximize else 0.0,
            h.weight_decay,
            1 - h.lr * h.weight_decay if h.decoupled_weight_decay else 1.0,
            1 - beta1,
            beta2,
            1 - beta2,
            1 - beta2**step,
            h.eps,
            -lr * (1.0 - mu) / (1.0 - mu_product),
            (-lr * mu_next) / (1.0 - mu_product_next),
        )

    @staticmethod
    def next_counters(h: Any, state: OptimizerState) -> dict[str, float]:
        mu = _mu(h.betas[0], h.momentum_decay, state.steps + 1)
        return {"mu_product": state.counters["mu_product"] * mu}


def _rectification(beta2: float, step: int) -> tuple[float, float]:
    """RAdam's (rho_inf, rho_t) at a step: the update is rectified when rho_t > 5."""
    rho_inf = 2 / (1 - beta2) - 1
    return rho_inf, rho_inf - 2 * step * (beta2**step) / (1 - beta2**step)


class RAdam(Optimizer):
    """torch.optim.RAdam: Adam with a rectified adaptive learning rate.

    Per step t: rho_inf = 2/(1-beta2) - 1, rho_t = rho_inf - 2t*beta2**t/(1-beta2**t); the update is
    rectified when rho_t > 5. Per element::

        p = p*(1 - lr*weight_decay)                     (if decoupled_weight_decay)
        g = g + weight_decay*p                          (if weight_decay, not decoupled)
        m = m + (1-beta1)*(g - m);  v = v*beta2 + ((1-beta2)*g)*g
        step = (m / (1-beta1**t)) * lr
        step = (step * (sqrt(1-beta2**t) / (sqrt(v) + eps))) * rect      (if rho_t > 5)
        p = p - step

    State: ``exp_avg``, ``exp_avg_sq``.
    """

    rule = "torch_radam"
    constant_scalars = False
    betas = beta_pair()
    eps = nonnegative()
    weight_decay = nonnegative()
    decoupled_weight_decay = on_off()
    maximize = on_off()
    exp_avg = state()
    exp_avg_sq = state()

    def __init__(
        self,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0,
        *,
        decoupled_weight_decay: bool = False,
        maximize: bool = False,
    ) -> None:
        self.lr, self.betas, self.eps, self.weight_decay = lr, betas, eps, weight_decay
        self.decoupled_weight_decay, self.maximize = decoupled_weight_decay, maximize

    @staticmethod
    def kernel_options(h: Any, state: OptimizerState) -> dict[str, bool]:
        return l2(h)

    @per_step(
        "maximize", "wd", "decay", "one_minus_beta1", "beta2", "one_minus_beta2",
        "bias_correction1", "lr", "bias_correction2_sqrt", "eps", "rect", "rectify",
    )  # fmt: skip
    def step_scalars(h: Any, state: OptimizerState) -> Scalars:
        (beta1, beta2), step = h.betas, state.steps + 1
        rho_inf, rho_t = _rectification(beta2, step)
        rect = 1.0
        if rho_t > 5.0:
            rect = (
                (rho_t - 4) * (rho_t - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * rho_t)
            ) ** 0.5
        return (
            1.0 if h.maximize else 0.0,
            h.weight_decay,
            1 - h.lr * h.weight_decay if h.decoupled_weight_decay else 1.0,
            1 - beta1,
            beta2,
            1 - beta2,
            1 - beta1**step,
            h.lr,
            (1 - beta2**step) ** 0.5,
            h.eps,
            rect,
            float(rho_t > 5.0),
        )
