"""The algorithm spec, as the compiled core exports it, and how a Python class binds to it by name.

C++ owns the spec (src/cpp/kernels/rules/): each rule names its option flags, its per-step scalars
(in the order its constructor reads them) and, for each combination of flags, its state slots. A
Python class names the rule it drives, the scalars it computes and the states it shows; bind()
compares those names with the rule's when the class is created, so a class and its rule that
disagree fail at import, naming both sides, and no positional order is left to agree on by luck.
"""

from __future__ import annotations

import operator
from collections.abc import Mapping
from typing import Any, Callable

from . import _core

Scalars = tuple[float, ...]


class Rule:
    """One algorithm of the kernel table: its flags, scalar names and variants. (A plain class,
    not a dataclass: importing dataclasses alone cost ~2 ms of fastopt's import.)"""

    __slots__ = ("name", "flags", "scalars", "variants", "flag_set", "state_kinds")

    def __init__(
        self,
        name: str,
        flags: tuple[str, ...],
        scalars: tuple[str, ...],
        variants: Mapping[int, tuple[int, tuple[str, ...]]],  # flag bits -> (kernel, states)
        state_kinds: Mapping[str, str] | None = None,  # "signed", "unsigned" or "running_max"
    ) -> None:
        self.name, self.flags, self.scalars, self.variants = name, flags, scalars, variants
        self.state_kinds = dict(state_kinds or {})
        self.flag_set = frozenset(flags)

    @property
    def states(self) -> tuple[str, ...]:
        """Every state any variant keeps, in slot order of first appearance."""
        seen: dict[str, None] = {}
        for _, names in sorted(self.variants.values()):
            seen.update(dict.fromkeys(names))
        return tuple(seen)

    def variant(self, options: Mapping[str, bool]) -> tuple[int, tuple[str, ...]]:
        """(kernel index, state names) of the variant with these flags on."""
        if not options.keys() <= self.flag_set:
            unknown = sorted(set(options) - self.flag_set)
            raise TypeError(f"rule {self.name!r} has no option {unknown}; it has {self.flags}")
        bits = 0
        for bit, flag in enumerate(self.flags):
            if options.get(flag):
                bits |= 1 << bit
        return self.variants[bits]


RULES: dict[str, Rule] = {
    name: Rule(
        name,
        tuple(spec["flags"]),
        tuple(spec["scalars"]),
        dict(spec["variants"]),
        spec["state_kinds"],
    )
    for name, spec in _core.algorithms().items()
}


def rule(name: str) -> Rule:
    found = RULES.get(name)
    if found is None:
        raise TypeError(f"the compiled core has no rule {name!r}; it has {sorted(RULES)}")
    return found


def per_step(*names: str) -> Callable[[Callable[..., Scalars]], Any]:
    """Declare the names of the scalars a class's ``step_scalars(h, state)`` returns, in its order.

    The order need not be the rule's: bind() maps the names onto the rule's slots once, when the
    class is created.
    """

    def declare(function: Callable[..., Scalars]) -> Any:
        function.scalar_names = names  # type: ignore[attr-defined]
        return staticmethod(function)

    return declare


def reorder(
    owner: str, computed: tuple[str, ...], rule_: Rule
) -> Callable[[Scalars], Scalars] | None:
    """The function that puts scalars computed in the class's order into the rule's order (None:
    the orders agree, the common case, which then costs nothing per update).

    Raises TypeError, naming the class, the rule and both lists, when the names differ.
    """
    if sorted(computed) != sorted(rule_.scalars) or len(set(computed)) != len(computed):
        raise TypeError(
            f"{owner} computes the scalars {computed} but its rule {rule_.name!r} takes "
            f"{rule_.scalars}: the names must match (src/cpp/kernels/rules/)"
        )
    if computed == rule_.scalars:
        return None
    positions = [computed.index(name) for name in rule_.scalars]
    pick = operator.itemgetter(*positions)
    return (lambda values: (pick(values),)) if len(positions) == 1 else pick


def check_states(owner: str, shown: tuple[str, ...], rule_: Rule) -> None:
    """The states a class shows must be exactly the states its rule may keep."""
    if set(shown) != set(rule_.states):
        raise TypeError(
            f"{owner} shows the states {shown} but its rule {rule_.name!r} keeps {rule_.states}: "
            "the names must match (src/cpp/kernels/rules/)"
        )


def bind(cls: Any) -> None:
    """Bind an optimizer class to its rule by name; a mismatch fails here, at import, naming both
    sides."""
    found = rule(cls.rule)
    computed = getattr(cls.step_scalars, "scalar_names", None)
    if computed is None:
        raise TypeError(
            f"{cls.__qualname__}.step_scalars must be declared with @per_step(names...)"
        )
    cls._rule = found
    cls._reorder = reorder(cls.__qualname__, computed, found)
    check_states(cls.__qualname__, cls._state_names, found)
