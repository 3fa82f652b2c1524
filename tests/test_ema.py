"""fastopt.EMA: the fused average follows its formula; swapping is exact and restores."""

from __future__ import annotations

import fastopt
import numpy as np
import pytest


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_average_follows_the_formula(dtype, rng):
    decay = 0.9
    ema = fastopt.EMA(decay)
    params = {
        "W": rng.standard_normal((33, 5)).astype(dtype),
        "b": rng.standard_normal(17).astype(dtype),
    }
    expected = {k: v.copy() for k, v in params.items()}
    for step in range(25):
        for key in params:
            params[key][...] = rng.standard_normal(params[key].shape)
        ema.update(params)
        for key in params:
            if step == 0:
                expected[key] = params[key].copy()
            else:
                expected[key] = expected[key] + dtype(1 - decay) * (params[key] - expected[key])
    for key in params:
        assert ema.shadow[key].dtype == dtype
        assert np.array_equal(ema.shadow[key], expected[key])
    assert ema.updates == 25


def test_averaged_swaps_in_place_and_restores_even_on_error(rng):
    ema = fastopt.EMA(0.5)
    params = {"W": rng.standard_normal(4), "x": 2.0}
    ema.update(params)
    W = params["W"]
    params["W"][...] += 1.0
    params["x"] = 4.0
    ema.update(params)
    live = {"W": W.copy(), "x": params["x"]}
    average = {"W": ema.shadow["W"].copy(), "x": float(ema.shadow["x"])}
    with pytest.raises(RuntimeError), ema.averaged(params):
        assert params["W"] is W and np.array_equal(W, average["W"])
        assert params["x"] == average["x"] == 3.0
        raise RuntimeError("evaluation failed")
    assert params["W"] is W and np.array_equal(W, live["W"]) and params["x"] == live["x"]
    assert type(params["x"]) is np.float64


def test_state_dict_round_trip(rng):
    ema = fastopt.EMA(0.8)
    params = {"w": rng.standard_normal(6)}
    ema.update(params)
    state = ema.state_dict()
    other = fastopt.EMA()
    other.load_state_dict(state)
    params["w"] += 1
    ema.update(params)
    other.update(params)
    assert np.array_equal(ema.shadow["w"], other.shadow["w"]) and other.decay == 0.8


def test_bad_input_changes_nothing(rng):
    ema = fastopt.EMA()
    params = {"a": rng.standard_normal(3)}
    ema.update(params)
    before = ema.shadow["a"].copy()
    with pytest.raises(ValueError, match="'a'"):
        ema.update({"a": np.ones(4)})
    with pytest.raises(TypeError):
        ema.update({"a": np.ones(3), "new": np.ones(2, complex)})
    assert np.array_equal(ema.shadow["a"], before) and set(ema.shadow) == {"a"} and ema.updates == 1
    with pytest.raises(ValueError, match="decay"):
        fastopt.EMA(1.0)
    with pytest.raises(KeyError, match="'b'"):
        ema.swap({"a": np.ones(3), "b": np.ones(3)})


# ---- issue 12, item 3: swap is all or nothing and names the key ----


@pytest.mark.parametrize("bad", ["int array", "read-only", "shape"])
def test_swap_checks_every_param_first_and_changes_nothing(bad, rng):
    ema = fastopt.EMA(0.5)
    params = {"a": rng.standard_normal(3), "s": 2.0, "z": np.arange(4)}  # update() takes ints
    if bad != "int array":
        params["z"] = rng.standard_normal(4)
    ema.update(params)
    params["a"] += 1.0
    params["s"] = 4.0
    params["z"] = params["z"] + 1
    ema.update(params)
    if bad == "read-only":
        params["z"].flags.writeable = False
    elif bad == "shape":
        params["z"] = np.ones(5)
    a = params["a"]
    live = {key: np.copy(value) for key, value in params.items()}
    averages = {key: value.copy() for key, value in ema.shadow.items()}
    for swap in (ema.swap, lambda p: ema.averaged(p).__enter__()):
        with pytest.raises((TypeError, ValueError), match=r"params\['z'\]"):
            swap(params)
        assert params["a"] is a and params["s"] == 4.0
        for key, value in live.items():
            assert np.array_equal(params[key], value)
            assert np.array_equal(ema.shadow[key], averages[key])


def test_swap_of_a_float32_param_with_a_float64_average_and_back(rng):
    ema = fastopt.EMA(0.5)
    ema.shadow["w"] = np.array([1.0, 2.0])
    w = np.array([3.0, 4.0], np.float32)
    with ema.averaged({"w": w}):
        assert w.tolist() == [1.0, 2.0]
    assert w.tolist() == [3.0, 4.0] and ema.shadow["w"].tolist() == [1.0, 2.0]


def test_tied_weights_swap_once_and_come_back():
    """One array under two keys (tied embeddings): swapping it twice would undo the swap."""
    tied = np.full(4, 10.0)
    params = {"embed": tied, "unembed": tied}
    ema = fastopt.EMA(decay=0.5)
    ema.update(params)
    tied[...] = 20.0
    ema.update(params)  # both averages: 15
    with ema.averaged(params):
        assert np.array_equal(tied, np.full(4, 15.0))
    assert np.array_equal(tied, np.full(4, 20.0))
    assert np.array_equal(ema.shadow["embed"], ema.shadow["unembed"])


def test_params_sharing_part_of_their_memory_are_refused_before_any_swap():
    buffer = np.arange(8.0)
    params = {"a": buffer[:6], "b": buffer[4:]}
    ema = fastopt.EMA()
    ema.update(params)
    before = buffer.copy()
    with pytest.raises(ValueError, match=r"params\['a'\] and params\['b'\]"):
        ema.swap(params)
    assert np.array_equal(buffer, before)
