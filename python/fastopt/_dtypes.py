"""The half-precision dtypes fastopt updates: NumPy's float16 and ml_dtypes' bfloat16.

ml_dtypes is optional and never imported here: its bfloat16 is recognised by what NumPy reports
(kind 'V', character 'E', name 'bfloat16'), as the compiled core recognises it. Its dtype number
depends on import order, so it is never compared.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def is_bfloat16(dtype: Any) -> bool:
    return dtype.kind == "V" and dtype.char == "E" and dtype.name == "bfloat16"


def is_half(dtype: Any) -> bool:
    """float16 or bfloat16: stored in 16 bits, computed in float32."""
    return dtype == np.float16 or is_bfloat16(dtype)


def is_floating(dtype: Any) -> bool:
    """A floating-point dtype NumPy can compute with: kind 'f', or bfloat16."""
    return dtype.kind == "f" or is_bfloat16(dtype)
