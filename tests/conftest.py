"""Shared helpers: optimizer pairs, random params and grads, snapshots for all-or-nothing checks."""

from __future__ import annotations

import copy
from collections.abc import Hashable
from typing import Any

import fastopt
import numpy as np
import pytest
from fastopt import reference

BOOK = ("SGD", "Momentum", "Nesterov", "AdaGrad", "RMSprop", "Adam")
STATE_NAMES = {
    "SGD": (),
    "Momentum": ("v",),
    "Nesterov": ("v",),
    "AdaGrad": ("h",),
    "RMSprop": ("h",),
    "Adam": ("m", "v"),
}
DTYPES = (np.float32, np.float64)

# float32 tolerance of the issue: the kernel and the reference both round every operation to
# float32, so they agree to a few ulps at most (in practice bit-exactly); rtol 1e-5 is ~80 ulps.
F32_TOL = dict(rtol=1e-5, atol=1e-7)


def pair(name: str, **kwargs: Any) -> tuple[Any, Any]:
    """(fastopt optimizer, reference optimizer) of the same class and settings."""
    return getattr(fastopt, name)(**kwargs), getattr(reference, name)(**kwargs)


def random_like(value: Any, rng: np.random.Generator) -> Any:
    """Random normal values of the shape and dtype of `value` (a Python float for a scalar)."""
    if isinstance(value, np.ndarray):
        return rng.standard_normal(value.shape).astype(value.dtype)
    return float(rng.standard_normal())


def clone(params: dict[Hashable, Any]) -> dict[Hashable, Any]:
    """A deep copy that keeps each array's memory order."""
    return {k: v.copy(order="K") if isinstance(v, np.ndarray) else v for k, v in params.items()}


def assert_same(actual: Any, expected: Any, dtype: Any = None) -> None:
    """Bit-identical in float64, within F32_TOL in float32."""
    actual, expected = np.asarray(actual), np.asarray(expected)
    assert actual.shape == expected.shape and actual.dtype == expected.dtype
    if (dtype or actual.dtype) == np.float64:
        assert np.array_equal(actual, expected), np.max(np.abs(actual - expected))
    else:
        np.testing.assert_allclose(actual, expected, **F32_TOL)


def assert_optimizers_agree(name: str, fast: Any, ref: Any, params_fast: dict, params_ref: dict):
    assert params_fast.keys() == params_ref.keys()
    for key in params_fast:
        assert_same(params_fast[key], params_ref[key])
    for state in STATE_NAMES[name]:
        fast_state, ref_state = getattr(fast, state), getattr(ref, state)
        assert fast_state.keys() == ref_state.keys()
        for key in fast_state:
            assert_same(fast_state[key], ref_state[key])
    if name == "Adam":
        assert fast.iter == ref.iter


def snapshot(opt: Any, params: dict[Hashable, Any]) -> dict[str, Any]:
    """Everything an update() may change: params (values and identities) and all state."""
    return {
        "ids": {k: id(v) for k, v in params.items()},
        "params": copy.deepcopy(params),
        "state": {
            name: copy.deepcopy(getattr(opt, name)) for name in STATE_NAMES[type(opt).__name__]
        },
        "iter": getattr(opt, "iter", None),
    }


def assert_unchanged(before: dict[str, Any], opt: Any, params: dict[Hashable, Any]) -> None:
    after = snapshot(opt, params)
    assert after["ids"] == before["ids"]
    for key, value in before["params"].items():
        assert (
            np.array_equal(params[key], value)
            and np.asarray(params[key]).dtype == np.asarray(value).dtype
        )
    for name, state in before["state"].items():
        assert getattr(opt, name).keys() == state.keys(), f"state {name} gained or lost keys"
        for key, value in state.items():
            assert np.array_equal(getattr(opt, name)[key], value)
    assert after["iter"] == before["iter"]


@pytest.fixture
def core_calls(monkeypatch) -> list:
    """Every call into the core's update engine (Updater.run) made while the test runs."""
    calls: list = []

    class Counting(fastopt._core.Updater):
        def run(self, *args):
            calls.append(args)
            return super().run(*args)

    monkeypatch.setattr(fastopt._core, "Updater", Counting)
    return calls


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(20261121)


