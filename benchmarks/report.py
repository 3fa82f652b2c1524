"""Tables on the terminal, and the same numbers as JSON and a PNG plot."""

from __future__ import annotations

import json
import os
import platform
from datetime import datetime, timezone
from pathlib import Path

import fastopt
import numpy as np

# Okabe-Ito: distinguishable with every common form of colour blindness.
COLOURS = {
    "fastopt": "#0072B2",
    "ceiling": "#000000",
    "reference": "#E69F00",
    "torch fused": "#009E73",
    "torch foreach": "#CC79A7",
}


def machine() -> dict:
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info = {
        "cpu": model,
        "cores": len(os.sched_getaffinity(0))
        if hasattr(os, "sched_getaffinity")
        else os.cpu_count(),
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d"),
        "simd_level": fastopt.simd_level(),
        "fastopt": fastopt.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
    }
    try:
        import torch

        info["torch"] = torch.__version__
    except ImportError:
        info["torch"] = None
    return info


class Table:
    """Rows of dicts printed as an aligned table under a title, and kept for the JSON."""

    def __init__(self, title: str, note: str = "") -> None:
        self.title, self.note, self.rows = title, note, []

    def add(self, **row) -> None:
        self.rows.append(row)

    def print(self) -> None:
        print(f"\n## {self.title}")
        if self.note:
            print(self.note)
        if not self.rows:
            return
        columns = list(dict.fromkeys(k for row in self.rows for k in row))
        cells = [[_cell(row.get(c)) for c in columns] for row in self.rows]
        widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
        print("| " + " | ".join(c.ljust(w) for c, w in zip(columns, widths)) + " |")
        print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
        for r in cells:
            print("| " + " | ".join(v.rjust(w) for v, w in zip(r, widths)) + " |")


def _cell(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 100 else f"{value:,.0f}"
    return str(value)


def write_json(path: Path, info: dict, tables: list[Table], sweep: list[dict]) -> None:
    payload = {
        "machine": info,
        "tables": [{"title": t.title, "note": t.note, "rows": t.rows} for t in tables],
        "sweep": sweep,
    }
    path.write_text(json.dumps(payload, indent=1))


def save_figure(path: Path, draw, columns: int = 2) -> None:
    """Draw a row of `columns` axes with draw(axes) and save it; nothing without matplotlib (the
    bench extra): the tables are the result, the figure an illustration."""
    try:
        import matplotlib
    except ImportError:
        return
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, columns, figsize=(11, 4))
    draw(axes)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def plot_sweep(path: Path, info: dict, sweep: list[dict]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    optimizers = list(dict.fromkeys(r["optimizer"] for r in sweep))
    dtypes = list(dict.fromkeys(r["dtype"] for r in sweep))
    fig, axes = plt.subplots(
        len(optimizers),
        len(dtypes),
        figsize=(5.2 * len(dtypes), 2.6 * len(optimizers)),
        sharex=True,
        squeeze=False,
    )
    for i, optimizer in enumerate(optimizers):
        for j, dtype in enumerate(dtypes):
            ax = axes[i][j]
            rows = [r for r in sweep if r["optimizer"] == optimizer and r["dtype"] == dtype]
            for name in COLOURS:
                points = [(r["size"], r["gbps"][name]) for r in rows if name in r["gbps"]]
                if not points:
                    continue
                x, y = zip(*points)
                style = dict(color=COLOURS[name], label=name, marker="o", markersize=3)
                if name == "ceiling":
                    style.update(linestyle="--", marker=None, linewidth=1.2)
                ax.plot(x, y, **style)
            ax.set_xscale("log", base=2)
            ax.set_title(f"{optimizer}, {dtype}", fontsize=10)
            ax.grid(True, alpha=0.3)
            if j == 0:
                ax.set_ylabel("GB/s moved")
            if i == len(optimizers) - 1:
                ax.set_xlabel("elements per array")
    axes[0][0].legend(fontsize=8, loc="upper left")
    fig.suptitle(
        f"fastopt update() throughput vs array size: {info['cpu']}, {info['cores']} cores, "
        f"{info['simd_level']}, {info['date']}\n(bytes an update must move / time; the dashed "
        "line is the memory-traffic ceiling: the same loads and stores, trivial arithmetic)",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
