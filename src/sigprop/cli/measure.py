"""Measurement commands: simulate (random networks of a block against the theory) and
diagnose (any PyTorch model)."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.table import Table

import sigprop
from sigprop.cli.app import app, console, user_errors
from sigprop.cli.options import (
    Device,
    InitFile,
    JsonFlag,
    ModelFactory,
    NTokens,
    Probes,
    Q0,
    Rho0,
    Seed,
    Seeds,
    Width,
    architecture_options,
    fmt,
    model_options,
    signed,
)
from sigprop.spec import InvalidHyperparameter


@app.command()
@user_errors
@architecture_options(multiple=True)
def simulate(
    arch: Optional[str],
    values: dict[str, Any],
    depth: Annotated[Optional[int], typer.Option("--depth", help="Layers of the simulated "
                                                 "networks (default: the architecture's, else "
                                                 "24).")] = None,
    width: Width = 256,
    seeds: Seeds = 4,
    seed: Seed = 0,
    n_probes: Probes = 2,
    q0: Q0 = 1.0,
    rho0: Rho0 = 0.0,
    n_tokens: NTokens = 16,
    device: Device = "auto",
    out: Annotated[Optional[Path], typer.Option(help="Output folder (default results/simulate).")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Simulate random networks of a block and compare them with the theory.

    Draws q_l, ρ_l and log‖J_l‖² against layer and prints the measured exponents next to the
    theory. Repeating a hyperparameter flag adds points (all combinations)."""
    if as_json and any(isinstance(v, list) and len(v) > 1 for v in values.values()):
        raise InvalidHyperparameter("--json needs exactly one hyperparameter point")
    report = sigprop.simulate(arch, depth=depth, width=width, seeds=seeds, seed=seed,
                              n_probes=n_probes, q0=q0, rho0=rho0, n_tokens=n_tokens,
                              device=device, show_progress=not as_json, **values)
    if as_json:
        print(json.dumps(report.to_json()))
        if out is None:
            return
    files = report.write(out or Path("results/simulate"))
    if as_json:
        return
    settings = report.settings
    summary = Table(title="exponents: simulation (mean ± s.e.) vs theory (same layers; L → ∞)")
    for column in ("point", "λ_a measured", "λ_a theory", f"λ_g measured (l > {settings.burn_in})",
                   "λ_g theory"):
        summary.add_column(column, justify="right")
    for label, m, t in zip(report.labels(), report.measured, report.theory):
        summary.add_row(label, f"{m.lambda_a.mean:+.4f} ± {m.lambda_a.stderr:.4f}",
                        _window(t, "lambda_a"), f"{m.lambda_g.mean:+.4f} ± {m.lambda_g.stderr:.4f}",
                        _window(t, "lambda_g"))
    console.print(summary)
    console.print("wrote " + ", ".join(str(f) for f in files))


def _window(theory: dict | None, name: str) -> str:
    """'+0.1234; +0.1200' (theory over the measured layers; asymptotic) or '—'."""
    if theory is None:
        return "— (causal)"
    return f"{signed(theory[f'{name}_window'])}; {signed(theory[name])}"


@app.command()
@user_errors
@model_options
def diagnose(
    which: dict[str, Any],
    factory: ModelFactory = None,
    n_tokens: NTokens = 16,
    seeds: Seeds = 4,
    seed: Seed = 0,
    n_probes: Probes = 4,
    burn_in: Annotated[Optional[int], typer.Option(help="Layers skipped before the late-layer "
                                                    "rates are averaged (default L // 2).")] = None,
    init: InitFile = None,
    device: Device = "auto",
    plot: Annotated[Optional[Path], typer.Option(help="Save the per-layer figure here (PNG).")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Diagnose any PyTorch model at initialization: transformers (Hugging Face or your own),
    CNNs, RNNs and GNNs.

    Per-layer geometry and Jacobian norm, the exponents λ_a and λ_g, and a plain verdict on its
    phase and gradients. Tokens are sequence positions (transformers), spatial positions
    (CNNs), initial states (RNNs, layers = time steps) or nodes (GNNs)."""
    with console.status("diagnosing…") if not as_json else contextlib.nullcontext():
        result = sigprop.diagnose(factory, n_tokens=n_tokens, seeds=seeds, seed=seed,
                                  n_probes=n_probes, burn_in=burn_in, init=init, device=device,
                                  **which)
    if plot is not None:
        result.plot(plot)
    if as_json:
        print(json.dumps(result.to_json()))
        return
    nouns = result.nouns
    varying = len(set(result.tokens_per_layer)) > 1 or len(set(result.widths_per_layer)) > 1
    shape = (f"{nouns.token}s n = {result.n_tokens}, width {result.width} at l = 0"
             if varying else f"width {result.width}, n = {result.n_tokens}")
    table = Table(title=f"{result.description}: {result.depth} {nouns.layer}s at "
                        f"'{result.block_path}', {shape}")
    columns = ["l", "q", "ρ", "1 − ρ", "min cos", "max cos", "eff. rank", "log ‖J‖²/(nd)"]
    if varying:
        columns[1:1] = ["n", "d"]
    for column in columns:
        table.add_column(column, justify="right")
    for row, n, d in zip(result.to_json()["layers"], result.tokens_per_layer,
                         result.widths_per_layer):
        cells = [fmt(row[k], f) for k, f in (
            ("q", ".3f"), ("rho", ".4f"), ("one_minus_rho", ".2e"), ("cos_min", ".3f"),
            ("cos_max", ".3f"), ("effective_rank", ".2f"), ("log_jac", "+.3f"))]
        table.add_row(str(row["l"]), *([str(n), str(d)] if varying else []), *cells)
    console.print(table)
    console.print(f"{nouns.definition}.")
    console.print(f"over the model's {result.depth} {nouns.layer}s: L·λ_a^(L) = log gap_L = "
                  f"{result.log_gap_L.mean:+.3f} ± {result.log_gap_L.stderr:.3f} "
                  f"({result.phase}),  L·λ_g^(L) = log_jac_L = {result.log_jac_L.mean:+.3f} ± "
                  f"{result.log_jac_L.stderr:.3f} (gradients {result.gradients})")
    console.print(f"late {nouns.layer}s (after {result.burn_in}): λ_a = "
                  f"{result.lambda_a.mean:+.4f} ± {result.lambda_a.stderr:.4f},  λ_g = "
                  f"{result.lambda_g.mean:+.4f} ± {result.lambda_g.stderr:.4f} per {nouns.layer}")
    console.print(result.verdict())
    for warning in result.warnings:
        console.print(f"[yellow]warning:[/yellow] {warning}")
    if plot is not None:
        console.print(f"wrote {plot}")
