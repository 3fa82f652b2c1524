"""The networks the loop benchmark trains: forward and backward passes in plain NumPy.

The book's TwoLayerNet (784-50-10, ReLU) and MultiLayerNetExtend (784-[100]*5-10 with batch norm,
ReLU), the demo's digits network (64-100-100-10), and a wide MLP whose optimizer step is a large
share of each iteration. Layers and parameter names follow the book (W1, b1, gamma1, beta1, ...).
Matrix products go to NumPy's BLAS at its default thread count, as in a user's training loop.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Net:
    name: str
    sizes: tuple[int, ...]  # input, hidden..., output
    batch: int
    batchnorm: bool = False
    dtype: type = np.float64
    batches_per_epoch: int = 600  # MNIST: 60,000 images in batches of 100

    def params(self, seed: int) -> dict[str, np.ndarray]:
        """He-initialised weights, zero biases, unit gammas and zero betas."""
        rng = np.random.default_rng(seed)
        params = {}
        for i, (fan_in, fan_out) in enumerate(zip(self.sizes, self.sizes[1:]), start=1):
            params[f"W{i}"] = (rng.standard_normal((fan_in, fan_out)) * np.sqrt(2 / fan_in)).astype(
                self.dtype
            )
            params[f"b{i}"] = np.zeros(fan_out, self.dtype)
        if self.batchnorm:
            for i in range(1, len(self.sizes) - 1):
                params[f"gamma{i}"] = np.ones(self.sizes[i], self.dtype)
                params[f"beta{i}"] = np.zeros(self.sizes[i], self.dtype)
        return params

    def data(self, seed: int, batches: int) -> list[tuple[np.ndarray, np.ndarray]]:
        """Batches of inputs in [-0.5, 0.5) with labels from a fixed random linear teacher, so that
        the loss really falls; MNIST's shape without needing MNIST (no download)."""
        rng = np.random.default_rng(seed)
        teacher = rng.standard_normal((self.sizes[0], self.sizes[-1]))
        out = []
        for _ in range(batches):
            x = (rng.random((self.batch, self.sizes[0])) - 0.5).astype(self.dtype)
            out.append((x, (x @ teacher).argmax(axis=1)))
        return out


TWO_LAYER_NET = Net("TwoLayerNet", (784, 50, 10), batch=100)
MULTI_LAYER_NET_EXTEND = Net(
    "MultiLayerNetExtend", (784, 100, 100, 100, 100, 100, 10), batch=100, batchnorm=True
)
# The demo's network on scikit-learn's digits: 1,437 training images in batches of 32.
DIGITS = Net("digits (demo)", (64, 100, 100, 10), batch=32, batches_per_epoch=45)
# float32, as PyTorch users train: 5.8M params, so the step is a large share of an iteration.
WIDE_MLP = Net("wide MLP", (784, 2048, 2048, 10), batch=64, dtype=np.float32, batches_per_epoch=938)
NETS = (TWO_LAYER_NET, MULTI_LAYER_NET_EXTEND, DIGITS, WIDE_MLP)


def loss_and_grads(net: Net, params, x, y):
    """Softmax cross-entropy of the batch, and its gradients by backpropagation."""
    depth = len(net.sizes) - 1
    h, saved = x, []
    for i in range(1, depth + 1):
        z = h @ params[f"W{i}"] + params[f"b{i}"]
        norm = None
        if i < depth and net.batchnorm:
            norm = _batchnorm_forward(z, params[f"gamma{i}"], params[f"beta{i}"])
            z = norm[0]
        saved.append((h, norm, z))
        h = np.maximum(z, 0) if i < depth else z
    logits = h - h.max(axis=1, keepdims=True)
    p = np.exp(logits)
    p /= p.sum(axis=1, keepdims=True)
    rows = np.arange(len(y))
    loss = float(-np.mean(np.log(p[rows, y] + 1e-7)))
    delta = p
    delta[rows, y] -= 1
    delta /= len(y)
    grads = {}
    for i in range(depth, 0, -1):
        h_in, norm, z = saved[i - 1]
        if i < depth:
            delta = delta * (z > 0)
            if norm is not None:
                delta, grads[f"gamma{i}"], grads[f"beta{i}"] = _batchnorm_backward(
                    delta, params[f"gamma{i}"], norm
                )
        grads[f"W{i}"] = h_in.T @ delta
        grads[f"b{i}"] = delta.sum(axis=0)
        if i > 1:
            delta = delta @ params[f"W{i}"].T
    return loss, grads


def _batchnorm_forward(z, gamma, beta):
    """The book's BatchNormalization in training mode (eps 1e-7)."""
    centred = z - z.mean(axis=0)
    std = np.sqrt((centred**2).mean(axis=0) + 1e-7)
    normed = centred / std
    return gamma * normed + beta, centred, std, normed


def _batchnorm_backward(dout, gamma, norm):
    _, centred, std, normed = norm
    n = len(dout)
    dbeta = dout.sum(axis=0)
    dgamma = (normed * dout).sum(axis=0)
    dnormed = gamma * dout
    dcentred = dnormed / std
    dstd = -((dnormed * centred) / (std * std)).sum(axis=0)
    dcentred += (2.0 / n) * centred * (0.5 * dstd / std)
    return dcentred - dcentred.sum(axis=0) / n, dgamma, dbeta
