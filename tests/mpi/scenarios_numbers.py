"""Scenarios of numbers: every optimizer and option, dtypes, clipping, non-finite grads, state
formats, half params, wide and odd grads, threads and buckets: each against one process."""

from __future__ import annotations

import functools
from typing import Any

import fastopt
import numpy as np
from conftest import OPTIM_CASES
from fastopt import optim
from fastopt.distributed import Sharded
from harness import (
    COMM,
    RANK,
    Failed,
    N,
    agree_with,
    average,
    check,
    clone,
    close,
    digest,
    grads,
    model,
    run,
    same_state,
    scenario,
)

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
            check(same_state(sharded.state_dict(), state), "state changed by a raising update")
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
    for threads, bucket in ((1, 1000), (2, 1000), (2, 2048), (1, 2**24)):
        with fastopt.num_threads(threads):
            _, _, mine, _ = run(
                lambda: optim.AdamW(lr=1e-2, max_grad_norm=0.3), model(big=True), 3, 1e-12, bucket
            )
        results.append(digest(mine))
    check(len(set(results)) == 1, f"results differ by thread count or bucket size: {results}")


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
