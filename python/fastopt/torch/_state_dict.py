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


def stored(opt: Optimizer, name: str, value: Any, param: torch.Tensor, index: Any) -> Any:
    """The array the engine stores for state ``name`` of ``param``, from a tensor of torch's
    format: a float state in the param's compute type (float64 for float64 params, else float32)
    or, under state_format, compactly (a float tensor is rounded or quantized here); int8 absmaxes
    and masters in float32; a compensation like the param."""
    engine = opt._engine
    array = _numpy(value, index, name)
    if name.endswith(ABSMAX) or name == "master":
        return np.array(array, np.float32)
    if name == "compensation":
        return np.array(_numpy(value.to(param.dtype), index, name))
    kinds = type(engine)._rule.state_kinds
    stored_as = format_for(engine.state_format, kinds.get(name, ""), array.size,
                           engine.compact_min_size)  # fmt: skip
    wanted = raw_dtype(stored_as)
    if wanted is None or array.dtype == wanted:
        if wanted is None and array.dtype.kind == "u":
            return array  # codes where floats belong: the engine's load names the mismatch
        compute = np.float64 if param.dtype == torch.float64 else np.float32
        return np.array(array, wanted or compute)
    if stored_as == "bfloat16":  # round to nearest even, as the kernels store
        return value.detach().to(torch.bfloat16).view(torch.int16).numpy().view(np.uint16).copy()
    codes, absmax = quantize(np.asarray(array, np.float32), kinds.get(name) == "signed")
    return codes, absmax


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
    checkpoint, steps, counters = _engine_checkpoint(opt, state_dict["state"], keys)
    before = opt.state, opt.param_groups
    try:
        torch.optim.Optimizer.load_state_dict(opt, state_dict)
        for index, group in enumerate(opt.param_groups):
            opt._settings(index, group)
        opt._engine.load_state_dict(checkpoint)
    except BaseException:
        opt.state, opt.param_groups = before
        raise
    opt._steps, opt._counters = steps, counters
    shown: defaultdict[torch.Tensor, dict[str, Any]] = defaultdict(dict)
    dtype = torch.float64 if torch.get_default_dtype() == torch.float64 else torch.float32
    for key, step in steps.items():
        entry = shown[opt._params[key]]
        entry["step"] = torch.tensor(float(step), dtype=dtype)
        for counter, value in counters.get(key, {}).items():
            entry[counter] = torch.tensor(value, dtype=dtype)
    opt.state = shown
    opt._linked = set()
    opt._link(range(len(opt._params)))


def _engine_checkpoint(
    opt: Optimizer, given: Any, keys: dict[Any, int]
) -> tuple[dict[str, Any], dict[int, int], dict[int, dict[str, float]]]:
    """The engine's checkpoint of torch's per-param state, and the per-param counts."""
    engine = opt._engine
    arrays: dict[str, dict[int, Any]] = {name: {} for name in engine.raw_state}
    steps: dict[int, int] = {}
    counters: dict[int, dict[str, float]] = {}
    for index, entry in given.items():
        key = keys.get(index)
        if key is None:
            raise ValueError(f"the state dict has state for param {index!r}, which no group holds")
        param = opt._params[key]
        for name, value in entry.items():
            if name == "step":
                steps[key] = step_count(f"state[{index!r}]['step']", float(value))
            elif name in engine.counters:
                counters.setdefault(key, {})[name] = float(value)
            elif value is not None:  # torch's SGD keeps momentum_buffer=None without momentum
                array = stored(opt, name, value, param, index)
                if isinstance(array, tuple):  # int8 codes and their absmaxes
                    array, arrays.setdefault(name + ABSMAX, {})[key] = array
                arrays.setdefault(name, {})[key] = array
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
    return checkpoint, steps, counters
