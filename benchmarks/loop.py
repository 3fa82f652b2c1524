"""The `loop` section: the optimizer step where users run it, inside a real training loop.

Every contender trains its own copy of a network (networks.py): a forward and backward pass in
NumPy, with BLAS at its default thread count, then one optimizer step on the fresh grads. So each
step starts with cold caches and with other thread pools still busy: OpenBLAS keeps a thread
spinning on every core it used, libgomp (torch's OpenMP) likewise after its own steps. Contenders
take turns, a few iterations each per round; a ratio is the median over rounds of the per-round
ratio of median step times, as in harness.py.

A second table times single large steps in company: each step right after a NumPy matmul and a
torch OpenMP kernel, the way an offloaded optimizer step of a large model runs.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import contenders as cs
import fastopt
import numpy as np
from fastopt import reference
from fastopt._probe import MemoryTrafficProbe
from harness import Timings
from networks import NETS, Net, loss_and_grads
from report import Table

BOOK = ("SGD", "Momentum", "Nesterov", "AdaGrad", "RMSprop", "Adam")
Step = Callable[[dict, dict], None]


def _factories(optimizer: str, threads: int) -> dict[str, Callable[[dict], Step | None]]:
    """How to make each contender's step over some params: fastopt on 1 and on `threads` threads,
    the memory-traffic ceiling, the book's NumPy class, and torch (when installed) stepping the
    same memory."""

    def alternating(params: dict) -> Step:
        """fastopt, on 1 thread and on `threads` threads by turns, step after step: neighbouring
        steps share the machine's state, so their ratio is the sharpest measure of what the
        threads change (contenders' turns differ by more than the 5% in question). Each step's
        thread count and time go to step.log."""
        opt = getattr(fastopt, optimizer)()
        log: list[tuple[int, float]] = []

        def step(p: dict, g: dict) -> None:
            count = threads if len(log) % 2 else 1
            start = time.perf_counter()
            with fastopt.num_threads(count):
                opt.update(p, g)
            log.append((count, time.perf_counter() - start))

        step.log = log  # type: ignore[attr-defined]
        return step

    found = {
        "fastopt": alternating,
        "ceiling": _ceiling(threads, cs.NUM_STATES[optimizer]),
        "book": lambda params: getattr(reference, optimizer)().update,
    }
    if cs.torch is not None:
        for mode in ("fused", "foreach"):
            found[f"torch {mode}"] = lambda params, mode=mode: _torch_stepper(
                params, optimizer, mode
            )
    return found


def _ceiling(threads: int, num_states: int) -> Callable[[dict], Step]:
    """The memory-traffic probe on `threads` threads, stepping the real params: it adds the grad
    to the param, so its trainer's grads are zeroed first (in place, where backward wrote them,
    so they are as hot as real grads). Its network then stays as initialised, and sane."""

    def factory(params: dict) -> Step:
        probe = MemoryTrafficProbe(num_states)

        def step(p: dict, g: dict) -> None:
            with fastopt.num_threads(threads):
                probe.update(p, g)

        step.prepare = lambda g: [v.fill(0) for v in g.values()]  # type: ignore[attr-defined]
        return step

    return factory


def _torch_stepper(params: dict, optimizer: str, mode: str) -> Step | None:
    """torch.optim over tensors sharing the params' memory; None where torch lacks the mode."""
    torch = cs.torch
    name, kwargs = cs.TORCH_EQUIVALENT[optimizer]
    keys = list(params)
    try:
        opt = getattr(torch.optim, name)(
            [torch.from_numpy(params[k]) for k in keys], **kwargs, **{mode: True}
        )
    except (RuntimeError, TypeError, ValueError):
        return None
    tensors = opt.param_groups[0]["params"]

    def step(p: dict, g: dict) -> None:
        for tensor, key in zip(tensors, keys):
            tensor.grad = torch.from_numpy(g[key])
        opt.step()

    return step


