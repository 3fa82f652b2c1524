"""The three figures, readable and colour-blind safe (Okabe-Ito palette plus line styles)."""

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


def paths_figure(paths: dict, settings: dict, out: Path) -> Path:
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
        lr = settings[name].get("lr")
        ax.set_title(f"{name} (lr={lr})", fontsize=10)
        ax.set_xlim(-10, 10)
        ax.set_ylim(-5, 5)
        ax.set_xlabel("x")
        ax.set_ylabel("y")
    for ax in list(axes.flat)[len(paths) :]:
        ax.axis("off")
    fig.suptitle(
        f"{bowl.STEPS} steps on f(x, y) = x²/20 + y² from (-7, 2); + marks the minimum", fontsize=11
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
