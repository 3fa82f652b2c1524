"""Part 3: multinomial logistic regression on the digits, full batch: L-BFGS against Adam.

A convex, smooth loss on all 1,437 training images at once, the setting quasi-Newton methods are
made for. Both optimizers get the same budget of gradient evaluations (closure calls), from zero
weights; the loss of every evaluation is recorded, line-search trials included.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

import fastopt
from fastopt import optim

L2 = 1e-4  # small: the loss stays ill-conditioned enough for the methods to differ
BUDGET = 100  # gradient evaluations for each optimizer
# Adam's rate: the lowest loss after BUDGET evaluations of 0.03, 0.1, 0.3 and 1 (seeds 0-4).
ADAM_LR = 0.3


@dataclass
class Fit:
    name: str
    losses: list[float] = field(default_factory=list)  # full-batch loss at each evaluation
    final_loss: float = 0.0  # at the params the optimizer ends with
    test_accuracy: float = 0.0


Params = dict[str, Any]


def loss_and_grads(params, x, y) -> tuple[float, Params]:
    """Mean softmax cross-entropy plus (L2 / 2) |W|^2, and its gradients."""
    logits = x @ params["W"] + params["b"]
    logits -= logits.max(axis=1, keepdims=True)
    probabilities = np.exp(logits)
    probabilities /= probabilities.sum(axis=1, keepdims=True)
    rows = np.arange(len(y))
    loss = -np.mean(np.log(probabilities[rows, y])) + 0.5 * L2 * np.sum(params["W"] ** 2)
    delta = probabilities
    delta[rows, y] -= 1.0
    delta /= len(y)
    return float(loss), {"W": x.T @ delta + L2 * params["W"], "b": delta.sum(axis=0)}


def accuracy(params, x, y) -> float:
    return float(np.mean((x @ params["W"] + params["b"]).argmax(axis=1) == y))


def _zeros(x, y) -> Params:
    classes = int(y.max()) + 1
    return {"W": np.zeros((x.shape[1], classes)), "b": np.zeros(classes)}


def _finish(fit: Fit, params, data) -> Fit:
    x_train, y_train, x_test, y_test = data
    fit.final_loss = loss_and_grads(params, x_train, y_train)[0]
    fit.test_accuracy = accuracy(params, x_test, y_test)
    return fit


def lbfgs(data, budget: int = BUDGET, **settings) -> Fit:
    """One step() of up to ``budget`` iterations and evaluations: a loop of steps would re-evaluate
    the closure at the start of each, spending evaluations on points already seen. ``settings``:
    more of LBFGS's."""
    x_train, y_train = data[0], data[1]
    params = _zeros(x_train, y_train)
    fit = Fit("L-BFGS")

    def closure():
        loss, grads = loss_and_grads(params, x_train, y_train)
        fit.losses.append(loss)
        return loss, grads

    opt = optim.LBFGS(max_iter=budget, max_eval=budget, line_search_fn="strong_wolfe", **settings)
    opt.step(params, closure)
    return _finish(fit, params, data)


def adam(data, budget: int = BUDGET, lr: float = ADAM_LR) -> Fit:
    x_train, y_train = data[0], data[1]
    params = _zeros(x_train, y_train)
    opt = fastopt.Adam(lr=lr)
    fit = Fit(f"Adam (lr={lr})")
    for _ in range(budget):
        loss, grads = loss_and_grads(params, x_train, y_train)
        fit.losses.append(loss)
        opt.update(params, grads)
    return _finish(fit, params, data)


def optimum(data) -> float:
    """The minimum of the loss, to plot the others' distance to it: L-BFGS with tight tolerances
    (about 400 evaluations, |g| ~ 4e-8; the loss is L2-strongly convex, so that is within
    |g|^2 / (2 L2) ~ 1e-11 of the minimum, far below the distances plotted)."""
    return lbfgs(data, budget=1000, tolerance_grad=1e-10, tolerance_change=1e-12).final_loss


def compare(data) -> tuple[list[Fit], float]:
    """L-BFGS and Adam on the same budget, and the loss's minimum."""
    # threadpoolctl comes with scikit-learn. One BLAS thread: these products are too small to
    # share out, and BLAS threads that wait on a busy core made this part 10x slower (8 s, not
    # 0.8 s) on a 2-core machine with one other process running.
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1, user_api="blas"):
        return [lbfgs(data), adam(data)], optimum(data)
