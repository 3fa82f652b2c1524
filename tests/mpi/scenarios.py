"""Scenarios of fastopt.distributed, run under mpiexec by tests/test_distributed.py.

    mpiexec -n N python tests/mpi/scenarios.py [--dir DIR] [--only NAME ...]

Every process runs every scenario; each compares the sharded run with one process's optimizer
updated with the same average (summed in rank order, then divided by N), which every process
computes itself: the grads are drawn from (step, rank), so each process knows all of them.
Process 0 prints one JSON line {scenario: "ok" or what failed, on which process}.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import os
import sys
import threading
import traceback
from pathlib import Path
from typing import Any, Callable

import numpy as np
from mpi4py import MPI

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/: conftest's cases
import fastopt  # noqa: E402
from conftest import OPTIM_CASES  # noqa: E402
from fastopt import optim  # noqa: E402
from fastopt.distributed import Sharded  # noqa: E402

COMM = MPI.COMM_WORLD
RANK, N = COMM.Get_rank(), COMM.Get_size()
SCENARIOS: dict[str, Callable[[], None]] = {}


def scenario(name: str) -> Callable[[Callable[[], None]], Callable[[], None]]:
    def register(function: Callable[[], None]) -> Callable[[], None]:
        SCENARIOS[name] = function
        return function

    return register


# ---- the model, the grads, the reference ----


def model(dtype: Any = np.float64, big: bool = False) -> dict[str, Any]:
    """Params of several shapes, memory orders and sizes, a scalar among them; cut by N."""
    rng = np.random.default_rng(7)
    rows = 900 if big else 70
    params: dict[str, Any] = {
        "W1": rng.standard_normal((rows, 30)).astype(dtype),
        "b1": rng.standard_normal(30).astype(dtype),
        "W2": np.asfortranarray(rng.standard_normal((40, 50)).astype(dtype)),
        "s": float(rng.standard_normal()),
        "z": rng.standard_normal(()).astype(dtype)[()] * np.ones((), dtype),
    }
    return params


def clone(params: dict[str, Any]) -> dict[str, Any]:
    return {k: v.copy(order="K") if isinstance(v, np.ndarray) else v for k, v in params.items()}


def grads(params: dict[str, Any], step: int, rank: int, scale: float = 1.0) -> dict[str, Any]:
    rng = np.random.default_rng(10_000 * step + rank)
    out: dict[str, Any] = {}
    for key, value in params.items():
        if isinstance(value, np.ndarray):
            out[key] = (rng.standard_normal(value.shape) * scale).astype(value.dtype)
        else:
            out[key] = float(rng.standard_normal() * scale)
    return out


def average(params: dict[str, Any], step: int, ranks: int = N, scale: float = 1.0) -> dict:
    """What Sharded averages: summed in rank order in the grads' dtype (float32 for half ones),
    then divided by the number of processes."""
    every = [grads(params, step, q, scale) for q in range(ranks)]
    out: dict[str, Any] = {}
    for key, value in params.items():
        if isinstance(value, np.ndarray):
            wide = np.float32 if value.dtype.itemsize == 2 else value.dtype
            total = np.array(every[0][key], dtype=wide, order="K")
            for q in range(1, ranks):
                total = total + np.asarray(every[q][key], dtype=wide)
            out[key] = total / np.asarray(ranks, wide)
        else:
            total = every[0][key]
            for q in range(1, ranks):
                total = total + every[q][key]
            out[key] = total / ranks
    return out


# ---- checks ----


class Failed(AssertionError):
    pass


def check(condition: bool, message: str) -> None:
    if not condition:
        raise Failed(message)


def digest(params: dict[str, Any]) -> str:
    h = hashlib.blake2b()
    for key, value in params.items():
        h.update(repr(key).encode())
        h.update(np.ascontiguousarray(np.asarray(value)).view(np.uint8).tobytes())
    return h.hexdigest()


def same_everywhere(params: dict[str, Any]) -> None:
    """(Collective: every process calls it.)"""
    digests = COMM.allgather(digest(params))
    check(len(set(digests)) == 1, f"params differ between processes: {digests}")


def close(a: Any, b: Any, rtol: float, what: str) -> None:
    a, b = np.asarray(a), np.asarray(b)
    check(a.shape == b.shape, f"{what}: shape {a.shape} vs {b.shape}")
    if a.dtype.itemsize == 2:
        a, b = a.astype(np.float32), b.astype(np.float32)
    if rtol == 0:
        if not np.array_equal(a, b, equal_nan=True):
            gap = np.max(np.abs(a.astype(np.float64) - b.astype(np.float64)))
            raise Failed(f"{what}: not bit-identical, max diff {gap}")
    else:
        scale = max(1e-300, float(np.max(np.abs(b))) if b.size else 1.0)
        diff = float(np.max(np.abs(a - b))) / scale if a.size else 0.0
        check(diff <= rtol, f"{what}: relative difference {diff:.3g} > {rtol}")


def agree_with(sharded: Sharded, ref: Any, params: dict, ref_params: dict, rtol: float) -> None:
    # The collectives first, then the checks: a check failing on one process only must not leave
    # the others waiting in a collective.
    whole, expected = sharded.state_dict(), ref.state_dict()
    same_everywhere(params)
    for key in ref_params:
        close(params[key], ref_params[key], rtol, f"params[{key!r}]")
    check(
        whole["counters"] == expected["counters"],
        f"counters {whole['counters']} vs {expected['counters']}",
    )
    for name, arrays in expected["state"].items():
        check(
            list(whole["state"][name]) == list(arrays),
            f"state {name!r} keys {list(whole['state'][name])} vs {list(arrays)}",
        )
        for key, value in arrays.items():
            got = whole["state"][name][key]
            check(
                got.dtype == value.dtype,
                f"state {name}[{key!r}] dtype {got.dtype} vs {value.dtype}",
            )
            close(got, value, rtol, f"state {name}[{key!r}]")


def run(
    make: Callable[[], Any],
    params: dict,
    steps: int,
    rtol: float = 0.0,
    bucket_bytes: int = 1000,
    first: int = 0,
) -> tuple[Sharded, Any, dict, dict]:
    """`steps` updates sharded and on one process; they must agree to rtol (0: bit-identical)."""
    sharded, ref = Sharded(make(), bucket_bytes=bucket_bytes), make()
    mine, ref_params = clone(params), clone(params)
    go_on(sharded, ref, mine, ref_params, params, range(first, first + steps), rtol)
    return sharded, ref, mine, ref_params


def go_on(sharded: Sharded, ref: Any, mine: dict, ref_params: dict, params: dict, steps: Any,
          rtol: float = 0.0) -> None:  # fmt: skip
    """More steps of both, on every process's own grads and on their average; then they agree."""
    for step in steps:
        sharded.update(mine, grads(params, step, RANK))
        ref.update(ref_params, average(params, step))
    agree_with(sharded, ref, mine, ref_params, rtol)


