"""Training commands: sweep, analyze, reproduce."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.table import Table

import sigprop
from sigprop.cli.app import app, console, user_errors
from sigprop.cli.options import Device, architecture_options


@app.command()
@user_errors
@architecture_options()
def sweep(
    arch: Optional[str],
    values: dict[str, Any],
    grid: Annotated[Optional[list[str]], typer.Option("--grid", help="A swept setting, NAME=v1,v2,… "
                                            "(any numeric hyperparameter or alias, or seed); "
                                            "repeat for more. The sweep is their product.")] = None,
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
    depth: Annotated[Optional[int], typer.Option("--depth", help="Layers of the trained LMs "
                                                 "(default: the architecture's, else 16).")] = None,
    width: Annotated[int, typer.Option(help="Width d of the trained LMs.")] = 64,
    context: Annotated[int, typer.Option(help="Context length in characters.")] = 64,
    batch: Annotated[int, typer.Option(help="Sequences per Adam step.")] = 32,
    steps: Annotated[int, typer.Option(help="Adam steps per configuration.")] = 400,
    lr: Annotated[float, typer.Option(help="Adam learning rate.")] = 1e-3,
    data: Annotated[str, typer.Option(help="shakespeare, or copy (a fast synthetic task).")] = "shakespeare",
    compile: Annotated[bool, typer.Option("--compile/--no-compile", help="torch.compile the "
                                          "training step (faster after a one-off ~30–60 s).")] = True,
    screen: Annotated[bool, typer.Option("--screen", help="Train only --sample points near "
                                         "criticality: the first --samples points of the "
                                         "sequence with |L·λ_a| <= --screen-lambda-a and "
                                         "|L·λ_g| <= --screen-lambda-g (theory, finite depth "
                                         "L, rho0 -> 1); the others cost no training.")] = False,
    screen_lambda_a: Annotated[Optional[float], typer.Option(
        "--screen-lambda-a", help="Bound on |L·λ_a| of --screen (default 3).")] = None,
    screen_lambda_g: Annotated[Optional[float], typer.Option(
        "--screen-lambda-g", help="Bound on |L·λ_g| of --screen (default 3).")] = None,
    device: Device = "auto",
) -> None:
    """Train a grid, or a quasi-random search, of initializations as causal character LMs
    (an Optuna study).

    Each configuration is a trial. Rerunning the same command resumes: finished trials are kept,
    interrupted ones rerun."""
    result = sigprop.run_sweep(
        arch, grid=grid or [], sample=sample or [], samples=samples, sample_seed=sample_seed,
        storage=storage, study=study, out=out, workers=workers, batch_size=batch_size,
        depth=depth, width=width, context=context, batch=batch, steps=steps, lr=lr, data=data,
        compile=compile, screen=screen, screen_lambda_a=screen_lambda_a,
        screen_lambda_g=screen_lambda_g, device=device, show_progress=True, **values)
    console.print(result.verdict())
    console.print(f"done; analyse with: sigprop analyze --storage '{result.storage}' "
                  f"--study {result.study}")


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
    result, figures = sigprop.analyze(storage, study, out, x, y, cv_repeats)
    table = Table(title=f"{len(result.trials)} finished trials: cross-validated R² of the test loss "
                        f"(mean ± sd over {result.cv_repeats} fold assignments)")
    table.add_column("predictor")
    table.add_column("R²", justify="right")
    for cv in result.predictors:
        table.add_row(cv.name, f"{cv.r2:.3f} ± {cv.r2_sd:.3f}")
    console.print(table)
    if result.definitions:
        definitions = Table(title="every definition of the exponents: cross-validated R² of the "
                                  "loss from (L·λ_a, L·λ_g)")
        for column in ("exponents", "saturating", "spline", "L·λ at the lowest loss"):
            definitions.add_column(column, justify="left" if column == "exponents" else "right")
        for score in result.definitions:
            a, g = score.at_minimum
            definitions.add_row(score.definition.label, f"{score.r2_saturating:.3f}",
                                f"{score.r2_spline:.3f}", f"({a:+.2f}, {g:+.2f})")
        console.print(definitions)
    console.print(result.regions.to_string(index=False))
    low = result.minimum["lowest_loss"]
    console.print(f"lowest loss {low['loss']:.3f} at "
                  + ", ".join(f"{a} = {low[a]:g}" for a in result.axes)
                  + f" (λ_a = {low['lambda_a']:+.3f}, λ_g = {low['lambda_g']:+.3f})")
    for path in figures.values():
        console.print(f"wrote {path}")


@app.command()
@user_errors
def reproduce(
    scale: Annotated[str, typer.Option(help="small (about 15 minutes on 2 CPU cores) or paper.")] = "small",
    arch: Annotated[Optional[str], typer.Option("--arch", help="The block to reproduce with (a "
                                                "preset or .json file; default reference).")] = None,
    out: Annotated[Path, typer.Option(help="Output folder (report.md, figures, the sweep database).")] = Path("results/reproduce"),
    workers: Annotated[Optional[int], typer.Option(help="Worker processes for the sweep.")] = None,
    storage: Annotated[Optional[str], typer.Option(help="Sweep database (default OUT/sweep.sqlite).")] = None,
    focus: Annotated[Path, typer.Option(help="Folder of a `sigprop focus` run whose result the "
                                        "report includes, if there is one.")] = Path("results/focus"),
    device: Device = "auto",
) -> None:
    """Reproduce the paper end to end into OUT/report.md (the main job).

    Theory phase diagrams, theory against simulation, a training sweep and its analysis.
    Rerunning resumes the sweep."""
    start = time.perf_counter()
    report = sigprop.reproduce(out, scale, arch=arch, workers=workers, storage=storage,
                               focus=focus, device=device, log=console.print)
    console.print(f"report: {report}  ({(time.perf_counter() - start) / 60:.1f} min)")


@app.command()
@user_errors
def focus(
    out: Annotated[Path, typer.Option(help="Output folder (focus.sqlite, focus.md).")] = Path("results/focus"),
    storage: Annotated[Optional[str], typer.Option(help="Study database (default OUT/focus.sqlite).")] = None,
    main: Annotated[Optional[str], typer.Option(help="Storage of the coarse sweep whose minimum "
                                                "is a candidate (default: results/reproduce/"
                                                "sweep.sqlite if it exists).")] = None,
    workers: Annotated[Optional[int], typer.Option(help="Worker processes.")] = None,
    device: Device = "auto",
) -> None:
    """Is the trained loss lowest at the crossing? Train a small (α, σ_w) grid around the
    candidate optima, 3 seeds at depths 16 and 32 (about an hour on 2 CPU cores).

    Candidates: the finite-depth crossing at each depth, the asymptotic closest approach and
    the minimum of the coarse reproduction sweep. Rerunning resumes."""
    report = sigprop.focus(out, storage=storage, main=main, workers=workers, device=device,
                           log=console.print)
    console.print(f"report: {report}")


@app.command()
@user_errors
def rescue(
    out: Annotated[Path, typer.Option(help="Output folder (runs.jsonl, inits, exponents, "
                                        "report.md, rescue.png).")] = Path("results/rescue"),
    network: Annotated[Optional[list[str]], typer.Option(
        "--network", help="A network of the suite (repeat; default all): post-ln-32, "
                          "post-ln-64, bert-64, no-norm-32, gpt2-48, tanh-mlp-100, relu-cnn-40, "
                          "lstm-128, gru-128.")] = None,
    arm: Annotated[Optional[list[str]], typer.Option(
        "--arm", help="An arm (repeat; default all): default, sigprop, sigprop-normalized, the "
                      "published fixes, off-critical, reference.")] = None,
    seeds: Annotated[int, typer.Option(help="Seeds per arm.")] = 3,
    quick: Annotated[bool, typer.Option("--quick", help="One seed, the default and the "
                                        "sigprop arm only (about 15 minutes on 2 cores).")] = False,
    workers: Annotated[int, typer.Option(help="Trainings in parallel (one torch thread "
                                         "each).")] = 2,
    plot: Annotated[Optional[Path], typer.Option(help="The figure (default "
                                                 "OUT/rescue.png).")] = None,
) -> None:
    """Rescue what fails: deep networks whose defaults do not train, with sigprop's critical
    initialization against the published fixes (about 3 hours on 2 cores; rerunning adds only
    what is missing)."""
    report = sigprop.rescue(out, networks=network, arms=arm, seeds=seeds, quick=quick,
                            workers=workers, plot=plot, show_progress=True, log=console.print)
    console.print(report.verdict())
