"""``sigprop reproduce``: the paper's pipeline end to end, written up as one Markdown report.

1. Theory: phase diagrams of (λ_a, λ_g), the default slice and the slice the sweep trains.
2. Theory against simulation: q_l, ρ_l, log‖J_l‖² of random networks at three points.
3. A training sweep of the block as a causal character LM on Shakespeare over a grid of
   initializations (an Optuna study: rerunning resumes it).
4. The analysis: does (λ_a, λ_g) at initialization predict the final test loss?

The block is the reference transformer unless ``arch`` names another; the swept residual axis
is α for blocks in the paper's residual form and the branch scale b otherwise.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from sigprop.analysis import Analysis, analyze
from sigprop.analysis.predictors import REPEATS
from sigprop.runtime.devices import resolve_device
from sigprop.api.phase_diagram import phase_diagram
from sigprop.experiment.trial import study_architecture, sweep_spec
from sigprop.plots.simulate import plot_simulation
from sigprop.plots.training import plot_loss_against_exponents, plot_loss_landscape, plot_predictions
from sigprop.experiment.report import render
from sigprop.api.simulate import SimulationSettings, simulate_points, theory_exponents
from sigprop.api.critical import critical
from sigprop.theory.slices import Setting, default_x_axis, on_grid
from sigprop.spec import Architecture, InvalidHyperparameter, axis
from sigprop.sweep import SweepSpec, normalize_storage, open_study, run_study, trials_frame
from sigprop.theory.exponents import compute_exponents


@dataclass(frozen=True)
class Scale:
    """Sizes of one reproduction. The sweep trains the causal LM on the (x, σ_w) grid at σ_b,
    x being α (the paper's residuals) or b (other blocks); for the reference transformer the
    theory has all three regions there: ordered & vanishing (small σ_w), ordered & exploding,
    and chaotic & exploding (above the edge of chaos)."""

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
    branches: tuple[float, ...] = (0.1, 0.3, 0.6, 1.0)
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
                   simulation_width=1024, simulation_depth=48, simulation_seeds=8,
                   branches=(0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.8, 1.0)),
}

STUDY = "reference-lm-alpha-sigma_w"


def reproduce(out: Path, scale: Scale, storage: str | None = None, workers: int | None = None,
              log: Callable[[str], None] = print, arch: str | Architecture | None = None,
              focus: Path | None = None, device: str = "auto") -> Path:
    """Run the four stages into ``out`` and write ``out/report.md``; returns its path. With
    ``focus``, a folder where ``sigprop focus`` wrote its ``focus.json``, the report adds the
    focused study's result. The simulated networks and the sweep run on ``device``
    (``sigprop.runtime.devices``; checked first)."""
    resolve_device(device)
    out.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    default = Architecture.load(arch)
    base = default.with_values(sigma_b=scale.sigma_b)
    x_key = default_x_axis(base)
    x_values = scale.alphas if x_key == "alpha" else scale.branches
    # Blocks without a norm fixed point are described at the depth they are trained at.
    depth = None if np.isfinite(compute_exponents(base.theory_layer(scale.depth), 16)
                                .q_collapsed) else scale.depth

    start = time.perf_counter()
    log("1/4 theory phase diagrams")
    theory = _theory(out / "theory", default, base, x_key, depth, scale.depth)
    timings["theory"] = time.perf_counter() - start

    start = time.perf_counter()
    log("2/4 theory against simulated networks")
    simulation = _simulation(out / "simulation", scale, default, x_key, device)
    timings["simulation"] = time.perf_counter() - start

    start = time.perf_counter()
    log("3/4 training sweep")
    storage = normalize_storage(storage, out / "sweep.sqlite")
    grid = [f"{x_key}={','.join(map(str, x_values))}",
            f"sigma_w={','.join(map(str, scale.sigma_ws))}",
            f"seed={','.join(map(str, scale.seeds))}"]
    spec = sweep_spec(base, {}, grid, [], 0, 0, depth=scale.depth, width=scale.width,
                      context=scale.context, batch=scale.batch, steps=scale.steps,
                      data="shakespeare", compile=scale.compile)
    study = STUDY if default.name == "reference" else f"{default.name}-lm-{x_key}-sigma_w"
    run_study(storage, study, spec, "sigprop.experiment.trial:make_evaluate",
              workers=workers or scale.workers, batch_size=scale.batch_size,
              factory_kwargs={"device": device})
    timings["sweep"] = time.perf_counter() - start

    start = time.perf_counter()
    log("4/4 analysis")
    trials = trials_frame(storage, study)
    vocab_size = int(trials["vocab_size"].dropna().iloc[0])
    analysis = analyze(trials, [x_key, "sigma_w"], scale.depth, vocab_size, scale.cv_repeats,
                       arch=base)
    figures = write_training_figures(analysis, base, out / "training")
    timings["analysis"] = time.perf_counter() - start

    focused = None
    if focus is not None and (focus / "focus.json").exists():
        focused = json.loads((focus / "focus.json").read_text())
        trained = focused["scale"]
        if (default.name != "reference" or trained["width"] != scale.width
                or trained["steps"] != scale.steps or trained["sigma_b"] != scale.sigma_b):
            focused = None  # another block or budget: not comparable with this sweep
    report = out / "report.md"
    report.write_text(render(out, asdict(scale), base, x_values, theory, simulation, analysis,
                             figures, timings, storage, focused))
    return report


def analyze_study(storage: str, study: str, out: Path, x: str | None = None,
                  y: str | None = None, cv_repeats: int = REPEATS) -> tuple[Analysis, dict]:
    """Analyse the finished trials of a stored sweep and write its figures into ``out``.

    The loss landscape's axes are ``x`` and ``y`` (default: the study's swept order); returns
    the analysis and the paths of the figures. Raises ``InvalidHyperparameter`` for a study
    with fewer than two swept hyperparameters or no finished trial."""
    if cv_repeats < 1:
        raise InvalidHyperparameter(f"--cv-repeats must be an integer >= 1; got {cv_repeats}")
    attrs = open_study(storage, study, None).user_attrs
    swept = SweepSpec.from_json(attrs)
    axes = [k for k in swept.swept()
            if k != "seed" and (k in swept.sampled or len(swept.grid[k]) > 1)]
    if len(axes) < 2:
        raise InvalidHyperparameter(f"the analysis needs at least two swept hyperparameters; "
                                    f"the study sweeps {axes}")
    chosen = [name for name in (x, y) if name]
    for name in chosen:
        if name not in axes:
            raise InvalidHyperparameter(f"--x/--y: {name!r} is not swept; choose from {axes}")
    axes = [*chosen, *(name for name in axes if name not in chosen)]
    trials = trials_frame(storage, study)
    finished = trials[trials["status"].isin(["complete", "diverged"])]
    if finished.empty:
        raise InvalidHyperparameter(f"study '{study}' has no finished trials yet")
    base = study_architecture(attrs)
    result = analyze(trials, axes, int(attrs["fixed"]["depth"]),
                     int(finished["vocab_size"].dropna().iloc[0]), cv_repeats, arch=base,
                     n_tokens=int(attrs["fixed"].get("measure_tokens", 16)))
    return result, write_training_figures(result, base, out)


def write_training_figures(analysis: Analysis, base: Architecture, out: Path) -> dict[str, Path]:
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
        ranges = [_padded_range(analysis.points[key], key) for key in analysis.axes]
        xs, ys = (np.linspace(*r, 90) for r in ranges)
        setting = Setting(depth=None if analysis.theory == "asymptotic" else analysis.depth)
        grid = on_grid(base.resolved(analysis.depth), setting, x_key, xs, y_key, ys)
        figures["landscape"] = plot_loss_landscape(
            analysis.points, analysis.axes,
            {"x": xs, "y": ys, "lambda_a": grid["lambda_a"], "lambda_g": grid["lambda_g"]},
            f"causal LM, depth {analysis.depth}: final test loss over the swept initializations",
            out / "loss_landscape.png")
    figures["exponents"] = plot_loss_against_exponents(analysis.trials, analysis.depth,
                                                       out / "loss_vs_exponents.png")
    figures["predictions"] = plot_predictions(analysis.trials["loss"].to_numpy(),
                                              analysis.predictors, out / "predictions.png")
    return figures


def _padded_range(values, key: str) -> tuple[float, float]:
    """The swept values' range with half a grid step of margin, inside the axis' limits."""
    low, high = float(values.min()), float(values.max())
    step = (high - low) / max(1, values.nunique() - 1)
    declared = axis(key)
    return max(low - step / 2, declared.low + 1e-6), min(high + step / 2, declared.high)


def _theory(out: Path, default: Architecture, base: Architecture, x_key: str,
            depth: int | None, trained_depth: int) -> dict:
    slices = {"default": default, "training_slice": base}
    figures = {name: phase_diagram(x_key, "sigma-w", arch, y_range=(0.1, 6.0), resolution=120,
                                   depth=depth).write(out / name)[0]
               for name, arch in slices.items()}
    x_range = (0.05, 0.95) if x_key == "alpha" else (0.05, 1.0)
    summary = critical(x_key, "sigma-w", base, x_range=x_range, y_range=(0.1, 6.0), points=19,
                       depth=depth).to_json()
    return {**figures, "critical": summary,
            "definitions": _critical_by_definition(base, x_key, x_range, trained_depth)}


def _critical_by_definition(base: Architecture, x_key: str, x_range: tuple[float, float],
                            depth: int) -> dict[str, dict]:
    """The crossing (or, without one, the closest approach on λ_a = 0) of each theory
    definition of the exponents (``sigprop.analysis.definitions``) in the trained slice."""
    settings = {"asymptotic": (False, None), "finite_depth": (False, depth),
                "causal": (True, None), "causal_finite_depth": (True, depth)}
    found = {}
    for key, (causal, at_depth) in settings.items():
        try:
            report = critical(x_key, "sigma-w", base.with_values(causal=causal),
                              x_range=x_range, y_range=(0.1, 6.0), points=19,
                              depth=at_depth).to_json()
        except InvalidHyperparameter:  # no fixed point: only the finite-depth ones exist
            continue
        if at_depth is None and report["depth"] is not None:
            continue  # no fixed point: `critical` fell back to finite depth
        if report["crossings"]:
            point = report["crossings"][0]
            found[key] = {"kind": "crossing", "x": point["x"], "y": point["y"]}
        elif report["closest_on_edge_of_chaos"]:
            point = report["closest_on_edge_of_chaos"]
            found[key] = {"kind": "closest approach", "x": point["x"], "y": point["y"]}
    return found


def _simulation(out: Path, scale: Scale, default: Architecture, x_key: str, device: str) -> dict:
    points = [default.with_values(**{x_key: x, "sigma_w": w})
              for x, w in ((0.6, 1.0), (0.3, 3.5), (0.3, 5.5))]
    settings = SimulationSettings(depth=scale.simulation_depth, width=scale.simulation_width,
                                  seeds=tuple(range(scale.simulation_seeds)), device=device)
    report = simulate_points(points, settings)
    symbol = axis(x_key).symbol
    labels = [f"{symbol}={p['branch_a']:g}, σ_w={p['sigma_w']:g}" for p in points]
    out.mkdir(parents=True, exist_ok=True)
    report.table.to_csv(out / "simulation.csv", index=False)
    figure = plot_simulation(report.table, labels, f"theory (lines) vs simulation (d = "
                             f"{settings.width}, {len(settings.seeds)} seeds, n = 16)",
                             out / "simulation.png")
    rows = []
    for label, point, m in zip(labels, points, report.measured):
        t = theory_exponents(point, settings)
        angle = t["lambda_a"] if np.isfinite(t["lambda_a"]) else t["lambda_a_window"]
        rows.append((label, m.lambda_a.mean, m.lambda_a.stderr, angle,
                     m.lambda_g.mean, m.lambda_g.stderr, t["lambda_g_window"]))
    return {"figure": figure, "rows": rows, "settings": settings}
