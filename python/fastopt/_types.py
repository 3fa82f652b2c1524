"""Type aliases shared by the optimizers and the references (no import of the compiled core)."""

from __future__ import annotations

from collections.abc import Mapping, MutableMapping
from typing import Any

# Keys typed Any, not Hashable: a mapping's key type is invariant, so MutableMapping[Hashable, Any]
# would refuse the dict[str, np.ndarray] every caller has.
Params = MutableMapping[Any, Any]
Grads = Mapping[Any, Any]