# fastopt.optim: every class, every option alone, and combinations of them. An algorithm's cases
# are its one entry here; the states compared are the reference's (fastopt.reference.optim).
OPTIM_CASES = [
    ("SGD", {}),
    ("SGD", {"momentum": 0.9}),
    ("SGD", {"momentum": 0.9, "dampening": 0.3}),
    ("SGD", {"momentum": 0.9, "nesterov": True}),
    ("SGD", {"weight_decay": 0.1}),
    ("SGD", {"maximize": True}),
    ("SGD", {"momentum": 0.8, "nesterov": True, "weight_decay": 0.05, "maximize": True}),
    ("Adam", {}),
    ("Adam", {"amsgrad": True}),
    ("Adam", {"weight_decay": 0.1}),
    ("Adam", {"weight_decay": 0.1, "decoupled_weight_decay": True}),
    ("Adam", {"maximize": True}),
    (
        "Adam",
        {"betas": (0.3, 0.8), "eps": 1e-6, "amsgrad": True, "weight_decay": 0.1, "maximize": True},
    ),
    ("AdamW", {}),
    ("AdamW", {"amsgrad": True, "maximize": True}),
    ("AdamW", {"weight_decay": 0.0}),
    ("Adagrad", {}),
    ("Adagrad", {"lr_decay": 0.1}),
    ("Adagrad", {"weight_decay": 0.1}),
    ("Adagrad", {"initial_accumulator_value": 0.5}),
    (
        "Adagrad",
        {"maximize": True, "lr_decay": 0.05, "weight_decay": 0.1, "initial_accumulator_value": 0.1},
    ),
    ("RMSprop", {}),
    ("RMSprop", {"centered": True}),
    ("RMSprop", {"momentum": 0.9}),
    ("RMSprop", {"weight_decay": 0.1}),
    ("RMSprop", {"maximize": True}),
    (
        "RMSprop",
        {"centered": True, "momentum": 0.5, "weight_decay": 0.1, "maximize": True, "alpha": 0.9},
    ),
    ("Adadelta", {}),
    ("Adadelta", {"weight_decay": 0.1}),
    ("Adadelta", {"maximize": True, "rho": 0.5, "eps": 1e-3}),
    ("Adamax", {}),
    ("Adamax", {"weight_decay": 0.1}),
    ("Adamax", {"maximize": True, "betas": (0.5, 0.9)}),
    ("NAdam", {}),
    ("NAdam", {"weight_decay": 0.1}),
    ("NAdam", {"weight_decay": 0.1, "decoupled_weight_decay": True}),
    ("NAdam", {"maximize": True, "momentum_decay": 0.01}),
    ("RAdam", {}),
    ("RAdam", {"weight_decay": 0.1}),
    ("RAdam", {"weight_decay": 0.1, "decoupled_weight_decay": True}),
    ("RAdam", {"maximize": True, "betas": (0.8, 0.9)}),
    ("Lion", {}),
    ("Lion", {"weight_decay": 0.5}),
    ("Lion", {"maximize": True, "betas": (0.5, 0.9)}),
    ("AdaBelief", {}),  # rectified after the first steps, SGD-like before
    ("AdaBelief", {"rectify": False}),
    ("AdaBelief", {"rectify": False, "amsgrad": True, "eps": 1e-8}),
    ("AdaBelief", {"amsgrad": True, "betas": (0.5, 0.9)}),
    ("AdaBelief", {"weight_decay": 0.1}),
    ("AdaBelief", {"weight_decay": 0.1, "fixed_decay": True}),
    ("AdaBelief", {"weight_decay": 0.1, "weight_decouple": False, "rectify": False}),
    ("AdaBelief", {"degenerated_to_sgd": False, "betas": (0.8, 0.99)}),
]
# Awkward sizes: scalars, vector-width edges, 2-D, a large odd size.
OPTIM_SHAPES = [(), (1,), (17,), (33, 5), (4099,)]


def case_id(case) -> str:
    name, options = case
    return name + ("-" + "-".join(f"{k}={v}" for k, v in options.items()) if options else "")


@pytest.fixture
def torch_dtype(request):
    """torch keeps its scalar state (step, NAdam's mu_product) in its default dtype: set it to
    the test's dtype (an indirect parameter; float64 when none is given) while the test runs."""
    import torch

    before = torch.get_default_dtype()
    torch.set_default_dtype(getattr(request, "param", torch.float64))
    yield torch.get_default_dtype()
    torch.set_default_dtype(before)
