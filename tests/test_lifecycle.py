"""The optimizer lifecycle as users meet it: copies, subclasses, schedules, per-key predicates and
the core's Updater used directly (regressions found by an adversarial review of the redesign)."""

from __future__ import annotations

import copy
import functools
import operator

import fastopt
import numpy as np
import pytest
from fastopt import _core, optim


def test_a_shallow_copy_counts_its_own_steps():
    opt = fastopt.Adam()
    params = {"w": np.ones(3)}
    opt.update(params, {"w": np.ones(3)})
    twin = copy.copy(opt)
    opt.update(params, {"w": np.ones(3)})
    assert (opt.iter, twin.iter) == (2, 1)
    assert twin.m is opt.m  # the state dicts are shared, as a shallow copy always shared them


def test_a_subclass_may_use_the_hook_names_for_its_own_attributes():
    class Mine(optim.AdamW):
        def __init__(self, lr=1e-3, options=None):
            super().__init__(lr=lr)
            self.options = options or {}
            self.scalars = "mine"

    mine, plain = Mine(), optim.AdamW()
    a, b = {"w": np.arange(4.0)}, {"w": np.arange(4.0)}
    mine.update(a, {"w": np.ones(4)})
    plain.update(b, {"w": np.ones(4)})
    assert np.array_equal(a["w"], b["w"])


def test_options_a_subclass_passes_to_super_are_kept():
    class Clipped(optim.SGD):
        def __init__(self):
            super().__init__(0.1, max_grad_norm=1.0, nonfinite="raise")

    opt = Clipped()
    assert (opt.max_grad_norm, opt.nonfinite) == (1.0, "raise")
    assert optim.SGD(max_grad_norm=2.0).max_grad_norm == 2.0


def test_a_partial_is_a_predicate():
    opt = optim.SGD(lr=0.1, per_key={functools.partial(operator.eq, "b"): {"lr": 0.0}})
    params = {"a": np.ones(2), "b": np.ones(2)}
    opt.update(params, {"a": np.ones(2), "b": np.ones(2)})
    assert np.array_equal(params["b"], np.ones(2)) and np.array_equal(params["a"], np.full(2, 0.9))


def test_a_per_key_schedule_is_called_once_per_update():
    calls = []

    def schedule(step):
        calls.append(step)
        return 0.1

    opt = optim.AdamW(per_key={"b": {"lr": schedule}})
    params = {"a": np.ones(2), "b": np.ones(2)}
    for _ in range(3):
        opt.update(params, {"a": np.ones(2), "b": np.ones(2)})
    assert calls == [0, 1, 2]


def test_a_bad_schedule_is_refused_and_the_old_rate_kept():
    opt = fastopt.SGD(lr=0.1)
    with pytest.raises(ValueError, match="schedule"):
        opt.lr = lambda step: -1.0
    params = {"w": np.ones(2)}
    opt.update(params, {"w": np.ones(2)})
    assert opt.lr == 0.1 and np.array_equal(params["w"], np.full(2, 0.9))
    assert opt.state_dict()["hyperparameters"]["lr"] == 0.1


def test_hyperparameters_cannot_be_deleted():
    opt = fastopt.SGD()
    with pytest.raises(AttributeError, match="hyperparameter"):
        del opt.lr
    assert opt.lr == 0.01


def test_the_base_class_is_reachable_for_isinstance():
    assert isinstance(optim.Adam(), optim.Optimizer) and isinstance(fastopt.SGD(), optim.Optimizer)


def test_an_updater_whose_init_never_ran_raises_instead_of_reading_garbage():
    blank = _core.Updater.__new__(_core.Updater)
    for use in (repr, copy.copy, copy.deepcopy, lambda u: u.kernel, lambda u: u.state_names):
        with pytest.raises(TypeError, match="__init__"):
            use(blank)
    with pytest.raises(TypeError, match="__init__"):
        blank.run({}, {}, {}, ())


def test_updater_checks_its_state_names_and_per_key_kernels():
    index, names = fastopt._spec.rule("adam").variant({})
    with pytest.raises(ValueError, match="twice"):
        _core.Updater(index, ("m", "m"))
    updater = _core.Updater(index, names)
    other = fastopt._spec.rule("torch_radam").variant({})[0]  # scalars and states differ anyway
    momentum = fastopt._spec.rule("nesterov").variant({})[0]
    sgd = _core.Updater(fastopt._spec.rule("momentum").variant({})[0], ("v",))
    params = {"w": np.ones(3)}
    states = {"v": {}}
    with pytest.raises(ValueError, match="same rule"):  # nesterov: 4 scalars, the rule differs
        sgd.run(params, {"w": np.ones(3)}, states, (0.9, 0.1), 1.0, False, {"w": (momentum, (1,))})
    assert states == {"v": {}} and np.array_equal(params["w"], np.ones(3))
    assert updater.state_names == ("m", "v") and other != index


def test_a_float32_counter_loads():
    opt = optim.NAdam()
    saved = opt.state_dict()
    saved["counters"]["mu_product"] = np.float32(0.5)
    opt.load_state_dict(saved)
    assert opt.mu_product == 0.5
