"""state_dict() and load_state_dict(): an optimizer's settings, counters and arrays as plain data.

Loading is all or nothing: every field is checked first, with the checks an assignment makes, and
only then is anything replaced.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from ._checks import step_count
from ._compact import ABSMAX, BLOCK, format_for, raw_dtype
from ._dtypes import is_half
from ._state import HALF_STATES, absmax_names

if TYPE_CHECKING:
    from ._base import Optimizer

# Settings that the state guards (StateLayout): loading sets them together with the arrays.
_STATE_LAYOUT = ("state_format", "compact_min_size")

# Counters that checkpoints written before the state object may hold (the same count as the step).
_LEGACY_COUNTERS = ("_updates",)


def kind(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def state_dict(opt: Optimizer) -> dict[str, Any]:
    hyperparameters = {name: getattr(opt, name) for name in opt._hyperparameters}
    if opt._schedule is not None:
        del hyperparameters["lr"]
    state = opt._state
    return {
        "kind": kind(type(opt)),
        "hyperparameters": hyperparameters,
        "counters": {opt.step_name: state.steps, **state.counters},
        "state": {
            name: {key: np.array(value, copy=True) for key, value in arrays.items()}
            for name, arrays in state.arrays.items()
        },
    }


def _section(state: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    section = state.get(name)
    if not isinstance(section, Mapping):
        raise ValueError(f"the state dict's {name!r} must be a dict; got {type(section).__name__}")
    return section


def _checked_hyperparameters(opt: Optimizer, given: Mapping[str, Any]) -> dict[str, Any]:
    known = opt._hyperparameters
    unknown = sorted(set(given) - set(known), key=repr)
    if unknown:
        raise ValueError(f"unknown hyperparameters {unknown} for {type(opt).__name__}")
    checked = {}
    for name, value in given.items():
        try:
            checked[name] = known[name].check(name, value)
        except (TypeError, ValueError) as error:  # one exception type for any bad field
            raise ValueError(f"hyperparameters[{name!r}]: {error}") from error
    return checked


def _check_half_options(opt: Optimizer, hyperparameters: dict[str, Any]) -> None:
    """The half-precision options as they will be after loading must agree with each other."""
    from ._precision import options_after

    try:
        options_after(opt, hyperparameters)
    except ValueError as error:
        raise ValueError(f"hyperparameters: {error}") from error


def _checked_counters(opt: Optimizer, given: Mapping[str, Any]) -> tuple[int, dict[str, float]]:
    allowed = {opt.step_name, *opt.counters, *_LEGACY_COUNTERS}
    unknown = sorted(set(given) - allowed, key=repr)
    if unknown:
        raise ValueError(f"unknown counters {unknown} for {type(opt).__name__}")
    name = opt.step_name if opt.step_name in given else "_updates"
    if name not in given:
        raise ValueError(f"the counters have no step count {opt.step_name!r}")
    try:
        steps = step_count(f"counters[{name!r}]", given[name])
    except TypeError as error:  # one exception type for any bad field
        raise ValueError(str(error)) from error
    counters = {}
    for counter, start in opt.counters.items():
        value = given.get(counter, start)
        number = isinstance(value, numbers.Real) and not isinstance(value, bool)
        if not (number and math.isfinite(value)):
            raise ValueError(f"counters[{counter!r}] must be a finite number; got {value!r}")
        counters[counter] = float(value)
    return steps, counters


def _array_fits(name: str, value: Any, state_format: str | None) -> bool:
    """A rule's state is float32 or float64, or stored compactly (uint16 bfloat16 bits, uint8
    int8 codes) under that state_format; an absmax float32; a master float32; a compensation
    half."""
    if not isinstance(value, np.ndarray):
        return False
    if name == "master" or name.endswith(ABSMAX):
        return value.dtype == np.float32
    if name == "compensation":
        return is_half(value.dtype)
    compact = {"bfloat16": np.uint16, "int8": np.uint8}.get(state_format or "")
    return value.dtype in (np.float32, np.float64) or (
        compact is not None and value.dtype == compact
    )


def _expected(name: str, state_format: str | None) -> str:
    if name == "master" or name.endswith(ABSMAX):
        return "a float32"
    if name == "compensation":
        return "a float16/bfloat16"
    compact = {"bfloat16": "/uint16 (bfloat16 bits)", "int8": "/uint8 (int8 codes)"}
    return "a float32/float64" + compact.get(state_format or "", "")


def _check_formats(
    opt: Optimizer, arrays: dict[str, dict[Any, np.ndarray]], layout: tuple[Any, int]
) -> None:
    """Each state array is stored as the settings store an array of its size (a float array where
    int8 codes belong would be refused at the next update; here it is refused now), and int8 codes
    come with their absmaxes, one per block of 256 (absmaxes without codes are dropped)."""
    kinds = type(opt)._rule.state_kinds
    for name in opt._state_names:
        codes, absmax = arrays[name], arrays[name + ABSMAX]
        for key, value in codes.items():
            wanted = raw_dtype(format_for(layout[0], kinds.get(name, ""), value.size, layout[1]))
            if (value.dtype.kind == "u") != (wanted is not None) or (
                wanted is not None and value.dtype != wanted
            ):
                stored = "float" if wanted is None else f"{wanted} (compact)"
                raise ValueError(
                    f"state {name!r}[{key!r}] is {value.dtype} but state_format={layout[0]!r} "
                    f"with compact_min_size={layout[1]} stores it as {stored}"
                )
            blocks = -(-value.size // BLOCK)
            if value.dtype == np.uint8 and (key not in absmax or absmax[key].shape != (blocks,)):
                raise ValueError(
                    f"state {name!r}[{key!r}] holds int8 codes but {name + ABSMAX!r}[{key!r}] is "
                    f"not a float32 array of its {blocks} block absmaxes"
                )
            # An absmax is a block's max |value|, never negative when the kernels wrote it: a
            # negative one makes an unsigned state read negative (and params NaN at once). (A NaN
            # one is kept: training that stored a NaN saves it, and resumes as it was.)
            if value.dtype == np.uint8 and np.any(absmax[key] < 0):
                raise ValueError(
                    f"{name + ABSMAX!r}[{key!r}] holds a negative absmax; a block's absmax is its "
                    "largest |value|, never below 0"
                )
        for key in [k for k in absmax if k not in codes or codes[k].dtype != np.uint8]:
            # Absmaxes without codes (an update interrupted while committing new state leaves
            # them): no state to read them with, so they are dropped; the key starts afresh.
            del absmax[key]


def _checked_arrays(
    opt: Optimizer, given: Mapping[str, Any], layout: tuple[Any, int]
) -> dict[str, dict[Any, np.ndarray]]:
    state_format = layout[0]
    names = (*opt._state_names, *absmax_names(opt._state_names), *HALF_STATES)
    unknown = sorted(set(given) - set(names), key=repr)
    if unknown:
        raise ValueError(f"unknown state {unknown} for {kind(type(opt))}")
    first: dict[Any, tuple[Any, Any]] = {}
    arrays: dict[str, dict[Any, np.ndarray]] = {}
    for name in names:
        per_key = given.get(name, {})
        if not isinstance(per_key, Mapping):
            raise ValueError(f"state {name!r} must be a dict {{key: array}}")
        for key, value in per_key.items():
            if not _array_fits(name, value, state_format):
                raise ValueError(
                    f"state {name!r}[{key!r}] must be {_expected(name, state_format)} array"
                )
            if name.endswith(ABSMAX):
                continue
            # The rule's float states of one key share a dtype; every array but an absmax the
            # shape.
            seen = first.setdefault(key, (value.shape, None))
            dtype = None if name in HALF_STATES or value.dtype.kind == "u" else value.dtype
            if seen[0] != value.shape or (dtype is not None and seen[1] not in (None, dtype)):
                raise ValueError(f"the states of key {key!r} disagree in shape or dtype")
            if dtype is not None:
                first[key] = (value.shape, dtype)
        arrays[name] = {key: np.array(value, copy=True) for key, value in per_key.items()}
    _check_formats(opt, arrays, layout)
    return arrays


def load_state_dict(opt: Optimizer, state: Mapping[str, Any]) -> None:
    found = state.get("kind") if isinstance(state, Mapping) else None
    if found != kind(type(opt)):
        raise ValueError(f"this checkpoint is for {found!r}, not {kind(type(opt))!r}")
    hyperparameters = _checked_hyperparameters(opt, _section(state, "hyperparameters"))
    _check_half_options(opt, hyperparameters)
    steps, counters = _checked_counters(opt, _section(state, "counters"))
    layout = (
        hyperparameters.get("state_format", opt.state_format),
        hyperparameters.get("compact_min_size", opt.compact_min_size),
    )
    arrays = _checked_arrays(opt, _section(state, "state"), layout)
    # A schedule (the optimizer's, or one loaded as "lr") is called at the loaded step here,
    # before anything is replaced: if it raises, nothing has changed.
    lr = hyperparameters.get("lr", opt._schedule)
    schedule = lr if callable(lr) else None
    rate = None if schedule is None else _scheduled_rate(opt, schedule, steps)
    # Everything is checked: from here on nothing can fail.
    if schedule is not None:
        hyperparameters.pop("lr", None)
        opt._schedule = schedule
        type(opt).lr.show(opt, rate)
    for name, value in hyperparameters.items():
        if name in _STATE_LAYOUT:  # checked above; the arrays below come in this layout
            opt.__dict__[name] = value
        else:
            setattr(opt, name, value)
    opt._state.arrays = arrays
    opt._state.steps = steps
    opt._state.counters = counters
    opt._forget_plan()


def _scheduled_rate(opt: Optimizer, schedule: Any, steps: int) -> float:
    try:
        return opt._scheduled_rate(schedule, steps)
    except ValueError:
        raise
    except Exception as error:  # the schedule's own error, as a field that does not fit
        raise ValueError(
            f"the lr schedule raised {type(error).__name__} at the loaded step {steps}: {error}"
        ) from error
