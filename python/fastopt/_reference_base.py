"""The machinery of the NumPy references of fastopt.optim: state dicts and the walk over keys."""

from __future__ import annotations

from collections.abc import Hashable

import numpy as np

from ._types import Grads, Params


class _Reference:
    """Holds the state dicts and walks the keys; subclasses define `step(key, p, g)`."""

    _state_names: tuple[str, ...] = ()
    _initial_state = 0.0
    # Set by every subclass's __init__.
    maximize: bool
    weight_decay: float

    def _start(self) -> None:
        self.steps = 0
        for name in self._state_names:
            setattr(self, name, {})

    def state(self, name: str, key: Hashable, p: np.ndarray) -> np.ndarray:
        states = getattr(self, name)
        if key not in states:
            states[key] = np.full_like(p, self._initial_state)
        return states[key]

    def update(self, params: Params, grads: Grads) -> None:
        self.steps += 1
        self.begin_step()
        for key in params:
            p = params[key]
            g = np.asarray(grads[key], dtype=p.dtype)
            g = -g if self.maximize else g
            self.step(key, p, g)
        self.end_step()

    def step(self, key: Hashable, p: np.ndarray, g: np.ndarray) -> None:
        """Update `p` in place from `g`, its (sign-corrected) gradient, and the state at `key`."""
        raise NotImplementedError

    def begin_step(self) -> None:
        pass

    def end_step(self) -> None:
        pass

    def l2(self, p: np.ndarray, g: np.ndarray) -> np.ndarray:
        """torch's coupled weight decay: grad.add(param, alpha=weight_decay)."""
        return g + self.weight_decay * p if self.weight_decay != 0 else g
