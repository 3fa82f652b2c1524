"""The one adapter: a torch.optim.Optimizer whose step() runs a fastopt.optim engine.

Each class of fastopt.torch names its engine (``engine = fastopt.optim.AdamW``) and nothing else.
Its constructor takes torch's own signature (read from ``torch.optim.<Name>`` of the installed
torch; for Lion and AdaBelief, which torch lacks, the engine's), plus fastopt's optimizer-wide
options as keywords: ``max_grad_norm``, ``nonfinite``, ``state_format``, ``compact_min_size``,
``master_weights``, ``rounding``, ``compensation``, ``seed``.

One step() is one fused call of the engine over every param of every group that has a grad. Keys
are the params' indexes in ``state_dict()`` order. Each group's hyperparameters are checked with
the engine's own checks when they change (a scheduler writing ``group["lr"]``); each param keeps
torch's per-param ``step`` (and NAdam's ``mu_product``), so params that step together form one
cohort (``fastopt._per_key.Cohort``) with its own bias corrections, as in torch.

``self.state[p]`` holds torch tensors over the engine's own arrays (no copies): ``step`` and the
rule's states under torch's names, and under the options ``master``, ``compensation`` and
``<state>_absmax``. The step counts are committed in the same C call as the params.
"""

from __future__ import annotations

import copy
import inspect
from collections import defaultdict
from collections.abc import Hashable, Iterable
from typing import Any, Callable, ClassVar

import numpy as np
import torch

from .. import _tensors
from .._base import Optimizer as Engine
from .._per_key import Cohort, Overlay
from .._settings import COMMON_OPTIONS
from . import _state_dict

# fastopt's options that hold for the whole optimizer (the engine's); per_key is what param
# groups replace.
ENGINE_OPTIONS = tuple(name for name in COMMON_OPTIONS if name != "per_key")
# Settings of the engine that are not per group: how half params and states are stored.
_STORAGE = ("master_weights", "rounding", "compensation", "seed", "state_format",
            "compact_min_size")  # fmt: skip
# torch's arguments that choose torch's implementation: fastopt's step is always fused.
_IMPLEMENTATION = ("foreach", "fused")
# torch's arguments for what a CPU step outside autograd cannot do.
_UNSUPPORTED = ("capturable", "differentiable")


def _memory(param: torch.Tensor) -> tuple[Any, ...]:
    """What a param's NumPy view depends on: a view is kept while this stays the same."""
    return (param.data_ptr(), param.dtype, param.shape, param.stride())


class CohortState:
    """A cohort's step count and counters, read by the engine's step_scalars as its own state."""

    __slots__ = ("steps", "counters", "given")

    def __init__(self, steps: int, counters: dict[str, float], given: Any = None) -> None:
        self.steps, self.counters = steps, counters
        self.given = given  # the params' own counters (None before their first step)


def _plain(value: Any) -> Any:
    """A group's value as a Python number: torch allows tensors for lr and betas."""
    if isinstance(value, torch.Tensor):
        return value.item()
    if isinstance(value, tuple):
        return tuple(_plain(v) for v in value)
    return value


