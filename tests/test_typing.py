"""The package's source type-checks: mypy, with the [tool.mypy] settings of pyproject.toml."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
PACKAGE = ROOT / "python" / "fastopt"


def test_mypy_passes_on_the_package_source():
    if importlib.util.find_spec("mypy") is None:
        pytest.skip('mypy is not installed (it comes with the test extra: pip install ".[test]")')
    # From the checkout's root, as `mypy` is run there, so that it shares its cache.
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--config-file",
            str(ROOT / "pyproject.toml"),
            str(PACKAGE),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout + done.stderr
