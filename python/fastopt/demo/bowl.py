"""Part 1: every optimizer's path on f(x, y) = x**2/20 + y**2 from (-7, 2), as in the book; and
the paths of L-BFGS and conjugate gradients, which search along a direction instead of stepping."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastopt import optim

from .optimizers import OPTIMIZERS

START = (-7.0, 2.0)
STEPS = 30

# One iteration per step() call, so that the path shows every iterate (a closure also sees the
# line search's trial points). max_eval must be given: its default, max_iter * 5 // 4 (torch's
# rule), is 1 at max_iter=1 and would leave the line search no evaluation after its first trial.
# CG's default c2 = 0.1 is enough for the textbook's two steps: on a quadratic the line search's
# cubic interpolation lands on the exact minimum along the line (c2 = 1e-6 gives the same points).
SEARCHES: dict[str, tuple[Any, dict[str, Any]]] = {
    "L-BFGS": (optim.LBFGS, {"max_iter": 1, "max_eval": 25, "line_search_fn": "strong_wolfe"}),
    "CG": (optim.ConjugateGradient, {"max_iter": 1, "max_eval": 25}),
}


def f(x, y):
    return x**2 / 20.0 + y**2


def gradient(x: float, y: float) -> dict[str, float]:
    return {"x": x / 10.0, "y": 2.0 * y}


def paths(names: list[str], steps: int = STEPS) -> dict[str, list[tuple[float, float]]]:
    """The points each optimizer visits. The params are plain floats, as in the book's script."""
    result = {}
    for name in names:
        entry = OPTIMIZERS[name]
        opt = entry.fast(**entry.bowl)
        params = {"x": START[0], "y": START[1]}
        points = [START]
        for _ in range(steps):
            opt.update(params, gradient(params["x"], params["y"]))
            points.append((float(params["x"]), float(params["y"])))
        result[name] = points
    return result


def _closure(params: dict[str, float]) -> Callable[[], tuple[float, dict[str, float]]]:
    return lambda: (f(params["x"], params["y"]), gradient(params["x"], params["y"]))


def search_paths(steps: int = STEPS) -> dict[str, list[tuple[float, float]]]:
    """The iterates of L-BFGS and CG, one per iteration, until a step no longer moves them."""
    result = {}
    for name, (cls, settings) in SEARCHES.items():
        opt = cls(**settings)
        params = {"x": START[0], "y": START[1]}
        points = [START]
        closure = _closure(params)
        for _ in range(steps):
            opt.step(params, closure)
            point = (float(params["x"]), float(params["y"]))
            if point == points[-1]:  # converged: step() returns at once when |g| <= tolerance
                break
            points.append(point)
        result[name] = points
    return result
