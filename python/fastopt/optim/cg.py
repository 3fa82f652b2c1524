"""Nonlinear conjugate gradients: Polak-Ribiere+ or Fletcher-Reeves, with restarts and a strong
Wolfe line search, on fastopt's fused vector passes."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from .._checks import (
    optional_positive_count,
    unit_interval,
)
from .._settings import Hyperparameter
from ._search import SearchOptimizer, Sums

__all__ = ["ConjugateGradient"]

_BETAS = ("polak_ribiere", "fletcher_reeves")


def _beta_formula(name: str, value: Any) -> str:
    if value not in _BETAS:
        raise ValueError(f"{name} must be one of {list(_BETAS)}; got {value!r}")
    return str(value)


class ConjugateGradient(SearchOptimizer):
    """Nonlinear conjugate gradients (Nocedal & Wright, Numerical Optimization, Algorithm 5.4).

    Each iteration steps along ``d = -g + beta d_prev``, where ``beta`` is Polak-Ribiere+
    (``max(0, g.(g - g_prev) / |g_prev|^2)``, the default) or Fletcher-Reeves
    (``|g|^2 / |g_prev|^2``), with a line search that satisfies the strong Wolfe conditions
    (c1 = 1e-4, ``c2``; the one L-BFGS uses). The direction restarts at -g every ``restart``
    iterations (default: the number of params), when successive gradients are far from
    orthogonal (``|g . g_prev| >= 0.2 |g|^2``, Powell's test), and whenever it would not descend.
    On a quadratic with exact line searches the directions are conjugate, and n of them reach
    the minimum in n dimensions.

    The API is fastopt.optim.LBFGS's: ``loss = opt.step(params, closure)``, with ``closure()``
    returning ``(loss, grads)``; one step runs up to ``max_iter`` iterations and ``max_eval``
    evaluations (default ``max_iter * 5 // 4``), and stops at
    ``|g|_inf <= tolerance_grad``, or when a step ``|t d|_inf`` is below ``tolerance_change``.
    (Unlike L-BFGS, not when the loss changes by less than ``tolerance_change``: near a minimum
    that is every iteration, and each step would stop after one.) The state (the direction, the
    previous gradient, the counters) is in ``state_dict()`` and ``fastopt.save``; a step whose
    closure raises changes nothing.
    """

    beta = Hyperparameter(_beta_formula)
    restart = Hyperparameter(optional_positive_count)
    c2 = Hyperparameter(unit_interval)

    _hyperparameters = (
        "lr",
        "max_iter",
        "max_eval",
        "tolerance_grad",
        "tolerance_change",
        "beta",
        "restart",
        "c2",
    )
    # t: the last step length; grad_square: |g_prev|^2; since_restart: iterations since -g.
    _counters = {
        "func_evals": 0,
        "n_iter": 0,
        "since_restart": 0,
        "t": None,
        "prev_loss": None,
        "grad_square": None,
    }
    _vectors = ("d", "prev_flat_grad")
    since_restart: int
    grad_square: float | None

    def __init__(
        self,
        lr: float = 1,
        max_iter: int = 20,
        max_eval: int | None = None,
        tolerance_grad: float = 1e-7,
        tolerance_change: float = 1e-9,
        beta: str = "polak_ribiere",
        restart: int | None = None,
        c2: float = 0.1,
    ) -> None:
        super().__init__(
            lr=lr,
            max_iter=max_iter,
            max_eval=max_eval,
            tolerance_grad=tolerance_grad,
            tolerance_change=tolerance_change,
            beta=beta,
            restart=restart,
            c2=c2,
        )

    def _first_with(self) -> list[int]:
        # The first gradient's dot product with the previous one, for beta.
        return [] if self.prev_flat_grad is None else [self.prev_flat_grad]

    def _run(self, closure: Callable[[], Any], value: float, sums: Sums, grad: int) -> None:
        evals, n_iter = 1, 0
        search, slots = self._search, self._slots
        square, cross = sums.square, sums.dot
        restart = self.restart if self.restart is not None else max(search.size, 1)
        while n_iter < self.max_iter:
            n_iter += 1
            self.n_iter += 1
            beta = self._beta_value(square, cross, restart)
            slot = slots.take()
            d = Sums(*search.direction(slot, grad, beta, self.d if beta else -1, [grad]))
            if beta and not d.dot < 0:  # not a descent direction: restart at -g
                beta = 0.0
                d = Sums(*search.direction(slot, grad, 0.0, -1, [grad]))
            self.since_restart = 0 if not beta else self.since_restart + 1
            slots.give(self.d)
            self.d = slot
            t = self._initial_step(value, d.dot, sums)
            if not d.dot < 0:  # -g does not descend: g is 0 (or NaN)
                break
            new_value, new_grad, self.t, ls_evals, new_sums = self._line_search(
                closure, (value, grad, sums), (slot, d), t, self._eval_budget - evals, c2=self.c2
            )
            evals += ls_evals
            self.func_evals += ls_evals
            self.prev_loss, self.grad_square = value, square
            if self.prev_flat_grad != grad:
                slots.give(self.prev_flat_grad)
            self.prev_flat_grad = grad
            if new_grad == grad:  # the line search found no better point: restart at -g next
                self.since_restart = restart
            sums = new_sums
            cross = sums.dot2 if new_grad != grad else square
            grad, value, square = new_grad, new_value, sums.square
            if (
                evals >= self._eval_budget
                or sums.largest <= self.tolerance_grad
                or abs(d.largest * self.t) <= self.tolerance_change
            ):
                break
        if grad != self.prev_flat_grad:
            slots.give(grad)

    def _check_counters(self, counters: dict[str, Any]) -> None:
        square = counters["grad_square"]
        if square is not None and not (math.isfinite(square) and square >= 0):
            raise ValueError(f"counters['grad_square'] must be finite and >= 0; got {square!r}")

    def _beta_value(self, square: float, cross: float, restart: int) -> float:
        """beta for d = -g + beta d_prev; 0 restarts."""
        if not (self.d is not None and self.grad_square and self.since_restart + 1 < restart):
            return 0.0  # (a zero |g_prev|^2 comes only from a loaded state: restart too)
        if abs(cross) >= 0.2 * square:  # Powell: successive gradients far from orthogonal
            return 0.0
        if self.beta == "fletcher_reeves":
            return square / self.grad_square
        return max(0.0, (square - cross) / self.grad_square)

    def _initial_step(self, value: float, gtd: float, sums: Sums) -> float:
        """The line search's first trial: min(1, 1/|g|_1) lr at first, then the step that would
        change the loss as much as the last one did (Nocedal & Wright eq. 3.60), at most lr."""
        if self.prev_loss is None:
            return min(1.0, 1.0 / sums.magnitude) * self.lr
        guess = 1.01 * 2 * (value - self.prev_loss) / gtd
        return min(self.lr, guess) if guess > 0 else self.lr
