"""Phase diagrams: both exponents over two hyperparameters, with their zero curves.

``phase_diagram`` computes the grid (pure theory, no plotting); ``PhaseDiagram.write`` saves the
figure (PNG) and the grid (CSV and Parquet, through pyarrow). matplotlib and pyarrow load only
when writing, pandas only for ``table()``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from sigprop.spec import Architecture, axis, canonical_names
from sigprop.spec.declarations import HYPERPARAMETERS
from sigprop.slices import (
    Setting,
    axis_range,
    check_axes,
    critical_set,
    default_x_axis,
    on_grid,
    settle_definition,
)
from sigprop.theory.critical import CurvePoints

if TYPE_CHECKING:
    import pandas as pd


@dataclass(frozen=True)
class PhaseDiagram:
    """λ_a and λ_g (and the state they describe) on the mesh of ``x`` and ``y`` values: arrays
    of shape (len(y), len(x)) in ``values``. At finite depth, ``asymptotic`` holds the asymptotic
    exponents of the same grid where the block has a norm fixed point (else None)."""

    arch: Architecture
    setting: Setting
    x_axis: str
    y_axis: str
    x: np.ndarray
    y: np.ndarray
    values: dict[str, np.ndarray]
    crossings: CurvePoints
    asymptotic: dict[str, np.ndarray] | None

    def table(self) -> pd.DataFrame:
        """One row per grid point: both axes, the exponents, the state, phase and gradients."""
        import pandas as pd

        return pd.DataFrame(self.columns())

    def columns(self) -> dict[str, np.ndarray]:
        """The columns of ``table``, as arrays."""
        from sigprop.theory.exponents import sign_label

        X, Y = np.meshgrid(self.x, self.y)
        columns = {self.x_axis: X.ravel(), self.y_axis: Y.ravel(),
                   **{k: v.ravel() for k, v in self.values.items()}}
        columns["phase"] = sign_label(columns["lambda_a"], "ordered", "chaotic")
        columns["gradients"] = sign_label(columns["lambda_g"], "vanishing", "exploding")
        if self.asymptotic is not None:
            columns |= {f"{k}_asymptotic": v.ravel() for k, v in self.asymptotic.items()}
        return columns

    def caption(self) -> str:
        """The block, the fixed hyperparameters and the exponents' definition, for the figure."""
        on_axis = {n for a in (self.x_axis, self.y_axis) for n in canonical_names(a)}
        values = self.arch.resolved(self.setting.depth).scalars()
        fixed = [f"{h.symbol} = {values[h.name]:g}" for h in HYPERPARAMETERS
                 if h.name not in on_axis and _matters(h.name, values)]
        fixed_text = f"{', '.join(fixed)};  " if fixed else ""
        return (f"{self.arch.describe()}, n = {self.setting.n_tokens}\n"
                f"{fixed_text}exponents: {self.setting.label}")

    def write(self, out: str | Path, measured: pd.DataFrame | None = None) -> list[Path]:
        """Write phase_diagram.png, .csv and .parquet (and phase_diagram_measured.csv with
        ``measured``, drawn over the heatmaps as circles) into ``out``; returns the paths."""
        out = Path(out)
        import pyarrow as pa
        from pyarrow import csv as pa_csv
        from pyarrow import parquet as pa_parquet

        from sigprop.plots.phase_diagram import plot_phase_diagram

        out.mkdir(parents=True, exist_ok=True)
        grid = pa.table(self.columns())
        csv, parquet = out / "phase_diagram.csv", out / "phase_diagram.parquet"
        pa_csv.write_csv(grid, csv, pa_csv.WriteOptions(quoting_style="none"))
        pa_parquet.write_table(grid, parquet)
        overlay, written = None, [csv, parquet]
        if measured is not None:
            overlay = {name: (measured[self.x_axis].to_numpy(), measured[self.y_axis].to_numpy(),
                              measured[name].to_numpy()) for name in ("lambda_a", "lambda_g")}
            measured.to_csv(out / "phase_diagram_measured.csv", index=False)
            written.append(out / "phase_diagram_measured.csv")
        png = plot_phase_diagram(
            self.x, self.y, self.values["lambda_a"], self.values["lambda_g"],
            (axis(self.x_axis).label, axis(self.y_axis).label),
            list(zip(self.crossings.x.tolist(), self.crossings.y.tolist())),
            self.caption(), out / "phase_diagram.png", self.setting.depth, self.asymptotic,
            overlay,
        )
        return [png, *written]


def phase_diagram(
    x: str | None = None,
    y: str = "sigma-w",
    arch: Architecture | str | None = None,
    *,
    x_range: tuple[float, float] | None = None,
    y_range: tuple[float, float] | None = None,
    resolution: int = 120,
    n_tokens: int = 16,
    depth: int | None = None,
    q0: float = 1.0,
    rho0: float = 1.0,
    **values: Any,
) -> PhaseDiagram:
    """λ_a and λ_g of the wide-limit theory on a ``resolution`` × ``resolution`` grid over two
    hyperparameters (any declared one or alias: ``alpha``, ``branch``, ``sigma-w``, …), with
    their crossings. Call ``.write(folder)`` for the figure and tables.

    ``arch``: a preset name, a .json description file or an ``Architecture`` (default: the
    reference transformer); ``values``: any other declared hyperparameter or option, fixed.
    ``x`` defaults to ``alpha`` for blocks in the paper's residual form and ``branch``
    otherwise. Without ``depth`` the exponents are asymptotic; blocks without a norm fixed
    point (unit residuals) then fall back to the finite-depth exponents at their own depth.
    ``depth`` L asks for the finite-depth exponents λ^(L) from (q0, ρ0), drawn with the
    asymptotic zero curves where those exist. Raises ``InvalidHyperparameter``.
    """
    block = Architecture.load(arch).with_values(**values)
    x = default_x_axis(block) if x is None else x
    check_axes(x, y)
    x_range = axis_range(x, x_range or block.plot_range(x), resolution)
    y_range = axis_range(y, y_range or block.plot_range(y), resolution)
    setting = settle_definition(block, Setting(n_tokens, depth, q0, rho0), x, x_range, y, y_range)
    xs, ys = np.linspace(*x_range, resolution), np.linspace(*y_range, resolution)
    grid = on_grid(block, setting, x, xs, y, ys)
    asymptotic = None
    if setting.depth is not None:
        limit = on_grid(block, Setting(n_tokens), x, xs, y, ys)
        if np.isfinite(limit["lambda_a"]).any():
            asymptotic = {k: limit[k] for k in ("lambda_a", "lambda_g")}
    # Crossings are refined by root finding: a coarse search grid only has to bracket them.
    crossings = critical_set(block, setting, y, y_range, x, x_range, x_points=24,
                             y_points=32).crossings
    return PhaseDiagram(block, setting, x, y, xs, ys, grid, crossings, asymptotic)


def _matters(name: str, values: dict[str, Any]) -> bool:
    """Whether a fixed hyperparameter shapes this block (one the layer uses; κ only with DyT,
    σ_2 unless tied)."""
    if name not in values:
        return False
    if name == "kappa":
        return values["norm"] == "dyt"
    if name == "sigma_2":
        return not values["tied_readout"]
    return True
