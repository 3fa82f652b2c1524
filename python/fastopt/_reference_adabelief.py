"""Plain NumPy ground truth for fastopt.optim.AdaBelief: adabelief-pytorch 0.2.1's step(), one
torch op a line (see _reference_optim for how torch's in-place ops are spelled)."""

from __future__ import annotations

import math

import numpy as np

from ._reference_base import _Reference


class AdaBelief(_Reference):
    """adabelief-pytorch 0.2.1's AdaBelief.step(), one torch op a line."""

    def __init__(
        self,
        lr=1e-3,
        betas=(0.9, 0.999),
        eps=1e-16,
        weight_decay=0,
        amsgrad=False,
        weight_decouple=True,
        fixed_decay=False,
        rectify=True,
        degenerated_to_sgd=True,
    ):
        self.lr, self.betas, self.eps, self.weight_decay = lr, betas, eps, weight_decay
        self.amsgrad, self.weight_decouple, self.fixed_decay = amsgrad, weight_decouple, fixed_decay
        self.rectify, self.degenerated_to_sgd, self.maximize = rectify, degenerated_to_sgd, False
        self._state_names = ("exp_avg", "exp_avg_var", "max_exp_avg_var")
        self._start()

    def step(self, key, p, g):
        (beta1, beta2), lr, wd, eps = self.betas, self.lr, self.weight_decay, self.eps
        t = self.steps
        if self.weight_decouple:
            p[...] = p * (1.0 - wd if self.fixed_decay else 1.0 - lr * wd)
        elif wd != 0:
            g = g + wd * p
        m, v = self.state("exp_avg", key, p), self.state("exp_avg_var", key, p)
        bias_correction1 = 1 - beta1**t
        bias_correction2 = 1 - beta2**t
        m[...] = m * beta1 + (1 - beta1) * g
        residual = g - m
        v[...] = v * beta2 + ((1 - beta2) * residual) * residual
        v[...] = v + eps
        second = v
        if self.amsgrad:
            v_max = self.state("max_exp_avg_var", key, p)
            v_max[...] = np.maximum(v_max, v)
            second = v_max
        if not self.rectify:
            denom = np.sqrt(second) / math.sqrt(bias_correction2) + eps
            p[...] = p + ((-(lr / bias_correction1)) * m) / denom
            return
        beta2_t = beta2**t
        n_sma_max = 2 / (1 - beta2) - 1
        n_sma = n_sma_max - 2 * t * beta2_t / (1 - beta2_t)
        if n_sma >= 5:
            step_size = math.sqrt(
                (1 - beta2_t)
                * (n_sma - 4)
                / (n_sma_max - 4)
                * (n_sma - 2)
                / n_sma
                * n_sma_max
                / (n_sma_max - 2)
            ) / (1 - beta1**t)
            denom = np.sqrt(v) + eps
            p[...] = p + ((-step_size * lr) * m) / denom
        elif self.degenerated_to_sgd:
            step_size = 1.0 / (1 - beta1**t)
            p[...] = p + (-step_size * lr) * m
