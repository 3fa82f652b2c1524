"""Hyperparameters and options as validated descriptors.

An optimizer's settings are class attributes of these types. Assigning one (in the constructor or
later, ``opt.lr = 0.1``) runs its check and forgets the optimizer's plan (the kernel variant and the
scalars cached for the current settings), so the next update() sees the new value. Nothing else
writes settings: there is no ``__setattr__`` override and no side door.
"""

from __future__ import annotations

import functools
import inspect
from typing import TYPE_CHECKING, Any, Callable

from ._checks import (
    Check,
    count,
    flag,
    learning_rate,
    nonfinite_mode,
    optional_flag,
    optional_positive,
    rounding_mode,
    seed,
    state_format,
)

if TYPE_CHECKING:
    from ._base import Optimizer


class Hyperparameter:
    """A validated setting. ``shared=True``: it feeds state common to all keys (NAdam's betas drive
    mu_product), so it cannot be set per key."""

    def __init__(self, check: Check, *, shared: bool = False) -> None:
        self.check = check
        self.shared = shared
        self.name = ""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    # No __get__ at run time, on purpose: a descriptor with __set__ alone still intercepts every
    # assignment, while a read finds the value in the instance's __dict__ at C speed (a Python
    # __get__ costs ~0.1 us a read, and an update reads several). For the type checker, reads
    # give the value.
    if TYPE_CHECKING:

        def __get__(self, opt: Any, owner: type | None = None) -> Any: ...

    def __delete__(self, opt: Any) -> None:
        raise AttributeError(f"{self.name} is a hyperparameter: assign a new value, do not delete")

    def __set__(self, opt: Any, value: Any) -> None:  # an Optimizer, or a SearchOptimizer
        # The value lives in the instance's __dict__ under the descriptor's own name: the one
        # place that writes it, after the check.
        opt.__dict__[self.name] = self.check(self.name, value)
        opt._forget_plan()


class LearningRate(Hyperparameter):
    """``lr``: a rate, or a schedule (a callable from the number of updates made to a rate).

    With a schedule, ``opt.lr`` reads the rate of the next update, evaluated once when the schedule
    is assigned and once at the start of every update (a schedule may keep state, e.g.
    reduce-on-plateau)."""

    def __init__(self) -> None:
        super().__init__(learning_rate)

    def __set__(self, opt: Optimizer, value: Any) -> None:
        value = self.check(self.name, value)
        schedule = value if callable(value) else None
        if schedule is not None:
            value = opt._scheduled_rate(schedule, opt.steps)  # raises before anything is set
        opt._schedule = schedule
        opt.__dict__[self.name] = value
        opt._forget_plan()

    def show(self, opt: Optimizer, rate: float) -> None:
        """Set the rate on show in ``opt.lr`` (the one in use), keeping the schedule. The plan need
        not be forgotten: with a schedule, scalars are computed at every update."""
        opt.__dict__[self.name] = rate


class Option(Hyperparameter):
    """A keyword-only option every optimizer has (COMMON_OPTIONS); every constructor sets it."""

    def __init__(self, check: Check | None) -> None:
        super().__init__(check or _anything)


def _anything(name: str, value: Any) -> Any:
    return value


class StateLayout(Hyperparameter):
    """A setting that decides how state arrays are stored (state_format, compact_min_size): it
    can change only while the optimizer has no state (before its first update, or after its state
    is cleared), or by loading a checkpoint, whose arrays come in the matching format."""

    def __init__(self, check: Check, default: Any) -> None:
        super().__init__(check, shared=True)
        self.default = default

    def __set__(self, opt: Optimizer, value: Any) -> None:
        value = self.check(self.name, value)
        current = opt.__dict__.get(self.name, self.default)
        if value != current and any(opt._state.arrays.values()):
            raise ValueError(
                f"{self.name} decides how state arrays are stored: it can change only before the "
                f"first update (or after clearing the state), or by loading a checkpoint; this "
                f"optimizer already has state in {self.name}={current!r}"
            )
        opt.__dict__[self.name] = value
        opt._forget_plan()


# The keyword-only options every optimizer has, after its own parameters: name -> (default, check).
# per_key's check needs the class (which hyperparameters exist): _per_key.PerKey does it.
# master_weights to seed say how half (float16, bfloat16) params are updated, state_format and
# compact_min_size how states are stored; see Optimizer.
COMMON_OPTIONS: dict[str, tuple[Any, Check | None]] = {
    "max_grad_norm": (None, optional_positive),
    "per_key": (None, None),
    "nonfinite": ("propagate", nonfinite_mode),
    "master_weights": (None, optional_flag),
    "rounding": ("nearest", rounding_mode),
    "compensation": (False, flag),
    "seed": (0, seed),
    "state_format": (None, state_format),
    "compact_min_size": (4096, count),
}


def with_common_options(init: Callable[..., None]) -> Callable[..., None]:
    """Give a constructor the keyword-only options every optimizer has (COMMON_OPTIONS), and start
    the optimizer's state before the class's own __init__ assigns its hyperparameters."""

    @functools.wraps(init)
    def __init__(self: Optimizer, *args: Any, **kwargs: Any) -> None:
        given = {name: kwargs.pop(name) for name in COMMON_OPTIONS if name in kwargs}
        if "_state" not in self.__dict__:  # the outermost constructor of a chain of super() calls
            self._begin()
        init(self, *args, **kwargs)
        # Options passed here win; an option a subclass passed to super().__init__ is kept; the
        # rest get their defaults.
        for name, (default, _) in COMMON_OPTIONS.items():
            if name in given:
                setattr(self, name, given[name])
            elif name not in self.__dict__:
                setattr(self, name, default)
        from ._precision import half_options

        half_options(self)  # options that contradict each other fail here, not at the update

    signature = inspect.signature(init)
    options = [
        inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default)
        for name, (default, _) in COMMON_OPTIONS.items()
    ]
    __init__.__signature__ = signature.replace(  # type: ignore[attr-defined]
        parameters=[*signature.parameters.values(), *options]
    )
    return __init__
