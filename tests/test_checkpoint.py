"""Checkpoints: resuming is bit-exact for every optimizer; files are safe and errors are clear."""

from __future__ import annotations

import os

import fastopt
import numpy as np
import pytest
from conftest import BOOK, DTYPES, OPTIM_CASES, case_id
from fastopt import optim

# Every book class, and the torch-style ones with options that create every kind of state.
EVERYTHING = [(name, {}, fastopt) for name in BOOK] + [
    (name, options, optim)
    for name, options in OPTIM_CASES
    if options
    in (
        {},
        {"amsgrad": True},
        {"centered": True, "momentum": 0.5, "weight_decay": 0.1, "maximize": True, "alpha": 0.9},
        {"momentum": 0.9, "dampening": 0.3},
        {"initial_accumulator_value": 0.5},
    )
]
KEYS = ["W1", 7, ("conv", 2), None, 2.5, True]


def fresh_params(dtype, seed=0):
    rng = np.random.default_rng(seed)
    shapes = [(5, 4), (4,), (3, 2, 2), (), (9,), (1,)]
    return {k: rng.standard_normal(s).astype(dtype) for k, s in zip(KEYS, shapes)}


def grads_for(params, step):
    rng = np.random.default_rng(1000 + step)
    return {k: rng.standard_normal(v.shape).astype(v.dtype) for k, v in params.items()}


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.__name__)
@pytest.mark.parametrize(
    "name, options, module",
    EVERYTHING,
    ids=[case_id((n, o)) + ("" if m is optim else "-book") for n, o, m in EVERYTHING],
)
def test_resume_is_bit_exact(name, options, module, dtype, tmp_path):
    straight_params = fresh_params(dtype)
    straight = getattr(module, name)(**options)
    for step in range(20):
        straight.update(straight_params, grads_for(straight_params, step))

    params = fresh_params(dtype)
    first = getattr(module, name)(**options)
    for step in range(10):
        first.update(params, grads_for(params, step))
    fastopt.save(tmp_path / "run.npz", first, params)

    resumed_params = fresh_params(dtype, seed=99)  # fresh values, overwritten by load
    resumed = getattr(module, name)(**options)
    fastopt.load(tmp_path / "run.npz", resumed, resumed_params)
    for step in range(10, 20):
        resumed.update(resumed_params, grads_for(resumed_params, step))

    for key in KEYS:
        assert np.array_equal(resumed_params[key], straight_params[key]), key
    expected = straight.state_dict()
    got = resumed.state_dict()
    assert (
        got["counters"] == expected["counters"]
        and got["hyperparameters"] == expected["hyperparameters"]
    )
    for state, per_key in expected["state"].items():
        assert got["state"][state].keys() == per_key.keys()
        for key, value in per_key.items():
            assert np.array_equal(got["state"][state][key], value), (state, key)


def test_state_dict_is_plain_data_and_a_copy(rng):
    opt = fastopt.Adam()
    params = {"w": rng.standard_normal(3)}
    opt.update(params, {"w": rng.standard_normal(3)})
    state = opt.state_dict()
    assert state["kind"] == "fastopt.optimizers.Adam"
    assert state["counters"]["iter"] == 1 and state["hyperparameters"]["lr"] == 0.001
    saved_m = state["state"]["m"]["w"].copy()
    opt.update(params, {"w": rng.standard_normal(3)})
    assert np.array_equal(state["state"]["m"]["w"], saved_m)  # not a view of the live state


def test_keys_that_are_not_strings_round_trip(tmp_path):
    opt = fastopt.Momentum()
    params = fresh_params(np.float64)
    opt.update(params, grads_for(params, 0))
    fastopt.save(tmp_path / "keys.npz", opt, params)
    other = fastopt.Momentum()
    fastopt.load(tmp_path / "keys.npz", other)
    assert list(other.v) == KEYS and all(type(a) is type(b) for a, b in zip(other.v, KEYS))


def test_checkpoint_never_unpickles_and_is_written_atomically(tmp_path, monkeypatch):
    opt = fastopt.SGD()
    good = tmp_path / "good.npz"
    fastopt.save(good, opt, {"w": np.ones(3)})
    before = good.read_bytes()

    def crash(*args, **kwargs):
        raise KeyboardInterrupt("power cut mid-write")

    monkeypatch.setattr(np, "savez", crash)
    with pytest.raises(KeyboardInterrupt):
        fastopt.save(good, opt, {"w": np.zeros(3)})
    assert good.read_bytes() == before  # the good file is untouched
    assert [p.name for p in tmp_path.iterdir()] == ["good.npz"]  # and no temp file is left


