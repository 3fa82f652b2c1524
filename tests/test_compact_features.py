"""Compact state (state_format) with everything else: the read-only float views and the raw arrays,
the size threshold, threads, checkpoints and resume, the settings' lifecycle, and bad state."""

from __future__ import annotations

import fastopt
import numpy as np
import pytest
from fastopt import _compact

FORMATS = ("bfloat16", "int8")
# A weight matrix and sizes around the int8 threshold (4096) and the block (256).
SIZES = (255, 256, 257, 4095, 4096, 4097)


def params_and_grads(rng, steps=4, dtype=np.float32):
    params = {f"a{n}": rng.standard_normal(n).astype(dtype) for n in SIZES}
    params["W"] = np.asfortranarray(rng.standard_normal((70, 90)).astype(dtype))
    grads = [
        {k: rng.standard_normal(v.shape).astype(dtype) for k, v in params.items()}
        for _ in range(steps)
    ]
    return params, grads


def test_int8_keeps_small_arrays_and_running_maxima_in_float32():
    rng = np.random.default_rng(0)
    params, grads = params_and_grads(rng, 1)
    opt = fastopt.optim.Adam(amsgrad=True, state_format="int8")
    opt.update(params, grads[0])
    raw = opt.raw_state
    for k, p in params.items():
        compact = p.size >= 4096
        assert raw["exp_avg"][k].dtype == (np.uint8 if compact else np.float32), k
        assert raw["exp_avg_sq"][k].dtype == (np.uint8 if compact else np.float32), k
        assert raw["max_exp_avg_sq"][k].dtype == np.float32  # a running max: never int8
        assert (k in raw["exp_avg_absmax"]) == compact
        if compact:
            assert raw["exp_avg_absmax"][k].shape == (-(-p.size // 256),)
            assert raw["exp_avg"][k].shape == p.shape
            assert raw["exp_avg"][k].flags.f_contiguous == p.flags.f_contiguous
    small = fastopt.optim.Adam(state_format="int8", compact_min_size=10)
    small.update({"x": np.ones(10, np.float32)}, {"x": np.ones(10, np.float32)})
    assert small.raw_state["exp_avg"]["x"].dtype == np.uint8


def test_views_are_read_only_float32_values_of_the_raw_state():
    rng = np.random.default_rng(1)
    params, grads = params_and_grads(rng, 2)
    for fmt in FORMATS:
        opt = fastopt.optim.Adam(state_format=fmt)
        for g in grads:
            opt.update(params, g)
        view = opt.exp_avg
        assert set(view) == set(params) and len(view) == len(params)
        for k in params:
            raw = opt.raw_state["exp_avg"][k]
            values = view[k]
            assert values.dtype == np.float32 and values.shape == params[k].shape
            with pytest.raises(ValueError, match="read-only"):
                values[...] = 0
            if raw.dtype == np.uint8:
                absmax = opt.raw_state["exp_avg_absmax"][k]
                assert np.array_equal(values, _compact.dequantize(raw, absmax, True))
            elif raw.dtype == np.uint16:
                assert np.array_equal(values.view(np.uint32), raw.astype(np.uint32) << 16)
        # The values are close to float32 state's: compact state is a rounding of it.
        exact = fastopt.optim.Adam()
        twin = {k: v.copy() for k, v in params.items()}
        for g in grads:
            exact.update(twin, g)
        for k in params:
            scale = np.abs(exact.exp_avg[k]).max()
            assert np.abs(view[k] - exact.exp_avg[k]).max() <= 0.05 * scale, (fmt, k)


def test_a_reset_clears_codes_and_absmaxes_and_del_drops_a_key():
    rng = np.random.default_rng(2)
    params, grads = params_and_grads(rng, 1)
    opt = fastopt.Momentum(state_format="int8")
    opt.update(params, grads[0])
    del opt.v["W"]
    assert "W" not in opt.raw_state["v"] and "W" not in opt.raw_state["v_absmax"]
    opt.v = {}  # the book's reset
    assert not opt.raw_state["v"] and not opt.raw_state["v_absmax"]
    opt.update(params, grads[0])
    assert opt.raw_state["v"]["W"].dtype == np.uint8


@pytest.fixture
def always_share():
    """Helper threads really compute chunks (see test_threads.py)."""
    fastopt._core._force_sharing(1)
    yield
    fastopt._core._force_sharing(-1)


@pytest.mark.usefixtures("always_share")
@pytest.mark.parametrize("threads", (2, 3, 8))
@pytest.mark.parametrize(
    "mode",
    [
        {"state_format": "int8"},
        {"state_format": "bfloat16"},
        {"state_format": "bfloat16", "rounding": "stochastic"},
    ],
)
@pytest.mark.parametrize("name", ["Adam", "Lion", "RMSprop", "SGD"])
def test_results_do_not_depend_on_threads(name, mode, threads):
    rng = np.random.default_rng(3)
    # Sizes that put piece edges inside int8 blocks; several keys in one update.
    start = {
        "a": rng.standard_normal(300_001).astype(np.float32),
        "b": rng.standard_normal(70_003).astype(np.float32),
        "c": rng.standard_normal(4097).astype(np.float32),
    }
    grads = [{k: rng.standard_normal(v.shape).astype(np.float32) for k, v in start.items()}]
    grads += [grads[0]]
    extra = {"momentum": 0.9} if name == "SGD" else {}
    results = []
    for count in (1, threads):
        params = {k: v.copy() for k, v in start.items()}
        opt = getattr(fastopt.optim, name)(lr=0.01, **extra, **mode)
        with fastopt.num_threads(count):
            for g in grads:
                opt.update(params, g)
        results.append((params, {n: dict(d) for n, d in opt.raw_state.items()}))
    (p1, s1), (p2, s2) = results
    for k in start:
        assert np.array_equal(p1[k], p2[k]), k
    for name_ in s1:
        for k in s1[name_]:
            assert np.array_equal(s1[name_][k], s2[name_][k], equal_nan=True), (name_, k)


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("name", ["Adam", "RMSprop", "AdaBelief"])
def test_checkpoints_round_trip_bit_exactly_and_resume(tmp_path, name, fmt):
    rng = np.random.default_rng(4)
    params, grads = params_and_grads(rng, 4)
    opt = getattr(fastopt.optim, name)(lr=0.01, state_format=fmt, compact_min_size=300)
    for g in grads[:2]:
        opt.update(params, g)
    fastopt.save(tmp_path / "c.npz", opt, params)
    other_params = {k: np.zeros_like(v) for k, v in params.items()}
    other = getattr(fastopt.optim, name)(lr=0.01)  # the format comes from the checkpoint
    fastopt.load(tmp_path / "c.npz", other, other_params)
    assert (other.state_format, other.compact_min_size) == (fmt, 300)
    from_dict = getattr(fastopt.optim, name)(lr=0.01)
    from_dict.load_state_dict(opt.state_dict())
    for loaded in (other, from_dict):
        assert loaded.raw_state.keys() == opt.raw_state.keys()
        for state, arrays in opt.raw_state.items():
            assert loaded.raw_state[state].keys() == arrays.keys()
            for k, value in arrays.items():
                assert loaded.raw_state[state][k].dtype == value.dtype
                assert np.array_equal(loaded.raw_state[state][k], value), (state, k)
    twin = {k: v.copy(order="K") for k, v in other_params.items()}
    for g in grads[2:]:
        opt.update(params, g)
        other.update(other_params, g)
        from_dict.update(twin, g)
    for k in params:
        assert np.array_equal(params[k], other_params[k]) and np.array_equal(params[k], twin[k])


def test_the_format_is_fixed_once_there_is_state():
    opt = fastopt.optim.Adam(state_format="int8")
    opt.state_format = "bfloat16"  # no state yet: allowed
    params = {"w": np.ones(5000, np.float32)}
    opt.update(params, {"w": np.ones(5000, np.float32)})
    for name, value in (("state_format", "int8"), ("state_format", None), ("compact_min_size", 1)):
        with pytest.raises(ValueError, match=f"{name} decides how state arrays are stored"):
            setattr(opt, name, value)
    assert opt.state_format == "bfloat16" and opt.compact_min_size == 4096
    opt.state_format = "bfloat16"  # the same value: fine
    for state in ("exp_avg", "exp_avg_sq"):
        setattr(opt, state, {})
    opt.state_format = "int8"  # after clearing the state
    opt.update(params, {"w": np.ones(5000, np.float32)})
    assert opt.raw_state["exp_avg"]["w"].dtype == np.uint8


@pytest.mark.parametrize("bad", ["bf16", "float32", 8, True])
def test_bad_settings_are_refused(bad):
    with pytest.raises(ValueError, match="state_format must be one of"):
        fastopt.optim.Adam(state_format=bad)
    for value, error in ((-1, ValueError), (1.5, TypeError), (True, TypeError)):
        with pytest.raises(error, match="compact_min_size"):
            fastopt.optim.Adam(compact_min_size=value)


def _state_after_one_update(fmt):
    params = {"w": np.linspace(-1, 1, 5000, dtype=np.float32)}
    opt = fastopt.optim.Adam(state_format=fmt)
    opt.update(params, {"w": np.ones(5000, np.float32)})
    return opt, params


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda s: s.__setitem__("w", np.zeros(5000, np.float32)), "state_format='int8' keeps it"),
        (lambda s: s.__setitem__("w", np.zeros(4999, np.uint8)), "state_format='int8' keeps it"),
        (lambda s: s["w"].setflags(write=False), "state_format='int8' keeps it"),
    ],
)
def test_raw_state_that_does_not_fit_raises_naming_the_key_and_changes_nothing(damage, message):
    opt, params = _state_after_one_update("int8")
    damage(opt.raw_state["exp_avg"])
    before = params["w"].copy()
    sq = opt.raw_state["exp_avg_sq"]["w"].copy()
    with pytest.raises(ValueError, match=r"params\['w'\].*" + message.replace("'", ".")):
        opt.update(params, {"w": np.ones(5000, np.float32)})
    assert np.array_equal(params["w"], before)
    assert np.array_equal(opt.raw_state["exp_avg_sq"]["w"], sq)
    assert opt.steps == 1


