"""torch.optim's algorithms, with torch's names, signatures and math, on fastopt's fused kernels.

Each class takes the keyword names and defaults of ``torch.optim.<Name>`` in torch 2.13 (without
``params``, ``foreach``, ``fused``, ``capturable`` and ``differentiable``) and follows torch's
single-tensor update formulas, option by option; ``Lion`` (not in torch) follows Chen et al. 2023.
They keep the dict-based ``update(params, grads)`` API of fastopt's book classes, and their state
lives in dicts keyed like params, under torch's state names (``opt.exp_avg["W1"]``).

Every option is fused into the one pass per array: weight decay, maximize, amsgrad, centered,
nesterov and momentum are compile-time variants of the kernel, chosen once per update().

One difference from torch: the step count is per optimizer (``opt.steps``), not per parameter, so a
key first seen after some steps gets the optimizer's bias corrections (and, for SGD with
dampening, a momentum buffer that starts from 0 instead of from its first gradient).
"""

from __future__ import annotations

from typing import Any, ClassVar

from ._base import (
    Check,
    Optimizer,
    betas,
    closed_unit_interval,
    finite_nonnegative,
    flag,
    kernel,
    learning_rate,
    real,
)

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
]

Scalars = tuple[float, ...]

# What makes each hyperparameter valid (torch's rules), in one place; each class names its own.
_CHECKS = {
    "lr": learning_rate,
    "betas": betas,
    "eps": finite_nonnegative,
    "weight_decay": finite_nonnegative,
    "momentum": finite_nonnegative,
    "dampening": real,
    "lr_decay": finite_nonnegative,
    "initial_accumulator_value": finite_nonnegative,
    "alpha": finite_nonnegative,
    "rho": closed_unit_interval,
    "momentum_decay": finite_nonnegative,
    "nesterov": flag,
    "amsgrad": flag,
    "centered": flag,
    "maximize": flag,
    "decoupled_weight_decay": flag,
}


def _checks(*names: str) -> dict[str, Check]:
    return {name: _CHECKS[name] for name in names}


class _TorchStyle(Optimizer):
    """Shared by the torch-style classes: the step count, and the kernel variant for the options.

    The kernel variant and the state names depend on the options: _select chooses them on the
    first update and again after any attribute is assigned; _scalars runs every step.
    """

    _possible_states: ClassVar[tuple[str, ...]] = ()  # every state dict this class may use
    _counters: ClassVar[tuple[str, ...]] = ("_updates", "steps")

    def __setattr__(self, name: str, value: Any) -> None:
        super().__setattr__(name, value)
        self.__dict__["_selected"] = False  # an option may have changed: choose the kernel again

    def _start(self) -> None:
        self.__dict__["steps"] = 0
        for name in self._possible_states:
            setattr(self, name, {})

    def _step_scalars(self) -> Scalars:
        if not self.__dict__["_selected"]:
            self._select()
            self.__dict__["_selected"] = True
        return self._scalars()

    def _select(self) -> None:
        """Choose the kernel variant and state names for the current options (see _use)."""
        raise NotImplementedError

    def _scalars(self) -> Scalars:
        """The per-step scalars, in the order of the kernel's rule."""
        raise NotImplementedError

    def _use(self, state_names: tuple[str, ...], **options: bool) -> None:
        index, num_states = kernel(self._kernel, **options)
        assert num_states == len(state_names), (self._kernel, options, state_names)
        self.__dict__["_kernel_index"] = index
        self.__dict__["_state_names"] = state_names

    def _decay_flags(self, weight_decay: float, decoupled: bool = False) -> dict[str, bool]:
        # maximize and decoupled weight decay are scalars (_maximize, _decay), not kernel options
        return {"weight_decay": weight_decay != 0 and not decoupled}

    def _maximize(self) -> float:
        """The kernels' `maximize` scalar: 1.0 flips the sign of every gradient exactly."""
        return 1.0 if self.maximize else 0.0

    def _decay(self) -> float:
        """The kernels' `decay` scalar: p*(1 - lr*weight_decay) if decoupled, else p*1.0 == p."""
        return 1 - self.lr * self.weight_decay if self.decoupled_weight_decay else 1.0

    def _advance(self) -> None:
        self.__dict__["steps"] += 1  # no check needed: skip the validating __setattr__


