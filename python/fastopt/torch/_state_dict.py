"""fastopt.torch's state in torch's format, both ways.

Shown: each engine array as a tensor over the same memory (``as_tensor``). Loaded: each tensor of
torch's format, from fastopt.torch or torch.optim, as the array the engine stores for that state
(``stored``), then the whole checkpoint through the engine's own all-or-nothing load. torch's
state names are the engine's (exp_avg, momentum_buffer, ...); ``step`` and NAdam's
``mu_product`` are per param in torch and are kept per param here.
"""

from __future__ import annotations

from collections import defaultdict
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from .. import _tensors
from .._checks import step_count
from .._compact import ABSMAX, format_for, quantize, raw_dtype
from .._dtypes import is_bfloat16
from .._persist import kind

if TYPE_CHECKING:
    from ._optimizer import Optimizer


def as_tensor(array: np.ndarray) -> torch.Tensor:
    """A tensor over the array's memory: bfloat16 bits (compact states) and ml_dtypes bfloat16
    (a bfloat16 param's compensation) as torch.bfloat16."""
    if array.dtype == np.uint16 or is_bfloat16(array.dtype):
        return torch.from_numpy(array.view(np.int16)).view(torch.bfloat16)
    return torch.from_numpy(array)


def _numpy(value: Any, index: Any, name: str) -> np.ndarray:
    if not isinstance(value, torch.Tensor):
        raise ValueError(f"state[{index!r}][{name!r}] must be a tensor; got {type(value).__name__}")
    array = _tensors.as_array(value, f"state[{index!r}]", name, writes=False)
    assert array is not None
    return array


# int8 codes are shown as "<state>_int8" (uint8), beside "<state>_absmax": under torch's own name
# torch.optim would load them as float values without a word.
INT8 = "_int8"
# The largest step count loaded: a whole number a float64 still counts exactly (torch's float32
# step tensor counts exactly only to 2**24, in torch as here).
MAX_STEP = 2**53


def counts_shown(step: int, counters: dict[str, float]) -> dict[str, Any]:
    """A param's ``step`` as torch keeps it (a tensor of torch's scalar dtype, its
    _get_scalar_dtype) and its counters (NAdam's mu_product) in float64, as the engine keeps them,
    so a resume is exact (torch casts them on load)."""
    dtype = torch.float64 if torch.get_default_dtype() == torch.float64 else torch.float32
    shown = {"step": torch.tensor(float(step), dtype=dtype)}
    for name, value in counters.items():
        shown[name] = torch.tensor(value, dtype=torch.float64)
    return shown


def shown_name(name: str, array: np.ndarray) -> str:
    """The name a state array has in torch's format."""
    return name + INT8 if array.dtype == np.uint8 and not name.endswith(ABSMAX) else name


def packed(state: dict[Any, dict[str, Any]], counters: tuple[str, ...]) -> dict[Any, Any]:
    """state_dict()'s state: each param's own entry, with its own ``step`` (and counters) tensor.
    step() shares one tensor per cohort; torch.optim, loading this, counts each in place."""
    own = ("step", *counters)
    return {
        index: {name: v.clone() if name in own else v for name, v in entry.items()}
        for index, entry in state.items()
    }


def stored(opt: Optimizer, name: str, value: Any, param: torch.Tensor, index: Any) -> Any:
    """(engine name, array) the engine stores for state ``name`` of ``param``, from a tensor of
    torch's format: a float state in the param's compute type (float64 for float64 params, else
    float32) or, under state_format, compactly (a float tensor is rounded or quantized here:
    then the array is (codes, absmax)); int8 codes only where the engine keeps int8; absmaxes
    and masters in float32; a compensation like the param."""
    engine = opt._engine
    codes = name.endswith(INT8)
    base = name[: -len(INT8)] if codes else name
    array = _numpy(value, index, name)
    if base.endswith(ABSMAX):
        return base, np.array(array, np.float32)  # the engine's load checks the block count
    if array.shape != tuple(param.shape):
        raise ValueError(
            f"state[{index!r}][{name!r}] has shape {array.shape} but its param has shape "
            f"{tuple(param.shape)}"
        )
    if base == "master":
        return base, np.array(array, np.float32)
    if base == "compensation":
        return base, np.array(_numpy(value.to(param.dtype), index, name))
    kinds = type(engine)._rule.state_kinds
    stored_as = format_for(engine.state_format, kinds.get(base, ""), array.size,
                           engine.compact_min_size)  # fmt: skip
    if codes and (stored_as != "int8" or array.dtype != np.uint8):
        raise ValueError(
            f"state[{index!r}][{name!r}] holds int8 codes, but this optimizer (state_format="
            f"{engine.state_format!r}, compact_min_size={engine.compact_min_size}) keeps {base!r} "
            f"of {array.size} elements as {stored_as or 'float'}: load it with the settings it "
            "was saved with"
        )
    if codes:
        return base, np.array(array)  # the engine's load checks the absmaxes beside them
    wanted = raw_dtype(stored_as)
    if wanted is None:
        compute = np.float64 if param.dtype == torch.float64 else np.float32
        return base, np.array(array, compute)
    if stored_as == "bfloat16":  # round to nearest even, as the kernels store
        return base, value.detach().to(torch.bfloat16).view(torch.int16).numpy().view(
            np.uint16
        ).copy()
    return base, quantize(np.asarray(array, np.float32), kinds.get(base) == "signed")


