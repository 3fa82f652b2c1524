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
def rng() -> np.random.Generator:
    return np.random.default_rng(20261121)