def test_truncated_or_corrupt_files_give_a_clear_error(tmp_path):
    opt = fastopt.Adam()
    path = tmp_path / "ckpt.npz"
    fastopt.save(path, opt, {"w": np.ones(100)})
    data = path.read_bytes()
    (tmp_path / "truncated.npz").write_bytes(data[: len(data) // 2])
    (tmp_path / "garbage.npz").write_bytes(os.urandom(200))
    np.savez(tmp_path / "foreign.npz", x=np.ones(3))
    for name in ("truncated.npz", "garbage.npz", "foreign.npz", "missing.npz"):
        with pytest.raises(fastopt.CheckpointError, match="checkpoint"):
            fastopt.load(tmp_path / name, fastopt.Adam())


def test_wrong_kind_or_params_change_nothing(tmp_path, rng):
    params = {"w": rng.standard_normal(4)}
    opt = fastopt.Adam()
    opt.update(params, {"w": rng.standard_normal(4)})
    fastopt.save(tmp_path / "adam.npz", opt, params)

    other = fastopt.Momentum()
    with pytest.raises(fastopt.CheckpointError, match="fastopt.optimizers.Adam"):
        fastopt.load(tmp_path / "adam.npz", other)
    assert other.v == {}

    target = fastopt.Adam()
    mismatched = {"w": np.zeros(5)}
    with pytest.raises(fastopt.CheckpointError, match="'w'"):
        fastopt.load(tmp_path / "adam.npz", target, mismatched)
    assert target.m == {} and target.iter == 0 and np.all(mismatched["w"] == 0)

    with pytest.raises(ValueError, match="float32/float64"):
        fastopt.Adam().load_state_dict({**opt.state_dict(), "state": {"m": {"w": [1.0]}}})


def test_keys_that_cannot_be_stored(tmp_path):
    opt = fastopt.SGD()
    with pytest.raises(TypeError, match="cannot checkpoint the key"):
        fastopt.save(tmp_path / "x.npz", opt, {object(): np.ones(2)})
    assert not (tmp_path / "x.npz").exists()


def test_schedule_resumes_at_the_right_step(tmp_path, rng):
    schedule = fastopt.schedules.exponential(0.1, 0.5)
    opt = fastopt.SGD(lr=schedule)
    params = {"w": rng.standard_normal(2)}
    for _ in range(3):
        opt.update(params, {"w": np.ones(2)})
    fastopt.save(tmp_path / "s.npz", opt)
    resumed = fastopt.SGD(lr=schedule)
    fastopt.load(tmp_path / "s.npz", resumed)
    assert resumed.lr == 0.1 * 0.5**3


# ---- issue 12, item 2: loading is all or nothing, and every failure names its field ----


def _rewrite_manifest(source, target, change):
    """Copy the checkpoint `source` to `target` with its JSON manifest passed through change()."""
    import json

    with np.load(source, allow_pickle=False) as data:
        arrays = {name: data[name] for name in data.files}
    manifest = change(json.loads(str(arrays["__manifest__"])))
    arrays["__manifest__"] = np.array(json.dumps(manifest))
    np.savez(target, **arrays)


def _saved_adam(tmp_path, rng, lr=0.01):
    params = {"w": rng.standard_normal(4), "b": np.float64(0.5)}
    opt = fastopt.Adam(lr=lr, beta1=0.5)
    opt.update(params, {"w": rng.standard_normal(4), "b": 1.0})
    fastopt.save(tmp_path / "adam.npz", opt, params)
    return tmp_path / "adam.npz"


def _assert_untouched(opt, params, originals):
    assert opt.iter == 0 and opt.m == {} and opt.v == {} and opt.lr == 0.001 and opt.beta1 == 0.9
    for key, value in originals.items():
        assert np.array_equal(params[key], value)


def _with(field, value):
    def change(manifest):
        manifest[field] = value
        return manifest

    return change


@pytest.mark.parametrize(
    "change, match",
    [
        (lambda manifest: ["fastopt-checkpoint-1"], "format 'list'"),
        (_with("hyperparameters", [["lr", 0.1]]), "'hyperparameters' must be a dict"),
        (_with("counters", [3]), "'counters' must be a dict"),
        (_with("state", None), "'state' must be a dict"),
        (_with("state", {"m": {"w": "a0"}}), r"state\['m'\] must be a list"),
        (_with("state", {"m": [[{"str": "w"}]]}), r"state\['m'\]\[0\]"),
        (_with("state", {"m": [[{"weird": 1}, "a0"]]}), r"state\['m'\]\[0\]"),
        (_with("state", {"m": [["w", "a0"]]}), r"state\['m'\]\[0\]"),
        (_with("params", [[{"str": "w"}, "a99"]]), r"params\[0\]"),
        (_with("params", {"w": "a0"}), "params must be a list"),
        (_with("counters", {"iter": "1"}), r"counters\['iter'\]"),
        (_with("counters", {"iter": None}), r"counters\['iter'\]"),
        (_with("hyperparameters", {"lr": "0.1"}), r"hyperparameters\['lr'\]"),
        (_with("hyperparameters", {"beta1": [0.5]}), r"hyperparameters\['beta1'\]"),
    ],
)
def test_load_of_a_damaged_manifest_names_the_field_and_changes_nothing(
    change, match, tmp_path, rng
):
    _rewrite_manifest(_saved_adam(tmp_path, rng), tmp_path / "bad.npz", change)
    opt = fastopt.Adam()
    params = {"w": rng.standard_normal(4), "b": np.float64(2.0)}
    originals = {key: np.copy(value) for key, value in params.items()}
    with pytest.raises(fastopt.CheckpointError, match=match):
        fastopt.load(tmp_path / "bad.npz", opt, params)
    _assert_untouched(opt, params, originals)


@pytest.mark.parametrize("bad", ["1", None, 1.5, [1], True])
def test_load_state_dict_of_a_bad_counter_is_a_value_error_naming_it(bad, rng):
    opt = fastopt.Adam()
    opt.update({"w": np.ones(2)}, {"w": np.ones(2)})
    state = opt.state_dict()
    target = fastopt.Adam()
    with pytest.raises(ValueError, match=r"counters\['iter'\]"):
        target.load_state_dict({**state, "counters": {"iter": bad}})
    with pytest.raises(ValueError, match=r"hyperparameters\['lr'\]"):
        target.load_state_dict({**state, "hyperparameters": {"lr": "fast"}})
    _assert_untouched(target, {}, {})


@pytest.mark.parametrize("which", ["read-only", "scalar-for-array", "wrong dtype"])
def test_load_checks_every_param_before_changing_the_optimizer_or_any_param(which, tmp_path, rng):
    path = _saved_adam(tmp_path, rng)
    w = rng.standard_normal(4)
    params = {"b": np.float64(2.0), "w": w}
    if which == "read-only":
        w.flags.writeable = False
    elif which == "scalar-for-array":
        params["w"] = 3.0
    else:
        params["w"] = w.astype(np.float32)
    originals = {key: np.copy(value) for key, value in params.items()}
    opt = fastopt.Adam()
    with pytest.raises(fastopt.CheckpointError, match="'w'"):
        fastopt.load(path, opt, params)
    _assert_untouched(opt, params, originals)


def test_a_schedule_that_fails_at_the_loaded_step_changes_nothing(tmp_path, rng):
    # Saved after one step with a schedule, so the file holds no lr: the loading optimizer's
    # schedule gives it, at the loaded step.
    path = _saved_adam(tmp_path, rng, lr=lambda step: 0.01)
    rates = [0.001]  # valid at step 0 only: IndexError at the loaded step, 1
    opt = fastopt.Adam(lr=lambda step: rates[step])
    state = fastopt.Adam(lr=lambda step: 0.01, beta1=0.5).state_dict()
    with pytest.raises(ValueError, match="schedule raised IndexError at the loaded step 1"):
        opt.load_state_dict({**state, "counters": {"iter": 1}})
    _assert_untouched(opt, {}, {})

    params = {"w": rng.standard_normal(4), "b": np.float64(2.0)}
    originals = {key: np.copy(value) for key, value in params.items()}
    with pytest.raises(fastopt.CheckpointError, match="schedule"):
        fastopt.load(path, opt, params)
    _assert_untouched(opt, params, originals)
    rates.append(0.002)  # now the schedule works at step 1: the same file loads
    fastopt.load(path, opt, params)
    assert opt.iter == 1 and opt.lr == 0.002 and opt.beta1 == 0.5 and set(opt.m) == {"w", "b"}


# ---- issue 12, item 12: a checkpoint's permissions follow the umask ----


@pytest.mark.skipif(os.name != "posix", reason="POSIX permissions")
@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o027, 0o640), (0o002, 0o664)])
def test_checkpoint_permissions_follow_the_umask_like_np_savez(umask, mode, tmp_path):
    previous = os.umask(umask)  # (process-wide: this test runs no threads of its own)
    try:
        fastopt.save(tmp_path / "c.npz", fastopt.SGD(), {"w": np.ones(2)})
        np.savez(tmp_path / "plain.npz", w=np.ones(2))
    finally:
        os.umask(previous)
    assert (tmp_path / "c.npz").stat().st_mode & 0o777 == mode
    assert (tmp_path / "plain.npz").stat().st_mode & 0o777 == mode
    assert [p.name for p in sorted(tmp_path.iterdir())] == ["c.npz", "plain.npz"]


def test_a_scalar_param_saved_as_text_is_refused(tmp_path):
    import json

    opt = fastopt.SGD()
    path = tmp_path / "ckpt.npz"
    fastopt.save(path, opt, {"s": 1.0})
    with np.load(path, allow_pickle=False) as data:
        arrays = {name: data[name] for name in data.files}
    manifest = json.loads(str(arrays["__manifest__"]))
    name = manifest["params"][0][1]
    arrays[name] = np.array("not a number")
    np.savez(path, **arrays)
    params = {"s": 2.0}
    with pytest.raises(fastopt.CheckpointError, match="'s'"):
        fastopt.load(path, opt, params)
    assert params == {"s": 2.0}
