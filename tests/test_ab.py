"""benchmarks/ab.py runs two workers and writes its rows. (No timing is asserted.)"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from conftest import BOOK

ROOT = Path(__file__).resolve().parent.parent


def test_ab_script_compares_a_build_with_itself(tmp_path):
    out = tmp_path / "ab.json"
    command = [sys.executable, str(ROOT / "benchmarks" / "ab.py"), "--a", sys.executable]
    command += ["--b", sys.executable, "--quick", "--repeats", "2", "--only", "overhead"]
    done = subprocess.run(
        [*command, "--out", str(out)], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    assert "Back-to-back microbenchmarks" in done.stdout
    rows = json.loads(out.read_text())["rows"]
    assert [row["case"] for row in rows] == [f"{name} f64 22x8" for name in BOOK]
    for row in rows:
        assert len(row["a_seconds"]) == len(row["b_seconds"]) == 2
        assert row["a_us"] > 0 and row["b_us"] > 0 and row["b_over_a"] > 0
