"""python -m fastopt.demo: runs quickly, writes four real images, prints the tables, and says
what to install when a demo dependency is missing; the claims the README makes of its numbers."""

from __future__ import annotations

import struct
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("matplotlib")
pytest.importorskip("sklearn")
pytest.importorskip("tqdm")


def png_size(path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    return struct.unpack(">II", data[16:24])


def test_quick_demo(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "fastopt.demo", "--quick", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    for name in ("paths.png", "training.png", "speed.png", "logistic.png"):
        width, height = png_size(tmp_path / name)
        assert width >= 600 and height >= 300, (name, width, height)
        assert str(tmp_path / name) in done.stdout  # it says where the images are
    assert "test accuracy" in done.stdout and "speed-up" in done.stdout
    assert done.stdout.count("x ") >= 9  # a speed-up for each of the nine optimizers
    assert "CG        ends at" in done.stdout and "Adam (lr=0.3)" in done.stdout


def test_default_settings_reach_90_percent(tmp_path):
    """The README's claim: every optimizer reaches >= 0.90 test accuracy with the defaults."""
    from fastopt.demo import OPTIMIZERS, digits

    data = digits.load(seed=0)
    for name in OPTIMIZERS:
        run = digits.train(name, data, epochs=20, seed=0)
        assert run.test_accuracy >= 0.90, (name, run.test_accuracy)


def test_conjugate_gradients_reach_the_bowls_minimum_in_two_iterations():
    """The textbook's point, on the book's 2-D quadratic: two conjugate directions, each with a
    line search, reach the minimum (measured: |x|, |y| < 3e-14); the first alone does not."""
    from fastopt.demo import bowl

    paths = bowl.search_paths()
    start, first, second, *rest = paths["CG"]
    assert start == bowl.START and not rest, paths["CG"]
    assert abs(first[0]) > 1.0, first  # not there after one line search
    assert abs(second[0]) < 1e-10 and abs(second[1]) < 1e-10, second
    # L-BFGS with torch's c2 = 0.9 accepts inexact line minima: 8 iterations, ends ~3e-5 away.
    *_, last = paths["L-BFGS"]
    assert len(paths["L-BFGS"]) - 1 <= 10 and max(map(abs, last)) < 1e-4, paths["L-BFGS"]


def test_lbfgs_beats_adam_on_full_batch_logistic_regression():
    """On the same gradient evaluations, L-BFGS's loss is below the best of Adam's (measured, seed
    0: 9e-8 and 9e-3 above the minimum after 100); its test accuracy is at least 0.97 (0.981)."""
    from fastopt.demo import digits, logistic

    (lbfgs, adam), optimum = logistic.compare(digits.load(seed=0))
    assert len(lbfgs.losses) <= len(adam.losses) == logistic.BUDGET
    best_lbfgs, best_adam = (np.minimum.accumulate(fit.losses) for fit in (lbfgs, adam))
    for spent in (20, 50, len(lbfgs.losses)):
        assert best_lbfgs[spent - 1] < best_adam[spent - 1], (spent, best_lbfgs, best_adam)
    assert lbfgs.final_loss - optimum < 1e-6 < 1e-3 < adam.final_loss - optimum
    assert lbfgs.test_accuracy >= 0.97 and adam.test_accuracy >= 0.95, (lbfgs, adam)


def test_deterministic_under_seed():
    from fastopt.demo import digits

    data = digits.load(seed=3)
    first, second = (digits.train("Adam", data, epochs=2, seed=3) for _ in range(2))
    assert first.losses == second.losses and first.test_accuracy == second.test_accuracy


def test_missing_dependency_says_what_to_install():
    code = (
        "import sys; sys.modules['sklearn'] = None\n"
        "from fastopt.demo.__main__ import main\n"
        "raise SystemExit(main(['--quick', '--no-plots']))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 2
    assert 'pip install "fastopt[demo]"' in done.stderr and "scikit-learn" in done.stderr
    assert "Traceback" not in done.stderr
