"""The bookkeeping of a line-search method's vectors: which numbered slots of its _core.Search
are free inside a step that may be undone, and what a pass sums of the vector it writes."""

from __future__ import annotations

from typing import NamedTuple

__all__ = ["Slots", "Sums"]


class Sums(NamedTuple):
    """What a pass of _core.Search sums of the vector it writes."""

    dot: float  # with the first vector named
    dot2: float  # with the second
    square: float  # its squared 2-norm
    magnitude: float  # its 1-norm
    largest: float  # its inf-norm (NaN if it holds a NaN)


class Slots:
    """Which of a Search's numbered vectors are free, inside a step that may be undone.

    The slots the state holds when a step begins (``live``) are never handed out before the step
    ends, even once the step has replaced them: if the step fails they are the state again. When
    it ends, every slot the state no longer holds is free.
    """

    def __init__(self) -> None:
        self.count = 0
        self.free: list[int] = []
        self.protected: frozenset[int] = frozenset()

    def take(self) -> int:
        if self.free:
            return self.free.pop()
        self.count += 1
        return self.count - 1

    def give(self, slot: int | None) -> None:
        """A slot the step no longer needs (those the state held at the start stay reserved)."""
        if slot is not None and slot not in self.protected and slot not in self.free:
            self.free.append(slot)

    def begin(self, live: set[int]) -> None:
        self.protected = frozenset(live)

    def end(self, live: set[int]) -> None:
        """Commit or undo alike: free is everything but what the state now holds."""
        self.free = [slot for slot in range(self.count) if slot not in live]
        self.protected = frozenset()
