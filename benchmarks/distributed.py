"""fastopt.distributed against its ceiling and torch's ZeroRedundancyOptimizer, at N processes.

    mpiexec -n 2 python benchmarks/distributed.py [--quick] [--exponents 22 24]

(or ``python benchmarks/run.py --only distributed``, which launches it). Adam over 2^k float32
params in 8 arrays, the step alone, back to back (no forward or backward between steps). Each
round times every contender once, interleaved, behind barriers, on process 0's clock; ratios are
medians of per-round ratios.

Contenders, in every process:
  fastopt       Sharded(optim.Adam()).update(params, grads): reduce-scatter, shard update,
                all-gather (its own timings split the three)
  ceiling       what any ZeRO step must do here: one MPI Allreduce of the grads in place (the
                same bytes as a reduce-scatter plus an all-gather) plus fastopt's Adam over 1/N
                of the params on one process, timed separately and added
  torch ZeRO    torch.distributed.optim.ZeroRedundancyOptimizer(Adam) on gloo: the grads
                all-reduced (dist.all_reduce per tensor, as DDP's buckets do), then its step
                (each process updates the params it owns, then broadcasts them)

Bytes sent: the loopback interface's transmit counter (/proc/net/dev) over steps of one contender
alone, per process; beside it, what Sharded computes it sends (sent_bytes()).
"""

from __future__ import annotations

import argparse
import os
import socket
import time

import fastopt
import numpy as np
from fastopt import optim
from fastopt.distributed import Sharded
from mpi4py import MPI

COMM = MPI.COMM_WORLD
RANK, N = COMM.Get_rank(), COMM.Get_size()
ARRAYS = 8


def lo_sent() -> int | None:
    """Bytes sent on the loopback interface so far (every process's), or None."""
    try:
        with open("/proc/net/dev") as file:
            for line in file:
                name, _, rest = line.partition(":")
                if name.strip() == "lo":
                    return int(rest.split()[8])
    except OSError:
        pass
    return None


def timed(step) -> float:
    COMM.Barrier()
    start = time.perf_counter()
    step()
    COMM.Barrier()
    return time.perf_counter() - start


