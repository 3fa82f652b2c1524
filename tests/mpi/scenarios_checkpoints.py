"""Scenarios of checkpoints and layouts: resume at the same and another N, loads without params,
new keys, empty arrays and empty shards."""

from __future__ import annotations

import os

import fastopt
import numpy as np
from fastopt import optim
from fastopt.distributed import Sharded
from harness import (
    ARGS,
    COMM,
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
    run,
    same_state,
    scenario,
)


@scenario("relayout-new-key")
def _relayout() -> None:
    params = model()
    sharded, ref = Sharded(optim.Adam(lr=1e-2), bucket_bytes=1000), optim.Adam(lr=1e-2)
    mine, ref_params = clone(params), clone(params)
    for step in range(2):
        small = {k: mine[k] for k in ("W1", "b1")}
        small_ref = {k: ref_params[k] for k in ("W1", "b1")}
        sharded.update(small, grads(small, step, RANK))
        ref.update(small_ref, average(small, step))
    go_on(sharded, ref, mine, ref_params, params, range(2, 4))


@scenario("checkpoint-same-n")
def _checkpoint() -> None:
    path = os.path.join(ARGS.dir, "same.npz")
    make = lambda: optim.NAdam(lr=1e-2)  # noqa: E731
    params = model()
    sharded, _, mine, _ = run(make, params, 3)
    sharded.save(path, mine)
    resumed = Sharded(make(), bucket_bytes=1000)
    again = {k: (np.zeros_like(v) if isinstance(v, np.ndarray) else 0.0) for k, v in mine.items()}
    resumed.load(path, again)
    check(digest(again) == digest(mine), "params not restored")
    plain = make()
    fastopt.load(path, plain)  # the consolidated file is a one-process checkpoint
    check(same_state(plain.state_dict(), sharded.state_dict()), "file differs from state_dict")
    for step in range(3, 5):
        sharded.update(mine, grads(params, step, RANK))
        resumed.update(again, grads(params, step, RANK))
    check(digest(again) == digest(mine), "resume is not bit-exact")
    check(same_state(resumed.state_dict(), sharded.state_dict()), "resumed state differs")


@scenario("checkpoint-write")
def _write() -> None:
    """Written here at N processes, for checkpoint-read at another N."""
    sharded, _, mine, _ = run(
        lambda: optim.Adam(lr=1e-2, state_format="int8", compact_min_size=512), model(big=True), 3
    )
    sharded.save(os.path.join(ARGS.dir, f"written-{N}.npz"), mine)


@scenario("checkpoint-read")
def _read() -> None:
    """Read what checkpoint-write wrote at ARGS.written processes; go on here at N, as one
    process would."""
    make = lambda: optim.Adam(lr=1e-2, state_format="int8", compact_min_size=512)  # noqa: E731
    params = model(big=True)
    ref_params, ref = clone(params), make()
    for step in range(3):
        ref.update(ref_params, average(params, step, ARGS.written))
    sharded, mine = Sharded(make(), bucket_bytes=1000), clone(params)
    sharded.load(os.path.join(ARGS.dir, f"written-{ARGS.written}.npz"), mine)
    go_on(sharded, ref, mine, ref_params, params, range(3, 5))


@scenario("empty-shards")
def _empty() -> None:
    params = {"only": np.random.default_rng(3).standard_normal(100)}  # too small to cut
    sharded, _, _, _ = run(lambda: optim.Adam(lr=1e-2), params, 3)
    owners = COMM.allgather(bool(sharded.shard()))
    check(sum(owners) == 1, f"the one array is held by {owners}")


@scenario("load-transposed-state-refused")
def _load_transposed() -> None:
    params = model()
    sharded, _, mine, _ = run(lambda: optim.Adam(lr=1e-2), params, 1)
    whole = sharded.state_dict()
    whole["state"]["exp_avg"]["W1"] = whole["state"]["exp_avg"]["W1"].T.copy()
    state = sharded.state_dict()
    try:
        sharded.load_state_dict(whole)
    except ValueError as error:
        check("W1" in str(error), f"{error}")
    else:
        raise Failed("a state of another shape was loaded")
    check(same_state(sharded.state_dict(), state), "state changed")


@scenario("load-int8-without-params")
def _load_int8() -> None:
    """A file whose int8 state keeps a 1024-element array whole loads without params into a
    Sharded whose last layout cut that array (made under another state_format)."""
    path = os.path.join(ARGS.dir, "int8.npz")
    params = {"a": np.random.default_rng(1).standard_normal(1024).astype(np.float32)}
    make = lambda: optim.Adam(lr=1e-2, state_format="int8", compact_min_size=1024)  # noqa: E731
    written, _, mine, _ = run(make, params, 2)
    written.save(path, mine)
    other, theirs = Sharded(optim.Adam(lr=1e-2), bucket_bytes=1000), clone(params)
    other.update(theirs, grads(params, 0, RANK))
    theirs = clone(mine)
    other.load(path)  # no params: the layout is the last update's, cut anew for the file's
    for step in (2, 3):
        written.update(mine, grads(params, step, RANK))
        other.update(theirs, grads(params, step, RANK))
    states_alike = same_state(other.state_dict(), written.state_dict())
    check(
        digest(theirs) == digest(mine) and states_alike,
        "the loaded Sharded does not go on as the one that wrote the file",
    )


@scenario("empty-arrays")
def _empty_arrays() -> None:
    """An empty array's (empty) state is kept, as one process keeps it: the files are alike."""
    params = dict(model(), e=np.zeros((0, 5)), f=np.zeros(0))
    run(lambda: optim.Adam(lr=1e-2), params, 2)