class _Trainer:
    """One contender training the network with its own optimizer and state.

    Every contender steps the same params, in turn: the arrays' addresses then do not differ
    between contenders (4 KiB aliasing between a kernel's streams made two copies of one network
    step at speeds 10-25% apart)."""

    def __init__(self, net: Net, data, params: dict, make_step: Callable[[dict], Step | None]):
        self.net, self.data, self.params = net, data, params
        self.step_fn = make_step(params)
        self.calls = 0

    def turn(self, iterations: int) -> tuple[float, float]:
        """Median seconds of the step, and of a whole iteration, over `iterations` iterations."""
        steps, totals = [], []
        for _ in range(iterations):
            x, y = self.data[self.calls % len(self.data)]
            self.calls += 1
            start = time.perf_counter()
            _, grads = loss_and_grads(self.net, self.params, x, y)
            if hasattr(self.step_fn, "prepare"):
                self.step_fn.prepare(grads)
            middle = time.perf_counter()
            self.step_fn(self.params, grads)
            end = time.perf_counter()
            steps.append(end - middle)
            totals.append(end - start)
        return float(np.median(steps)), float(np.median(totals))


def _train_side_by_side(net: Net, optimizer: str, threads: int, rounds: int, iterations: int):
    """{contender: [(step s, iteration s) per round]}, the contenders taking turns each round;
    fastopt as "fastopt@1" and "fastopt@N" from its alternating steps, and the ratios of its
    neighbouring steps (N threads / 1) under "pairs"."""
    data = net.data(seed=0, batches=16)
    params = net.params(seed=1)
    made = {
        name: _Trainer(net, data, params, f) for name, f in _factories(optimizer, threads).items()
    }
    trainers = {name: trainer for name, trainer in made.items() if trainer.step_fn is not None}
    # Warm-up: first touch of the state, torch's first step, and the dozen steps in which
    # fastopt's pool learns whether sharing pays here (a training loop runs thousands).
    for trainer in trainers.values():
        trainer.turn(12)
    log = trainers["fastopt"].step_fn.log  # type: ignore[attr-defined]
    log.clear()
    samples: dict[str, list] = {name: [] for name in trainers if name != "fastopt"}
    samples.update({"fastopt@1": [], f"fastopt@{threads}": [], "pairs": []})
    for order in _orders(list(trainers), rounds):
        for name in order:
            _, iteration = turn = trainers[name].turn(iterations)
            if name != "fastopt":
                samples[name].append(turn)
                continue
            # The turn's first step follows another contender's turn (other state in the caches):
            # it is left out, and every neighbouring pair counts, either way round.
            steps = log[1:]
            for count in (1, threads):
                times = [t for c, t in steps if c == count]
                samples[f"fastopt@{count}"].append((float(np.median(times)), iteration))
            samples["pairs"] += [
                (b[1] / a[1]) if b[0] == threads else (a[1] / b[1])
                for a, b in zip(steps, steps[1:])
            ]
            log.clear()
    return samples


def _orders(names: list[str], rounds: int) -> list[list[str]]:
    """A shuffled order per round (seeded): a contender's turn inherits what the turn before it
    left (torch's OpenMP threads spinning, the allocator's state), so no contender may always
    follow the same one; in a fixed or rotated order, fastopt@1 always followed torch and measured
    up to 30% slower than the same code on fastopt@N's turn."""
    rng = np.random.default_rng(0)
    return [list(rng.permutation(names)) for _ in range(rounds)]


