"""Numbers as JSON values: JSON has no NaN or infinities."""

from __future__ import annotations

import math
from typing import Any


def finite_or_none(value: Any) -> float | None:
    """``float(value)``, or None where it is NaN or infinite."""
    value = float(value)
    return value if math.isfinite(value) else None
