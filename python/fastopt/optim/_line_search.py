"""A line search that satisfies the strong Wolfe conditions, shared by L-BFGS and CG.

Nocedal & Wright, Numerical Optimization (2nd ed.), Algorithms 3.5 (bracketing) and 3.6 (zoom),
with cubic interpolation (their eq. 3.59) and the safeguards of Mark Schmidt's minFunc. Every
decision follows torch.optim.LBFGS's ``_strong_wolfe`` (torch/optim/lbfgs.py, torch 2.13), so
that fastopt's iterates follow torch's; the code is fastopt's own. Here it is scalar logic only:
the trial points, gradients and directional derivatives are the caller's ``evaluate(t)``, one
fused call each, and a gradient is a slot of the caller's ``_core.Search``, never copied.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

__all__ = ["strong_wolfe", "cubic_minimum"]


def cubic_minimum(
    x1: float,
    f1: float,
    g1: float,
    x2: float,
    f2: float,
    g2: float,
    bounds: tuple[float, float] | None = None,
) -> float:
    """The minimizer of the cubic through (x1, f1) and (x2, f2) with slopes g1 and g2, clipped to
    ``bounds`` (default: between x1 and x2); their midpoint when the cubic has no minimum."""
    # (x1, x2) ordered by <=, not min and max: they differ when one is NaN, and torch orders so.
    low, high = bounds if bounds is not None else ((x1, x2) if x1 <= x2 else (x2, x1))
    # In NumPy float64 with warnings off, as torch's 0-d tensors compute: a collapsed bracket
    # (x1 == x2) or an overflow gives inf or NaN and the midpoint, where Python floats raise.
    with np.errstate(all="ignore"):
        x1_, f1_, g1_, x2_, f2_, g2_ = (np.float64(v) for v in (x1, f1, g1, x2, f2, g2))
        d1 = g1_ + g2_ - 3 * (f1_ - f2_) / (x1_ - x2_)
        d2_square = d1 * d1 - g1_ * g2_
        if not d2_square >= 0:  # no real minimum (or NaN): the midpoint, as torch
            return (low + high) / 2.0
        d2 = np.sqrt(d2_square)
        if x1_ <= x2_:
            at = x2_ - (x2_ - x1_) * ((g2_ + d2 - d1) / (g2_ - g1_ + 2 * d2))
        else:
            at = x1_ - (x1_ - x2_) * ((g1_ + d2 - d1) / (g1_ - g2_ + 2 * d2))
    return min(max(float(at), low), high)


class _Point:
    """One evaluated step length: t, the loss, the gradient's slot and g . d there."""

    __slots__ = ("t", "f", "g", "gtd")

    def __init__(self, t: float, f: float, g: int, gtd: float) -> None:
        self.t, self.f, self.g, self.gtd = t, f, g, gtd


def strong_wolfe(
    evaluate: Callable[[float], tuple[float, int, float]],
    release: Callable[[int], None],
    t: float,
    d_norm: float,
    f: float,
    g: int,
    gtd: float,
    c1: float = 1e-4,
    c2: float = 0.9,
    tolerance_change: float = 1e-9,
    max_ls: int = 25,
) -> tuple[float, int, float, int]:
    """A step length along d from x (loss f, gradient slot g, g . d = gtd < 0), starting at t.

    ``evaluate(t)`` moves the params to x + t d and returns (loss, gradient slot, g . d) there;
    ``release(slot)`` gives back a gradient slot no longer needed (never g, the caller's).
    ``d_norm`` is |d|_inf. Returns (loss, gradient slot, t, evaluations) of the chosen point.
    """
    origin = _Point(0.0, f, g, gtd)
    owned: set[int] = set()

    def point(step: float) -> _Point:
        loss, slot, slope = evaluate(step)
        owned.add(slot)
        return _Point(step, loss, slot, slope)

    def keep(*points: _Point) -> None:
        """Release every gradient the search took that these points no longer hold."""
        held = {p.g for p in points}
        for slot in owned - held:
            release(slot)
        owned.intersection_update(held)

    new = point(t)
    evals = 1
    prev = origin
    done = False
    ls_iter = 0
    bracket: list[_Point] = []
    while ls_iter < max_ls:
        if new.f > f + c1 * new.t * gtd or (ls_iter > 1 and new.f >= prev.f):
            bracket = [prev, new]
            break
        if abs(new.gtd) <= -c2 * gtd:
            bracket = [new]
            done = True
            break
        if new.gtd >= 0:
            bracket = [prev, new]
            break
        # Extrapolate: the cubic's minimum, at least 1% beyond t and at most 10 t.
        step = cubic_minimum(
            prev.t, prev.f, prev.gtd, new.t, new.f, new.gtd,
            bounds=(new.t + 0.01 * (new.t - prev.t), new.t * 10),
        )  # fmt: skip
        prev = new
        keep(prev)
        new = point(step)
        evals += 1
        ls_iter += 1
    if ls_iter >= max_ls:  # out of evaluations while extrapolating (the loop never broke)
        bracket = [origin, new]
    keep(*bracket)
    if len(bracket) == 1:
        return bracket[0].f, bracket[0].g, bracket[0].t, evals
    return _zoom(point, keep, bracket, done, ls_iter, evals, f, gtd, d_norm, c1, c2,
                 tolerance_change, max_ls)  # fmt: skip


def _zoom(
    point: Callable[[float], _Point],
    keep: Callable[..., None],
    bracket: list[_Point],
    done: bool,
    ls_iter: int,
    evals: int,
    f: float,
    gtd: float,
    d_norm: float,
    c1: float,
    c2: float,
    tolerance_change: float,
    max_ls: int,
) -> tuple[float, int, float, int]:
    """Shrink the bracket (an interval holding a point of the strong Wolfe conditions) until a
    trial point satisfies them, the bracket is tiny, or the evaluations run out."""
    insufficient_progress = False
    low, high = (0, 1) if bracket[0].f <= bracket[-1].f else (1, 0)
    while not done and ls_iter < max_ls:
        if abs(bracket[1].t - bracket[0].t) * d_norm < tolerance_change:
            break
        a, b = bracket
        t = cubic_minimum(a.t, a.f, a.gtd, b.t, b.f, b.gtd)
        # Safeguard: a trial too near an end (within 10% of the bracket) is moved in, unless the
        # previous one was not, so that the bracket keeps shrinking.
        top, bottom = max(a.t, b.t), min(a.t, b.t)
        eps = 0.1 * (top - bottom)
        if min(top - t, t - bottom) < eps:
            if insufficient_progress or t >= top or t <= bottom:
                t = top - eps if abs(t - top) < abs(t - bottom) else bottom + eps
                insufficient_progress = False
            else:
                insufficient_progress = True
        else:
            insufficient_progress = False
        new = point(t)
        evals += 1
        ls_iter += 1
        if new.f > f + c1 * t * gtd or new.f >= bracket[low].f:
            bracket[high] = new
            low, high = (0, 1) if bracket[0].f <= bracket[1].f else (1, 0)
        else:
            if abs(new.gtd) <= -c2 * gtd:
                done = True
            elif new.gtd * (bracket[high].t - bracket[low].t) >= 0:
                bracket[high] = bracket[low]
            bracket[low] = new
        keep(*bracket)
    chosen = bracket[low]
    keep(chosen)
    return chosen.f, chosen.g, chosen.t, evals
