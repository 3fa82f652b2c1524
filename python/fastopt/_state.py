"""An optimizer's state: its per-key arrays and its counters, in one object.

``OptimizerState.arrays`` maps each state name of the optimizer's rule to a dict {key: array};
that dict of dicts is what the compiled core receives and fills. The attributes users know (the
book's ``opt.m``, ``opt.v``; torch's ``opt.exp_avg``; ``opt.iter`` and ``opt.steps``) are views
of it, declared on the class with ``state()`` and ``counter()``.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

import numpy as np

from ._checks import step_count
from ._compact import ABSMAX, CompactStateView

Arrays = dict[str, dict[Hashable, np.ndarray]]

# The arrays half params keep beside the rule's states (see Optimizer's master_weights): the
# float32 master copy, and the Kahan compensation.
HALF_STATES = ("master", "compensation")


def absmax_names(names: tuple[str, ...]) -> tuple[str, ...]:
    """The dicts of int8 absmaxes of the states ``names`` (state_format="int8")."""
    return tuple(name + ABSMAX for name in names)


class OptimizerState:
    """The per-key arrays (created lazily by the core, at a key's first update) and the counters.

    ``steps`` counts the updates made (skipped ones excluded); it is the step the per-step scalars
    and schedules are computed from. ``counters`` holds what else an algorithm carries from step to
    step (NAdam's mu_product).
    """

    # No __slots__: its __dict__ is where the core commits the counters after the kernels
    # (Updater.run's commit), in the same C call, so that no signal handler can run in between.

    def __init__(self, names: tuple[str, ...], counters: dict[str, float]) -> None:
        self.arrays: Arrays = {name: {} for name in (*names, *absmax_names(names), *HALF_STATES)}
        self.steps = 0
        self.counters = dict(counters)

    def copy(self) -> OptimizerState:
        """A state with its own counters and its own dict of states, over the same per-key dicts
        (what copy.copy of an optimizer shares)."""
        other = OptimizerState((), self.counters)
        other.arrays = dict(self.arrays)
        other.steps = self.steps
        return other


class _Entry:
    """``opt.<name>``: one entry of the state object's dict ``arrays`` (a state: {key: array}) or
    ``counters`` (a counter an algorithm carries between steps, NAdam's mu_product). Assigning a
    new dict to a state (the book's way of resetting, ``opt.v = {}``) replaces it; the core checks
    its contents at the next update."""

    def __init__(self, section: str, convert: Any) -> None:
        self.section, self.convert, self.name = section, convert, ""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, opt: Any, owner: type | None = None) -> Any:
        if opt is None:
            return self
        return getattr(opt._state, self.section)[self.name]

    def __set__(self, opt: Any, value: Any) -> None:
        getattr(opt._state, self.section)[self.name] = self.convert(value)


class StateView(_Entry):
    """A rule's state, {key: array}. Under state_format its arrays are raw (codes, bfloat16 bits):
    it shows them as read-only float32 values (a CompactStateView), and ``opt.raw_state`` holds
    the raw ones."""

    def __init__(self) -> None:
        super().__init__("arrays", _as_given)

    def __get__(self, opt: Any, owner: type | None = None) -> Any:
        if opt is None:
            return self
        arrays = opt._state.arrays
        if opt.__dict__.get("state_format") is None:
            return arrays[self.name]
        signed = type(opt)._rule.state_kinds.get(self.name) == "signed"
        absmax = arrays.setdefault(self.name + ABSMAX, {})
        return CompactStateView(arrays[self.name], absmax, signed)

    def __set__(self, opt: Any, value: Any) -> None:
        arrays = opt._state.arrays
        arrays[self.name] = value
        if isinstance(value, dict) and not value:  # a reset (opt.v = {}): its absmaxes too
            arrays[self.name + ABSMAX] = {}


class HalfStateView(_Entry):
    """``opt.master`` and ``opt.compensation_buffer``: the arrays half params keep (not states
    of the rule, so not among a class's state names)."""

    def __init__(self, name: str = "") -> None:
        super().__init__("arrays", _as_given)
        self.state_name = name

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = self.state_name or name


class CounterView(_Entry):
    def __init__(self) -> None:
        super().__init__("counters", float)


def _as_given(value: Any) -> Any:
    return value


class StepView:
    """``opt.steps`` (and the book's ``opt.iter``): the number of updates made."""

    def __get__(self, opt: Any, owner: type | None = None) -> Any:
        if opt is None:
            return self
        return opt._state.steps

    def __set__(self, opt: Any, value: Any) -> None:
        opt._state.steps = step_count("steps", value)
        opt._forget_plan()


def state() -> Any:
    """Declare a state view on an optimizer class: ``m = state()``."""
    return StateView()


def counter() -> Any:
    """Declare a counter view on an optimizer class: ``mu_product = counter()``."""
    return CounterView()
