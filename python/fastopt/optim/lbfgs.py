"""L-BFGS: torch.optim.LBFGS's algorithm and settings, on fastopt's fused vector passes."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np

from .._checks import line_search, positive_count
from .._settings import Hyperparameter
from ._search import SearchOptimizer, Sums

__all__ = ["LBFGS"]


class LBFGS(SearchOptimizer):
    """Limited-memory BFGS, as ``torch.optim.LBFGS`` (torch 2.13), for NumPy params.

    One ``step(params, closure)`` runs up to ``max_iter`` iterations, each a quasi-Newton
    direction from the two-loop recursion over the last ``history_size`` curvature pairs
    (Nocedal & Wright, Algorithm 7.4) and a step along it: ``lr`` (the first iteration ever:
    ``min(1, 1/|g|_1) lr``), or a strong-Wolfe line search with ``line_search_fn="strong_wolfe"``.
    It stops early when ``|g|_inf <= tolerance_grad``, when the step or the change of the loss is
    below ``tolerance_change``, or after ``max_eval`` evaluations (default ``max_iter * 5 // 4``).
    The iterates are torch's, with torch's settings and the same closure, to rounding: dot
    products are summed in double, in an order fixed by the data, not by BLAS.

    The params of every key are one vector (``float32`` or ``float64``; float64 if any key is).
    The history lives in compiled buffers: ``2 * history_size + 6`` vectors of that size at
    most, ``max_iter`` pairs more while a step runs (so that a failed step can be undone).

    Parameters
    ----------
    lr : float
        The step length (the line search's first trial with "strong_wolfe").
    max_iter, max_eval : int
        Iterations and closure evaluations per ``step``.
    tolerance_grad, tolerance_change : float
        Stopping tolerances: on ``|g|_inf``, and on the step ``|t d|_inf`` or the loss's change.
    history_size : int
        Curvature pairs kept.
    line_search_fn : None or "strong_wolfe"
        None: fixed steps of ``lr``; "strong_wolfe": a line search that satisfies the strong
        Wolfe conditions (c1 = 1e-4, c2 = 0.9).

    Examples
    --------
    >>> def closure():
    ...     loss, grads = model.loss_and_grads(params)
    ...     return loss, grads
    >>> opt = fastopt.optim.LBFGS(line_search_fn="strong_wolfe")
    >>> for _ in range(10):
    ...     loss = opt.step(params, closure)
    """

    history_size = Hyperparameter(positive_count)
    line_search_fn = Hyperparameter(line_search)

    _hyperparameters = (
        "lr",
        "max_iter",
        "max_eval",
        "tolerance_grad",
        "tolerance_change",
        "history_size",
        "line_search_fn",
    )
    # torch's state names: func_evals and n_iter count over every step; t is the last step
    # length, H_diag the initial inverse Hessian's scale, rho[i] = 1 / (y_i . s_i).
    _counters = {
        "func_evals": 0,
        "n_iter": 0,
        "t": None,
        "H_diag": 1.0,
        "prev_loss": None,
        "rho": [],
    }
    _vectors = ("d", "prev_flat_grad")
    _stacks = ("old_dirs", "old_stps")  # y and s of the pairs, oldest first
    H_diag: float
    rho: list[float]
    old_dirs: list[int]
    old_stps: list[int]

    def __init__(
        self,
        lr: float = 1,
        max_iter: int = 20,
        max_eval: int | None = None,
        tolerance_grad: float = 1e-7,
        tolerance_change: float = 1e-9,
        history_size: int = 100,
        line_search_fn: str | None = None,
    ) -> None:
        super().__init__(
            lr=lr,
            max_iter=max_iter,
            max_eval=max_eval,
            tolerance_grad=tolerance_grad,
            tolerance_change=tolerance_change,
            history_size=history_size,
            line_search_fn=line_search_fn,
        )

    def _run(self, closure: Callable[[], Any], value: float, sums: Sums, grad: int) -> None:
        """The iterations of one step, in torch.optim.LBFGS.step's order of decisions."""
        evals, n_iter = 1, 0
        search, slots = self._search, self._slots
        while n_iter < self.max_iter:
            n_iter += 1
            self.n_iter += 1
            direction = self._direction(grad, slots.take())
            slots.give(self.d)
            self.d = direction.slot
            if self.prev_flat_grad not in (None, grad):
                slots.give(self.prev_flat_grad)
            self.prev_flat_grad = grad
            self.prev_loss = value
            if self.n_iter == 1:
                self.t = min(1.0, 1.0 / sums.magnitude) * self.lr
            else:
                self.t = self.lr
            gtd = direction.sums.dot
            if gtd > -self.tolerance_change:
                break
            if self.line_search_fn is not None:
                value, grad, self.t, ls_evals, sums = self._line_search(
                    closure, (value, grad, sums), direction, self.t, self._eval_budget - evals
                )
                largest = sums.largest
            else:
                self._place(-1, self.t, self.d)
                ls_evals = 0
                largest = float("nan")
                if n_iter != self.max_iter:
                    (_, value), sums, grad = self._evaluate(closure, [])
                    largest, ls_evals = sums.largest, 1
            evals += ls_evals
            self.func_evals += ls_evals
            if (
                n_iter == self.max_iter
                or evals >= self._eval_budget
                or largest <= self.tolerance_grad
                or direction.largest_step(self.t, search.dtype) <= self.tolerance_change
                or abs(value - self.prev_loss) < self.tolerance_change
            ):
                break
        if grad != self.prev_flat_grad:
            slots.give(grad)

    def _check_counters(self, counters: dict[str, Any]) -> None:
        if counters["n_iter"] > 0 and not (
            _finite(counters["t"]) and _finite(counters["H_diag"]) and counters["H_diag"] > 0
        ):
            raise ValueError("a state with n_iter > 0 needs a finite t and a finite H_diag > 0")
        if not all(_finite(r) and r > 0 for r in counters["rho"]):
            raise ValueError("counters['rho'] must hold finite numbers > 0 (1 / y.s, y.s > 1e-10)")

    def _direction(self, grad: int, slot: int) -> _Direction:
        """The new direction into ``slot``: -g on the first iteration ever, else the curvature
        pair from the last step joins the history (if y . s > 1e-10) and the two-loop recursion
        gives -H g."""
        search, slots = self._search, self._slots
        if self.n_iter == 1:
            self.old_stps, self.old_dirs, self.rho, self.H_diag = [], [], [], 1.0
            return _Direction(slot, Sums(*search.direction(slot, grad, 0.0, -1, [grad])))
        y, s = slots.take(), slots.take()
        ys, _, yy, _, _ = search.pair(y, s, grad, self.prev_flat_grad, self.d, self.t)
        if ys > 1e-10:
            stps, dirs, rho = self.old_stps, self.old_dirs, self.rho
            # The oldest pairs make room: one when the history is full, as torch; more when
            # history_size was lowered since (torch's history would then grow without bound).
            drop = max(len(dirs) + 1 - self.history_size, 0)
            for old in (*stps[:drop], *dirs[:drop]):
                slots.give(old)
            stps, dirs, rho = stps[drop:], dirs[drop:], rho[drop:]
            self.old_stps, self.old_dirs, self.rho = [*stps, s], [*dirs, y], [*rho, 1.0 / ys]
            self.H_diag = ys / yy
        else:
            slots.give(y)
            slots.give(s)
        sums = search.two_loop(slot, grad, self.old_stps, self.old_dirs, self.rho, self.H_diag)
        return _Direction(slot, Sums(*sums))


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


class _Direction(NamedTuple):
    """A new direction: its slot, and its pass's sums (dot: g . d; largest: |d|_inf)."""

    slot: int
    sums: Sums

    def largest_step(self, t: float, dtype: str) -> float:
        """|t d|_inf as torch computes it, in the params' dtype (|.| and max commute with a
        rounded product, so it is |d|_inf * t rounded once)."""
        kind = np.dtype(dtype).type
        return abs(float(kind(self.sums.largest) * kind(t)))
