"""The thread count API, and bit-identical results for every thread count."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
import threading
import time

import fastopt
import numpy as np
import pytest
from conftest import BOOK, STATE_NAMES, random_like
from fastopt import reference

# Large enough to be a "large job" for every kernel (>= 250 us of estimated work, even SGD in
# float32), so sleeping helpers are woken on every call; odd sizes put chunk edges mid-array and
# mid-vector.
SHAPES = [(2_000_003,), (517, 263), (7,), (), (65_537,), (3,)]


@pytest.fixture(autouse=True)
def always_share():
    """Every job of 2+ threads is shared, so that helpers really compute chunks here: left to
    itself the pool shares only while sharing has been paying (test_pool.py)."""
    fastopt._core._force_sharing(1)
    yield
    fastopt._core._force_sharing(-1)


def run(name, threads, dtype, steps=3, **options):
    rng = np.random.default_rng(11)
    params = {i: rng.standard_normal(s).astype(dtype) for i, s in enumerate(SHAPES)}
    opt = getattr(fastopt.optim, name)(**options) if options else getattr(fastopt, name)()
    with fastopt.num_threads(threads):
        for _ in range(steps):
            opt.update(params, {k: random_like(v, rng) for k, v in params.items()})
    return params, {
        s: getattr(opt, s) for s in (opt._state_names if options else STATE_NAMES[name])
    }


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=lambda d: d.__name__)
@pytest.mark.parametrize("name", BOOK)
def test_bit_identical_for_every_thread_count(name, dtype):
    params_1, state_1 = run(name, 1, dtype)
    helped = fastopt._core._chunks_run_by_helpers()
    for threads in (2, 3, 8):
        params_n, state_n = run(name, threads, dtype)
        for key in params_1:
            assert np.array_equal(params_n[key], params_1[key]), (threads, key)
            for state in state_1:
                assert np.array_equal(state_n[state][key], state_1[state][key]), (threads, key)
    assert fastopt._core._chunks_run_by_helpers() > helped, "no helper thread took part"


@pytest.mark.parametrize(
    "name, options",
    [
        ("Adam", {"amsgrad": True, "weight_decay": 0.1}),
        ("RMSprop", {"centered": True, "momentum": 0.9}),
        ("NAdam", {"weight_decay": 0.1}),
        ("Lion", {"weight_decay": 0.1}),
    ],
)
def test_optim_bit_identical_for_every_thread_count(name, options):
    params_1, state_1 = run(name, 1, np.float32, **options)
    params_2, state_2 = run(name, 2, np.float32, **options)
    for key in params_1:
        assert np.array_equal(params_2[key], params_1[key])
        for state in state_1:
            assert np.array_equal(state_2[state][key], state_1[state][key])


def test_every_element_is_updated_when_split(rng):
    """A chunking bug that skipped or doubled a range would leave elements unchanged or off."""
    n = 1_000_003
    params = {"a": np.zeros(n), "b": np.zeros(77_777)}
    grads = {"a": -np.ones(n), "b": -np.ones(77_777)}
    with fastopt.num_threads(4):
        fastopt.SGD(lr=1.0).update(params, grads)
    assert np.all(params["a"] == 1.0) and np.all(params["b"] == 1.0)


def test_default_is_the_cores_this_process_may_use():
    code = "import fastopt; print(fastopt.get_num_threads())"
    env = {k: v for k, v in os.environ.items() if k != "FASTOPT_NUM_THREADS"}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert int(done.stdout) == len(os.sched_getaffinity(0))
    env["FASTOPT_NUM_THREADS"] = "3"
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert int(done.stdout) == 3


def test_set_get_and_context_manager():
    before = fastopt.get_num_threads()
    with fastopt.num_threads(3):
        assert fastopt.get_num_threads() == 3
        with fastopt.num_threads(1):
            assert fastopt.get_num_threads() == 1
        assert fastopt.get_num_threads() == 3
    assert fastopt.get_num_threads() == before
    with pytest.raises(RuntimeError), fastopt.num_threads(2):
        raise RuntimeError("restored even on error")
    assert fastopt.get_num_threads() == before


@pytest.mark.parametrize(
    "bad, error",
    [
        (0, ValueError),
        (-2, ValueError),
        (1.5, TypeError),
        (True, TypeError),
        (2**31, ValueError),  # issue 12, item 9: was pybind11's "incompatible function arguments"
        (2**40, ValueError),
        (2**64, ValueError),
    ],
)
def test_bad_thread_counts(bad, error):
    before = fastopt.get_num_threads()
    with pytest.raises(error, match="threads"):
        fastopt.set_num_threads(bad)
    with pytest.raises(error, match="threads"), fastopt.num_threads(bad):
        pass
    assert fastopt.get_num_threads() == before


# ---- issue 12, item 11: num_threads() blocks that overlap across threads ----


class _Block(threading.Thread):
    """A thread that enters fastopt.num_threads(count) and leaves it when told to."""

    def __init__(self, count):
        super().__init__(daemon=True)
        self.count, self.entered, self.leave = count, threading.Event(), threading.Event()
        self.failure = None

    def run(self):
        try:
            with fastopt.num_threads(self.count):
                self.entered.set()
                assert self.leave.wait(30)
        except BaseException as error:  # reported by exit()
            self.failure = error
            self.entered.set()

    def exit(self):
        self.leave.set()
        self.join(30)
        assert not self.is_alive() and self.failure is None


@pytest.mark.parametrize("exit_order", list(itertools.permutations(range(3))))
def test_overlapping_blocks_of_several_threads_restore_the_count_from_before(exit_order):
    before = fastopt.get_num_threads()
    counts = [before + 1, before + 2, before + 3]
    blocks = []
    for count in counts:
        blocks.append(_Block(count))
        blocks[-1].start()
        assert blocks[-1].entered.wait(30)
        assert fastopt.get_num_threads() == count  # the newest open block's count
    still_open = [0, 1, 2]
    for index in exit_order:
        blocks[index].exit()
        still_open.remove(index)
        newest = counts[still_open[-1]] if still_open else before
        assert fastopt.get_num_threads() == newest
    assert fastopt.get_num_threads() == before


def test_many_threads_entering_and_leaving_blocks_at_random_restore_the_count():
    before = fastopt.get_num_threads()

    def work(seed):
        rng = np.random.default_rng(seed)
        for _ in range(50):
            with fastopt.num_threads(int(rng.integers(1, 9))):
                time.sleep(float(rng.uniform(0, 1e-3)))  # lets the other threads' blocks overlap
                with fastopt.num_threads(int(rng.integers(1, 9))):
                    time.sleep(float(rng.uniform(0, 1e-3)))

    threads = [threading.Thread(target=work, args=(seed,)) for seed in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert fastopt.get_num_threads() == before


def test_probe_makes_the_loads_and_stores_it_claims(rng):
    from fastopt._probe import MemoryTrafficProbe

    for k in range(4):
        probe = MemoryTrafficProbe(k)
        params = {"w": rng.standard_normal(1001)}
        grads = {"w": rng.standard_normal(1001)}
        expected = params["w"] + grads["w"]
        probe.update(params, grads)
        assert np.array_equal(params["w"], expected)
        for i in range(k):  # every state was read (zeros) and written (zeros + g)
            assert np.array_equal(getattr(probe, f"s{i}")["w"], grads["w"])
    with pytest.raises(ValueError, match="num_states"):
        MemoryTrafficProbe(4)


def tied(layout, rng):
    """Params (and grads) that share memory across keys, over a buffer of ~2^21 float64. Where
    they overlap, key b's first chunk is key a's last: on two threads both run at once."""
    n = 1 << 20
    buffer = rng.standard_normal(2 * n)
    grads = {"a": rng.standard_normal(n), "b": rng.standard_normal(n)}
    if layout == "same array under two keys":
        params = {"a": buffer[:n], "b": buffer[:n]}
    elif layout == "overlapping views":
        params = {"a": buffer[:n], "b": buffer[3 * n // 4 : 3 * n // 4 + n]}
    else:  # "a view of one param as another key's grad"
        params = {"a": buffer[:n], "b": rng.standard_normal(n)}
        grads["b"] = buffer[3 * n // 4 : 3 * n // 4 + n]
    return buffer, params, grads


@pytest.mark.parametrize(
    "layout",
    ["same array under two keys", "overlapping views", "a view of one param as another key's grad"],
)
@pytest.mark.parametrize("name", ["SGD", "Momentum", "Adam"])
def test_keys_that_share_memory_give_the_books_numbers_on_any_thread_count(name, layout):
    # The book updates keys in order, each seeing the writes of the keys before it. Split across
    # threads those writes would race (before the fix: 2 runs in 30 differed); such updates run in
    # order on one thread. Several trials, each a fresh race.
    for trial in range(6):
        buffer, params, grads = tied(layout, np.random.default_rng(trial))
        expected_buffer, expected, expected_grads = tied(layout, np.random.default_rng(trial))
        opt, ref = getattr(fastopt, name)(), getattr(reference, name)()
        with fastopt.num_threads(2):
            for _ in range(2):
                opt.update(params, grads)
                ref.update(expected, expected_grads)
        assert np.array_equal(buffer, expected_buffer), trial
        assert np.array_equal(params["b"], expected["b"]), trial
