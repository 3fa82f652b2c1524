"""Gradient clipping: the norm is right and deterministic; clipping matches torch; bad input."""

from __future__ import annotations

import fractions
import math

import fastopt
import numpy as np
import pytest


def grads_of(rng, dtype=np.float64):
    # Sizes straddling the 8192-element norm chunks and the 8 lanes inside them.
    return {
        "big": rng.standard_normal(3 * 8192 + 5).astype(dtype),
        "W": np.asfortranarray(rng.standard_normal((129, 65)).astype(dtype)),
        "b": rng.standard_normal(7).astype(dtype),
        "s": np.array(rng.standard_normal(), dtype=dtype),
    }


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_norm_is_the_exactly_rounded_value_within_a_few_ulps(dtype, rng):
    grads = grads_of(rng, dtype)
    exact = math.sqrt(math.fsum(float(x) ** 2 for v in grads.values() for x in v.ravel()))
    assert fastopt.global_norm(grads) == pytest.approx(exact, rel=1e-13)


def test_norm_is_bit_identical_for_every_thread_count(rng):
    grads = {i: rng.standard_normal(200_003) for i in range(5)}
    norms = set()
    for threads in (1, 2, 3, 8):
        with fastopt.num_threads(threads):
            norms.add(fastopt.global_norm(grads))
    assert len(norms) == 1


def test_norm_accepts_any_real_layout_and_dtype(rng):
    base = rng.standard_normal((40, 30))
    as_given = {"a": base[::2, ::3], "b": np.arange(10, dtype=np.int16), "c": base.astype(">f8")}
    as_float64 = {k: np.ascontiguousarray(v, dtype=np.float64) for k, v in as_given.items()}
    assert fastopt.global_norm(as_given) == fastopt.global_norm(as_float64)
    # Scalar grads (of scalar params) count too; half precision is widened, not dropped.
    scalars = {"s": 2.0, "t": np.float16(3.0), "u": 4, "v": np.float32(1.5)}
    assert fastopt.global_norm(scalars) == math.sqrt(4 + 9 + 16 + 2.25)


def test_norm_passes_a_conversion_error_on():
    with pytest.raises(OverflowError):
        fastopt.global_norm({"a": np.ones(2), "k": 10**400})
    opt = fastopt.SGD(max_grad_norm=1.0)
    with pytest.raises(OverflowError):
        opt.update({"s": 1.0}, {"s": 10**400})


@pytest.mark.parametrize("value", [np.complex128(1.0), 1j, True, "1", [1.0]])
def test_norm_rejects_what_is_not_real_naming_the_key(value):
    with pytest.raises(TypeError, match=r"grads\['k'\]"):
        fastopt.global_norm({"a": np.ones(2), "k": value})


@pytest.mark.parametrize("max_norm", [0.5, 1e6])
def test_clip_grad_norm_matches_torch(max_norm, rng):
    torch = pytest.importorskip("torch")
    grads = grads_of(rng)
    tensors = [torch.tensor(v.copy(), requires_grad=True) for v in grads.values()]
    for tensor, value in zip(tensors, grads.values()):
        tensor.grad = torch.tensor(value.copy())
    theirs = float(torch.nn.utils.clip_grad_norm_(tensors, max_norm))
    mine = fastopt.clip_grad_norm(grads, max_norm)
    assert mine == pytest.approx(theirs, rel=1e-12)
    for value, tensor in zip(grads.values(), tensors):
        np.testing.assert_allclose(value, tensor.grad.numpy(), rtol=1e-12)
    if max_norm < mine:
        assert fastopt.global_norm(grads) == pytest.approx(max_norm, rel=1e-5)


def test_nonfinite_norm_is_reported_and_can_raise(rng):
    grads = grads_of(rng)
    grads["b"][3] = np.inf
    before = {k: v.copy() for k, v in grads.items()}
    assert fastopt.clip_grad_norm(grads, 1.0) == math.inf
    with pytest.raises(FloatingPointError, match="inf or nan"):
        fastopt.clip_grad_norm(grads, 1.0, error_if_nonfinite=True)
    for key in grads:
        assert np.array_equal(grads[key], before[key])
    grads["b"][3] = np.nan
    assert math.isnan(fastopt.clip_grad_norm(grads, 1.0))


def test_clip_grad_value():
    grads = {"a": np.array([-3.0, -0.5, 0.0, 0.7, 2.0, np.nan]), "b": np.array([5.0], np.float32)}
    fastopt.clip_grad_value(grads, 1.0)
    assert np.array_equal(grads["a"][:5], [-1.0, -0.5, 0.0, 0.7, 1.0]) and np.isnan(grads["a"][5])
    assert grads["b"].dtype == np.float32 and grads["b"][0] == 1.0


@pytest.mark.parametrize(
    "call, error",
    [
        (lambda: fastopt.clip_grad_norm({"a": np.ones(3)}, 0.0), ValueError),
        (lambda: fastopt.clip_grad_norm({"a": np.ones(3)}, math.inf), ValueError),
        (lambda: fastopt.clip_grad_norm({"a": np.ones(3, int)}, 1.0), TypeError),
        (lambda: fastopt.clip_grad_norm({"a": [1.0, 2.0]}, 1.0), TypeError),
        (lambda: fastopt.clip_grad_value({"a": np.ones(3)}, -1.0), ValueError),
    ],
)
def test_bad_input(call, error):
    with pytest.raises(error):
        call()


def test_read_only_grad_is_rejected_before_any_is_scaled():
    first, frozen = np.full(4, 10.0), np.full(4, 10.0)
    frozen.flags.writeable = False
    with pytest.raises(TypeError, match="'frozen'"):
        fastopt.clip_grad_norm({"first": first, "frozen": frozen}, 1.0)
    assert np.all(first == 10.0)


FUSED_CASES = [
    (fastopt, "SGD", {}),
    (fastopt, "Adam", {}),
    (fastopt, "RMSprop", {}),
    (fastopt.optim, "AdamW", {"amsgrad": True}),
    (fastopt.optim, "SGD", {"momentum": 0.9, "nesterov": True}),
    (fastopt.optim, "Lion", {}),
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(
    "module, name, options", FUSED_CASES, ids=lambda x: getattr(x, "__name__", str(x))
)
def test_fused_clipping_equals_clipping_then_updating(module, name, options, dtype, rng):
    """max_grad_norm= gives the bits of clip_grad_norm() followed by update(), without touching
    the grads."""
    fused = getattr(module, name)(max_grad_norm=0.5, **options)
    separate = getattr(module, name)(**options)
    params = {k: v.copy() for k, v in grads_of(rng, dtype).items()}
    params_separate = {k: v.copy() for k, v in params.items()}
    for _ in range(5):
        grads = grads_of(rng, dtype)
        grads["not a param"] = np.full(3, 1e6)  # ignored by update(), so not in the norm
        untouched = {k: v.copy() for k, v in grads.items()}
        fused.update(params, grads)
        for key in grads:
            assert np.array_equal(grads[key], untouched[key])
        clipped = {k: v for k, v in grads.items() if k != "not a param"}
        norm = fastopt.clip_grad_norm(clipped, 0.5)
        separate.update(params_separate, clipped)
        assert fused.last_grad_norm == norm > 0.5
    for key in params:
        assert np.array_equal(params[key], params_separate[key]), key


def test_fused_clipping_off_by_default_and_validated():
    opt = fastopt.Adam()
    assert opt.max_grad_norm is None
    opt.update({"w": np.ones(2)}, {"w": np.ones(2)})
    assert opt.last_grad_norm is None
    with pytest.raises(ValueError, match="max_grad_norm"):
        fastopt.optim.Adam(max_grad_norm=-1.0)
    with pytest.raises(ValueError, match="max_grad_norm"):
        opt.max_grad_norm = 0.0


# ---- issue 12, item 10: any real max_norm or clip but a bool; scalar grads as update() takes ----


@pytest.mark.parametrize(
    "good", [np.float32(1), np.float64(0.5), np.int64(2), 3, 0.25, fractions.Fraction(1, 2)]
)
def test_max_norm_and_clip_take_any_real_number(good):
    grads = {"a": np.full(4, 10.0)}
    norm = fastopt.clip_grad_norm(grads, good)
    assert norm == 20.0 and np.allclose(np.linalg.norm(grads["a"]), float(good), rtol=1e-6)
    fastopt.clip_grad_value(grads, good)
    assert np.all(grads["a"] <= float(good))


@pytest.mark.parametrize("bad", [True, False, np.True_])
def test_max_norm_and_clip_refuse_a_bool(bad):
    grads = {"a": np.full(4, 10.0)}
    with pytest.raises(ValueError, match="max_norm"):
        fastopt.clip_grad_norm(grads, bad)
    with pytest.raises(ValueError, match="clip"):
        fastopt.clip_grad_value(grads, bad)
    assert np.all(grads["a"] == 10.0)


def test_scalar_grads_are_clipped_by_replacing_their_entry(rng):
    W = rng.standard_normal((3, 4)) * 10
    grads = {"W": W, "b": 3.0, "c": np.float32(-4.0), "n": 2, "d": np.float64(0.5)}
    expected_norm = math.sqrt(float(np.sum(W * W)) + 9.0 + 16.0 + 4.0 + 0.25)
    assert fastopt.global_norm(grads) == pytest.approx(expected_norm, rel=1e-15)
    scalars = {key: float(grads[key]) for key in "bcnd"}
    norm = fastopt.clip_grad_norm(grads, 1.0)
    assert norm == pytest.approx(expected_norm, rel=1e-15)
    scale = 1.0 / (norm + 1e-6)
    assert grads["W"] is W
    for key, value in scalars.items():
        assert type(grads[key]) is np.float64 and grads[key] == value * scale
    assert fastopt.global_norm(grads) == pytest.approx(1.0, rel=1e-6)

    params = {"W": np.zeros((3, 4)), "b": 1.0, "c": np.float64(1.0), "n": 1.0, "d": 1.0}
    fastopt.SGD(lr=1.0).update(params, grads)  # update() takes what clipping gave
    assert params["b"] == 1.0 - scalars["b"] * scale

    grads = {"b": 3.0, "c": np.float32(-4.0), "x": np.ones(2)}
    fastopt.clip_grad_value(grads, 0.5)
    assert grads["b"] == 0.5 and grads["c"] == -0.5 and type(grads["c"]) is np.float64


def test_a_bad_grad_beside_scalar_grads_changes_nothing():
    grads = {"b": 3.0, "c": np.float32(4.0), "z": True}
    with pytest.raises(TypeError, match="'z'"):
        fastopt.clip_grad_norm(grads, 1.0)
    with pytest.raises(TypeError, match="'z'"):
        fastopt.clip_grad_value(grads, 1.0)
    assert grads == {"b": 3.0, "c": np.float32(4.0), "z": True} and type(grads["b"]) is float


def test_a_grad_shared_by_two_keys_is_scaled_once():
    shared = np.full(4, 3.0)
    grads = {"embed": shared, "unembed": shared}
    norm = fastopt.clip_grad_norm(grads, max_norm=1.0)
    assert norm == pytest.approx(np.sqrt(8 * 9.0))  # both keys count in the norm, as in update()
    assert np.allclose(shared, 3.0 * 1.0 / (norm + 1e-6))  # scaled once, not twice
