"""Plain NumPy ground truth for fastopt.optim: torch 2.13's single-tensor formulas, one op a line.

Re-exported by fastopt.reference. Each class has the signature, state names and step count of its
fastopt.optim counterpart; ``update`` walks the keys and applies torch's in-place ops in order:
``a.add_(b, alpha=c)`` is ``a + c*b``, ``a.addcmul_(b, c, value=v)`` is ``a + (v*b)*c``,
``a.addcdiv_(b, c, value=v)`` is ``a + (v*b)/c`` and ``a.lerp_(b, w)`` is ``a + w*(b - a)``.
"""

from __future__ import annotations

from collections.abc import Hashable

import numpy as np

from ._reference_adabelief import AdaBelief  # in its own file, for size
from ._reference_base import _Reference

__all__ = [
    "SGD",
    "Adam",
    "AdamW",
    "Adagrad",
    "RMSprop",
    "Adadelta",
    "Adamax",
    "NAdam",
    "RAdam",
    "Lion",
    "AdaBelief",
]


class SGD(_Reference):
    momentum_buffer: dict[Hashable, np.ndarray]  # made by _start(); a clone of g on first use

    def __init__(
        self, lr=1e-3, momentum=0, dampening=0, weight_decay=0, nesterov=False, *, maximize=False
    ):
        self.lr, self.momentum, self.dampening = lr, momentum, dampening
        self.weight_decay, self.nesterov, self.maximize = weight_decay, nesterov, maximize
        self._state_names = ("momentum_buffer",)
        self._start()

    def step(self, key, p, g):
        g = self.l2(p, g)
        if self.momentum != 0:
            if key not in self.momentum_buffer:
                self.momentum_buffer[key] = np.array(g, dtype=p.dtype)  # clone, 0-d too
            else:
                buf = self.momentum_buffer[key]
                buf[...] = buf * self.momentum + (1 - self.dampening) * g
            buf = self.momentum_buffer[key]
            g = g + self.momentum * buf if self.nesterov else buf
        p[...] = p + (-self.lr) * g


class Adam(_Reference):
    def __init__(
        self,
        lr=1e-3,
        betas=(0.9, 0.999),
        eps=1e-8,
        weight_decay=0,
        amsgrad=False,
        *,
        maximize=False,
        decoupled_weight_decay=False,
    ):
        self.lr, self.betas, self.eps, self.weight_decay = lr, betas, eps, weight_decay
        self.amsgrad, self.maximize, self.decoupled_weight_decay = (
            amsgrad,
            maximize,
            decoupled_weight_decay,
        )
        self._state_names = ("exp_avg", "exp_avg_sq", "max_exp_avg_sq")
        self._start()

    def step(self, key, p, g):
        beta1, beta2 = self.betas
        if self.weight_decay != 0 and self.decoupled_weight_decay:
            p[...] = p * (1 - self.lr * self.weight_decay)
        elif self.weight_decay != 0:
            g = g + self.weight_decay * p
        m, v = self.state("exp_avg", key, p), self.state("exp_avg_sq", key, p)
        m[...] = m + (1 - beta1) * (g - m)
        v[...] = v * beta2 + ((1 - beta2) * g) * g
        bias_correction1 = 1 - beta1**self.steps
        bias_correction2 = 1 - beta2**self.steps
        step_size = self.lr / bias_correction1
        second = v
        if self.amsgrad:
            v_max = self.state("max_exp_avg_sq", key, p)
            v_max[...] = np.maximum(v_max, v)
            second = v_max
        denom = np.sqrt(second) / bias_correction2**0.5 + self.eps
        p[...] = p + (-step_size * m) / denom


class AdamW(Adam):
    def __init__(
        self,
        lr=1e-3,
        betas=(0.9, 0.999),
        eps=1e-8,
        weight_decay=1e-2,
        amsgrad=False,
        *,
        maximize=False,
    ):
        super().__init__(
            lr, betas, eps, weight_decay, amsgrad, maximize=maximize, decoupled_weight_decay=True
        )


class Adagrad(_Reference):
    def __init__(
        self,
        lr=1e-2,
        lr_decay=0,
        weight_decay=0,
        initial_accumulator_value=0,
        eps=1e-10,
        *,
        maximize=False,
    ):
        self.lr, self.lr_decay, self.weight_decay, self.eps, self.maximize = (
            lr,
            lr_decay,
            weight_decay,
            eps,
            maximize,
        )
        self.initial_accumulator_value = self._initial_state = initial_accumulator_value
        self._state_names = ("sum",)
        self._start()

    def step(self, key, p, g):
        g = self.l2(p, g)
        clr = self.lr / (1 + (self.steps - 1) * self.lr_decay)
        total = self.state("sum", key, p)
        total[...] = total + (1 * g) * g
        p[...] = p + (-clr * g) / (np.sqrt(total) + self.eps)


class RMSprop(_Reference):
    def __init__(
        self,
        lr=1e-2,
        alpha=0.99,
        eps=1e-8,
        weight_decay=0,
        momentum=0,
        centered=False,
        *,
        maximize=False,
    ):
        self.lr, self.alpha, self.eps, self.weight_decay = lr, alpha, eps, weight_decay
        self.momentum, self.centered, self.maximize = momentum, centered, maximize
        self._state_names = ("square_avg", "grad_avg", "momentum_buffer")
        self._start()

    def step(self, key, p, g):
        g = self.l2(p, g)
        square_avg = self.state("square_avg", key, p)
        square_avg[...] = square_avg * self.alpha + ((1 - self.alpha) * g) * g
        if self.centered:
            grad_avg = self.state("grad_avg", key, p)
            grad_avg[...] = grad_avg + (1 - self.alpha) * (g - grad_avg)
            avg = np.sqrt(square_avg + (-1 * grad_avg) * grad_avg)
        else:
            avg = np.sqrt(square_avg)
        avg = avg + self.eps
        if self.momentum > 0:
            buf = self.state("momentum_buffer", key, p)
            buf[...] = buf * self.momentum + (1 * g) / avg
            p[...] = p + (-self.lr) * buf
        else:
            p[...] = p + (-self.lr * g) / avg


class Adadelta(_Reference):
    def __init__(self, lr=1.0, rho=0.9, eps=1e-6, weight_decay=0, *, maximize=False):
        self.lr, self.rho, self.eps, self.weight_decay, self.maximize = (
            lr,
            rho,
            eps,
            weight_decay,
            maximize,
        )
        self._state_names = ("square_avg", "acc_delta")
        self._start()

    def step(self, key, p, g):
        g = self.l2(p, g)
        square_avg, acc_delta = self.state("square_avg", key, p), self.state("acc_delta", key, p)
        square_avg[...] = square_avg * self.rho + ((1 - self.rho) * g) * g
        std = np.sqrt(square_avg + self.eps)
        delta = (np.sqrt(acc_delta + self.eps) / std) * g
        acc_delta[...] = acc_delta * self.rho + ((1 - self.rho) * delta) * delta
        p[...] = p + (-self.lr) * delta


class Adamax(_Reference):
    def __init__(self, lr=2e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0, *, maximize=False):
        self.lr, self.betas, self.eps, self.weight_decay, self.maximize = (
            lr,
            betas,
            eps,
            weight_decay,
            maximize,
        )
        self._state_names = ("exp_avg", "exp_inf")
        self._start()

    def step(self, key, p, g):
        beta1, beta2 = self.betas
        g = self.l2(p, g)
        m, u = self.state("exp_avg", key, p), self.state("exp_inf", key, p)
        m[...] = m + (1 - beta1) * (g - m)
        u[...] = np.maximum(u * beta2, np.abs(g) + self.eps)
        clr = self.lr / (1 - beta1**self.steps)
        p[...] = p + (-clr * m) / u


