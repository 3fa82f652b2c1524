"""The one lifecycle every fastopt optimizer follows.

A class is a configuration of this machinery: the rule it drives (a row of the compiled kernel
table), its hyperparameters (validated descriptors), the states and counters it shows, and two
pure functions of its hyperparameters ``h`` and its state: ``kernel_options(h, state)``, the
rule's compile-time flags, and ``step_scalars(h, state)``, the per-step scalars, named with
``@per_step``.
bind() checks those names against the rule's when the class is created.

One update() is: schedule -> per-key settings -> clipping -> the core (validate, non-finite
check, run) -> commit the counters. Nothing is written before the core has validated every key;
an update that raises or is skipped changes nothing but the reports.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Mapping, Sequence
from typing import Any, Callable, ClassVar

from . import _spec
from ._checks import (
    count,
    finite_nonnegative,
    flag,
    nonfinite_mode,
    optional_flag,
    optional_positive,
    rounding_mode,
    state_format,
)
from ._checks import seed as seed_check
from ._per_key import Cohort, PerKey, PerKeyOption
from ._persist import load_state_dict, state_dict
from ._plan import Plan
from ._settings import Hyperparameter, LearningRate, Option, StateLayout, with_common_options
from ._state import HalfStateView, OptimizerState, StateView, StepView
from ._types import Grads, Params
from .clip import global_norm

Scalars = _spec.Scalars
_LR = LearningRate()


class Optimizer:
    """Base class of the fastopt optimizers.

    ``update(params, grads)`` updates every array of the dict ``params`` in place, in one call into
    the compiled core for all keys together. It validates every key before it writes anything: on
    bad input it raises and no param and no state has changed.

    Every optimizer also takes the keyword-only options ``max_grad_norm`` (fused clipping by the
    global norm), ``per_key`` (settings of their own for some keys) and ``nonfinite`` ("propagate",
    "skip" or "raise": what an inf or nan grad does); ``master_weights``, ``rounding``,
    ``compensation`` and ``seed`` (half params); and ``state_format`` (None, "bfloat16" or "int8":
    how the states are stored, see fastopt._compact) with ``compact_min_size`` (int8 leaves arrays
    under this many elements, 4096 by default, in the compute type). The last two can change only
    while the optimizer has no state, or by loading a checkpoint.
    """

    rule: ClassVar[str]  # the rule of the compiled core this class drives
    step_name: ClassVar[str] = "steps"  # the step count's name in checkpoints (book Adam: "iter")
    counters: ClassVar[dict[str, float]] = {}  # other counters and their start values
    constant_scalars: ClassVar[bool] = True  # scalars depend on the settings only, not the step
    options_per_step: ClassVar[bool] = False  # the kernel variant may change between steps
    _rule: ClassVar[_spec.Rule]
    _reorder: ClassVar[Callable[[Scalars], Scalars] | None] = None
    _hyperparameters: ClassVar[dict[str, Hyperparameter]] = {}
    _state_names: ClassVar[tuple[str, ...]] = ()

    lr = _LR
    max_grad_norm = Option(optional_positive)
    nonfinite = Option(nonfinite_mode)
    per_key = PerKeyOption()
    # How half (float16, bfloat16) params are updated: saved in checkpoints, the same for all keys.
    master_weights = Hyperparameter(optional_flag, shared=True)
    rounding = Hyperparameter(rounding_mode, shared=True)
    compensation = Hyperparameter(flag, shared=True)
    seed = Hyperparameter(seed_check, shared=True)
    # How the rule's states are stored (None, "bfloat16", "int8"; _compact.py), and the least size
    # of an array whose states int8 quantizes: fixed once the optimizer has state.
    state_format = StateLayout(state_format, None)
    compact_min_size = StateLayout(count, 4096)
    steps = StepView()
    # The arrays half params keep beside the rule's states: {key: array}.
    master = HalfStateView()
    compensation_buffer = HalfStateView("compensation")

    # Reports: they change on a skipped update too, and are not saved in checkpoints.
    last_grad_norm: float | None = None
    skipped_updates: int = 0

    _state: OptimizerState
    _lock: Any
    _plan: Plan | None = None
    _schedule: Any = None
    _per_key: PerKey | None = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "__init__" in cls.__dict__:
            cls.__init__ = with_common_options(cls.__dict__["__init__"])  # type: ignore[method-assign]
        found: dict[str, Any] = {}
        for klass in reversed(cls.__mro__):
            found.update(vars(klass))
        cls._hyperparameters = {
            name: value
            for name, value in found.items()
            if isinstance(value, Hyperparameter) and not isinstance(value, Option)
        }
        cls._state_names = tuple(n for n, v in found.items() if isinstance(v, StateView))
        if "rule" in found:
            _spec.bind(cls)

    # ---- the rule's side: subclasses override these pure functions ----

    @staticmethod
    def kernel_options(h: Any, state: OptimizerState) -> Mapping[str, bool]:
        """The rule's compile-time flags for these hyperparameters (and step)."""
        return {}

    @staticmethod
    def step_scalars(h: Any, state: OptimizerState) -> Scalars:
        """The per-step scalars of the next update (step ``state.steps + 1``)."""
        raise NotImplementedError

    @staticmethod
    def next_counters(h: Any, state: OptimizerState) -> dict[str, float]:
        """All the counters (besides the step count) after a successful update: a new dict, which
        replaces the state's."""
        return {}

    @staticmethod
    def first_state_value(h: Any) -> float:
        """The value new state arrays start at (torch's Adagrad: initial_accumulator_value)."""
        return 0.0

    # ---- the lifecycle ----

    def _begin(self) -> None:
        """Called (once) before a constructor assigns the hyperparameters."""
        self._state = OptimizerState(self._state_names, self.counters)
        self._lock = threading.RLock()

    def update(self, params: Params, grads: Grads) -> None:
        """Update every param in place from its gradient.

        Parameters
        ----------
        params : dict
            Maps any hashable key to a float32, float64, float16 or bfloat16 ndarray (C- or
            Fortran-contiguous, writeable, any shape), or a torch CPU tensor of those dtypes
            (through its NumPy view: no copy), updated in place; or to a real scalar, which is
            replaced by the updated value as a NumPy float64 scalar.
        grads : mapping
            Holds a gradient for every key of ``params`` (extra keys are ignored), of the param's
            shape: an ndarray, a torch CPU tensor or a real scalar. Any real dtype and any memory
            layout is accepted; one that differs from the param's is converted first (a copy: the
            slow path). A grad that overlaps its param's
            memory is copied first, so the result is as if it had been read before the update.

        With ``nonfinite="skip"`` or ``"raise"`` every grad is first checked for inf and nan (for
        free when ``max_grad_norm`` is set: a finite norm proves them finite). "skip" then makes no
        update at all (no param, state, step count, schedule position or ``lr`` changes) and adds
        one to ``skipped_updates``; only the reports ``skipped_updates`` and ``last_grad_norm``
        change. "raise" raises. The default, "propagate", is the book's behaviour.

        Raises
        ------
        FloatingPointError
            ``nonfinite="raise"`` and a grad holds inf or nan: the message names its key.
        KeyError
            A param key has no grad.
        TypeError
            A param is not a float32/float64/float16/bfloat16 ndarray, tensor or real scalar; a
            grad is not real numbers; a tensor is sparse.
        ValueError
            Shapes differ; a param is read-only, not contiguous or unaligned; a param changed
            shape or dtype since its state was created; a tensor is not on the CPU, or a param
            tensor requires grad and is not a leaf.
        """
        # Two threads updating one optimizer would race on its state arrays (the kernels run
        # without the GIL), so each optimizer runs one update() at a time; separate optimizers run
        # in parallel. Re-entrant: user code run during validation (a key's __eq__) may call
        # update() again on this thread, where a plain lock would deadlock.
        with self._lock:
            self._update(params, grads)

    def _update(
        self,
        params: Params,
        grads: Grads,
        cohorts: Sequence[Cohort] | None = None,
        commits: Sequence[tuple[dict[Any, Any], dict[Any, Any]]] = (),
        *,
        norm: float | None = None,
        known_finite: bool = False,
        check_only: bool = False,
    ) -> bool:
        # One function, not a helper call per phase: each call is ~0.1 us of a ~2 us update.
        # cohorts: every key's hyperparameters and step count of its own (fastopt.torch), instead
        # of the optimizer's with per_key on top; commits: what the caller commits with them.
        # fastopt.distributed updates one shard of the params per process: it gives the global
        # `norm` (max_grad_norm), says when it has proved every grad finite (`known_finite`), and
        # first validates each shard with `check_only` (nothing made, written or counted).
        # Returns whether the update was made (False: skipped, or check_only found a non-finite
        # grad under nonfinite="skip").
        state = self._state
        steps = state.steps
        schedule = self._schedule
        if schedule is not None:
            shown = self.lr
            _LR.show(self, self._scheduled_rate(schedule, steps))
        try:
            plan = self._plan or self._make_plan()
            if cohorts is None:
                updater = plan.updater or plan.updater_for(self, state)
                scalars = plan.scalars
                if scalars is None:
                    scalars = plan.compute_scalars(self, state)
                per_key = None
                if plan.per_key is not None:
                    per_key = self._per_key_kernels(plan, params, updater.state_names)
            else:
                updater, scalars, per_key = plan.cohorts(cohorts)
            grad_scale = 1.0
            if plan.max_grad_norm is None:
                norm = None
            else:
                if norm is None:
                    norm = global_norm({key: grads[key] for key in params if key in grads})
                scale = plan.max_grad_norm / (norm + 1e-6)  # torch's clip_grad_norm_ coefficient
                grad_scale = 1.0 if scale >= 1.0 else scale  # not min(): a nan norm propagates
                # A finite norm (a sum of squares in double) proves every grad finite: the norm's
                # pass is the check for skip/raise, and the core checks only grads it converts.
                known_finite = known_finite or math.isfinite(norm)
            # The counters after this step, committed by the core in the same C call as the
            # params: a signal handler that raises (Ctrl-C) runs only once Python code runs again,
            # so it can never find the params updated and the step count behind.
            # A dict of its own per call: an update re-entered from user code during validation
            # (a key's __eq__) commits its own step.
            after: dict[str, Any] = {"steps": steps + 1}
            if plan.next_counters is not None:
                after["counters"] = plan.next_counters(self, state)
            commit: Any = (state.__dict__, after)
            if commits:
                commit = [commit, *commits]
            applied = updater.run(
                params, grads, state.arrays, scalars, grad_scale, known_finite, per_key, commit,
                steps + 1, check_only,
            )  # fmt: skip
        except BaseException:
            if schedule is not None and state.steps == steps:  # not made: the rate goes back
                _LR.show(self, shown)
            raise
        if check_only:
            if schedule is not None:
                _LR.show(self, shown)
            return applied
        self.last_grad_norm = norm
        if not applied:  # nonfinite="skip" and a grad held inf or nan: nothing changed
            if schedule is not None:
                _LR.show(self, shown)
            self.skipped_updates += 1
        return applied

    @property
    def raw_state(self) -> dict[str, dict[Any, Any]]:
        """Every state array as stored, live: {name: {key: array}}. Under state_format="int8" a
        state holds uint8 codes and "<name>_absmax" its float32 absmax per block of 256; under
        "bfloat16", uint16 bits. Also "master" and "compensation" (half params). What
        state_dict() copies."""
        return self._state.arrays

    def master_params(self, params: Params) -> dict[Any, Any]:
        """``params`` with every half param that has a master copy replaced by that float32
        master (``opt.master[key]``): the weights the optimizer really updates. Average these
        with EMA (``ema.update(opt.master_params(params))``) to average the full-precision
        weights rather than their rounded copies."""
        masters = self.master
        return {key: masters.get(key, value) for key, value in params.items()}

    def _make_plan(self) -> Plan:
        self._plan = Plan(self)
        return self._plan

    def _forget_plan(self) -> None:
        self._plan = None

    def _ordered_scalars(self, h: Any, state: OptimizerState) -> Scalars:
        values = type(self).step_scalars(h, state)
        reorder = type(self)._reorder  # through the class: a function stored there is not bound
        return values if reorder is None else reorder(values)

    def _per_key_kernels(
        self, plan: Plan, params: Params, state_names: tuple[str, ...]
    ) -> dict[Any, tuple[int, Scalars]] | None:
        """{key: (kernel index, scalars)} for the keys with settings of their own."""
        groups = plan.per_key.groups(params)
        if not groups:
            return None
        state = self._state
        done: dict[Any, tuple[int, Scalars]] = {}
        table: dict[Any, tuple[int, Scalars]] = {}
        for key, settings in groups.items():
            entry = done.get(settings)
            if entry is None:
                entry = done[settings] = plan.group(settings, state, state_names)
            table[key] = entry
        return table

    def _scheduled_rate(self, schedule: Any, step: int) -> float:
        value = schedule(step)
        try:
            return finite_nonnegative("lr", value)
        except (TypeError, ValueError) as error:
            raise ValueError(f"the lr schedule gave {value!r} at step {step}: {error}") from None

    # ---- checkpoints, copies, display ----

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume exactly, as plain data (arrays are copies).

        Keys: "kind", "hyperparameters", "counters", "state" ({name: {key: array}}). A schedule
        given as lr is not data: it is left out (re-create the optimizer with it; the step count in
        "counters" makes it resume at the right step).
        """
        with self._lock:  # not while an update of another thread is half way through
            return state_dict(self)

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore what state_dict() returned. Validates everything first; on error nothing changes.

        Raises
        ------
        ValueError
            The checkpoint is of another optimizer kind, or a field does not pass the check an
            assignment would make, or a state array is not a float32/float64 ndarray, or the
            arrays of one key disagree in shape or dtype.
        """
        with self._lock:
            load_state_dict(self, state)

    def __getstate__(self) -> dict[str, Any]:
        # copy.deepcopy and pickle: a lock cannot be copied, nor can the core's Updaters; a copy
        # gets its own of both.
        state = dict(self.__dict__)
        state.pop("_lock", None)
        state.pop("_plan", None)
        # A copy counts its own steps: copy.copy shares the state dicts (as it always did) but
        # not the counters; deepcopy and pickle copy the arrays as well.
        state["_state"] = self._state.copy()
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.RLock()

    def __repr__(self) -> str:
        settings = ", ".join(f"{name}={getattr(self, name)!r}" for name in self._hyperparameters)
        return f"{type(self).__name__}({settings})"