def load(opt: Optimizer, state_dict: Any) -> None:
    """torch's load_state_dict with the engine's arrays behind it; all or nothing."""
    groups, saved = opt.param_groups, state_dict["param_groups"]
    if len(groups) != len(saved):
        raise ValueError("loaded state dict has a different number of parameter groups")
    keys: dict[Any, int] = {}
    for group, saved_group in zip(groups, saved):
        if len(group["params"]) != len(saved_group["params"]):
            raise ValueError(
                "loaded state dict contains a parameter group that doesn't match the size of "
                "optimizer's group"
            )
        for param, index in zip(group["params"], saved_group["params"]):
            keys[index] = opt._keys[id(param)]
    checkpoint, steps, counters, given = _engine_checkpoint(opt, state_dict["state"], keys)
    before = opt.state, opt.param_groups, opt._kept
    try:
        torch.optim.Optimizer.load_state_dict(opt, state_dict)
        for index, group in enumerate(opt.param_groups):
            opt._check_states(index, opt._settings(index, group))
        _check_complete(opt, given)
        opt._engine.load_state_dict(checkpoint)
    except BaseException:
        opt.state, opt.param_groups, opt._kept = before
        raise
    opt._steps, opt._counters = steps, counters
    shown: defaultdict[torch.Tensor, dict[str, Any]] = defaultdict(dict)
    for key, step in steps.items():
        shown[opt._params[key]] = counts_shown(step, counters.get(key, {}))
    opt.state = shown
    opt._linked = set()
    opt._link(range(len(opt._params)))


def _check_complete(opt: Optimizer, given: dict[Any, set[str]]) -> None:
    """Each param with state has every state its group keeps, its step and its counters, as
    torch.optim's step would need them: a missing one would silently start afresh."""
    needed = set(opt._kept) | set(type(opt._engine).counters)
    if type(opt).keeps_step:
        needed.add("step")
    for index, names in given.items():
        missing = sorted(needed - names)
        if missing:
            raise ValueError(f"state[{index!r}] has no {missing}: the state dict is incomplete")


def _engine_checkpoint(
    opt: Optimizer, given: Any, keys: dict[Any, int]
) -> tuple[dict[str, Any], dict[int, int], dict[int, dict[str, float]], dict[Any, set[str]]]:
    """The engine's checkpoint of torch's per-param state, the per-param counts, and the names
    each param's entry has (engine names, for _check_complete)."""
    engine = opt._engine
    arrays: dict[str, dict[int, Any]] = {name: {} for name in engine.raw_state}
    steps: dict[int, int] = {}
    counters: dict[int, dict[str, float]] = {}
    present: dict[Any, set[str]] = {}
    for index, entry in given.items():
        key = keys.get(index)
        if key is None:
            raise ValueError(f"the state dict has state for param {index!r}, which no group holds")
        if not entry:  # torch's defaultdict makes {} for a param only looked at: no state
            continue
        param = opt._params[key]
        names = present[index] = set()
        for name, value in entry.items():
            if name == "step":
                steps[key] = step_count(f"state[{index!r}]['step']", float(value))
                if steps[key] > MAX_STEP:
                    raise ValueError(f"state[{index!r}]['step'] = {steps[key]} is beyond 2**53")
            elif name in engine.counters:
                counters.setdefault(key, {})[name] = float(value)
            elif value is None:  # torch's SGD keeps momentum_buffer=None without momentum
                continue
            else:
                name, array = stored(opt, name, value, param, index)
                if isinstance(array, tuple):  # int8 codes and their absmaxes
                    array, arrays.setdefault(name + ABSMAX, {})[key] = array
                arrays.setdefault(name, {})[key] = array
            names.add(name)
        # torch's SGD keeps no step: a param with a momentum buffer has made its first step.
        steps.setdefault(key, 1 if any(key in a for a in arrays.values()) else 0)
        if engine.counters:
            counters.setdefault(key, dict(engine.counters))
    checkpoint = {
        "kind": kind(type(engine)),
        "hyperparameters": {},
        "counters": {engine.step_name: max(steps.values(), default=0)},
        "state": arrays,
    }
    return checkpoint, steps, counters, present