class SGD(_TorchStyle):
    """torch.optim.SGD: stochastic gradient descent, with optional (Nesterov) momentum.

    Per element, with g the gradient (negated if maximize)::

        g = g + weight_decay*p                          (if weight_decay)
        buf = g on the first step, else momentum*buf + (1-dampening)*g
        g = g + momentum*buf if nesterov else buf       (if momentum)
        p = p - lr*g

    State: ``momentum_buffer`` (when momentum != 0).
    """

    _kernel = "torch_sgd"
    _constant_scalars = False  # the first step differs
    _possible_states = ("momentum_buffer",)
    _hyperparameters = _checks(
        "lr", "momentum", "dampening", "weight_decay", "nesterov", "maximize"
    )

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
        self._start()

    def _select(self) -> None:
        has_momentum = self.momentum != 0
        self._use(
            ("momentum_buffer",) if has_momentum else (),
            weight_decay=self.weight_decay != 0,
            momentum=has_momentum,
            nesterov=self.nesterov,
        )

    def _scalars(self) -> Scalars:
        first = self.steps == 0
        momentum_coef = 0.0 if first else self.momentum
        grad_coef = 1.0 if first else 1 - self.dampening
        return (
            self._maximize(), self.weight_decay, momentum_coef, grad_coef, self.momentum, -self.lr
        )


