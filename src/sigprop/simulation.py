"""Theory next to measurement for the reference transformer at chosen hyperparameter points.

``simulate_points`` runs the batched probes of ``sigprop.measure`` (every point and seed in one
vmapped ensemble) and the wide-limit theory for the same points, and returns both as one table.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import pandas as pd

from sigprop.hyperparameters import ReferencePoint
from sigprop.measure import Estimate, empirical_lambda_a_points, lambda_g_from_log_jac, measure_points
from sigprop.theory.dynamics import trajectory
from sigprop.theory.exponents import compute_exponents


@dataclass(frozen=True)
class SimulationSettings:
    """Network size and sampling for measurements (width d, d_ff = d)."""

    depth: int = 24
    width: int = 256
    seeds: tuple[int, ...] = (0, 1, 2, 3)
    n_probes: int = 2
    q0: float = 1.0
    rho0: float = 0.0

    def __post_init__(self) -> None:
        for name in ("depth", "width", "n_probes"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be an integer >= 1; got {getattr(self, name)}")
        if self.depth < 2:
            raise ValueError(f"depth must be >= 2 to measure a growth rate; got {self.depth}")
        if not self.seeds:
            raise ValueError("seeds must be >= 1")
        if not self.q0 > 0:
            raise ValueError(f"q0 must be > 0; got {self.q0:g}")
        if not 0.0 <= self.rho0 <= 1.0:
            raise ValueError(f"rho0 must be in [0, 1]; got {self.rho0:g}")

    @property
    def burn_in(self) -> int:
        """Layers of the depth-L trajectory discarded before λ_g is averaged: the first half,
        so that the geometry has settled."""
        return self.depth // 2

    @property
    def angle_depth(self) -> int:
        """λ_a is measured on networks of 2L layers and averaged over the last L: the norm of
        the collapsed token relaxes to q* only at the rate (1 − α_A²)(1 − α_M²) per layer."""
        return 2 * self.depth


@dataclass(frozen=True)
class PointResult:
    """Measured exponents (mean ± standard error over seeds) at one point."""

    lambda_a: Estimate
    lambda_g: Estimate


def simulate_points(
    points: Sequence[ReferencePoint],
    settings: SimulationSettings,
    on_layer: Callable[[], None] | None = None,
) -> tuple[pd.DataFrame, list[PointResult]]:
    """Per-layer table (theory and measured mean ± s.e. of q, ρ, log_jac) and measured exponents.

    All points must share φ and n. ``on_layer`` is called once per layer of every batched pass
    (for progress bars).
    """
    if len({(p.activation, p.n_tokens) for p in points}) != 1:
        raise ValueError("points simulated together must share the activation and n_tokens")
    n = points[0].n_tokens
    layers = [p.layer() for p in points]
    measured = measure_points(
        layers, depth=settings.depth, width=settings.width, n_tokens=n, q0=settings.q0,
        rho0=settings.rho0, seeds=list(settings.seeds), n_probes=settings.n_probes,
        on_layer=on_layer,
    )
    angle = empirical_lambda_a_points(
        layers, depth=settings.angle_depth, width=settings.width, n_tokens=n,
        seeds=list(settings.seeds), burn_in=settings.depth, on_layer=on_layer,
    )
    rows, results = [], []
    for index, (point, layer) in enumerate(zip(points, layers)):
        theory = trajectory(layer, n, settings.q0, settings.rho0, settings.depth)
        results.append(PointResult(angle[index], lambda_g_from_log_jac(measured.log_jac[index], settings.burn_in)))
        frame = pd.DataFrame({"point": index, "l": np.arange(settings.depth + 1)})
        for key in ("q", "rho", "log_jac"):
            values = getattr(measured, key)[index]
            frame[f"{key}_theory"] = getattr(theory, key)
            frame[f"{key}_mean"] = values.mean(axis=0)
            frame[f"{key}_se"] = _stderr(values)
        for name, value in point.scalars().items():
            frame[name] = value
        rows.append(frame)
    return pd.concat(rows, ignore_index=True), results


def theory_exponents(point: ReferencePoint, settings: SimulationSettings) -> dict[str, float]:
    """λ_a and λ_g of the wide-limit theory at one point, and the theory's mean growth of
    log_jac over the same layers as the measured λ_g ("lambda_g_window"): at finite depth the
    forward state may still be on its way to the attractor where the asymptotic λ_g lives."""
    layer = point.layer()
    e = compute_exponents(layer, point.n_tokens)
    path = trajectory(layer, point.n_tokens, settings.q0, settings.rho0, settings.depth)
    window = (path.log_jac[-1] - path.log_jac[settings.burn_in]) / (settings.depth - settings.burn_in)
    return {"lambda_a": float(e.lambda_a), "lambda_g": float(e.lambda_g),
            "lambda_g_window": float(window)}


def _stderr(values: np.ndarray) -> np.ndarray:
    if values.shape[0] < 2:
        return np.full(values.shape[1:], np.nan)
    return values.std(axis=0, ddof=1) / np.sqrt(values.shape[0])


def measured_exponents_on_grid(
    point: ReferencePoint,
    x_axis: str,
    x_values: np.ndarray,
    y_axis: str,
    y_values: np.ndarray,
    settings: SimulationSettings,
    on_layer: Callable[[], None] | None = None,
) -> pd.DataFrame:
    """Measured λ_a and λ_g (mean and s.e. over seeds) on the mesh of x and y values, all
    networks in one batched ensemble; columns x_axis, y_axis, lambda_a, lambda_a_se, lambda_g,
    lambda_g_se."""
    mesh = [(x, y) for y in y_values for x in x_values]
    points = [point.with_axis(x_axis, x).with_axis(y_axis, y) for x, y in mesh]
    layers = [p.layer() for p in points]
    seeds = list(settings.seeds)
    trajectory_ = measure_points(
        layers, depth=settings.depth, width=settings.width, n_tokens=point.n_tokens,
        q0=settings.q0, rho0=settings.rho0, seeds=seeds, n_probes=settings.n_probes,
        on_layer=on_layer,
    )
    angle = empirical_lambda_a_points(
        layers, depth=settings.angle_depth, width=settings.width, n_tokens=point.n_tokens,
        seeds=seeds, burn_in=settings.depth, on_layer=on_layer,
    )
    gradient = [lambda_g_from_log_jac(log_jac, settings.burn_in) for log_jac in trajectory_.log_jac]
    return pd.DataFrame({
        x_axis: [x for x, _ in mesh],
        y_axis: [y for _, y in mesh],
        "lambda_a": [e.mean for e in angle],
        "lambda_a_se": [e.stderr for e in angle],
        "lambda_g": [e.mean for e in gradient],
        "lambda_g_se": [e.stderr for e in gradient],
    })
