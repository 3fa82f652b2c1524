"""per_key: settings of their own for some keys, as data, resolved at every update.

``per_key={selector: {hyperparameter: value}}``. A selector is a key of params, or
``fastopt.where(predicate)``: every key for which ``predicate(key)`` is true. Later entries win.
The settings are kept as given and laid over the optimizer's *current* hyperparameters at every
update (Overlay), so a later ``opt.lr = ...``, a new schedule or ``load_state_dict()`` reaches the
keys with settings of their own too.

A plain key is always a key, even when it is callable (a layer object with ``__call__``). The older
spelling, a bare function (a def, lambda, method or functools.partial) as the selector
(``{is_bias: {...}}``), still selects by predicate, except when that very function is also a key of
the params being updated: then it is that key.
"""

from __future__ import annotations

import functools
import types
from collections.abc import Hashable, Mapping
from typing import TYPE_CHECKING, Any, Callable

from ._settings import Hyperparameter, Option

if TYPE_CHECKING:
    from ._base import Optimizer

Settings = tuple[tuple[str, Any], ...]


class where:  # noqa: N801 (read as a clause: per_key={where(is_bias): {...}})
    """Select the keys for which ``predicate(key)`` is true, in an optimizer's ``per_key``.

    >>> import fastopt
    >>> opt = fastopt.optim.AdamW(per_key={fastopt.where(lambda k: k.startswith("b")):
    ...                                    {"weight_decay": 0.0}})
    """

    __slots__ = ("predicate",)

    def __init__(self, predicate: Callable[[Hashable], Any]) -> None:
        if not callable(predicate):
            raise TypeError(f"where() takes a predicate (a callable); got {predicate!r}")
        self.predicate = predicate

    def __repr__(self) -> str:
        return f"where({self.predicate!r})"


# The callables that the older spelling takes for predicates: functions, lambdas, methods and
# partials of them. Any other callable (a layer object with __call__) is a key.
_FUNCTIONS = (types.FunctionType, types.BuiltinFunctionType, types.MethodType, functools.partial)
_NONE: frozenset = frozenset()


class PerKey:
    """The checked per_key entries of one optimizer class, and which settings each key gets."""

    def __init__(self, cls: type, per_key: Any) -> None:
        if not isinstance(per_key, Mapping):
            raise TypeError(
                f"per_key must be a dict {{key or where(predicate): {{name: value}}}}; "
                f"got {per_key!r}"
            )
        hyperparameters: dict[str, Hyperparameter] = cls._hyperparameters  # type: ignore[attr-defined]
        allowed = sorted(name for name, h in hyperparameters.items() if not h.shared)
        entries = []
        for selector, settings in per_key.items():
            if not isinstance(settings, Mapping):
                raise TypeError(f"per_key[{selector!r}] must be a dict of hyperparameters")
            checked = {}
            for name, value in settings.items():
                if name not in allowed:
                    raise ValueError(
                        f"per_key[{selector!r}]: {cls.__name__} has no per-key hyperparameter "
                        f"{name!r}; choose from {allowed}"
                    )
                checked[name] = hyperparameters[name].check(name, value)  # raises if bad
            entries.append((selector, checked))
        self.entries = tuple(entries)
        self._functions = tuple(s for s, _ in entries if isinstance(s, _FUNCTIONS))
        self._cache: dict[Hashable, Settings] = {}
        self._cached_for: frozenset = frozenset()

    def groups(self, params: Mapping[Hashable, Any]) -> dict[Hashable, Settings]:
        """{key: settings} for the keys of params that have settings of their own."""
        as_keys = _NONE
        for function in self._functions:  # a loop, not a generator: this runs every update
            if function in params:
                as_keys = frozenset(f for f in self._functions if f in params)
                break
        if as_keys != self._cached_for:  # a bare function became (or stopped being) a key
            self._cache, self._cached_for = {}, as_keys
        cache, result = self._cache, {}
        for key in params:
            settings = cache.get(key)
            if settings is None:
                settings = cache[key] = self._settings_of(key, as_keys)
            if settings:
                result[key] = settings
        return result

    def _settings_of(self, key: Hashable, as_keys: frozenset) -> Settings:
        merged: dict[str, Any] = {}
        for selector, settings in self.entries:
            if isinstance(selector, where):
                chosen = bool(selector.predicate(key))
            elif isinstance(selector, _FUNCTIONS) and selector not in as_keys:
                chosen = bool(selector(key))
            else:
                chosen = selector == key
            if chosen:
                merged.update(settings)
        return tuple(sorted(merged.items()))


class Cohort:
    """Keys that step together with hyperparameters and a step count of their own, unlike per_key
    settings, which share the optimizer's step count: fastopt.torch's param groups, whose params
    each keep torch's per-param ``step`` (a param first stepped later starts its own bias
    corrections, as in torch).

    ``h``: the hyperparameters, read as attributes; ``state``: ``steps`` (updates made) and
    ``counters`` (NAdam's mu_product), read as the optimizer's state is; ``name``: for messages.
    """

    __slots__ = ("keys", "h", "state", "name")

    def __init__(self, keys: list[Any], h: Any, state: Any, name: str) -> None:
        self.keys, self.h, self.state, self.name = keys, h, state, name


class PerKeyOption(Option):
    """``opt.per_key``: reads back what was assigned; assigning checks it against the class."""

    def __init__(self) -> None:
        super().__init__(None)

    def __set__(self, opt: Optimizer, value: Any) -> None:
        opt._per_key = None if value is None else PerKey(type(opt), value)
        opt.__dict__[self.name] = value
        opt._forget_plan()


class Overlay:
    """The optimizer's current hyperparameters, with one group of per-key settings on top: what a
    class's ``step_scalars(h, state)`` and ``kernel_options(h, state)`` read for those keys.

    The values are copied in when it is made (so reads are plain attribute reads), and the plan
    keeps it while the settings stand; anything else is read from the optimizer."""

    def __init__(self, opt: Optimizer, settings: Settings) -> None:
        values = {name: getattr(opt, name) for name in type(opt)._hyperparameters}
        values.update(settings)
        lr = values["lr"]
        # A schedule of the keys' own is evaluated once per update, here, as the optimizer's own
        # is: a schedule need not be a pure function of the step.
        self.scheduled = callable(lr) or opt._schedule is not None
        if callable(lr):
            values["lr"] = opt._scheduled_rate(lr, opt.steps)
        self.__dict__.update(values)
        self._opt = opt

    def __getattr__(self, name: str) -> Any:  # only for what is not a hyperparameter
        return getattr(self.__dict__["_opt"], name)
