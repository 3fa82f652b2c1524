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
