"""Command line: ``sigprop exponents | trajectory | phase-diagram | critical``.

Human-readable output by default, ``--json`` for machines. Invalid input exits with code 2 and
one line naming the parameter and its allowed range; no traceback reaches the user (set
SIGPROP_DEBUG=1 to see one).
"""

from __future__ import annotations

import json
import math
import os
import sys
import functools
import time
from pathlib import Path
from typing import Annotated, Optional

import numpy as np
import typer
from rich.console import Console
from rich.table import Table

from sigprop.architecture import InvalidHyperparameter
from sigprop.hyperparameters import AXES, ReferencePoint, check_axis_range

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Predict the trainability of deep transformers from their initialization.",
)
console = Console()

AlphaA = Annotated[float, typer.Option("--alpha-a", help="Attention residual strength α_A ∈ [0, 1].")]
AlphaM = Annotated[float, typer.Option("--alpha-m", help="MLP residual strength α_M ∈ [0, 1].")]
SigmaA = Annotated[float, typer.Option("--sigma-a", help="Attention logit scale σ_A ∈ (0, 8].")]
SigmaW = Annotated[float, typer.Option("--sigma-w", help="MLP weight scale σ_w > 0.")]
SigmaB = Annotated[float, typer.Option("--sigma-b", help="MLP bias scale σ_b ≥ 0.")]
ActivationOpt = Annotated[
    str, typer.Option("--activation", help="φ: tanh, erf, relu, gelu, silu or linear.")
]
NTokens = Annotated[int, typer.Option("--n-tokens", help="Number of tokens n ≥ 2.")]
JsonFlag = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


