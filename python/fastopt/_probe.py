"""A benchmark helper: the memory-traffic ceiling of the fused kernels on this machine."""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

import numpy as np

from . import _core
from ._spec import rule
from ._state import absmax_names
from ._types import Grads


class MemoryTrafficProbe:
    """Makes exactly the loads and stores of a rule with ``num_states`` state arrays.

    It reads the param, the grad and every state, and writes the param and every state, with trivial
    arithmetic (``x = x + g``), through the same kernel loop, chunking and threads as the real
    optimizers. Its speed is the most those rules can reach here. Adam has two states (m, v); SGD
    none; Momentum, Nesterov, AdaGrad and RMSprop one. Not an optimizer: the values it leaves are
    meaningless.
    """

    def __init__(self, num_states: int, **half: Any) -> None:
        """``half``: the core's options for half params (master_weights, rounding,
        compensation) and for compact state (state_format, compact_min_size), so that the probe
        makes the same loads, stores and conversions as an optimizer updating that way."""
        if num_states not in (0, 1, 2, 3):
            raise ValueError(f"num_states must be 0, 1, 2 or 3; got {num_states!r}")
        index, names = rule(f"traffic{num_states}").variant({})
        self._updater = _core.Updater(index, names, **half)
        self.state: dict[str, dict[Hashable, np.ndarray]] = {
            name: {} for name in (*names, *absmax_names(names), "master", "compensation")
        }

    def update(self, params: dict[Hashable, np.ndarray], grads: Grads) -> None:
        self._updater.run(params, grads, self.state, ())

    def __getattr__(self, name: str) -> dict[Hashable, np.ndarray]:
        # probe.s0, probe.s1, ...: the state dicts, as an optimizer shows its states.
        try:
            return self.__dict__["state"][name]
        except KeyError:
            raise AttributeError(name) from None
