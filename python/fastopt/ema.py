"""Exponential moving average of the params (Polyak averaging), fused like the optimizers."""

from __future__ import annotations

import contextlib
from collections.abc import Hashable, Iterator, Mapping, MutableMapping
from typing import Any

import numpy as np

from . import _core
from ._checks import unit_interval
from ._dtypes import is_floating, is_half
from ._spec import rule
from ._types import Params

__all__ = ["EMA"]


class EMA:
    """Keeps ``ema[k] = ema[k] + (1-decay)*(params[k] - ema[k])`` after every update(params).

    Half params (float16, bfloat16) are averaged in float32. With an optimizer that keeps float32
    master weights, ``ema.update(opt.master_params(params))`` averages the masters (the weights
    really trained) instead of their rounded copies; ``ema.update(params)`` averages what the
    params hold.

    One fused pass per array, in C++ with the GIL released, like the optimizers. The first
    update() of a key copies its param. Evaluate with the averaged weights in place::

        ema = fastopt.EMA(decay=0.999)
        for batch in data:
            opt.update(params, grads(batch))
            ema.update(params)
        with ema.averaged(params):   # params hold the averages inside the block
            evaluate(params)

    Attributes
    ----------
    decay : float
        In [0, 1).
    shadow : dict
        The averages, keyed like params.
    updates : int
        How many update() calls were made.
    """

    # The rule "ema" updates its "param" operand (the average) from its "grad" operand (the live
    # param), with no state arrays.
    _updater = _core.Updater(rule("ema").variant({})[0], ())

    def __init__(self, decay: float = 0.999) -> None:
        self.decay = unit_interval("decay", decay)
        self.shadow: dict[Hashable, np.ndarray] = {}
        self.updates = 0

    def update(self, params: Params) -> None:
        """Fold the current params into the averages (all keys at once; all or nothing)."""
        if not isinstance(params, Mapping):
            raise TypeError(f"params must be a dict; got {type(params).__name__}")
        averages = {}
        for key, value in params.items():
            average = self.shadow.get(key)
            real = (
                value.dtype.kind in "fiu" or is_floating(value.dtype)
                if isinstance(value, np.ndarray)
                else isinstance(value, (int, float, np.integer, np.floating))
                and not isinstance(value, bool)
            )
            if not real:
                raise TypeError(
                    f"params[{key!r}] must be real numbers; got {type(value).__name__}"
                    f"{' of ' + str(value.dtype) if isinstance(value, np.ndarray) else ''}"
                )
            if average is None:  # first sight: start from the param itself
                # float32 arrays, and half ones (read widened: float16, bfloat16), average in
                # float32; everything else (scalars too) in float64.
                is_float32 = isinstance(value, np.ndarray) and (
                    value.dtype == np.float32 or is_half(value.dtype)
                )
                average = np.array(value, dtype=np.float32 if is_float32 else np.float64)
            elif np.shape(value) != average.shape:
                raise ValueError(
                    f"params[{key!r}] has shape {np.shape(value)} but its average was made for "
                    f"{average.shape}; reset it with `del ema.shadow[key]`"
                )
            averages[key] = average
        self._updater.run(averages, params, {}, (1.0 - self.decay,))
        for key, average in averages.items():  # only now: a failed update adds nothing
            self.shadow.setdefault(key, average)
        self.updates += 1

    def swap(self, params: Params) -> None:
        """Exchange the params' values and the averages, in place (the same array objects).

        A param of a narrower dtype than its average (float16 or bfloat16, averaged in float32)
        receives the average rounded and gives its own value, so two swaps leave the average
        rounded; ``averaged()`` restores the exact average.

        All or nothing: every param is checked first (an average exists; the same shape; an array
        param is writeable and of a floating-point dtype the average can be cast to and from),
        so a failed swap leaves every param and every average as it was.

        Raises
        ------
        KeyError
            A param has no average yet.
        TypeError
            A param array is read-only or of a dtype that cannot hold its average (an int array,
            which update() accepts, has float averages); or a scalar param is not a real number.
        ValueError
            A param's shape is not its average's.
        """
        if not isinstance(params, MutableMapping):
            raise TypeError(f"params must be a dict; got {type(params).__name__}")
        missing = [key for key in params if key not in self.shadow]
        if missing:
            raise KeyError(f"no average for params {missing}: call update(params) first")
        scalars = {}  # a scalar param's value, as its average's dtype
        for key, value in params.items():
            converted = self._swappable(key, value)
            if converted is not None:
                scalars[key] = converted
        tied = _tied_keys(params)
        # Everything is checked: from here on nothing can fail.
        for key, value in params.items():
            if key in tied:  # its array was swapped under an earlier key: twice would undo it
                continue
            average = self.shadow[key]
            if isinstance(value, np.ndarray):
                held = value.copy()
                np.copyto(value, average, casting="same_kind")
                np.copyto(average, held, casting="same_kind")
            else:  # a scalar param is replaced, as update() replaces it
                params[key], self.shadow[key] = average[()], scalars[key]

    def _swappable(self, key: Hashable, value: Any) -> np.ndarray | None:
        """Check that params[key] can swap with its average; a scalar's value as the average's
        dtype."""
        average = self.shadow[key]
        if np.shape(value) != average.shape:
            raise ValueError(
                f"params[{key!r}] has shape {np.shape(value)} but its average has {average.shape}"
            )
        if not isinstance(value, np.ndarray):
            if isinstance(value, bool) or not isinstance(value, (int, float, np.number)):
                raise TypeError(f"params[{key!r}] must be a real number; got {value!r}")
            return np.array(value, dtype=average.dtype)
        if not value.flags.writeable:
            raise TypeError(f"params[{key!r}] is read-only: swap writes the average into it")
        if not (
            np.can_cast(average.dtype, value.dtype, "same_kind")
            and np.can_cast(value.dtype, average.dtype, "same_kind")
        ):
            raise TypeError(
                f"params[{key!r}] is {value.dtype}, which cannot hold its {average.dtype} "
                "average: swap a floating-point param"
            )
        return None

    @contextlib.contextmanager
    def averaged(self, params: Params) -> Iterator[None]:
        """Inside the block the params hold the averages; afterwards their own values again.

        The swap in is all or nothing (see swap()): if it raises, the block does not run and
        nothing has changed. A param of a narrower dtype than its average (a float16 or bfloat16
        param, averaged in float32) holds the average rounded inside the block; the average
        itself comes back exact afterwards."""
        narrower = {
            key: self.shadow[key].copy()
            for key, value in params.items()
            if isinstance(value, np.ndarray)
            and key in self.shadow
            and value.dtype != self.shadow[key].dtype
        }
        self.swap(params)
        try:
            yield
        finally:
            self.swap(params)
            for key, average in narrower.items():  # the swap back brought the rounded value
                self.shadow[key][...] = average

    def state_dict(self) -> dict[str, Any]:
        return {
            "decay": self.decay,
            "updates": self.updates,
            "shadow": {key: value.copy() for key, value in self.shadow.items()},
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore state_dict()'s output; checked first, so bad input changes nothing."""
        decay = unit_interval("decay", state["decay"])
        shadow = state["shadow"]
        for key, value in shadow.items():
            if not (isinstance(value, np.ndarray) and value.dtype in (np.float32, np.float64)):
                raise ValueError(f"shadow[{key!r}] must be a float32/float64 array")
        self.decay, self.updates = decay, int(state["updates"])
        self.shadow = {key: np.array(value, copy=True) for key, value in shadow.items()}


def _tied_keys(params: Params) -> set[Hashable]:
    """The keys whose param is the very array (the same memory, shape and strides) of an earlier
    key's: tied weights, swapped once. A param that shares only part of another's memory cannot be
    swapped meaningfully: ValueError naming both keys."""
    spans = []
    for order, (key, value) in enumerate(params.items()):
        if isinstance(value, np.ndarray) and value.size:
            low, high = _byte_bounds(value)
            spans.append((low, high, order, key, value))
    spans.sort(key=lambda span: (span[0], span[2]))
    tied: set[Hashable] = set()
    reach = None  # the span reaching furthest so far
    for span in spans:
        if reach is not None and span[0] < reach[1]:
            same = span[:2] == reach[:2] and (span[4].shape, span[4].strides, span[4].dtype) == (
                reach[4].shape,
                reach[4].strides,
                reach[4].dtype,
            )
            if not same:
                raise ValueError(
                    f"params[{reach[3]!r}] and params[{span[3]!r}] share part of their memory: "
                    "their averages cannot both be swapped in"
                )
            tied.add(span[3] if span[2] > reach[2] else reach[3])
        if reach is None or span[1] > reach[1]:
            reach = span
    return tied


def _byte_bounds(array: np.ndarray) -> tuple[int, int]:
    try:
        from numpy.lib.array_utils import byte_bounds  # NumPy >= 2
    except ImportError:  # pragma: no cover - NumPy 1.x
        byte_bounds = getattr(np, "byte_bounds")  # noqa: B009 (gone from NumPy 2's namespace)
    low, high = byte_bounds(array)
    return int(low), int(high)
