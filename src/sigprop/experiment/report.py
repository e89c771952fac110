"""The Markdown report of ``sigprop reproduce``: figures and the numbers behind them."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from sigprop.analysis import Analysis
from sigprop.experiment.focus import focus_markdown
from sigprop.spec import Architecture, axis


def render(root: Path, scale: dict, arch: Architecture, x_values: tuple, theory: dict,
           simulation: dict, analysis: Analysis, figures: dict[str, Path],
           timings: dict[str, float], storage: str, focused: dict | None = None) -> str:
    """The report for the folder ``root`` (image links are relative to it); ``arch`` is the
    trained block and ``x_values`` the values of the swept residual axis; ``focused`` the
    summary ``sigprop focus`` wrote, if any."""
    image = lambda path, alt: f"![{alt}]({Path(path).relative_to(root).as_posix()})"  # noqa: E731
    critical = theory["critical"]
    closest = critical["closest_on_edge_of_chaos"]
    x_key = analysis.axes[0]
    x_symbol = axis(x_key).symbol
    values = arch.resolved(scale["depth"]).scalars()
    lines = [
        "# sigprop reproduction",
        "",
        "Geometric dynamics of signal propagation predict the trainability of transformers "
        "(Cowsik, Nebabu, Qi, Ganguli, 2024): theory, simulation, training sweep, analysis.",
        "",
        f"Run time: theory {timings['theory']:.0f} s, simulation {timings['simulation']:.0f} s, "
        f"sweep {timings['sweep']:.0f} s, analysis {timings['analysis']:.0f} s. "
        f"Sweep storage: `{storage}` (rerunning `sigprop reproduce` with the same folder resumes it).",
        "",
        "## 1. Theory: phase diagrams",
        "",
        image(theory["default"], "phase diagram, default slice"),
        "",
        f"The slice the sweep trains adds MLP biases (σ_b = {scale['sigma_b']:g})"
        + (", which opens a vanishing-gradient region at small σ_w:" if x_key == "alpha" else ":"),
        "",
        image(theory["training_slice"], "phase diagram, training slice"),
        "",
        _critical_text(critical, closest, x_symbol),
        "",
        "## 2. Theory against simulation",
        "",
        image(simulation["figure"], "theory vs simulation"),
        "",
        "| point | λ_a measured | λ_a theory | λ_g measured (second half) | λ_g theory (same layers) |",
        "|---|---|---|---|---|",
        *(f"| {label} | {la:+.4f} ± {la_se:.4f} | {la_t:+.4f} | {lg:+.4f} ± {lg_se:.4f} | {lg_t:+.4f} |"
          for label, la, la_se, la_t, lg, lg_se, lg_t in simulation["rows"]),
        "",
        "## 3. Training sweep",
        "",
        f"The block ({arch.describe()}) as a causal character LM on Shakespeare: depth "
        f"{scale['depth']}, d = {scale['width']}, context {scale['context']}, batch "
        f"{scale['batch']}, Adam (lr 1e-3), {scale['steps']} steps; grid {x_symbol} ∈ "
        f"{list(x_values)} × σ_w ∈ {list(scale['sigma_ws'])}, seeds {list(scale['seeds'])}, "
        f"σ_A = {values['sigma_A']:g}, σ_b = {values['sigma_b']:g}, φ = {values['activation']}. "
        f"Theory exponents: {analysis.theory}. {len(analysis.trials)} finished trials "
        f"({int((analysis.trials['status'] == 'diverged').sum())} diverged, counted at the loss "
        "of the uniform predictor).",
        "",
        image(figures["landscape"], "loss landscape"),
        "",
        image(figures["exponents"], "loss against exponents"),
        "",
        "### Loss by region of the phase diagram (theory exponents)",
        "",
        _markdown_table(analysis.regions),
        "",
        "### Predicting the test loss from initialization",
        "",
        "Grouped 5-fold cross-validation (all seeds of a point held out together); R² of held-out "
        f"predictions, mean ± standard deviation over {analysis.cv_repeats} random assignments "
        "of points to folds:",
        "",
        "| predictor | features | cross-validated R² |",
        "|---|---|---|",
        *(f"| {cv.name} | {', '.join(cv.features)} | {cv.r2:.3f} ± {cv.r2_sd:.3f} |"
          for cv in analysis.predictors),
        "",
        image(figures["predictions"], "cross-validated predictions"),
        "",
        "### Where the minimum lies",
        "",
        _minimum_text(analysis.minimum, x_key, x_symbol),
        "",
        "### Which exponents? Every definition, side by side",
        "",
        _definitions_text(analysis, theory.get("definitions", {}), x_key, x_symbol),
        "",
        "### Is the loss lowest at the crossing? The focused study",
        "",
        focus_markdown(focused) if focused else
        "Not run: `sigprop focus` trains a small grid around the candidate optima with three "
        "seeds at depths 16 and 32 (about an hour on 2 CPU cores); rerun `sigprop reproduce` "
        "afterwards to include it here.",
        "",
        "### What is reproducible",
        "",
        REPRODUCIBILITY,
        "",
    ]
    return "\n".join(lines)


REPRODUCIBILITY = (
    "Bit for bit: the theory (float64 numpy) and the inputs, initializations, data order and "
    "fold assignments, which are all seeded. Training is float32, one torch thread per worker, "
    "configurations trained together in vmapped stacks and compiled by torch.compile: on the "
    "same machine and software a rerun reproduces the losses, but another CPU (AVX2 against "
    "AVX-512 kernels), another torch build or another grouping of configurations into stacks "
    "rounds differently and moves test losses by about 1e-3 to 1e-2 nats/char. Neighbouring "
    "points of the grid differ by that much, so their ranking and the cross-validated R² move "
    "too (for the saturating fit of the default sweep, 0.90 on one 2-core machine and 0.97 on "
    "another). What carries over is what exceeds seed noise: the failing corners, the region "
    "of low loss, and differences between predictors larger than their spread over fold "
    "assignments.")


def _definitions_text(analysis: Analysis, critical: dict, x_key: str, x_symbol: str) -> str:
    """The definitions' R² and where the trained minimum lies in each one's terms."""
    if not analysis.definitions:
        return "No definition could be scored (fewer than 5 points with finite exponents)."
    low = analysis.minimum["lowest_loss"]
    lines = [
        f"Cross-validated R² of the loss from (L·λ_a, L·λ_g) under each definition (mean over "
        f"{analysis.cv_repeats} fold assignments), (L·λ_a, L·λ_g) at the point of lowest loss "
        f"({x_symbol} = {low[x_key]:g}, σ_w = {low['sigma_w']:g}), and the definition's own "
        "critical point in this slice (crossing of its zero curves, or closest approach):",
        "",
        "| exponents | R² saturating | R² spline | (L·λ_a, L·λ_g) at the lowest loss | "
        "critical point in the slice | trained point nearest criticality (loss, rank) |",
        "|---|---|---|---|---|---|",
    ]
    for score in analysis.definitions:
        a, g = score.at_minimum
        point = critical.get(score.definition.key)
        where = ("—" if point is None else
                 f"{point['kind']} at {x_symbol} = {point['x']:.2f}, σ_w = {point['y']:.2f}")
        near = score.nearest_critical
        lines.append(
            f"| {score.definition.label} | {score.r2_saturating:.3f} | {score.r2_spline:.3f} | "
            f"({a:+.2f}, {g:+.2f}) | {where} | {x_symbol} = {near[x_key]:g}, σ_w = "
            f"{near['sigma_w']:g} ({near['loss']:.3f}, rank {near['rank']}) |")
    for score in analysis.definitions:
        if score.stderr is not None and all(math.isfinite(v) for v in score.stderr):
            ratio = max(se / spread if spread > 0 else math.inf
                        for se, spread in zip(score.stderr, score.spread))
            lines += ["", f"{score.definition.label}: median standard error over seeds of "
                      f"(L·λ_a, L·λ_g) ({score.stderr[0]:.2f}, {score.stderr[1]:.2f}) against "
                      f"their spread over the sweep ({score.spread[0]:.2f}, "
                      f"{score.spread[1]:.2f}): measurement noise is "
                      f"{'small' if ratio < 0.1 else 'not small'} next to the differences "
                      "between points."]
    return "\n".join(lines)


def _critical_text(critical: dict, closest: dict | None, x_symbol: str) -> str:
    if critical["crossings"]:
        points = ", ".join(f"({x_symbol} = {c['x']:.3f}, σ_w = {c['y']:.3f})"
                           for c in critical["crossings"])
        return f"λ_a = 0 and λ_g = 0 cross at {points}."
    text = "λ_a = 0 and λ_g = 0 do not cross in this slice"
    if critical["x_axis"] == "alpha":
        text += (": on the edge of chaos the attractor is the collapsed line, where λ_g − λ_a = "
                 "log(1 + α_A²/((1 − α_A²) q*)) > 0 (docs/theory.md §5)")
    text += "."
    if closest:
        text += (f" The smallest λ_g on the edge of chaos is {closest['lambda_g']:+.4f} at "
                 f"{x_symbol} = {closest['x']:.3f}, σ_w = {closest['y']:.3f}.")
    return text


def _minimum_text(minimum: dict, x_key: str, x_symbol: str) -> str:
    low, near = minimum["lowest_loss"], minimum["smallest_exponents"]
    return (
        f"Lowest mean test loss {low['loss']:.3f} at {x_symbol} = {low[x_key]:g}, σ_w = "
        f"{low['sigma_w']:g} (theory λ_a = {low['lambda_a']:+.3f}, λ_g = {low['lambda_g']:+.3f}). "
        f"The grid point where the theory exponents are jointly smallest is {x_symbol} = "
        f"{near[x_key]:g}, σ_w = {near['sigma_w']:g} (λ_a = {near['lambda_a']:+.3f}, λ_g = "
        f"{near['lambda_g']:+.3f}); its loss {near['loss']:.3f} ranks {near['rank']} of "
        f"{minimum['points']}."
    )


def _markdown_table(frame: pd.DataFrame) -> str:
    header = "| " + " | ".join(frame.columns) + " |"
    rule = "|" + "---|" * len(frame.columns)
    rows = ["| " + " | ".join(_cell(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join([header, rule, *rows])


def _cell(value) -> str:
    if isinstance(value, float):
        return "—" if math.isnan(value) else f"{value:.3f}"
    return str(value)