# ---- scenarios ----

BOOK = [
    ("SGD", {}),
    ("Momentum", {}),
    ("Nesterov", {}),
    ("AdaGrad", {}),
    ("RMSprop", {}),
    ("Adam", {}),
]


def _register_optimizers() -> None:
    cases = [(f"book-{name}", fastopt, name, kwargs) for name, kwargs in BOOK]
    cases += [
        (f"optim-{i}-{name}", optim, name, {"lr": 1e-2, **kwargs})
        for i, (name, kwargs) in enumerate(OPTIM_CASES)
    ]
    for label, module, name, kwargs in cases:
        make = functools.partial(getattr(module, name), **kwargs)
        scenario(label)(functools.partial(run, make, model(), 3))


_register_optimizers()


@scenario("float32")
def _float32() -> None:
    run(lambda: optim.Adam(lr=1e-2), model(np.float32), 4)


@scenario("clip")
def _clip() -> None:
    sharded, ref, _, _ = run(lambda: optim.AdamW(lr=1e-2, max_grad_norm=0.5), model(), 4, 1e-12)
    norms = COMM.allgather(sharded.last_grad_norm)
    check(len(set(norms)) == 1, f"last_grad_norm differs between processes: {norms}")
    close(sharded.last_grad_norm, ref.last_grad_norm, 1e-12, "last_grad_norm")


