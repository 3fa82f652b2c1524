"""The four figures, readable and colour-blind safe (Okabe-Ito palette plus line styles)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from . import bowl

PALETTE = [
    "#0072B2",
    "#E69F00",
    "#009E73",
    "#CC79A7",
    "#D55E00",
    "#56B4E9",
    "#000000",
    "#F0E442",
    "#999999",
]
STYLES = ["-", "--", "-.", ":"]


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only: works with no display
    import matplotlib.pyplot as plt

    return plt


def _save(plt, fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def paths_figure(paths: dict, titles: dict, out: Path) -> Path:
    """One panel per optimizer, titled by ``titles[name]``."""
    plt = _pyplot()
    columns = 3
    rows = -(-len(paths) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(4.2 * columns, 3.2 * rows), squeeze=False)
    xs, ys = np.meshgrid(np.linspace(-10, 10, 200), np.linspace(-5, 5, 200))
    for ax, (i, (name, points)) in zip(axes.flat, enumerate(paths.items())):
        ax.contour(
            xs,
            ys,
            bowl.f(xs, ys),
            levels=np.geomspace(0.05, 30, 12),
            colors="#bbbbbb",
            linewidths=0.7,
        )
        px, py = zip(*points)
        ax.plot(px, py, "o-", color=PALETTE[i % len(PALETTE)], markersize=3, linewidth=1.2)
        ax.plot(0, 0, "+", color="black", markersize=10)
        ax.set_title(titles[name], fontsize=10)
        ax.set_xlim(-10, 10)
        ax.set_ylim(-5, 5)
        ax.set_xlabel("x")
        ax.set_ylabel("y")
    for ax in list(axes.flat)[len(paths) :]:
        ax.axis("off")
    fig.suptitle(
        f"f(x, y) = x²/20 + y² from (-7, 2): {bowl.STEPS} steps of each first-order method; "
        "L-BFGS and CG: every iterate (each after a line search); + marks the minimum",
        fontsize=11,
    )
    return _save(plt, fig, out / "paths.png")


def training_figure(runs: list, out: Path) -> Path:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 5))
    for i, run in enumerate(runs):
        epochs = np.arange(1, len(run.losses) + 1)
        ax.plot(
            epochs,
            run.losses,
            STYLES[i % len(STYLES)],
            color=PALETTE[i % len(PALETTE)],
            label=f"{run.name} (test accuracy {run.test_accuracy:.3f})",
            linewidth=1.6,
        )
    ax.set_yscale("log")
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.set_xlabel("epoch")
    ax.set_ylabel("mean training loss (cross-entropy, log scale)")
    ax.set_title("A 64-100-100-10 ReLU network on scikit-learn's handwritten digits")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    return _save(plt, fig, out / "training.png")


def speed_figure(runs: list, out: Path) -> Path:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 4.5))
    names = [run.name for run in runs]
    ratios = [run.speedup for run in runs]
    bars = ax.barh(names, ratios, color=[PALETTE[i % len(PALETTE)] for i in range(len(runs))])
    for bar, ratio in zip(bars, ratios):
        ax.text(
            bar.get_width(),
            bar.get_y() + bar.get_height() / 2,
            f" {ratio:.1f}x",
            va="center",
            fontsize=9,
        )
    ax.axvline(1.0, color="black", linewidth=0.8)
    ax.invert_yaxis()
    ax.set_xlabel("optimizer step: fastopt.reference time / fastopt time (median)")
    ax.set_title("How much faster fastopt's update() is, in the same training run")
    ax.set_xlim(0, max(ratios) * 1.15)
    return _save(plt, fig, out / "speed.png")


def logistic_figure(fits: list, optimum: float, out: Path) -> Path:
    """The loss at each gradient evaluation, and its distance to the minimum."""
    plt = _pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.5))
    for i, fit in enumerate(fits):
        evaluations = np.arange(1, len(fit.losses) + 1)
        style = {"color": PALETTE[i], "linestyle": STYLES[i], "linewidth": 1.6}
        label = f"{fit.name} (test accuracy {fit.test_accuracy:.3f})"
        left.plot(evaluations, fit.losses, label=label, **style)
        # max(): the last digits of a loss at the minimum may fall below the estimate of it.
        right.plot(evaluations, np.maximum(np.array(fit.losses) - optimum, 1e-16), **style)
    left.set_ylabel("full-batch training loss (log scale)")
    right.set_ylabel("loss - its minimum (log scale)")
    right.set_ylim(1e-9, 5)  # from the first loss, ~2.2 above the minimum
    for ax in (left, right):
        ax.set_yscale("log")
        ax.set_xlabel("gradient evaluations (closure calls, line-search trials included)")
        ax.grid(True, alpha=0.3)
    left.legend(fontsize=9)
    fig.suptitle(
        "Multinomial logistic regression on the digits, full batch, small L2: L-BFGS against Adam",
        fontsize=11,
    )
    return _save(plt, fig, out / "logistic.png")
