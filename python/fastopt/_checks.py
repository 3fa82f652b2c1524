"""What makes a hyperparameter valid: one function per kind of value, shared by every optimizer.

Each check takes the argument's name (for the message) and the value, and returns the value as it is
stored (a float for numbers) or raises TypeError (not a number at all) or ValueError (out of range),
naming the argument.
"""

from __future__ import annotations

import math
import numbers
from typing import Any, Callable

Check = Callable[[str, Any], Any]


def _real(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number; got {type(value).__name__}")
    return float(value)


def real(name: str, value: Any) -> float:
    """Any finite real number."""
    number = _real(name, value)
    if not math.isfinite(number):
        raise ValueError(f"{name} must be finite; got {value!r}")
    return number


def finite_nonnegative(name: str, value: Any) -> float:
    """A learning rate or a weight decay: finite and >= 0."""
    number = _real(name, value)
    if not (math.isfinite(number) and number >= 0.0):
        raise ValueError(f"{name} must be a finite number >= 0; got {value!r}")
    return number


def positive(name: str, value: Any) -> float:
    """A denominator guard such as eps: finite and > 0."""
    number = _real(name, value)
    if not (math.isfinite(number) and number > 0.0):
        raise ValueError(f"{name} must be a finite number > 0; got {value!r}")
    return number


def optional_positive(name: str, value: Any) -> float | None:
    """None (off), or a finite number > 0."""
    return None if value is None else positive(name, value)


def unit_interval(name: str, value: Any) -> float:
    """A decay factor such as momentum or beta1: in [0, 1)."""
    number = _real(name, value)
    if not 0.0 <= number < 1.0:
        raise ValueError(f"{name} must be in [0, 1); got {value!r}")
    return number


def closed_unit_interval(name: str, value: Any) -> float:
    """A decay factor that may be 1, such as Adadelta's rho: in [0, 1]."""
    number = _real(name, value)
    if not 0.0 <= number <= 1.0:
        raise ValueError(f"{name} must be in [0, 1]; got {value!r}")
    return number


def betas(name: str, value: Any) -> tuple[float, float]:
    """A pair (beta1, beta2), each in [0, 1)."""
    if not isinstance(value, (tuple, list)) or len(value) != 2:
        raise TypeError(f"{name} must be a pair (beta1, beta2); got {value!r}")
    return (unit_interval(f"{name}[0]", value[0]), unit_interval(f"{name}[1]", value[1]))


def flag(name: str, value: Any) -> bool:
    """An on/off option such as amsgrad."""
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be True or False; got {value!r}")
    return value


def learning_rate(name: str, value: Any) -> Any:
    """A learning rate: finite and >= 0, or a schedule (a callable from step to rate)."""
    return value if callable(value) else finite_nonnegative(name, value)


def step_count(name: str, value: Any) -> int:
    """A step counter: an int >= 0 (or a float with an integral value, as JSON may give)."""
    if isinstance(value, bool) or not isinstance(value, (numbers.Integral, float)):
        raise TypeError(f"{name} must be a whole number >= 0; got {type(value).__name__}")
    if isinstance(value, float) and not (math.isfinite(value) and value.is_integer()):
        raise ValueError(f"{name} must be a whole number >= 0; got {value!r}")
    if value < 0:
        raise ValueError(f"{name} must be a whole number >= 0; got {value!r}")
    return int(value)


# What update() does when a grad holds inf or nan (every optimizer's keyword-only nonfinite=).
NONFINITE_MODES = ("propagate", "skip", "raise")


def nonfinite_mode(name: str, value: Any) -> str:
    """One of NONFINITE_MODES."""
    if not isinstance(value, str) or value not in NONFINITE_MODES:
        raise ValueError(f"{name} must be one of {sorted(NONFINITE_MODES)}; got {value!r}")
    return value


def optional_flag(name: str, value: Any) -> bool | None:
    """True, False, or None (decided per param: master_weights)."""
    return None if value is None else flag(name, value)


ROUNDING_MODES = ("nearest", "stochastic")


def rounding_mode(name: str, value: Any) -> str:
    """How a half param without master weights is rounded: one of ROUNDING_MODES."""
    if not isinstance(value, str) or value not in ROUNDING_MODES:
        raise ValueError(f"{name} must be one of {list(ROUNDING_MODES)}; got {value!r}")
    return value


def _int_below(name: str, value: Any, bits: int) -> int:
    """An int (not a bool) in [0, 2**bits)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int; got {type(value).__name__}")
    number = int(value)
    if not 0 <= number < 2**bits:
        raise ValueError(f"{name} must be in [0, 2**{bits}); got {value!r}")
    return number


def seed(name: str, value: Any) -> int:
    """A random seed: an int in [0, 2**64)."""
    return _int_below(name, value, 64)


STATE_FORMATS = (None, "bfloat16", "int8")


def state_format(name: str, value: Any) -> str | None:
    """How the rule's states are stored: None (the compute type), "bfloat16" or "int8"."""
    if value is not None and not (isinstance(value, str) and value in STATE_FORMATS):
        raise ValueError(f"{name} must be one of {list(STATE_FORMATS)}; got {value!r}")
    return value


def count(name: str, value: Any) -> int:
    """A number of elements: an int in [0, 2**63) (the core's sizes are signed 64-bit)."""
    return _int_below(name, value, 63)


def positive_count(name: str, value: Any) -> int:
    """A number of iterations or evaluations: an int >= 1."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int; got {type(value).__name__}")
    if value < 1:
        raise ValueError(f"{name} must be >= 1; got {value!r}")
    return int(value)


def optional_positive_count(name: str, value: Any) -> int | None:
    return None if value is None else positive_count(name, value)


def line_search(name: str, value: Any) -> str | None:
    """The line search of L-BFGS: None (fixed steps) or "strong_wolfe"."""
    if value is not None and value != "strong_wolfe":
        raise ValueError(f"{name} must be None or 'strong_wolfe'; got {value!r}")
    return value
