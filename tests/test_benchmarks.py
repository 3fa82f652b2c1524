"""The benchmark suite runs and writes its results. (No timing is asserted: that is its job.)"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import BOOK

ROOT = Path(__file__).resolve().parent.parent


def run_benchmarks(out, *args):
    """benchmarks/run.py --quick with these arguments, writing to `out`."""
    command = [sys.executable, str(ROOT / "benchmarks" / "run.py"), "--quick", *args]
    return subprocess.run(
        [*command, "--out", str(out)], capture_output=True, text=True, timeout=300
    )


def test_benchmark_script_runs_and_writes_json(tmp_path):
    done = run_benchmarks(tmp_path, "--repeats", "1", "--only", "overhead", "every")
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


def test_loop_section_trains_the_networks_and_prints_its_tables(tmp_path):
    done = run_benchmarks(tmp_path, "--only", "loop")
    assert done.returncode == 0, done.stderr
    assert "In a training loop" in done.stdout and "Large arrays in company" in done.stdout
    loop, company = json.loads((tmp_path / "benchmark.json").read_text())["tables"]
    networks = {row["network"] for row in loop["rows"]}
    assert networks == {"TwoLayerNet", "MultiLayerNetExtend", "digits (demo)", "wide MLP"}
    for row in loop["rows"]:
        assert 0 < row["share"] < 1, row  # the step is a part of the iteration, not all of it
        assert row["step_us_1"] > 0 and row["N_vs_1"] > 0 and row["x_book"] > 0, row
        assert row["epoch_s"] > 0 and row["book_epoch_s"] > 0, row
    assert [row["threads"] for row in company["rows"]][0] == 1
    assert all(row["pct_of_ceiling"] > 0 for row in company["rows"])


def test_mixed_precision_sections_run_and_show_what_rounding_to_nearest_loses(tmp_path):
    pytest.importorskip("ml_dtypes")
    done = run_benchmarks(tmp_path, "--repeats", "1", "--only", "mixed", "precision")
    assert done.returncode == 0, done.stderr
    speed, losses = json.loads((tmp_path / "benchmark.json").read_text())["tables"]
    rows = {row["contender"]: row for row in speed["rows"]}
    for mode in ("master", "nearest", "stochastic", "kahan"):
        assert rows[f"fastopt bf16 {mode}"]["pct_of_ceiling"] > 0
        assert rows[f"fastopt f16 {mode}"]["x_fastopt_f32"] > 0
    final = {row["variant"]: row for row in losses["rows"]}
    # The least-squares task stalls when bfloat16 rounds every step to nearest, and the three
    # remedies train like float32 (the quick run's 300 steps).
    stalled = final["bf16 nearest"]["small_steps_loss"]
    assert stalled > 0.99 * final["bf16 nearest"]["small_steps_start"]
    for variant in ("float32", "bf16 master weights", "bf16 stochastic", "bf16 Kahan"):
        assert final[variant]["small_steps_loss"] < 0.8 * stalled, variant
    if importlib.util.find_spec("matplotlib") is not None:  # the bench extra draws the curves
        assert (tmp_path / "mixed_precision.png").stat().st_size > 10_000


def test_the_networks_gradients_are_their_losses_derivatives():
    """Central differences on a small network with batch norm: the loop trains for real."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import numpy as np
    from networks import Net, loss_and_grads

    net = Net("check", (5, 4, 3, 3), batch=6, batchnorm=True)
    params = net.params(seed=0)
    params["b1"] += 0.1
    params["beta2"] += 0.2
    x, y = net.data(seed=1, batches=1)[0]
    _, grads = loss_and_grads(net, params, x, y)
    for key, value in params.items():
        for index in np.ndindex(value.shape):
            old = value[index]
            value[index] = old + 1e-6
            up = loss_and_grads(net, params, x, y)[0]
            value[index] = old - 1e-6
            down = loss_and_grads(net, params, x, y)[0]
            value[index] = old
            assert abs((up - down) / 2e-6 - grads[key][index]) < 1e-6, (key, index)


