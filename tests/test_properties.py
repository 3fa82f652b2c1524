"""Property-based tests (hypothesis): random optimizers, hyperparameters, shapes, dtypes, layouts,
keys and step counts agree with fastopt.reference; random bad input raises and changes nothing."""

from __future__ import annotations

import copy

import fastopt
import numpy as np
from conftest import F32_TOL
from fastopt import reference
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

unit = st.floats(0.0, 0.99)
rate = st.floats(1e-4, 0.5)
# (fastopt class, reference class, strategy of its hyperparameters)
OPTIMIZERS = [
    (fastopt.SGD, reference.SGD, st.fixed_dictionaries({"lr": rate})),
    (fastopt.Momentum, reference.Momentum, st.fixed_dictionaries({"lr": rate, "momentum": unit})),
    (fastopt.Nesterov, reference.Nesterov, st.fixed_dictionaries({"lr": rate, "momentum": unit})),
    (fastopt.AdaGrad, reference.AdaGrad, st.fixed_dictionaries({"lr": rate})),
    (fastopt.RMSprop, reference.RMSprop, st.fixed_dictionaries({"lr": rate, "decay_rate": unit})),
    (
        fastopt.Adam,
        reference.Adam,
        st.fixed_dictionaries({"lr": rate, "beta1": unit, "beta2": unit}),
    ),
    (
        fastopt.optim.AdamW,
        reference.optim.AdamW,
        st.fixed_dictionaries(
            {"lr": rate, "weight_decay": st.floats(0, 0.2), "amsgrad": st.booleans()}
        ),
    ),
    (
        fastopt.optim.RMSprop,
        reference.optim.RMSprop,
        st.fixed_dictionaries(
            {"lr": rate, "centered": st.booleans(), "momentum": st.sampled_from([0.0, 0.5])}
        ),
    ),
    (fastopt.optim.Lion, reference.optim.Lion, st.fixed_dictionaries({"lr": rate})),
]

shapes = st.lists(st.integers(0, 9), min_size=0, max_size=3).map(tuple)
keys = st.one_of(
    st.text(min_size=1, max_size=3),
    st.integers(-5, 50),
    st.tuples(st.integers(0, 3), st.text(max_size=2)),
)


def make_array(rng, shape, dtype, layout):
    values = rng.standard_normal(shape).astype(dtype)
    if layout == "F":
        return np.asfortranarray(values)
    if layout == "unaligned":
        buffer = np.empty(values.size + 1, dtype=dtype)
        view = buffer[1:].reshape(shape)
        view[...] = values
        return view
    return values


@SETTINGS
@given(
    choice=st.integers(0, len(OPTIMIZERS) - 1),
    data=st.data(),
    dtype=st.sampled_from([np.float32, np.float64]),
    entries=st.dictionaries(
        keys, st.tuples(shapes, st.sampled_from(["C", "F", "unaligned"])), min_size=1, max_size=4
    ),
    steps=st.integers(1, 5),
    seed=st.integers(0, 2**32 - 1),
)
def test_agrees_with_the_reference(choice, data, dtype, entries, steps, seed):
    fast_cls, ref_cls, hyperparameters = OPTIMIZERS[choice]
    options = data.draw(hyperparameters)
    rng = np.random.default_rng(seed)
    params = {k: make_array(rng, shape, dtype, layout) for k, (shape, layout) in entries.items()}
    params_ref = {k: np.array(v) for k, v in params.items()}
    fast, ref = fast_cls(**options), ref_cls(**options)
    for _ in range(steps):
        grads = {k: rng.standard_normal(v.shape).astype(dtype) for k, v in params.items()}
        fast.update(params, grads)
        ref.update(params_ref, grads)
    for key in params:
        if dtype == np.float64:  # bit-exact: the kernels make the reference's operations, in order
            assert np.array_equal(params[key], params_ref[key])
        else:
            np.testing.assert_allclose(
                params[key], params_ref[key], rtol=1e-4, atol=F32_TOL["atol"]
            )


BAD = {
    "missing grad": (lambda o, p, g: g.pop("bad"), KeyError),
    "grad of another shape": (
        lambda o, p, g: g.__setitem__("bad", np.ones(p["bad"].size + 1)),
        ValueError,
    ),
    "complex grad": (lambda o, p, g: g.__setitem__("bad", g["bad"].astype(complex)), TypeError),
    "read-only param": (lambda o, p, g: p["bad"].setflags(write=False), ValueError),
    "strided param": (
        lambda o, p, g: p.__setitem__("bad", np.ones(2 * p["bad"].size)[::2]),
        ValueError,
    ),
    "integer param": (
        lambda o, p, g: p.__setitem__("bad", np.ones(p["bad"].shape, int)),
        TypeError,
    ),
    "nan grad, nonfinite='raise'": (
        lambda o, p, g: (setattr(o, "nonfinite", "raise"), g["bad"].__setitem__(-1, np.nan)),
        FloatingPointError,
    ),
}


@SETTINGS
@given(
    choice=st.integers(0, len(OPTIMIZERS) - 1),
    data=st.data(),
    mistake=st.sampled_from(sorted(BAD)),
    size=st.integers(2, 40),  # a 1-element strided view is contiguous, so legal
    warmup=st.integers(0, 3),
    seed=st.integers(0, 2**32 - 1),
)
def test_bad_input_raises_the_documented_error_and_changes_nothing(
    choice, data, mistake, size, warmup, seed
):
    fast_cls, _, hyperparameters = OPTIMIZERS[choice]
    opt = fast_cls(**data.draw(hyperparameters))
    rng = np.random.default_rng(seed)
    params = {"good": rng.standard_normal(size), "bad": rng.standard_normal(size)}
    for _ in range(warmup):
        opt.update(params, {k: rng.standard_normal(size) for k in params})
    grads = {k: rng.standard_normal(size) for k in params}
    mutate, error = BAD[mistake]
    mutate(opt, params, grads)

    # Public state: every state array, the counters (step counts) and the hyperparameters;
    # internal caches such as the chosen kernel variant may be filled by a failed call.
    def observable(opt):
        saved = opt.state_dict()
        return {**saved["state"], "counters": saved["counters"], "hp": saved["hyperparameters"]}

    before = copy.deepcopy(observable(opt))
    good = params["good"].copy()
    try:
        opt.update(params, grads)
    except error as raised:
        assert "'bad'" in str(raised)
    else:
        raise AssertionError(f"{mistake}: no {error.__name__}")
    assert np.array_equal(params["good"], good)
    after = observable(opt)
    assert after.keys() == before.keys()
    for name, value in before.items():
        if isinstance(value, dict):
            assert value.keys() == after[name].keys(), name
            for key in value:
                assert np.array_equal(value[key], after[name][key]), (name, key)
