"""Does compact state train? The same training with float32, bfloat16 and int8 optimizer state
(python benchmarks/run.py --only compact): final training loss, test accuracy and state memory,
and the loss curves (compact_state.png).

Two tasks, float32 params, Adam (lr 1e-3), the same data order and initial weights per format,
trained until the loss flattens but not to zero (a loss near zero makes any ratio noise);
bfloat16 state is rounded to nearest, and stochastically (rounding="stochastic"):
  digits      the demo's network (64-100-100-10) on scikit-learn's digits, batch 32;
  synthetic   a wider MLP (256-512-256-10, 264k params) on scikit-learn's make_classification
              (40,000 samples, 10 classes, 3 clusters each), batch 128.
int8 quantizes arrays of 4,096 elements or more (every weight matrix but digits' last); the rest
keep float32 state, as in bitsandbytes.
"""

from __future__ import annotations

import fastopt
import numpy as np
from fastopt._compact import state_bytes
from fastopt.demo.digits import accuracy, load, loss_and_grads
from fastopt.init import he_normal
from report import Table, save_figure

FORMATS = {
    "float32": {},
    "bfloat16": {"state_format": "bfloat16"},
    "bfloat16 stochastic": {"state_format": "bfloat16", "rounding": "stochastic"},
    "int8": {"state_format": "int8"},
}


def _synthetic(quick: bool):
    from sklearn.datasets import make_classification

    x, y = make_classification(
        n_samples=8000 if quick else 40_000, n_features=256, n_informative=128,
        n_redundant=32, n_classes=10, n_clusters_per_class=3, class_sep=1.5, random_state=0,
    )  # fmt: skip
    x = ((x - x.mean(axis=0)) / x.std(axis=0)).astype(np.float32)
    split = int(0.8 * len(x))
    return x[:split], y[:split], x[split:], y[split:]


def _network(sizes, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    params = {}
    for i, (fan_in, fan_out) in enumerate(zip(sizes, sizes[1:]), start=1):
        params[f"W{i}"] = he_normal((fan_in, fan_out), rng=rng).astype(np.float32)
        params[f"b{i}"] = np.zeros(fan_out, np.float32)
    return params


def train(data, sizes, options, epochs: int, batch: int):
    x_train, y_train, x_test, y_test = data
    params = _network(sizes, seed=0)
    opt = fastopt.optim.Adam(lr=1e-3, **options)
    rng = np.random.default_rng(1)
    losses = []
    for _ in range(epochs):
        order = rng.permutation(len(x_train))
        total = []
        for first in range(0, len(order), batch):
            rows = order[first : first + batch]
            loss, grads = loss_and_grads(params, x_train[rows], y_train[rows])
            opt.update(params, {k: g.astype(np.float32) for k, g in grads.items()})
            total.append(loss)
        losses.append(float(np.mean(total)))
    size = sum(p.size for p in params.values())
    return losses, accuracy(params, x_test, y_test), state_bytes(opt) / size


def compact_training(quick: bool, out_dir) -> Table:
    table = Table(
        "Compact state: training with float32, bfloat16 and int8 Adam state",
        "Training, not timing (benchmarks/compact_training.py). Mean training loss of the last "
        "epoch, test accuracy, and optimizer-state bytes per param; the same data, order, initial "
        "weights and hyperparameters. Target: bf16 and int8 within 1 point of float32's test "
        "accuracy and within 25% of its final loss.",
    )
    try:
        digits = load(0)
    except ImportError:  # scikit-learn: the demo extra
        table.note += " Skipped: needs scikit-learn (pip install '.[demo]')."
        return table
    digits = tuple(a.astype(np.float32) if a.dtype.kind == "f" else a for a in digits)
    tasks = {
        "digits": (digits, (64, 100, 100, 10), 3 if quick else 15, 32),
        "synthetic": (_synthetic(quick), (256, 512, 256, 10), 2 if quick else 5, 128),
    }
    curves: dict[str, dict[str, list[float]]] = {}
    for task, (data, sizes, epochs, batch) in tasks.items():
        curves[task] = {}
        for tag, options in FORMATS.items():
            losses, acc, per_param = train(data, sizes, options, epochs, batch)
            curves[task][tag] = losses
            table.add(task=task, state=tag, epochs=epochs, final_loss=losses[-1],
                      test_accuracy=acc, state_bytes_per_param=per_param)  # fmt: skip
    save_figure(out_dir / "compact_state.png", lambda axes: _draw(axes, curves))
    return table


def _draw(axes, curves) -> None:
    for axis, (task, by_format) in zip(axes, curves.items()):
        for tag, losses in by_format.items():
            style = "--" if tag == "float32" else "-"
            axis.plot(range(1, len(losses) + 1), losses, style, label=f"{tag} state")
        axis.set(title=f"{task}, Adam lr 1e-3", xlabel="epoch", ylabel="training loss",
                 yscale="log")  # fmt: skip
        axis.legend()
