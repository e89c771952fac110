"""``sigprop.phase_diagram``: both exponents over two hyperparameters, with their zero curves.

``phase_diagram`` computes the grid (pure theory, no plotting), and with ``empirical=True``
measures the exponents of simulated networks on a coarse grid too (loads PyTorch);
``PhaseDiagram.write`` saves the figure (PNG) and the grid (CSV and Parquet, through pyarrow).
matplotlib and pyarrow load only when writing, pandas only for ``table()``.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from sigprop.spec import Architecture, InvalidHyperparameter, axis, canonical_names
from sigprop.spec.declarations import HYPERPARAMETERS
from sigprop.theory.slices import (
    Setting,
    axis_range,
    check_axes,
    crossing_points,
    default_x_axis,
    on_grid,
    settle_definition,
)
from sigprop.theory.regimes import WORDS_DEPTH, angle_regime, gradient_regime
from sigprop.theory.zero_curves import CurvePoints

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa


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
    measured: pd.DataFrame | None = None

    @property
    def words_depth(self) -> int:
        """The depth L the words of the grid are about (the finite depth, else
        ``WORDS_DEPTH``)."""
        return WORDS_DEPTH if self.setting.depth is None else self.setting.depth

    def verdict(self) -> str:
        """Which regimes the grid holds and where both exponents vanish."""
        columns = self.columns()
        share = {word: float(np.mean(columns["phase"] == word))
                 for word in ("ordered", "near the edge", "chaotic")}
        grads = {word: float(np.mean(columns["gradients"] == word))
                 for word in ("vanishing", "near the edge", "exploding")}
        regions = ", ".join(f"{word} {v:.0%}" for word, v in share.items() if v)
        gradients = ", ".join(f"{word} {v:.0%}" for word, v in grads.items() if v)
        where = (", ".join(f"({x:.3g}, {y:.3g})" for x, y in
                           zip(self.crossings.x[:3], self.crossings.y[:3]))
                 if self.crossings.x.size else "nowhere in this slice")
        return (f"Over {self.x_axis} × {self.y_axis} (words over L = {self.words_depth} "
                f"layers): phase {regions}; gradients {gradients}. Both exponents vanish at "
                f"({self.x_axis}, {self.y_axis}) = {where}.")

    def __repr__(self) -> str:
        return (f"PhaseDiagram(x={self.x_axis!r}, y={self.y_axis!r}, "
                f"resolution={len(self.x)}×{len(self.y)}, {self.setting.label}, "
                f"crossings={self.crossings.x.size})")

    def to_json(self) -> dict[str, Any]:
        """The axes, the definition, the crossings and the verdict (the grid itself is in
        ``table()`` and the files ``write`` saves)."""
        return {"x_axis": self.x_axis, "y_axis": self.y_axis,
                "x_range": [float(self.x[0]), float(self.x[-1])],
                "y_range": [float(self.y[0]), float(self.y[-1])],
                "resolution": [len(self.x), len(self.y)], "exponents": self.setting.label,
                "crossings": [{"x": float(x), "y": float(y)}
                              for x, y in zip(self.crossings.x, self.crossings.y)],
                "architecture": self.arch.describe(), "verdict": self.verdict()}

    def table(self) -> pd.DataFrame:
        """One row per grid point: both axes, the exponents, the state, phase and gradients."""
        import pandas as pd

        return pd.DataFrame(self.columns())

    def columns(self) -> dict[str, np.ndarray]:
        """The columns of ``table``, as arrays."""
        X, Y = np.meshgrid(self.x, self.y)
        columns = {self.x_axis: X.ravel(), self.y_axis: Y.ravel(),
                   **{k: v.ravel() for k, v in self.values.items()}}
        depth = self.words_depth
        columns["phase"] = angle_regime(depth * columns["lambda_a"])
        columns["gradients"] = gradient_regime(depth * columns["lambda_g"])
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

    def write(self, out: str | Path) -> list[Path]:
        """Write phase_diagram.png, .csv and .parquet (and phase_diagram_measured.csv when the
        exponents were measured, drawn over the heatmaps as circles) into ``out``; returns the
        paths."""
        out = Path(out)
        import pyarrow as pa
        from pyarrow import csv as pa_csv
        from pyarrow import parquet as pa_parquet

        out.mkdir(parents=True, exist_ok=True)
        columns = self.columns()
        grid = pa.Table.from_arrays([_arrow_array(v) for v in columns.values()],
                                    names=list(columns))
        csv, parquet = out / "phase_diagram.csv", out / "phase_diagram.parquet"
        with ThreadPoolExecutor(2) as pool:  # the tables are written while the figure is drawn
            tables = [pool.submit(pa_csv.write_csv, grid, csv,
                                  pa_csv.WriteOptions(quoting_style="none")),
                      pool.submit(pa_parquet.write_table, grid, parquet)]
            png = self._figure(out)
            for table in tables:
                table.result()
        return [png, csv, parquet, *self._measured_table(out)]

    def _measured_table(self, out: Path) -> list[Path]:
        """phase_diagram_measured.csv, when the exponents were measured."""
        if self.measured is None:
            return []
        self.measured.to_csv(out / "phase_diagram_measured.csv", index=False)
        return [out / "phase_diagram_measured.csv"]

    def _figure(self, out: Path) -> Path:
        """phase_diagram.png: both heatmaps, the zero curves, the crossings and the measured
        points."""
        from sigprop.plots.phase_diagram import plot_phase_diagram

        measured, overlay = self.measured, None
        if measured is not None:
            overlay = {name: (measured[self.x_axis].to_numpy(), measured[self.y_axis].to_numpy(),
                              measured[name].to_numpy()) for name in ("lambda_a", "lambda_g")}
        return plot_phase_diagram(
            self.x, self.y, self.values["lambda_a"], self.values["lambda_g"],
            (axis(self.x_axis).label, axis(self.y_axis).label),
            list(zip(self.crossings.x.tolist(), self.crossings.y.tolist())),
            self.caption(), out / "phase_diagram.png", self.setting.depth, self.asymptotic,
            overlay,
        )


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
    empirical: bool = False,
    empirical_points: int = 5,
    width: int = 128,
    seeds: int = 2,
    seed: int = 0,
    device: str = "auto",
    show_progress: bool = False,
    threads: int | str | None = None,
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
    asymptotic zero curves where those exist.

    ``empirical``: also measure both exponents on simulated networks (``depth``, default 24;
    ``width``; ``seeds`` from ``seed``; on ``device`` with ``threads`` torch threads) at the
    cell centres of an ``empirical_points`` × ``empirical_points`` grid, drawn as circles in
    the heatmaps' colour scale (``measured``); ``show_progress`` shows their progress. Raises
    ``InvalidHyperparameter``.
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
    crossings = crossing_points(block, setting, x, x_range, y, y_range, x_points=24, y_points=32)
    measured = None
    if empirical:
        measured = _measured(block, x, xs, y, ys, depth, empirical_points, width, seeds, seed,
                             n_tokens, device, show_progress, threads)
    return PhaseDiagram(block, setting, x, y, xs, ys, grid, crossings, asymptotic, measured)


def _measured(block: Architecture, x: str, xs: np.ndarray, y: str, ys: np.ndarray,
              depth: int | None, points: int, width: int, seeds: int, seed: int, n_tokens: int,
              device: str, show_progress: bool, threads: int | str | None) -> pd.DataFrame:
    """Exponents measured on simulated networks at the cell centres of a coarse grid (inside
    the ranges, away from α = 1 where λ_a = −∞)."""
    from sigprop.api.simulate import SimulationSettings, layer_passes, measured_exponents_on_grid
    from sigprop.runtime.progress import progress_bar
    from sigprop.runtime.threads import torch_threads

    if isinstance(points, bool) or not isinstance(points, int) or points < 2:
        raise InvalidHyperparameter(f"empirical_points must be an integer >= 2; got {points!r}")
    if isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 1:
        raise InvalidHyperparameter(f"seeds must be an integer >= 1; got {seeds!r}")
    settings = SimulationSettings(depth=depth or 24, width=width,
                                  seeds=tuple(range(seed, seed + seeds)), n_tokens=n_tokens,
                                  device=device)
    centres = [np.linspace(v[0], v[-1], 2 * points + 1)[1::2] for v in (xs, ys)]
    with torch_threads(threads), progress_bar(layer_passes(points * points, settings),
                                              "measuring", show_progress) as step:
        return measured_exponents_on_grid(block, x, centres[0], y, centres[1], settings,
                                          on_layer=step)


def _arrow_array(values: np.ndarray) -> pa.Array:
    """An Arrow array over a float or text column, built from its buffers: ``pa.array`` would
    first import pandas to check whether ``values`` is a pandas object (a fifth of the time
    of the whole write)."""
    import pyarrow as pa

    if values.dtype.kind == "f":
        floats = np.ascontiguousarray(values, dtype=np.float64)
        return pa.Array.from_buffers(pa.float64(), floats.size, [None, pa.py_buffer(floats)])
    words, index = np.unique(values, return_inverse=True)
    encoded = [str(word).encode() for word in words]
    offsets = np.cumsum([0, *map(len, encoded)], dtype=np.int32)
    dictionary = pa.Array.from_buffers(pa.string(), len(encoded), [
        None, pa.py_buffer(offsets), pa.py_buffer(b"".join(encoded))])
    codes = pa.Array.from_buffers(pa.int32(), index.size, [
        None, pa.py_buffer(index.astype(np.int32).ravel())])
    return pa.DictionaryArray.from_arrays(codes, dictionary).dictionary_decode()


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
