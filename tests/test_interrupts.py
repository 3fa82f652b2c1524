"""All or nothing where the core meets Python: a signal during a long update, grads and params
that are mappings of other kinds, keys whose __eq__ changes params, and errors that name the key
(issue 12, items 1, 7, 8 and 9)."""

from __future__ import annotations

import signal
import sys

import fastopt
import numpy as np
import pytest
from fastopt import optim, reference


class Alarm(Exception):
    pass


def _raise(signum, frame):
    raise Alarm


@pytest.mark.skipif(sys.platform == "win32", reason="setitimer is POSIX")
@pytest.mark.parametrize("make", [fastopt.Adam, optim.NAdam, optim.AdamW], ids=lambda m: m.__name__)
def test_a_signal_during_a_long_update_never_leaves_the_counters_behind(make):
    """A handler that raises (Ctrl-C, SIGALRM) surfaces when the core returns. The step count
    must have moved with the params: the next step then uses the next bias correction."""
    rng = np.random.default_rng(0)
    size = 1 << 22
    start = rng.standard_normal(size)
    grads = [{"w": rng.standard_normal(size)} for _ in range(2)]
    previous = signal.signal(signal.SIGALRM, _raise)
    interrupted = 0
    try:
        for delay in (1e-3, 2e-3, 3e-3, 5e-3, 8e-3):
            opt, params = make(), {"w": start.copy()}
            opt.update(params, grads[0])
            signal.setitimer(signal.ITIMER_REAL, delay)
            try:
                opt.update(params, grads[1])
                signal.setitimer(signal.ITIMER_REAL, 0)
            except Alarm:
                interrupted += 1
            signal.setitimer(signal.ITIMER_REAL, 0)
            ref, expected = make(), {"w": start.copy()}
            ref.update(expected, grads[0])
            made = opt.steps == 2
            if made:
                ref.update(expected, grads[1])
            else:
                assert opt.steps == 1
            assert np.array_equal(params["w"], expected["w"]), (delay, made)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    assert interrupted >= 1  # at least one alarm landed inside an update


class Halved(dict):
    """A loss-scaling wrapper: reads give half the stored gradient."""

    def __getitem__(self, key):
        return super().__getitem__(key) * 0.5


def test_a_mapping_that_overrides_getitem_is_read_through_it():
    params = {"w": np.zeros(4)}
    fastopt.SGD(lr=1.0).update(params, Halved({"w": np.ones(4)}))
    assert np.array_equal(params["w"], np.full(4, -0.5))


def test_clipping_bounds_the_step_that_is_taken():
    params = {"w": np.zeros(4)}
    opt = fastopt.SGD(lr=1.0, max_grad_norm=1.0)
    opt.update(params, Halved({"w": np.full(4, 10.0)}))
    assert opt.last_grad_norm == pytest.approx(10.0)  # the norm of what __getitem__ gives
    assert np.linalg.norm(params["w"]) == pytest.approx(1.0, rel=1e-6)


def test_params_of_a_dict_subclass_are_read_through_it_and_scalars_stored_in_its_storage():
    """A subclass's __setitem__ is Python code that could fail (or let a signal handler run) after
    the kernels wrote: scalar params go back into the dict's own storage, never through it."""

    class Refusing(dict):
        def __setitem__(self, key, value):
            raise RuntimeError("read-only mapping")

    params = Refusing(a=np.ones(3), s=2.0)
    opt = fastopt.Adam(lr=0.5)
    opt.update(params, {"a": np.ones(3), "s": 1.0})
    assert opt.iter == 1 and params["a"][0] < 1.0 and params["s"] < 2.0


def test_an_update_re_entered_from_a_keys_eq_commits_its_own_step():
    opt = fastopt.Adam()

    class Reentrant:
        entered = False

        def __hash__(self):
            return 7

        def __eq__(self, other):
            if not Reentrant.entered:
                Reentrant.entered = True
                opt.update({"inner": np.ones(2)}, {"inner": np.ones(2)})
            return self is other

    first, second = Reentrant(), Reentrant()
    params = {first: np.ones(2), second: np.ones(2)}  # same hash: looking one up compares
    opt.update(params, {second: np.ones(2), first: np.ones(2)})
    assert Reentrant.entered and opt.iter == 2


def test_grads_that_are_not_a_mapping_are_refused_by_name():
    params = {"w": np.ones(3)}
    with pytest.raises(TypeError, match=r"grads\['w'\].*grads must be a mapping.*list"):
        fastopt.SGD().update(params, [np.ones(3)])
    assert np.array_equal(params["w"], np.ones(3))


def test_a_grad_that_overflows_is_named():
    opt = fastopt.SGD()
    params = {"a": np.ones(()), "b": np.ones(())}
    with pytest.raises(OverflowError, match=r"grads\['b'\] does not fit in float64"):
        opt.update(params, {"a": 1, "b": 10**400})
    assert params["a"] == 1.0


class Hostile:
    """A key whose __eq__ removes another key from params the first time it runs."""

    def __init__(self, name, params):
        self.name, self.params = name, params

    def __hash__(self):
        return hash(self.name)

    def __eq__(self, other):
        if isinstance(other, Hostile) and self.params and "victim" in self.params:
            self.params.pop("victim")
            self.params["newcomer"] = np.ones(3)
        return isinstance(other, Hostile) and other.name == self.name

    def __repr__(self):
        return f"Hostile({self.name!r})"


def test_a_key_that_changes_params_during_the_update_leaves_each_key_updated_once():
    params: dict = {Hostile("first", None): np.ones(3), "victim": np.ones(3), "last": np.ones(3)}
    arrays = dict(params)  # the arrays as they were at the call
    # The grads' own copy of the key is hostile: looking params' key up in grads runs its __eq__.
    grads = {Hostile("first", params): np.ones(3), "victim": np.ones(3), "last": np.ones(3)}
    fastopt.SGD(lr=0.25).update(params, grads)
    for key, array in arrays.items():  # every key of the call was updated exactly once
        assert np.array_equal(array, np.full(3, 0.75)), key
    assert np.array_equal(params["newcomer"], np.ones(3))  # a key added meanwhile: not this step


def test_reference_agrees_on_the_mapping_semantics():
    params, expected = {"w": np.zeros(4)}, {"w": np.zeros(4)}
    fastopt.SGD(lr=1.0).update(params, Halved({"w": np.ones(4)}))
    reference.SGD(lr=1.0).update(expected, Halved({"w": np.ones(4)}))
    assert np.array_equal(params["w"], expected["w"])