class NAdam(_Reference):
    def __init__(
        self,
        lr=2e-3,
        betas=(0.9, 0.999),
        eps=1e-8,
        weight_decay=0,
        momentum_decay=4e-3,
        *,
        decoupled_weight_decay=False,
        maximize=False,
    ):
        self.lr, self.betas, self.eps, self.weight_decay = lr, betas, eps, weight_decay
        self.momentum_decay, self.decoupled_weight_decay, self.maximize = (
            momentum_decay,
            decoupled_weight_decay,
            maximize,
        )
        self.mu_product = 1.0
        self._state_names = ("exp_avg", "exp_avg_sq")
        self._start()

    def begin_step(self):
        beta1, step = self.betas[0], self.steps
        self.mu = beta1 * (1.0 - 0.5 * (0.96 ** (step * self.momentum_decay)))
        self.mu_next = beta1 * (1.0 - 0.5 * (0.96 ** ((step + 1) * self.momentum_decay)))
        self.mu_product = self.mu_product * self.mu

    def step(self, key, p, g):
        beta1, beta2 = self.betas
        if self.weight_decay != 0 and self.decoupled_weight_decay:
            p[...] = p * (1 - self.lr * self.weight_decay)
        elif self.weight_decay != 0:
            g = g + self.weight_decay * p
        m, v = self.state("exp_avg", key, p), self.state("exp_avg_sq", key, p)
        m[...] = m + (1 - beta1) * (g - m)
        v[...] = v * beta2 + ((1 - beta2) * g) * g
        denom = np.sqrt(v / (1 - beta2**self.steps)) + self.eps
        mu_product_next = self.mu_product * self.mu_next
        p[...] = p + (-self.lr * (1.0 - self.mu) / (1.0 - self.mu_product) * g) / denom
        p[...] = p + ((-self.lr * self.mu_next) / (1.0 - mu_product_next) * m) / denom


class RAdam(_Reference):
    def __init__(
        self,
        lr=1e-3,
        betas=(0.9, 0.999),
        eps=1e-8,
        weight_decay=0,
        *,
        decoupled_weight_decay=False,
        maximize=False,
    ):
        self.lr, self.betas, self.eps, self.weight_decay = lr, betas, eps, weight_decay
        self.decoupled_weight_decay, self.maximize = decoupled_weight_decay, maximize
        self._state_names = ("exp_avg", "exp_avg_sq")
        self._start()

    def step(self, key, p, g):
        beta1, beta2 = self.betas
        if self.weight_decay != 0 and self.decoupled_weight_decay:
            p[...] = p * (1 - self.lr * self.weight_decay)
        elif self.weight_decay != 0:
            g = g + self.weight_decay * p
        m, v = self.state("exp_avg", key, p), self.state("exp_avg_sq", key, p)
        m[...] = m + (1 - beta1) * (g - m)
        v[...] = v * beta2 + ((1 - beta2) * g) * g
        bias_correction1 = 1 - beta1**self.steps
        bias_correction2 = 1 - beta2**self.steps
        rho_inf = 2 / (1 - beta2) - 1
        rho_t = rho_inf - 2 * self.steps * (beta2**self.steps) / bias_correction2
        step = (m / bias_correction1) * self.lr
        if rho_t > 5.0:
            rect = (
                (rho_t - 4) * (rho_t - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * rho_t)
            ) ** 0.5
            step = (step * (bias_correction2**0.5 / (np.sqrt(v) + self.eps))) * rect
        p[...] = p + (-1) * step


class Lion(_Reference):
    def __init__(self, lr=1e-4, betas=(0.9, 0.99), weight_decay=0.0, *, maximize=False):
        self.lr, self.betas, self.weight_decay, self.maximize = lr, betas, weight_decay, maximize
        self._state_names = ("exp_avg",)
        self._start()

    def step(self, key, p, g):
        beta1, beta2 = self.betas
        m = self.state("exp_avg", key, p)
        c = beta1 * m + (1 - beta1) * g
        p[...] = p * (1 - self.lr * self.weight_decay) - self.lr * np.sign(c)
        m[...] = beta2 * m + (1 - beta2) * g
