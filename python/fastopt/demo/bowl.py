"""Part 1: every optimizer's path on f(x, y) = x**2/20 + y**2 from (-7, 2), as in the book."""

from __future__ import annotations

from .optimizers import OPTIMIZERS

START = (-7.0, 2.0)
STEPS = 30


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
