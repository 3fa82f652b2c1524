"""Half precision with everything else: mixed grad and param dtypes, threads, clipping, non-finite
grads, checkpoints, EMA, option checks, errors, and ml_dtypes left unimported."""

from __future__ import annotations

import subprocess
import sys

import fastopt
import numpy as np
import pytest
from fastopt import _core
from fastopt import _reference_half as ref

ml_dtypes = pytest.importorskip("ml_dtypes")
bf16 = ml_dtypes.bfloat16
HALF = (bf16, np.float16)


def fmt(dtype) -> str:
    return "float16" if dtype == np.float16 else "bfloat16"


@pytest.mark.parametrize("grad_dtype", HALF)
@pytest.mark.parametrize("param_dtype", (np.float32, np.float64))
def test_half_grads_are_read_widened(param_dtype, grad_dtype):
    rng = np.random.default_rng(0)
    params = {n: rng.standard_normal(n).astype(param_dtype) for n in (1, 9, 513, 3000)}
    twin = {k: v.copy() for k, v in params.items()}
    opt, other = fastopt.optim.AdamW(lr=0.01), fastopt.optim.AdamW(lr=0.01)
    for _ in range(3):
        grads = {k: rng.standard_normal(v.shape).astype(grad_dtype) for k, v in params.items()}
        opt.update(params, grads)
        other.update(twin, {k: g.astype(param_dtype) for k, g in grads.items()})
    for k in params:
        assert np.array_equal(params[k], twin[k])


@pytest.mark.parametrize("grad_dtype", (np.float32, np.float64, np.int32))
@pytest.mark.parametrize("dtype", HALF)
def test_half_params_take_other_grads_as_float32(dtype, grad_dtype):
    rng = np.random.default_rng(1)
    params = {"w": rng.standard_normal(700).astype(dtype)}
    masters = {"w": params["w"].astype(np.float32)}
    opt, other = fastopt.Adam(), fastopt.Adam()
    for _ in range(3):
        grad = (rng.standard_normal(700) * 3).astype(grad_dtype)
        opt.update(params, {"w": grad})
        other.update(masters, {"w": grad.astype(np.float32)})  # float64 rounds to float32 first
    assert np.array_equal(opt.master["w"], masters["w"])
    assert np.array_equal(params["w"].view(np.uint16), ref.round_half(masters["w"], fmt(dtype)))


@pytest.mark.parametrize("name", ["Adam", "Lion", "RMSprop", "AdaBelief"])
@pytest.mark.parametrize("mode", [{}, {"rounding": "stochastic"}, {"compensation": True}])
@pytest.mark.parametrize("dtype", HALF)
def test_results_do_not_depend_on_threads(dtype, mode, name):
    rng = np.random.default_rng(2)
    start = {
        "a": rng.standard_normal(300_001).astype(dtype),
        "b": rng.standard_normal(7).astype(dtype),
    }
    grads = [
        {k: rng.standard_normal(v.shape).astype(dtype) for k, v in start.items()} for _ in range(3)
    ]
    results = []
    for threads, sharing in ((1, 0), (2, 1)):
        params = {k: v.copy() for k, v in start.items()}
        opt = getattr(fastopt.optim, name)(lr=0.01, **mode)
        _core._force_sharing(sharing)
        try:
            with fastopt.num_threads(threads):
                for g in grads:
                    opt.update(params, g)
        finally:
            _core._force_sharing(-1)
        results.append((params, opt.state_dict()))
    (p1, s1), (p2, s2) = results
    for k in start:
        assert np.array_equal(p1[k].view(np.uint16), p2[k].view(np.uint16))
        for name, arrays in s1["state"].items():
            if k in arrays:
                assert np.array_equal(arrays[k].view(np.uint8), s2["state"][name][k].view(np.uint8))


