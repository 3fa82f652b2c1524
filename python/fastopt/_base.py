"""The machinery every fastopt optimizer shares: hyperparameter checks, state, the call into _core.

A subclass declares its kernel, the names of its state dicts and the checks of its
hyperparameters, and computes its per-step scalars. Everything else lives here, once.
"""

from __future__ import annotations

import copy
import functools
import inspect
import math
import numbers
import threading
from collections.abc import Mapping
from typing import Any, Callable, ClassVar

import numpy as np

from . import _core
from ._types import Grads, Params
from .clip import global_norm

Check = Callable[[str, Any], float]

# {name: (option flag names, {variant bits: (kernel index, number of states, number of scalars)})},
# fixed for the process. Options are compile-time flags: each combination is its own kernel.
# {name: {"flags": (...), "scalars": (...), "variants": {bits: (kernel index, state names)}}}
_ALGORITHMS: dict[str, dict[str, Any]] = _core.algorithms()


def kernel(name: str, **options: bool) -> tuple[int, int]:
    """(kernel index, number of state arrays) of the variant of `name` with these options on."""
    spec = _ALGORITHMS[name]
    flag_names = spec["flags"]
    unknown = set(options) - set(flag_names)
    if unknown:
        raise TypeError(f"kernel {name!r} has no option {sorted(unknown)}")
    bits = sum(1 << i for i, flag in enumerate(flag_names) if options.get(flag))
    index, state_names = spec["variants"][bits]
    return index, len(state_names)


