"""Scenarios of fastopt.distributed, run under mpiexec by tests/test_distributed.py.

    mpiexec -n N python tests/mpi/scenarios.py [--dir DIR] [--only NAME ...] [--list]

Every process runs every scenario; each compares the sharded run with one process's optimizer
updated with the same average (summed in rank order, then divided by N), which every process
computes itself: the grads are drawn from (step, rank), so each process knows all of them.
Process 0 prints one JSON line per scenario {name: "ok" or what failed, on which process}.
The scenarios are in scenarios_numbers.py, scenarios_failures.py and scenarios_checkpoints.py.
"""

from __future__ import annotations

import json
import sys
import threading
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/: conftest's cases
import scenarios_checkpoints  # noqa: E402, F401  (each registers its scenarios)
import scenarios_failures  # noqa: E402, F401
import scenarios_numbers  # noqa: E402, F401
from harness import ARGS, COMM, RANK, SCENARIOS  # noqa: E402


def main() -> None:
    if ARGS.list:  # the names, for pytest (one process, no mpiexec needed)
        print("\n".join(SCENARIOS))
        return
    names = ARGS.only or [n for n in SCENARIOS if n not in ("checkpoint-write", "checkpoint-read")]
    for name in names:
        # A scenario that fails on one process only can leave the others in a collective: after
        # WATCHDOG seconds, report it and abort the job (the results so far are printed).
        watchdog = threading.Timer(WATCHDOG, _hung, (name,))
        watchdog.start()
        try:
            SCENARIOS[name]()
            outcome = "ok"
        except Exception:
            outcome = traceback.format_exc(limit=4)
        outcomes = COMM.allgather(outcome)
        watchdog.cancel()
        failed = [f"process {r}: {o}" for r, o in enumerate(outcomes) if o != "ok"]
        if RANK == 0:
            print(json.dumps({name: "ok" if not failed else "\n".join(failed)}), flush=True)


WATCHDOG = 120.0


def _hung(name: str) -> None:
    print(json.dumps({name: f"hung on process {RANK} (over {WATCHDOG} s)"}), flush=True)
    COMM.Abort(3)


if __name__ == "__main__":
    main()
