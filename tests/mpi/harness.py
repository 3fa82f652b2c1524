"""What the scenarios share: the registry, the model, every process's grads and their average
(summed in rank order, then divided by N: what one process is given to compare with), the checks
(collectives first, so that a check failing on one process leaves none waiting), and the options.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path
from typing import Any, Callable

import numpy as np
from mpi4py import MPI

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/: conftest's cases
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


def same_state(a: dict, b: dict) -> bool:
    if a["counters"] != b["counters"]:
        return False
    for name in b["state"]:
        for key in b["state"][name]:
            if not np.array_equal(a["state"][name][key], b["state"][name][key]):
                return False
    return set(a["state"]) == set(b["state"])


parser = argparse.ArgumentParser()
parser.add_argument("--dir", default=".")
parser.add_argument("--only", nargs="*")
parser.add_argument("--written", type=int, default=0)
parser.add_argument("--list", action="store_true")
ARGS = parser.parse_args()
