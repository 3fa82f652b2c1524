"""Memory layouts, dtype conversion, aliasing, keys, empty and 0-d arrays, and scalar params."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import BOOK, DTYPES, assert_optimizers_agree, clone, pair, random_like

STEPS = 12


def unaligned(values: np.ndarray) -> np.ndarray:
    """A contiguous copy of `values` that starts one element into a larger buffer: element-aligned
    but never aligned to a SIMD vector, so kernels must handle a misaligned head."""
    buffer = np.empty(values.size + 1, dtype=values.dtype)
    view = buffer[1:].reshape(values.shape)
    view[...] = values
    assert view.flags.c_contiguous and view.ctypes.data % 16 != 0
    return view


def run_with(name, params, make_grad, rng, steps=STEPS):
    """Run fastopt and the reference side by side; make_grad(param, rng) builds each grad."""
    fast, ref = pair(name)
    params_ref = clone(params)
    for _ in range(steps):
        grads = {k: make_grad(v, rng) for k, v in params.items()}
        fast.update(params, grads)
        ref.update(params_ref, grads)
    assert_optimizers_agree(name, fast, ref, params, params_ref)
    return fast


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.__name__)
@pytest.mark.parametrize("name", BOOK)
def test_unaligned_views(name, dtype, rng):
    params = {n: unaligned(rng.standard_normal(n).astype(dtype)) for n in (1, 7, 17, 33, 65, 1001)}
    run_with(name, params, lambda p, r: unaligned(random_like(p, r)), rng)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.__name__)
@pytest.mark.parametrize("name", BOOK)
def test_fortran_params_with_c_grads(name, dtype, rng):
    params = {
        "W": np.asfortranarray(rng.standard_normal((17, 9)).astype(dtype)),
        "T": np.asfortranarray(rng.standard_normal((3, 4, 5)).astype(dtype)),
    }
    assert not params["W"].flags.c_contiguous
    fast = run_with(name, params, lambda p, r: np.ascontiguousarray(random_like(p, r)), rng)
    for state in fast._state_names:
        assert getattr(fast, state)["W"].flags.f_contiguous  # state shares the param's layout


@pytest.mark.parametrize(
    "make_grad",
    [
        pytest.param(lambda p, r: random_like(p, r).astype(np.float32), id="float32"),
        pytest.param(lambda p, r: random_like(p, r).astype(np.float64), id="float64"),
        pytest.param(lambda p, r: r.integers(-3, 4, p.shape), id="int64"),
        pytest.param(lambda p, r: r.integers(0, 5, p.shape).astype(np.uint8), id="uint8"),
        pytest.param(lambda p, r: random_like(p, r).astype(np.float16), id="float16"),
        pytest.param(lambda p, r: random_like(p, r).astype(">f8"), id="big-endian"),
        pytest.param(lambda p, r: np.asfortranarray(random_like(p, r)), id="fortran"),
        pytest.param(lambda p, r: np.repeat(random_like(p, r), 2, axis=1)[:, ::2], id="strided"),
        pytest.param(lambda p, r: random_like(p, r)[::-1, ::-1].copy()[::-1, ::-1], id="reversed"),
    ],
)
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.__name__)
@pytest.mark.parametrize("name", BOOK)
def test_grads_of_other_dtype_or_layout_are_converted(name, dtype, make_grad, rng):
    params = {"W": rng.standard_normal((13, 6)).astype(dtype)}
    run_with(name, params, make_grad, rng)


@pytest.mark.parametrize("name", BOOK)
def test_grad_that_is_the_param_itself(name, rng):
    # The book's result for grads[k] is params[k]: every term uses the gradient as it was.
    fast, ref = pair(name)
    params_fast = {"w": rng.standard_normal(37)}
    params_ref = clone(params_fast)
    for _ in range(5):
        fast.update(params_fast, params_fast)
        ref.update(params_ref, clone(params_ref))
    assert_optimizers_agree(name, fast, ref, params_fast, params_ref)


@pytest.mark.parametrize("grad_ahead", [True, False], ids=["grad-ahead", "grad-behind"])
@pytest.mark.parametrize("name", BOOK)
def test_grad_that_overlaps_the_param(name, grad_ahead, rng):
    # grad-behind is the case a missing copy would corrupt: the param's element i-8 is written
    # before the grad's element i (the same memory) is read.
    param_slice, grad_slice = (
        (slice(0, 32), slice(8, 40)) if grad_ahead else (slice(8, 40), slice(0, 32))
    )
    buffer = rng.standard_normal(40)
    buffer_ref = buffer.copy()
    fast, ref = pair(name)
    for _ in range(5):
        fast.update({"w": buffer[param_slice]}, {"w": buffer[grad_slice]})
        ref.update({"w": buffer_ref[param_slice]}, {"w": buffer_ref[grad_slice].copy()})
    assert np.array_equal(buffer, buffer_ref)


@pytest.mark.parametrize("name", BOOK)
def test_any_hashable_keys_and_extra_grads_ignored(name, rng):
    params = {
        0: rng.standard_normal(5),
        ("layer", 2): rng.standard_normal(3),
        None: rng.standard_normal(2),
    }

    fast, ref = pair(name)
    params_ref = clone(params)
    for _ in range(5):
        grads = {k: random_like(v, rng) for k, v in params.items()}
        grads["unused"] = "not even an array"
        fast.update(params, grads)
        ref.update(params_ref, {k: grads[k] for k in params})
    assert_optimizers_agree(name, fast, ref, params, params_ref)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.__name__)
@pytest.mark.parametrize("name", BOOK)
def test_empty_and_zero_d_arrays(name, dtype, rng):
    params = {
        "empty": np.empty(0, dtype=dtype),
        "empty2d": np.empty((3, 0), dtype=dtype),
        "scalar_array": np.array(1.5, dtype=dtype),
    }
    before = params["scalar_array"]
    fast = run_with(name, params, random_like, rng)
    assert params["scalar_array"] is before and params["scalar_array"].shape == ()
    for state in fast._state_names:
        assert getattr(fast, state)["empty2d"].shape == (3, 0)


@pytest.mark.parametrize(
    "value", [-7.0, 3, np.float64(2.5), np.float32(-1.25), np.int32(4)], ids=repr
)
@pytest.mark.parametrize("name", BOOK)
def test_scalar_params_come_back_as_numpy_float64(name, value, rng):
    fast, ref = pair(name)
    params_fast, params_ref = {"s": value}, {"s": value}
    for _ in range(6):
        g = float(rng.standard_normal())
        fast.update(params_fast, {"s": g})
        ref.update(params_ref, {"s": g})
    assert type(params_fast["s"]) is np.float64
    assert params_fast["s"] == params_ref["s"] and params_fast["s"] != float(value)
    for state in fast._state_names:
        assert (
            getattr(fast, state)["s"].shape == () and getattr(fast, state)["s"].dtype == np.float64
        )


def test_grad_may_be_a_numpy_scalar_or_zero_d_array_for_a_zero_d_param(rng):
    fast, ref = pair("Adam")
    params_fast, params_ref = {"a": np.array(0.5), "b": 0.25}, {"a": np.array(0.5), "b": 0.25}
    grads = {"a": np.float32(0.75), "b": np.array(-1.5)}
    fast.update(params_fast, grads)
    ref.update(params_ref, grads)
    assert_optimizers_agree("Adam", fast, ref, params_fast, params_ref)


@pytest.mark.parametrize("order", ["C", "F"])
@pytest.mark.parametrize("name", BOOK)
def test_large_arrays_whose_state_is_placed_in_its_own_buffer(name, order, rng):
    # States of 64 KiB and more are views into a slightly larger buffer, at a chosen page offset.
    params = {
        "W": np.asarray(rng.standard_normal((301, 257)), order=order),
        "w": rng.standard_normal(40_000).astype(np.float32),
    }
    fast = run_with(name, params, lambda p, r: random_like(p, r), rng, steps=3)
    for state in fast._state_names:
        big = getattr(fast, state)["W"]
        assert big.flags.writeable and (
            big.flags.f_contiguous if order == "F" else big.flags.c_contiguous
        )
        assert not np.shares_memory(big, params["W"])
