"""Named initialization hyperparameters of the reference transformer, and slices through them.

``ReferencePoint`` holds α_A, α_M, σ_A, σ_w, σ_b, φ and the number of tokens n; numeric fields may
be arrays, so one point stands for a grid. Axes of phase diagrams and critical-point searches are
named as on the command line; ``alpha`` sets α_A = α_M together.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

import numpy as np
from numpy.typing import ArrayLike

from sigprop.architecture import MAX_SIGMA_A, InvalidHyperparameter, Serial, reference_layer

# Axis name -> (fields it sets, allowed range (low, high, low_closed), default plotting range).
AXES: dict[str, tuple[tuple[str, ...], tuple[float, float, bool], tuple[float, float]]] = {
    "alpha": (("alpha_A", "alpha_M"), (0.0, 1.0, True), (0.0, 1.0)),
    "alpha-a": (("alpha_A",), (0.0, 1.0, True), (0.0, 1.0)),
    "alpha-m": (("alpha_M",), (0.0, 1.0, True), (0.0, 1.0)),
    "sigma-a": (("sigma_A",), (0.0, MAX_SIGMA_A, False), (0.1, 3.0)),
    "sigma-w": (("sigma_w",), (0.0, np.inf, False), (0.1, 6.0)),
    "sigma-b": (("sigma_b",), (0.0, np.inf, True), (0.0, 2.0)),
}


# Config keys of sweeps (field names; "alpha" for both α's) and the axis name of each.
AXIS_OF_KEY = {"alpha": "alpha", "alpha_A": "alpha-a", "alpha_M": "alpha-m", "sigma_A": "sigma-a",
               "sigma_w": "sigma-w", "sigma_b": "sigma-b"}


@dataclass(frozen=True)
class ReferencePoint:
    """Hyperparameters of the reference transformer (THEORY.md §1)."""

    alpha_A: ArrayLike = 0.5
    alpha_M: ArrayLike = 0.5
    sigma_A: ArrayLike = 0.6
    sigma_w: ArrayLike = 2.0
    sigma_b: ArrayLike = 0.0
    activation: str = "tanh"
    n_tokens: int = 16

    def __post_init__(self) -> None:
        if int(self.n_tokens) != self.n_tokens or self.n_tokens < 2:
            raise InvalidHyperparameter(f"n_tokens must be an integer >= 2; got {self.n_tokens}")

    def layer(self) -> Serial:
        """The layer description; raises ``InvalidHyperparameter`` for values out of range."""
        return reference_layer(
            self.alpha_A, self.alpha_M, self.sigma_A, self.sigma_w, self.sigma_b, self.activation
        )

    def with_axis(self, axis: str, values: ArrayLike) -> ReferencePoint:
        """A copy with the field(s) of ``axis`` set to ``values``."""
        return replace(self, **{name: values for name in axis_fields(axis)})

    def scalars(self) -> dict[str, float | str | int]:
        """The fields as plain Python values (numeric fields must be scalars)."""
        return {
            f.name: (getattr(self, f.name) if f.name in ("activation", "n_tokens")
                     else float(np.asarray(getattr(self, f.name)).item()))
            for f in fields(self)
        }


def axis_fields(axis: str) -> tuple[str, ...]:
    """The fields an axis name sets; ``InvalidHyperparameter`` listing the names otherwise."""
    try:
        return AXES[axis][0]
    except KeyError:
        raise InvalidHyperparameter(
            f"axis must be one of {', '.join(AXES)}; got {axis!r}"
        ) from None


def check_axis_range(axis: str, low: float, high: float, points: int) -> None:
    """Reject ranges outside the axis' allowed interval, empty ranges and < 2 points."""
    lo, hi, closed = AXES[axis][1]
    flag = f"--{axis}"
    if points < 2:
        raise InvalidHyperparameter(f"a range needs at least 2 points; got {points}")
    if not low < high:
        raise InvalidHyperparameter(f"range of {flag} must have low < high; got [{low:g}, {high:g}]")
    inside_low = low >= lo if closed else low > lo
    if not inside_low or high > hi:
        bracket = "[" if closed else "("
        upper = "∞)" if np.isinf(hi) else f"{hi:g}]"
        raise InvalidHyperparameter(
            f"range of {flag} must lie in {bracket}{lo:g}, {upper}; got [{low:g}, {high:g}]"
        )
