"""Theory commands: exponents, trajectory, phase-diagram, critical."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.table import Table

import sigprop
from sigprop.cli.app import app, console, user_errors
from sigprop.cli.options import (
    AxisOpt,
    Depth,
    Device,
    JsonFlag,
    NTokens,
    Q0,
    Range,
    Rho0,
    ExponentRho0,
    Seed,
    Seeds,
    Width,
    architecture_options,
    signed,
)


@app.command()
@user_errors
@architecture_options()
def exponents(
    arch: Optional[str],
    values: dict[str, Any],
    n_tokens: NTokens = 16,
    depth: Depth = None,
    q0: Q0 = 1.0,
    rho0: ExponentRho0 = 1.0,
    as_json: JsonFlag = False,
) -> None:
    """λ_a, λ_g, the attracting state (q*, ρ*) and the phase at one initialization; with
    --depth (or for blocks without a norm fixed point) the finite-depth exponents too."""
    report = sigprop.exponents(arch, n_tokens=n_tokens, depth=depth, q0=q0, rho0=rho0, **values)
    result = report.to_json()
    if as_json:
        print(json.dumps(result))
        return
    table = Table(title=f"sigprop exponents (wide-limit theory): {result['architecture']}",
                  show_header=False)
    if report.has_fixed_point:
        table.add_row("λ_a (angle exponent)", signed(result["lambda_a"]), f"phase: {result['phase']}")
        table.add_row("λ_g (gradient exponent)", signed(result["lambda_g"]),
                      f"gradients: {result['gradients']}")
        table.add_row("q*  (attracting norm)", f"{result['q_star']:.4g}",
                      "the signal dies out" if report.signal_dies else "")
        if not report.signal_dies:  # at q* = 0 the cosine map is the identity: no attractor
            table.add_row("ρ*  (attracting cosine)", f"{result['rho_star']:.4f}",
                          "collapsed line" if result["rho_star"] >= 1 - 1e-9 else
                          "regular simplex")
    else:
        table.add_row("asymptotic λ_a, λ_g", "undefined", "no norm fixed point: q grows with depth")
    finite = result["finite_depth"]
    if finite is not None:
        where = f"L = {finite['depth']}"
        table.add_row(f"λ_a^(L), {where}", signed(finite["lambda_a"]), f"phase: {finite['phase']}")
        table.add_row(f"λ_g^(L), {where}", signed(finite["lambda_g"]),
                      f"gradients: {finite['gradients']}")
        table.add_row("q_L, ρ_L", f"{finite['q_L']:.4g}, {finite['rho_L']:.4f}",
                      f"log ‖J_L‖²/(nd) = {finite['log_jac_L']:+.3f}")
        table.add_row("local rates at layer L", signed(finite["lambda_a_local"]),
                      f"λ_g: {signed(finite['lambda_g_local'])}")
    console.print(table)
    console.print(report.verdict())


@app.command()
@user_errors
@architecture_options()
def trajectory(
    arch: Optional[str],
    values: dict[str, Any],
    depth: Annotated[Optional[int], typer.Option("--depth", help="Number of layers L (default: "
                                                 "the architecture's depth, else 32).")] = None,
    q0: Q0 = 1.0,
    rho0: Rho0 = 0.0,
    n_tokens: NTokens = 16,
    as_json: JsonFlag = False,
) -> None:
    """Predicted q_l, ρ_l and log(‖∂X_l/∂X_0‖_F²/(n d)) for l = 0..L."""
    report = sigprop.trajectory(arch, depth=depth, n_tokens=n_tokens, q0=q0, rho0=rho0, **values)
    if as_json:
        print(json.dumps(report.to_json()))
        return
    table = Table(title=f"sigprop trajectory (wide-limit theory): {report.arch.describe()}")
    for column in ("l", "q", "ρ", "1 − ρ", "log ‖J‖²/(nd)"):
        table.add_column(column, justify="right")
    for row in report.layers():
        table.add_row(str(row["l"]), f"{row['q']:.4f}", f"{row['rho']:.4f}",
                      f"{1 - row['rho']:.2e}", f"{row['log_jac']:+.3f}")
    console.print(table)
    console.print(report.verdict())


@app.command("phase-diagram")
@user_errors
@architecture_options()
def phase_diagram(
    arch: Optional[str],
    values: dict[str, Any],
    x: AxisOpt = None,
    y: AxisOpt = "sigma-w",
    x_range: Range = None,
    y_range: Range = None,
    resolution: Annotated[int, typer.Option(help="Grid points per axis (≥ 2).")] = 120,
    out: Annotated[Path, typer.Option(help="Output folder.")] = Path("results/phase_diagram"),
    n_tokens: NTokens = 16,
    depth: Annotated[Optional[int], typer.Option("--depth", help="Finite-depth exponents λ^(L) "
                                                 "of L layers (default: asymptotic), and the "
                                                 "depth of --empirical networks (default 24).")] = None,
    q0: Q0 = 1.0,
    rho0: ExponentRho0 = 1.0,
    empirical: Annotated[bool, typer.Option("--empirical", help="Overlay exponents measured on "
                                            "simulated networks (coarser grid).")] = False,
    empirical_points: Annotated[int, typer.Option(help="Measured grid points per axis.")] = 5,
    width: Width = 128,
    seeds: Seeds = 2,
    seed: Seed = 0,
    device: Device = "auto",
) -> None:
    """Heatmaps of λ_a and λ_g over two hyperparameters, with their zero curves.

    Also writes the grid as CSV and Parquet. Hyperparameters not on an axis keep the values of
    their flags (x defaults to alpha for the paper's residuals, branch otherwise). With
    --empirical, exponents measured on simulated networks (--depth, --width, --seeds) are drawn
    as circles in the same colour scale."""
    start = time.perf_counter()
    with console.status("computing exponents on the grid…"):
        diagram = sigprop.phase_diagram(
            x, y, arch, x_range=x_range, y_range=y_range, resolution=resolution,
            n_tokens=n_tokens, depth=depth, q0=q0, rho0=rho0, empirical=empirical,
            empirical_points=empirical_points, width=width, seeds=seeds, seed=seed,
            device=device, **values)
    files = diagram.write(out)
    console.print(f"phase diagram ({resolution}×{resolution}, {diagram.setting.label}) in "
                  f"{time.perf_counter() - start:.1f} s:")
    for path in files:
        console.print(f"  {path}")


@app.command()
@user_errors
@architecture_options()
def critical(
    arch: Optional[str],
    values: dict[str, Any],
    x: Annotated[Optional[str], typer.Option(help="The axis along which y is solved for at "
                                             "every point (none for a one-parameter slice; "
                                             "default alpha, or branch).")] = None,
    y: AxisOpt = "sigma-w",
    x_range: Range = None,
    y_range: Range = None,
    points: Annotated[int, typer.Option(help="Grid points along x (≥ 2).")] = 24,
    n_tokens: NTokens = 16,
    depth: Annotated[Optional[int], typer.Option("--depth", help="Finite-depth exponents λ^(L) "
                                                 "of L layers (default: asymptotic).")] = None,
    q0: Q0 = 1.0,
    rho0: ExponentRho0 = 1.0,
    as_json: JsonFlag = False,
) -> None:
    """Critical initializations: where λ_a = 0, λ_g = 0, and both.

    Solves for y at each x on a grid (or pass --x none for a one-parameter slice)."""
    with console.status("solving for critical initializations…"):
        summary = sigprop.critical(x, y, arch, x_range=x_range, y_range=y_range, points=points,
                        n_tokens=n_tokens, depth=depth, q0=q0, rho0=rho0, **values).to_json()
    if as_json:
        print(json.dumps(summary))
        return
    _print_critical(summary)


def _print_critical(summary: dict) -> None:
    x_name, y_name = summary["x_axis"], summary["y_axis"]
    console.print(f"{summary['architecture']}; exponents: {summary['exponents']}")
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
