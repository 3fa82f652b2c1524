"""An optimizer's plan: what an update needs that depends on its settings only.

Made once per settings (``Optimizer._make_plan``) and forgotten on any assignment to a setting: the
core's Updater per kernel variant, the scalars when they are constant, and the (kernel, scalars)
entries of per-key settings and of cohorts (fastopt.torch's param groups).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from . import _core, _spec
from ._per_key import Cohort, Overlay
from ._precision import half_options
from ._state import OptimizerState

Scalars = _spec.Scalars


class Plan:
    """What an update needs that depends on the settings only: made once, forgotten on any
    assignment. ``updater`` is None when the kernel variant is chosen per step (AdaBelief);
    ``scalars`` is None when they change per step. The class's hooks are read through the class,
    never the instance, so an instance attribute of the same name cannot shadow them."""

    __slots__ = (
        "opt", "cls", "updaters", "updater", "scalars", "compute_scalars", "next_counters",
        "max_grad_norm", "per_key", "variants", "groups", "overlays",
    )  # fmt: skip

    def __init__(self, opt: Any) -> None:
        cls = type(opt)
        self.opt, self.cls = opt, cls
        self.updaters: dict[tuple[bool, ...], Any] = {}
        self.max_grad_norm = opt.max_grad_norm
        self.per_key = opt._per_key
        self.variants: dict[Any, tuple[int, tuple[str, ...]]] = {}  # per-key settings -> variant
        self.groups: dict[Any, tuple[int, Scalars]] = {}  # per-key settings -> constant entry
        self.overlays: dict[Any, Overlay] = {}  # per-key settings -> their hyperparameters
        state = opt._state
        self.updater = None if cls.options_per_step else self.updater_for(opt, state)
        # The class's own function when its scalars are in the rule's order (every class here):
        # one Python call fewer per update than the reordering wrapper.
        self.compute_scalars = cls.step_scalars if cls._reorder is None else opt._ordered_scalars
        self.next_counters = cls.next_counters if cls.counters else None
        self.scalars = None
        if cls.constant_scalars and opt._schedule is None:
            self.scalars = self.compute_scalars(opt, state)

    def updater_for(self, h: Any, state: OptimizerState) -> Any:
        """The core's Updater for the variant the options select (one per variant, kept)."""
        cls, opt = self.cls, self.opt
        options = cls.kernel_options(h, state)
        # Keyed by the options' values (their keys are fixed per class): a class that picks its
        # variant per step (AdaBelief) then skips the rule's lookup.
        key = tuple(options.values())
        updater = self.updaters.get(key)
        if updater is None:
            index, names = cls._rule.variant(options)
            updater = self.updaters[key] = _core.Updater(
                index,
                names,
                initial_state=cls.first_state_value(opt),
                nonfinite=opt.nonfinite,
                state_format=opt.state_format,
                compact_min_size=opt.compact_min_size,
                **half_options(opt),
            )
        return updater

    def group(
        self, settings: Any, state: OptimizerState, state_names: tuple[str, ...]
    ) -> tuple[int, Scalars]:
        """(kernel index, scalars) of the keys with these per-key settings: the optimizer's
        current hyperparameters with the settings on top. Kept while the plan lives when neither
        the variant nor the scalars can change between steps."""
        entry = self.groups.get(settings)
        if entry is not None:
            return entry
        cls = self.cls
        h = self.overlays.get(settings)
        if h is None:
            h = Overlay(self.opt, settings)
            if not h.scheduled:  # otherwise lr changes every update: made afresh each time
                self.overlays[settings] = h
        variant = self.variants.get(settings)
        if variant is None or cls.options_per_step:
            variant = self.variant(h, state, state_names, f"per_key settings {dict(settings)}")
            self.variants[settings] = variant
        entry = (variant[0], self.compute_scalars(h, state))
        if self.scalars is not None and not cls.options_per_step and not h.scheduled:
            self.groups[settings] = entry
        return entry

    def variant(
        self, h: Any, state: Any, state_names: tuple[str, ...], whose: str
    ) -> tuple[int, tuple[str, ...]]:
        """The rule's variant for hyperparameters ``h``: it must keep the same states as the
        call's Updater (one call, one set of state dicts)."""
        cls = self.cls
        variant = cls._rule.variant(cls.kernel_options(h, state))
        if variant[1] != state_names:
            raise ValueError(
                f"{whose} change which state is kept ({variant[1]} instead of {state_names}); "
                "use a separate optimizer for those keys"
            )
        return variant

    def cohorts(self, cohorts: Sequence[Cohort]) -> tuple[Any, Scalars, dict[Any, Any]]:
        """(Updater, scalars, {key: (kernel index, scalars)}) for keys that step in cohorts of
        their own, each with its hyperparameters and its step count (fastopt.torch's param
        groups): every key is in the table, so the Updater's own scalars are the first's."""
        first = cohorts[0]
        updater = self.updater_for(first.h, first.state)
        names = updater.state_names
        table: dict[Any, tuple[int, Scalars]] = {}
        for cohort in cohorts:
            index, _ = self.variant(cohort.h, cohort.state, names, cohort.name)
            entry = (index, self.compute_scalars(cohort.h, cohort.state))
            for key in cohort.keys:
                table[key] = entry
        return updater, table[first.keys[0]][1], table
