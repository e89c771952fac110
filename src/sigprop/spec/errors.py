"""Bad input: one exception type, raised where input enters, naming the parameter and its range."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike


class InvalidHyperparameter(ValueError):
    """A hyperparameter or option lies outside its allowed range or set; the message names it
    and what is allowed."""


class NotCovered(InvalidHyperparameter):
    """The wide-limit theory does not cover this architecture (yet); the message says what to
    use instead."""


def interval(low: float, high: float, closed_low: bool, closed_high: bool = True) -> str:
    """'[0, 1]', '(0, ∞)', '(0, 8]'."""
    upper = "∞)" if np.isinf(high) else f"{high:g}" + ("]" if closed_high else ")")
    return ("[" if closed_low else "(") + f"{low:g}, " + upper


def check_range(name: str, value: ArrayLike, low: float, high: float, closed_low: bool,
                closed_high: bool = True) -> None:
    """Raise ``InvalidHyperparameter`` unless every entry of ``value`` lies in the interval and
    is a normal float (a subnormal, 0 < |x| < 2.2e-308, overflows the first division by it)."""
    array = np.asarray(value, dtype=float)
    subnormal = (array != 0) & (np.abs(array) < np.finfo(float).tiny)
    if np.any(subnormal):
        raise InvalidHyperparameter(
            f"{name} must be in {interval(low, high, closed_low, closed_high)}, a normal number "
            f"(0 or at least {np.finfo(float).tiny:.3g} in size); got the subnormal "
            f"{array[subnormal].flat[0]:g}")
    above = array >= low if closed_low else array > low
    below = array <= high if closed_high else array < high
    inside = above & below  # NaN fails both
    if not np.all(inside):
        first_bad = array[~inside].flat[0]
        raise InvalidHyperparameter(
            f"{name} must be in {interval(low, high, closed_low, closed_high)}; got {first_bad:g}"
        )