def training_loop(rounds: int, quick: bool) -> Table:
    threads = fastopt.get_num_threads()
    n = f"fastopt@{threads}"
    table = Table(
        f"In a training loop: the step after each forward and backward pass (NumPy, BLAS at its "
        f"default threads), fastopt on 1 and {threads} threads",
        "Measured in the loop, contenders taking turns. N_vs_1: median of (step on N threads / "
        "the step before it, on 1), fastopt's steps alternating between the two (target <= "
        "1.05). x_book, x_torch_*: their step time / fastopt@N's. pct_ceiling: the memory-traffic "
        "probe's step time / fastopt@N's, in the same loop; x_book_bound: the book's step / the "
        "probe's, the most any step that moves these bytes could gain here. share: fastopt's "
        "step / its whole iteration. epoch_s: iteration time x batches per epoch (MNIST: 600 of "
        "100).",
    )
    for net in NETS:
        iterations = (3 if quick else 4) if net.name == "wide MLP" else (4 if quick else 8)
        for optimizer in ("SGD", "Adam") if quick else BOOK:
            s = _train_side_by_side(net, optimizer, threads, rounds, iterations)
            med = {name: np.median(np.array(v), axis=0) for name, v in s.items() if name != "pairs"}
            t = Timings({name: [step for step, _ in v] for name, v in s.items() if name != "pairs"})
            table.add(
                network=net.name,
                optimizer=optimizer,
                step_us_1=med["fastopt@1"][0] * 1e6,
                step_us_N=med[n][0] * 1e6,
                N_vs_1=float(np.median(s["pairs"])),
                book_us=med["book"][0] * 1e6,
                x_book=t.ratio("book", n),
                x_book_bound=t.ratio("book", "ceiling"),
                pct_ceiling=100 * (t.ratio("ceiling", n) or 0),
                x_torch_fused=t.ratio("torch fused", n),
                x_torch_foreach=t.ratio("torch foreach", n),
                share=med[n][0] / med[n][1],
                epoch_s=med[n][1] * net.batches_per_epoch,
                book_epoch_s=med["book"][1] * net.batches_per_epoch,
            )
    return table


def _company(size: int) -> Callable[[], None]:
    """Other pools' work, as between optimizer steps: a NumPy matmul (OpenBLAS's threads) and,
    with torch, an elementwise kernel on its OpenMP threads."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((384, 384))
    work = [lambda: a @ a]
    if cs.torch is not None:
        x = cs.torch.ones(size // 4)
        work.append(lambda: x.mul_(1.0000001))
    return lambda: [w() for w in work] and None


def large_in_company(rounds: int, size: int) -> Table:
    threads = fastopt.get_num_threads()
    table = Table(
        f"Large arrays in company: Adam, float32, {size:,} elements, single steps each right after "
        "a NumPy matmul and a torch OpenMP kernel",
        f"Measured as single calls in company, contenders taking turns. Targets: fastopt@{threads} "
        f">= 90% of the {threads}-thread ceiling and >= 1.0x torch fused.",
    )
    company = _company(size)
    steps = {
        f"{name}@{count}": cs.with_threads(step, count)
        for count in sorted({1, threads})
        for name, step in cs.contenders([(size,)], np.float32, "Adam", peers=False).items()
    }
    fused = cs.torch_step([(size,)], np.float32, "Adam", "fused")
    if fused is not None:
        steps[f"torch fused@{threads}"] = fused
    for step in steps.values():  # warm-up, and the pool's learning (see _train_side_by_side)
        for _ in range(12):
            company()
            step()
    samples: dict[str, list[float]] = {name: [] for name in steps}
    for order in _orders(list(steps), rounds):
        for name in order:
            step = steps[name]
            company()
            start = time.perf_counter()
            step()
            samples[name].append(time.perf_counter() - start)
    t = Timings(samples)
    moved = cs.traffic_bytes([(size,)], np.float32, "Adam")
    for count in sorted({1, threads}):
        me = f"fastopt@{count}"
        table.add(
            threads=count,
            fastopt_ms=t[me] * 1e3,
            GBps=moved / t[me] / 1e9,
            pct_of_ceiling=100 / t.ratio(me, f"ceiling@{count}"),
            pct_of_N_ceiling=100 / t.ratio(me, f"ceiling@{threads}"),
            x_torch_fused=t.ratio(f"torch fused@{threads}", me),
            x_1_thread=t.ratio("fastopt@1", me),
        )
    return table
