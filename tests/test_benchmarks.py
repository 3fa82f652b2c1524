"""The benchmark suite runs and writes its results. (No timing is asserted: that is its job.)"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from conftest import BOOK

ROOT = Path(__file__).resolve().parent.parent


def test_benchmark_script_runs_and_writes_json(tmp_path):
    done = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "run.py"),
            "--quick",
            "--repeats",
            "1",
            "--only",
            "overhead",
            "every",
            "--out",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert "Call overhead: 22 arrays of 8 float64" in done.stdout
    result = json.loads((tmp_path / "benchmark.json").read_text())
    titles = [table["title"] for table in result["tables"]]
    assert len(titles) == 2
    overhead = result["tables"][0]["rows"]
    assert tuple(row["optimizer"] for row in overhead) == BOOK
    assert all(row["fastopt_us"] > 0 and row["x_reference"] > 0 for row in overhead)
    assert result["machine"]["simd_level"] in ("baseline", "avx2", "avx512")


def test_paired_ratio_is_the_median_of_per_round_ratios():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from harness import Timings

    # Round 2 is slow for both: the paired ratio ignores the drift, a ratio of medians would not.
    t = Timings({"a": [1.0, 10.0, 1.0, 10.0, 10.0], "b": [2.0, 20.0, 2.0, 20.0, 20.0]})
    assert t.ratio("b", "a") == 2.0
    assert t.ratio("b", "missing") is None
    assert t["a"] == 10.0
