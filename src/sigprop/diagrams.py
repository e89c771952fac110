"""Compute and save a theory phase diagram: PNG heatmaps plus the grid as CSV and Parquet."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from sigprop.hyperparameters import AXES, ReferencePoint
from sigprop.plots.phase_diagram import plot_phase_diagram
from sigprop.slices import critical_set, exponents_on_grid


def write_phase_diagram(
    point: ReferencePoint,
    x_axis: str,
    x_range: tuple[float, float],
    y_axis: str,
    y_range: tuple[float, float],
    resolution: int,
    out: Path,
    measured: pd.DataFrame | None = None,
) -> list[Path]:
    """Evaluate λ_a and λ_g on a resolution × resolution grid and write figure and tables.

    ``measured`` (from ``simulation.measured_exponents_on_grid``) is drawn over the heatmaps
    and written as ``phase_diagram_measured.csv``.
    """
    x = np.linspace(*x_range, resolution)
    y = np.linspace(*y_range, resolution)
    e = exponents_on_grid(point, x_axis, x, y_axis, y)
    crossings = critical_set(point, y_axis, y_range, x_axis, x_range).crossings
    out.mkdir(parents=True, exist_ok=True)
    grid = grid_table(x_axis, x, y_axis, y, e)
    csv, parquet = out / "phase_diagram.csv", out / "phase_diagram.parquet"
    grid.to_csv(csv, index=False)
    grid.to_parquet(parquet, index=False)
    overlay, written = None, [csv, parquet]
    if measured is not None:
        overlay = {name: (measured[x_axis].to_numpy(), measured[y_axis].to_numpy(),
                          measured[name].to_numpy()) for name in ("lambda_a", "lambda_g")}
        measured.to_csv(out / "phase_diagram_measured.csv", index=False)
        written.append(out / "phase_diagram_measured.csv")
    png = plot_phase_diagram(
        x, y, e.lambda_a, e.lambda_g, x_axis, y_axis,
        list(zip(crossings.x.tolist(), crossings.y.tolist())),
        fixed_values_caption(point, x_axis, y_axis),
        out / "phase_diagram.png",
        overlay,
    )
    return [png, *written]


def grid_table(x_axis: str, x: np.ndarray, y_axis: str, y: np.ndarray, e) -> pd.DataFrame:
    """One row per grid point: both axes, λ_a, λ_g, q*, ρ*, phase and gradient regime."""
    X, Y = np.meshgrid(x, y)
    return pd.DataFrame(
        {
            x_axis: X.ravel(),
            y_axis: Y.ravel(),
            "lambda_a": e.lambda_a.ravel(),
            "lambda_g": e.lambda_g.ravel(),
            "q_star": e.q_star.ravel(),
            "rho_star": e.rho_star.ravel(),
            "phase": e.phase.ravel(),
            "gradients": e.gradients.ravel(),
        }
    )


def fixed_values_caption(point: ReferencePoint, *axes: str) -> str:
    """'σ_A = 0.6, σ_b = 0, φ = tanh, n = 16' for the hyperparameters not on an axis."""
    on_axis = {name for axis in axes for name in AXES[axis][0]}
    symbols = {"alpha_A": "α_A", "alpha_M": "α_M", "sigma_A": "σ_A", "sigma_w": "σ_w",
               "sigma_b": "σ_b"}
    values = point.scalars()
    parts = [f"{symbols[k]} = {values[k]:g}" for k in symbols if k not in on_axis]
    parts += [f"φ = {point.activation}", f"n = {point.n_tokens} tokens"]
    return "Reference transformer, wide-limit theory:  " + ",  ".join(parts)
