"""The machinery of the line-search methods (L-BFGS, nonlinear conjugate gradients).

Unlike the other optimizers, these see every key of the params as one vector (the textbook's x),
take a ``closure`` that evaluates the loss and its gradient at the current params, and may call it
several times in one ``step``. The vectors they keep (directions, gradients, the curvature pairs
of L-BFGS's history) live in the numbered slots of a compiled ``_core.Search``; the vector work of
an iteration is one call into it per formula, over every key, threaded, with every dot product
summed in double in an order fixed by the data (the same bits for any thread count or SIMD level).

A step is all or nothing. The params at its start are kept in a slot; if the closure raises, or
returns something unusable, the params are written back from it and the optimizer's state is what
it was, so the step can be retried or the state saved. Undoing costs no copy of the state: a step
never writes a slot the state at its start still uses (``Slots``), so undoing is forgetting the
step's new slots.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, ClassVar

import numpy as np

from .. import _core
from .._checks import finite_nonnegative, optional_positive_count, positive_count
from .._flat import Entry, Inputs, _grad
from .._settings import Hyperparameter
from .._tensors import written
from ._line_search import strong_wolfe
from ._slots import Slots, Sums

__all__ = ["SearchOptimizer", "Sums"]

_TIED = "the line search writes every key from one vector"
_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


class SearchOptimizer:
    """Base class of fastopt.optim.LBFGS and ConjugateGradient: ``step(params, closure)``."""

    # The settings every method has (torch.optim.LBFGS's names and meanings).
    lr = Hyperparameter(finite_nonnegative)
    max_iter = Hyperparameter(positive_count)
    max_eval = Hyperparameter(optional_positive_count)
    tolerance_grad = Hyperparameter(finite_nonnegative)
    tolerance_change = Hyperparameter(finite_nonnegative)
    _hyperparameters: ClassVar[tuple[str, ...]] = ()
    _counters: ClassVar[dict[str, Any]] = {}  # the scalar state and its start values
    _vectors: ClassVar[tuple[str, ...]] = ()  # state held in one slot each (or None)
    _stacks: ClassVar[tuple[str, ...]] = ()  # state held in a list of slots (a history)

    # The state every method keeps (a subclass's _counters and _vectors set them).
    func_evals: int  # closure evaluations, over every step
    n_iter: int  # iterations, over every step
    t: float | None  # the last step length
    prev_loss: float | None
    d: int | None  # the slot of the last direction
    prev_flat_grad: int | None  # the slot of the gradient the last direction was made from
    _params: Any  # (params, Inputs) while a step runs

    def __init__(self, **settings: Any) -> None:
        """Every name of _hyperparameters; max_eval None is max_iter * 5 // 4, as torch's."""
        if settings.get("max_eval", 0) is None:
            settings["max_eval"] = positive_count("max_iter", settings["max_iter"]) * 5 // 4
        for name in self._hyperparameters:
            setattr(self, name, settings[name])
        self._lock = threading.RLock()
        self._stepping = False  # a step is running (its closure may call back into this object)
        self._search: Any = None  # a _core.Search for self._entries, made by the first step
        self._entries: tuple[Entry, ...] = ()
        self._slots = Slots()
        # A loaded state's arrays ({name: {key: array}}), placed into slots at the next step.
        self._pending: dict[str, Any] | None = None
        self._reset_state()

    # ---- what a subclass provides ----

    def _reset_state(self) -> None:
        """The state of a new optimizer: counters at their start values, no vectors."""
        for name, value in self._counters.items():
            setattr(self, name, value)
        for name in self._vectors:
            setattr(self, name, None)
        for name in self._stacks:
            setattr(self, name, [])

    def _run(self, closure: Callable[[], Any], value: float, sums: Sums, grad: int) -> None:
        """The iterations of one step, from the loss and gradient at the params (in slot grad)."""
        raise NotImplementedError

    def _first_with(self) -> list[int]:
        """Slots the step's first gradient is dotted with (its sums' dot, dot2)."""
        return []

    def _live(self) -> set[int]:
        """Every slot the state holds."""
        live = {getattr(self, name) for name in self._vectors} - {None}
        for name in self._stacks:
            live.update(getattr(self, name))
        return live

    # ---- one step ----

    def step(self, params: dict[Any, Any], closure: Callable[[], Any]) -> Any:
        """Minimize from ``params`` (updated in place) by up to the settings' iterations.

        ``closure()`` must compute the loss and its gradient at the current values of ``params``
        and return ``(loss, grads)``, with ``grads`` keyed like ``params``; it may be called several
        times. Returns the first loss, at the params as they were when the step began.

        All or nothing: if ``closure`` raises, or returns no usable ``(loss, grads)`` (a missing
        key, a wrong shape, a loss that is not a real number), the params are written back as
        they were before the step, the optimizer's state is as it was, and the error propagates.

        The closure must read the params' own arrays (they are written in place; one that puts
        new arrays into ``params`` is not seen until the next step), must not call this
        optimizer's ``step``, ``reset``, ``load_state_dict`` or ``state_dict`` (RuntimeError), and
        must not wait for another thread that does: the step holds the optimizer's lock.
        """
        if not callable(closure):
            raise TypeError(f"closure must be callable; got {type(closure).__name__}")
        with self._held("step"):
            inputs = self._inputs(params)
            # Lists (L-BFGS's history) are copied: a step builds new ones, never edits these.
            saved = {
                name: _copied(getattr(self, name))
                for name in (*self._counters, *self._vectors, *self._stacks)
            }
            self._slots.begin(self._live())
            start = self._slots.take()
            self._params = (params, inputs)
            try:
                self._search.gather(start, inputs.params, [])
                loss, sums, grad = self._evaluate(closure, self._first_with())
                return self._first(closure, loss, sums, grad)
            except BaseException:
                self._search.place(inputs.params, start, 0.0, -1)
                self._write_back()
                self.__dict__.update(saved)
                raise
            finally:
                self._slots.end(self._live())
                self._params = None

    @contextmanager
    def _held(self, what: str) -> Iterator[None]:
        """The lock, for a step or for reading or changing the state. Another thread waits; the
        thread whose step is running (its closure calling back) is refused: a nested step, reset
        or load would change the vectors the running step holds, and a state shown then would be
        half a step's."""
        with self._lock:
            if self._stepping:
                raise RuntimeError(
                    f"{type(self).__name__}.{what}() was called from inside the closure of its own "
                    "running step(); call it after step() returns"
                )
            if what != "step":
                yield
                return
            self._stepping = True
            try:
                yield
            finally:
                self._stepping = False

    @property
    def _eval_budget(self) -> int:
        """max_eval, or torch's default for it when it is None (max_iter * 5 // 4)."""
        return self.max_iter * 5 // 4 if self.max_eval is None else self.max_eval

    def _check_counters(self, counters: dict[str, Any]) -> None:
        """A loaded state's counters, beyond their types: ValueError if a step could not use
        them (a subclass's own rules)."""

    def _first(self, closure: Callable[[], Any], loss: Any, sums: Sums, grad: int) -> Any:
        self.func_evals += 1
        if not sums.largest <= self.tolerance_grad:  # (NaN: on, as torch)
            self._run(closure, loss[1], sums, grad)
        return loss[0]

    def _evaluate(self, closure: Callable[[], Any], with_: list[int]) -> tuple[Any, Sums, int]:
        """closure() at the current params: (its loss, the sums of its gradient, the slot the
        gradient was gathered into, in the compute type). ``with_``: slots to dot it with."""
        result = closure()
        try:
            loss, grads = result
        except (TypeError, ValueError):
            raise TypeError(
                f"closure() must return (loss, grads); got {type(result).__name__}"
            ) from None
        if not isinstance(grads, Mapping):
            raise TypeError(f"closure()'s grads must be a mapping; got {type(grads).__name__}")
        value = float(loss)  # a loss that is no real number raises here, before any slot is taken
        flats = [self._grad_flat(grads, entry) for entry in self._entries]
        slot = self._slots.take()
        sums = Sums(*self._search.gather(slot, flats, with_))
        return (loss, value), sums, slot

    def _grad_flat(self, grads: Mapping[Any, Any], entry: Entry) -> np.ndarray:
        flat = _grad(entry.key, grads, entry)
        dtype = np.dtype(self._search.dtype)
        if flat.dtype not in _DTYPES or flat.dtype.itemsize > dtype.itemsize:
            # float64 grads of a float32 search, ints, halves: rounded once.
            flat = flat.astype(dtype)
        return np.require(flat, requirements=["C", "A"])

    def _line_search(
        self,
        closure: Callable[[], Any],
        at: tuple[float, int, Sums],
        direction: tuple[int, Sums],
        t: float,
        evals_left: int,
        c2: float = 0.9,
    ) -> tuple[float, int, float, int, Sums]:
        """A strong-Wolfe line search along slot d from the params, at (loss, gradient slot, its
        sums) with direction (slot d, its sums: g . d, |d|_inf), first trying t. The params end
        at x + t d, t the chosen length. Returns (loss, gradient slot, t, evaluations, the
        gradient's sums: dot with d, dot2 with the starting gradient)."""
        value, grad, sums = at
        d, d_sums = direction
        x0 = self._slots.take()
        self._search.gather(x0, self._params[1].params, [])
        found = {grad: sums}

        def trial(step: float) -> tuple[float, int, float]:
            self._place(x0, step, d)
            (_, loss), new_sums, slot = self._evaluate(closure, [d, grad])
            found[slot] = new_sums
            return loss, slot, new_sums.dot

        value, grad, t, evals = strong_wolfe(
            trial, self._slots.give, t, d_sums.largest, value, grad, d_sums.dot,
            c2=c2, tolerance_change=self.tolerance_change, max_ls=evals_left,
        )  # fmt: skip
        self._place(x0, t, d)
        self._slots.give(x0)
        return value, grad, t, evals, found[grad]

    def _place(self, base: int, step: float, direction: int) -> None:
        """params = slot base + step * slot direction (base -1: the params themselves)."""
        params, inputs = self._params
        self._search.place(inputs.params, base, step, direction)
        self._write_back()

    def _write_back(self) -> None:
        params, inputs = self._params
        for entry, flat in zip(self._entries, inputs.params):
            if entry.scalar:
                params[entry.key] = flat[0].item()
        if inputs.tensors:
            written(inputs.tensors)

    # ---- params ----

    def _inputs(self, params: Any) -> Inputs:
        inputs = Inputs(params, tied=_TIED)
        for entry in inputs.entries:
            if entry.dtype not in _DTYPES:
                raise TypeError(
                    f"params[{entry.key!r}] is {entry.dtype}: {type(self).__name__} works in "
                    "float32 or float64 (keep float32 params, or master copies, for half models)"
                )
        entries = tuple(inputs.entries)
        if self._search is None or entries != self._entries:
            self._relayout(entries)
        elif self._pending is not None:
            self._place_pending()
        return inputs

    def _relayout(self, entries: tuple[Entry, ...]) -> None:
        """New params: a new Search, if the state allows it (a loaded one is placed now)."""
        if self._search is not None and self._live():
            _refuse_change(self._entries, entries, type(self).__name__)
        dtype = "float64" if any(e.dtype == np.float64 for e in entries) else "float32"
        self._search = _core.Search(dtype, [e.size for e in entries])
        self._entries = entries
        self._slots = Slots()
        if self._pending is not None:
            self._place_pending()

    def _place_pending(self) -> None:
        from ._search_state import place

        pending, self._pending = self._pending, None
        assert pending is not None
        try:
            place(self, pending)
        except BaseException:
            self._pending = pending
            raise

    # ---- checkpoints, copies, display ----

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume exactly, as plain data (arrays are copies, shaped like the
        params): "kind", "hyperparameters", "counters", "state" ({name: {key: array}})."""
        from ._search_state import state_dict

        with self._held("state_dict"):
            return state_dict(self)

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore what state_dict() returned; checked first, and on error nothing changes. The
        vectors are placed at the next step, which checks them against its params."""
        from ._search_state import load_state_dict

        with self._held("load_state_dict"):
            load_state_dict(self, state)

    def reset(self) -> None:
        """Forget the state (history, directions, counters), keeping the settings."""
        with self._held("reset"):
            self._pending = None
            self._reset_state()
            self._search, self._entries = None, ()  # the vectors' memory goes back now

    def _forget_plan(self) -> None:
        """Called by the hyperparameter descriptors: nothing is cached from the settings."""

    def __getstate__(self) -> dict[str, Any]:
        # copy.deepcopy and pickle: the state as plain data, with the settings.
        return {"state": self.state_dict()}

    def __setstate__(self, data: dict[str, Any]) -> None:
        state = data["state"]
        SearchOptimizer.__init__(self, **state["hyperparameters"])
        self.load_state_dict(state)

    def __repr__(self) -> str:
        settings = ", ".join(f"{name}={getattr(self, name)!r}" for name in self._hyperparameters)
        return f"{type(self).__name__}({settings})"


def _copied(value: Any) -> Any:
    return list(value) if isinstance(value, list) else value


def _refuse_change(old: tuple[Entry, ...], new: tuple[Entry, ...], name: str) -> None:
    """A step's params must be those of the state: the first difference, named."""
    advice = f"call reset() to start {name}'s history over with these params"
    old_keys = [e.key for e in old]
    new_keys = [e.key for e in new]
    if old_keys != new_keys:
        missing = [k for k in old_keys if k not in new_keys]
        extra = [k for k in new_keys if k not in old_keys]
        raise ValueError(
            f"{name} keeps its state as one vector over the keys {old_keys}; these params "
            f"{'lack ' + repr(missing) if missing else ''}"
            f"{' and ' if missing and extra else ''}{'add ' + repr(extra) if extra else ''}"
            f"{'' if missing or extra else 'order them differently'}: {advice}"
        )
    for a, b in zip(old, new):
        if a != b:
            raise ValueError(
                f"params[{a.key!r}] was {a.dtype}{a.shape} (order {a.order}) and is now "
                f"{b.dtype}{b.shape} (order {b.order}): {name}'s state is shaped by the params; "
                f"{advice}"
            )