def test_nearest_loses_small_steps_and_stochastic_and_kahan_keep_them():
    grads = {"w": np.ones(20_000, bf16)}
    moved = {}
    modes = {
        "nearest": {"master_weights": False},
        "stochastic": {"rounding": "stochastic"},
        "kahan": {"compensation": True},
        "master": {},
    }
    for name, mode in modes.items():
        params = {"w": np.ones(20_000, bf16)}
        opt = fastopt.SGD(lr=1e-4, **mode)
        for _ in range(100):
            opt.update(params, grads)
        # What the optimizer holds: the param, plus its compensation (Kahan) or as its master.
        held = params["w"].astype(np.float64)
        if name == "kahan":
            held += opt.compensation_buffer["w"].astype(np.float64)
        if name == "master":
            held = opt.master["w"].astype(np.float64)
        moved[name] = float(1.0 - held.mean())
    assert moved["nearest"] == 0.0  # 1e-4 is under half an ulp of 1.0 (2**-8 / 2)
    for name in ("stochastic", "kahan", "master"):
        assert moved[name] == pytest.approx(0.01, rel=0.02), name


@pytest.mark.parametrize("dtype", HALF)
def test_clipping_reads_half_grads_widened(dtype):
    rng = np.random.default_rng(3)
    grads = {n: (rng.standard_normal(n) * 10).astype(dtype) for n in (5, 9000)}
    wide = {k: g.astype(np.float64) for k, g in grads.items()}
    assert fastopt.global_norm(grads) == fastopt.global_norm(wide)
    params = {k: np.zeros(g.shape, dtype) for k, g in grads.items()}
    twin = {k: np.zeros(g.shape, np.float32) for k, g in grads.items()}
    opt, other = fastopt.SGD(max_grad_norm=1.0), fastopt.SGD(max_grad_norm=1.0)
    opt.update(params, grads)
    other.update(twin, {k: g.astype(np.float32) for k, g in grads.items()})
    assert opt.last_grad_norm == other.last_grad_norm
    for k in params:
        assert np.array_equal(opt.master[k], twin[k])


@pytest.mark.parametrize("bad", [np.inf, -np.inf, np.nan])
@pytest.mark.parametrize("dtype", HALF)
def test_nonfinite_half_grads_skip_or_raise_naming_the_key(dtype, bad):
    params = {"ok": np.ones(40, dtype), "bad": np.ones(3000, dtype)}
    grads = {"ok": np.ones(40, dtype), "bad": np.ones(3000, dtype)}
    grads["bad"][1234] = bad
    skip = fastopt.Adam(nonfinite="skip")
    skip.update(params, grads)
    assert skip.skipped_updates == 1 and not skip.master and (params["bad"] == 1).all()
    with pytest.raises(FloatingPointError, match=r"grads\['bad'\].*1 (nan|inf)"):
        fastopt.Adam(nonfinite="raise").update(params, grads)


@pytest.mark.parametrize(
    "mode", [{}, {"rounding": "stochastic", "seed": 3}, {"compensation": True}]
)
@pytest.mark.parametrize("dtype", HALF)
def test_checkpoints_round_trip_and_resume_bit_exactly(tmp_path, dtype, mode):
    rng = np.random.default_rng(4)
    params = {
        "w": rng.standard_normal((30, 7)).astype(dtype),
        "b": rng.standard_normal(5).astype(dtype),
    }
    grads = [
        {k: rng.standard_normal(v.shape).astype(dtype) for k, v in params.items()} for _ in range(4)
    ]
    opt = fastopt.optim.AdamW(lr=0.01, **mode)
    for g in grads[:2]:
        opt.update(params, g)
    fastopt.save(tmp_path / "c.npz", opt, params)
    other_params = {k: np.zeros_like(v) for k, v in params.items()}
    other = fastopt.optim.AdamW(lr=0.01)  # the options come from the checkpoint
    fastopt.load(tmp_path / "c.npz", other, other_params)
    assert (other.rounding, other.compensation, other.seed) == (
        opt.rounding,
        opt.compensation,
        opt.seed,
    )
    for name in ("master", "compensation"):
        saved = opt._state.arrays[name]
        loaded = other._state.arrays[name]
        assert saved.keys() == loaded.keys()
        for k in saved:
            assert loaded[k].dtype == saved[k].dtype
            assert np.array_equal(loaded[k].view(np.uint8), saved[k].view(np.uint8))
    for g in grads[2:]:
        opt.update(params, g)
        other.update(other_params, g)
    for k in params:
        assert np.array_equal(params[k].view(np.uint16), other_params[k].view(np.uint16))