def test_missing_or_short_absmaxes_raise():
    opt, params = _state_after_one_update("int8")
    del opt.raw_state["exp_avg_absmax"]["w"]
    with pytest.raises(ValueError, match="exp_avg_absmax"):
        opt.update(params, {"w": np.ones(5000, np.float32)})
    opt, params = _state_after_one_update("int8")
    opt.raw_state["exp_avg_absmax"]["w"] = np.ones(3, np.float32)
    with pytest.raises(ValueError, match="exp_avg_absmax"):
        opt.update(params, {"w": np.ones(5000, np.float32)})


def test_a_state_dict_of_another_format_is_refused_and_changes_nothing():
    opt, _ = _state_after_one_update("int8")
    state = opt.state_dict()
    for fmt in (None, "bfloat16"):
        other = fastopt.optim.Adam(state_format=fmt)
        state["hyperparameters"]["state_format"] = fmt
        with pytest.raises(ValueError, match=r"state 'exp_avg'\['w'\]"):
            other.load_state_dict(state)
        assert other.state_format == fmt and other.steps == 0
    # A float32-state checkpoint that claims int8 (an edited file) is refused at load too.
    plain, _ = _state_after_one_update(None)
    state = plain.state_dict()
    state["hyperparameters"]["state_format"] = "int8"
    with pytest.raises(ValueError, match=r"'exp_avg'\['w'\] is float32 but state_format='int8'"):
        fastopt.optim.Adam().load_state_dict(state)
    state["hyperparameters"]["compact_min_size"] = 10**6  # then the float arrays fit
    loaded = fastopt.optim.Adam()
    loaded.load_state_dict(state)
    assert loaded.state_format == "int8" and loaded.compact_min_size == 10**6
    state = opt.state_dict()
    state["state"]["exp_avg_absmax"]["w"] = np.ones(2, np.float32)
    with pytest.raises(ValueError, match="block absmaxes"):
        fastopt.optim.Adam().load_state_dict(state)
    state = opt.state_dict()
    state["state"]["exp_avg_absmax"]["x"] = np.ones(2, np.float32)  # no codes: dropped
    loaded = fastopt.optim.Adam()
    loaded.load_state_dict(state)
    assert "x" not in loaded.raw_state["exp_avg_absmax"] and "w" in loaded.raw_state["exp_avg"]


