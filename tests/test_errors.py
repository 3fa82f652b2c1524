"""Bad input raises the documented error, names the key, and changes nothing at all."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import BOOK, assert_unchanged, pair, random_like, snapshot

BAD_KEY = ("bad", 7)  # a tuple key: the message must show its repr


def started(name, rng):
    """An optimizer one step in, so it has state, and params whose bad entry comes LAST.

    Keys before the bad one would be written by an implementation that validates as it goes;
    'fresh' has no state yet, so an implementation that inserts state early would be caught too.
    """
    fast, _ = pair(name)
    params = {"W": rng.standard_normal((4, 3)), "b": rng.standard_normal(3)}
    fast.update(params, {k: random_like(v, rng) for k, v in params.items()})
    params["fresh"] = rng.standard_normal(5)
    grads = {k: random_like(v, rng) for k, v in params.items()}
    return fast, params, grads


def expect_failure(name, rng, mutate, error, *words):
    fast, params, grads = started(name, rng)
    params[BAD_KEY], grads[BAD_KEY] = rng.standard_normal(6), rng.standard_normal(6)
    mutate(params, grads)
    before = snapshot(fast, params)
    with pytest.raises(error) as info:
        fast.update(params, grads)
    message = str(info.value)
    assert repr(BAD_KEY) in message, message
    for word in words:
        assert word in message, message
    assert_unchanged(before, fast, params)
    # And the optimizer still works on good input afterwards.
    del params[BAD_KEY]
    fast.update(params, grads)


def set_param(value):
    def mutate(params, grads):
        params[BAD_KEY] = value

    return mutate


def set_grad(value):
    def mutate(params, grads):
        grads[BAD_KEY] = value

    return mutate


CASES = {
    "missing grad": (lambda p, g: g.pop(BAD_KEY), KeyError, ("grads",)),
    "param list": (set_param([1.0, 2.0]), TypeError, ("list",)),
    "param None": (set_param(None), TypeError, ("NoneType",)),
    "param int array": (set_param(np.arange(6)), TypeError, ("int64",)),
    "param int32": (set_param(np.ones(6, np.int32)), TypeError, ("int32",)),
    "param complex64": (set_param(np.ones(6, np.complex64)), TypeError, ("complex64",)),
    "param complex": (set_param(np.ones(6, complex)), TypeError, ("complex",)),
    "param big-endian": (set_param(np.ones(6, ">f8")), TypeError, ("byte order",)),
    "param bool scalar": (set_param(True), TypeError, ("bool",)),
    "param read-only": (
        set_param(np.lib.stride_tricks.as_strided(np.ones(6), writeable=False)),
        ValueError,
        ("read-only",),
    ),
    "param not contiguous": (set_param(np.ones(12)[::2]), ValueError, ("contiguous",)),
    "grad other shape same size": (set_grad(np.ones((2, 3))), ValueError, ("(2, 3)", "(6,)")),
    "grad other size": (set_grad(np.ones(5)), ValueError, ("(5,)", "(6,)")),
    "grad complex": (set_grad(np.ones(6, complex)), TypeError, ("complex",)),
    "grad strings": (set_grad(np.array(list("abcdef"))), TypeError, ("<U1",)),
    "grad objects": (set_grad(np.array([None] * 6)), TypeError, ("object",)),
    "grad bool": (set_grad(np.ones(6, bool)), TypeError, ("bool",)),
    "grad list": (set_grad([1.0] * 6), TypeError, ("list",)),
    "grad scalar for array": (set_grad(1.0), ValueError, ("scalar", "(6,)")),
    "grad None": (set_grad(None), TypeError, ("NoneType",)),
}


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("name", BOOK)
def test_bad_input_changes_nothing(name, case, rng):
    mutate, error, words = CASES[case]
    expect_failure(name, rng, mutate, error, *words)


def test_unaligned_param_is_rejected(rng):
    raw = np.zeros(8 * 6 + 1, dtype=np.uint8)[1:]
    misaligned = raw.view(np.float64)
    assert not misaligned.flags.aligned
    expect_failure("Adam", rng, set_param(misaligned), ValueError, "aligned")


STATEFUL = [name for name in BOOK if name != "SGD"]


CHANGED_SINCE_STATE = {
    # state for 'b' was made for a float64 array of shape (3,)
    "shape": (
        lambda p, g, r: (r.standard_normal(4), r.standard_normal(4)),
        r"'b'.*shape \(4,\).*\(3,\)",
    ),
    "dtype": (lambda p, g, r: (p["b"].astype(np.float32), g["b"]), r"'b'.*float32.*float64"),
}


@pytest.mark.parametrize("change", CHANGED_SINCE_STATE)
@pytest.mark.parametrize("name", STATEFUL)
def test_param_that_changed_since_its_state(name, change, rng):
    fast, params, grads = started(name, rng)
    replace, message = CHANGED_SINCE_STATE[change]
    params["b"], grads["b"] = replace(params, grads, rng)
    before = snapshot(fast, params)
    with pytest.raises(ValueError, match=message):
        fast.update(params, grads)
    assert_unchanged(before, fast, params)


@pytest.mark.parametrize("name", STATEFUL)
def test_replaced_param_of_the_same_shape_is_honoured(name, rng):
    """A param swapped for another of the same shape (even another memory order) is updated."""
    fast, ref = pair(name)
    params = {"W": rng.standard_normal((5, 4))}
    params_ref = {"W": params["W"].copy()}
    for step in range(6):
        if step == 3:
            params["W"] = np.asfortranarray(params["W"] * 0.5)
            params_ref["W"] = params_ref["W"] * 0.5
        grads = {"W": rng.standard_normal((5, 4))}
        fast.update(params, grads)
        ref.update(params_ref, grads)
    assert np.array_equal(params["W"], params_ref["W"])


def test_params_must_be_a_dict(rng):
    fast, _ = pair("SGD")
    with pytest.raises(TypeError, match="params must be a dict"):
        fast.update([np.ones(3)], {0: np.ones(3)})


def test_grads_may_be_any_mapping(rng):
    class Grads:  # the minimum: __getitem__ raising KeyError for missing keys
        def __init__(self, data):
            self.data = data

        def __getitem__(self, key):
            return self.data[key]

    fast, ref = pair("Momentum")
    params = {"a": rng.standard_normal(9)}
    params_ref = {"a": params["a"].copy()}
    grads = {"a": rng.standard_normal(9)}
    fast.update(params, Grads(grads))
    ref.update(params_ref, grads)
    assert np.array_equal(params["a"], params_ref["a"])
    with pytest.raises(KeyError, match="'b'"):
        fast.update({"b": np.ones(2)}, Grads(grads))
