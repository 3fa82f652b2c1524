"""The optimizers the demo shows, with the settings it uses for each part."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import fastopt
from fastopt import optim, reference


@dataclass(frozen=True)
class Entry:
    fast: Any  # the fastopt class
    slow: Any  # its plain NumPy reference (the book's code for the book's six)
    bowl: dict = field(default_factory=dict)  # settings on the bowl
    digits: dict = field(default_factory=dict)  # settings for the digits network


# The book's learning rates on the bowl for SGD, Momentum, AdaGrad and Adam (its Figure 6-8);
# the rest are ours, picked so that each converges in the same 30 steps and shows its character.
# Digits: rates that reach >= 0.9 test accuracy in the default epochs (checked by the tests).
OPTIMIZERS: dict[str, Entry] = {
    "SGD": Entry(fastopt.SGD, reference.SGD, {"lr": 0.95}, {"lr": 0.1}),
    "Momentum": Entry(fastopt.Momentum, reference.Momentum, {"lr": 0.1}, {"lr": 0.05}),
    "Nesterov": Entry(fastopt.Nesterov, reference.Nesterov, {"lr": 0.1}, {"lr": 0.05}),
    "AdaGrad": Entry(fastopt.AdaGrad, reference.AdaGrad, {"lr": 1.5}, {"lr": 0.05}),
    "RMSprop": Entry(
        fastopt.RMSprop, reference.RMSprop, {"lr": 0.2, "decay_rate": 0.9}, {"lr": 2e-3}
    ),
    "Adam": Entry(fastopt.Adam, reference.Adam, {"lr": 0.3}, {"lr": 2e-3}),
    "AdamW": Entry(optim.AdamW, reference.optim.AdamW, {"lr": 0.3}, {"lr": 2e-3}),
    "NAdam": Entry(optim.NAdam, reference.optim.NAdam, {"lr": 0.3}, {"lr": 2e-3}),
    "Lion": Entry(optim.Lion, reference.optim.Lion, {"lr": 0.3}, {"lr": 2e-4}),
}
