"""Learning-rate schedules: plain callables from step to learning rate.

``step`` is the number of updates made before the one the rate is for (0 for the first), as in
torch.optim.lr_scheduler after that many ``scheduler.step()`` calls. Every optimizer accepts a
schedule wherever it accepts ``lr``; it is evaluated once per update() and ``opt.lr`` then reads
the rate in use::

    opt = fastopt.Adam(lr=schedules.warmup(schedules.cosine(1e-3, period=10_000), steps=500))

The closed forms match torch.optim.lr_scheduler's (StepLR, MultiStepLR, ExponentialLR,
PolynomialLR, CosineAnnealingLR, CosineAnnealingWarmRestarts, LinearLR, OneCycleLR,
ReduceLROnPlateau); ``inverse_time`` is the book's "learning rate decay", lr / (1 + rate*t).
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable, Sequence

__all__ = [
    "constant",
    "step_decay",
    "multi_step",
    "exponential",
    "inverse_time",
    "polynomial",
    "cosine",
    "warmup",
    "one_cycle",
    "ReduceOnPlateau",
]

Schedule = Callable[[int], float]


def _positive_int(name: str, value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{name} must be a positive integer; got {value!r}")
    return value


def _step(step: int) -> int:
    if step < 0:
        raise ValueError(f"a schedule's step counts updates and is >= 0; got {step}")
    return step


def constant(lr: float) -> Schedule:
    """lr at every step."""
    return lambda step: lr


def step_decay(lr: float, step_size: int, gamma: float = 0.1) -> Schedule:
    """lr * gamma ** (step // step_size): torch's StepLR."""
    _positive_int("step_size", step_size)
    return lambda step: lr * gamma ** (_step(step) // step_size)


def multi_step(lr: float, milestones: Sequence[int], gamma: float = 0.1) -> Schedule:
    """lr * gamma ** (number of milestones <= step): torch's MultiStepLR."""
    marks = sorted(milestones)
    return lambda step: lr * gamma ** bisect.bisect_right(marks, _step(step))


def exponential(lr: float, gamma: float) -> Schedule:
    """lr * gamma ** step: torch's ExponentialLR."""
    return lambda step: lr * gamma ** _step(step)


def inverse_time(lr: float, decay_rate: float, decay_steps: int = 1) -> Schedule:
    """lr / (1 + decay_rate * step / decay_steps): the book's learning-rate decay."""
    _positive_int("decay_steps", decay_steps)
    return lambda step: lr / (1 + decay_rate * _step(step) / decay_steps)


def polynomial(lr: float, total_steps: int, power: float = 1.0, end_lr: float = 0.0) -> Schedule:
    """(lr - end_lr) * (1 - min(step, total)/total) ** power + end_lr: torch's PolynomialLR
    (which is the case end_lr = 0)."""
    _positive_int("total_steps", total_steps)
    return lambda step: (
        (lr - end_lr) * (1.0 - min(total_steps, _step(step)) / total_steps) ** power + end_lr
    )


def cosine(
    lr: float, period: int, min_lr: float = 0.0, *, restart_mult: int | None = None
) -> Schedule:
    """Cosine annealing from lr to min_lr over `period` steps: torch's CosineAnnealingLR.

    With `restart_mult` (an integer >= 1) it restarts at lr after each period, each period
    `restart_mult` times the last: torch's CosineAnnealingWarmRestarts(T_0=period, T_mult=...).
    Without it the cosine continues past `period`, as torch's closed form does.
    """
    _positive_int("period", period)
    if restart_mult is not None:
        _positive_int("restart_mult", restart_mult)

    def schedule(step: int) -> float:
        step = _step(step)
        position, length = step, period
        if restart_mult == 1:
            position = step % period
        elif restart_mult is not None:
            n = int(math.log(step / period * (restart_mult - 1) + 1, restart_mult))
            position = step - period * (restart_mult**n - 1) // (restart_mult - 1)
            length = period * restart_mult**n
        return min_lr + (lr - min_lr) * (1 + math.cos(math.pi * position / length)) / 2

    return schedule


def warmup(schedule: Schedule | float, steps: int, start_factor: float = 0.0) -> Schedule:
    """Linear warmup over `steps` updates, then `schedule` (a schedule or a constant lr).

    During warmup the rate rises linearly from start_factor * schedule(0) to schedule(0) (torch's
    LinearLR); afterwards it is schedule(step - steps), so the schedule starts where warmup ends.
    """
    _positive_int("steps", steps)
    inner = schedule if callable(schedule) else constant(schedule)

    def warmed(step: int) -> float:
        step = _step(step)
        if step < steps:
            return inner(0) * (start_factor + (1.0 - start_factor) * step / steps)
        return inner(step - steps)

    return warmed


def one_cycle(
    max_lr: float,
    total_steps: int,
    pct_start: float = 0.3,
    div_factor: float = 25.0,
    final_div_factor: float = 1e4,
) -> Schedule:
    """Smith's one-cycle policy with cosine annealing: torch's OneCycleLR (two phases).

    From max_lr/div_factor up to max_lr over the first pct_start of the steps, then down to
    max_lr/div_factor/final_div_factor at step total_steps - 1.
    """
    _positive_int("total_steps", total_steps)
    initial = max_lr / div_factor
    final = initial / final_div_factor
    peak = float(pct_start * total_steps) - 1

    def anneal(start: float, end: float, pct: float) -> float:
        return end + (start - end) / 2.0 * (math.cos(math.pi * pct) + 1)

    def schedule(step: int) -> float:
        step = _step(step)
        if step <= peak:
            return anneal(initial, max_lr, step / peak)
        return anneal(max_lr, final, (step - peak) / (total_steps - 1 - peak))

    return schedule


class ReduceOnPlateau:
    """Cut the rate by `factor` when a metric stops improving: torch's ReduceLROnPlateau.

    Feed it the metric after each epoch with ``observe(metric)``; as a schedule it returns the
    current rate whatever the step::

        plateau = schedules.ReduceOnPlateau(0.1, patience=3)
        opt = fastopt.SGD(lr=plateau)
        for epoch in ...:
            train(opt); plateau.observe(validation_loss())
    """

    def __init__(
        self,
        lr: float,
        mode: str = "min",
        factor: float = 0.1,
        patience: int = 10,
        threshold: float = 1e-4,
        threshold_mode: str = "rel",
        cooldown: int = 0,
        min_lr: float = 0.0,
        eps: float = 1e-8,
    ) -> None:
        if mode not in ("min", "max") or threshold_mode not in ("rel", "abs"):
            raise ValueError("mode must be 'min' or 'max', threshold_mode 'rel' or 'abs'")
        if not 0.0 < factor < 1.0:
            raise ValueError(f"factor must be in (0, 1); got {factor!r}")
        self.lr, self.mode, self.factor, self.patience = lr, mode, factor, patience
        self.threshold, self.threshold_mode = threshold, threshold_mode
        self.cooldown, self.min_lr, self.eps = cooldown, min_lr, eps
        self.best = math.inf if mode == "min" else -math.inf
        self.bad_epochs = 0
        self.cooldown_left = 0

    def _better(self, metric: float) -> bool:
        if self.mode == "min":
            edge = (
                self.best * (1 - self.threshold)
                if self.threshold_mode == "rel"
                else self.best - self.threshold
            )
            return metric < edge
        edge = (
            self.best * (1 + self.threshold)
            if self.threshold_mode == "rel"
            else self.best + self.threshold
        )
        return metric > edge

    def observe(self, metric: float) -> float:
        """Record one epoch's metric; returns the rate to use from now on."""
        metric = float(metric)
        if self._better(metric):
            self.best, self.bad_epochs = metric, 0
        else:
            self.bad_epochs += 1
        if self.cooldown_left > 0:
            self.cooldown_left -= 1
            self.bad_epochs = 0
        if self.bad_epochs > self.patience:
            reduced = max(self.lr * self.factor, self.min_lr)
            if self.lr - reduced > self.eps:
                self.lr = reduced
            self.cooldown_left, self.bad_epochs = self.cooldown, 0
        return self.lr

    def __call__(self, step: int) -> float:
        return self.lr