def _real(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number; got {type(value).__name__}")
    return float(value)


def finite_nonnegative(name: str, value: Any) -> float:
    """A learning rate: finite and >= 0."""
    number = _real(name, value)
    if not (math.isfinite(number) and number >= 0.0):
        raise ValueError(f"{name} must be a finite number >= 0; got {value!r}")
    return number


def unit_interval(name: str, value: Any) -> float:
    """A decay factor such as momentum or beta1: in [0, 1)."""
    number = _real(name, value)
    if not 0.0 <= number < 1.0:
        raise ValueError(f"{name} must be in [0, 1); got {value!r}")
    return number


def _kind(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def learning_rate(name: str, value: Any) -> Any:
    """A learning rate: finite and >= 0, or a schedule (a callable from step to rate)."""
    return value if callable(value) else finite_nonnegative(name, value)


def optional_positive(name: str, value: Any) -> float | None:
    """None (off), or a finite number > 0."""
    return None if value is None else positive(name, value)


# What update() does when a grad holds inf or nan (every optimizer's keyword-only nonfinite=), as
# _core.Updater names it.
NONFINITE_MODES = ("propagate", "skip", "raise")


def nonfinite_mode(name: str, value: Any) -> str:
    """One of NONFINITE_MODES."""
    if not isinstance(value, str) or value not in NONFINITE_MODES:
        raise ValueError(f"{name} must be one of {sorted(NONFINITE_MODES)}; got {value!r}")
    return value


# The keyword-only options every optimizer has, after its own parameters: name -> (default, check
# applied on every assignment). per_key's check is Optimizer._checked_per_key: it needs the class.
COMMON_OPTIONS: dict[str, tuple[Any, Callable[[str, Any], Any] | None]] = {
    "max_grad_norm": (None, optional_positive),
    "per_key": (None, None),
    "nonfinite": ("propagate", nonfinite_mode),
}


def _with_common_options(init: Callable[..., None]) -> Callable[..., None]:
    """Give a constructor the keyword-only options every optimizer has (COMMON_OPTIONS)."""

    @functools.wraps(init)
    def __init__(self: Optimizer, *args: Any, **kwargs: Any) -> None:
        options = {name: kwargs.pop(name, default) for name, (default, _) in COMMON_OPTIONS.items()}
        init(self, *args, **kwargs)
        for name, value in options.items():
            setattr(self, name, value)

    signature = inspect.signature(init)
    options = [
        inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default)
        for name, (default, _) in COMMON_OPTIONS.items()
    ]
    __init__.__signature__ = signature.replace(  # type: ignore[attr-defined]
        parameters=[*signature.parameters.values(), *options]
    )
    return __init__


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


def real(name: str, value: Any) -> float:
    """Any finite real number."""
    number = _real(name, value)
    if not math.isfinite(number):
        raise ValueError(f"{name} must be finite; got {value!r}")
    return number


def positive(name: str, value: Any) -> float:
    """A denominator guard such as eps: finite and > 0."""
    number = _real(name, value)
    if not (math.isfinite(number) and number > 0.0):
        raise ValueError(f"{name} must be a finite number > 0; got {value!r}")
    return number


class Optimizer:
    """Base class of the fastopt optimizers.

    ``update(params, grads)`` updates every array of the dict ``params`` in place, in one call into
    the compiled core for all keys together. It validates every key before it writes anything: on
    bad input it raises and no param and no state has changed.

    Subclasses set ``_kernel`` (a row of the kernel table), ``_state_names`` (the attributes that
    hold the per-key state dicts), ``_hyperparameters`` (name -> check, applied on every
    assignment, so ``opt.lr = -1`` raises just as ``SGD(lr=-1)`` does) and implement
    ``_step_scalars``.
    """

    _kernel: ClassVar[str]
    _kernel_index: ClassVar[int]
    _state_names: ClassVar[tuple[str, ...]] = ()
    # What new state arrays are filled with (torch's Adagrad: initial_accumulator_value).
    _initial_state_value: float = 0.0
    _hyperparameters: ClassVar[dict[str, Check]] = {}
    # True when the per-step scalars depend on the hyperparameters only (not on a step count): they
    # are then computed once and cached until an attribute is assigned.
    _constant_scalars: ClassVar[bool] = True
    _cached_scalars: tuple[float, ...] | None = None
    # A schedule given as lr (fastopt.schedules): called before each update with the number of
    # updates made so far; `lr` then holds the rate in use.
    _schedule: Any = None
    _updates: int = 0
    # Fused gradient clipping (every optimizer's keyword-only max_grad_norm=): the global norm of
    # the grads in one read-only pass, then the scale applied inside the update pass.
    max_grad_norm: float | None = None
    last_grad_norm: float | None = None
    # Per-key settings (every optimizer's keyword-only per_key=): {key or predicate: {name: value}}.
    per_key: dict[Any, dict[str, Any]] | None = None
    # Non-finite grads (every optimizer's keyword-only nonfinite=): "propagate" (the book's
    # behaviour), "skip" (the update is not made; skipped_updates counts it) or "raise".
    nonfinite: str = "propagate"
    skipped_updates: int = 0
    # Hyperparameters a class cannot vary per key (they feed state shared by all keys).
    _shared_hyperparameters: ClassVar[tuple[str, ...]] = ()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "__init__" in cls.__dict__:
            cls.__init__ = _with_common_options(cls.__dict__["__init__"])  # type: ignore[method-assign]
        # a rule without options: one kernel, chosen once
        if "_kernel" in cls.__dict__ and not _ALGORITHMS[cls._kernel]["flags"]:
            index, num_states = kernel(cls._kernel)
            if num_states != len(cls._state_names):
                raise TypeError(f"{cls.__name__}: kernel {cls._kernel!r} keeps {num_states} states")
            cls._kernel_index = index

    def __setattr__(self, name: str, value: Any) -> None:
        if name == "per_key":
            object.__setattr__(self, name, self._checked_per_key(value))
            self.__dict__["_per_key_cache"] = ({}, {})  # key -> settings, settings -> optimizer
            return
        option = COMMON_OPTIONS.get(name)
        check = option[1] if option else self._hyperparameters.get(name)
        value = value if check is None else check(name, value)
        if name == "lr":
            self.__dict__["_schedule"] = value if callable(value) else None
            if callable(value):
                value = self._scheduled_lr(value)
        object.__setattr__(self, name, value)
        # Any assignment (opt.lr *= 0.1, a new schedule, ...) may change the per-step scalars, and
        # nonfinite, the kernel or its states change the engine.
        self.__dict__["_cached_scalars"] = None
        self.__dict__.pop("_updaters", None)

    def _new_updater(self) -> _core.Updater:
        """The engine for the kernel, state names, initial state value and nonfinite in use."""
        updater = _core.Updater(
            self._kernel_index,
            self._state_names,
            initial_state=self._initial_state_value,
            nonfinite=self.nonfinite,
        )
        self.__dict__.setdefault("_updaters", {})[self._kernel_index] = updater
        return updater

    def _init_state(self) -> None:
        # Per-key state, created lazily by the core at the first update() that sees a key.
        for name in self._state_names:
            setattr(self, name, {})

    def update(self, params: Params, grads: Grads) -> None:
        """Update every param in place from its gradient.

        Parameters
        ----------
        params : dict
            Maps any hashable key to a float32 or float64 ndarray (C- or Fortran-contiguous,
            writeable, any shape), updated in place; or to a real scalar, which is replaced by the
            updated value as a NumPy float64 scalar.
        grads : mapping
            Holds a gradient for every key of ``params`` (extra keys are ignored), of the param's
            shape. Any real dtype and any memory layout is accepted; one that differs from the
            param's is converted first (a copy: the slow path). A grad that overlaps its param's
            memory is copied first, so the result is as if it had been read before the update.

        With ``nonfinite="skip"`` or ``"raise"`` every grad is first checked for inf and nan (for
        free when ``max_grad_norm`` is set: a finite norm proves them finite). "skip" then makes no
        update at all (no param, state, step count, schedule position or ``lr`` changes) and adds
        one to ``skipped_updates``; only the reports ``skipped_updates`` and ``last_grad_norm``
        change. "raise" raises. The default, "propagate", is the book's behaviour: the values flow
        into the params.

        Raises
        ------
        FloatingPointError
            ``nonfinite="raise"`` and a grad holds inf or nan: the message names its key. Nothing
            has changed.
        KeyError
            A param key has no grad.
        TypeError
            A param is not a float32/float64 ndarray or real scalar; a grad is not real numbers.
        ValueError
            Shapes differ; a param is read-only, not contiguous or unaligned; or a param changed
            shape or dtype since its state was created.
        """
        # The state dicts are looked up by name in self.__dict__, in C++: a user who resets state
        # the book's way (opt.v = {}) is honoured, and no tuple is built per call.
        # Two threads updating the same optimizer would race on its state arrays (the kernels run
        # without the GIL): each optimizer runs one update() at a time. Separate optimizers run in
        # parallel. Re-entrant, because user code run during validation (a key's __eq__) may call
        # update() again on the same thread; a plain lock would deadlock there.
        lock = self.__dict__.get("_lock") or self.__dict__.setdefault("_lock", threading.RLock())
        with lock:
            self._update(params, grads)

    def __getstate__(self) -> dict[str, Any]:
        # copy.deepcopy and pickle: a lock cannot be copied (a copy gets its own, made on first
        # use), nor can per-key views, which are rebuilt on demand.
        state = dict(self.__dict__)
        state.pop("_lock", None)
        state.pop("_updaters", None)  # engines are rebuilt on first use
        if "_per_key_cache" in state:
            state["_per_key_cache"] = ({}, {})
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)

    def _update(self, params: Params, grads: Grads) -> None:
        schedule = self._schedule
        if schedule is not None:
            scheduled_from = self.lr
            self.__dict__["lr"] = self._scheduled_lr(schedule)
            self.__dict__["_cached_scalars"] = None
        # One function, not a helper call per update: ~0.1 us of the ~2 us a small update costs.
        # (try costs nothing in CPython 3.11+ until something raises.)
        try:
            scalars = self._cached_scalars
            if scalars is None:
                scalars = self._step_scalars()
                if self._constant_scalars:
                    self.__dict__["_cached_scalars"] = scalars
            per_key = self._per_key_kernels(params) if self.per_key else None
            grad_scale, norm, known_finite = 1.0, None, False
            if self.max_grad_norm is not None:
                norm = global_norm({key: grads[key] for key in params if key in grads})
                scale = self.max_grad_norm / (norm + 1e-6)  # torch's clip_grad_norm_ coefficient
                grad_scale = 1.0 if scale >= 1.0 else scale  # not min(): a nan norm must propagate
                # A finite norm (a sum of squares in double) proves every grad finite: the norm's
                # pass is the check for skip/raise; the core checks only grads it converts itself.
                known_finite = math.isfinite(norm)
            # The engine: built on first use and after any assignment (see __setattr__), one per
            # kernel index (RAdam switches kernels between steps without an assignment).
            try:
                updater = self.__dict__["_updaters"][self._kernel_index]
            except KeyError:
                updater = self._new_updater()
            # The state dicts are looked up by name in self.__dict__ (which maps each state name to
            # its dict), in C++: a user who resets state the book's way (opt.v = {}) is honoured.
            applied = updater.run(
                params, grads, self.__dict__, scalars, grad_scale, known_finite, per_key
            )
        except BaseException:
            if schedule is not None:
                self._unschedule(scheduled_from)
            raise
        # A report, set for a skipped update too (it tells why: inf or nan).
        self.__dict__["last_grad_norm"] = norm
        if applied is False:  # nonfinite="skip" and a grad held inf or nan
            if schedule is not None:
                self._unschedule(scheduled_from)
            self.__dict__["skipped_updates"] = self.skipped_updates + 1
            return
        self._advance()
        self.__dict__["_updates"] = self._updates + 1

    def _unschedule(self, lr: float) -> None:
        # An update that raised or was skipped changes nothing: not even the rate on show in
        # opt.lr, which the schedule had already moved to the next step's.
        self.__dict__["lr"] = lr
        self.__dict__["_cached_scalars"] = None

    # Scalars besides the state arrays that a checkpoint must restore (step counts and the like).
    _counters: ClassVar[tuple[str, ...]] = ("_updates",)

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume exactly, as plain data (arrays are copies).

        Keys: "kind", "hyperparameters", "counters", "state" ({name: {key: array}}).
        A schedule given as lr is not data: it is left out (re-create the optimizer with it; the
        update count in "counters" makes it resume at the right step).
        """
        hyperparameters = {name: getattr(self, name) for name in self._hyperparameters}
        if self._schedule is not None:
            del hyperparameters["lr"]
        return {
            "kind": _kind(type(self)),
            "hyperparameters": hyperparameters,
            "counters": {name: getattr(self, name) for name in self._counters},
            "state": {
                name: {
                    key: np.array(value, copy=True) for key, value in getattr(self, name).items()
                }
                for name in self._all_state_names()
            },
        }

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Restore what state_dict() returned. Validates everything first; on error nothing changes.

        Raises
        ------
        ValueError
            The checkpoint is of another optimizer kind, or a state array is not a float32/float64
            ndarray, or the arrays of one key disagree in shape or dtype.
        """
        kind = state_dict.get("kind") if isinstance(state_dict, Mapping) else None
        if kind != _kind(type(self)):
            raise ValueError(f"this checkpoint is for {kind!r}, not {_kind(type(self))!r}")
        names = set(self._all_state_names())
        states = state_dict["state"]
        if set(states) - names:
            raise ValueError(f"unknown state {sorted(set(states) - names)} for {kind}")
        for name, per_key in states.items():
            for key, value in per_key.items():
                if not (isinstance(value, np.ndarray) and value.dtype in (np.float32, np.float64)):
                    raise ValueError(f"state {name!r}[{key!r}] must be a float32/float64 array")
                for other in states.values():
                    twin = other.get(key)
                    if twin is not None and (twin.shape, twin.dtype) != (value.shape, value.dtype):
                        raise ValueError(f"the states of key {key!r} disagree in shape or dtype")
        checked = {
            name: self._hyperparameters[name](name, value)
            for name, value in state_dict["hyperparameters"].items()
        }
        for name, value in checked.items():
            setattr(self, name, value)
        for name in names:
            setattr(
                self, name, {k: np.array(v, copy=True) for k, v in states.get(name, {}).items()}
            )
        for name, value in state_dict["counters"].items():
            self.__dict__[name] = value
        self.__dict__["_cached_scalars"] = None
        if self._schedule is not None:
            self.__dict__["lr"] = self._scheduled_lr(self._schedule)

    def _all_state_names(self) -> tuple[str, ...]:
        return tuple(getattr(self, "_possible_states", ()) or self._state_names)

    def _checked_per_key(self, per_key: Any) -> dict[Any, dict[str, Any]] | None:
        if per_key is None:
            return None
        if not isinstance(per_key, Mapping):
            raise TypeError(
                f"per_key must be a dict {{key or predicate: {{name: value}}}}; got {per_key!r}"
            )
        checked = {}
        for selector, settings in per_key.items():
            if not isinstance(settings, Mapping):
                raise TypeError(f"per_key[{selector!r}] must be a dict of hyperparameters")
            for name, value in settings.items():
                if name not in self._hyperparameters or name in self._shared_hyperparameters:
                    allowed = sorted(set(self._hyperparameters) - set(self._shared_hyperparameters))
                    raise ValueError(
                        f"per_key[{selector!r}]: {type(self).__name__} has no per-key "
                        f"hyperparameter {name!r}; choose from {allowed}"
                    )
                self._hyperparameters[name](name, value)  # raises on a bad value
            checked[selector] = dict(settings)
        return checked

    def _settings_of(self, key: Any) -> tuple[tuple[str, Any], ...]:
        """The per-key settings that apply to `key`, later entries winning, as a hashable tuple."""
        merged: dict[str, Any] = {}
        for selector, settings in self.per_key.items():  # type: ignore[union-attr]
            if selector == key if not callable(selector) else selector(key):
                merged.update(settings)
        return tuple(sorted(merged.items()))

    def _per_key_kernels(self, params: Params) -> dict[Any, tuple[int, tuple[float, ...]]]:
        """{key: (kernel index, scalars)} for the keys with settings of their own."""
        settings_of, optimizers = self.__dict__["_per_key_cache"]
        result: dict[Any, tuple[int, tuple[float, ...]]] = {}
        computed: dict[tuple, tuple[int, tuple[float, ...]]] = {}
        for key in params:
            settings = settings_of.get(key)
            if settings is None:
                settings = settings_of[key] = self._settings_of(key)
            if not settings:
                continue
            if settings not in computed:
                variant = optimizers.get(settings)
                if variant is None:  # a view of this optimizer: same state dicts, own settings
                    variant = optimizers[settings] = copy.copy(self)
                    object.__setattr__(variant, "per_key", None)
                    for name, value in settings:
                        setattr(variant, name, value)
                # The same counters as this optimizer, whose update this is.
                variant.__dict__.update(
                    {n: self.__dict__[n] for n in self._counters if n in self.__dict__}
                )
                if variant._schedule is not None:
                    variant.__dict__["lr"] = variant._scheduled_lr(variant._schedule)
                    variant.__dict__["_cached_scalars"] = None
                scalars = variant._cached_scalars or variant._step_scalars()
                if variant._state_names != self._state_names:
                    raise ValueError(
                        f"per_key settings {dict(settings)} for {key!r} change which state is kept "
                        f"({variant._state_names} instead of {self._state_names}); use a separate "
                        "optimizer for those keys"
                    )
                computed[settings] = (variant._kernel_index, scalars)
            result[key] = computed[settings]
        return result

    def _scheduled_lr(self, schedule: Any) -> float:
        value = schedule(self._updates)
        try:
            return finite_nonnegative("lr", value)
        except (TypeError, ValueError) as error:
            raise ValueError(
                f"the lr schedule gave {value!r} at step {self._updates}: {error}"
            ) from None

    def _step_scalars(self) -> tuple[float, ...]:
        """The per-step scalars of the next update, in the order of the kernel's rule."""
        raise NotImplementedError

    def _advance(self) -> None:
        """Called after a successful update(): advance step counters."""

    def __repr__(self) -> str:
        settings = ", ".join(f"{name}={getattr(self, name)!r}" for name in self._hyperparameters)
        return f"{type(self).__name__}({settings})"
