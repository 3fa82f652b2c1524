"""The pool's choice to share a job with its helpers, and threadpoolctl's view of the pool.

Whether a job is shared never changes its results (test_threads.py checks every thread count with
sharing forced on); these tests check the choice itself, on recorded timings, without timing
anything.
"""

from __future__ import annotations

import subprocess
import sys

import fastopt
import pytest

WORK = 3e6  # ns: one size class
PAIRS = 7
# Probes of the other path come after 8, 16, 32, 64, 64, ... decisions while the evidence agrees.
PROBES_IN_192 = 5  # at decisions 8, 24, 56, 120 and 184 after learning


def jobs(shared_over_alone, count=200, drift=1.0, work=WORK):
    """`count` jobs for which sharing costs `shared_over_alone` times running alone, while the
    machine slows by `drift` over the run: [(work_ns, seconds if shared, seconds if alone)]."""
    out = []
    for i in range(count):
        alone = 1e-9 * work * (1 + (drift - 1) * i / count)
        out.append((work, alone * shared_over_alone, alone))
    return out


decide = fastopt._core._sharing_decisions


def test_learning_alternates_and_starts_by_sharing():
    assert decide(jobs(1.0, count=PAIRS + 1)) == [True, False] * 4


@pytest.mark.parametrize("drift", [1.0, 2.0, 0.5])
def test_sharing_that_costs_more_stops_but_for_probes(drift):
    decisions = decide(jobs(1.15, drift=drift))[PAIRS + 1 :]
    assert sum(decisions) == PROBES_IN_192


@pytest.mark.parametrize("drift", [1.0, 2.0, 0.5])
def test_sharing_that_pays_goes_on_but_for_probes(drift):
    decisions = decide(jobs(0.8, drift=drift))[PAIRS + 1 :]
    assert len(decisions) - sum(decisions) == PROBES_IN_192


def test_the_choice_follows_the_machine_when_it_changes():
    # Sharing paid (back-to-back calls), then another pool starts spinning on the cores: within
    # the longest probe interval and a few short ones, the pool runs jobs alone.
    later = decide(jobs(0.8) + jobs(1.3, count=160))[-64:]
    assert sum(later) <= 2


def test_size_classes_keep_their_own_evidence():
    small, large = jobs(1.3, count=120, work=3e6), jobs(0.7, count=120, work=300e6)
    decisions = decide([job for pair in zip(small, large) for job in pair])
    assert sum(decisions[-80::2]) <= 2  # the small jobs: alone
    assert 40 - sum(decisions[-79::2]) <= 2  # the large ones: shared


def test_nonsense_timings_are_ignored():
    bad = [(WORK, seconds, seconds) for seconds in (float("nan"), -1.0, 0.0)]
    # Not evidence: they change nothing, so the policy, having learnt nothing, shares until the
    # first real timing, then alternates.
    assert decide(bad + jobs(1.0, count=2)) == [True, True, True, True, False]


threadpoolctl = pytest.importorskip("threadpoolctl")


def fastopt_pools():
    return [p for p in threadpoolctl.threadpool_info() if p["user_api"] == "fastopt"]


def test_threadpoolctl_sees_the_pool():
    (pool,) = fastopt_pools()
    assert pool["internal_api"] == "fastopt"
    assert pool["num_threads"] == fastopt.get_num_threads()
    assert pool["version"] == fastopt.__version__
    assert pool["filepath"] == fastopt._core.__file__
    with fastopt.num_threads(3):
        assert fastopt_pools()[0]["num_threads"] == 3


@pytest.mark.parametrize("user_api", [None, "fastopt"])
def test_threadpool_limits_limits_the_pool_and_restores_it(user_api):
    before = fastopt.get_num_threads()
    with fastopt.num_threads(before + 2):
        with threadpoolctl.threadpool_limits(1, user_api=user_api):
            assert fastopt.get_num_threads() == 1
        assert fastopt.get_num_threads() == before + 2
    assert fastopt.get_num_threads() == before


def test_limits_for_other_pools_leave_fastopt_alone():
    with fastopt.num_threads(2):
        with threadpoolctl.threadpool_limits(1, user_api="blas"):
            assert fastopt.get_num_threads() == 2


def test_a_limit_of_no_threads_still_leaves_one():
    with threadpoolctl.threadpool_limits({fastopt._core.__file__: 0}):
        assert fastopt.get_num_threads() == 1


def test_fastopt_imports_without_threadpoolctl():
    code = (
        "import sys; sys.modules['threadpoolctl'] = None\n"
        "import fastopt, numpy as np\n"
        "assert fastopt._threadpoolctl.register() is False\n"
        "p = {0: np.ones(3)}; fastopt.Adam().update(p, {0: np.ones(3)}); print('ok')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr
