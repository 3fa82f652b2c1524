"""fastopt.torch in a real torch training loop, and as the CPU-offload step of a large model
(python benchmarks/run.py --only torch; needs torch, and adabelief-pytorch for AdaBelief's peer).

In a training loop (measured where users run it): each contender trains its own copy of the same
model (same initial weights, same batches), forward + backward + step, and the contenders take
turns round by round (A B C A B C ...), so drift hits them alike. A round is a few iterations per
contender; the step's time and the iteration's are the medians within the round, and each ratio
is the median over rounds of the per-round ratio. Models:
  transformer  torch.nn.TransformerEncoder, 2 layers, d_model 128, 4 heads, feed-forward 512,
               a token embedding (1,000) and a linear head; batch 16 x 64 tokens (0.5M params)
  mlp          784-1024-1024-10 with ReLU, batch 128 (1.9M params)
Contenders: fastopt.torch; torch.optim with fused=True (Adam, AdamW, SGD, Adagrad: torch has no
other fused CPU kernel), foreach=True, and foreach=False (single-tensor); Lion has no torch peer,
AdaBelief's is its authors' adabelief-pytorch. Threads: 1 and N (torch's intra-op pool and
fastopt's alike).

The large flat model (back to back): ten float32 tensors of 10M elements (100M params), the
optimizer step alone, as when a GPU model's step is offloaded to the CPU, beside the ceiling: the
memory-traffic probe over the same bytes (fastopt._probe).
"""

from __future__ import annotations

import copy
import os
import time

import numpy as np
from harness import Timings, interleaved
from report import Table, save_figure

ALGORITHMS = ["SGD", "Adam", "AdamW", "Adagrad", "RMSprop", "Adadelta", "Adamax", "NAdam",
              "RAdam", "Lion", "AdaBelief"]  # fmt: skip
SETTINGS = {"SGD": {"lr": 0.01, "momentum": 0.9}, "Lion": {"lr": 1e-4}}
FUSED = ("SGD", "Adam", "AdamW", "Adagrad")
TORCH_MODES = ("torch fused", "torch foreach", "torch single")


