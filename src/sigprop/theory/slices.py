"""Exponents over slices of hyperparameter space, and the critical initializations in them.

Glue between named hyperparameters (an ``Architecture`` with axes named as on the command line)
and the pure theory. A ``Setting`` says which exponents: the asymptotic per-layer exponents at the
forward map's fixed point (depth None), or the finite-depth exponents λ^(L) of an L-layer stack
from the input geometry (q0, ρ0) (``sigprop.theory.depth``).
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable

import numpy as np

from sigprop.spec import Architecture, InvalidHyperparameter, axis, canonical_names
from sigprop.spec.declarations import INPUTS
from sigprop.theory.causal import (
    causal_exponents,
    causal_lambda_a,
    first_position_lambda_g,
    is_causal,
)
from sigprop.theory.zero_curves import CurvePoints, intersections, zero_curve
from sigprop.theory.depth import depth_profile
from sigprop.theory.results import DepthProfile
from sigprop.theory.dynamics import collapsed_growth, lambda_a, lambda_g, trajectory
from sigprop.theory.exponents import Exponents, compute_exponents

GRID_CHUNK_POINTS = 20_000  # most grid points per band of ``on_grid`` (which cuts at least 2)


@dataclass(frozen=True)
class Setting:
    """Everything besides the block: n tokens and the definition of the exponents.

    ``depth`` None: asymptotic exponents (per layer, at the fixed point); an integer L: the
    finite-depth exponents λ_a^(L), λ_g^(L) of L layers from tokens with squared norm ``q0``
    and cosine ``rho0`` (1: the limit ρ0 → 1 of nearly collapsed inputs, whose λ_a^(L) = 0 is
    the finite-depth edge of chaos; ``sigprop.theory.depth``).
    """

    n_tokens: int = 16
    depth: int | None = None
    q0: float = 1.0
    rho0: float = 1.0

    def __post_init__(self) -> None:
        for name in ("n_tokens", "depth", "q0", "rho0"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, INPUTS[name].check(value))

    @property
    def label(self) -> str:
        """'asymptotic (…)' or 'finite depth L = 24, from q0 = 1, ρ0 → 1'."""
        if self.depth is None:
            return "asymptotic (per layer, at the fixed point)"
        start = "ρ0 → 1" if self.rho0 >= 1.0 else f"ρ0 = {self.rho0:g}"
        return f"finite depth L = {self.depth}, from q0 = {self.q0:g}, {start}"


def evaluate(arch: Architecture, setting: Setting) -> dict[str, np.ndarray]:
    """λ_a, λ_g and the state they describe, broadcast over the arrays held in ``arch``:
    q_star, rho_star (asymptotic; NaN without a fixed point) or q_L, rho_L, log_jac_L."""
    layer = arch.theory_layer(setting.depth)
    if setting.depth is None:
        e: Exponents = (causal_exponents(layer, setting.n_tokens, samples=None)
                        if is_causal(layer) else compute_exponents(layer, setting.n_tokens))
        return {"lambda_a": e.lambda_a, "lambda_g": e.lambda_g, "q_star": e.q_star,
                "rho_star": e.rho_star}
    d: DepthProfile = depth_profile(layer, setting.n_tokens, setting.depth, setting.q0,
                                    setting.rho0)
    return {"lambda_a": d.lambda_a, "lambda_g": d.lambda_g, "q_L": d.q[-1], "rho_L": d.rho[-1],
            "log_jac_L": d.log_jac[-1]}


def exponent(arch: Architecture, setting: Setting, name: str) -> np.ndarray:
    """One exponent ("lambda_a" or "lambda_g"), computing only what it needs."""
    layer = arch.theory_layer(setting.depth)
    n, depth = setting.n_tokens, setting.depth
    if is_causal(layer):
        return _causal_exponent(layer, setting, name)
    if name == "lambda_a":
        if depth is None:
            return lambda_a(layer, n)
        if setting.rho0 < 1.0:
            return depth_profile(layer, n, depth, setting.q0, setting.rho0).lambda_a
        return collapsed_growth(layer, n, setting.q0, depth).sum(axis=0) / depth
    if depth is None:
        return lambda_g(layer, n)
    return trajectory(layer, n, setting.q0, setting.rho0, depth).log_jac[-1] / depth


def _causal_exponent(layer, setting: Setting, name: str) -> np.ndarray:
    """``exponent`` of a causal layer, exact on grids: asymptotic λ_a, the first position's
    gradient growth for λ_g (``first_position_lambda_g``: a lower bound on the growth at the
    attractor, exact where tokens collapse, equal to the Monte Carlo fixed point where it was
    checked), and both finite-depth exponents from ρ0 → 1 (a Monte Carlo trajectory per point
    from ρ0 < 1, which only small grids can afford)."""
    n, depth = setting.n_tokens, setting.depth
    if depth is None:
        if name == "lambda_a":
            return causal_lambda_a(layer, n)
        return first_position_lambda_g(layer, n)
    profile = depth_profile(layer, n, depth, setting.q0, setting.rho0)
    return profile.lambda_a if name == "lambda_a" else profile.lambda_g


def on_grid(arch: Architecture, setting: Setting, x_axis: str, x: np.ndarray, y_axis: str,
            y: np.ndarray) -> dict[str, np.ndarray]:
    """``evaluate`` on the mesh (y, x): arrays of shape (len(y), len(x)).

    The mesh is cut into equal bands of rows, at least two and at most ``GRID_CHUNK_POINTS``
    points each, evaluated on one thread per core (numpy releases the GIL inside its array
    operations; bands as large as that keep the Python steps between them few). Every grid
    point is computed on its own, so a band's values do not depend on the others; the fixed cut
    (not the number of cores) makes the result the same on every machine."""
    check_axes(x_axis, y_axis)
    X, Y = np.meshgrid(np.asarray(x, float), np.asarray(y, float))
    count = max(2, -(-X.size // GRID_CHUNK_POINTS))
    rows = -(-X.shape[0] // count)
    bands = [slice(start, start + rows) for start in range(0, X.shape[0], rows)]

    def band(rows: slice) -> dict[str, np.ndarray]:
        meshed = arch.with_values(**{axis(x_axis).name: X[rows]}).with_values(
            **{axis(y_axis).name: Y[rows]})
        return {k: np.broadcast_to(v, X[rows].shape)
                for k, v in evaluate(meshed, setting).items()}

    with ThreadPoolExecutor(min(len(bands), _cores())) as pool:
        parts = list(pool.map(band, bands))
    return {k: np.concatenate([part[k] for part in parts]) for k in parts[0]}


def _cores() -> int:
    """The CPU cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def check_axes(x_axis: str | None, y_axis: str) -> None:
    """Both axes declared, and setting different hyperparameters."""
    y_sets = set(canonical_names(y_axis))
    if x_axis is not None and y_sets & set(canonical_names(x_axis)):
        raise InvalidHyperparameter(f"x and y must set different hyperparameters; got {x_axis}, "
                                    f"{y_axis}")


