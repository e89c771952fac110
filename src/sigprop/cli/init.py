"""``sigprop init``: a critical initialization of any PyTorch / Hugging Face model (find it, write
it, apply it again to a fresh model)."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Annotated, Optional

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
    Seed,
    Seeds,
    model_options,
)


@app.command()
@user_errors
@model_options
def init(
    which: dict,
    factory: ModelFactory = None,
    knob: Annotated[Optional[list[str]], typer.Option(
        "--knob", help="A knob to tune (repeat), of the model's family. Transformers: "
                       "attn_logits, attn_values, mlp_input (weight multipliers), attn_branch, "
                       "mlp_branch (residual branch multipliers), skip (a Post-LN block's skip "
                       "weight α, DeepNorm's: a forward hook); default skip for Post-LN blocks, "
                       "else mlp_input and attn_values. Plain layers (any family): weights, "
                       "biases (σ_w, σ_b multipliers), the default where nothing else fits. "
                       "ResNets: branch_gamma (γ of each branch's last BatchNorm, "
                       "set), conv (convolution gain); default branch_gamma. RNN/LSTM/GRU: "
                       "recurrent, input (weight_hh, weight_ih multipliers), forget_bias (LSTM "
                       "forget / GRU update gate bias, shift); default all that apply. GCNs: "
                       "weights; default weights.")] = None,
    gradient: Annotated[str, typer.Option(help="The gradient total to target: raw "
                                          "(log ‖∂X_L/∂X_0‖², the paper's λ_g) or normalized "
                                          "(of the token directions, what a final norm passes "
                                          "on).")] = "raw",
    tolerance: Annotated[float, typer.Option(help="Target: |L·λ_a^(L)| and |L·λ_g^(L)| at most "
                                             "this (the edge's width: 'near the edge').")] = 0.5,
    min_departure: Annotated[float, typer.Option(help="Non-identity constraint: sin² of the "
                                                 "angle between X_L and X_0 at least this.")] = 0.25,
    min_branch: Annotated[float, typer.Option(help="Lower bound of branch multipliers (1: never "
                                              "weaker than the default init).")] = 1.0,
    min_scale: Annotated[float, typer.Option(help="Lower bound of weight factors and set "
                                             "values (branch_gamma: keeps every branch "
                                             "alive).")] = 1 / 16,
    max_scale: Annotated[float, typer.Option(help="Upper bound of every factor (and set "
                                             "value).")] = 16.0,
    min_shift: Annotated[float, typer.Option(help="Lower bound of shift knobs (forget_bias).")] = -8.0,
    max_shift: Annotated[float, typer.Option(help="Upper bound of shift knobs (forget_bias).")] = 8.0,
    n_tokens: NTokens = 16,
    seeds: Seeds = 4,
    seed: Seed = 0,
    search_seeds: Annotated[Optional[int], typer.Option(
        help="Seeds the search runs on (the first ones; default 2, all for recurrent and "
             "graph networks); before/after use all.")] = None,
    n_probes: Probes = 4,
    apply: InitFile = None,
    out: Annotated[Optional[Path], typer.Option(help="Write the initialization (JSON) here, for "
                                                "--apply and sigprop.apply_init.")] = None,
    save: Annotated[Optional[Path], typer.Option(help="Save the state dict of seed SEED's model "
                                                 "with the factors applied (torch.save).")] = None,
    warm_start: Annotated[bool, typer.Option("--warm-start/--no-warm-start", help="Start from "
                                             "the theory's answer where it describes the model "
                                             "(Hugging Face GPT-2, Llama).")] = True,
    device: Device = "auto",
    as_json: JsonFlag = False,
) -> None:
    """Find per-block scale factors that put a model at the edge of both transitions at its
    own depth: |L·λ_a^(L)| and |L·λ_g^(L)| within the tolerance, never by making the blocks the
    identity. Transformers, ResNets (--net resnet18), RNN/LSTM/GRU over --layers time steps
    (--net lstm|gru|rnn) and GCNs (--net gcn), each with its own knobs. With --apply FILE,
    apply a saved one to a fresh model and measure it instead."""
    common = dict(n_tokens=n_tokens, seeds=seeds, seed=seed, n_probes=n_probes, device=device,
                  **which)
    if apply is not None:
        if knob:
            raise ValueError("--knob and --apply exclude each other: the file fixes the knobs")
        with _status("measuring the model with the saved factors…", as_json):
            result = sigprop.measure_init(factory, apply, **common)
    else:
        with _status("searching…", as_json) as status:
            count = iter(range(1, 10**6))

            def progress(evaluation) -> None:
                if status is not None:
                    status.update(f"searching… evaluation {next(count)}: log_gap_L "
                                  f"{evaluation.log_gap_L:+.2f}, log_jac_L "
                                  f"{evaluation.log_jac_L:+.2f}, departure "
                                  f"{evaluation.departure:.2f}")

            result = sigprop.critical_init(
                factory, knobs=tuple(knob) if knob else None, gradient=gradient,
                tolerance=tolerance, min_departure=min_departure, min_branch=min_branch,
                min_scale=min_scale, max_scale=max_scale, min_shift=min_shift,
                max_shift=max_shift, search_seeds=search_seeds, warm_start=warm_start,
                on_evaluation=progress, **common)
    if out is not None:
        result.write(out)
    if save is not None:
        result.save_model(factory, save, seed=seed, n_tokens=n_tokens, **which)
    if as_json:
        print(json.dumps({k: v for k, v in result.to_json().items() if k != "path"}))
        return
    _print(result)
    for path, what in ((out, "initialization"), (save, "state dict")):
        if path is not None:
            console.print(f"wrote {what} {path}")


def _status(message: str, quiet: bool):
    return contextlib.nullcontext() if quiet else console.status(message)


def _print(result) -> None:
    layer = {"convolutional": "residual blocks", "recurrent": "time steps",
             "graph": "message-passing layers"}.get(result.family, "blocks")
    table = Table(title=f"{result.model}: {result.depth} {layer}")
    for column in ("", "L·λ_a^(L) = log gap_L", "L·λ_g^(L) = log_jac_L", "log_jac_norm_L",
                   "departure"):
        table.add_column(column, justify="right")
    for name in ("before", "after"):
        row = getattr(result, name)
        table.add_row(name, *(_pm(row, key) for key in ("log_gap_L", "log_jac_L", "log_jac_norm_L")),
                      "—" if row.get("departure") is None else f"{row['departure']:.3f}")
    console.print(table)
    console.print("knobs: " + ", ".join(result.knob_values()))
    console.print(f"gradient target: {result.gradient}; constraint: {result.constraint}")
    console.print(f"input: {result.input}")
    if result.warm_start is not None:
        warm = result.warm_start
        console.print(f"theory warm start ({warm['evaluations']} theory evaluations, "
                      f"{warm['seconds']:.1f} s): " + ", ".join(
                          f"{k} × {v:.4g}" for k, v in warm["scales"].items()))
    verdict = result.reason if result.reached else f"closest reachable ({result.reason})"
    console.print(f"{verdict}; {result.evaluations} evaluations in {result.seconds:.1f} s")


def _pm(row: dict, key: str) -> str:
    value, stderr = row.get(key), row.get(f"{key}_stderr")
    if value is None:
        return "—"
    return f"{value:+.3f}" + (f" ± {stderr:.3f}" if stderr is not None else "")
