"""The type stubs of the compiled module match it (mypy's stubtest)."""

from __future__ import annotations

import subprocess
import sys

import pytest


def test_core_stub_matches_the_module():
    pytest.importorskip("mypy.stubtest")
    done = subprocess.run(
        [sys.executable, "-m", "mypy.stubtest", "fastopt._core"],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout + done.stderr
