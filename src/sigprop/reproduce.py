"""``sigprop reproduce``: the paper's pipeline end to end, written up as one Markdown report.

1. Theory: phase diagrams of (λ_a, λ_g), the default slice and the slice the sweep trains.
2. Theory against simulation: q_l, ρ_l, log‖J_l‖² of random networks at three points.
3. A training sweep of the reference transformer as a causal character LM on Shakespeare over a
   grid of initializations (an Optuna study: rerunning resumes it).
4. The analysis: does (λ_a, λ_g) at initialization predict the final test loss?
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from sigprop.analysis import Analysis, analyze
from sigprop.analysis.predictors import REPEATS
from sigprop.diagrams import write_phase_diagram
from sigprop.hyperparameters import AXES, AXIS_OF_KEY, ReferencePoint
from sigprop.plots.simulate import plot_simulation
from sigprop.report import render
from sigprop.plots.training import plot_loss_against_exponents, plot_loss_landscape, plot_predictions
from sigprop.simulation import SimulationSettings, simulate_points, theory_exponents
from sigprop.slices import critical_summary, exponents_on_grid
from sigprop.sweep import SweepSpec, normalize_storage, run_sweep, trials_frame


@dataclass(frozen=True)
class Scale:
    """Sizes of one reproduction. The sweep trains the causal LM on the (α, σ_w) grid at σ_b,
    where the theory has all three regions: ordered & vanishing (small σ_w), ordered &
    exploding, and chaotic & exploding (above the edge of chaos)."""

    depth: int
    width: int
    context: int
    batch: int
    steps: int
    alphas: tuple[float, ...]
    sigma_ws: tuple[float, ...]
    seeds: tuple[int, ...]
    sigma_b: float
    workers: int
    batch_size: int
    simulation_width: int
    simulation_depth: int
    simulation_seeds: int
    compile: bool = True  # torch.compile the training step (a one-off cost of ~30–60 s)
    cv_repeats: int = REPEATS  # fold assignments each predictor's R² is averaged over


SCALES = {
    # About 15 minutes on 2 CPU cores.
    "small": Scale(depth=16, width=64, context=64, batch=32, steps=400,
                   alphas=(0.1, 0.4, 0.7, 0.95), sigma_ws=(0.5, 1.0, 1.75, 2.75, 4.0, 5.5),
                   seeds=(0,), sigma_b=1.0, workers=2, batch_size=12,
                   simulation_width=256, simulation_depth=24, simulation_seeds=4),
    # For bigger machines: a finer grid, more seeds, longer training.
    "paper": Scale(depth=24, width=128, context=128, batch=32, steps=2000,
                   alphas=(0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95),
                   sigma_ws=(0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 3.5, 4.0, 5.0, 6.0),
                   seeds=(0, 1, 2), sigma_b=1.0, workers=8, batch_size=25,
                   simulation_width=1024, simulation_depth=48, simulation_seeds=8),
}

STUDY = "reference-lm-alpha-sigma_w"


def reproduce(out: Path, scale: Scale, storage: str | None = None, workers: int | None = None,
              log: Callable[[str], None] = print) -> Path:
    """Run the four stages into ``out`` and write ``out/report.md``; returns its path."""
    out.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    base = ReferencePoint(sigma_b=scale.sigma_b)

    start = time.perf_counter()
    log("1/4 theory phase diagrams")
    theory = _theory(out / "theory", base)
    timings["theory"] = time.perf_counter() - start

    start = time.perf_counter()
    log("2/4 theory against simulated networks")
    simulation = _simulation(out / "simulation", scale)
    timings["simulation"] = time.perf_counter() - start

    start = time.perf_counter()
    log("3/4 training sweep")
    storage = normalize_storage(storage, out / "sweep.sqlite")
    spec = SweepSpec(
        grid={"alpha": list(scale.alphas), "sigma_w": list(scale.sigma_ws), "seed": list(scale.seeds)},
        fixed={"sigma_A": base.sigma_A, "sigma_b": scale.sigma_b, "activation": base.activation,
               "depth": scale.depth, "width": scale.width, "context": scale.context,
               "batch": scale.batch, "steps": scale.steps, "data": "shakespeare",
               "compile": scale.compile},
    )
    run_sweep(storage, STUDY, spec, "sigprop.experiment:make_evaluate",
              workers=workers or scale.workers, batch_size=scale.batch_size)
    timings["sweep"] = time.perf_counter() - start

    start = time.perf_counter()
    log("4/4 analysis")
    trials = trials_frame(storage, STUDY)
    vocab_size = int(trials["vocab_size"].dropna().iloc[0])
    analysis = analyze(trials, ["alpha", "sigma_w"], scale.depth, vocab_size, scale.cv_repeats)
    figures = write_training_figures(analysis, base, out / "training")
    timings["analysis"] = time.perf_counter() - start

    report = out / "report.md"
    report.write_text(render(out, asdict(scale), theory, simulation, analysis, figures, timings,
                             storage))
    return report


def write_training_figures(analysis: Analysis, base: ReferencePoint, out: Path) -> dict[str, Path]:
    """Loss against exponents, CV predictions and, when exactly two hyperparameters were swept,
    the loss landscape with the theory curves; the trial and point tables as CSV. ``base``
    holds the hyperparameters that were not swept. (With more swept hyperparameters the theory
    curves of any 2D projection would depend on the others, so no landscape is drawn.)"""
    out.mkdir(parents=True, exist_ok=True)
    analysis.trials.drop(columns=["loss_curve"], errors="ignore").to_csv(out / "trials.csv", index=False)
    analysis.points.to_csv(out / "points.csv", index=False)
    figures = {}
    if len(analysis.axes) == 2:
        x_key, y_key = analysis.axes
        axes = [AXIS_OF_KEY[x_key], AXIS_OF_KEY[y_key]]
        ranges = [_padded_range(analysis.points[key], axis) for key, axis in zip(analysis.axes, axes)]
        xs, ys = (np.linspace(*r, 90) for r in ranges)
        grid = exponents_on_grid(base, axes[0], xs, axes[1], ys)
        figures["landscape"] = plot_loss_landscape(
            analysis.points, analysis.axes,
            {"x": xs, "y": ys, "lambda_a": grid.lambda_a, "lambda_g": grid.lambda_g},
            f"causal LM, depth {analysis.depth}: final test loss over the swept initializations",
            out / "loss_landscape.png")
    figures["exponents"] = plot_loss_against_exponents(analysis.trials, analysis.depth,
                                                       out / "loss_vs_exponents.png")
    figures["predictions"] = plot_predictions(analysis.trials["loss"].to_numpy(),
                                              analysis.predictors, out / "predictions.png")
    return figures


def study_base_point(attrs: dict) -> ReferencePoint:
    """The hyperparameters a study kept fixed (its ``fixed`` user attrs), as a point."""
    fixed = attrs["fixed"]
    fields = {k: fixed[k] for k in ("alpha_A", "alpha_M", "sigma_A", "sigma_w", "sigma_b",
                                     "activation") if k in fixed}
    return ReferencePoint(**fields)


def _padded_range(values, axis: str) -> tuple[float, float]:
    """The swept values' range with half a grid step of margin, inside the axis' limits."""
    low, high = float(values.min()), float(values.max())
    step = (high - low) / max(1, values.nunique() - 1)
    lo_limit, hi_limit, _ = AXES[axis][1]
    return max(low - step / 2, lo_limit + 1e-6), min(high + step / 2, hi_limit)


def _theory(out: Path, base: ReferencePoint) -> dict:
    default = write_phase_diagram(ReferencePoint(), "alpha", (0.0, 1.0), "sigma-w", (0.1, 6.0),
                                  120, out / "default")
    trained = write_phase_diagram(base, "alpha", (0.0, 1.0), "sigma-w", (0.1, 6.0), 120,
                                  out / "training_slice")
    summary = critical_summary(base, "sigma-w", (0.1, 6.0), "alpha", (0.05, 0.95), 19)
    return {"default": default[0], "training_slice": trained[0], "critical": summary}


def _simulation(out: Path, scale: Scale) -> dict:
    points = [ReferencePoint(alpha_A=0.6, alpha_M=0.6, sigma_w=1.0),
              ReferencePoint(alpha_A=0.3, alpha_M=0.3, sigma_w=3.5),
              ReferencePoint(alpha_A=0.3, alpha_M=0.3, sigma_w=5.5)]
    settings = SimulationSettings(depth=scale.simulation_depth, width=scale.simulation_width,
                                  seeds=tuple(range(scale.simulation_seeds)))
    table, measured = simulate_points(points, settings)
    out.mkdir(parents=True, exist_ok=True)
    table.to_csv(out / "simulation.csv", index=False)
    labels = [f"α={p.alpha_A:g}, σ_w={p.sigma_w:g}" for p in points]
    figure = plot_simulation(table, labels, f"theory (lines) vs simulation (d = {settings.width}, "
                             f"{len(settings.seeds)} seeds, n = 16)", out / "simulation.png")
    rows = []
    for label, point, m in zip(labels, points, measured):
        t = theory_exponents(point, settings)
        rows.append((label, m.lambda_a.mean, m.lambda_a.stderr, t["lambda_a"],
                     m.lambda_g.mean, m.lambda_g.stderr, t["lambda_g_window"]))
    return {"figure": figure, "rows": rows, "settings": settings}
