"""Scenarios of failures: bad input, bad state, interrupts and mid-update failures on one process
raise on every process and change nothing; what the layout refuses; messages that name."""

from __future__ import annotations

import os
from typing import Any, Callable

import fastopt
import numpy as np
from fastopt import optim
from fastopt.distributed import Sharded
from harness import (
    ARGS,
    RANK,
    Failed,
    N,
    average,
    check,
    clone,
    digest,
    go_on,
    grads,
    model,
    same_everywhere,
    same_state,
    scenario,
)


def _bad_input(spoil: Callable[[dict, dict], None], expected: type, named: str) -> None:
    params = model()
    sharded, ref = Sharded(optim.Adam(lr=1e-2), bucket_bytes=1000), optim.Adam(lr=1e-2)
    mine, ref_params = clone(params), clone(params)
    sharded.update(mine, grads(params, 0, RANK))
    ref.update(ref_params, average(params, 0))
    before, state = clone(mine), sharded.state_dict()
    g = grads(params, 1, RANK)
    p = mine
    if RANK == N - 1:
        p = dict(mine)
        spoil(p, g)
    try:
        sharded.update(p, g)
    except expected as error:
        if RANK == N - 1:
            check(named in str(error), f"the error does not name {named!r}: {error}")
        else:
            check(f"process {N - 1}" in str(error), f"the error does not name the process: {error}")
    else:
        raise Failed(f"no {expected.__name__} on this process")
    check(digest(mine) == digest(before), "params changed by a failed update")
    check(same_state(sharded.state_dict(), state), "state changed by a failed update")
    go_on(sharded, ref, mine, ref_params, params, (1, 2))  # and it goes on as if nothing happened


def _readonly(p: dict, g: dict) -> None:
    p["b1"] = p["b1"].copy()
    p["b1"].flags.writeable = False


BAD = {
    "missing-grad": (lambda p, g: g.pop("W2"), KeyError, "W2"),
    "grad-shape": (lambda p, g: g.__setitem__("b1", np.zeros(31)), ValueError, "b1"),
    "grad-dtype": (lambda p, g: g.__setitem__("b1", np.zeros(30, complex)), TypeError, "b1"),
    "read-only-param": (_readonly, ValueError, "b1"),
    "param-dtype": (lambda p, g: p.__setitem__("b1", p["b1"].astype(np.int64)), TypeError, "b1"),
    "extra-key": (
        lambda p, g: (p.__setitem__("x", np.zeros(3)), g.__setitem__("x", np.ones(3))),
        ValueError,
        "differ",
    ),
}
if N == 1:  # one process may change its params' keys: the layout follows (relayout-new-key)
    del BAD["extra-key"]
for _name, (_spoil, _error, _named) in BAD.items():
    scenario(f"bad-{_name}")(lambda s=_spoil, e=_error, n=_named: _bad_input(s, e, n))


@scenario("bad-state-one-process")
def _bad_state() -> None:
    """A state that does not fit, on one process only: found by the check before any write."""
    params = model(big=True)
    sharded = Sharded(optim.Adam(lr=1e-2), bucket_bytes=1000)
    mine = clone(params)
    sharded.update(mine, grads(params, 0, RANK))
    inner = sharded.optimizer
    if RANK == N - 1:
        key = next(iter(inner.exp_avg))
        inner.exp_avg[key] = np.zeros(3)
    before, state = clone(mine), inner.state_dict()  # this process's shard
    try:
        sharded.update(mine, grads(params, 1, RANK))
    except ValueError as error:
        if RANK != N - 1:
            check(f"on process {N - 1}" in str(error), f"the error does not name it: {error}")
    else:
        raise Failed("no ValueError")
    check(digest(mine) == digest(before), "params changed")
    check(same_state(inner.state_dict(), state), "this process's state changed")
    check(sharded.steps == 1, f"steps {sharded.steps}")


# ---- the adversarial pass's findings (each failed before its fix) ----


