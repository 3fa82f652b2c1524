"""A/B timing of two fastopt builds, side by side: is build B as fast as build A?

    python benchmarks/ab.py --a /work/venv-old/bin/python --b /work/venv/bin/python \\
        [--repeats N] [--blocks N] [--quick] [--only SECTION ...] [--out ab.json]

Install each build in its own venv and pass their interpreters. A persistent worker runs in each
(this file with --worker, JSON lines over stdin and stdout) and builds, through fastopt's public
API and contenders.py, a step for every fastopt row of benchmarks/run.py. For each group of cases
(as run.py groups them), both workers build fresh arrays and pick a batch size (>= 2 ms after
warm-up); then in each round the parent asks A then B (B then A the next round) to time one batch
of each case. A row gives each side's median seconds per call and b_over_a, the median over rounds
of the per-round ratio B/A, so machine drift cancels; rows over 1 + --tolerance are flagged.
Run A against A first: the spread of b_over_a with identical builds is the noise floor. Close
other work first: other processes on the cores cost more than 2%. These are back-to-back
microbenchmarks (the best case for a thread pool), not steps inside a training loop.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import subprocess
import sys
import time
from contextlib import nullcontext
from functools import lru_cache, partial
from pathlib import Path

HERE = Path(__file__).resolve().parent
SECTIONS = ("large", "networks", "overhead", "every", "optim", "nonfinite", "sweep")


# --- worker: runs inside each build's interpreter ------------------------------------------------


def section_groups(section: str, quick: bool) -> list[list[tuple[str, int | None, object]]]:
    """The cases of a section, in groups that are built and timed together (as run.py does).

    A case is (name, threads or None for fastopt's default, step factory). Groups bound the
    memory: the largest holds ~1.3 GB of arrays per worker, as run.py's own largest does.
    """
    import contenders as cs
    import fastopt
    import numpy as np
    from run import BOOK, MULTI_LAYER_NET_EXTEND, TWO_LAYER_NET

    large = 1 << (20 if quick else 24)
    medium = 1 << (16 if quick else 20)
    f32, f64 = np.float32, np.float64
    tiny = [(8,)] * 22
    step = cs.fastopt_step

    def shared(make):  # one step timed with both 1 and 2 threads: half the memory
        return lru_cache(maxsize=None)(make)

    if section == "large":
        adam = shared(partial(step, [(large,)], f32, "Adam"))
        ceiling = shared(partial(cs.ceiling_step, [(large,)], f32, "Adam"))
        return [
            [(f"{what} f32 {large:,} {count}t", count, make) for count in (1, 2)]
            for what, make in (("Adam", adam), ("ceiling(2 states)", ceiling))
        ]
    if section == "networks":
        nets = (("TwoLayerNet", TWO_LAYER_NET), ("MultiLayerNetExtend", MULTI_LAYER_NET_EXTEND))
        return [[(f"Adam f64 {n}", None, partial(step, s, f64, "Adam")) for n, s in nets]]
    if section == "overhead":
        return [[(f"{o} f64 22x8", None, partial(step, tiny, f64, o)) for o in BOOK]]
    if section == "every":
        every = partial(step, [(medium,)], f32)
        return [[(f"{o} f32 {medium:,} 1t", 1, partial(every, o)) for o in BOOK]]
    if section == "optim":
        classes = [(n, getattr(fastopt.optim, n)) for n in fastopt.optim.__all__]
        small, big = (
            partial(cs._numpy_step, shapes=tiny, dtype=f64),
            partial(cs._numpy_step, shapes=[(medium,)], dtype=f32),
        )
        return [
            [(f"optim.{n} f64 22x8", None, partial(small, c)) for n, c in classes],
            [(f"optim.{n} f32 {medium:,} 1t", 1, partial(big, c)) for n, c in classes],
        ]
    if section == "nonfinite":
        skip, clip = {"nonfinite": "skip"}, {"max_grad_norm": 1e9}
        variants = {"propagate": {}, "skip": skip, "clip": clip, "clip+skip": {**clip, **skip}}
        groups, thread_label = [], {1: " 1t", 2: " 2t", None: ""}
        for opt, shapes, dtype, counts, label in (
            ("Adam", [(large,)], f32, (1, 2), f"f32 {large:,}"),
            ("SGD", [(large,)], f32, (1,), f"f32 {large:,}"),
            ("Adam", TWO_LAYER_NET, f64, (None,), "f64 TwoLayerNet"),
            ("Adam", tiny, f64, (1,), "f64 22x8"),
        ):
            makes = {
                v: shared(partial(step, shapes, dtype, opt, **kw)) for v, kw in variants.items()
            }
            groups.append(
                [
                    (f"{opt} {label}{thread_label[c]} {v}", c, makes[v])
                    for c in counts
                    for v in variants
                ]
            )
        return groups
    if section == "sweep":
        exponents = (10, 13, 16) if quick else (10, 16, 22)
        return [
            [
                (f"{o} {np.dtype(d).name} 2^{e}", None, partial(step, [(1 << e,)], d, o))
                for e in exponents
            ]
            for d in (f32, f64)
            for o in BOOK
        ]
    raise ValueError(section)


def worker() -> int:
    """Serve requests, one JSON object per line: info, build, calibrate, time, drop."""
    sys.path.insert(0, str(HERE))
    sys.modules["torch"] = None  # contenders.py then skips torch: no peers here, nor their threads
    import fastopt
    from harness import _batch_size
    from report import machine

    reply, sys.stdout = sys.stdout, sys.stderr  # stray prints must not corrupt the protocol
    steps: dict[str, tuple] = {}

    def threads(count):
        return fastopt.num_threads(count) if count else nullcontext()

    for line in sys.stdin:
        request = json.loads(line)
        op, answer = request["op"], {}
        if op == "info":
            answer = {**machine(), "fastopt_file": fastopt.__file__, "executable": sys.executable}
        elif op == "build":
            groups = section_groups(request["section"], request["quick"])
            steps = {name: [make(), count, 0] for name, count, make in groups[request["group"]]}
            answer = {"cases": list(steps), "groups": len(groups)}
        elif op == "calibrate":
            for entry in steps.values():
                with threads(entry[1]):
                    entry[2] = _batch_size(entry[0])
            answer = {"batches": {name: entry[2] for name, entry in steps.items()}}
        elif op == "time":
            step, count, calls = steps[request["case"]]
            gc.disable()  # a collection lands in one side's batch at random: noise
            with threads(count):
                start = time.perf_counter()
                for _ in range(calls):
                    step()
                answer = {"seconds": (time.perf_counter() - start) / calls}
            gc.enable()
        elif op == "drop":
            steps = {}
            gc.collect()
        print(json.dumps(answer), file=reply, flush=True)
    return 0


# --- parent: drives both workers -----------------------------------------------------------------


class Worker:
    def __init__(self, python: str) -> None:
        command = [python, str(Path(__file__).resolve()), "--worker"]
        self.process = subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )

    def send(self, **request) -> None:
        self.process.stdin.write(json.dumps(request) + "\n")
        self.process.stdin.flush()

    def receive(self) -> dict:
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError(f"worker {self.process.args[0]} died (see its stderr above)")
        return json.loads(line)

    def ask(self, **request) -> dict:
        self.send(**request)
        return self.receive()

    def close(self) -> None:
        self.process.stdin.close()
        self.process.wait(timeout=60)


def run_group(a: Worker, b: Worker, section: str, group: int, args) -> tuple[list[dict], int]:
    """Time one group of a section; returns its rows and the section's number of groups.

    Each block builds the group's arrays afresh: where arrays sit in physical memory (cache set
    conflicts, huge pages) moves one build's speed by up to ~10% at cache-sized arrays, for as
    long as they live. Fresh arrays per block make that noise cancel instead of look like a change.
    """
    samples: dict[str, tuple[list[float], list[float]]] = {}
    batches: dict[str, list[int]] = {}
    turn = 0
    for block in range(args.blocks):
        for w in (a, b):  # build in parallel (filling arrays is not timed)
            w.send(op="build", section=section, group=group, quick=args.quick)
        built_a, built_b = a.receive(), b.receive()
        names = [n for n in built_a["cases"] if n in built_b["cases"]]
        for name in set(built_a["cases"]) ^ set(built_b["cases"]) if block == 0 else ():
            print(f"  skipped {name!r}: only in {'A' if name in built_a['cases'] else 'B'}")
        calibrated = [w.ask(op="calibrate")["batches"] for w in (a, b)]  # one at a time
        for name in names:
            samples.setdefault(name, ([], []))
            batches.setdefault(name, []).append([c[name] for c in calibrated])
        for _ in range(-(-args.repeats // args.blocks)):  # ceil: every block as long
            turn += 1
            order = ((a, 0), (b, 1)) if turn % 2 else ((b, 1), (a, 0))
            for name in names:
                for w, side in order:
                    samples[name][side].append(w.ask(op="time", case=name)["seconds"])
        for w in (a, b):
            w.ask(op="drop")
    rows = []
    for name, (sa, sb) in samples.items():
        ratios = [y / x for x, y in zip(sa, sb)]
        median = statistics.median
        rows.append(
            dict(
                section=section,
                case=name,
                a_us=median(sa) * 1e6,
                b_us=median(sb) * 1e6,
                b_over_a=median(ratios),
                ratio_iqr=quartiles(ratios),
                calls_per_batch=batches[name],
                a_seconds=sa,
                b_seconds=sb,
            )
        )
    return rows, min(built_a["groups"], built_b["groups"])


def quartiles(values: list[float]) -> list[float]:
    """The first and third quartiles: how far single rounds scatter (the noise)."""
    q = statistics.quantiles(values, n=4) if len(values) > 1 else values * 3
    return [q[0], q[2]]


def print_rows(rows: list[dict], tolerance: float) -> None:
    width = max(len(r["case"]) for r in rows)
    print(f"| {'case'.ljust(width)} | {'a_us':>9} | {'b_us':>9} | b_over_a | rounds' q1-q3 |")
    print(f"|{'-' * (width + 2)}|{'-' * 11}|{'-' * 11}|----------|---------------|")
    for r in rows:
        flag = "  <-- B slower" if r["b_over_a"] > 1 + tolerance else ""
        q1, q3 = r["ratio_iqr"]
        print(
            f"| {r['case'].ljust(width)} | {r['a_us']:9.2f} | {r['b_us']:9.2f} "
            f"| {r['b_over_a']:8.3f} | {q1:6.3f}-{q3:6.3f} |{flag}"
        )


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--a", help="python of build A (the baseline)")
    parser.add_argument("--b", help="python of build B (the candidate)")
    parser.add_argument("--quick", action="store_true", help="smaller sizes: a check, not a result")
    parser.add_argument("--repeats", type=int, help="rounds per case (default 30, 12 with --quick)")
    parser.add_argument("--blocks", type=int, help="fresh arrays this often (default 5, 3 quick)")
    parser.add_argument("--only", nargs="*", choices=SECTIONS, help="run only these sections")
    parser.add_argument("--tolerance", type=float, default=0.02, help="flag b_over_a > 1 + this")
    parser.add_argument("--out", type=Path, help="write the results as JSON here")
    args = parser.parse_args(argv)
    if args.worker:
        return worker()
    if not args.a or not args.b:
        parser.error("--a and --b are required")
    args.repeats = args.repeats or (12 if args.quick else 30)
    args.blocks = min(args.blocks or (3 if args.quick else 5), args.repeats)
    started, load = time.perf_counter(), os.getloadavg()
    a, b = Worker(args.a), Worker(args.b)
    try:
        info = {"a": a.ask(op="info"), "b": b.ask(op="info"), "load_before": load}
        for side in ("a", "b"):
            i = info[side]
            print(
                f"{side.upper()}: fastopt {i['fastopt']} at {i['fastopt_file']}, SIMD "
                f"{i['simd_level']}, numpy {i['numpy']}, python {i['python']}"
            )
        i = info["a"]
        print(
            f"{i['cpu']}, {i['cores']} cores, {i['date']}, load average {load[0]:.2f}"
            + (" (busy: expect noise)" if load[0] > 0.5 else "")
        )
        print(
            f"Back-to-back microbenchmarks, A and B interleaved: {args.repeats} rounds per case "
            f"in {args.blocks} blocks of fresh arrays. b_over_a = median over rounds of B/A; "
            f"flagged when > {1 + args.tolerance:.2f}. q1-q3: quartiles of the rounds' B/A."
        )
        rows = []
        for section in SECTIONS:
            if not args.only or section in args.only:
                print(f"\n## {section}")
                section_rows, group, groups = [], 0, 1
                while group < groups:
                    found, groups = run_group(a, b, section, group, args)
                    section_rows, group = section_rows + found, group + 1
                print_rows(section_rows, args.tolerance)
                rows += section_rows
    finally:
        for w in (a, b):
            w.close()
    ratios = sorted(r["b_over_a"] for r in rows)
    flagged = sum(r > 1 + args.tolerance for r in ratios)
    info["seconds"], info["load_after"] = time.perf_counter() - started, os.getloadavg()
    print(
        f"\n{len(rows)} cases in {info['seconds']:.0f} s: b_over_a min {ratios[0]:.3f}, median "
        f"{statistics.median(ratios):.3f}, max {ratios[-1]:.3f}; {flagged} flagged"
    )
    if args.out:
        payload = {"machine": info, "options": {k: v for k, v in vars(args).items() if k != "out"}}
        args.out.write_text(json.dumps({**payload, "rows": rows}, indent=1))
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
