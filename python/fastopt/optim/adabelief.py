"""AdaBelief (Zhuang et al. 2020), as adabelief-pytorch 0.2.1 computes it."""

from __future__ import annotations

import math
from typing import Any

from .._base import Optimizer
from .._spec import Scalars, per_step
from .._state import OptimizerState, state
from ._common import beta_pair, nonnegative, on_off


class AdaBelief(Optimizer):
    """AdaBelief (Zhuang et al., NeurIPS 2020), as the authors' adabelief-pytorch 0.2.1 computes it.

    Adam with the belief ``(g - m)**2`` in place of ``g**2``. Per element, step t::

        p = p*(1 - lr*weight_decay)     (weight_decouple; p*(1 - weight_decay) with fixed_decay)
        g = g + weight_decay*p          (not weight_decouple, weight_decay != 0)
        m = m*beta1 + (1-beta1)*g
        s = s*beta2 + (1-beta2)*(g - m)**2 + eps            (the eps is kept in the state)
        s_max = max(s_max, s)                               (amsgrad; used for s below)
        p = p - lr/(1-beta1**t) * m / (sqrt(s)/sqrt(1-beta2**t) + eps)         (not rectify)

    With ``rectify`` (the default), RAdam's rectification: when rho_t >= 5 the step is
    ``lr*r_t * m / (sqrt(s) + eps)``; before that, ``lr/(1-beta1**t) * m`` if
    ``degenerated_to_sgd`` (the default), else no step. The package's printing options are left
    out. State: ``exp_avg``, ``exp_avg_var``, and ``max_exp_avg_var`` (if amsgrad).
    """

    rule = "adabelief"
    constant_scalars = False
    options_per_step = True  # rectified, SGD-like or no step is decided per step
    betas = beta_pair()
    eps = nonnegative()
    weight_decay = nonnegative()
    amsgrad = on_off()
    weight_decouple = on_off()
    fixed_decay = on_off()
    rectify = on_off()
    degenerated_to_sgd = on_off()
    exp_avg = state()
    exp_avg_var = state()
    max_exp_avg_var = state()

    def __init__(
        self,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-16,
        weight_decay: float = 0,
        amsgrad: bool = False,
        weight_decouple: bool = True,
        fixed_decay: bool = False,
        rectify: bool = True,
        degenerated_to_sgd: bool = True,
    ) -> None:
        self.lr, self.betas, self.eps, self.weight_decay = lr, betas, eps, weight_decay
        self.amsgrad, self.weight_decouple, self.fixed_decay = amsgrad, weight_decouple, fixed_decay
        self.rectify, self.degenerated_to_sgd = rectify, degenerated_to_sgd

    @staticmethod
    def _param_step(h: Any, step: int) -> tuple[str, float]:
        """("adaptive" | "rectified" | "sgd" | "none", the step's signed coefficient of m) at a
        step, computed as the package computes it."""
        beta1, beta2 = h.betas
        if not h.rectify:
            return "adaptive", -(h.lr / (1 - beta1**step))
        beta2_t = beta2**step
        n_sma_max = 2 / (1 - beta2) - 1
        n_sma = n_sma_max - 2 * step * beta2_t / (1 - beta2_t)
        if n_sma >= 5:
            step_size = math.sqrt(
                (1 - beta2_t)
                * (n_sma - 4)
                / (n_sma_max - 4)
                * (n_sma - 2)
                / n_sma
                * n_sma_max
                / (n_sma_max - 2)
            ) / (1 - beta1**step)
            return "rectified", -step_size * h.lr
        if h.degenerated_to_sgd:
            return "sgd", -(1.0 / (1 - beta1**step)) * h.lr
        return "none", 0.0

    @staticmethod
    def kernel_options(h: Any, state: OptimizerState) -> dict[str, bool]:
        kind, _ = AdaBelief._param_step(h, state.steps + 1)
        return {
            "weight_decay": not h.weight_decouple and h.weight_decay != 0,
            "amsgrad": h.amsgrad,
            "rectified": kind in ("rectified", "none"),
            "sgd_step": kind in ("sgd", "none"),
        }

    @per_step(
        "decay", "wd", "beta1", "one_minus_beta1", "beta2", "one_minus_beta2", "eps",
        "bias_correction2_sqrt", "neg_step_size",
    )  # fmt: skip
    def step_scalars(h: Any, state: OptimizerState) -> Scalars:
        (beta1, beta2), step, wd = h.betas, state.steps + 1, h.weight_decay
        decay = 1.0
        if h.weight_decouple:
            decay = 1.0 - wd if h.fixed_decay else 1.0 - h.lr * wd
        _, neg_step_size = AdaBelief._param_step(h, step)
        return (
            decay,
            wd,
            beta1,
            1 - beta1,
            beta2,
            1 - beta2,
            h.eps,
            math.sqrt(1 - beta2**step),
            neg_step_size,
        )