@scenario("apply-fails-on-one-process")
def _apply_fails() -> None:
    """The update itself fails on one process after every check passed (no memory for new state,
    a signal): every process raises, none waits in the all-gather, and the Sharded refuses to go
    on with processes whose states now differ."""
    params = model()
    sharded, mine = Sharded(optim.Adam(lr=1e-2), bucket_bytes=1000), clone(params)
    sharded.update(mine, grads(params, 0, RANK))
    inner = sharded.optimizer
    real = inner._update
    if RANK == N - 1:

        def failing(*args: Any, **kwargs: Any) -> Any:
            if kwargs.get("check_only"):
                return real(*args, **kwargs)
            raise MemoryError("no memory for the new state")

        inner._update = failing
    try:
        sharded.update(mine, grads(params, 1, RANK))
    except (MemoryError, RuntimeError):
        pass
    else:
        raise Failed("no error on this process")
    inner._update = real
    try:
        sharded.update(mine, grads(params, 2, RANK))
    except RuntimeError as error:
        check("checkpoint" in str(error), f"the refusal does not say what to do: {error}")
    else:
        raise Failed("a Sharded whose processes differ went on updating")


class _Interrupting(dict):
    def __getitem__(self, key: Any) -> Any:
        raise KeyboardInterrupt


@scenario("keyboard-interrupt-on-one-process")
def _interrupt() -> None:
    params = model()
    sharded, mine = Sharded(optim.Adam(lr=1e-2), bucket_bytes=1000), clone(params)
    sharded.update(mine, grads(params, 0, RANK))
    before = clone(mine)
    g: dict = grads(params, 1, RANK)
    if RANK == N - 1:
        g = _Interrupting(g)
    try:
        sharded.update(mine, g)
    except KeyboardInterrupt:
        check(RANK == N - 1, "KeyboardInterrupt on a process that was not interrupted")
    except RuntimeError as error:
        check("KeyboardInterrupt" in str(error), f"does not say what happened: {error}")
    else:
        raise Failed("no error on this process")
    check(digest(mine) == digest(before), "params changed")
    sharded.update(mine, grads(params, 1, RANK))  # and it goes on


@scenario("per-key-differs")
def _per_key_differs() -> None:
    """per_key settings that select other keys on one process are refused everywhere."""
    prefix = "W" if RANK == N - 1 and N > 1 else "b"
    opt = optim.AdamW(per_key={fastopt.where(lambda k: k.startswith(prefix)): {"weight_decay": 0}})
    params = model()
    sharded, mine = Sharded(opt, bucket_bytes=1000), clone(params)
    try:
        sharded.update(mine, grads(params, 0, RANK))
    except ValueError as error:
        check(N > 1 and "settings" in str(error), f"{error}")
    else:
        check(N == 1, "per_key settings that differ were accepted")


@scenario("reshaped-param-refused")
def _reshaped() -> None:
    params = model()
    sharded, mine = Sharded(optim.Adam(lr=1e-2), bucket_bytes=1000), clone(params)
    sharded.update(mine, grads(params, 0, RANK))
    before, state = clone(mine), sharded.state_dict()
    bent = dict(mine, W1=mine["W1"].reshape(30, 70))
    try:
        sharded.update(bent, dict(grads(params, 1, RANK), W1=np.ones((30, 70))))
    except ValueError as error:
        check("W1" in str(error) and "(70, 30)" in str(error), f"{error}")
    else:
        raise Failed("a reshaped param took the state of another shape")
    check(digest(mine) == digest(before), "params changed")
    check(same_state(sharded.state_dict(), state), "state changed")


@scenario("removed-key-refused")
def _removed() -> None:
    params = model()
    sharded, mine = Sharded(optim.Adam(lr=1e-2), bucket_bytes=1000), clone(params)
    sharded.update(mine, grads(params, 0, RANK))
    state = sharded.state_dict()
    fewer = {k: v for k, v in mine.items() if k != "b1"}
    try:
        sharded.update(fewer, grads(fewer, 1, RANK))
    except ValueError as error:
        check("b1" in str(error) and "every key with state" in str(error), f"{error}")
    else:
        raise Failed("a key with state was dropped")
    check(same_state(sharded.state_dict(), state), "state changed")