def test_bfloat16_state_never_needs_ml_dtypes():
    import subprocess
    import sys

    code = (
        "import sys; sys.modules['ml_dtypes'] = None\n"
        "import numpy as np, fastopt\n"
        "opt = fastopt.optim.Adam(state_format='bfloat16')\n"
        "p = {'w': np.ones(10, np.float32)}\n"
        "opt.update(p, {'w': np.ones(10, np.float32)})\n"
        "assert opt.raw_state['exp_avg']['w'].dtype == np.uint16\n"
        "print(float(opt.exp_avg['w'][0]))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert abs(float(done.stdout) - 0.1) < 1e-3


def test_per_key_settings_keep_the_format():
    rng = np.random.default_rng(5)
    params, grads = params_and_grads(rng, 3)
    opt = fastopt.optim.Adam(lr=0.01, state_format="int8", per_key={"W": {"lr": 0.1}})
    alone = fastopt.optim.Adam(lr=0.1, state_format="int8")
    rest = fastopt.optim.Adam(lr=0.01, state_format="int8")
    mine = {k: v.copy(order="K") for k, v in params.items()}
    for g in grads:
        opt.update(mine, g)
        alone.update({"W": params["W"]}, {"W": g["W"]})
        rest.update({k: v for k, v in params.items() if k != "W"}, g)
    for k in params:
        assert np.array_equal(mine[k], params[k]), k


def test_a_param_replaced_in_the_other_memory_order():
    """bfloat16 bits move to the param's new order, as float states are copied; int8 codes can't
    (their blocks of 256 follow memory order) and raise naming the key, changing nothing."""
    rng = np.random.default_rng(6)
    w = np.asfortranarray(rng.standard_normal((80, 70)).astype(np.float32))
    opt = fastopt.optim.Adam(state_format="bfloat16")
    opt.update({"w": w.copy(order="K")}, {"w": w})
    before = opt.exp_avg["w"].copy()
    params = {"w": np.ascontiguousarray(w)}
    opt.update(params, {"w": np.zeros_like(w)})  # grad 0: exp_avg only decays
    raw = opt.raw_state["exp_avg"]["w"]
    assert raw.flags.c_contiguous and not raw.flags.f_contiguous
    assert np.abs(opt.exp_avg["w"] - 0.9 * before).max() <= 0.01 * np.abs(before).max()
    opt = fastopt.optim.Adam(state_format="int8")
    opt.update({"w": w.copy(order="K")}, {"w": w})
    params = {"w": np.ascontiguousarray(w)}
    with pytest.raises(ValueError, match=r"params\['w'\] is C-ordered but its int8 state"):
        opt.update(params, {"w": np.zeros_like(w)})
    assert np.array_equal(params["w"], w) and opt.steps == 1
    # Codes put back in the other order by hand are refused the same way.
    opt.raw_state["exp_avg"]["w"] = np.ascontiguousarray(opt.raw_state["exp_avg"]["w"])
    with pytest.raises(ValueError, match="int8 blocks follow memory order"):
        opt.update({"w": w}, {"w": np.zeros_like(w)})