@scenario("clip-float32")
def _clip32() -> None:
    run(lambda: optim.AdamW(lr=1e-2, max_grad_norm=0.5), model(np.float32), 3, 1e-6)


def _nonfinite(mode: str, clip: float | None) -> None:
    make = lambda: optim.Adam(lr=1e-2, nonfinite=mode, max_grad_norm=clip)  # noqa: E731
    params = model()
    sharded, ref = Sharded(make(), bucket_bytes=1000), make()
    mine, ref_params = clone(params), clone(params)
    for step in range(4):
        g = grads(params, step, RANK)
        if step == 2 and RANK == N - 1:
            g["W2"][3, 4] = np.nan
        before, state = clone(mine), sharded.state_dict()
        if step == 2 and mode == "raise":
            try:
                sharded.update(mine, g)
            except FloatingPointError as error:
                named = "W2" in str(error) and "average" in str(error)
                check(named, f"the error does not say it is the average's, of which key: {error}")
            else:
                raise Failed("no FloatingPointError on this process")
            check(digest(mine) == digest(before), "params changed by a raising update")
            check(_same_state(sharded.state_dict(), state), "state changed by a raising update")
            continue
        sharded.update(mine, g)
        if step == 2:
            check(sharded.skipped_updates == 1, f"skipped_updates {sharded.skipped_updates}")
            check(sharded.steps == 2, f"steps {sharded.steps} after a skip")
            check(digest(mine) == digest(before), "params changed by a skipped update")
            continue
        ref.update(ref_params, average(params, step))
    agree_with(sharded, ref, mine, ref_params, 0.0 if clip is None else 1e-12)


for _mode in ("skip", "raise"):
    for _clip_value in (None, 1.0):
        scenario(f"nonfinite-{_mode}-clip{_clip_value}")(
            lambda m=_mode, c=_clip_value: _nonfinite(m, c)
        )


def _same_state(a: dict, b: dict) -> bool:
    if a["counters"] != b["counters"]:
        return False
    for name in b["state"]:
        for key in b["state"][name]:
            if not np.array_equal(a["state"][name][key], b["state"][name][key]):
                return False
    return set(a["state"]) == set(b["state"])


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
    check(_same_state(sharded.state_dict(), state), "state changed by a failed update")
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
    check(_same_state(inner.state_dict(), state), "this process's state changed")
    check(sharded.steps == 1, f"steps {sharded.steps}")


@scenario("per-key-and-schedule")
def _per_key() -> None:
    make = lambda: optim.AdamW(  # noqa: E731
        lr=fastopt.schedules.cosine(1e-2, 6),
        per_key={
            fastopt.where(lambda k: k.startswith("b")): {"weight_decay": 0.0},
            "W2": {"lr": 3e-3, "betas": (0.5, 0.8)},
        },
    )
    run(make, model(), 5)


def _formatted(fmt: str) -> None:
    make = lambda: optim.Adam(lr=1e-2, state_format=fmt, compact_min_size=512)  # noqa: E731
    run(make, model(np.float32, big=True), 4)


scenario("state-bfloat16")(lambda: _formatted("bfloat16"))
scenario("state-int8")(lambda: _formatted("int8"))


def _half(dtype: Any) -> None:
    params = model(np.float32, big=True)
    params = {k: np.asarray(v).astype(dtype) if k != "s" else v for k, v in params.items()}
    params["W2"] = np.asfortranarray(params["W2"])
    run(lambda: optim.AdamW(lr=1e-2), params, 3)


