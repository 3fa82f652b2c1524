"""The state of a line-search method as plain data, and back: state_dict(), load_state_dict().

A slot-held vector is shown as one array per key, shaped like its param; a history (a list of
slots) as one array per key of shape (pairs, *param shape), oldest first. Counters are plain
numbers (and L-BFGS's list rho), which a checkpoint's JSON manifest keeps exactly.

A loaded state is checked at once (kind, settings, counters, and that its arrays agree with each
other), and is placed into the slots at the next step, which checks it against that step's params:
before then there are no params to check the keys, shapes and dtype against.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from ._search import SearchOptimizer

_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def kind(opt: SearchOptimizer) -> str:
    return f"fastopt.optim.{type(opt).__name__}"


def state_dict(opt: SearchOptimizer) -> dict[str, Any]:
    return {
        "kind": kind(opt),
        "hyperparameters": {name: getattr(opt, name) for name in opt._hyperparameters},
        "counters": {name: _copy(getattr(opt, name)) for name in opt._counters},
        "state": _copy(opt._pending) if opt._pending is not None else _arrays(opt),
    }


def _arrays(opt: SearchOptimizer) -> dict[str, dict[Any, np.ndarray]]:
    """The slot-held state, per key, shaped like the params."""
    arrays: dict[str, dict[Any, np.ndarray]] = {}
    for name in opt._vectors:
        slot = getattr(opt, name)
        arrays[name] = {} if slot is None else _shaped(opt, [slot], stacked=False)
    for name in opt._stacks:
        slots = getattr(opt, name)
        arrays[name] = _shaped(opt, slots, stacked=True) if slots else {}
    return arrays


def _shaped(opt: SearchOptimizer, slots: list[int], *, stacked: bool) -> dict[Any, np.ndarray]:
    """{key: array}: one slot shaped like each param, or several stacked on a first axis."""
    pieces = [opt._search.read(slot) for slot in slots]
    out = {}
    for k, entry in enumerate(opt._entries):
        arrays = [p[k].reshape(entry.shape, order=entry.order) for p in pieces]
        out[entry.key] = np.stack(arrays) if stacked else arrays[0]
    return out


def load_state_dict(opt: SearchOptimizer, state: Mapping[str, Any]) -> None:
    if not isinstance(state, Mapping):
        raise TypeError(f"state must be a mapping; got {type(state).__name__}")
    if state.get("kind") != kind(opt):
        raise ValueError(f"this state is of {state.get('kind')!r}, not {kind(opt)!r}")
    settings = _checked_settings(opt, state.get("hyperparameters"))
    counters = _checked_counters(opt, state.get("counters"), settings)
    arrays = _checked_arrays(opt, state.get("state"), counters)
    for name, value in settings.items():  # every check passed: now change
        setattr(opt, name, value)
    opt._reset_state()
    opt._slots.end(set())
    opt.__dict__.update(counters)
    opt._pending = arrays


def _checked_settings(opt: SearchOptimizer, settings: Any) -> dict[str, Any]:
    if not isinstance(settings, Mapping) or set(settings) != set(opt._hyperparameters):
        raise ValueError(f"hyperparameters must hold exactly {list(opt._hyperparameters)}")
    descriptors = {name: getattr(type(opt), name) for name in opt._hyperparameters}
    return {name: descriptors[name].check(name, settings[name]) for name in opt._hyperparameters}


def _checked_counters(
    opt: SearchOptimizer, counters: Any, settings: dict[str, Any]
) -> dict[str, Any]:
    if not isinstance(counters, Mapping) or set(counters) != set(opt._counters):
        raise ValueError(f"counters must hold exactly {list(opt._counters)}")
    checked = {}
    for name, start in opt._counters.items():
        value = counters[name]
        if isinstance(start, int) and not isinstance(start, bool):
            ok = isinstance(value, int) and not isinstance(value, bool) and value >= 0
        elif isinstance(start, list):
            ok = isinstance(value, list) and all(_is_number(v) for v in value)
        else:  # a float, or None until set
            ok = value is None or _is_number(value)
        if not ok:
            raise ValueError(f"counters[{name!r}] is not valid: {value!r}")
        checked[name] = list(value) if isinstance(value, list) else value
    opt._check_counters(checked)
    return checked


def _is_number(value: Any) -> bool:
    """An int or float (inf and NaN included: a loss may be either)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _checked_arrays(opt: SearchOptimizer, arrays: Any, counters: dict[str, Any]) -> dict[str, Any]:
    """The state arrays, copied, after checking that they agree: one key set, one dtype, stacks
    of len(rho) pairs shaped like the vectors."""
    names = (*opt._vectors, *opt._stacks)
    if not isinstance(arrays, Mapping) or set(arrays) != set(names):
        raise ValueError(f"state must hold exactly {list(names)}")
    pairs = next((len(v) for v in counters.values() if isinstance(v, list)), 0)
    keys: list[Any] | None = None
    shapes: dict[Any, tuple[int, ...]] = {}
    dtypes = set()
    out: dict[str, dict[Any, np.ndarray]] = {}
    for name in names:
        per_key = arrays[name]
        if not isinstance(per_key, Mapping):
            raise ValueError(f"state[{name!r}] must be a mapping from keys to arrays")
        stacked = name in opt._stacks
        empty = not per_key or (stacked and pairs == 0)
        if stacked and pairs and not per_key:
            raise ValueError(f"state[{name!r}] is empty but the counters hold {pairs} pairs")
        out[name] = {}
        for key, value in per_key.items():
            if not isinstance(value, np.ndarray) or value.dtype not in _DTYPES:
                raise ValueError(f"state[{name!r}][{key!r}] must be a float32 or float64 array")
            shape = value.shape[1:] if stacked else value.shape
            if stacked and value.shape[:1] != (pairs,):
                raise ValueError(
                    f"state[{name!r}][{key!r}] holds {value.shape[:1]} pairs; rho holds {pairs}"
                )
            if shapes.setdefault(key, shape) != shape:
                raise ValueError(
                    f"state[{name!r}][{key!r}] has shape {shape}; expected {shapes[key]}"
                )
            dtypes.add(value.dtype)
            out[name][key] = np.array(value)
        if not empty:
            if keys is None:
                keys = list(per_key)
            elif set(per_key) != set(keys):
                raise ValueError(f"state[{name!r}] has other keys than state[{names[0]!r}]")
    if len(dtypes) > 1:
        raise ValueError(f"the state's arrays mix dtypes {sorted(map(str, dtypes))}")
    if counters.get("n_iter", 0) > 0 and any(not out[name] for name in opt._vectors):
        raise ValueError(f"a state with n_iter > 0 must hold {list(opt._vectors)}")
    return out