def _models(torch):
    class Transformer(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embed = torch.nn.Embedding(1000, 128)
            layer = torch.nn.TransformerEncoderLayer(128, 4, 512, dropout=0.0, batch_first=True)
            self.encoder = torch.nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
            self.head = torch.nn.Linear(128, 1000)

        def forward(self, tokens):
            return self.head(self.encoder(self.embed(tokens)))

    def transformer_batch(generator):
        tokens = torch.randint(0, 1000, (16, 64), generator=generator)
        return tokens, torch.randint(0, 1000, (16 * 64,), generator=generator)

    def transformer_loss(model, batch):
        logits = model(batch[0])
        return torch.nn.functional.cross_entropy(logits.reshape(-1, 1000), batch[1])

    mlp = lambda: torch.nn.Sequential(  # noqa: E731
        torch.nn.Linear(784, 1024), torch.nn.ReLU(), torch.nn.Linear(1024, 1024), torch.nn.ReLU(),
        torch.nn.Linear(1024, 10),
    )  # fmt: skip

    def mlp_batch(generator):
        return torch.randn(128, 784, generator=generator), torch.randint(0, 10, (128,))

    def mlp_loss(model, batch):
        return torch.nn.functional.cross_entropy(model(batch[0]), batch[1])

    return {
        "transformer": (Transformer, transformer_batch, transformer_loss),
        "mlp": (mlp, mlp_batch, mlp_loss),
    }


def _optimizers(torch, algorithm: str):
    """{contender: optimizer factory(params)}; peers missing here are left out."""
    import fastopt.torch as fastopt_torch

    settings = SETTINGS.get(algorithm, {"lr": 1e-3})
    found = {"fastopt": lambda ps: getattr(fastopt_torch, algorithm)(ps, **settings)}
    theirs = getattr(torch.optim, algorithm, None)
    if theirs is not None:
        modes = {"foreach": {"foreach": True}, "single": {"foreach": False}}
        if algorithm in FUSED:
            modes = {"fused": {"fused": True}, **modes}
        for mode, flags in modes.items():
            found[f"torch {mode}"] = lambda ps, f=flags: theirs(ps, **settings, **f)
    elif algorithm == "AdaBelief":
        try:
            from adabelief_pytorch import AdaBelief
        except ImportError:
            return found
        found["adabelief-pytorch"] = lambda ps: AdaBelief(ps, print_change_log=False, **settings)
    return found


def _train_side_by_side(torch, model_spec, algorithm, rounds, iterations):
    make, batch_of, loss_of = model_spec
    torch.manual_seed(0)
    base = make()
    runs = {}
    for name, factory in _optimizers(torch, algorithm).items():
        model = copy.deepcopy(base)
        runs[name] = (model, factory(model.parameters()), torch.Generator().manual_seed(1))
    steps = {name: [] for name in runs}
    whole = {name: [] for name in runs}
    for _ in range(rounds):
        for name, (model, opt, generator) in runs.items():
            step_times, iteration_times = [], []
            for _ in range(iterations):
                begin = time.perf_counter()
                batch = batch_of(generator)
                opt.zero_grad()
                loss_of(model, batch).backward()
                middle = time.perf_counter()
                opt.step()
                end = time.perf_counter()
                step_times.append(end - middle)
                iteration_times.append(end - begin)
            steps[name].append(float(np.median(step_times)))
            whole[name].append(float(np.median(iteration_times)))
    return Timings(steps), Timings(whole)


def _without_torch(title: str) -> Table | None:
    try:
        import torch  # noqa: F401
    except ImportError:
        return Table(title, "skipped: torch is not installed (pip install torch)")
    return None


def training_loop(rounds: int, quick: bool, out_dir=None) -> list[Table]:
    skipped = _without_torch("fastopt.torch in a torch training loop")
    if skipped is not None:
        return [skipped]
    import torch
    from contenders import threads

    counts = sorted({1, os.cpu_count() or 1})
    tables = []
    for model_name, spec in _models(torch).items():
        params = sum(p.numel() for p in spec[0]().parameters())
        table = Table(
            f"fastopt.torch in a torch training loop: {model_name} ({params / 1e6:.1f}M params)",
            "In a training loop (forward, backward, step), contenders interleaved round by round; "
            "step_ms and iteration_ms are fastopt.torch's; x_* = that contender's step time / "
            "fastopt.torch's (median of per-round ratios); share = step / iteration.",
        )
        algorithms = ["Adam", "Lion"] if quick else ALGORITHMS
        for count in counts:
            for algorithm in algorithms:
                with threads(count):
                    steps, whole = _train_side_by_side(
                        torch, spec, algorithm, rounds, 3 if quick else 5
                    )
                table.add(
                    algorithm=algorithm,
                    threads=count,
                    step_ms=steps["fastopt"] * 1e3,
                    share=steps["fastopt"] / whole["fastopt"],
                    iteration_ms=whole["fastopt"] * 1e3,
                    x_torch_fused=steps.ratio("torch fused", "fastopt"),
                    x_torch_foreach=steps.ratio("torch foreach", "fastopt"),
                    x_torch_single=steps.ratio("torch single", "fastopt"),
                    x_peer=steps.ratio("adabelief-pytorch", "fastopt"),
                    iteration_x_best_torch=min(
                        (r for n in TORCH_MODES if (r := whole.ratio(n, "fastopt")) is not None),
                        default=None,
                    ),
                )
        tables.append(table)
    if out_dir is not None:
        save_figure(out_dir / "torch_step.png", lambda axes: draw(axes, tables))
    return tables


def draw(axes, tables) -> None:
    """Per model: each peer's step time / fastopt.torch's, per algorithm; bars at 1 thread,
    diamonds at the most threads (the README's figure, docs/images/torch_step.png)."""
    peers = [
        ("x_torch_fused", "torch fused"),
        ("x_torch_foreach", "torch foreach"),
        ("x_torch_single", "torch single-tensor"),
        ("x_peer", "adabelief-pytorch"),
    ]
    for axis, table in zip(axes, tables):
        rows = table.rows if isinstance(table, Table) else table["rows"]
        title = table.title if isinstance(table, Table) else table["title"]
        most = max(row["threads"] for row in rows)
        names = list(dict.fromkeys(row["algorithm"] for row in rows))
        for shift, (column, label) in enumerate(peers):
            for count, marker in ((1, None), (most, "D")):
                xs, ys = [], []
                for row in rows:
                    if row["threads"] == count and row.get(column):
                        xs.append(names.index(row["algorithm"]) + (shift - 1.5) * 0.2)
                        ys.append(row[column])
                if marker is None:
                    axis.bar(xs, ys, width=0.2, label=f"{label}, 1 thread", color=f"C{shift}")
                elif count != 1:
                    axis.scatter(xs, ys, marker=marker, s=14, color="k", zorder=3,
                                 label=f"{most} threads" if shift == 0 else None)  # fmt: skip
        axis.axhline(1.0, color="k", linewidth=0.8)
        axis.set_xticks(range(len(names)), names, rotation=60, fontsize=8)
        axis.set(yscale="log", ylabel="peer step time / fastopt.torch's",
                 title=title.split(": ")[1] + ", in a training loop")  # fmt: skip
    axes[0].legend(fontsize=7)


def large_flat(repeats: int, quick: bool) -> Table:
    """The offload case: the step alone over 100M float32 params, back to back."""
    skipped = _without_torch("The CPU-offload case")
    if skipped is not None:
        return skipped
    import fastopt.torch as fastopt_torch
    import torch
    from contenders import ceiling_step, threads, with_threads

    count, size = (4, 2**20) if quick else (10, 10_000_000)
    shapes = [(size,)] * count
    generator = torch.Generator().manual_seed(0)
    table = Table(
        f"The CPU-offload case: Adam over {count * size / 1e6:.0f}M float32 params",
        "Back to back: the step alone, no model. GBps counts Adam's 28 bytes per element "
        "(param, grad and two states read; param and states written). ceiling = the memory-traffic "
        "probe over the same bytes; x_* = that contender's time / fastopt.torch's.",
    )
    runs = {}
    makers = {
        "fastopt": lambda ps: fastopt_torch.Adam(ps, lr=1e-3),
        "torch fused": lambda ps: torch.optim.Adam(ps, lr=1e-3, fused=True),
        "torch foreach": lambda ps: torch.optim.Adam(ps, lr=1e-3, foreach=True),
        "torch single": lambda ps: torch.optim.Adam(ps, lr=1e-3, foreach=False),
    }
    for name, make in makers.items():
        params = [torch.randn(size, generator=generator).requires_grad_() for _ in range(count)]
        for p in params:
            p.grad = torch.randn(size, generator=generator)
        runs[name] = make(params).step
    runs["ceiling"] = ceiling_step(shapes, np.float32, "Adam")
    moved = 28 * count * size
    for threads_count in sorted({1, os.cpu_count() or 1}):
        with threads(threads_count):
            t = interleaved({n: with_threads(s, threads_count) for n, s in runs.items()}, repeats)
        table.add(
            threads=threads_count,
            fastopt_ms=t["fastopt"] * 1e3,
            fastopt_GBps=moved / t["fastopt"] / 1e9,
            ceiling_GBps=moved / t["ceiling"] / 1e9,
            pct_of_ceiling=100 / t.ratio("fastopt", "ceiling"),
            x_torch_fused=t.ratio("torch fused", "fastopt"),
            x_torch_foreach=t.ratio("torch foreach", "fastopt"),
            x_torch_single=t.ratio("torch single", "fastopt"),
        )
    return table
