"""Critical initializations: where λ_a = 0 (edge of chaos), λ_g = 0 (edge of gradient stability)
and both at once, in a one- or two-parameter slice of hyperparameter space.

The exponents enter as vectorized functions f(x, y) → array. Roots in y are bracketed on a grid
and refined all at once (``roots.bracketed_roots``); an intersection is a sign change of λ_g along
a branch of the λ_a = 0 curve, refined in x with the curve re-solved at each step.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from sigprop.theory.roots import bracketed_roots

Field = Callable[[np.ndarray, np.ndarray], np.ndarray]

# Exponents below this in magnitude count as zero: some vanish identically on a whole slice (the
# identity network at α = 0; λ_g on the collapsed branch for ReLU and linear MLPs, for which
# χ_M = q_M), and rounding must not turn that into spurious sign changes.
ZERO_TOLERANCE = 1e-12

# |f_g| below this on the f_a = 0 curve (whose points are solved to ~1e-10 in y) is zero.
COINCIDE_TOLERANCE = 1e-8


@dataclass(frozen=True)
class CurvePoints:
    """Points (x, y) on a zero curve; ``branch`` numbers the roots in y at each x from below."""

    x: np.ndarray
    y: np.ndarray
    branch: np.ndarray


def zero_curve(f: Field, x: np.ndarray, y_range: tuple[float, float], y_points: int = 64) -> CurvePoints:
    """All roots y of f(x_i, ·) = 0 in ``y_range`` for every x_i (sign changes on a grid)."""
    x = np.asarray(x, float)
    y_grid = np.linspace(*y_range, y_points)
    values = f(x[:, None], y_grid[None, :])
    signs = np.sign(np.where(np.abs(values) < ZERO_TOLERANCE, 0.0, values))
    # Strict sign changes, and isolated exact zeros; an exponent that vanishes identically in y
    # (e.g. α = 0, the identity network) has no critical point to report.
    change = signs[:, :-1] * signs[:, 1:] < 0
    isolated = (signs[:, :-1] == 0) & (signs[:, 1:] != 0)
    isolated[:, 1:] &= signs[:, :-2] != 0
    change |= isolated
    rows, cols = np.nonzero(change)
    roots = bracketed_roots(lambda y, at: f(x[rows[at]], y), y_grid[cols], y_grid[cols + 1])
    branch = np.zeros(rows.size, dtype=int)
    for i in np.unique(rows):
        branch[rows == i] = np.arange(np.count_nonzero(rows == i))
    return CurvePoints(x=x[rows], y=roots, branch=branch)


def intersections(
    f_a: Field,
    f_g: Field,
    x_range: tuple[float, float],
    y_range: tuple[float, float],
    x_points: int = 48,
    y_points: int = 64,
    curve: CurvePoints | None = None,
) -> CurvePoints:
    """Points where f_a = f_g = 0: sign changes of f_g along each branch of the f_a = 0 curve
    (``curve``: that curve on the ``x_points`` grid, when already found)."""
    x_grid = np.linspace(*x_range, x_points)
    curve = zero_curve(f_a, x_grid, y_range, y_points) if curve is None else curve
    if curve.x.size == 0:
        return CurvePoints(np.empty(0), np.empty(0), np.empty(0, dtype=int))
    on_curve = f_g(curve.x, curve.y)
    # Where λ_g vanishes along the curve itself (both curves coincide, as for the plain MLP)
    # rounding signs are not crossings.
    on_curve = np.where(np.abs(on_curve) < COINCIDE_TOLERANCE, 0.0, on_curve)
    step = x_grid[1] - x_grid[0]
    y_cell = (y_range[1] - y_range[0]) / (y_points - 1)
    brackets = []
    for branch in np.unique(curve.branch):
        idx = np.flatnonzero(curve.branch == branch)
        for a, b in zip(idx[:-1], idx[1:]):
            neighbours = np.isclose(curve.x[b] - curve.x[a], step)
            signs = np.sign(on_curve[a]) * np.sign(on_curve[b])
            if neighbours and (signs < 0 or (signs == 0 and on_curve[a] != on_curve[b])):
                brackets.append((curve.x[a], curve.x[b], curve.y[a], curve.y[b], branch))
    if not brackets:
        return CurvePoints(np.empty(0), np.empty(0), np.empty(0, dtype=int))
    xa, xb, ya, yb, branches = (np.array(c) for c in zip(*brackets))
    y_low = np.maximum(np.minimum(ya, yb) - y_cell, y_range[0])
    y_high = np.minimum(np.maximum(ya, yb) + y_cell, y_range[1])

    def curve_y(x: np.ndarray, at: np.ndarray) -> np.ndarray:
        """y on the f_a = 0 curve at x, inside the y window of brackets ``at``."""
        return bracketed_roots(lambda y, on: f_a(x[on], y), y_low[at], y_high[at])

    x_root = bracketed_roots(lambda x, at: f_g(x, curve_y(x, at)), xa, xb, tolerance=1e-10)
    y_root = curve_y(x_root, np.arange(x_root.size))
    return CurvePoints(x=x_root, y=y_root, branch=branches.astype(int))
