"""Threads, fork and shutdown: update() releases the GIL, and concurrency never changes a result."""

from __future__ import annotations

import multiprocessing
import subprocess
import sys
import threading

import fastopt
import numpy as np
import pytest

N = 400_000  # large enough that the kernels run without the GIL, for real overlap


def workload(name, seed, steps=6):
    rng = np.random.default_rng(seed)
    params = {"a": rng.standard_normal(N), "b": rng.standard_normal((300, 7))}
    grads = [{k: rng.standard_normal(v.shape) for k, v in params.items()} for _ in range(steps)]
    return getattr(fastopt, name)(), params, grads


@pytest.mark.parametrize("name", ["SGD", "Adam", "RMSprop"])
def test_separate_optimizers_in_threads_give_the_sequential_results(name):
    jobs = [workload(name, seed) for seed in range(4)]
    expected = []
    for seed in range(4):
        opt, params, grads = workload(name, seed)
        for g in grads:
            opt.update(params, g)
        expected.append(params)

    def run(job):
        opt, params, grads = job
        for g in grads:
            opt.update(params, g)

    threads = [threading.Thread(target=run, args=(job,)) for job in jobs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for (_, params, _), want in zip(jobs, expected):
        for key in params:
            assert np.array_equal(params[key], want[key])


def test_one_optimizer_shared_by_two_threads_is_serialized():
    """Concurrent update() calls on one optimizer run one at a time (a lock per optimizer)."""
    steps = 20
    params = {"w": np.zeros(N)}
    grads = {"w": np.ones(N)}
    opt = fastopt.Adam()
    threads = [
        threading.Thread(target=lambda: [opt.update(params, grads) for _ in range(steps)])
        for _ in range(2)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    sequential_params = {"w": np.zeros(N)}
    sequential = fastopt.Adam()
    for _ in range(2 * steps):
        sequential.update(sequential_params, grads)
    assert opt.iter == 2 * steps
    assert np.array_equal(params["w"], sequential_params["w"])
    assert np.array_equal(opt.v["w"], sequential.v["w"])


def _child(queue):
    params = {"w": np.zeros(2_000_000)}
    with fastopt.num_threads(2):
        fastopt.SGD(lr=1.0).update(params, {"w": np.full(2_000_000, -1.0)})
    queue.put(float(params["w"].sum()))


@pytest.mark.skipif(sys.platform != "linux", reason="fork")
def test_a_forked_child_can_still_update():
    # The parent's pool is alive (and its workers possibly spinning) when the child is forked.
    with fastopt.num_threads(2):
        fastopt.SGD().update({"w": np.zeros(2_000_000)}, {"w": np.ones(2_000_000)})
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    child = context.Process(target=_child, args=(queue,))
    child.start()
    child.join(timeout=60)
    assert child.exitcode == 0
    assert queue.get(timeout=5) == 2_000_000.0


def test_interpreter_exits_with_updates_running():
    code = (
        "import threading, numpy as np, fastopt\n"
        "p, g = {'w': np.zeros(3_000_000)}, {'w': np.ones(3_000_000)}\n"
        "opt = fastopt.Adam()\n"
        "def spin():\n"
        "    while True: opt.update(p, g)\n"
        "threading.Thread(target=spin, daemon=True).start()\n"
        "import time; time.sleep(0.2)\n"
        "print('bye')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "bye"


def test_optimizers_copy_and_pickle_without_their_lock():
    import copy
    import pickle

    opt = fastopt.Adam()
    params = {"w": np.ones(5)}
    opt.update(params, {"w": np.ones(5)})
    for clone in (copy.deepcopy(opt), pickle.loads(pickle.dumps(opt))):
        clone.update(params, {"w": np.ones(5)})
        assert clone.iter == 2 and opt.iter == 1
