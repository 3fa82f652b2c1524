"""torch.optim.Adam, AdamW and Adamax."""

from __future__ import annotations

from typing import Any

from .._base import Optimizer
from .._spec import Scalars, per_step
from .._state import OptimizerState, state
from ._common import beta_pair, l2, nonnegative, on_off


class Adam(Optimizer):
    """torch.optim.Adam (and, with decoupled_weight_decay=True, AdamW).

    Per element, step t, bias corrections bc1 = 1-beta1**t, bc2 = 1-beta2**t::

        p = p*(1 - lr*weight_decay)                     (if decoupled_weight_decay)
        g = g + weight_decay*p                          (if weight_decay, not decoupled)
        m = m + (1-beta1)*(g - m)
        v = v*beta2 + ((1-beta2)*g)*g
        v_max = max(v_max, v)                           (if amsgrad; then used for v below)
        p = p + (-lr/bc1 * m) / (sqrt(v)/sqrt(bc2) + eps)

    State: ``exp_avg``, ``exp_avg_sq``, and ``max_exp_avg_sq`` (if amsgrad).
    """

    rule = "torch_adam"
    constant_scalars = False
    betas = beta_pair()
    eps = nonnegative()
    weight_decay = nonnegative()
    amsgrad = on_off()
    maximize = on_off()
    decoupled_weight_decay = on_off()
    exp_avg = state()
    exp_avg_sq = state()
    max_exp_avg_sq = state()

    def __init__(
        self,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0,
        amsgrad: bool = False,
        *,
        maximize: bool = False,
        decoupled_weight_decay: bool = False,
    ) -> None:
        self.lr, self.betas, self.eps, self.weight_decay = lr, betas, eps, weight_decay
        self.amsgrad, self.maximize = amsgrad, maximize
        self.decoupled_weight_decay = decoupled_weight_decay

    @staticmethod
    def kernel_options(h: Any, state: OptimizerState) -> dict[str, bool]:
        return {**l2(h), "amsgrad": h.amsgrad}

    @per_step(
        "maximize", "wd", "decay", "one_minus_beta1", "beta2", "one_minus_beta2",
        "bias_correction2_sqrt", "eps", "neg_step_size",
    )  # fmt: skip
    def step_scalars(h: Any, state: OptimizerState) -> Scalars:
        (beta1, beta2), step = h.betas, state.steps + 1
        bias_correction1 = 1 - beta1**step
        bias_correction2 = 1 - beta2**step
        return (
            1.0 if h.maximize else 0.0,
            h.weight_decay,
            1 - h.lr * h.weight_decay if h.decoupled_weight_decay else 1.0,
            1 - beta1,
            beta2,
            1 - beta2,
            bias_correction2**0.5,
            h.eps,
            -(h.lr / bias_correction1),
        )


class AdamW(Adam):
    """torch.optim.AdamW: Adam with decoupled weight decay, ``p = p*(1 - lr*weight_decay)``."""

    def __init__(
        self,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 1e-2,
        amsgrad: bool = False,
        *,
        maximize: bool = False,
    ) -> None:
        self.lr, self.betas, self.eps, self.weight_decay = lr, betas, eps, weight_decay
        self.amsgrad, self.maximize, self.decoupled_weight_decay = amsgrad, maximize, True


class Adamax(Optimizer):
    """torch.optim.Adamax: Adam with the infinity norm.

    Per element, step t::

        g = g + weight_decay*p                          (if weight_decay)
        m = m + (1-beta1)*(g - m)
        u = max(u*beta2, |g| + eps)
        p = p + (-lr/(1-beta1**t) * m) / u

    State: ``exp_avg``, ``exp_inf``.
    """

    rule = "torch_adamax"
    constant_scalars = False
    betas = beta_pair()
    eps = nonnegative()
    weight_decay = nonnegative()
    maximize = on_off()
    exp_avg = state()
    exp_inf = state()

    def __init__(
        self,
        lr: float = 2e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0,
        *,
        maximize: bool = False,
    ) -> None:
        self.lr, self.betas, self.eps, self.weight_decay = lr, betas, eps, weight_decay
        self.maximize = maximize

    @staticmethod
    def kernel_options(h: Any, state: OptimizerState) -> dict[str, bool]:
        return l2(h)

    @per_step("maximize", "wd", "one_minus_beta1", "beta2", "eps", "neg_clr")
    def step_scalars(h: Any, state: OptimizerState) -> Scalars:
        beta1, beta2 = h.betas
        clr = h.lr / (1 - beta1 ** (state.steps + 1))
        return (1.0 if h.maximize else 0.0, h.weight_decay, 1 - beta1, beta2, h.eps, -clr)