@scenario("half-float16")
def _float16() -> None:
    _half(np.float16)


@scenario("half-bfloat16")
def _bfloat16() -> None:
    import ml_dtypes

    _half(ml_dtypes.bfloat16)


@scenario("state-bytes")
def _state_bytes() -> None:
    """Each process keeps 1/N of the state: the shards add up to one process's, none doubled."""
    sharded, ref, _, _ = run(lambda: optim.Adam(lr=1e-2), model(np.float32, big=True), 1)
    mine = sharded.state_bytes()
    total = COMM.allreduce(mine)
    whole = fastopt._compact.state_bytes(ref)
    check(total == whole, f"the shards keep {total} bytes; one process keeps {whole}")
    check(abs(mine - whole / N) <= 2 * 256 * 8 + 1, f"{mine} bytes here; 1/N is {whole / N}")


@scenario("deterministic-threads-buckets")
def _deterministic() -> None:
    results = []
    for threads, bucket in ((1, 1000), (2, 1000), (2, 64), (1, 2**24)):
        with fastopt.num_threads(threads):
            _, _, mine, _ = run(
                lambda: optim.AdamW(lr=1e-2, max_grad_norm=0.3), model(big=True), 3, 1e-12, bucket
            )
        results.append(digest(mine))
    check(len(set(results)) == 1, f"results differ by thread count or bucket size: {results}")


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
    check(_same_state(plain.state_dict(), sharded.state_dict()), "file differs from state_dict")
    for step in range(3, 5):
        sharded.update(mine, grads(params, step, RANK))
        resumed.update(again, grads(params, step, RANK))
    check(digest(again) == digest(mine), "resume is not bit-exact")
    check(_same_state(resumed.state_dict(), sharded.state_dict()), "resumed state differs")


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


@scenario("tensors")
def _tensors() -> None:
    try:
        import torch
    except ImportError:
        return
    params = model(np.float32)
    del params["s"], params["z"]
    sharded, ref = Sharded(optim.Adam(lr=1e-2), bucket_bytes=1000), optim.Adam(lr=1e-2)
    mine = {k: torch.from_numpy(v.copy(order="K")) for k, v in params.items()}
    ref_params = clone(params)
    for step in range(2):
        sharded.update(mine, {k: torch.from_numpy(v) for k, v in grads(params, step, RANK).items()})
        ref.update(ref_params, average(params, step))
    agree_with(sharded, ref, {k: v.numpy() for k, v in mine.items()}, ref_params, 0.0)


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


def _wide_grads(param_dtype: Any, grad_dtype: Any) -> None:
    """Grads wider than their params (float32 for bfloat16, float64 for float32) are averaged in
    their own dtype, as one process given the average reads them: not rounded to the params'."""
    rng = np.random.default_rng(5)
    params = {"a": rng.standard_normal(3000).astype(param_dtype),
              "b": rng.standard_normal((30, 20)).astype(param_dtype)}  # fmt: skip
    sharded, ref = Sharded(optim.Adam(lr=1e-2), bucket_bytes=1000), optim.Adam(lr=1e-2)
    mine, ref_params = clone(params), clone(params)
    for step in range(3):
        every = [grads(params, step, q) for q in range(N)]
        # Values of the grads' dtype that the params' dtype cannot hold.
        every = [{k: (v.astype(np.float64) * (1e4 / 3)).astype(grad_dtype) for k, v in g.items()}
                 for g in every]  # fmt: skip
        sharded.update(mine, every[RANK])
        average = {}
        for k in params:
            total = every[0][k].copy()
            for g in every[1:]:
                total = total + g[k]
            average[k] = total / np.asarray(N, grad_dtype)
        ref.update(ref_params, average)
    agree_with(sharded, ref, mine, ref_params, 0.0)