class Optimizer(torch.optim.Optimizer):
    """Base class of fastopt.torch: torch.optim.Optimizer over a fastopt.optim engine."""

    engine: ClassVar[type[Engine]]
    keeps_step: ClassVar[bool] = True  # torch keeps a per-param "step" (its SGD does not)
    _signature: ClassVar[inspect.Signature]
    _torch_defaults: ClassVar[dict[str, Any]]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "engine" in cls.__dict__:
            cls._signature, cls._torch_defaults = _signature_for(cls.__name__, cls.engine)

            # A function of the class's own, to carry its signature (help(), inspect).
            def __init__(self: Any, params: Iterable[Any], *args: Any, **kwargs: Any) -> None:
                Optimizer.__init__(self, params, *args, **kwargs)

            __init__.__signature__ = cls._signature  # type: ignore[attr-defined]
            __init__.__doc__ = Optimizer.__init__.__doc__
            cls.__init__ = __init__  # type: ignore[method-assign]

    def __init__(self, params: Iterable[Any], *args: Any, **kwargs: Any) -> None:
        cls = type(self)
        bound = cls._signature.bind(self, params, *args, **kwargs)
        bound.apply_defaults()
        values = dict(bound.arguments)
        del values["self"], values["params"]
        options = {name: values.pop(name) for name in ENGINE_OPTIONS}
        for name in _UNSUPPORTED:
            if values.get(name):
                raise ValueError(
                    f"{cls.__name__}: {name}=True is not supported; fastopt's step runs over CPU "
                    "memory outside autograd"
                )
        names = cls.engine._hyperparameters
        for name, value in values.items():
            if name not in names and name not in (*_IMPLEMENTATION, *_UNSUPPORTED):
                if value != cls._torch_defaults.get(name):
                    raise NotImplementedError(
                        f"{cls.__name__}: fastopt has no {name}={value!r} (torch's option)"
                    )
        given = {name: _plain(v) for name, v in values.items() if name in names}
        # The engine checks every value (ValueError/TypeError as torch's constructors raise) and
        # keeps the arrays; torch's defaults dict gets the engine's values for what the signature
        # fixes (AdamW's decoupled_weight_decay).
        self._engine = cls.engine(**given, **options)
        self._group_names = tuple(n for n in names if n not in _STORAGE)
        defaults = dict(values)
        for name in self._group_names:
            defaults.setdefault(name, getattr(self._engine, name))
        self._keys: dict[int, int] = {}  # id(param) -> key
        self._params: list[torch.Tensor] = []  # key -> param
        self._steps: dict[int, int] = {}  # key -> torch's per-param step
        self._counters: dict[int, dict[str, float]] = {}  # key -> NAdam's mu_product
        self._views: dict[int, tuple[Any, np.ndarray]] = {}  # key -> (signature, NumPy view)
        self._linked: set[int] = set()  # keys whose arrays self.state shows
        self._checked: dict[int, tuple[Any, Any]] = {}  # id(group) -> (values, settings)
        super().__init__(params, defaults)

    # ---- param groups ----

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """torch's add_param_group; the group's hyperparameters are checked now, with the
        engine's checks (ValueError naming the group)."""
        groups_before = len(self.param_groups)
        super().add_param_group(param_group)
        group = self.param_groups[-1]
        try:
            if len({id(p) for p in group["params"]}) != len(group["params"]):
                raise ValueError(
                    f"param_groups[{groups_before}] holds a parameter more than once: torch.optim "
                    "would update it twice per step (and warns that this will become an error); "
                    "list each parameter once"
                )
            self._check_states(groups_before, self._settings(groups_before, group))
        except BaseException:
            self.param_groups.pop()
            raise
        for param in group["params"]:
            self._keys[id(param)] = len(self._params)
            self._params.append(param)

    def _check_states(self, index: int, settings: Overlay) -> None:
        """A group must keep the states the first group keeps: one fused call per step runs
        every group over one set of state dicts."""
        engine = type(self._engine)
        start = CohortState(0, dict(engine.counters))
        kept = engine._rule.variant(engine.kernel_options(settings, start))[1]  # type: ignore[arg-type]
        if index == 0:
            self._kept = kept
        elif kept != self._kept:
            raise ValueError(
                f"param_groups[{index}] keeps the states {kept} but param_groups[0] keeps "
                f"{self._kept}: fastopt.torch steps every group in one fused call, so options that "
                "add a state (momentum, amsgrad, centered) must be on in every group or in none; "
                "use a second optimizer for the other params"
            )

    def _settings(self, index: int, group: dict[str, Any]) -> Overlay:
        """The group's hyperparameters as the engine's step_scalars reads them, checked again
        only when a value changed (a scheduler sets group["lr"] every step)."""
        for name in _UNSUPPORTED:
            if group.get(name):
                raise ValueError(f"param_groups[{index}]: {name}=True is not supported")
        values = tuple(_plain(group[name]) for name in self._group_names)
        cached = self._checked.get(id(group))
        if cached is not None and cached[0] == values:
            return cached[1]
        hyperparameters = type(self).engine._hyperparameters
        checked = []
        for name, value in zip(self._group_names, values):
            try:
                checked.append((name, hyperparameters[name].check(name, value)))
            except (TypeError, ValueError) as error:
                raise type(error)(f"param_groups[{index}]: {error}") from None
        settings = Overlay(self._engine, tuple(checked))
        self._checked[id(group)] = (values, settings)
        return settings

    # ---- the step ----

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """One fused update of every param that has a grad (params without one are left as
        they are, as torch does). ``closure`` re-evaluates the model and returns the loss."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        # One step at a time: the step counts read here must be the ones committed with the params
        # (the engine's lock, which its own update() takes too; re-entrant).
        with self._engine._lock:
            self._step()
        return loss

    def _step(self) -> None:
        params: dict[Hashable, np.ndarray] = {}
        grads: dict[Hashable, Any] = {}
        stepped: list[int] = []
        cohorts: list[Cohort] = []
        steps, counters, keys, views = self._steps, self._counters, self._keys, self._views
        # ~1 us of Python a param beside the engine's own: this loop is the adapter's cost.
        for index, group in enumerate(self.param_groups):
            settings = self._settings(index, group)
            last: tuple[int, Any, Cohort] | None = None  # params of a group mostly share a step
            for param in group["params"]:
                grad = param.grad
                if grad is None:
                    continue
                key = keys[id(param)]
                kept = views.get(key)
                if kept is None or kept[0] != _memory(param):
                    kept = self._new_view(key, param)
                params[key] = kept[1]
                try:
                    grads[key] = grad.numpy()  # zero copies; anything unusual: the engine checks
                except (TypeError, RuntimeError):
                    grads[key] = grad
                step, counter = steps.get(key, 0), counters.get(key)
                if last is None or last[0] != step or last[1] is not counter:
                    last = (step, counter, self._cohort(cohorts, index, settings, step, counter))
                last[2].keys.append(key)
                stepped.append(key)
        if not stepped:
            return
        engine = self._engine
        skipped = engine.skipped_updates
        engine._update(params, grads, cohorts, self._commits(cohorts))
        if engine.skipped_updates == skipped:
            self._link(stepped)
            _tensors.written(self._params[key] for key in stepped)

    def _cohort(
        self, cohorts: list[Cohort], index: int, settings: Overlay, step: int, counter: Any
    ) -> Cohort:
        """The cohort of group ``index``'s params at ``step`` (and NAdam's mu_product)."""
        for cohort in cohorts:
            state = cohort.state
            if cohort.h is settings and state.steps == step and state.given == counter:
                return cohort
        state = CohortState(step, counter or dict(self._engine.counters), counter)
        cohorts.append(Cohort([], settings, state, f"param_groups[{index}]"))
        return cohorts[-1]

    def _new_view(self, key: int, param: torch.Tensor) -> tuple[Any, np.ndarray]:
        """The param's NumPy view, kept while the param keeps its memory (``p.data = ...``
        gives it new memory, and a new view)."""
        view = _tensors.as_array(param, "params", key, writes=True)
        assert view is not None
        self._views[key] = kept = (_memory(param), view)
        self._linked.discard(key)  # new memory: the engine may replace the key's states
        return kept

    def _commits(self, cohorts: list[Cohort]) -> list[tuple[dict[Any, Any], dict[Any, Any]]]:
        """What the engine commits with the params, in the same C call: each param's new
        ``step`` (a tensor shared by its cohort) and the step counts (and counters) behind them."""
        engine_cls = type(self._engine)
        commits: list[tuple[dict[Any, Any], dict[Any, Any]]] = []
        steps: dict[int, int] = {}
        counters: dict[int, dict[str, float]] = {}
        new: dict[torch.Tensor, dict[str, Any]] = {}  # the first state of params first stepped
        state, params = self.state, self._params
        for cohort in cohorts:
            after = cohort.state.steps + 1
            following = None
            if engine_cls.counters:
                following = engine_cls.next_counters(cohort.h, cohort.state)
            shown = _state_dict.counts_shown(after, following or {})
            for key in cohort.keys:
                steps[key] = after
                if following is not None:
                    counters[key] = following
                # state.get, not state[...]: that would insert, whether the step is made or not.
                entry = state.get(params[key])
                if entry is None:
                    new[params[key]] = dict(shown)
                else:
                    commits.append((entry, shown))
        if new:
            commits.append((state, new))
        commits.append((self._steps, steps))
        if counters:
            commits.append((self._counters, counters))
        return commits

    def _link(self, keys: Iterable[int]) -> None:
        """Show the engine's arrays of these keys in ``self.state`` as tensors (no copies), once
        per key: the engine makes a key's arrays at its first step and keeps them."""
        raw, linked = self._engine.raw_state, self._linked
        for key in keys:
            if key in linked:
                continue
            found = {name: arrays[key] for name, arrays in raw.items() if key in arrays}
            if found:  # a param never stepped keeps no entry, as in torch
                shown = self.state[self._params[key]]
                for name, array in found.items():
                    shown[_state_dict.shown_name(name, array)] = _state_dict.as_tensor(array)
                linked.add(key)

    @property
    def skipped_updates(self) -> int:
        """Steps skipped for a non-finite grad (``nonfinite="skip"``): nothing changed then."""
        return self._engine.skipped_updates

    @property
    def last_grad_norm(self) -> float | None:
        """The global grad norm of the latest step, under ``max_grad_norm`` (else None)."""
        return self._engine.last_grad_norm

    # ---- state dicts, copies ----

    def state_dict(self) -> dict[str, Any]:
        """torch's format: {"state": {index: {"step": tensor, "exp_avg": tensor, ...}},
        "param_groups": [...]}; the state tensors share the optimizer's memory, as torch's do
        (``step`` and the counters are each param's own copies). Under state_format="int8" a
        state's codes are "<state>_int8" (uint8) beside "<state>_absmax": no torch.optim
        class reads them."""
        with self._engine._lock:
            self._link(range(len(self._params)))
            result = super().state_dict()
            counters = tuple(type(self._engine).counters)
            result["state"] = _state_dict.packed(result["state"], counters)
        return result

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Load torch's format, from fastopt.torch or from torch.optim's own class (and the
        reverse: torch.optim loads what state_dict() gives). Checked before anything changes:
        ValueError names what does not fit, and nothing has changed."""
        with self._engine._lock:
            _state_dict.load(self, state_dict)

    def __getstate__(self) -> dict[str, Any]:
        # A consistent copy while another thread may step: taken under the lock, with the
        # engine's arrays copied there. self.state keeps only the counts: its arrays are views
        # of the engine's, shown again by __setstate__.
        with self._engine._lock:
            state = super().__getstate__()
            own = ("step", *type(self._engine).counters)
            counts: defaultdict[Any, dict[str, Any]] = defaultdict(dict)
            for param, entry in self.state.items():
                counts[param] = {n: v.clone() for n, v in entry.items() if n in own}
            state["state"] = counts
            state["_engine"] = copy.deepcopy(self._engine)
            for name in _PICKLED:
                if name != "_engine":
                    state[name] = copy.copy(self.__dict__[name])
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)  # torch's load_state_dict calls this too, with its fields
        if "_engine" in state:  # unpickled: the engine came with copies of its arrays
            self._views, self._checked, self._linked = {}, {}, set()
            self._keys = {id(p): key for key, p in enumerate(self._params)}
            self._link(range(len(self._params)))

    def __repr__(self) -> str:
        return super().__repr__().replace(" (", f" (engine {type(self._engine).__name__}, ", 1)


# What pickling keeps besides torch's own fields (views and caches are made afresh).
_PICKLED = ("_engine", "_group_names", "_params", "_steps", "_counters", "_kept")


def _signature_for(name: str, engine: type[Engine]) -> tuple[inspect.Signature, dict[str, Any]]:
    """(signature, torch's defaults) of fastopt.torch.<name>: torch.optim.<name>'s own when torch
    has one, else the engine's with ``params`` first; then fastopt's options, keyword-only."""
    theirs = getattr(torch.optim, name, None)
    source = inspect.signature(theirs.__init__ if theirs is not None else engine.__init__)
    parameters = [p for p in source.parameters.values() if p.name not in COMMON_OPTIONS]
    if theirs is None:
        params = inspect.Parameter("params", inspect.Parameter.POSITIONAL_OR_KEYWORD)
        parameters.insert(1, params)
    defaults = {p.name: p.default for p in parameters[2:]}
    options = [
        inspect.Parameter(option, inspect.Parameter.KEYWORD_ONLY, default=COMMON_OPTIONS[option][0])
        for option in ENGINE_OPTIONS
    ]
    return source.replace(parameters=[*parameters, *options]), defaults