def axis_range(name: str, given: tuple[float, float] | None, points: int) -> tuple[float, float]:
    """The range of an axis: ``given`` or the declared plotting range, checked against the
    allowed interval, low < high and at least 2 points."""
    declared = axis(name)
    low, high = given if given is not None else declared.plot_range
    if points < 2:
        raise InvalidHyperparameter(f"a range needs at least 2 points; got {points}")
    if not low < high:
        raise InvalidHyperparameter(f"range of {declared.flag} must have low < high; got "
                                    f"[{low:g}, {high:g}]")
    inside_low = low >= declared.low if declared.closed_low else low > declared.low
    if not inside_low or high > declared.high:
        raise InvalidHyperparameter(f"range of {declared.flag} must lie in {declared.allowed}; "
                                    f"got [{low:g}, {high:g}]")
    return float(low), float(high)


def field(arch: Architecture, setting: Setting, name: str, x_axis: str | None, y_axis: str
          ) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """f(x, y) → the exponent ``name`` with the two axes set (x ignored when ``x_axis`` is None)."""
    y_name = axis(y_axis).name
    x_name = None if x_axis is None else axis(x_axis).name

    def f(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        x, y = np.broadcast_arrays(np.asarray(x, float), np.asarray(y, float))
        at = arch.with_values(**{y_name: y})
        if x_name is not None:
            at = at.with_values(**{x_name: x})
        return np.broadcast_to(exponent(at, setting, name), y.shape)

    return f




@dataclass(frozen=True)
class CriticalSet:
    """Zero curves of both exponents and their crossings in a slice.

    For a one-parameter slice every ``x`` is NaN. ``closest`` is the point of the λ_a = 0 curve
    where |λ_g| is smallest: the best gradient stability available at the edge of chaos.
    ``lambda_g_on_edge`` is λ_g at each point of the λ_a = 0 curve (for the near-critical
    segment of finite-depth exponents).
    """

    lambda_a_zero: CurvePoints
    lambda_g_zero: CurvePoints
    crossings: CurvePoints
    closest: dict[str, float] | None
    lambda_g_on_edge: np.ndarray


def critical_set(
    arch: Architecture,
    setting: Setting,
    x_axis: str | None,
    x_range: tuple[float, float] | None,
    y_axis: str,
    y_range: tuple[float, float],
    x_points: int = 48,
    y_points: int = 64,
) -> CriticalSet:
    """λ_a = 0, λ_g = 0 and both, solving for y (for every x on a grid when ``x_axis`` is set;
    ``x_axis`` None: the one-parameter slice along y)."""
    check_axes(x_axis, y_axis)
    f_a = field(arch, setting, "lambda_a", x_axis, y_axis)
    f_g = field(arch, setting, "lambda_g", x_axis, y_axis)
    x_grid = np.linspace(*x_range, x_points) if x_axis is not None else np.array([np.nan])
    curve_a = zero_curve(f_a, x_grid, y_range, y_points)
    curve_g = zero_curve(f_g, x_grid, y_range, y_points)
    if x_axis is not None:
        crossings = intersections(f_a, f_g, x_range, y_range, x_points, y_points, curve_a)
    else:
        crossings = _common_roots(curve_a, f_g)
    closest = None
    on_edge = f_g(curve_a.x, curve_a.y) if curve_a.x.size else np.empty(0)
    if np.isfinite(on_edge).any():
        best = int(np.nanargmin(np.abs(on_edge)))
        closest = {"x": float(curve_a.x[best]), "y": float(curve_a.y[best]),
                   "lambda_g": float(on_edge[best])}
    return CriticalSet(curve_a, curve_g, crossings, closest, on_edge)


def crossing_points(arch: Architecture, setting: Setting, x_axis: str,
                    x_range: tuple[float, float], y_axis: str, y_range: tuple[float, float],
                    x_points: int = 48, y_points: int = 64) -> CurvePoints:
    """Where λ_a = λ_g = 0 over the (x, y) plane: the ``crossings`` of ``critical_set`` alone."""
    check_axes(x_axis, y_axis)
    return intersections(field(arch, setting, "lambda_a", x_axis, y_axis),
                         field(arch, setting, "lambda_g", x_axis, y_axis),
                         x_range, y_range, x_points, y_points)


def _common_roots(curve_a: CurvePoints, f_g) -> CurvePoints:
    """In a one-parameter slice a crossing is a root of λ_a where λ_g also vanishes (to 1e-6)."""
    if curve_a.y.size == 0:
        return curve_a
    both = np.abs(f_g(curve_a.x, curve_a.y)) < 1e-6
    return CurvePoints(curve_a.x[both], curve_a.y[both], curve_a.branch[both])


def settle_definition(arch: Architecture, setting: Setting, x_axis: str | None,
                      x_range: tuple[float, float] | None, y_axis: str,
                      y_range: tuple[float, float]) -> Setting:
    """``setting``, or, when it asks for asymptotic exponents and the block has no norm fixed
    point anywhere on a 3 × 3 probe inside the slice (unit residuals), the finite-depth
    exponents at the architecture's own depth. ``InvalidHyperparameter`` when it has none."""
    if setting.depth is not None:
        return setting
    centres = (np.arange(3) + 0.5) / 3  # inside the slice: its edges may be trivial (b = 0)
    xs = x_range[0] + centres * (x_range[1] - x_range[0]) if x_axis is not None else [np.nan]
    ys = y_range[0] + centres * (y_range[1] - y_range[0])
    probe = field(arch, setting, "lambda_a", x_axis, y_axis)(np.asarray(xs)[None, :],
                                                           ys[:, None])
    if np.isfinite(probe).any() or np.isneginf(probe).any():
        return setting
    if arch.depth is None:
        raise InvalidHyperparameter("this block has no norm fixed point in the slice (q grows "
                                    "without bound), so its exponents are finite-depth ones: "
                                    "give a depth (--depth L)")
    return Setting(setting.n_tokens, arch.depth, setting.q0, setting.rho0)


def default_x_axis(arch: Architecture) -> str:
    """``sigma-b`` for the plain MLP (the plane of Poole et al.), ``alpha`` for blocks in the
    paper's residual form, ``branch`` otherwise."""
    if arch["network"] == "mlp":
        return "sigma-b"
    return "alpha" if arch.alpha_form else "branch"
