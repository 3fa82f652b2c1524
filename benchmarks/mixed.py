"""Mixed precision: Adam over half params and grads, against float32 Adam, the traffic ceilings and
torch's ways of doing it, side by side in one process (back-to-back calls, 1 thread).

Bytes per element each way moves (read + write):
  float32 Adam                 p 4+4, g 4, m 4+4, v 4+4                           = 28
  half params, master weights  g 2, master 4+4, m 4+4, v 4+4, p written 2         = 28
  half params, no master       p 2+2, g 2, m 4+4, v 4+4 (float32 state)           = 22
  ... with Kahan compensation  + c 2+2                                            = 26
The "ceiling" rows are the memory-traffic probe making the same loads and stores with trivial
arithmetic: through the same blocked sweep and conversions ("probe, same streams"), and as plain
float32 arrays of 28 bytes an element ("probe float32").
"""

from __future__ import annotations

import contenders as cs
import fastopt
import numpy as np
from fastopt._probe import MemoryTrafficProbe
from harness import interleaved
from report import Table

try:
    import ml_dtypes
except ImportError:  # the bf16 extra; the float16 rows run without it
    ml_dtypes = None

torch = cs.torch


def _step(make, size: int, dtype) -> cs.Step:
    return cs._numpy_step(make, [(size,)], dtype)


def _torch_steps(size: int) -> dict[str, cs.Step]:
    """torch fused Adam on float32 and on pure bfloat16 (bf16 state, no master), and the recipe
    users write for bf16 with float32 master weights: upcast the grads, step the master, copy
    back."""
    if torch is None:
        return {}
    found = {}
    kinds = (("torch fused float32", torch.float32), ("torch fused pure bf16", torch.bfloat16))
    for name, dtype in kinds:
        p = torch.randn(size).to(dtype).requires_grad_()
        grads = [torch.randn(size).to(dtype) for _ in cs.GRAD_SEEDS]
        opt = torch.optim.Adam([p], fused=True)
        found[name] = _torch_loop(opt, [p], grads)
    half = torch.randn(size).to(torch.bfloat16)
    master = half.float().requires_grad_()
    half_grads = [torch.randn(size).to(torch.bfloat16) for _ in cs.GRAD_SEEDS]
    opt = torch.optim.Adam([master], fused=True)
    calls = [0]

    def recipe() -> None:
        calls[0] += 1
        master.grad = half_grads[calls[0] & 1].float()
        opt.step()
        with torch.no_grad():
            half.copy_(master)

    found["torch recipe bf16 + fp32 master"] = recipe
    return found


def _torch_loop(opt, params, grads) -> cs.Step:
    calls = [0]

    def step() -> None:
        calls[0] += 1
        params[0].grad = grads[calls[0] & 1]
        opt.step()

    return step


def mixed_precision(repeats: int, size: int) -> Table:
    table = Table(
        f"Mixed precision: Adam, {size:,} elements, 1 thread",
        "Back-to-back calls, interleaved. Targets (bf16 with master weights): >= 95% of its "
        "traffic ceiling, >= 0.95x fastopt float32, >= 4x torch's recipe, >= 1.3x torch fused "
        "pure bf16. bytes = bytes moved per element (module docstring).",
    )
    adam = fastopt.optim.Adam
    runs: dict[str, tuple[cs.Step, int]] = {
        "fastopt float32": (_step(adam, size, np.float32), 28),
        "probe float32": (_step(lambda: MemoryTrafficProbe(2), size, np.float32), 28),
    }
    formats = [("f16", np.float16)] + ([("bf16", ml_dtypes.bfloat16)] if ml_dtypes else [])
    modes = {
        "master": ({}, 28),
        "nearest": ({"master_weights": False}, 22),
        "stochastic": ({"rounding": "stochastic"}, 22),
        "kahan": ({"compensation": True}, 26),
    }
    for tag, dtype in formats:
        for mode, (options, moved) in modes.items():
            runs[f"fastopt {tag} {mode}"] = (_step(lambda o=options: adam(**o), size, dtype), moved)
            probe = {"master_weights": not options} | options
            runs[f"probe {tag} {mode}"] = (
                _step(lambda p=probe: MemoryTrafficProbe(2, **p), size, dtype),
                moved,
            )
    for name, step in _torch_steps(size).items():
        # The recipe: upcast (read 2, write 4), float32 Adam (28), copy back (read 4, write 2).
        runs[name] = (step, 40 if "recipe" in name else 28 if "float32" in name else 14)
    t = interleaved({n: cs.with_threads(s, 1) for n, (s, _) in runs.items()}, repeats)
    for name, (_, moved) in runs.items():
        if name.startswith("probe"):
            continue
        row = {"contender": name, "bytes": moved, "ms": t[name] * 1e3,
               "GBps": moved * size / t[name] / 1e9}  # fmt: skip
        probe = "probe float32" if name.startswith("torch") else name.replace("fastopt", "probe")
        row["pct_of_ceiling"] = 100 / t.ratio(name, probe) if name.startswith("fastopt") else None
        row["pct_of_f32_probe"] = 100 / t.ratio(name, "probe float32")
        row["x_fastopt_f32"] = t.ratio("fastopt float32", name)
        for peer in [k for k in runs if k.startswith("torch")]:
            row["x_" + peer.replace("torch ", "").replace(" ", "_")] = t.ratio(peer, name)
        table.add(**row)
    return table
