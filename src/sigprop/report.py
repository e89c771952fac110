"""The Markdown report of ``sigprop reproduce``: figures and the numbers behind them."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from sigprop.analysis import Analysis
from sigprop.spec import Architecture, axis


def render(root: Path, scale: dict, arch: Architecture, x_values: tuple, theory: dict,
           simulation: dict, analysis: Analysis, figures: dict[str, Path],
           timings: dict[str, float], storage: str) -> str:
    """The report for the folder ``root`` (image links are relative to it); ``arch`` is the
    trained block and ``x_values`` the values of the swept residual axis."""
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
    ]
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
