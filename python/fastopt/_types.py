"""Type aliases shared by the optimizers and the references (no import of the compiled core)."""

from __future__ import annotations

from collections.abc import Hashable, Mapping, MutableMapping
from typing import Any

Params = MutableMapping[Hashable, Any]
Grads = Mapping[Hashable, Any]
