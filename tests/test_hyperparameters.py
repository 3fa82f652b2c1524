"""Constructors and assignments check hyperparameters and name the argument."""

from __future__ import annotations

import math

import fastopt
import pytest

LR = ("lr",)
UNIT = {
    "Momentum": ("momentum",),
    "Nesterov": ("momentum",),
    "RMSprop": ("decay_rate",),
    "Adam": ("beta1", "beta2"),
}
EPS = ("AdaGrad", "RMSprop", "Adam")
BAD_LR = (-1e-3, math.inf, -math.inf, math.nan)
BAD_UNIT = (-0.1, 1.0, 1.5, math.nan)
BAD_EPS = (0.0, -1e-8, math.inf, math.nan)

cases = []
for name in ("SGD", "Momentum", "Nesterov", "AdaGrad", "RMSprop", "Adam"):
    cases += [(name, "lr", v) for v in BAD_LR]
    cases += [(name, arg, v) for arg in UNIT.get(name, ()) for v in BAD_UNIT]
    cases += [(name, "eps", v) for v in BAD_EPS if name in EPS]


@pytest.mark.parametrize("name, argument, value", cases)
def test_bad_values_raise_value_error_naming_the_argument(name, argument, value):
    cls = getattr(fastopt, name)
    with pytest.raises(ValueError, match=argument):
        cls(**{argument: value})
    opt = cls()
    before = getattr(opt, argument)
    with pytest.raises(ValueError, match=argument):
        setattr(opt, argument, value)
    assert getattr(opt, argument) == before


@pytest.mark.parametrize("value", ["0.1", None, True, 1j])
def test_non_numbers_raise_type_error(value):
    with pytest.raises(TypeError, match="lr"):
        fastopt.SGD(lr=value)


def test_edges_are_accepted_and_stored_as_float():
    assert fastopt.SGD(lr=0).lr == 0.0 and type(fastopt.SGD(lr=0).lr) is float
    assert fastopt.Momentum(momentum=0).momentum == 0.0
    assert fastopt.Adam(beta1=0.0, beta2=0.0, eps=1e-300).beta2 == 0.0


def test_lr_change_between_updates_takes_effect():
    import numpy as np

    opt = fastopt.SGD(lr=0.5)
    params = {"w": np.array([1.0, 2.0])}
    opt.update(params, {"w": np.array([1.0, 1.0])})
    opt.lr *= 0.1  # the book's "learning rate decay" by hand
    opt.update(params, {"w": np.array([1.0, 1.0])})
    assert np.array_equal(params["w"], np.array([1.0, 2.0]) - 0.5 - 0.05)
