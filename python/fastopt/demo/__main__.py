"""The demo's command line.

python -m fastopt.demo [--out DIR] [--quick] [--optimizers ...] [--epochs N] [--seed S] [--no-plots]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

MISSING = (
    "The demo needs {package}. Install the demo extra:\n"
    '    pip install "fastopt[demo]"        (or, from a checkout: pip install ".[demo]")'
)


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    from .optimizers import OPTIMIZERS

    parser = argparse.ArgumentParser(
        prog="python -m fastopt.demo",
        description="fastopt's optimizers at work: paths on a bowl, training on handwritten "
        "digits, and the speed of the optimizer step.",
    )
    parser.add_argument(
        "--out", type=Path, default=Path("fastopt-demo"), help="folder for the images"
    )
    parser.add_argument("--quick", action="store_true", help="a few epochs: a check, in seconds")
    parser.add_argument(
        "--optimizers", nargs="+", choices=list(OPTIMIZERS), default=list(OPTIMIZERS)
    )
    parser.add_argument("--epochs", type=int, default=None, help="training epochs (default 20)")
    parser.add_argument("--seed", type=int, default=0, help="data split, weights and batches")
    parser.add_argument("--no-plots", action="store_true", help="print the tables only")
    args = parser.parse_args(argv)
    args.epochs = args.epochs or (3 if args.quick else 20)
    if args.epochs < 1:
        parser.error("--epochs must be at least 1")
    return args


def _missing_dependency(no_plots: bool) -> str | None:
    """The package the demo needs and cannot import, if any."""
    needed = [("sklearn", "scikit-learn"), ("tqdm", "tqdm")]
    if not no_plots:
        needed.append(("matplotlib", "matplotlib"))
    for module, package in needed:
        try:
            __import__(module)
        except ImportError:
            return package
    return None


def _train(args: argparse.Namespace) -> list[Any]:
    from tqdm import tqdm

    from . import digits

    print(f"\n2. Training on scikit-learn's digits (1,797 8x8 images), {args.epochs} epochs each")
    data = digits.load(args.seed)
    runs = []
    for name in args.optimizers:
        # disable=None: a bar on a terminal, nothing in a log file or a test's captured output.
        with tqdm(
            total=args.epochs, desc=f"   {name:<9}", unit="epoch", leave=False, disable=None
        ) as progress:
            runs.append(digits.train(name, data, args.epochs, args.seed, progress))
    print(
        f"\n   {'optimizer':<9} {'test accuracy':>13} {'final loss':>10} {'fastopt step':>12} "
        f"{'reference':>10} {'speed-up':>8} {'optimizer share':>15}"
    )
    for run in runs:
        print(
            f"   {run.name:<9} {run.test_accuracy:>13.3f} {run.losses[-1]:>10.4f} "
            f"{1e6 * sorted(run.fast_step)[len(run.fast_step) // 2]:>9.1f} us "
            f"{1e6 * sorted(run.slow_step)[len(run.slow_step) // 2]:>7.1f} us "
            f"{run.speedup:>7.1f}x {100 * run.optimizer_share:>14.1f}%"
        )
    print(
        "   (speed-up: median step time of fastopt.reference, the book's NumPy, over fastopt's;"
        "\n    optimizer share: fastopt's step as a part of the whole training time)"
    )
    return runs


def _logistic(args: argparse.Namespace) -> tuple[list[Any], float]:
    from . import digits, logistic

    print(
        f"\n3. Logistic regression on the digits, full batch (L2 {logistic.L2:g}): "
        f"{logistic.BUDGET} gradient evaluations each"
    )
    fits, optimum = logistic.compare(digits.load(args.seed))
    print(f"\n   {'optimizer':<14} {'test accuracy':>13} {'final loss':>10} {'above minimum':>13}")
    for fit in fits:
        print(
            f"   {fit.name:<14} {fit.test_accuracy:>13.3f} {fit.final_loss:>10.6f} "
            f"{fit.final_loss - optimum:>13.1e}"
        )
    print(f"   (the minimum, {optimum:.8f}, by L-BFGS with tight tolerances)")
    return fits, optimum


def _titles(args: argparse.Namespace, paths: dict) -> dict[str, str]:
    from .optimizers import OPTIMIZERS

    titles = {name: f"{name} (lr={OPTIMIZERS[name].bowl.get('lr')})" for name in args.optimizers}
    searches = {"L-BFGS": "L-BFGS, strong Wolfe", "CG": "CG, Polak-Ribière+"}
    for name, label in searches.items():
        titles[name] = f"{label}: {len(paths[name]) - 1} iterations"
    return titles


def _images(
    args: argparse.Namespace, paths: Any, runs: list[Any], logistic: tuple[list[Any], float]
) -> None:
    from . import plots

    fits, optimum = logistic
    args.out.mkdir(parents=True, exist_ok=True)
    written = [
        (
            plots.paths_figure(paths, _titles(args, paths), args.out),
            "SGD zig-zags across the narrow valley; momentum overshoots and swings back; the "
            "adaptive methods head straight for the minimum; L-BFGS and CG search along lines",
        ),
        (plots.training_figure(runs, args.out), "how fast each optimizer brings the loss down"),
        (plots.speed_figure(runs, args.out), "fastopt's update() against the book's NumPy"),
        (plots.logistic_figure(fits, optimum, args.out), "L-BFGS against Adam, full batch"),
    ]
    print("\n4. Images")
    for path, what in written:
        print(f"   {path}: {what}")


def _bowl(args: argparse.Namespace) -> dict[str, list[tuple[float, float]]]:
    from . import bowl

    print(f"\n1. Paths on f(x, y) = x²/20 + y² from {bowl.START}, {bowl.STEPS} steps each")
    paths = bowl.paths(args.optimizers)
    for name, points in paths.items():
        x, y = points[-1]
        print(f"   {name:<9} ends at ({x:+.4f}, {y:+.4f}), f = {bowl.f(x, y):.2e}")
    searches = bowl.search_paths()
    print("   L-BFGS and CG, one iteration (a line search) at a time, until they stop:")
    for name, points in searches.items():
        x, y = points[-1]
        print(
            f"   {name:<9} ends at ({x:+.1e}, {y:+.1e}), f = {bowl.f(x, y):.1e}, "
            f"after {len(points) - 1} iterations"
        )
    return {**paths, **searches}


def main(argv: list[str] | None = None) -> int:
    args = _arguments(argv)
    missing = _missing_dependency(args.no_plots)
    if missing is not None:
        print(MISSING.format(package=missing), file=sys.stderr)
        return 2

    import fastopt

    print(
        f"fastopt {fastopt.__version__} demo: SIMD level {fastopt.simd_level()}, "
        f"{fastopt.get_num_threads()} threads, seed {args.seed}"
    )
    paths = _bowl(args)
    runs = _train(args)
    logistic = _logistic(args)
    if not args.no_plots:
        _images(args, paths, runs, logistic)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
