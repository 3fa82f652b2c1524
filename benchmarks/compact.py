"""Compact optimizer state (state_format): speed against float32 state, the traffic ceilings and
bitsandbytes' CPU 8-bit Adam, side by side in one process (back-to-back calls); and training with
each format (python benchmarks/run.py --only compact).

Bytes per element each way moves (read + write; absmaxes are 4 bytes per 256 elements a state):
  Adam, float32 state          p 4+4, g 4, m 4+4, v 4+4                     = 28
  Adam, bfloat16 state         p 4+4, g 4, m 2+2, v 2+2                     = 20
  Adam, int8 state             p 4+4, g 4, m 1+1, v 1+1 (+0.06)             = 16
  bf16 params, master, int8    g 2, master 4+4, m 1+1, v 1+1, p written 2   = 16
"probe" rows make the same loads, stores and conversions with trivial arithmetic (the memory
traffic probe with the same state_format); "bytes ceiling" is the float32 probe of the same round
scaled to the format's bytes: what moving those bytes at the float32 probe's bandwidth would cost.
"""

from __future__ import annotations

import contenders as cs
import fastopt
import numpy as np
from fastopt._compact import state_bytes
from fastopt._probe import MemoryTrafficProbe
from harness import interleaved
from report import Table

try:
    import ml_dtypes
except ImportError:
    ml_dtypes = None

try:
    import bitsandbytes
except Exception:  # not installed, or no usable backend here: its rows are left out
    bitsandbytes = None

torch = cs.torch
FORMATS = {"float32": None, "bfloat16": "bfloat16", "int8": "int8"}
MOVED = {"Adam": {None: 28, "bfloat16": 20, "int8": 16}, "Lion": {None: 20, "bfloat16": 16,
         "int8": 14}, "SGD": {None: 20, "bfloat16": 16, "int8": 14}}  # fmt: skip
RULES = {"Adam": {}, "Lion": {"lr": 1e-4}, "SGD": {"lr": 0.01, "momentum": 0.9}}


def _step(make, size: int, dtype) -> cs.Step:
    return cs._numpy_step(make, [(size,)], dtype)


def _bnb_step(size: int) -> cs.Step | None:
    """bitsandbytes' Adam8bit on a CPU tensor (blocks of 256, its dynamic map)."""
    if bitsandbytes is None or torch is None:
        return None
    p = torch.nn.Parameter(torch.randn(size))
    grads = [torch.randn(size) for _ in cs.GRAD_SEEDS]
    opt = bitsandbytes.optim.Adam8bit([p], lr=1e-3)
    calls = [0]

    def step() -> None:
        calls[0] += 1
        p.grad = grads[calls[0] & 1]
        opt.step()

    return step


def _runs(size: int) -> dict[str, tuple[cs.Step, float]]:
    runs: dict[str, tuple[cs.Step, float]] = {}
    for rule, options in RULES.items():
        cls = getattr(fastopt.optim, rule)
        for tag, fmt in FORMATS.items():
            make = lambda c=cls, o=options, f=fmt: c(**o, state_format=f)  # noqa: E731
            runs[f"{rule} {tag}"] = (_step(make, size, np.float32), MOVED[rule][fmt])
        states = 2 if rule == "Adam" else 1
        for tag, fmt in FORMATS.items():
            probe = lambda s=states, f=fmt: MemoryTrafficProbe(s, state_format=f)  # noqa: E731
            runs[f"{rule} probe {tag}"] = (_step(probe, size, np.float32), MOVED[rule][fmt])
    if ml_dtypes is not None:
        make = lambda: fastopt.optim.Adam(state_format="int8")  # noqa: E731
        runs["Adam bf16 params, master, int8"] = (_step(make, size, ml_dtypes.bfloat16), 16)
        probe = lambda: MemoryTrafficProbe(2, state_format="int8")  # noqa: E731
        runs["Adam probe bf16 params, master, int8"] = (_step(probe, size, ml_dtypes.bfloat16), 16)
    bnb = _bnb_step(size)
    if bnb is not None:
        runs["Adam bitsandbytes Adam8bit"] = (bnb, 16)
    if torch is not None:
        p = torch.randn(size).requires_grad_()
        grads = [torch.randn(size) for _ in cs.GRAD_SEEDS]
        opt = torch.optim.Adam([p], fused=True)
        calls = [0]

        def fused() -> None:
            calls[0] += 1
            p.grad = grads[calls[0] & 1]
            opt.step()

        runs["Adam torch fused float32"] = (fused, 28)
    return runs


def state_bytes_per_param(fmt, dtype=np.float32, size: int = 1 << 16) -> float:
    """Bytes of optimizer state (and master weights) per param, Adam, one array of `size`."""
    opt = fastopt.optim.Adam(state_format=fmt)
    params = {"w": np.zeros(size, dtype)}
    opt.update(params, {"w": np.zeros(size, dtype)})
    return state_bytes(opt) / size


def compact_speed(repeats: int, size: int, threads: int = 1) -> Table:
    table = Table(
        f"Compact state: {size:,} float32 elements, {threads} thread(s)",
        "Back-to-back calls, interleaved. Targets (Adam): bf16 state >= 1.3x and int8 >= 1.5x "
        "fastopt's float32-state Adam, each >= 90% of its ceiling. bytes = bytes moved per "
        "element (module docstring); pct_of_probe against the same-streams probe, "
        "pct_of_bytes_ceiling against the float32 probe scaled to the bytes.",
    )
    runs = _runs(size)
    t = interleaved({n: cs.with_threads(s, threads) for n, (s, _) in runs.items()}, repeats)
    for name, (_, moved) in runs.items():
        if " probe " in name:
            continue
        rule = name.split()[0]
        f32_probe = f"{rule} probe float32"
        row = {"contender": name, "bytes": moved, "ms": t[name] * 1e3,
               "GBps": moved * size / t[name] / 1e9}  # fmt: skip
        probe = name.replace(f"{rule} ", f"{rule} probe ", 1)
        row["pct_of_probe"] = 100 / t.ratio(name, probe) if probe in runs else None
        bytes_ceiling = t[f32_probe] * moved / MOVED[rule][None]
        row["pct_of_bytes_ceiling"] = 100 * bytes_ceiling / t[name]
        row["x_float32_state"] = t.ratio(f"{rule} float32", name)
        for peer in ("Adam bitsandbytes Adam8bit", "Adam torch fused float32"):
            if rule == "Adam" and peer in runs and peer != name:
                row["x_" + peer.split(" ", 1)[1].replace(" ", "_")] = t.ratio(peer, name)
        table.add(**row)
    return table


def state_memory() -> Table:
    table = Table(
        "Compact state: bytes per param (Adam, one array of 65,536)",
        "Optimizer state, absmaxes and master weights included; the param itself not.",
    )
    for tag, fmt in FORMATS.items():
        table.add(params="float32", state_format=tag, state_bytes=state_bytes_per_param(fmt))
    if ml_dtypes is not None:
        for tag, fmt in FORMATS.items():
            master = state_bytes_per_param(fmt, ml_dtypes.bfloat16)
            table.add(params="bfloat16 + master", state_format=tag, state_bytes=master,
                      with_param=master + 2)  # fmt: skip
    return table
