"""Part 2 and 3: a two-hidden-layer ReLU network on scikit-learn's digits, one run per optimizer.

Plain NumPy, float64 as in the book. Each step also times fastopt.reference's update of the same
gradients on a shadow copy of the params, side by side, for the speed comparison.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from fastopt import init

from .optimizers import OPTIMIZERS

HIDDEN = (100, 100)
BATCH = 32


@dataclass
class Run:
    name: str
    losses: list[float] = field(default_factory=list)  # mean training loss per epoch
    test_accuracy: float = 0.0
    fast_step: list[float] = field(default_factory=list)  # seconds per optimizer step
    slow_step: list[float] = field(default_factory=list)
    total_seconds: float = 0.0  # forward, backward and fastopt's steps

    @property
    def speedup(self) -> float:
        return float(np.median(self.slow_step) / np.median(self.fast_step))

    @property
    def optimizer_share(self) -> float:
        return float(np.sum(self.fast_step) / self.total_seconds)


def load(seed: int):
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = digits.data / 16.0
    y = digits.target
    order = np.random.default_rng(seed).permutation(len(x))
    split = int(0.8 * len(x))
    train, test = order[:split], order[split:]
    return x[train], y[train], x[test], y[test]


def network(seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    sizes = (64, *HIDDEN, 10)
    params = {}
    for i, (fan_in, fan_out) in enumerate(zip(sizes, sizes[1:]), start=1):
        params[f"W{i}"] = init.he_normal((fan_in, fan_out), rng=rng)
        params[f"b{i}"] = np.zeros(fan_out)
    return params


def forward(params, x):
    """Activations of every layer; the last are the logits."""
    layers = [x]
    depth = len(params) // 2
    for i in range(1, depth + 1):
        z = layers[-1] @ params[f"W{i}"] + params[f"b{i}"]
        layers.append(np.maximum(z, 0.0) if i < depth else z)
    return layers


def loss_and_grads(params, x, y):
    """Softmax cross-entropy and its gradients by backpropagation."""
    layers = forward(params, x)
    logits = layers[-1] - layers[-1].max(axis=1, keepdims=True)
    probabilities = np.exp(logits)
    probabilities /= probabilities.sum(axis=1, keepdims=True)
    loss = float(-np.mean(np.log(probabilities[np.arange(len(y)), y] + 1e-12)))
    delta = probabilities
    delta[np.arange(len(y)), y] -= 1.0
    delta /= len(y)
    grads = {}
    depth = len(params) // 2
    for i in range(depth, 0, -1):
        grads[f"W{i}"] = layers[i - 1].T @ delta
        grads[f"b{i}"] = delta.sum(axis=0)
        if i > 1:
            delta = (delta @ params[f"W{i}"].T) * (layers[i - 1] > 0)
    return loss, grads


def accuracy(params, x, y) -> float:
    return float(np.mean(forward(params, x)[-1].argmax(axis=1) == y))


def train(name: str, data, epochs: int, seed: int, progress=None) -> Run:
    x_train, y_train, x_test, y_test = data
    entry = OPTIMIZERS[name]
    fast, slow = entry.fast(**entry.digits), entry.slow(**entry.digits)
    params = network(seed)
    shadow = {k: v.copy() for k, v in params.items()}  # the reference updates this, for timing
    rng = np.random.default_rng(seed)
    run = Run(name)
    start = time.perf_counter()
    for _ in range(epochs):
        order = rng.permutation(len(x_train))
        epoch_losses = []
        for first in range(0, len(order), BATCH):
            batch = order[first : first + BATCH]
            loss, grads = loss_and_grads(params, x_train[batch], y_train[batch])
            epoch_losses.append(loss)
            t0 = time.perf_counter()
            fast.update(params, grads)
            t1 = time.perf_counter()
            slow.update(shadow, grads)
            t2 = time.perf_counter()
            run.fast_step.append(t1 - t0)
            run.slow_step.append(t2 - t1)
            start += t2 - t1  # the reference's time is not part of the training time
        run.losses.append(float(np.mean(epoch_losses)))
        if progress is not None:
            progress.update(1)
            progress.set_postfix(loss=f"{run.losses[-1]:.3f}")
    run.total_seconds = time.perf_counter() - start
    run.test_accuracy = accuracy(params, x_test, y_test)
    return run