def test_compact_state_sections_run_and_compact_state_trains(tmp_path):
    done = run_benchmarks(tmp_path, "--repeats", "1", "--only", "compact")
    assert done.returncode == 0, done.stderr
    one, two, memory, training = json.loads((tmp_path / "benchmark.json").read_text())["tables"]
    for table in (one, two):
        rows = {row["contender"]: row for row in table["rows"]}
        for fmt in ("float32", "bfloat16", "int8"):
            assert rows[f"Adam {fmt}"]["pct_of_probe"] > 0
            assert rows[f"Adam {fmt}"]["x_float32_state"] > 0
    per_param = {(r["params"], r["state_format"]): r["state_bytes"] for r in memory["rows"]}
    assert per_param[("float32", "float32")] == 8 and per_param[("float32", "bfloat16")] == 4
    assert 2 < per_param[("float32", "int8")] < 2.1  # 2 codes + 2 absmaxes per 256
    results = {(r["task"], r["state"]): r for r in training["rows"]}
    if importlib.util.find_spec("sklearn") is None:  # the data come from scikit-learn (demo extra)
        assert not results and "Skipped: needs scikit-learn" in training["note"]
        return
    for task in ("digits", "synthetic"):
        exact = results[(task, "float32")]
        for fmt in ("bfloat16", "int8"):
            found = results[(task, fmt)]
            # The quick run's few epochs: compact state trains like float32 state.
            assert abs(found["test_accuracy"] - exact["test_accuracy"]) < 0.03, (task, fmt)
            assert found["final_loss"] < 1.25 * exact["final_loss"], (task, fmt)
    if importlib.util.find_spec("matplotlib") is not None:
        assert (tmp_path / "compact_state.png").stat().st_size > 10_000


def test_torch_sections_compare_fastopt_torch_with_torch_or_say_they_skipped(tmp_path):
    done = run_benchmarks(tmp_path, "--repeats", "1", "--only", "torch")
    assert done.returncode == 0, done.stderr
    tables = json.loads((tmp_path / "benchmark.json").read_text())["tables"]
    if importlib.util.find_spec("torch") is None:
        assert all("skipped: torch is not installed" in table["note"] for table in tables)
        return
    loops = [t for t in tables if "training loop" in t["title"]]
    assert [t["title"].split(": ")[1].split(" ")[0] for t in loops] == ["transformer", "mlp"]
    for table in loops:
        for row in table["rows"]:
            assert row["step_ms"] > 0 and 0 < row["share"] < 1
            assert (row["x_torch_foreach"] is None) == (row["algorithm"] == "Lion")
    offload = [t for t in tables if "offload" in t["title"]][0]["rows"]
    assert all(row["pct_of_ceiling"] > 0 and row["x_torch_fused"] > 0 for row in offload)


def test_distributed_section_runs_at_two_processes_or_says_it_skipped(tmp_path):
    """benchmarks/distributed.py under mpiexec: its rows, and the bytes Sharded counts as sent
    per step equal an allreduce's (what the loopback interface saw, where it can be read)."""
    done = run_benchmarks(tmp_path, "--repeats", "1", "--only", "distributed")
    assert done.returncode == 0, done.stderr
    (table,) = json.loads((tmp_path / "benchmark.json").read_text())["tables"]
    if importlib.util.find_spec("mpi4py") is None:
        assert "skipped" in table["note"]
        return
    rows = dict(line.strip().split(": ") for line in table["note"].splitlines() if ": " in line)
    assert rows["params"] == "65,536", table["note"]
    assert float(rows["fastopt ms"]) > 0 and float(rows["ceiling ms"]) > 0
    assert rows["MB sent (counted)"] == "0.262"  # 2 (N-1)/N of 2^16 float32: an allreduce's bytes
    assert float(rows["state MB/process"]) == float(rows["state MB one process"]) / 2


def test_second_order_section_times_lbfgs_and_reports_convergence(tmp_path):
    """benchmarks/second_order.py --quick, through run.py: both tables, every contender."""
    pytest.importorskip("torch")
    pytest.importorskip("scipy")
    done = run_benchmarks(tmp_path, "--repeats", "1", "--only", "second_order")
    assert done.returncode == 0, done.stderr
    timing, convergence = json.loads((tmp_path / "benchmark.json").read_text())["tables"]
    for row in timing["rows"]:
        assert row["fastopt_ms"] > 0 and row["x_torch"] > 0, row
    assert any(row["x_scipy"] for row in timing["rows"])
    assert any(row["pct_of_probe"] for row in timing["rows"])
    solved = {(r["optimizer"], r["line_search"], r["history"]) for r in convergence["rows"]
              if r["change"] == 0 and r["reached"]}  # fmt: skip
    # With no loss-change tolerance every method reaches |g|_inf <= 1e-5 on Rosenbrock-100.
    assert ("fastopt LBFGS", "strong_wolfe", 100) in solved
    assert ("fastopt ConjugateGradient", "strong_wolfe", None) in solved
    assert ("scipy L-BFGS-B", "own", 10) in solved