class Contenders:
    def __init__(self, size: int) -> None:
        rng = np.random.default_rng(RANK)
        shape = (size // ARRAYS,)
        self.params = {f"p{i}": np.random.default_rng(i).standard_normal(shape, np.float32)
                       for i in range(ARRAYS)}  # fmt: skip
        self.grads = {k: rng.standard_normal(shape, np.float32) for k in self.params}
        self.sharded = Sharded(optim.Adam(lr=1e-4))
        self.flat = np.concatenate(list(self.grads.values()))
        self.local = optim.Adam(lr=1e-4)  # the ceiling's shard update, on 1/N of the params
        self.local_params = {"p": self.flat[: size // N].copy()}
        self.local_grads = {"p": self.flat[: size // N].copy()}
        self.zero = self._torch_zero()
        self.breakdown: dict[str, list[float]] = {"reduce_scatter": [], "update": [],
                                                  "all_gather": []}  # fmt: skip

    def _torch_zero(self):
        try:
            import torch
            import torch.distributed as dist
            from torch.distributed.optim import ZeroRedundancyOptimizer
        except ImportError:
            return None
        torch.set_num_threads(fastopt.get_num_threads())
        if not dist.is_initialized():
            port = None
            if RANK == 0:
                with socket.socket() as s:
                    s.bind(("127.0.0.1", 0))
                    port = s.getsockname()[1]
            port = COMM.bcast(port)
            dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=RANK,
                                    world_size=N)  # fmt: skip
        self.tparams = [torch.nn.Parameter(torch.from_numpy(v.copy())) for v in
                        self.params.values()]  # fmt: skip
        for p, g in zip(self.tparams, self.grads.values()):
            p.grad = torch.from_numpy(g.copy())
        self.dist = dist
        return ZeroRedundancyOptimizer(self.tparams, optimizer_class=torch.optim.Adam, lr=1e-4)

    def fastopt(self) -> None:
        self.sharded.update(self.params, self.grads)

    def ceiling_allreduce(self) -> None:
        COMM.Allreduce(MPI.IN_PLACE, self.flat)

    def ceiling_update(self) -> None:  # no barrier needed: local
        self.local.update(self.local_params, self.local_grads)

    def torch_zero(self) -> None:
        for p in self.tparams:
            self.dist.all_reduce(p.grad)
            p.grad.div_(N)
        self.zero.step()

    def zero_state_bytes(self) -> int | None:
        if self.zero is None:
            return None
        total = 0
        for state in self.zero.optim.state.values():
            total += sum(t.numel() * t.element_size() for t in state.values()
                         if hasattr(t, "numel") and t.dim() > 0)  # fmt: skip
        return total


def sent_per_process(step, steps: int) -> float | None:
    COMM.Barrier()
    before = lo_sent()
    for _ in range(steps):
        step()
    COMM.Barrier()
    after = lo_sent()
    return None if before is None or after is None else (after - before) / steps / N


def measure(size: int, rounds: int) -> dict:
    c = Contenders(size)
    names = ["fastopt", "allreduce", "shard update"] + (["torch ZeRO"] if c.zero else [])
    steps = {"fastopt": c.fastopt, "allreduce": c.ceiling_allreduce,
             "shard update": c.ceiling_update, "torch ZeRO": c.torch_zero}  # fmt: skip
    for name in names:  # warm-up: state made, pages touched
        timed(steps[name])
    samples: dict[str, list[float]] = {name: [] for name in names}
    for r in range(rounds):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            samples[name].append(timed(steps[name]))
            if name == "fastopt":
                for phase in c.breakdown:
                    c.breakdown[phase].append(c.sharded.timings[phase])
    ceiling = [a + u for a, u in zip(samples["allreduce"], samples["shard update"])]
    row = {
        "params": size,
        "fastopt ms": 1e3 * float(np.median(samples["fastopt"])),
        **{f"  {p} ms": 1e3 * float(np.median(v)) for p, v in c.breakdown.items()},
        "ceiling ms": 1e3 * float(np.median(ceiling)),
        "% of ceiling": 100
        * float(np.median([b / a for a, b in zip(samples["fastopt"], ceiling)])),
        "allreduce ms": 1e3 * float(np.median(samples["allreduce"])),
    }
    if c.zero:
        row["torch ZeRO ms"] = 1e3 * float(np.median(samples["torch ZeRO"]))
        row["x torch ZeRO"] = float(
            np.median([z / f for z, f in zip(samples["torch ZeRO"], samples["fastopt"])])
        )
    sent = c.sharded.sent_bytes()
    row["MB sent (counted)"] = sent["reduce_scatter"] / 1e6 + sent["all_gather"] / 1e6
    row["MB sent (lo, fastopt)"] = _mb(sent_per_process(c.fastopt, 3))
    row["MB sent (lo, allreduce)"] = _mb(sent_per_process(c.ceiling_allreduce, 3))
    if c.zero:
        row["MB sent (lo, torch ZeRO)"] = _mb(sent_per_process(c.torch_zero, 3))
    row["state MB/process"] = c.sharded.state_bytes() / 1e6
    row["state MB one process"] = 2 * 4 * size / 1e6
    if c.zero:
        row["torch ZeRO state MB"] = c.zero_state_bytes() / 1e6
    return {k: COMM.allreduce(v, op=MPI.MAX) if k.startswith("state MB/") else v
            for k, v in row.items()}  # fmt: skip


def _mb(value: float | None) -> float | None:
    return None if value is None else value / 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description="fastopt.distributed vs its ceiling and ZeRO")
    parser.add_argument("--exponents", type=int, nargs="*", default=[22, 24])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--quick", action="store_true", help="2^16 params, 2 rounds")
    args = parser.parse_args()
    # One process per core here: fastopt's pool (and torch's) would only fight the other
    # processes for the cores, and MPI's busy polling with them.
    fastopt.set_num_threads(max(1, (os.cpu_count() or 1) // N))
    exponents, rounds = ([16], 2) if args.quick else (args.exponents, args.rounds)
    rows = [measure(2**k, rounds) for k in exponents]
    if RANK == 0:
        print(f"\n## fastopt.distributed: Adam, float32, {N} processes, {os.cpu_count()} cores, "
              f"{fastopt.get_num_threads()} thread(s) each; the step alone, back to back; "
              f"btl={os.environ.get('OMPI_MCA_btl', 'default')}")  # fmt: skip
        for row in rows:
            print()
            for key, value in row.items():
                shown = "-" if value is None else (f"{value:,.3g}" if isinstance(value, float)
                                                   else f"{value:,}")  # fmt: skip
                print(f"{key:>26}: {shown}")
    try:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()
    except ImportError:
        pass


if __name__ == "__main__":
    main()