class Adam(_TorchStyle):
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

    _kernel = "torch_adam"
    _constant_scalars = False
    _possible_states = ("exp_avg", "exp_avg_sq", "max_exp_avg_sq")
    _hyperparameters = _checks(
        "lr", "betas", "eps", "weight_decay", "amsgrad", "maximize", "decoupled_weight_decay"
    )

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
        self._start()

    def _select(self) -> None:
        wd, decoupled = self.weight_decay, self.decoupled_weight_decay
        self._use(
            ("exp_avg", "exp_avg_sq") + (("max_exp_avg_sq",) if self.amsgrad else ()),
            amsgrad=self.amsgrad,
            **self._decay_flags(wd, decoupled),
        )

    def _scalars(self) -> Scalars:
        wd = self.weight_decay
        (beta1, beta2), step = self.betas, self.steps + 1
        bias_correction1 = 1 - beta1**step
        bias_correction2 = 1 - beta2**step
        step_size = self.lr / bias_correction1
        return (
            self._maximize(),
            wd,
            self._decay(),
            1 - beta1,
            beta2,
            1 - beta2,
            bias_correction2**0.5,
            self.eps,
            -step_size,
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
        super().__init__(
            lr, betas, eps, weight_decay, amsgrad, maximize=maximize, decoupled_weight_decay=True
        )


class Adagrad(_TorchStyle):
    """torch.optim.Adagrad.

    Per element, step t::

        g = g + weight_decay*p                          (if weight_decay)
        clr = lr / (1 + (t-1)*lr_decay)
        sum = sum + g*g
        p = p + (-clr*g) / (sqrt(sum) + eps)

    State: ``sum``, starting at initial_accumulator_value.
    """

    _kernel = "torch_adagrad"
    _constant_scalars = False
    _possible_states = ("sum",)
    _hyperparameters = _checks(
        "lr", "lr_decay", "weight_decay", "initial_accumulator_value", "eps", "maximize"
    )

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
        self.initial_accumulator_value, self.eps, self.maximize = (
            initial_accumulator_value,
            eps,
            maximize,
        )
        self._start()

    def __setattr__(self, name: str, value: Any) -> None:
        super().__setattr__(name, value)
        if name == "initial_accumulator_value":  # what the core fills new state arrays with
            self.__dict__["_initial_state_value"] = self.initial_accumulator_value

    def _select(self) -> None:
        self._use(("sum",), **self._decay_flags(self.weight_decay))

    def _scalars(self) -> Scalars:
        clr = self.lr / (1 + self.steps * self.lr_decay)
        return (self._maximize(), self.weight_decay, self.eps, -clr)


class RMSprop(_TorchStyle):
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

    _kernel = "torch_rmsprop"
    _possible_states = ("square_avg", "grad_avg", "momentum_buffer")
    _hyperparameters = _checks(
        "lr", "alpha", "eps", "weight_decay", "momentum", "centered", "maximize"
    )

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
        self._start()

    def _select(self) -> None:
        has_momentum = self.momentum > 0
        self._use(
            ("square_avg",)
            + (("grad_avg",) if self.centered else ())
            + (("momentum_buffer",) if has_momentum else ()),
            centered=self.centered,
            momentum=has_momentum,
            **self._decay_flags(self.weight_decay),
        )

    def _scalars(self) -> Scalars:
        alpha = self.alpha
        return (
            self._maximize(), self.weight_decay, alpha, 1 - alpha, self.eps, self.momentum, -self.lr
        )


class Adadelta(_TorchStyle):
    """torch.optim.Adadelta.

    Per element::

        g = g + weight_decay*p                          (if weight_decay)
        square_avg = square_avg*rho + ((1-rho)*g)*g
        delta = (sqrt(acc_delta + eps) / sqrt(square_avg + eps)) * g
        acc_delta = acc_delta*rho + ((1-rho)*delta)*delta
        p = p - lr*delta

    State: ``square_avg``, ``acc_delta``.
    """

    _kernel = "torch_adadelta"
    _possible_states = ("square_avg", "acc_delta")
    _hyperparameters = _checks("lr", "rho", "eps", "weight_decay", "maximize")

    def __init__(
        self,
        lr: float = 1.0,
        rho: float = 0.9,
        eps: float = 1e-6,
        weight_decay: float = 0,
        *,
        maximize: bool = False,
    ) -> None:
        self.lr, self.rho, self.eps, self.weight_decay, self.maximize = (
            lr,
            rho,
            eps,
            weight_decay,
            maximize,
        )
        self._start()

    def _select(self) -> None:
        self._use(("square_avg", "acc_delta"), **self._decay_flags(self.weight_decay))

    def _scalars(self) -> Scalars:
        return (self._maximize(), self.weight_decay, self.rho, 1 - self.rho, self.eps, -self.lr)


class Adamax(_TorchStyle):
    """torch.optim.Adamax: Adam with the infinity norm.

    Per element, step t::

        g = g + weight_decay*p                          (if weight_decay)
        m = m + (1-beta1)*(g - m)
        u = max(u*beta2, |g| + eps)
        p = p + (-lr/(1-beta1**t) * m) / u

    State: ``exp_avg``, ``exp_inf``.
    """

    _kernel = "torch_adamax"
    _constant_scalars = False
    _possible_states = ("exp_avg", "exp_inf")
    _hyperparameters = _checks("lr", "betas", "eps", "weight_decay", "maximize")

    def __init__(
        self,
        lr: float = 2e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0,
        *,
        maximize: bool = False,
    ) -> None:
        self.lr, self.betas, self.eps, self.weight_decay, self.maximize = (
            lr,
            betas,
            eps,
            weight_decay,
            maximize,
        )
        self._start()

    def _select(self) -> None:
        self._use(("exp_avg", "exp_inf"), **self._decay_flags(self.weight_decay))

    def _scalars(self) -> Scalars:
        beta1, beta2 = self.betas
        clr = self.lr / (1 - beta1 ** (self.steps + 1))
        return (self._maximize(), self.weight_decay, 1 - beta1, beta2, self.eps, -clr)


class NAdam(_TorchStyle):
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

    _kernel = "torch_nadam"
    _shared_hyperparameters = ("betas", "momentum_decay")  # they drive the shared mu_product
    _counters = ("_updates", "steps", "mu_product")
    _constant_scalars = False
    _possible_states = ("exp_avg", "exp_avg_sq")
    _hyperparameters = _checks(
        "lr", "betas", "eps", "weight_decay", "momentum_decay", "decoupled_weight_decay", "maximize"
    )

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
        self.mu_product = 1.0
        self._start()

    def _select(self) -> None:
        wd, decoupled = self.weight_decay, self.decoupled_weight_decay
        self._use(
            ("exp_avg", "exp_avg_sq"),
            **self._decay_flags(wd, decoupled),
        )

    def _scalars(self) -> Scalars:
        wd = self.weight_decay
        (beta1, beta2), step, lr = self.betas, self.steps + 1, self.lr
        bias_correction2 = 1 - beta2**step
        mu = beta1 * (1.0 - 0.5 * (0.96 ** (step * self.momentum_decay)))
        mu_next = beta1 * (1.0 - 0.5 * (0.96 ** ((step + 1) * self.momentum_decay)))
        mu_product = self.mu_product * mu
        self.__dict__["_next_mu_product"] = mu_product  # committed by _advance, after success
        mu_product_next = mu_product * mu_next
        return (
            self._maximize(),
            wd,
            self._decay(),
            1 - beta1,
            beta2,
            1 - beta2,
            bias_correction2,
            self.eps,
            -lr * (1.0 - mu) / (1.0 - mu_product),
            (-lr * mu_next) / (1.0 - mu_product_next),
        )

    def _advance(self) -> None:
        super()._advance()
        self.__dict__["mu_product"] = self.__dict__.pop("_next_mu_product")


class RAdam(_TorchStyle):
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

    _kernel = "torch_radam"
    _constant_scalars = False
    _possible_states = ("exp_avg", "exp_avg_sq")
    _hyperparameters = _checks(
        "lr", "betas", "eps", "weight_decay", "decoupled_weight_decay", "maximize"
    )

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
        self._start()

    def _select(self) -> None:
        # Both kernels, rectified or not: which one runs is decided per step, in _scalars.
        wd, decoupled = self.weight_decay, self.decoupled_weight_decay
        decay = self._decay_flags(wd, decoupled)
        kernels = []
        for rectify in (False, True):
            self._use(("exp_avg", "exp_avg_sq"), rectify=rectify, **decay)
            kernels.append(self._kernel_index)
        self.__dict__["_rectified_kernels"] = tuple(kernels)

    def _scalars(self) -> Scalars:
        (beta1, beta2), step, lr, wd = self.betas, self.steps + 1, self.lr, self.weight_decay
        bias_correction1 = 1 - beta1**step
        bias_correction2 = 1 - beta2**step
        rho_inf = 2 / (1 - beta2) - 1
        rho_t = rho_inf - 2 * step * (beta2**step) / bias_correction2
        rectify = rho_t > 5.0
        rect = (
            ((rho_t - 4) * (rho_t - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * rho_t)) ** 0.5
            if rectify
            else 1.0
        )
        self.__dict__["_kernel_index"] = self._rectified_kernels[rectify]
        return (
            self._maximize(),
            wd,
            self._decay(),
            1 - beta1,
            beta2,
            1 - beta2,
            bias_correction1,
            lr,
            bias_correction2**0.5,
            self.eps,
            rect,
        )


class Lion(_TorchStyle):
    """Lion (Chen et al. 2023, "Symbolic Discovery of Optimization Algorithms"). Not in torch.

    Per element::

        c = beta1*m + (1-beta1)*g
        p = p*(1 - lr*weight_decay) - lr*sign(c)
        m = beta2*m + (1-beta2)*g

    State: ``exp_avg``. Use a learning rate 3-10x smaller than AdamW's.
    """

    _kernel = "lion"
    _possible_states = ("exp_avg",)
    _state_names = ("exp_avg",)  # no options: the base class picks the kernel once
    _hyperparameters = _checks("lr", "betas", "weight_decay", "maximize")

    def __init__(
        self,
        lr: float = 1e-4,
        betas: tuple[float, float] = (0.9, 0.99),
        weight_decay: float = 0.0,
        *,
        maximize: bool = False,
    ) -> None:
        self.lr, self.betas, self.weight_decay, self.maximize = lr, betas, weight_decay, maximize
        self._start()

    def _select(self) -> None:
        self._use(("exp_avg",))

    def _scalars(self) -> Scalars:
        beta1, beta2 = self.betas
        decay = 1 - self.lr * self.weight_decay
        return (self._maximize(), decay, self.lr, beta1, 1 - beta1, beta2, 1 - beta2)
