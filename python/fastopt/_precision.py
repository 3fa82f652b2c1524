"""How half (float16, bfloat16) params are updated: the four options every optimizer has
(master_weights, rounding, compensation, seed), checked together and turned into the core's
Updater options. A module of its own, importing nothing of fastopt: the constructor, the plan,
load_state_dict and fastopt.load all check the same way.
"""

from __future__ import annotations

from typing import Any


def half_options(opt: Any) -> dict[str, Any]:
    """The core's options for half params, checked together. master_weights=None (the default)
    keeps master weights unless stochastic rounding or Kahan compensation is asked for, which
    are the ways of updating a half param without one."""
    direct = opt.rounding != "nearest" or opt.compensation
    master = opt.master_weights
    if master and direct:
        raise ValueError(
            "master_weights=True writes each half param from its float32 master, rounded to "
            "nearest; rounding='stochastic' and compensation=True are for master_weights=False"
        )
    if opt.rounding == "stochastic" and opt.compensation:
        raise ValueError(
            "compensation=True keeps what rounding to nearest loses; use it with "
            "rounding='nearest' (stochastic rounding needs no compensation)"
        )
    return {
        "master_weights": not direct if master is None else master,
        "rounding": opt.rounding,
        "compensation": opt.compensation,
        "seed": opt.seed,
    }


NAMES = ("master_weights", "rounding", "compensation", "seed")


def options_after(opt: Any, hyperparameters: Any) -> dict[str, Any]:
    """half_options() of ``opt``'s settings with ``hyperparameters`` (a state dict's, say) on
    top: what they will be after loading it."""
    from types import SimpleNamespace

    settings = {name: hyperparameters.get(name, getattr(opt, name)) for name in NAMES}
    return half_options(SimpleNamespace(**settings))
