"""A benchmark helper: the memory-traffic ceiling of the fused kernels on this machine."""

from __future__ import annotations

from ._base import Optimizer, kernel


class MemoryTrafficProbe(Optimizer):
    """Makes exactly the loads and stores of a rule with ``num_states`` state arrays.

    It reads the param, the grad and every state, and writes the param and every state, with trivial
    arithmetic (``x = x + g``), through the same kernel loop, chunking and threads as the real
    optimizers. Its speed is the most those rules can reach here. Adam has two states (m, v); SGD
    none; Momentum, Nesterov, AdaGrad and RMSprop one. Not an optimizer: the values it leaves are
    meaningless.
    """

    def __init__(self, num_states: int) -> None:
        if num_states not in (0, 1, 2, 3):
            raise ValueError(f"num_states must be 0, 1, 2 or 3; got {num_states!r}")
        self._kernel_index = kernel(f"traffic{num_states}")[0]  # type: ignore[misc]
        self._state_names = tuple(f"s{i}" for i in range(num_states))  # type: ignore[misc]
        self._init_state()

    def _step_scalars(self) -> tuple[float, ...]:
        return ()
