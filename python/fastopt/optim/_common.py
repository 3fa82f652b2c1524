"""What the torch-style classes share: their kinds of hyperparameter and the two weight decays."""

from __future__ import annotations

from typing import Any

from .._checks import betas, finite_nonnegative, flag
from .._settings import Hyperparameter


# torch's rules for each kind of hyperparameter.
def nonnegative() -> Hyperparameter:
    return Hyperparameter(finite_nonnegative)


def on_off() -> Hyperparameter:
    return Hyperparameter(flag)


def beta_pair() -> Hyperparameter:
    return Hyperparameter(betas)


def l2(h: Any) -> dict[str, bool]:
    """The L2 flag of a class whose weight decay is coupled (g + wd*p) unless decoupled."""
    return {"weight_decay": h.weight_decay != 0 and not getattr(h, "decoupled_weight_decay", False)}
