"""python -m fastopt.demo: runs quickly, writes three real images, prints the tables, and says
what to install when a demo dependency is missing."""

from __future__ import annotations

import struct
import subprocess
import sys

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
    for name in ("paths.png", "training.png", "speed.png"):
        width, height = png_size(tmp_path / name)
        assert width >= 600 and height >= 300, (name, width, height)
        assert str(tmp_path / name) in done.stdout  # it says where the images are
    assert "test accuracy" in done.stdout and "speed-up" in done.stdout
    assert done.stdout.count("x ") >= 9  # a speed-up for each of the nine optimizers


def test_default_settings_reach_90_percent(tmp_path):
    """The README's claim: every optimizer reaches >= 0.90 test accuracy with the defaults."""
    from fastopt.demo import OPTIMIZERS, digits

    data = digits.load(seed=0)
    for name in OPTIMIZERS:
        run = digits.train(name, data, epochs=20, seed=0)
        assert run.test_accuracy >= 0.90, (name, run.test_accuracy)


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
