"""The algorithm spec owned by C++: classes bind to their rule by name, and a mismatch fails when
the class is created (at import), naming both sides."""

from __future__ import annotations

import fastopt
import pytest
from fastopt import optim
from fastopt._base import Optimizer
from fastopt._spec import RULES, Scalars, per_step
from fastopt._state import state


def test_every_class_is_bound_to_its_rule_by_name():
    classes = [getattr(fastopt, n) for n in ("SGD", "Momentum", "Nesterov", "AdaGrad")]
    classes += [getattr(optim, n) for n in optim.__all__]
    # The line-search methods drive no rule: their passes are _core.Search's.
    classes = [cls for cls in classes if issubclass(cls, optim.Optimizer)]
    assert len(classes) == 4 + len(optim.__all__) - 2
    for cls in classes:
        rule = RULES[cls.rule]
        assert sorted(cls.step_scalars.scalar_names) == sorted(rule.scalars), cls
        assert set(cls._state_names) == set(rule.states), cls


def test_the_spec_is_plain_data_with_names():
    spec = fastopt._core.algorithms()
    adam = spec["torch_adam"]
    assert adam["scalars"][-1] == "neg_step_size" and "maximize" in adam["scalars"]
    states = {names for _, names in adam["variants"].values()}
    assert states == {("exp_avg", "exp_avg_sq"), ("exp_avg", "exp_avg_sq", "max_exp_avg_sq")}
    # maximize and decoupled weight decay are scalars, not kernel variants
    assert "maximize" not in adam["flags"] and "decoupled_weight_decay" not in adam["flags"]


def test_wrong_scalar_names_fail_at_class_creation_naming_both_sides():
    with pytest.raises(TypeError, match=r"Wrong.*\('lr', 'momentum_typo'\).*'momentum'.*"):

        class Wrong(Optimizer):
            rule = "momentum"
            v = state()

            @per_step("lr", "momentum_typo")
            def step_scalars(h, st) -> Scalars:
                return (h.lr, h.momentum)


def test_wrong_state_names_fail_at_class_creation_naming_both_sides():
    with pytest.raises(TypeError, match=r"Wrong.*\('velocity',\).*'momentum'.*\('v',\)"):

        class Wrong(Optimizer):
            rule = "momentum"
            velocity = state()

            @per_step("momentum", "lr")
            def step_scalars(h, st) -> Scalars:
                return (h.momentum, h.lr)


def test_unknown_rule_and_undeclared_scalars_fail_at_class_creation():
    with pytest.raises(TypeError, match="no rule 'nope'"):

        class Unknown(Optimizer):
            rule = "nope"

    with pytest.raises(TypeError, match="per_step"):

        class Undeclared(Optimizer):
            rule = "sgd"

            @staticmethod
            def step_scalars(h, st) -> Scalars:
                return (h.lr,)


def test_scalars_may_be_named_in_another_order():
    """Binding is by name: a class may compute its scalars in any order."""
    import numpy as np

    class Reordered(Optimizer):
        rule = "momentum"
        v = state()

        def __init__(self, lr=0.01, momentum=0.9):
            self.lr = lr
            self.momentum = momentum

        momentum = fastopt.Momentum.momentum

        @per_step("lr", "momentum")  # the rule reads (momentum, lr)
        def step_scalars(h, st) -> Scalars:
            return (h.lr, h.momentum)

    mine, book = Reordered(0.1, 0.5), fastopt.Momentum(0.1, 0.5)
    a, b = {"w": np.arange(5.0)}, {"w": np.arange(5.0)}
    for _ in range(3):
        mine.update(a, {"w": np.ones(5)})
        book.update(b, {"w": np.ones(5)})
    assert np.array_equal(a["w"], b["w"]) and np.array_equal(mine.v["w"], book.v["w"])


def test_hyperparameters_are_validated_descriptors_with_no_side_door():
    opt = optim.Adam()
    assert "__setattr__" not in vars(Optimizer) and "__setattr__" not in vars(optim.Adam)
    with pytest.raises(ValueError, match="eps"):
        opt.eps = -1.0
    assert opt.eps == 1e-8
