"""Lion (Chen et al. 2023), not in torch."""

from __future__ import annotations

from typing import Any

from .._base import Optimizer
from .._spec import Scalars, per_step
from .._state import OptimizerState, state
from ._common import beta_pair, nonnegative, on_off


class Lion(Optimizer):
    """Lion (Chen et al. 2023, "Symbolic Discovery of Optimization Algorithms"). Not in torch.

    Per element::

        c = beta1*m + (1-beta1)*g
        p = p*(1 - lr*weight_decay) - lr*sign(c)
        m = beta2*m + (1-beta2)*g

    State: ``exp_avg``. Use a learning rate 3-10x smaller than AdamW's.
    """

    rule = "lion"
    betas = beta_pair()
    weight_decay = nonnegative()
    maximize = on_off()
    exp_avg = state()

    def __init__(
        self,
        lr: float = 1e-4,
        betas: tuple[float, float] = (0.9, 0.99),
        weight_decay: float = 0.0,
        *,
        maximize: bool = False,
    ) -> None:
        self.lr, self.betas, self.weight_decay, self.maximize = lr, betas, weight_decay, maximize

    @per_step("maximize", "decay", "lr", "beta1", "one_minus_beta1", "beta2", "one_minus_beta2")
    def step_scalars(h: Any, state: OptimizerState) -> Scalars:
        beta1, beta2 = h.betas
        decay = 1 - h.lr * h.weight_decay
        return (1.0 if h.maximize else 0.0, decay, h.lr, beta1, 1 - beta1, beta2, 1 - beta2)
