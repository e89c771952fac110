"""Exponents over one- and two-parameter slices of the reference transformer's hyperparameters.

Glue between named hyperparameters (``ReferencePoint`` with CLI axis names) and the pure theory:
grids for phase diagrams, and the zero curves and crossings of λ_a and λ_g.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sigprop.hyperparameters import ReferencePoint
from sigprop.theory.critical import CurvePoints, intersections, zero_curve
from sigprop.theory.exponents import Exponents, compute_exponents
from sigprop.theory.dynamics import attracting_state, lambda_a


def exponents_on_grid(
    point: ReferencePoint, x_axis: str, x_values: np.ndarray, y_axis: str, y_values: np.ndarray
) -> Exponents:
    """Exponents on the mesh (y, x): arrays of shape (len(y_values), len(x_values))."""
    X, Y = np.meshgrid(np.asarray(x_values, float), np.asarray(y_values, float))
    meshed = point.with_axis(x_axis, X).with_axis(y_axis, Y)
    return compute_exponents(meshed.layer(), point.n_tokens)


def exponent_field(point: ReferencePoint, exponent: str, x_axis: str | None, y_axis: str):
    """f(x, y) → λ at the point with the two axes set (x ignored when ``x_axis`` is None)."""

    def field(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        x, y = np.broadcast_arrays(np.asarray(x, float), np.asarray(y, float))
        at = point.with_axis(y_axis, y)
        if x_axis is not None:
            at = at.with_axis(x_axis, x)
        layer = at.layer()
        if exponent == "lambda_a":
            return np.broadcast_to(lambda_a(layer, point.n_tokens), y.shape)
        return np.broadcast_to(attracting_state(layer, point.n_tokens).lambda_g, y.shape)

    return field


@dataclass(frozen=True)
class CriticalSet:
    """Zero curves of both exponents and their crossings in a slice.

    For a one-parameter slice every ``x`` is NaN. ``closest`` is the point of the λ_a = 0 curve
    where |λ_g| is smallest: the best gradient stability available at the edge of chaos.
    """

    lambda_a_zero: CurvePoints
    lambda_g_zero: CurvePoints
    crossings: CurvePoints
    closest: dict[str, float] | None


def critical_set(
    point: ReferencePoint,
    y_axis: str,
    y_range: tuple[float, float],
    x_axis: str | None = None,
    x_range: tuple[float, float] | None = None,
    x_points: int = 48,
    y_points: int = 64,
) -> CriticalSet:
    """λ_a = 0, λ_g = 0 and both, solving for y (for every x on a grid when ``x_axis`` is set)."""
    f_a = exponent_field(point, "lambda_a", x_axis, y_axis)
    f_g = exponent_field(point, "lambda_g", x_axis, y_axis)
    x_grid = np.linspace(*x_range, x_points) if x_axis is not None else np.array([np.nan])
    curve_a = zero_curve(f_a, x_grid, y_range, y_points)
    curve_g = zero_curve(f_g, x_grid, y_range, y_points)
    if x_axis is not None:
        crossings = intersections(f_a, f_g, x_range, y_range, x_points, y_points)
    else:
        crossings = _common_roots(curve_a, curve_g, f_a, f_g)
    closest = None
    if curve_a.x.size:
        on_edge = f_g(curve_a.x, curve_a.y)
        best = int(np.argmin(np.abs(on_edge)))
        closest = {"x": float(curve_a.x[best]), "y": float(curve_a.y[best]),
                   "lambda_g": float(on_edge[best])}
    return CriticalSet(curve_a, curve_g, crossings, closest)


def _common_roots(curve_a: CurvePoints, curve_g: CurvePoints, f_a, f_g) -> CurvePoints:
    """In a one-parameter slice a crossing is a root of λ_a where λ_g also vanishes (to 1e-6)."""
    if curve_a.y.size == 0:
        return curve_a
    both = np.abs(f_g(curve_a.x, curve_a.y)) < 1e-6
    return CurvePoints(curve_a.x[both], curve_a.y[both], curve_a.branch[both])


def critical_summary(
    point: ReferencePoint,
    y_axis: str,
    y_range: tuple[float, float],
    x_axis: str | None,
    x_range: tuple[float, float] | None,
    x_points: int,
) -> dict:
    """``critical_set`` as plain data for tables and JSON."""
    found = critical_set(point, y_axis, y_range, x_axis, x_range, x_points=x_points)

    def rows(curve: CurvePoints) -> list[dict]:
        return [
            {"x": (float(cx) if x_axis else None), "y": float(cy), "branch": int(b)}
            for cx, cy, b in zip(curve.x, curve.y, curve.branch)
        ]

    closest = found.closest
    if closest is not None and x_axis is None:
        closest = {**closest, "x": None}
    return {
        "x_axis": x_axis,
        "y_axis": y_axis,
        "lambda_a_zero": rows(found.lambda_a_zero),
        "lambda_g_zero": rows(found.lambda_g_zero),
        "crossings": rows(found.crossings),
        "closest_on_edge_of_chaos": closest,
        "hyperparameters": point.scalars(),
    }