def place(opt: SearchOptimizer, arrays: dict[str, Any]) -> None:
    """A loaded state's arrays into slots, for the params of this step (checked first)."""
    entries = {entry.key: entry for entry in opt._entries}
    dtype = np.dtype(opt._search.dtype)
    for name, per_key in arrays.items():
        if per_key and set(per_key) != set(entries):
            raise ValueError(
                f"the loaded state[{name!r}] is for the keys {list(per_key)}; the params have "
                f"{list(entries)}"
            )
        for key, value in per_key.items():
            shape = value.shape[1:] if name in opt._stacks else value.shape
            if shape != entries[key].shape or value.dtype != dtype:
                raise ValueError(
                    f"the loaded state[{name!r}][{key!r}] is {value.dtype}{shape}; "
                    f"params[{key!r}] needs {dtype}{entries[key].shape}"
                )

    def slot_of(per_key: dict[Any, np.ndarray], index: int | None = None) -> int:
        slot = opt._slots.take()
        flats = []
        for e in opt._entries:
            value = per_key[e.key] if index is None else per_key[e.key][index]
            flats.append(np.require(value.reshape(-1, order=e.order), requirements=["C", "A"]))
        opt._search.write(slot, flats)
        return slot

    for name in opt._vectors:
        setattr(opt, name, slot_of(arrays[name]) if arrays[name] else None)
    for name in opt._stacks:
        per_key = arrays[name]
        count = next(iter(per_key.values())).shape[0] if per_key else 0
        setattr(opt, name, [slot_of(per_key, i) for i in range(count)])
    opt._slots.end(opt._live())


def _copy(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.copy()
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy(v) for v in value]
    return value
