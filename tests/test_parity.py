"""fastopt agrees with fastopt.reference (the book's NumPy) for every optimizer, dtype and size."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import BOOK, DTYPES, assert_optimizers_agree, clone, pair, random_like

# Every vector-width edge for 4/8/16 lanes and the unrolled loops, plus large odd sizes.
SIZES = (1, 2, 3, 7, 8, 9, 15, 16, 17, 31, 32, 33, 63, 64, 65, 127, 128, 129, 1000, 4099)
SHAPES = [(n,) for n in SIZES] + [(), (3, 5), (2, 3, 7), (4, 1, 33)]
STEPS = 25


def run_both(name, params, rng, steps=STEPS, **kwargs):
    fast, ref = pair(name, **kwargs)
    params_fast, params_ref = params, clone(params)
    for _ in range(steps):
        grads = {k: random_like(v, rng) for k, v in params_fast.items()}
        fast.update(params_fast, grads)
        ref.update(params_ref, grads)
    return fast, ref, params_fast, params_ref


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.__name__)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("name", BOOK)
def test_matches_reference(name, shape, dtype, rng):
    # The shape under test sits among keys of other sizes, as in a real network's params dict.
    params = {
        "x": rng.standard_normal(shape).astype(dtype),
        "W": rng.standard_normal((5, 7)).astype(dtype),
        "b": rng.standard_normal(7).astype(dtype),
        ("conv", 1): rng.standard_normal(()).astype(dtype),
    }
    initial = clone(params)
    fast, ref, params_fast, params_ref = run_both(name, params, rng)
    assert_optimizers_agree(name, fast, ref, params_fast, params_ref)
    # Every element moved: a kernel that skipped a tail would leave some of them as they were.
    assert np.all(params_fast["x"] != initial["x"])


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.__name__)
@pytest.mark.parametrize("name", BOOK)
def test_non_default_hyperparameters(name, dtype, rng):
    settings = {
        "SGD": dict(lr=0.3),
        "Momentum": dict(lr=0.05, momentum=0.5),
        "Nesterov": dict(lr=0.07, momentum=0.3),
        "AdaGrad": dict(lr=0.2, eps=1e-3),
        "RMSprop": dict(lr=0.03, decay_rate=0.7, eps=1e-4),
        "Adam": dict(lr=0.01, beta1=0.5, beta2=0.75, eps=1e-5),
    }[name]
    params = {
        "a": rng.standard_normal(257).astype(dtype),
        "b": rng.standard_normal((9, 3)).astype(dtype),
    }
    fast, ref, params_fast, params_ref = run_both(name, params, rng, **settings)
    assert_optimizers_agree(name, fast, ref, params_fast, params_ref)


@pytest.mark.parametrize("name", BOOK)
def test_updates_in_place_and_creates_state_lazily(name, rng):
    fast, _ = pair(name)
    params = {"a": rng.standard_normal(10), "b": rng.standard_normal((2, 3))}
    ids = {k: id(v) for k, v in params.items()}
    fast.update(params, {k: random_like(v, rng) for k, v in params.items()})
    assert {k: id(v) for k, v in params.items()} == ids
    params["late"] = rng.standard_normal(4)
    fast.update(params, {k: random_like(v, rng) for k, v in params.items()})
    for state in fast._state_names:
        assert set(getattr(fast, state)) == {"a", "b", "late"}
        assert getattr(fast, state)["late"].shape == (4,)


@pytest.mark.parametrize("name", BOOK)
def test_book_two_dimensional_comparison_with_float_params(name, rng):
    """The book's optimizer_compare_naive.py keeps x and y as plain floats in the params dict."""
    fast, ref = pair(name)
    params_fast, params_ref = {"x": -7.0, "y": 2.0}, {"x": -7.0, "y": 2.0}
    for _ in range(30):
        x, y = params_fast["x"], params_fast["y"]
        grads = {"x": x / 10.0, "y": 2.0 * y}  # the gradient of x**2/20 + y**2
        fast.update(params_fast, grads)
        ref.update(params_ref, {"x": params_ref["x"] / 10.0, "y": 2.0 * params_ref["y"]})
    for key in ("x", "y"):
        assert type(params_fast[key]) is np.float64
        assert params_fast[key] == params_ref[key]
    assert params_fast["x"] != -7.0