@scenario("object-keys-named")
def _object_keys() -> None:
    """Keys whose repr differs between processes (an object's default repr holds its address)
    are refused, naming the key and why."""
    key = object() if N > 1 else "same"
    params = {key: np.ones(10)}
    try:
        Sharded(optim.Adam()).update(params, {key: np.ones(10)})
    except ValueError as error:
        check("repr" in str(error) and "object" in str(error), f"{error}")
    else:
        check(N == 1, "keys whose reprs differ were accepted")


@scenario("int8-order-change-refused")
def _int8_order() -> None:
    make = lambda: optim.Adam(lr=1e-2, state_format="int8", compact_min_size=256)  # noqa: E731
    params = {"a": np.random.default_rng(2).standard_normal((40, 30))}
    sharded, mine = Sharded(make(), bucket_bytes=1000), clone(params)
    sharded.update(mine, grads(params, 0, RANK))
    state = sharded.state_dict()
    turned = {"a": np.asfortranarray(mine["a"])}
    try:
        sharded.update(turned, grads(params, 1, RANK))
    except ValueError as error:
        check("order" in str(error) and "'a'" in str(error), f"{error}")
    else:
        raise Failed("int8 state followed a param into the other memory order")
    check(same_state(sharded.state_dict(), state), "state changed")


@scenario("broken-refuses-to-save")
def _broken_save() -> None:
    params = model()
    sharded, mine = Sharded(optim.Adam(lr=1e-2), bucket_bytes=1000), clone(params)
    sharded.update(mine, grads(params, 0, RANK))
    path = os.path.join(ARGS.dir, "before-broken.npz")
    sharded.save(path, mine)
    inner, real = sharded.optimizer, sharded.optimizer._update
    if RANK == N - 1:
        inner._update = lambda *a, **k: real(*a, **k) if k.get("check_only") else 1 / 0
    try:
        sharded.update(mine, grads(params, 1, RANK))
    except (ZeroDivisionError, RuntimeError):
        pass
    inner._update = real
    try:
        sharded.save(os.path.join(ARGS.dir, "broken.npz"), mine)
    except RuntimeError as error:
        check("differ" in str(error), f"{error}")
    else:
        raise Failed("a Sharded whose processes differ saved a checkpoint")
    sharded.load(path, mine)  # the way back: the file's params and state everywhere
    sharded.update(mine, grads(params, 1, RANK))
    same_everywhere(mine)


@scenario("settings-difference-named")
def _settings_named() -> None:
    lr = 0.2 if RANK == N - 1 and N > 1 else 0.1
    opt = optim.SGD(lr=0.1, per_key={"W2": {"lr": lr}})
    params = model()
    try:
        Sharded(opt).update(clone(params), grads(params, 0, RANK))
    except ValueError as error:
        check("per_key for 'W2'" in str(error), f"the key is not named: {error}")
    else:
        check(N == 1, "settings that differ were accepted")


@scenario("ctrl-c-waits-for-the-step")
def _ctrl_c() -> None:
    """SIGINT on one process during an update takes effect once the update is over everywhere:
    no process is left in a collective, and the params are the same on every process."""
    import signal

    class Signalling(dict):
        def __getitem__(self, key: Any) -> Any:
            if key == "W2":
                os.kill(os.getpid(), signal.SIGINT)
            return super().__getitem__(key)

    params = model()
    sharded, mine = Sharded(optim.Adam(lr=1e-2), bucket_bytes=1000), clone(params)
    g = grads(params, 0, RANK)
    interrupted = False
    try:
        sharded.update(mine, Signalling(g) if RANK == N - 1 else g)
    except KeyboardInterrupt:
        interrupted = True
    check(interrupted == (RANK == N - 1), f"interrupted here: {interrupted}")
    check(sharded.steps == 1, f"the step was not made everywhere: steps {sharded.steps}")
    same_everywhere(mine)
