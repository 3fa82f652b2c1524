"""per_key: per-key hyperparameters, still one fused call per update."""

from __future__ import annotations

import fastopt
import numpy as np
import pytest
from fastopt import optim, schedules


def params_of(rng, dtype=np.float64):
    return {
        "W1": rng.standard_normal((6, 5)).astype(dtype),
        "b1": rng.standard_normal(5).astype(dtype),
        "W2": rng.standard_normal((5, 3)).astype(dtype),
        "b2": rng.standard_normal(3).astype(dtype),
    }


def is_bias(key) -> bool:
    return key.startswith("b")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_no_weight_decay_on_biases_equals_two_optimizers(dtype, rng):
    one = optim.AdamW(lr=1e-2, weight_decay=0.1, per_key={is_bias: {"weight_decay": 0.0}})
    weights, biases = optim.AdamW(lr=1e-2, weight_decay=0.1), optim.AdamW(lr=1e-2, weight_decay=0.0)
    params = params_of(rng, dtype)
    split = {k: v.copy() for k, v in params.items()}
    for _ in range(8):
        grads = {k: rng.standard_normal(v.shape).astype(dtype) for k, v in params.items()}
        one.update(params, grads)
        weights.update({k: v for k, v in split.items() if not is_bias(k)}, grads)
        biases.update({k: v for k, v in split.items() if is_bias(k)}, grads)
    for key in params:
        assert np.array_equal(params[key], split[key]), key
        mine = one.exp_avg_sq[key]
        theirs = (biases if is_bias(key) else weights).exp_avg_sq[key]
        assert np.array_equal(mine, theirs)


def test_book_optimizer_lr_per_key_and_precedence(rng):
    opt = fastopt.SGD(lr=0.1, per_key={is_bias: {"lr": 0.5}, "b2": {"lr": 0.01}})
    params = params_of(rng)
    start = {k: v.copy() for k, v in params.items()}
    grads = {k: np.ones_like(v) for k, v in params.items()}
    opt.update(params, grads)
    for key, lr in (("W1", 0.1), ("W2", 0.1), ("b1", 0.5), ("b2", 0.01)):  # later entries win
        assert np.array_equal(params[key], start[key] - lr * grads[key]), key


def test_per_key_with_a_schedule_and_step_dependent_scalars(rng):
    schedule = schedules.exponential(1e-2, 0.9)
    one = fastopt.Adam(lr=schedule, per_key={"b1": {"beta1": 0.5}})
    main, special = fastopt.Adam(lr=schedule), fastopt.Adam(lr=schedule, beta1=0.5)
    params = params_of(rng)
    split = {k: v.copy() for k, v in params.items()}
    for _ in range(6):
        grads = {k: rng.standard_normal(v.shape) for k, v in params.items()}
        one.update(params, grads)
        main.update({k: v for k, v in split.items() if k != "b1"}, grads)
        special.update({"b1": split["b1"]}, grads)
    for key in params:
        assert np.array_equal(params[key], split[key]), key


def test_still_one_call_into_core(rng, monkeypatch):
    calls = []
    real = fastopt._core.Updater.run
    monkeypatch.setattr(fastopt._core.Updater, "run", lambda *a: calls.append(a) or real(*a))
    opt = optim.Adam(weight_decay=0.1, per_key={is_bias: {"weight_decay": 0.0, "lr": 0.1}})
    params = params_of(rng)
    opt.update(params, {k: np.ones_like(v) for k, v in params.items()})
    assert len(calls) == 1


@pytest.mark.parametrize(
    "make, error, words",
    [
        (lambda: fastopt.SGD(per_key={"W1": {"momentum": 0.9}}), ValueError, "momentum"),
        (lambda: fastopt.SGD(per_key={"W1": {"lr": -1.0}}), ValueError, "lr"),
        (lambda: fastopt.SGD(per_key={"W1": 0.1}), TypeError, "W1"),
        (lambda: fastopt.SGD(per_key=[("W1", {"lr": 0.1})]), TypeError, "per_key"),
        (lambda: optim.NAdam(per_key={"W1": {"betas": (0.5, 0.9)}}), ValueError, "betas"),
    ],
)
def test_bad_per_key(make, error, words):
    with pytest.raises(error, match=words):
        make()


def test_per_key_that_changes_the_state_is_refused_and_changes_nothing(rng):
    opt = optim.Adam(per_key={"b1": {"amsgrad": True}})
    params = params_of(rng)
    before = {k: v.copy() for k, v in params.items()}
    with pytest.raises(ValueError, match="state"):
        opt.update(params, {k: np.ones_like(v) for k, v in params.items()})
    for key in params:
        assert np.array_equal(params[key], before[key])
    assert opt.exp_avg == {} and opt.steps == 0
