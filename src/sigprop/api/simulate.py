"""Theory next to measurement: random networks of any declared block at chosen points.

``simulate`` runs the batched probes of ``sigprop.measure`` (every point and seed in one vmapped
ensemble) and the wide-limit theory for the same points, and returns both as one table with the
measured exponents. Causal blocks get the causal theory (``sigprop.theory.causal``).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd

from sigprop.runtime.devices import resolve_device
from sigprop.measure import Estimate, empirical_lambda_a_points, lambda_g_from_log_jac, measure_points
from sigprop.runtime.progress import progress_bar
from sigprop.runtime.threads import torch_threads
from sigprop.runtime.values import finite_or_none
from sigprop.spec import Architecture, InvalidHyperparameter, axis, depth_or
from sigprop.spec.components import structure
from sigprop.spec.declarations import INPUTS, NUMERIC
from sigprop.theory.causal import causal_collapsed_profile, causal_trajectory, is_causal
from sigprop.theory.dynamics import collapsed_growth, trajectory
from sigprop.theory.exponents import compute_exponents


ENSEMBLE = 64  # networks per vmapped pass (``sigprop.measure``): the progress bar's unit


@dataclass(frozen=True)
class SimulationSettings:
    """Network size and sampling for measurements (width d; d_ff follows the block's ratio)."""

    depth: int = 24
    width: int = 256
    seeds: tuple[int, ...] = (0, 1, 2, 3)
    n_probes: int = 2
    q0: float = 1.0
    rho0: float = 0.0
    n_tokens: int = 16
    device: str = "cpu"

    def __post_init__(self) -> None:
        object.__setattr__(self, "device", str(resolve_device(self.device)))  # "auto" resolved
        for name in ("width", "n_probes"):
            if getattr(self, name) < 1:
                raise InvalidHyperparameter(f"{name} must be an integer >= 1; got "
                                            f"{getattr(self, name)}")
        if self.depth < 2:
            raise InvalidHyperparameter(f"depth must be >= 2 to measure a growth rate; got "
                                        f"{self.depth}")
        if not self.seeds:
            raise InvalidHyperparameter("seeds must be >= 1")
        for name in ("q0", "rho0", "n_tokens"):
            INPUTS[name].check(getattr(self, name))
        if self.n_tokens >= self.width:
            raise InvalidHyperparameter(f"n_tokens must be below the width {self.width}; got "
                                        f"{self.n_tokens}")

    @property
    def burn_in(self) -> int:
        """Layers of the depth-L trajectory discarded before λ_g is averaged: the first half,
        so that the geometry has settled."""
        return self.depth // 2

    @property
    def angle_depth(self) -> int:
        """λ_a is measured on networks of 2L layers and averaged over the last L: the norm of
        the collapsed token relaxes to q* only at the rate a_A² a_M² per layer."""
        return 2 * self.depth


@dataclass(frozen=True)
class PointResult:
    """Measured exponents (mean ± standard error over seeds) at one point."""

    lambda_a: Estimate
    lambda_g: Estimate


@dataclass(frozen=True)
class SimulationReport:
    """Per-layer table (theory and measured mean ± s.e. of q, ρ, log_jac, one block of rows per
    point), measured exponents and theory exponents per point."""

    points: list[Architecture]
    settings: SimulationSettings
    table: pd.DataFrame
    measured: list[PointResult]
    theory: list[dict[str, float] | None]

    def labels(self) -> list[str]:
        """The hyperparameters that vary between points, e.g. 'σ_w=1' or 'b_A=0.5 σ_w=5'."""
        values = [p.scalars() for p in self.points]
        varying = [h for h in NUMERIC.values() if h.expands is None
                   and len({str(v.get(h.name)) for v in values}) > 1]
        if not varying:
            return [p.name for p in self.points]
        return [" ".join(f"{h.symbol}={v[h.name]:g}" for h in varying) for v in values]

    def verdict(self) -> str:
        """Measured exponents next to the theory over the same layers, point by point."""
        lines = []
        for label, m, t in zip(self.labels(), self.measured, self.theory):
            text = (f"{label}: measured λ_a = {m.lambda_a.mean:+.4f} ± {m.lambda_a.stderr:.4f}, "
                    f"λ_g = {m.lambda_g.mean:+.4f} ± {m.lambda_g.stderr:.4f}")
            if t is not None:
                text += (f"; theory over the same layers λ_a = {t['lambda_a_window']:+.4f}, "
                         f"λ_g = {t['lambda_g_window']:+.4f}")
            lines.append(text + ".")
        return " ".join(lines)

    def __repr__(self) -> str:
        s = self.settings
        return (f"SimulationReport({self.points[0].describe()!r}, points={len(self.points)}, "
                f"depth={s.depth}, width={s.width}, seeds={len(s.seeds)})")

    def to_json(self) -> dict[str, Any]:
        """One point: {"layers": [{"l", "q", "rho", "log_jac"}, …], "lambda_a", "lambda_a_se",
        "lambda_g", "lambda_g_se", "theory", "settings", "architecture", "hyperparameters"}."""
        if len(self.points) != 1:
            raise InvalidHyperparameter(f"--json needs exactly one hyperparameter point; got "
                                        f"{len(self.points)}")
        rows, m, t = self.table, self.measured[0], self.theory[0]
        return {
            "layers": [{"l": int(r.l), "q": r.q_mean, "rho": r.rho_mean, "log_jac": r.log_jac_mean}
                       for r in rows.itertuples()],
            "lambda_a": m.lambda_a.mean, "lambda_a_se": m.lambda_a.stderr,
            "lambda_g": m.lambda_g.mean, "lambda_g_se": m.lambda_g.stderr,
            "theory": None if t is None else {k: finite_or_none(v) for k, v in t.items()},
            "settings": {"depth": self.settings.depth, "width": self.settings.width,
                         "seeds": list(self.settings.seeds), "n_probes": self.settings.n_probes},
            "architecture": self.points[0].describe(),
            "hyperparameters": {**self.points[0].scalars(), "n_tokens": self.settings.n_tokens},
            "verdict": self.verdict(),
        }

    def write(self, out: str | Path) -> list[Path]:
        """simulation.csv, simulation.parquet and simulation.png (theory lines, measured points
        ± 2 s.e.) in ``out``."""
        out = Path(out)
        from sigprop.plots.simulate import plot_simulation

        out.mkdir(parents=True, exist_ok=True)
        self.table.to_csv(out / "simulation.csv", index=False)
        self.table.to_parquet(out / "simulation.parquet", index=False)
        s = self.settings
        figure = plot_simulation(
            self.table, self.labels(),
            f"{self.points[0].describe()}: theory (d → ∞) vs simulation (d = {s.width}, "
            f"{len(s.seeds)} seeds, n = {s.n_tokens})", out / "simulation.png")
        return [figure, out / "simulation.csv", out / "simulation.parquet"]


def simulate(
    arch: Architecture | str | None = None,
    *,
    depth: int | None = None,
    width: int = 256,
    seeds: int = 4,
    seed: int = 0,
    n_probes: int = 2,
    q0: float = 1.0,
    rho0: float = 0.0,
    n_tokens: int = 16,
    device: str = "auto",
    show_progress: bool = False,
    threads: int | str | None = None,
    **values: Any,
) -> SimulationReport:
    """Build random networks of the block at width ``width`` (``seeds`` seeds from ``seed``) and
    measure their per-layer q, ρ and log‖J‖² and their exponents, next to the theory.

    ``values``: declared hyperparameters and options; a list of values for a numeric
    hyperparameter adds points (every combination is simulated). ``depth`` defaults to the
    architecture's depth, else 24. ``device``: where the networks run ("auto", "cpu", "cuda";
    they are drawn on the CPU, the theory stays there). ``show_progress``: a progress bar on
    stderr; ``threads``: torch threads (default: the library's policy). Raises
    ``InvalidHyperparameter``.
    """
    base = Architecture.load(arch)
    if seeds < 1:
        raise InvalidHyperparameter(f"seeds must be an integer >= 1; got {seeds}")
    if seed < 0:
        raise InvalidHyperparameter(f"seed must be an integer >= 0; got {seed}")
    points = points_of(base, values)
    settings = SimulationSettings(depth_or(base, depth, 24), width, tuple(range(seed, seed + seeds)),
                                  n_probes, q0, rho0, n_tokens, device)
    with torch_threads(threads), progress_bar(
            layer_passes(len(points), settings), "simulating", show_progress) as step:
        return simulate_points(points, settings, step)


def points_of(base: Architecture, values: dict[str, Any]) -> list[Architecture]:
    """Every combination of the given values (lists add points), applied to ``base``."""
    lists = {k: list(v) if isinstance(v, (list, tuple)) else [v] for k, v in values.items()}
    return [base.with_values(**dict(zip(lists, combination)))
            for combination in itertools.product(*lists.values())]


def simulate_points(
    points: Sequence[Architecture],
    settings: SimulationSettings,
    on_layer: Callable[[], None] | None = None,
) -> SimulationReport:
    """Measure every point (all seeds of the points that share a structure in one batched
    ensemble) and predict it."""
    layers = [p.layer(settings.depth) for p in points]
    trajectories, angles = [None] * len(points), [None] * len(points)
    for group in _structure_groups(layers):
        members = [layers[i] for i in group]
        measured = measure_points(
            members, depth=settings.depth, width=settings.width, n_tokens=settings.n_tokens,
            q0=settings.q0, rho0=settings.rho0, seeds=list(settings.seeds),
            n_probes=settings.n_probes, on_layer=on_layer, device=settings.device,
        )
        angle = empirical_lambda_a_points(
            members, depth=settings.angle_depth, width=settings.width,
            n_tokens=settings.n_tokens, seeds=list(settings.seeds), burn_in=settings.depth,
            on_layer=on_layer, device=settings.device,
        )
        for j, index in enumerate(group):
            trajectories[index] = {k: getattr(measured, k)[j] for k in ("q", "rho", "log_jac")}
            angles[index] = angle[j]
    rows, results, theories = [], [], []
    for index, point in enumerate(points):
        measured = trajectories[index]
        results.append(PointResult(angles[index],
                                   lambda_g_from_log_jac(measured["log_jac"], settings.burn_in)))
        theory, path = _theory(point, settings)
        theories.append(theory)
        frame = pd.DataFrame({"point": index, "l": np.arange(settings.depth + 1)})
        for key, values in measured.items():
            frame[f"{key}_theory"] = getattr(path, key)
            frame[f"{key}_mean"] = values.mean(axis=0)
            frame[f"{key}_se"] = _stderr(values)
        for name, value in point.resolved(settings.depth).scalars().items():
            frame[name] = value
        rows.append(frame)
    return SimulationReport(list(points), settings, pd.concat(rows, ignore_index=True), results,
                            theories)


def _structure_groups(layers: Sequence) -> list[list[int]]:
    """Indices of the layers, grouped by structure (one vmapped ensemble per group)."""
    groups: dict[tuple, list[int]] = {}
    for index, layer in enumerate(layers):
        groups.setdefault(structure(layer), []).append(index)
    return list(groups.values())


def theory_exponents(point: Architecture, settings: SimulationSettings) -> dict[str, float]:
    """The wide-limit theory's exponents at one point, asymptotic ("lambda_a", "lambda_g";
    NaN without a norm fixed point) and over the layers the simulation measures them on:
    "lambda_g_window", the mean growth of log_jac after the burn-in, and "lambda_a_window", the
    mean growth of token differences on the collapsed trajectory from q = 1 over layers L..2L.
    At finite depth the forward state may still be on its way to the attractor, and blocks
    without a fixed point have only these."""
    return _theory(point, settings)[0]


def _theory(point: Architecture, settings: SimulationSettings) -> tuple[dict[str, float], Any]:
    """``theory_exponents`` and the predicted trajectory they use (computed once: for causal
    attention it is a Monte Carlo trajectory)."""
    layer = point.theory_layer(settings.depth)
    n = settings.n_tokens
    e = compute_exponents(layer, n)
    path = _predicted_path(layer, settings)
    window = (path.log_jac[-1] - path.log_jac[settings.burn_in]) / (settings.depth - settings.burn_in)
    if is_causal(layer):
        spread = causal_collapsed_profile(layer, n, 1.0, settings.angle_depth).log_spread
        growth = np.diff(spread, axis=0)[settings.depth:]
    else:
        growth = collapsed_growth(layer, n, 1.0, settings.angle_depth)[settings.depth:]
    return {"lambda_a": float(e.lambda_a), "lambda_g": float(e.lambda_g),
            "lambda_a_window": float(np.mean(growth)), "lambda_g_window": float(window)}, path


def _predicted_path(layer, settings: SimulationSettings):
    """The theory's trajectory of the simulated setting (q, p, ρ, log_jac per layer): the
    full-Gram causal theory for causal attention."""
    if is_causal(layer):
        return causal_trajectory(layer, settings.n_tokens, settings.q0, settings.rho0,
                                 settings.depth)
    return trajectory(layer, settings.n_tokens, settings.q0, settings.rho0, settings.depth)


def layer_passes(points: int, settings: SimulationSettings) -> int:
    """How many layers ``simulate_points`` runs (progress): per ensemble pass of up to
    ``ENSEMBLE`` networks, the L layers of the trajectory and the 2L of the angle exponent."""
    passes = -(-points * len(settings.seeds) // ENSEMBLE)
    return passes * (settings.depth + settings.angle_depth)


def _stderr(values: np.ndarray) -> np.ndarray:
    if values.shape[0] < 2:
        return np.full(values.shape[1:], np.nan)
    return values.std(axis=0, ddof=1) / np.sqrt(values.shape[0])


def measured_exponents_on_grid(
    arch: Architecture,
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
    x_name, y_name = axis(x_axis).name, axis(y_axis).name
    layers = [arch.with_values(**{x_name: x}).with_values(**{y_name: y}).layer(settings.depth)
              for x, y in mesh]
    seeds = list(settings.seeds)
    measured = measure_points(
        layers, depth=settings.depth, width=settings.width, n_tokens=settings.n_tokens,
        q0=settings.q0, rho0=settings.rho0, seeds=seeds, n_probes=settings.n_probes,
        on_layer=on_layer, device=settings.device,
    )
    angle = empirical_lambda_a_points(
        layers, depth=settings.angle_depth, width=settings.width, n_tokens=settings.n_tokens,
        seeds=seeds, burn_in=settings.depth, on_layer=on_layer, device=settings.device,
    )
    gradient = [lambda_g_from_log_jac(log_jac, settings.burn_in) for log_jac in measured.log_jac]
    return pd.DataFrame({
        x_axis: [x for x, _ in mesh],
        y_axis: [y for _, y in mesh],
        "lambda_a": [e.mean for e in angle],
        "lambda_a_se": [e.stderr for e in angle],
        "lambda_g": [e.mean for e in gradient],
        "lambda_g_se": [e.stderr for e in gradient],
    })