def test_a_checkpoint_without_masters_is_refused(tmp_path):
    params = {"w": np.ones(10, bf16)}
    opt = fastopt.Adam()
    opt.update(params, {"w": np.ones(10, bf16)})
    state = opt.state_dict()
    del state["state"]["master"]["w"]
    other = fastopt.Adam()
    other.load_state_dict(state)
    fastopt.save(tmp_path / "c.npz", other, params)
    with pytest.raises(fastopt.CheckpointError, match="no 'master' for it"):
        fastopt.load(tmp_path / "c.npz", fastopt.Adam(), {"w": np.ones(10, bf16)})
    before = params["w"].copy()
    with pytest.raises(ValueError, match=r"params\['w'\] is bfloat16 .* no master"):
        other.update(params, {"w": np.ones(10, bf16)})
    assert np.array_equal(params["w"], before) and "w" not in other.master


def test_changing_the_settings_after_masters_exist_is_refused():
    params = {"w": np.ones(10, np.float16)}
    opt = fastopt.Adam()
    opt.update(params, {"w": np.ones(10, np.float16)})
    opt.master_weights = False
    with pytest.raises(ValueError, match="has a master in opt.master"):
        opt.update(params, {"w": np.ones(10, np.float16)})


def test_bad_option_combinations_fail_at_construction():
    with pytest.raises(ValueError, match="master_weights=False"):
        fastopt.Adam(master_weights=True, rounding="stochastic")
    with pytest.raises(ValueError, match="master_weights=False"):
        fastopt.optim.SGD(master_weights=True, compensation=True)
    with pytest.raises(ValueError, match="rounding"):
        fastopt.SGD(rounding="up")
    with pytest.raises(ValueError, match="seed"):
        fastopt.SGD(seed=-1)
    with pytest.raises(ValueError, match="compensation=True"):
        fastopt.SGD(rounding="stochastic", compensation=True)


def test_a_replaced_param_of_another_dtype_is_detected():
    params = {"w": np.ones(10, bf16)}
    opt = fastopt.Adam()
    opt.update(params, {"w": np.ones(10, bf16)})
    params["w"] = np.ones(10, np.float64)
    with pytest.raises(ValueError, match="changed dtype"):
        opt.update(params, {"w": np.ones(10)})


def test_ema_of_masters_and_of_half_params():
    rng = np.random.default_rng(5)
    params = {"w": rng.standard_normal(100).astype(bf16)}
    opt, ema, ema_half = fastopt.Adam(lr=0.01), fastopt.EMA(0.9), fastopt.EMA(0.9)
    for _ in range(5):
        opt.update(params, {"w": rng.standard_normal(100).astype(bf16)})
        ema.update(opt.master_params(params))
        ema_half.update(params)
    assert ema.shadow["w"].dtype == ema_half.shadow["w"].dtype == np.float32
    assert not np.array_equal(ema.shadow["w"], ema_half.shadow["w"])  # masters, not rounded
    average = ema.shadow["w"].copy()
    held = params["w"].copy()
    with ema.averaged(params):
        assert np.array_equal(params["w"].view(np.uint16), ref.round_half(average, "bfloat16"))
    assert np.array_equal(params["w"].view(np.uint16), held.view(np.uint16))
    assert np.array_equal(ema.shadow["w"], average)  # the average itself came back exact


