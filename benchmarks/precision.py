"""Why master weights, stochastic rounding and Kahan compensation exist: final losses of the same
training in float32 and in bfloat16 updated four ways (python benchmarks/run.py --only precision).

Params and grads are stored in bfloat16 (the forward and backward compute in float32 from the
widened params, and the grads are rounded to bfloat16), the way mixed-precision training stores
them. Two tasks:
  digits       the demo's network (64-100-100-10) on a fixed random teacher, Adam, lr 1e-3;
  small steps  least squares with SGD at lr 1e-3 from weights of size ~1: each step changes a
               weight by ~1e-4, under half a bfloat16 ulp at 1.0 (2**-9), so rounding to nearest
               throws every step away and training stalls.
"""

from __future__ import annotations

import fastopt
import numpy as np
from networks import DIGITS, loss_and_grads
from report import Table, save_figure

try:
    import ml_dtypes
except ImportError:
    ml_dtypes = None

VARIANTS = {
    "float32": (np.float32, {}),
    "bf16 master weights": ("bf16", {}),
    "bf16 nearest": ("bf16", {"master_weights": False}),
    "bf16 stochastic": ("bf16", {"rounding": "stochastic"}),
    "bf16 Kahan": ("bf16", {"compensation": True}),
}


def _dtype(name):
    return ml_dtypes.bfloat16 if name == "bf16" else name


def train_digits(variant: str, epochs: int) -> list[float]:
    dtype, options = VARIANTS[variant]
    params = {k: v.astype(np.float32).astype(_dtype(dtype)) for k, v in DIGITS.params(0).items()}
    data = DIGITS.data(1, DIGITS.batches_per_epoch)
    data = [(x.astype(np.float32), y) for x, y in data]
    opt = fastopt.optim.Adam(lr=1e-3, **options)
    losses = []
    for _ in range(epochs):
        total = 0.0
        for x, y in data:
            wide = {k: v.astype(np.float32) for k, v in params.items()}
            loss, grads = loss_and_grads(DIGITS, wide, x, y)
            opt.update(params, {k: g.astype(params[k].dtype) for k, g in grads.items()})
            total += loss
        losses.append(total / len(data))
    return losses


def train_small_steps(variant: str, steps: int) -> list[float]:
    dtype, options = VARIANTS[variant]
    rng = np.random.default_rng(2)
    x = rng.standard_normal((256, 64)).astype(np.float32)
    target = rng.standard_normal(64).astype(np.float32) * 0.5 + 1.0
    y = x @ target
    params = {
        "w": (target + rng.standard_normal(64).astype(np.float32) * 0.3).astype(_dtype(dtype))
    }
    opt = fastopt.SGD(lr=1e-3, **options)
    losses = []
    for _ in range(steps):
        w = params["w"].astype(np.float32)
        residual = x @ w - y
        losses.append(float(np.mean(residual**2)))
        grad = (x.T @ residual / len(y)).astype(params["w"].dtype)
        opt.update(params, {"w": grad})
    return losses


def precision(quick: bool, out_dir) -> Table:
    table = Table(
        "Mixed precision: final loss, float32 and bfloat16 four ways",
        "Training, not timing (benchmarks/precision.py). Mean loss of the last epoch (digits) "
        "and final loss (small steps); the same data, initial values and hyperparameters.",
    )
    if ml_dtypes is None:
        table.note += " Skipped: needs ml_dtypes (pip install '.[bf16]')."
        return table
    epochs, steps = (4, 300) if quick else (30, 3000)
    curves = {}
    for variant in VARIANTS:
        digits, small = train_digits(variant, epochs), train_small_steps(variant, steps)
        curves[variant] = (digits, small)
        table.add(variant=variant, digits_loss=digits[-1], small_steps_loss=small[-1],
                  small_steps_start=small[0])  # fmt: skip
    save_figure(out_dir / "mixed_precision.png", lambda axes: _draw(axes, curves))
    return table


def _draw(axes, curves) -> None:
    for variant, (digits, small) in curves.items():
        style = "--" if variant == "float32" else "-"
        axes[0].plot(range(1, len(digits) + 1), digits, style, label=variant)
        axes[1].plot(small, style, label=variant)
    axes[0].set(title="digits network, Adam", xlabel="epoch", ylabel="training loss")
    axes[1].set(title="small steps: least squares, SGD lr 1e-3", xlabel="step", yscale="log")
    axes[1].legend()
