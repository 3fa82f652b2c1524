"""fastopt.schedules: torch's closed forms where torch has the schedule, the formula otherwise,
and optimizers that take a schedule as lr."""

from __future__ import annotations

import math

import fastopt
import numpy as np
import pytest
from fastopt import reference, schedules

STEPS = 60


def torch_rates(make_scheduler, base_lr=0.5, steps=STEPS, metrics=None):
    """The lr torch uses at each of `steps` updates (scheduler.step() after each)."""
    torch = pytest.importorskip("torch")
    param = torch.zeros(1, requires_grad=True)
    opt = torch.optim.SGD([param], lr=base_lr)
    scheduler = make_scheduler(torch.optim.lr_scheduler, opt)
    rates = []
    for step in range(steps):
        rates.append(opt.param_groups[0]["lr"])
        opt.step()
        scheduler.step(metrics[step]) if metrics is not None else scheduler.step()
    return rates


CASES = {
    "step_decay": (
        schedules.step_decay(0.5, step_size=7, gamma=0.5),
        lambda s, o: s.StepLR(o, step_size=7, gamma=0.5),
    ),
    "multi_step": (
        schedules.multi_step(0.5, milestones=[5, 20, 21], gamma=0.3),
        lambda s, o: s.MultiStepLR(o, milestones=[5, 20, 21], gamma=0.3),
    ),
    "exponential": (schedules.exponential(0.5, 0.95), lambda s, o: s.ExponentialLR(o, 0.95)),
    "polynomial": (
        schedules.polynomial(0.5, total_steps=40, power=2.0),
        lambda s, o: s.PolynomialLR(o, total_iters=40, power=2.0),
    ),
    "cosine": (
        schedules.cosine(0.5, period=25, min_lr=0.01),
        lambda s, o: s.CosineAnnealingLR(o, T_max=25, eta_min=0.01),
    ),
    "cosine restarts x1": (
        schedules.cosine(0.5, period=10, min_lr=0.01, restart_mult=1),
        lambda s, o: s.CosineAnnealingWarmRestarts(o, T_0=10, T_mult=1, eta_min=0.01),
    ),
    "cosine restarts x2": (
        schedules.cosine(0.5, period=5, restart_mult=2),
        lambda s, o: s.CosineAnnealingWarmRestarts(o, T_0=5, T_mult=2),
    ),
    "linear warmup": (
        schedules.warmup(0.5, steps=10, start_factor=0.1),
        lambda s, o: s.LinearLR(o, start_factor=0.1, end_factor=1.0, total_iters=10),
    ),
    "one cycle": (
        schedules.one_cycle(0.5, total_steps=STEPS),
        lambda s, o: s.OneCycleLR(o, max_lr=0.5, total_steps=STEPS),
    ),
}


@pytest.mark.parametrize("name", CASES)
def test_matches_torch(name):
    schedule, make = CASES[name]
    np.testing.assert_allclose([schedule(t) for t in range(STEPS)], torch_rates(make), rtol=1e-9)


def test_reduce_on_plateau_matches_torch():
    metrics = [1.0, 0.9, 0.95, 0.95, 0.95, 0.95, 0.8, 0.8, 0.8, 0.8, 0.8, 0.8] * 5
    plateau = schedules.ReduceOnPlateau(0.5, patience=2, factor=0.5, cooldown=1, min_lr=0.01)
    mine = []
    for metric in metrics:
        mine.append(plateau(0))
        plateau.observe(metric)
    theirs = torch_rates(
        lambda s, o: s.ReduceLROnPlateau(o, patience=2, factor=0.5, cooldown=1, min_lr=0.01),
        steps=len(metrics),
        metrics=metrics,
    )
    np.testing.assert_allclose(mine, theirs, rtol=1e-12)
    assert min(mine) < 0.5  # it did reduce


def test_inverse_time_and_constant():
    schedule = schedules.inverse_time(0.1, decay_rate=0.5, decay_steps=10)
    assert [schedule(t) for t in (0, 10, 30)] == [0.1, 0.1 / 1.5, 0.1 / 2.5]
    assert schedules.constant(0.3)(12345) == 0.3


def test_warmup_hands_over_to_the_schedule():
    inner = schedules.exponential(1.0, 0.5)
    schedule = schedules.warmup(inner, steps=4)
    assert [schedule(t) for t in range(7)] == [0.0, 0.25, 0.5, 0.75, 1.0, 0.5, 0.25]


@pytest.mark.parametrize(
    "make", [lambda: schedules.step_decay(0.1, 0), lambda: schedules.cosine(0.1, period=-1)]
)
def test_bad_schedule_arguments(make):
    with pytest.raises(ValueError):
        make()


def test_optimizer_evaluates_the_schedule_once_per_update(rng):
    calls = []

    def schedule(step):
        calls.append(step)
        return 0.1 * 0.5**step

    opt = fastopt.SGD(lr=schedule)
    ref = reference.SGD(lr=0.1)
    params = {"w": rng.standard_normal(20)}
    params_ref = {"w": params["w"].copy()}
    for step in range(5):
        grads = {"w": rng.standard_normal(20)}
        opt.update(params, grads)
        ref.lr = 0.1 * 0.5**step
        ref.update(params_ref, grads)
        assert opt.lr == 0.1 * 0.5**step  # opt.lr reads the rate in use
    assert np.array_equal(params["w"], params_ref["w"])
    assert calls == [0, 0, 1, 2, 3, 4]  # once at construction, then once per update


@pytest.mark.parametrize(
    "make", [lambda s: fastopt.Adam(lr=s), lambda s: fastopt.optim.AdamW(lr=s)]
)
def test_schedules_work_with_stepwise_optimizers(make, rng):
    schedule = schedules.warmup(schedules.cosine(1e-2, period=20), steps=5)
    fixed = [schedule(t) for t in range(12)]
    opt = make(schedule)
    opt_manual = make(1e-2)
    params = {"w": rng.standard_normal(9)}
    params_manual = {"w": params["w"].copy()}
    for step in range(12):
        grads = {"w": rng.standard_normal(9)}
        opt.update(params, grads)
        opt_manual.lr = fixed[step]
        opt_manual.update(params_manual, grads)
    assert np.array_equal(params["w"], params_manual["w"])


def test_a_schedule_giving_a_bad_rate_changes_nothing(rng):
    opt = fastopt.Momentum(lr=lambda step: 0.1 if step < 2 else -1.0)
    params = {"w": rng.standard_normal(4)}
    grads = {"w": rng.standard_normal(4)}
    opt.update(params, grads)
    opt.update(params, grads)
    before_w, before_v = params["w"].copy(), opt.v["w"].copy()
    with pytest.raises(ValueError, match="lr schedule gave -1.0 at step 2"):
        opt.update(params, grads)
    assert np.array_equal(params["w"], before_w) and np.array_equal(opt.v["w"], before_v)
    assert math.isfinite(opt.lr)