def test_fastopt_never_imports_ml_dtypes_and_works_without_it():
    code = (
        "import sys; sys.modules['ml_dtypes'] = None\n"
        "import numpy as np, fastopt\n"
        "p = {'w': np.ones(9, np.float16)}\n"
        "fastopt.Adam().update(p, {'w': np.ones(9, np.float16)})\n"
        "assert p['w'].dtype == np.float16 and (p['w'] < 1).all()\n"
        "import importlib; sys.modules.pop('ml_dtypes')\n"
        "import fastopt.checkpoint\n"
        "print(sorted(m for m in sys.modules if m.startswith('ml_dtypes')))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_tied_half_params_with_masters_are_refused_and_without_add_up():
    w = np.zeros(4, bf16)
    opt = fastopt.SGD(lr=1.0)
    with pytest.raises(ValueError, match=r"params\['a'\] and params\['b'\] share memory"):
        opt.update({"a": w, "b": w}, {"a": np.ones(4), "b": np.ones(4)})
    assert (w == 0).all() and not opt.master
    view = w.view(np.float16)  # the same bytes under another dtype
    with pytest.raises(ValueError, match="share memory"):
        opt.update({"a": w, "b": view}, {"a": np.ones(4), "b": np.ones(4)})
    for mode in ({"rounding": "stochastic"}, {"compensation": True}, {"master_weights": False}):
        w[...] = 0
        direct = fastopt.SGD(lr=1.0, **mode)
        for _ in range(3):
            direct.update({"a": w, "b": w}, {"a": np.ones(4), "b": np.ones(4)})
        assert (w == -6).all(), mode


def test_a_master_left_from_a_half_param_is_not_reused():
    params = {"w": np.zeros(3, bf16)}
    opt = fastopt.SGD(lr=1.0)
    opt.update(params, {"w": np.ones(3)})
    params["w"] = params["w"].astype(np.float32)
    with pytest.raises(ValueError, match=r"params\['w'\] is float32 but opt.master holds"):
        opt.update(params, {"w": np.ones(3)})
    del opt.master["w"]
    opt.update(params, {"w": np.ones(3)})
    assert (params["w"] == -2).all()


def test_kahan_survives_an_overflow_to_inf():
    params = {"w": np.full(4, 65504, np.float16)}
    opt = fastopt.SGD(lr=1.0, compensation=True)
    for _ in range(20):
        opt.update(params, {"w": np.full(4, -1.0, np.float32)})
    assert np.isinf(params["w"]).all()  # 65504 + 20 rounds to inf, as IEEE says
    assert (opt.compensation_buffer["w"] == 0).all()  # not -inf: inf + -inf would be nan
    opt.update(params, {"w": np.full(4, 100.0, np.float32)})
    assert np.isinf(params["w"]).all() and not np.isnan(params["w"]).any()


@pytest.mark.parametrize("dtype", HALF)
def test_clipping_half_grads_in_place_computes_in_float32(dtype):
    g = {"w": np.full(400_000, 60000 if dtype == np.float16 else 1e30, dtype)}
    wide = g["w"].astype(np.float64)
    norm = fastopt.clip_grad_norm(g, 1.0)
    expected = (wide * np.float32(1.0 / (norm + 1e-6))).astype(np.float32).astype(dtype)
    assert np.array_equal(g["w"].view(np.uint16), expected.view(np.uint16))
    assert fastopt.global_norm(g) == pytest.approx(1.0, rel=1e-2)
    small = {"w": np.full(8, 0.5, dtype)}
    fastopt.clip_grad_value(small, 0.1)
    assert np.array_equal(small["w"], np.full(8, np.float32(0.1)).astype(dtype))


def test_states_of_a_two_byte_aligned_half_param_are_aligned():
    n = 1 << 16
    w = np.ones(n + 1, bf16)[1:]
    assert w.ctypes.data % 4 == 2
    opt = fastopt.Adam()
    opt.update({"w": w}, {"w": np.ones(n, bf16)})
    for array in (opt.m["w"], opt.v["w"], opt.master["w"]):
        assert array.flags.aligned and array.ctypes.data % 4 == 0
    m = opt.m["w"]
    opt.update({"w": w}, {"w": np.ones(n, bf16)})
    assert opt.m["w"] is m  # used in place, not copied again


def test_contradictory_half_settings_in_a_state_dict_are_refused():
    opt = fastopt.Adam()
    state = opt.state_dict()
    state["hyperparameters"].update(master_weights=True, rounding="stochastic")
    with pytest.raises(ValueError, match="master_weights=False"):
        opt.load_state_dict(state)
    assert opt.master_weights is None and opt.rounding == "nearest"


def test_a_damaged_bfloat16_list_is_a_checkpoint_error(tmp_path):
    import json

    params = {"w": np.ones(3, bf16)}
    opt = fastopt.Adam()
    opt.update(params, {"w": np.ones(3)})
    fastopt.save(tmp_path / "c.npz", opt, params)
    for damage in (lambda names: [names], lambda names: names + names, lambda names: ["zz"]):
        with np.load(tmp_path / "c.npz") as data:
            stored = dict(data)
        manifest = json.loads(str(stored["__manifest__"]))
        manifest["bfloat16"] = damage(manifest["bfloat16"])
        stored["__manifest__"] = np.array(json.dumps(manifest))
        np.savez(tmp_path / "bad.npz", **stored)
        with pytest.raises(fastopt.CheckpointError, match="'bfloat16' must list"):
            fastopt.load(tmp_path / "bad.npz", fastopt.Adam(), {"w": np.ones(3, bf16)})


def test_bfloat16_scalars_are_real_numbers():
    params = {"w": np.float32(1.0), "v": bf16(2.0)}
    fastopt.SGD(lr=0.5).update(params, {"w": bf16(1.0), "v": bf16(1.0)})
    assert params["w"] == 0.5 and params["v"] == 1.5
    assert fastopt.global_norm({"w": bf16(3.0)}) == 3.0


@pytest.mark.parametrize("mode", [{}, {"rounding": "stochastic"}, {"compensation": True}])
def test_per_key_settings_with_half_params_equal_separate_optimizers(mode):
    rng = np.random.default_rng(7)
    params = {"a": rng.standard_normal(600).astype(bf16), "b": rng.standard_normal(9).astype(bf16)}
    alone = {k: {k: v.copy()} for k, v in params.items()}
    opt = fastopt.optim.AdamW(lr=0.01, per_key={"b": {"lr": 0.1}}, **mode)
    separate = {"a": fastopt.optim.AdamW(lr=0.01, **mode), "b": fastopt.optim.AdamW(lr=0.1, **mode)}
    for _ in range(3):
        grads = {k: rng.standard_normal(v.shape).astype(bf16) for k, v in params.items()}
        opt.update(params, grads)
        for k in params:
            separate[k].update(alone[k], {k: grads[k]})
    for k in params:
        assert np.array_equal(params[k].view(np.uint16), alone[k][k].view(np.uint16)), k


def test_a_master_added_during_validation_is_seen_by_the_same_update():
    """User code run while the keys are validated (a grads mapping's __getitem__) may put a master
    for a float32 key: the same update must refuse it, not only the next one."""
    opt = fastopt.SGD(lr=1.0)

    class Grads(dict):
        def __getitem__(self, key):
            if key == "a":
                opt.master["c"] = np.zeros(3, np.float32)
            return dict.__getitem__(self, key)

    params = {"a": np.zeros(3, np.float32), "c": np.zeros(3, np.float32)}
    with pytest.raises(ValueError, match=r"params\['c'\] is float32 but opt.master holds"):
        opt.update(params, Grads(a=np.ones(3), c=np.ones(3)))
    assert (params["a"] == 0).all() and (params["c"] == 0).all()