scenario("wide-grads-bfloat16-float32")(
    lambda: _wide_grads(__import__("ml_dtypes").bfloat16, np.float32)
)
scenario("wide-grads-float16-float32")(lambda: _wide_grads(np.float16, np.float32))
scenario("wide-grads-float32-float64")(lambda: _wide_grads(np.float32, np.float64))


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
    check(_same_state(sharded.state_dict(), state), "state changed")


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
    check(_same_state(sharded.state_dict(), state), "state changed")


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
    check(_same_state(sharded.state_dict(), state), "state changed")


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
    same, same_state = (
        digest(theirs) == digest(mine),
        _same_state(other.state_dict(), written.state_dict()),
    )
    check(same and same_state, "the loaded Sharded does not go on as the one that wrote the file")


@scenario("empty-arrays")
def _empty_arrays() -> None:
    """An empty array's (empty) state is kept, as one process keeps it: the files are alike."""
    params = dict(model(), e=np.zeros((0, 5)), f=np.zeros(0))
    run(lambda: optim.Adam(lr=1e-2), params, 2)


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


# ---- the second adversarial pass's findings ----


def _odd_grads(param_dtype: Any, make_grad: Any, wire: Any) -> None:
    """Grads that are neither floats of the params' dtype nor wider halves: averaged in what one
    process reads them as (longdouble as float64; ints as float32 for half params)."""
    rng = np.random.default_rng(9)
    params = {"a": rng.standard_normal(700).astype(param_dtype)}
    sharded, ref = Sharded(optim.SGD(lr=1e-3), bucket_bytes=1000), optim.SGD(lr=1e-3)
    mine, ref_params = clone(params), clone(params)
    every = [{"a": make_grad(q)} for q in range(N)]
    sharded.update(mine, every[RANK])
    total = every[0]["a"].astype(wire)
    for g in every[1:]:
        total = total + g["a"].astype(wire)
    ref.update(ref_params, {"a": total / np.asarray(N, wire)})
    agree_with(sharded, ref, mine, ref_params, 0.0)


scenario("longdouble-grads")(
    lambda: _odd_grads(
        np.float64, lambda q: (np.arange(700, dtype=np.longdouble) + q) / 3, np.float64
    )
)
scenario("int-grads-of-bfloat16-params")(
    lambda: _odd_grads(
        __import__("ml_dtypes").bfloat16, lambda q: np.full(700, 257 + q, np.int32), np.float32
    )
)
scenario("int-grads-of-float16-params")(
    lambda: _odd_grads(np.float16, lambda q: np.full(700, 70000 + q, np.int32), np.float32)
)


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
    check(_same_state(sharded.state_dict(), state), "state changed")


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


def main() -> None:
    if ARGS.list:  # the names, for pytest (one process, no mpiexec needed)
        print("\n".join(SCENARIOS))
        return
    names = ARGS.only or [n for n in SCENARIOS if n not in ("checkpoint-write", "checkpoint-read")]
    for name in names:
        # A scenario that fails on one process only can leave the others in a collective: after
        # WATCHDOG seconds, report it and abort the job (the results so far are printed).
        watchdog = threading.Timer(WATCHDOG, _hung, (name,))
        watchdog.start()
        try:
            SCENARIOS[name]()
            outcome = "ok"
        except Exception:
            outcome = traceback.format_exc(limit=4)
        outcomes = COMM.allgather(outcome)
        watchdog.cancel()
        failed = [f"process {r}: {o}" for r, o in enumerate(outcomes) if o != "ok"]
        if RANK == 0:
            print(json.dumps({name: "ok" if not failed else "\n".join(failed)}), flush=True)


WATCHDOG = 60.0


def _hung(name: str) -> None:
    print(json.dumps({name: f"hung on process {RANK} (over {WATCHDOG} s)"}), flush=True)
    COMM.Abort(3)


parser = argparse.ArgumentParser()
parser.add_argument("--dir", default=".")
parser.add_argument("--only", nargs="*")
parser.add_argument("--written", type=int, default=0)
parser.add_argument("--list", action="store_true")
ARGS = parser.parse_args()

if __name__ == "__main__":
    main()
