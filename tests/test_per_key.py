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


def test_still_one_call_into_core(rng, core_calls):
    calls = core_calls
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


def two_groups(rng, make, split_weights, split_biases, steps=4, change=None):
    """Run `make(per_key=...)` against two plain optimizers (weights / biases) for `steps`
    updates, calling change(opt, weights_opt, biases_opt, step) before each, and compare."""
    one = make(per_key={fastopt.where(is_bias): split_biases})
    weights, biases = make(**split_weights), make(**split_biases)
    params = params_of(rng)
    split = {k: v.copy() for k, v in params.items()}
    for step in range(steps):
        if change is not None:
            change(one, weights, biases, step)
        grads = {k: rng.standard_normal(v.shape) for k, v in params.items()}
        one.update(params, grads)
        weights.update({k: v for k, v in split.items() if not is_bias(k)}, grads)
        biases.update({k: v for k, v in split.items() if is_bias(k)}, grads)
    for key in params:
        assert np.array_equal(params[key], split[key]), key


def test_later_assignments_reach_keys_with_settings_of_their_own(rng):
    """opt.lr = 0 after some steps stops every key, the per-key ones too (copies went stale)."""

    def change(one, weights, biases, step):
        if step == 2:
            one.lr = weights.lr = biases.lr = 0.0
            one.betas = weights.betas = biases.betas = (0.5, 0.9)

    def make(**kw):
        return optim.AdamW(**{"lr": 1e-2, "weight_decay": 0.1, **kw})

    two_groups(rng, make, {}, {"weight_decay": 0.0}, change=change)


def test_a_new_schedule_reaches_keys_with_settings_of_their_own(rng):
    def change(one, weights, biases, step):
        if step == 2:
            for opt in (one, weights, biases):
                opt.lr = schedules.exponential(0.05, 0.5)

    two_groups(rng, lambda **kw: optim.Adam(**kw), {}, {"weight_decay": 0.2}, change=change)


def test_changing_momentum_after_per_key_settings_works(rng):
    def change(one, weights, biases, step):
        if step == 1:
            one.momentum = weights.momentum = biases.momentum = 0.5

    two_groups(rng, lambda **kw: fastopt.Momentum(**kw), {}, {"lr": 0.3}, change=change)


def test_load_state_dict_reaches_keys_with_settings_of_their_own(rng):
    source = optim.AdamW(lr=0.2, weight_decay=0.3, per_key={fastopt.where(is_bias): {"lr": 0.1}})
    target = optim.AdamW(lr=1e-3, weight_decay=0.0, per_key={fastopt.where(is_bias): {"lr": 0.1}})
    params = params_of(rng)
    grads = {k: rng.standard_normal(v.shape) for k, v in params.items()}
    source.update({k: v.copy() for k, v in params.items()}, grads)
    target.update({k: v.copy() for k, v in params.items()}, grads)  # caches the old settings
    target.load_state_dict(source.state_dict())
    a, b = {k: v.copy() for k, v in params.items()}, {k: v.copy() for k, v in params.items()}
    source.update(a, grads)
    target.update(b, grads)
    for key in params:  # the biases too: lr 0.1 of their own, weight decay 0.3 from the load
        assert np.array_equal(a[key], b[key]), key


class Layer:
    """A callable object used as a key, as layer objects are."""

    def __init__(self, name):
        self.name = name
        self.calls = 0

    def __call__(self, *args):
        self.calls += 1
        raise AssertionError("a key must never be called")


def test_a_callable_key_is_a_key_not_a_predicate(rng):
    first, second = Layer("first"), Layer("second")
    params = {first: np.ones(3), second: np.ones(3)}
    opt = fastopt.SGD(lr=0.1, per_key={first: {"lr": 0.5}})
    opt.update(params, {first: np.ones(3), second: np.ones(3)})
    assert np.array_equal(params[first], np.full(3, 0.5)) and first.calls == 0
    assert np.array_equal(params[second], np.full(3, 0.9)) and second.calls == 0


def test_a_bare_function_that_is_also_a_key_is_that_key(rng):
    def selector(key):
        raise AssertionError("a key must never be called")

    params = {selector: np.ones(2), "b": np.ones(2)}
    opt = fastopt.SGD(lr=0.1, per_key={selector: {"lr": 0.5}})
    opt.update(params, {selector: np.ones(2), "b": np.ones(2)})
    assert np.array_equal(params[selector], np.full(2, 0.5))
    assert np.array_equal(params["b"], np.full(2, 0.9))


def test_where_needs_a_callable():
    with pytest.raises(TypeError, match="predicate"):
        fastopt.where("b1")