def user_errors(command):
    """Turn bad input into one line on stderr and exit code 2, and any other failure into one
    line and exit code 1 (SIGPROP_DEBUG=1 re-raises it with its traceback)."""

    @functools.wraps(command)
    def run(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except (InvalidHyperparameter, ValueError) as error:
            print(f"error: {error}", file=sys.stderr)
            raise typer.Exit(2) from None
        except Exception as error:  # noqa: BLE001 - last line of defence: no tracebacks
            if os.environ.get("SIGPROP_DEBUG"):
                raise
            print(f"internal error: {type(error).__name__}: {error} "
                  "(set SIGPROP_DEBUG=1 for a traceback)", file=sys.stderr)
            raise typer.Exit(1) from None

    return run


def _point(alpha_a, alpha_m, sigma_a, sigma_w, sigma_b, activation, n_tokens) -> ReferencePoint:
    point = ReferencePoint(alpha_a, alpha_m, sigma_a, sigma_w, sigma_b, activation, n_tokens)
    point.layer()  # validates every hyperparameter
    return point


def _finite_or_none(value: float) -> float | None:
    """JSON has no infinities: λ_a = −∞ (a branch with α = 1 erases differences) becomes null."""
    return float(value) if math.isfinite(value) else None


@app.command()
@user_errors
def exponents(
    alpha_a: AlphaA = 0.5,
    alpha_m: AlphaM = 0.5,
    sigma_a: SigmaA = 0.6,
    sigma_w: SigmaW = 2.0,
    sigma_b: SigmaB = 0.0,
    activation: ActivationOpt = "tanh",
    n_tokens: NTokens = 16,
    as_json: JsonFlag = False,
) -> None:
    """λ_a, λ_g, the attracting state (q*, ρ*) and the phase at one initialization."""
    from sigprop.theory.exponents import compute_exponents

    point = _point(alpha_a, alpha_m, sigma_a, sigma_w, sigma_b, activation, n_tokens)
    e = compute_exponents(point.layer(), n_tokens)
    result = {
        "lambda_a": _finite_or_none(float(e.lambda_a)),
        "lambda_g": float(e.lambda_g),
        "q_star": float(e.q_star),
        "rho_star": float(e.rho_star),
        "q_collapsed": float(e.q_collapsed),
        "phase": str(e.phase),
        "gradients": str(e.gradients),
        "hyperparameters": point.scalars(),
    }
    if as_json:
        print(json.dumps(result))
        return
    table = Table(title="sigprop exponents (wide-limit theory)", show_header=False)
    rows = [
        ("λ_a (angle exponent)", f"{float(e.lambda_a):+.4f}", f"phase: {result['phase']}"),
        ("λ_g (gradient exponent)", f"{float(e.lambda_g):+.4f}", f"gradients: {result['gradients']}"),
        ("q*  (attracting norm)", f"{result['q_star']:.4f}", ""),
        ("ρ*  (attracting cosine)", f"{result['rho_star']:.4f}",
         "collapsed line" if result["rho_star"] >= 1 - 1e-9 else "regular simplex"),
    ]
    for row in rows:
        table.add_row(*row)
    console.print(table)
    console.print(_verdict(float(e.lambda_a), float(e.lambda_g)))


def _verdict(lam_a: float, lam_g: float, depth: int = 32) -> str:
    """One sentence on what the exponents mean for a network of ``depth`` layers."""
    angle = (
        f"token differences shrink by e^{lam_a * depth:.1f} over {depth} layers (rank collapse)"
        if lam_a < 0 else f"token differences grow by e^{lam_a * depth:.1f} over {depth} layers (chaos)"
    )
    gradient = f"‖∂X_L/∂X_0‖² changes by e^{lam_g * depth:.1f} over {depth} layers"
    return f"{angle}; {gradient}."


@app.command()
@user_errors
def trajectory(
    depth: Annotated[int, typer.Option("--depth", help="Number of layers L ≥ 1.")] = 32,
    q0: Annotated[float, typer.Option("--q0", help="Input mean squared norm q_0 > 0.")] = 1.0,
    rho0: Annotated[float, typer.Option("--rho0", help="Input token cosine ρ_0 ∈ [0, 1].")] = 0.0,
    alpha_a: AlphaA = 0.5,
    alpha_m: AlphaM = 0.5,
    sigma_a: SigmaA = 0.6,
    sigma_w: SigmaW = 2.0,
    sigma_b: SigmaB = 0.0,
    activation: ActivationOpt = "tanh",
    n_tokens: NTokens = 16,
    as_json: JsonFlag = False,
) -> None:
    """Predicted q_l, ρ_l and log(‖∂X_l/∂X_0‖_F²/(n d)) for l = 0..L."""
    from sigprop.theory.dynamics import trajectory as predict

    if depth < 1:
        raise InvalidHyperparameter(f"depth must be an integer >= 1; got {depth}")
    if not q0 > 0:
        raise InvalidHyperparameter(f"q0 must be > 0; got {q0:g}")
    if not 0.0 <= rho0 <= 1.0:
        raise InvalidHyperparameter(f"rho0 must be in [0, 1]; got {rho0:g}")
    point = _point(alpha_a, alpha_m, sigma_a, sigma_w, sigma_b, activation, n_tokens)
    t = predict(point.layer(), n_tokens, q0, rho0, depth)
    layers = [
        {"l": l, "q": float(t.q[l]), "p": float(t.p[l]), "rho": float(t.rho[l]),
         "log_jac": float(t.log_jac[l])}
        for l in range(depth + 1)
    ]
    if as_json:
        print(json.dumps({"layers": layers, "hyperparameters": point.scalars()}))
        return
    table = Table(title="sigprop trajectory (wide-limit theory)")
    for column in ("l", "q", "ρ", "1 − ρ", "log ‖J‖²/(nd)"):
        table.add_column(column, justify="right")
    for row in layers:
        table.add_row(str(row["l"]), f"{row['q']:.4f}", f"{row['rho']:.4f}",
                      f"{1 - row['rho']:.2e}", f"{row['log_jac']:+.3f}")
    console.print(table)


AxisOpt = Annotated[str, typer.Option(help=f"Axis: {', '.join(AXES)}.")]
Depth = Annotated[int, typer.Option("--depth", help="Number of layers L ≥ 2.")]
Width = Annotated[int, typer.Option("--width", help="Width d (= d_ff) of the simulated networks.")]
Seeds = Annotated[int, typer.Option("--seeds", help="Number of random networks per point.")]
Seed = Annotated[int, typer.Option("--seed", help="First seed; networks use seed, seed + 1, ….")]
Probes = Annotated[int, typer.Option("--n-probes", help="Random probes for ‖J‖² per network.")]


def _progress(total: int, description: str):
    """A rich progress bar on stderr, and the callback that advances it by one step."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    bar = Progress(TextColumn(description), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                   TimeElapsedColumn(), console=Console(stderr=True), transient=True)
    task = bar.add_task(description, total=total)
    return bar, lambda: bar.advance(task)


def _seed_list(seeds: int, seed: int) -> tuple[int, ...]:
    if seeds < 1:
        raise InvalidHyperparameter(f"seeds must be an integer >= 1; got {seeds}")
    if seed < 0:
        raise InvalidHyperparameter(f"seed must be an integer >= 0; got {seed}")
    return tuple(range(seed, seed + seeds))


@app.command()
@user_errors
def simulate(
    depth: Depth = 24,
    width: Width = 256,
    seeds: Seeds = 4,
    seed: Seed = 0,
    n_probes: Probes = 2,
    q0: Annotated[float, typer.Option("--q0", help="Input mean squared norm q_0 > 0.")] = 1.0,
    rho0: Annotated[float, typer.Option("--rho0", help="Input token cosine ρ_0 ∈ [0, 1].")] = 0.0,
    alpha_a: Annotated[list[float], typer.Option("--alpha-a", help="α_A; repeat for several points.")] = [0.5],  # noqa: B006
    alpha_m: Annotated[list[float], typer.Option("--alpha-m", help="α_M; repeat for several points.")] = [0.5],  # noqa: B006
    sigma_a: Annotated[list[float], typer.Option("--sigma-a", help="σ_A; repeat for several points.")] = [0.6],  # noqa: B006
    sigma_w: Annotated[list[float], typer.Option("--sigma-w", help="σ_w; repeat for several points.")] = [2.0],  # noqa: B006
    sigma_b: Annotated[list[float], typer.Option("--sigma-b", help="σ_b; repeat for several points.")] = [0.0],  # noqa: B006
    activation: ActivationOpt = "tanh",
    n_tokens: NTokens = 16,
    out: Annotated[Optional[Path], typer.Option(help="Output folder (default results/simulate).")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Simulate random reference transformers and compare them with the theory.

    Draws q_l, ρ_l and log‖J_l‖² against layer and prints the measured exponents next to the
    theory. Repeating a hyperparameter flag adds points (all combinations)."""
    import itertools

    from sigprop.plots.simulate import plot_simulation
    from sigprop.simulation import SimulationSettings, simulate_points, theory_exponents

    points = [
        _point(*values, activation, n_tokens)
        for values in itertools.product(alpha_a, alpha_m, sigma_a, sigma_w, sigma_b)
    ]
    if as_json and len(points) != 1:
        raise InvalidHyperparameter(f"--json needs exactly one hyperparameter point; got {len(points)}")
    settings = SimulationSettings(depth=depth, width=width, seeds=_seed_list(seeds, seed),
                                  n_probes=n_probes, q0=q0, rho0=rho0)
    passes = -(-len(points) * seeds // 64)
    bar, step = _progress(passes * (settings.depth + settings.angle_depth), "simulating")
    with bar:
        table, measured = simulate_points(points, settings, on_layer=step)
    theory = [theory_exponents(p, settings) for p in points]
    if as_json:
        rows = table[table["point"] == 0]
        print(json.dumps({
            "layers": [{"l": int(r.l), "q": r.q_mean, "rho": r.rho_mean, "log_jac": r.log_jac_mean}
                       for r in rows.itertuples()],
            "lambda_a": measured[0].lambda_a.mean, "lambda_a_se": measured[0].lambda_a.stderr,
            "lambda_g": measured[0].lambda_g.mean, "lambda_g_se": measured[0].lambda_g.stderr,
            "theory": {k: _finite_or_none(v) for k, v in theory[0].items()},
            "settings": {"depth": depth, "width": width, "seeds": list(settings.seeds),
                         "n_probes": n_probes},
            "hyperparameters": points[0].scalars(),
        }))
        if out is None:
            return
    out = out or Path("results/simulate")
    out.mkdir(parents=True, exist_ok=True)
    table.to_csv(out / "simulation.csv", index=False)
    table.to_parquet(out / "simulation.parquet", index=False)
    labels = [_point_label(p, points) for p in points]
    figure = plot_simulation(
        table, labels,
        f"Reference transformer: theory (d → ∞) vs simulation (d = {width}, {seeds} seeds, "
        f"n = {n_tokens}, φ = {activation})",
        out / "simulation.png",
    )
    summary = Table(title="exponents: simulation (mean ± s.e.) vs theory")
    for column in ("point", "λ_a measured", "λ_a theory", f"λ_g measured (l > {settings.burn_in})",
                   "λ_g theory (same layers)", "λ_g theory (L → ∞)"):
        summary.add_column(column, justify="right")
    for label, m, t in zip(labels, measured, theory):
        summary.add_row(label, f"{m.lambda_a.mean:+.4f} ± {m.lambda_a.stderr:.4f}",
                        f"{t['lambda_a']:+.4f}", f"{m.lambda_g.mean:+.4f} ± {m.lambda_g.stderr:.4f}",
                        f"{t['lambda_g_window']:+.4f}", f"{t['lambda_g']:+.4f}")
    if not as_json:
        console.print(summary)
        console.print(f"wrote {figure}, {out / 'simulation.csv'}, {out / 'simulation.parquet'}")


def _point_label(point: ReferencePoint, points: list[ReferencePoint]) -> str:
    """The hyperparameters that vary between points, e.g. 'α_A=0.3 σ_w=5'."""
    symbols = {"alpha_A": "α_A", "alpha_M": "α_M", "sigma_A": "σ_A", "sigma_w": "σ_w", "sigma_b": "σ_b"}
    values = point.scalars()
    varying = [k for k in symbols if len({p.scalars()[k] for p in points}) > 1] or ["alpha_A", "sigma_w"]
    return " ".join(f"{symbols[k]}={values[k]:g}" for k in varying)


@app.command("phase-diagram")
@user_errors
def phase_diagram(
    x: AxisOpt = "alpha",
    y: AxisOpt = "sigma-w",
    x_range: Annotated[Optional[tuple[float, float]], typer.Option(help="x range LOW HIGH.")] = None,
    y_range: Annotated[Optional[tuple[float, float]], typer.Option(help="y range LOW HIGH.")] = None,
    resolution: Annotated[int, typer.Option(help="Grid points per axis (≥ 2).")] = 120,
    out: Annotated[Path, typer.Option(help="Output folder.")] = Path("results/phase_diagram"),
    alpha_a: AlphaA = 0.5,
    alpha_m: AlphaM = 0.5,
    sigma_a: SigmaA = 0.6,
    sigma_w: SigmaW = 2.0,
    sigma_b: SigmaB = 0.0,
    activation: ActivationOpt = "tanh",
    n_tokens: NTokens = 16,
    empirical: Annotated[bool, typer.Option("--empirical", help="Overlay exponents measured on "
                                            "simulated networks (coarser grid).")] = False,
    empirical_points: Annotated[int, typer.Option(help="Measured grid points per axis.")] = 5,
    depth: Depth = 24,
    width: Width = 128,
    seeds: Seeds = 2,
    seed: Seed = 0,
) -> None:
    """Heatmaps of λ_a and λ_g over two hyperparameters, with their zero curves.

    Also writes the grid as CSV and Parquet. Hyperparameters not on an axis keep the values of
    their flags. With --empirical, exponents measured on simulated networks (--depth, --width,
    --seeds) are drawn as circles in the same colour scale."""
    from sigprop.diagrams import write_phase_diagram
    from sigprop.simulation import SimulationSettings, measured_exponents_on_grid

    point = _point(alpha_a, alpha_m, sigma_a, sigma_w, sigma_b, activation, n_tokens)
    x_range, y_range = _axis_range(x, x_range, resolution), _axis_range(y, y_range, resolution)
    if set(AXES[x][0]) & set(AXES[y][0]):
        raise InvalidHyperparameter(f"x and y must set different hyperparameters; got {x}, {y}")
    start = time.perf_counter()
    measured = None
    if empirical:
        if empirical_points < 2:
            raise InvalidHyperparameter(f"empirical-points must be >= 2; got {empirical_points}")
        settings = SimulationSettings(depth=depth, width=width, seeds=_seed_list(seeds, seed))
        # Cell centres of a coarse grid: inside the ranges, away from α = 1 where λ_a = −∞.
        xs, ys = (np.linspace(*r, 2 * empirical_points + 1)[1::2] for r in (x_range, y_range))
        passes = -(-empirical_points**2 * seeds // 64)
        bar, step = _progress(passes * (settings.depth + settings.angle_depth), "measuring")
        with bar:
            measured = measured_exponents_on_grid(point, x, xs, y, ys, settings, on_layer=step)
    with console.status("computing exponents on the grid…"):
        files = write_phase_diagram(point, x, x_range, y, y_range, resolution, out, measured)
    console.print(f"phase diagram ({resolution}×{resolution}) in {time.perf_counter() - start:.1f} s:")
    for path in files:
        console.print(f"  {path}")


@app.command()
@user_errors
def critical(
    y: AxisOpt = "sigma-w",
    x: Annotated[Optional[str], typer.Option(help="Second axis (omit for a 1-parameter slice).")] = "alpha",
    x_range: Annotated[Optional[tuple[float, float]], typer.Option(help="x range LOW HIGH.")] = None,
    y_range: Annotated[Optional[tuple[float, float]], typer.Option(help="y range LOW HIGH.")] = None,
    points: Annotated[int, typer.Option(help="Grid points along x (≥ 2).")] = 24,
    alpha_a: AlphaA = 0.5,
    alpha_m: AlphaM = 0.5,
    sigma_a: SigmaA = 0.6,
    sigma_w: SigmaW = 2.0,
    sigma_b: SigmaB = 0.0,
    activation: ActivationOpt = "tanh",
    n_tokens: NTokens = 16,
    as_json: JsonFlag = False,
) -> None:
    """Critical initializations: where λ_a = 0, λ_g = 0, and both.

    Solves for y at each x on a grid (or pass --x none for a one-parameter slice)."""
    from sigprop.slices import critical_summary

    point = _point(alpha_a, alpha_m, sigma_a, sigma_w, sigma_b, activation, n_tokens)
    x_axis = None if x in (None, "none") else x
    y_range = _axis_range(y, y_range, 2)
    x_range = _axis_range(x_axis, x_range, points) if x_axis else None
    with console.status("solving for critical initializations…"):
        summary = critical_summary(point, y, y_range, x_axis, x_range, points)
    if as_json:
        print(json.dumps(summary))
        return
    _print_critical(summary)


def _axis_range(axis: str, given: tuple[float, float] | None, points: int) -> tuple[float, float]:
    if axis not in AXES:
        raise InvalidHyperparameter(f"axis must be one of {', '.join(AXES)}; got {axis!r}")
    low, high = given if given is not None else AXES[axis][2]
    check_axis_range(axis, low, high, points)
    return float(low), float(high)


def _print_critical(summary: dict) -> None:
    x_name, y_name = summary["x_axis"], summary["y_axis"]
    for key, title in (("lambda_a_zero", "λ_a = 0 (edge of chaos)"),
                       ("lambda_g_zero", "λ_g = 0 (edge of gradient stability)"),
                       ("crossings", "λ_a = λ_g = 0")):
        table = Table(title=title)
        if x_name:
            table.add_column(x_name, justify="right")
        table.add_column(y_name, justify="right")
        for row in summary[key]:
            cells = [f"{row['x']:.4f}"] if x_name else []
            table.add_row(*cells, f"{row['y']:.4f}")
        if not summary[key]:
            table.add_row(*(["—"] * (2 if x_name else 1)))
        console.print(table)
    closest = summary.get("closest_on_edge_of_chaos")
    if closest and not summary["crossings"]:
        where = f"{x_name} = {closest['x']:.3f}, " if x_name else ""
        console.print(
            f"No crossing in this slice. On the edge of chaos |λ_g| is smallest at {where}"
            f"{y_name} = {closest['y']:.3f}, where λ_g = {closest['lambda_g']:+.4f}."
        )


@app.command()
@user_errors
def diagnose(
    factory: Annotated[Optional[str], typer.Argument(
        help="Your model as 'module.path:factory' (a function returning an nn.Module, "
             "called with seed= if it accepts it).")] = None,
    hf: Annotated[Optional[str], typer.Option(help="Hugging Face family built from a config "
                                              "(random init, nothing downloaded): gpt2, bert, llama.")] = None,
    layers: Annotated[int, typer.Option(help="Depth of the --hf model.")] = 24,
    width: Annotated[Optional[int], typer.Option(help="Width d of the --hf model; for your model, "
                                                  "its expected hidden size (checked).")] = None,
    heads: Annotated[Optional[int], typer.Option(help="Attention heads of the --hf model "
                                                  "(default width // 64).")] = None,
    blocks: Annotated[Optional[str], typer.Option(help="Dotted path of the block list "
                                                   "(found automatically if omitted).")] = None,
    n_tokens: NTokens = 16,
    seeds: Seeds = 4,
    seed: Seed = 0,
    n_probes: Probes = 4,
    burn_in: Annotated[Optional[int], typer.Option(help="Layers skipped before the exponents "
                                                    "are averaged (default L // 2).")] = None,
    plot: Annotated[Optional[Path], typer.Option(help="Save the per-layer figure here (PNG).")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Diagnose any PyTorch model at initialization (Hugging Face or your own).

    Per-layer geometry and Jacobian norm, the exponents λ_a and λ_g, and a plain verdict on its
    phase and gradients."""
    import torch

    from sigprop.measure.blocks import DiagnoseError
    from sigprop.measure.diagnose import diagnose as run_diagnosis
    from sigprop.measure.diagnose import verdict
    from sigprop.measure.factories import hf_factory, load_factory
    from sigprop.plots.diagnose import plot_diagnosis

    if (factory is None) == (hf is None):
        raise DiagnoseError("give either a model factory 'module.path:factory' or --hf FAMILY")
    run = None
    if hf is not None:
        model_factory, run = hf_factory(hf, layers, 256 if width is None else width, heads)
        width = None  # the Hugging Face model is built at this width
    else:
        model_factory = load_factory(factory)
    torch.set_num_threads(1)  # small per-token kernels: threads only add overhead
    with console.status("diagnosing…") if not as_json else _null_context():
        result = run_diagnosis(model_factory, n_tokens=n_tokens, seeds=_seed_list(seeds, seed),
                               n_probes=n_probes, burn_in=burn_in, width=width,
                               block_path=blocks, run=run)
    if plot is not None:
        plot_diagnosis(result, plot)
    if as_json:
        print(json.dumps(result.to_json()))
        return
    table = Table(title=f"{result.description}: {result.depth} blocks at '{result.block_path}', "
                        f"width {result.width}, n = {result.n_tokens}")
    for column in ("l", "q", "ρ", "1 − ρ", "min cos", "max cos", "eff. rank", "log ‖J‖²/(nd)"):
        table.add_column(column, justify="right")
    for row in result.to_json()["layers"]:
        table.add_row(str(row["l"]), *(_fmt(row[k], f) for k, f in (
            ("q", ".3f"), ("rho", ".4f"), ("one_minus_rho", ".2e"), ("cos_min", ".3f"),
            ("cos_max", ".3f"), ("effective_rank", ".2f"), ("log_jac", "+.3f"))))
    console.print(table)
    console.print(f"λ_a = {result.lambda_a.mean:+.4f} ± {result.lambda_a.stderr:.4f}  "
                  f"({result.phase}),  λ_g = {result.lambda_g.mean:+.4f} ± "
                  f"{result.lambda_g.stderr:.4f}  ({result.gradients} gradients)")
    console.print(verdict(result))
    for warning in result.warnings:
        console.print(f"[yellow]warning:[/yellow] {warning}")
    if plot is not None:
        console.print(f"wrote {plot}")


def _fmt(value, spec: str) -> str:
    return "—" if value is None else format(value, spec)


def _null_context():
    import contextlib

    return contextlib.nullcontext()


_GRID_KEYS = ("alpha", "alpha_A", "alpha_M", "sigma_A", "sigma_w", "sigma_b", "seed")


def _grid(entries: list[str]) -> dict[str, list[float]]:
    """'--grid alpha=0.2,0.5 --grid sigma-w=1,2' → {"alpha": [0.2, 0.5], "sigma_w": [1.0, 2.0]}."""
    grid: dict[str, list[float]] = {}
    for entry in entries:
        name, values = _swept_entry("--grid", "NAME=v1,v2,…", entry, _GRID_KEYS)
        try:
            numbers = [float(v) for v in values.split(",")]
        except ValueError:
            raise InvalidHyperparameter(f"--grid {name}: values must be numbers; got {values!r}") from None
        grid[name] = [int(v) for v in numbers] if name == "seed" else numbers
    return grid


def _sampled(entries: list[str]) -> dict[str, list[float]]:
    """'--sample alpha=0.1:0.9' → {"alpha": [0.1, 0.9]}."""
    sampled: dict[str, list[float]] = {}
    for entry in entries:
        name, bounds = _swept_entry("--sample", "NAME=LOW:HIGH", entry, _GRID_KEYS[:-1])
        try:
            low, high = (float(b) for b in bounds.split(":"))
        except ValueError:
            raise InvalidHyperparameter(f"--sample {name}: takes LOW:HIGH (two numbers); "
                                        f"got {bounds!r}") from None
        if not low < high:
            raise InvalidHyperparameter(f"--sample {name}: LOW must be below HIGH; got {bounds!r}")
        sampled[name] = [low, high]
    return sampled


def _swept_entry(option: str, form: str, entry: str, keys: tuple[str, ...]) -> tuple[str, str]:
    """'sigma-w=1,2' → ("sigma_w", "1,2"), the name normalized and checked against ``keys``."""
    name, _, values = entry.partition("=")
    name = name.strip().replace("-", "_").replace("_a", "_A").replace("_m", "_M")
    name = {"sigma_W": "sigma_w", "sigma_B": "sigma_b"}.get(name, name)
    if name not in keys or not values:
        raise InvalidHyperparameter(
            f"{option} takes {form} with NAME one of {', '.join(keys)}; got {entry!r}")
    return name, values


@app.command()
@user_errors
def sweep(
    grid: Annotated[Optional[list[str]], typer.Option("--grid", help="A swept setting, NAME=v1,v2,… "
                                            "(alpha, alpha_A, alpha_M, sigma_A, sigma_w, sigma_b, "
                                            "seed); repeat for more. The sweep is their product.")] = None,
    sample: Annotated[Optional[list[str]], typer.Option("--sample", help="A range to search, "
                                              "NAME=LOW:HIGH (names as --grid but seed); repeat "
                                              "for more. --samples quasi-random points of the box "
                                              "are crossed with the --grid product.")] = None,
    samples: Annotated[int, typer.Option(help="Points drawn in the --sample box (scrambled "
                                         "Halton sequence).")] = 0,
    sample_seed: Annotated[int, typer.Option(help="Seed of the --sample points.")] = 0,
    storage: Annotated[Optional[str], typer.Option(help="Study database: a SQLite path or URL, or "
                                                   "postgresql://… to share one sweep between "
                                                   "machines (default OUT/sweep.sqlite).")] = None,
    study: Annotated[str, typer.Option(help="Study name (one study per grid and settings).")] = "sweep",
    out: Annotated[Path, typer.Option(help="Folder for the default SQLite database.")] = Path("results/sweep"),
    workers: Annotated[int, typer.Option(help="Local worker processes (one torch thread each).")] = 2,
    batch_size: Annotated[int, typer.Option(help="Configurations a worker trains together.")] = 8,
    depth: Depth = 16,
    width: Annotated[int, typer.Option(help="Width d = d_ff of the trained LMs.")] = 64,
    context: Annotated[int, typer.Option(help="Context length in characters.")] = 64,
    batch: Annotated[int, typer.Option(help="Sequences per Adam step.")] = 32,
    steps: Annotated[int, typer.Option(help="Adam steps per configuration.")] = 400,
    lr: Annotated[float, typer.Option(help="Adam learning rate.")] = 1e-3,
    data: Annotated[str, typer.Option(help="shakespeare, or copy (a fast synthetic task).")] = "shakespeare",
    compile: Annotated[bool, typer.Option("--compile/--no-compile", help="torch.compile the "
                                          "training step (faster after a one-off ~30–60 s).")] = True,
    alpha_a: AlphaA = 0.5,
    alpha_m: AlphaM = 0.5,
    sigma_a: SigmaA = 0.6,
    sigma_w: SigmaW = 2.0,
    sigma_b: SigmaB = 0.0,
    activation: ActivationOpt = "tanh",
) -> None:
    """Train a grid, or a quasi-random search, of initializations as causal character LMs
    (an Optuna study).

    Each configuration is a trial. Rerunning the same command resumes: finished trials are kept,
    interrupted ones rerun."""
    from sigprop.sweep import SweepSpec, normalize_storage, run_sweep

    swept, ranges = _grid(grid or []), _sampled(sample or [])
    if not swept and not ranges:
        raise InvalidHyperparameter("give at least one --grid NAME=v1,v2,… or --sample NAME=LOW:HIGH")
    if ranges and samples < 1:
        raise InvalidHyperparameter(f"--samples: must be >= 1 with --sample; got {samples}")
    if samples and not ranges:
        raise InvalidHyperparameter("--samples: needs at least one --sample NAME=LOW:HIGH")
    if sample_seed < 0:
        raise InvalidHyperparameter(f"--sample-seed: must be >= 0; got {sample_seed}")
    both = sorted(set(swept) & set(ranges))
    if both:
        raise InvalidHyperparameter(f"--grid and --sample: {', '.join(both)} given in both")
    _point(alpha_a, alpha_m, sigma_a, sigma_w, sigma_b, activation, 16)
    defaults = {"alpha_A": alpha_a, "alpha_M": alpha_m, "sigma_A": sigma_a, "sigma_w": sigma_w,
                "sigma_b": sigma_b}
    hidden = {"alpha": ("alpha_A", "alpha_M")}.get
    covered = {k for name in [*swept, *ranges] for k in (hidden(name) or (name,))}
    fixed = {k: v for k, v in defaults.items() if k not in covered}
    fixed |= {"activation": activation, "depth": depth, "width": width, "context": context,
              "batch": batch, "steps": steps, "lr": lr, "data": data, "compile": compile}
    if "seed" not in swept:
        fixed["seed"] = 0
    for name, values in [*swept.items(), *ranges.items()]:  # validate before any work
        for value in values:
            if name != "seed":
                ReferencePoint(**{**{k: defaults[k] for k in defaults},
                                  **{f: value for f in (hidden(name) or (name,))}}).layer()
    spec = SweepSpec(grid=swept, fixed=fixed, sampled=ranges, samples=samples,
                     sample_seed=sample_seed)
    url = normalize_storage(storage, out / "sweep.sqlite")
    console.print(f"sweep '{study}': {len(spec.configurations())} configurations in {url}")
    run_sweep(url, study, spec, "sigprop.experiment:make_evaluate", workers=workers,
              batch_size=batch_size)
    console.print(f"done; analyse with: sigprop analyze --storage '{url}' --study {study}")


@app.command()
@user_errors
def analyze(
    storage: Annotated[Optional[str], typer.Option(help="Study database (default OUT/../sweep.sqlite "
                                                   "of `sigprop sweep`).")] = None,
    study: Annotated[str, typer.Option(help="Study name.")] = "sweep",
    out: Annotated[Path, typer.Option(help="Output folder for figures and tables.")] = Path("results/analysis"),
    x: Annotated[Optional[str], typer.Option(help="Horizontal axis of the loss landscape (default: "
                                             "the study's order).")] = None,
    y: Annotated[Optional[str], typer.Option(help="Vertical axis of the loss landscape.")] = None,
    cv_repeats: Annotated[int, typer.Option(help="Random fold assignments each predictor's "
                                            "cross-validated R² is averaged over.")] = 10,
) -> None:
    """Analyse a sweep: does (λ_a, λ_g) at initialization predict the test loss?

    Loss against (λ_a, λ_g), cross-validated predictors of the loss from the exponents against
    the raw swept hyperparameters, and, when two hyperparameters were swept, the test loss over
    them with the theory's zero curves."""
    from sigprop.analysis import analyze as run_analysis
    from sigprop.reproduce import study_base_point, write_training_figures
    from sigprop.sweep import SweepSpec, normalize_storage, open_study, trials_frame

    if cv_repeats < 1:
        raise InvalidHyperparameter(f"--cv-repeats must be an integer >= 1; got {cv_repeats}")
    url = normalize_storage(storage, Path("results/sweep/sweep.sqlite"))
    spec = open_study(url, study, None).user_attrs
    swept = SweepSpec.from_json(spec)
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
    trials = trials_frame(url, study)
    finished = trials[trials["status"].isin(["complete", "diverged"])]
    if finished.empty:
        raise InvalidHyperparameter(f"study '{study}' has no finished trials yet")
    result = run_analysis(trials, axes, int(spec["fixed"]["depth"]),
                          int(finished["vocab_size"].dropna().iloc[0]), cv_repeats)
    figures = write_training_figures(result, study_base_point(spec), out)
    table = Table(title=f"{len(result.trials)} finished trials: cross-validated R² of the test loss "
                        f"(mean ± sd over {result.cv_repeats} fold assignments)")
    table.add_column("predictor")
    table.add_column("R²", justify="right")
    for cv in result.predictors:
        table.add_row(cv.name, f"{cv.r2:.3f} ± {cv.r2_sd:.3f}")
    console.print(table)
    console.print(result.regions.to_string(index=False))
    low = result.minimum["lowest_loss"]
    console.print(f"lowest loss {low['loss']:.3f} at " + ", ".join(f"{a} = {low[a]:g}" for a in axes)
                  + f" (λ_a = {low['lambda_a']:+.3f}, λ_g = {low['lambda_g']:+.3f})")
    for path in figures.values():
        console.print(f"wrote {path}")


@app.command()
@user_errors
def reproduce(
    scale: Annotated[str, typer.Option(help="small (about 15 minutes on 2 CPU cores) or paper.")] = "small",
    out: Annotated[Path, typer.Option(help="Output folder (report.md, figures, the sweep database).")] = Path("results/reproduce"),
    workers: Annotated[Optional[int], typer.Option(help="Worker processes for the sweep.")] = None,
    storage: Annotated[Optional[str], typer.Option(help="Sweep database (default OUT/sweep.sqlite).")] = None,
) -> None:
    """Reproduce the paper end to end into OUT/report.md (the main job).

    Theory phase diagrams, theory against simulation, a training sweep and its analysis.
    Rerunning resumes the sweep."""
    from sigprop.reproduce import SCALES, reproduce as run_reproduction

    if scale not in SCALES:
        raise InvalidHyperparameter(f"scale must be one of {', '.join(SCALES)}; got {scale!r}")
    start = time.perf_counter()
    report = run_reproduction(out, SCALES[scale], storage, workers, log=console.print)
    console.print(f"report: {report}  ({(time.perf_counter() - start) / 60:.1f} min)")
