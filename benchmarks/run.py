"""fastopt's benchmark suite: ``python benchmarks/run.py [--quick] [--out DIR]``.

Every case of the speed targets, and a sweep of every optimizer over array sizes, each timed
side by side with its peers in this process: medians of interleaved repetitions after warm-up.
Results are ratios against peers measured in the same run, and against the ceiling: a kernel that
makes the same loads and stores with trivial arithmetic (fastopt._probe.MemoryTrafficProbe).
Writes benchmark.json and sweep.png to --out. torch's columns appear when torch is installed.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import compact  # noqa: E402
import compact_training  # noqa: E402
import contenders as cs  # noqa: E402
import fastopt  # noqa: E402
import loop  # noqa: E402
import mixed  # noqa: E402
import precision  # noqa: E402
import torch_training  # noqa: E402
from harness import interleaved  # noqa: E402
from report import Table, machine, plot_sweep, write_json  # noqa: E402

BOOK = ("SGD", "Momentum", "Nesterov", "AdaGrad", "RMSprop", "Adam")
TWO_LAYER_NET = [(784, 50), (50,), (50, 10), (10,)]
# MultiLayerNetExtend(784, [100] * 5, 10, use_batchnorm=True): W1..W6, b1..b6, gamma1..5, beta1..5.
MULTI_LAYER_NET_EXTEND = (
    [(784, 100), (100,)] + [(100, 100), (100,)] * 4 + [(100, 10), (10,)] + [(100,)] * 10
)


def versus_peers(t) -> dict:
    """The columns every table shares: % of the ceiling and the ratio to each peer."""
    return {
        "pct_of_ceiling": 100 / t.ratio("fastopt", "ceiling"),
        "x_reference": t.ratio("reference", "fastopt"),
        # The reference's time / the memory-traffic probe's: the most any kernel that must move
        # these bytes could gain over the reference here (SGD's, Momentum's and Nesterov's rules
        # are all traffic, so fastopt's ratio meets this bound).
        "x_reference_bound": t.ratio("reference", "ceiling"),
        "x_torch_fused": t.ratio("torch fused", "fastopt"),
        "x_torch_foreach": t.ratio("torch foreach", "fastopt"),
    }


def ratio(numerator, denominator):
    return None if numerator is None or denominator is None else numerator / denominator


def large_arrays(repeats: int, size: int) -> Table:
    shapes, dtype = [(size,)], np.float32
    table = Table(
        f"Large arrays: Adam, float32, {size:,} elements",
        "Back-to-back calls. Targets: 1 thread >= 95% of ceiling and >= 1.0x torch fused; "
        "2 threads >= 90% of the 2-thread ceiling (what 2 threads can gain is the machine's: see "
        "ceiling_x_1_thread). Ratios are medians of per-round ratios.",
    )
    found = cs.contenders(shapes, dtype, "Adam")
    reference = found.pop("reference")
    runs = {f"{n}@{c}": cs.with_threads(step, c) for c in (1, 2) for n, step in found.items()}
    t = interleaved(runs, repeats)
    t_ref = interleaved({"fastopt@1": runs["fastopt@1"], "reference": reference}, 7)
    moved = cs.traffic_bytes(shapes, dtype, "Adam")
    for count in (1, 2):
        me = f"fastopt@{count}"
        table.add(
            threads=count,
            fastopt_ms=t[me] * 1e3,
            fastopt_GBps=moved / t[me] / 1e9,
            ceiling_GBps=moved / t[f"ceiling@{count}"] / 1e9,
            pct_of_ceiling=100 / t.ratio(me, f"ceiling@{count}"),
            x_torch_fused=t.ratio(f"torch fused@{count}", me),
            x_torch_foreach=t.ratio(f"torch foreach@{count}", me),
            x_reference=t_ref.ratio("reference", "fastopt@1") if count == 1 else None,
            x_1_thread=t.ratio("fastopt@1", me),
            ceiling_x_1_thread=t.ratio("ceiling@1", f"ceiling@{count}"),
        )
    return table


def networks(repeats: int) -> Table:
    table = Table(
        f"Textbook networks: Adam, float64, {fastopt.get_num_threads()} threads (torch too)",
        "Back-to-back calls. Targets: >= 4x reference (TwoLayerNet), >= 5x reference "
        "(MultiLayerNetExtend), >= 3x torch fused on both.",
    )
    for name, shapes in (
        ("TwoLayerNet", TWO_LAYER_NET),
        ("MultiLayerNetExtend", MULTI_LAYER_NET_EXTEND),
    ):
        found = cs.contenders(shapes, np.float64, "Adam")
        found.pop("ceiling")
        t = interleaved(found, repeats)
        table.add(
            network=name,
            arrays=len(shapes),
            elements=sum(int(np.prod(s)) for s in shapes),
            fastopt_us=t["fastopt"] * 1e6,
            reference_us=t["reference"] * 1e6,
            x_reference=t.ratio("reference", "fastopt"),
            torch_fused_us=ratio(t.get("torch fused"), 1e-6),
            x_torch_fused=t.ratio("torch fused", "fastopt"),
            x_torch_foreach=t.ratio("torch foreach", "fastopt"),
        )
    return table


def call_overhead(repeats: int) -> Table:
    shapes = [(8,)] * 22
    table = Table(
        "Call overhead: 22 arrays of 8 float64",
        "Back-to-back calls. Target: <= 4 us per update() call (median), every optimizer.",
    )
    for optimizer in BOOK:
        found = {
            "fastopt": cs.fastopt_step(shapes, np.float64, optimizer),
            "reference": cs.reference_step(shapes, np.float64, optimizer),
        }
        t = interleaved(found, repeats)
        table.add(
            optimizer=optimizer,
            fastopt_us=t["fastopt"] * 1e6,
            reference_us=t["reference"] * 1e6,
            x_reference=t.ratio("reference", "fastopt"),
        )
    return table


def every_optimizer(repeats: int, size: int) -> Table:
    table = Table(
        f"Every optimizer: {size:,} float32 elements, 1 thread",
        "Back-to-back calls. Target: >= 5x reference.",
    )
    with cs.threads(1):
        for optimizer in BOOK:
            found = cs.contenders([(size,)], np.float32, optimizer)
            t = interleaved(found, repeats)
            table.add(
                optimizer=optimizer,
                fastopt_us=t["fastopt"] * 1e6,
                **versus_peers(t),
            )
    return table


OPTIM = tuple(fastopt.optim.__all__)


def torch_family(repeats: int, size: int) -> Table:
    table = Table(
        f"fastopt.optim (default options): call overhead on 22 arrays of 8 float64, and "
        f"{size:,} float32 elements on 1 thread",
        "Back-to-back calls. Targets as for the book's classes: <= 4 us per call, >= 5x "
        "reference. The torch columns are the same algorithm.",
    )
    for name in OPTIM:
        small = interleaved(
            {
                k: v
                for k, v in cs.optim_steps([(8,)] * 22, np.float64, name).items()
                if k in ("fastopt", "reference")
            },
            repeats,
        )
        with cs.threads(1):
            t = interleaved(cs.optim_steps([(size,)], np.float32, name), repeats)
        table.add(
            optimizer=name,
            overhead_us=small["fastopt"] * 1e6,
            fastopt_us=t["fastopt"] * 1e6,
            **versus_peers(t),
        )
    return table


def nonfinite(repeats: int, size: int) -> Table:
    table = Table(
        "nonfinite='skip' (the check for inf and nan grads) against the default 'propagate'",
        "Back-to-back calls. Target: no second pass over the grads unless it is free. With "
        "max_grad_norm the norm's pass is the check (x_clip_skip ~ 1.00); without it, skip reads "
        "the grads once more (x_skip > 1). torch: GradScaler's check-and-unscale pass, then the "
        "fused step.",
    )
    cases = [
        ("Adam", [(size,)], np.float32, 1),
        ("Adam", [(size,)], np.float32, 2),
        ("SGD", [(size,)], np.float32, 1),
        ("Adam", TWO_LAYER_NET, np.float64, fastopt.get_num_threads()),
        ("Adam", [(8,)] * 22, np.float64, 1),
    ]
    for optimizer, shapes, dtype, count in cases:
        runs = {
            "propagate": cs.fastopt_step(shapes, dtype, optimizer),
            "skip": cs.fastopt_step(shapes, dtype, optimizer, nonfinite="skip"),
            "clip": cs.fastopt_step(shapes, dtype, optimizer, max_grad_norm=1e9),
            "clip+skip": cs.fastopt_step(
                shapes, dtype, optimizer, max_grad_norm=1e9, nonfinite="skip"
            ),
            "torch fused": cs.torch_step(shapes, dtype, optimizer, "fused"),
            "torch fused+check": cs.torch_step(
                shapes, dtype, optimizer, "fused", check_finite=True
            ),
        }
        with cs.threads(count):
            t = interleaved({k: v for k, v in runs.items() if v is not None}, repeats)
        elements = sum(int(np.prod(s)) for s in shapes)
        table.add(
            case=f"{optimizer} {np.dtype(dtype).name} {len(shapes)}x{elements // len(shapes):,}",
            threads=count,
            propagate_us=t["propagate"] * 1e6,
            skip_us=t["skip"] * 1e6,
            x_skip=t.ratio("skip", "propagate"),
            clip_us=t["clip"] * 1e6,
            x_clip_skip=t.ratio("clip+skip", "clip"),
            torch_x_check=t.ratio("torch fused+check", "torch fused"),
            torch_check_vs_skip=t.ratio("torch fused+check", "skip"),
        )
    return table


def sweep(repeats: int, exponents, out: list) -> Table:
    table = Table(
        f"Sweep: every optimizer, sizes 2^{exponents[0]} to 2^{exponents[-1]}, "
        f"{fastopt.get_num_threads()} threads",
        "Back-to-back calls. GB/s = bytes the update must move / time. Ratios: peer time / "
        "fastopt time.",
    )
    for dtype in (np.float32, np.float64):
        for optimizer in BOOK:
            for e in exponents:
                shapes = [(1 << e,)]
                t = interleaved(cs.contenders(shapes, dtype, optimizer), repeats)
                moved = cs.traffic_bytes(shapes, dtype, optimizer)
                out.append(
                    {
                        "optimizer": optimizer,
                        "dtype": np.dtype(dtype).name,
                        "size": 1 << e,
                        "seconds": dict(t.items()),
                        "gbps": {name: moved / s / 1e9 for name, s in t.items()},
                    }
                )
                table.add(
                    optimizer=optimizer,
                    dtype=np.dtype(dtype).name,
                    size=f"2^{e}",
                    fastopt_us=t["fastopt"] * 1e6,
                    GBps=moved / t["fastopt"] / 1e9,
                    **versus_peers(t),
                )
    return table


def launched_distributed(quick: bool) -> list[Table]:
    """benchmarks/distributed.py under `mpiexec -n 2`, over TCP and over shared memory (Open MPI's
    default on one machine); a note saying why when mpi4py or mpiexec is missing."""
    import os
    import shutil
    import subprocess

    mpiexec = shutil.which("mpiexec", path=str(Path(sys.executable).parent))
    mpiexec = mpiexec or shutil.which("mpiexec")
    try:
        import mpi4py  # noqa: F401
    except ImportError:
        mpiexec = None
    if mpiexec is None:
        return [Table("fastopt.distributed", "skipped: no mpi4py/mpiexec (pip install '.[mpi]')")]
    env = dict(os.environ)
    if hasattr(os, "geteuid") and os.geteuid() == 0:  # Open MPI refuses root unless told
        env.update(OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
    script = Path(__file__).resolve().parent / "distributed.py"
    tables = []
    for btl in ["tcp,self"] + ([] if quick else ["default"]):
        run_env = dict(env)
        if btl != "default":
            run_env["OMPI_MCA_btl"] = btl
        command = [mpiexec, "-n", "2", sys.executable, str(script)] + (["--quick"] if quick else [])
        done = subprocess.run(command, env=run_env, capture_output=True, text=True, timeout=1800)
        output = done.stdout if done.returncode == 0 else done.stdout + done.stderr
        tables.append(Table(f"fastopt.distributed, 2 processes, btl={btl}", output.strip()))
    return tables


def second_order(quick: bool, repeats: int) -> list[Table]:
    """benchmarks/second_order.py's tables (L-BFGS and CG against torch and scipy); a note saying
    why when torch or scipy is missing."""
    try:
        import second_order as module
    except ImportError as error:
        return [Table("fastopt.optim.LBFGS, ConjugateGradient", f"skipped: no {error.name}")]
    return module.tables(quick, repeats)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes: a check, not a result")
    parser.add_argument("--repeats", type=int, default=7, help="timed repetitions (median)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument(
        "--only",
        nargs="*",
        help="run only these sections",
        choices=[
            "loop",
            "large",
            "mixed",
            "precision",
            "compact",
            "networks",
            "overhead",
            "every",
            "optim",
            "nonfinite",
            "torch",
            "distributed",
            "second_order",
            "sweep",
        ],  # fmt: skip
    )
    args = parser.parse_args(argv)
    if args.repeats < 7 and not args.quick:
        parser.error("use at least 7 repetitions for results (or --quick)")
    args.out.mkdir(parents=True, exist_ok=True)

    info = machine()
    print(
        f"fastopt benchmarks: {info['cpu']}, {info['cores']} cores, SIMD {info['simd_level']}, "
        f"{fastopt.get_num_threads()} threads, numpy {info['numpy']}, torch {info['torch']}, "
        f"{info['date']}"
    )
    print(f"Medians of {args.repeats} interleaved repetitions; x_peer = peer time / fastopt time.")
    large = 1 << (20 if args.quick else 24)
    exponents = list(range(10, 17 if args.quick else 25, 2))
    sections = {
        # First: what a user of the book sees, the step inside a training loop.
        "loop": lambda: loop.training_loop(3 if args.quick else 9, args.quick),
        "loop_large": lambda: loop.large_in_company(5 if args.quick else 15, large),
        # Then the microbenchmarks: back-to-back calls, the best case for caches and threads.
        "large": lambda: large_arrays(max(args.repeats, 15), large),
        "mixed": lambda: mixed.mixed_precision(max(args.repeats, 11), large),
        "precision": lambda: precision.precision(args.quick, args.out),
        "compact": lambda: compact.compact_speed(max(args.repeats, 11), large),
        "compact_2": lambda: compact.compact_speed(max(args.repeats, 11), large, threads=2),
        "compact_memory": compact.state_memory,
        "compact_training": lambda: compact_training.compact_training(args.quick, args.out),
        "networks": lambda: networks(args.repeats),
        "overhead": lambda: call_overhead(args.repeats),
        "every": lambda: every_optimizer(args.repeats, 1 << (16 if args.quick else 20)),
        "optim": lambda: torch_family(args.repeats, 1 << (16 if args.quick else 20)),
        "nonfinite": lambda: nonfinite(args.repeats, large),
        "torch": lambda: torch_training.training_loop(2 if args.quick else 7, args.quick, args.out),
        "torch_offload": lambda: torch_training.large_flat(max(args.repeats, 7), args.quick),
        "distributed": lambda: launched_distributed(args.quick),
        "second_order": lambda: second_order(args.quick, args.repeats),
    }
    tables, points = [], []
    for name, section in sections.items():
        if not args.only or name in args.only or name.split("_")[0] in args.only:
            made = section()  # a Table, or a list of them
            for table in made if isinstance(made, list) else [made]:
                tables.append(table)
                table.print()
    if not args.only or "sweep" in args.only:
        tables.append(sweep(args.repeats, exponents, points))
        tables[-1].print()
    write_json(args.out / "benchmark.json", info, tables, points)
    print(f"\nwrote {args.out / 'benchmark.json'}")
    if points:
        try:
            plot_sweep(args.out / "sweep.png", info, points)
            print(f"wrote {args.out / 'sweep.png'}")
        except ImportError:
            print("no plot: pip install '.[bench]' for matplotlib")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
