"""Proof by training: does sigprop's critical initialization train better than the default?

    python benchmarks/critical_init_training.py [--out results/critical_init_training]
        [--steps 300] [--seeds 3] [--workers 2] [--image docs/images/critical_init_training.png]
    python benchmarks/critical_init_training.py --plot-only   # table and figure from stored runs

Run on demand (not in CI): the 15 trainings of the defaults took 70.5 CPU-minutes here (0.94
CPU s per step, one thread each, two at a time on 2 shared cores; 96 minutes wall).

Shakespeare, causal character LM (``sigprop.data.shakespeare``, 84 symbols), depth 48, width
d = 64, context 64, batch 32, Adam at lr 1e-3 (``TrainSettings``' optimizer and data), the
same fixed budget of ``--steps`` steps and the same data order (``Batches`` seed 0) for every
run, each trained alone by ``sigprop.train.module.train_module``; validation and test loss
(nats/char) on the first 64 windows of each held-out split, as ``sigprop sweep``.

1. sigprop's own LM (``build_lm``) with the ``pre-ln`` preset block: Pre-LN, 4 heads with W_O,
   GELU MLP with d_ff = 4d, every weight N(0, 1/fan-in), unit residual branches; the plain
   initialization a framework gives a Pre-LN block when nothing depends on the depth (the
   ``gpt2`` preset's 1/sqrt(2L) branches are GPT-2's own depth-aware recipe, measured within
   the ±0.5 target already at L = 48, and GPT-2's recipe is panel 2). Three initializations:
   * default: as built;
   * critical: ``critical_init`` on a float64 factory of the same model (seeds 0-3, knobs
     mlp_input and attn_values, the API's defaults), its factors applied to the float32 model;
   * off-critical: the same two knobs × 8, i.e. those weights N(0, 1) instead of
     N(0, 1/d) (d = 64), a common mistake; its exponents are measured and reported.
2. Hugging Face ``GPT2LMHeadModel`` built from ``GPT2Config(n_layer=48, n_embd=64, n_head=4,
   vocab_size=84, n_positions=64)`` with dropout 0 (as sigprop's LM; the study is about the
   initialization), random init, nothing downloaded: default (HF's own init: N(0, 0.02²),
   output projections 0.02/sqrt(2L)) and critical (``critical_init`` on a float64 factory of
   the LM-head model; its blocks are found under ``transformer.h``).

Seed s of a run builds the model exactly as seed s of the measurement does (``build_lm`` with
"seed": s; Hugging Face after ``torch.manual_seed(s)``), so the exponents describe the trained
networks (float32 copies of the float64 ones measured).

Everything is stored under --out as it finishes: ``init_<model>.json`` (the ``CriticalInit``),
``exponents.json`` (log_gap_L, log_jac_L and departure of every initialization, float64, seeds
0-3), ``runs.jsonl`` (one line per finished training); a killed run loses only the trainings
in progress, and a rerun with the same settings skips what is stored. ``summary.md`` holds
the table; the figure is the training loss against the step (mean ± s.e. over seeds of the
mean loss over stretches of 10 steps, and every seed as a thin line), one panel per model.
"steps to < 3.0": the first step at which the mean loss of the last 10 steps is below 3.0
nats/char, i.e. the escape from the unigram plateau (the unigram entropy is 3.34 nats/char).
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

from sigprop.experiment.rescue.suite import read_runs
from sigprop.spec import PRESETS

VOCAB = 84          # sigprop.data.shakespeare(): checked at start-up
DEPTH, WIDTH, HEADS = 48, 64, 4
OFF_CRITICAL = {"mlp_input": 8.0, "attn_values": 8.0}
KNOBS = ("mlp_input", "attn_values")
MEASURE_SEEDS = 4
PROGRESS_EVERY = 25
BIN = 10            # steps per point of the figure's curves
PLATEAU = 3.0       # "steps to < 3.0": leaving the unigram plateau (3.34 nats/char)

ARMS = (  # (model, init)
    ("sigprop", "default"), ("sigprop", "critical"), ("sigprop", "critical-normalized"),
    ("sigprop", "off-critical"),
    ("hf", "default"), ("hf", "critical"), ("hf", "critical-normalized"),
)
LABELS = {"sigprop": "sigprop CausalLM, pre-ln preset", "hf": "Hugging Face GPT2LMHeadModel"}
COLORS = {"default": "tab:blue", "critical": "tab:green", "critical-normalized": "tab:purple",
          "off-critical": "tab:red"}
GRADIENT = {"critical": "raw", "critical-normalized": "normalized"}  # the init's gradient target


# ---------------------------------------------------------------------------- the models

def sigprop_config(seed: int) -> dict:
    return {**PRESETS["pre-ln"].values, "seed": seed}


def build(model: str, seed: int, dtype: torch.dtype = torch.float32) -> torch.nn.Module:
    """Seed ``seed``'s model at its framework's default initialization."""
    if model == "sigprop":
        from sigprop.train import build_lm

        return build_lm(sigprop_config(seed), VOCAB, depth=DEPTH, width=WIDTH, dtype=dtype)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)  # what sigprop.measure's build_model does for a factory
        return gpt2_lm().to(dtype)


def factory(model: str):
    """``factory(seed)`` for ``critical_init``/``diagnose`` (they seed torch's global generator
    with the seed first, and cast to float64)."""
    if model == "sigprop":
        return lambda seed: build("sigprop", seed, torch.float64)
    return lambda seed: gpt2_lm()


def gpt2_lm() -> torch.nn.Module:
    """GPT2LMHeadModel from its config (weights from torch's global generator)."""
    from transformers import GPT2Config, GPT2LMHeadModel

    return GPT2LMHeadModel(GPT2Config(
        n_layer=DEPTH, n_embd=WIDTH, n_head=HEADS, vocab_size=VOCAB, n_positions=64,
        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, use_cache=False,
        bos_token_id=None, eos_token_id=None))


def token_run(model: torch.nn.Module, n_tokens: int, seed: int):
    """``run`` for a token-id model without a Hugging Face config: ids (1, n) uniform in the
    vocabulary from the seed's "token ids" stream (as ``run_token_ids``)."""
    from sigprop.measure.ensemble import stream_seed

    generator = torch.Generator().manual_seed(stream_seed(seed, "token ids"))
    ids = torch.randint(0, VOCAB, (1, n_tokens), generator=generator)
    return model(ids.to(next(model.parameters()).device))


# ----------------------------------------------------------------- initializations, exponents

def initializations(out: Path, log) -> tuple[dict, dict]:
    """The critical inits (found once, stored) and every arm's exponents."""
    from sigprop import critical_init, load_init
    from sigprop.init.result import apply_scales, summary
    from sigprop import diagnose

    inits, exponents_path = {}, out / "exponents.json"
    exponents = json.loads(exponents_path.read_text()) if exponents_path.exists() else {}
    for model, kind in [(m, k) for m in ("sigprop", "hf") for k in GRADIENT]:
        suffix = "" if kind == "critical" else "_normalized"
        path = out / f"init_{model}{suffix}.json"
        run = token_run if model == "sigprop" else None
        if path.exists():
            inits[model, kind] = load_init(path)
            log(f"{kind} init of {model}: stored ({path})")
        else:
            log(f"{kind} init of {model}: searching (float64, seeds 0-{MEASURE_SEEDS - 1}) …")
            found = critical_init(factory(model), knobs=KNOBS, seeds=MEASURE_SEEDS, run=run,
                                  gradient=GRADIENT[kind],
                                  on_evaluation=lambda e: log(
                                      f"  {_scales(e.scales)}: log_gap_L {e.log_gap_L:+.3f}, "
                                      f"log_jac_L {e.log_jac_L:+.3f}, departure "
                                      f"{e.departure:.3f}"))
            found.write(path)
            inits[model, kind] = found
            log(f"  → {_scales(found.scales)} in {found.seconds:.0f} s, reached "
                f"{found.reached} {found.reason}")
        init = inits[model, kind]
        exponents[f"{model}/default"] = {**init.before, "scales": {}}
        exponents[f"{model}/{kind}"] = {**init.after, "scales": init.scales}
        if model == "sigprop" and "sigprop/off-critical" not in exponents:
            scales, names = OFF_CRITICAL, init.parameters
            log(f"exponents of the off-critical init {_scales(scales)} …")
            diagnosis = diagnose(factory(model), seeds=MEASURE_SEEDS, run=run,
                                 prepare=lambda m, s=scales, n=names: apply_scales(m, s, n))
            exponents["sigprop/off-critical"] = {**summary(diagnosis), "scales": scales}
    exponents_path.write_text(json.dumps(exponents, indent=1))
    for key, value in exponents.items():
        log(f"{key:22s} log_gap_L {value['log_gap_L']:+.2f}  log_jac_L {value['log_jac_L']:+.2f}"
            f"  departure {value['departure']:.3f}  factors {_scales(value['scales']) or '1'}")
    return inits, exponents


# ------------------------------------------------------------------------------ trainings

def train_one(task: dict) -> dict:
    """One training (runs in a worker process)."""
    torch.set_num_threads(task["threads"])
    from sigprop.init.result import apply_scales
    from sigprop.train.module import train_module

    model = build(task["model"], task["seed"])
    if task["scales"]:
        apply_scales(model, task["scales"], task["parameters"])
    name = f"{task['model']}/{task['init']} seed {task['seed']}"
    started, cpu = time.perf_counter(), time.process_time()

    def progress(step: int, loss: float) -> None:
        done = step + 1
        if done % PROGRESS_EVERY == 0 or done == task["steps"] or not math.isfinite(loss):
            rate = (time.perf_counter() - started) / done
            print(f"[{name}] step {done}/{task['steps']} loss {loss:.3f} "
                  f"({rate:.2f} s/step, {rate * (task['steps'] - done) / 60:.1f} min left)",
                  flush=True)

    settings = task["settings"]
    result = train_module(model, steps=settings["steps"], lr=settings["lr"],
                          context=settings["context"], batch=settings["batch"],
                          seed=settings["data_seed"], eval_windows=settings["eval_windows"],
                          on_step=progress)
    return {**{k: task[k] for k in ("model", "init", "seed", "scales", "settings")},
            **result, "cpu_seconds": time.process_time() - cpu}


def pending_tasks(out: Path, settings: dict, inits: dict, seeds: int, threads: int) -> list[dict]:
    done = {_key(r) for r in read_runs(out / "runs.jsonl")}
    tasks = []
    for seed in range(seeds):
        for model, init in ARMS:
            scales = {"default": {}, "critical": inits[model, "critical"].scales,
                      "critical-normalized": inits[model, "critical-normalized"].scales,
                      "off-critical": OFF_CRITICAL}[init]
            task = {"model": model, "init": init, "seed": seed, "scales": scales,
                    "parameters": inits[model, "critical"].parameters, "settings": settings,
                    "threads": threads, "steps": settings["steps"]}
            if _key(task) not in done:
                tasks.append(task)
    return tasks


def _key(run: dict) -> str:
    return json.dumps([run["model"], run["init"], run["seed"], run["scales"], run["settings"]],
                      sort_keys=True)


# ---------------------------------------------------------------------- table and figure

def table(runs: list[dict], exponents: dict, settings: dict) -> str:
    lines = [
        ("| model | init | factors (mlp_input, attn_values) | log_gap_L | log_jac_L | departure "
         "| test loss | validation loss | train loss (last 10 %) | steps to < 3.0 | runs |"),
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for model, init in ARMS:
        mine = [r for r in runs if r["model"] == model and r["init"] == init
                and r["settings"] == settings]
        e = exponents.get(f"{model}/{init}")
        if e is None:
            continue
        factors = ", ".join(f"{e['scales'].get(k, 1.0):.3g}" for k in KNOBS)
        complete = [r for r in mine if r["status"] == "complete"]
        status = f"{len(complete)}/{len(mine)}" + (f" ({len(mine) - len(complete)} diverged)"
                                                   if len(complete) < len(mine) else "")
        lines.append(
            f"| {LABELS[model].split(',')[0]} | {init} | {factors} "
            f"| {_pm(e['log_gap_L'], e.get('log_gap_L_stderr'))} "
            f"| {_pm(e['log_jac_L'], e.get('log_jac_L_stderr'))} | {e['departure']:.2f} "
            f"| {_mean_se([r['test_loss'] for r in complete])} "
            f"| {_mean_se([r['validation_loss'] for r in complete])} "
            f"| {_mean_se([r['train_loss'] for r in complete])} "
            f"| {_escape(mine)} | {status} |")
    lines += ["", "Per seed (test loss; steps to < 3.0):", ""]
    for model, init in ARMS:
        mine = sorted((r for r in runs if r["model"] == model and r["init"] == init
                       and r["settings"] == settings), key=lambda r: r["seed"])
        cells = [f"seed {r['seed']}: {r['test_loss']:.3f}; {_steps(steps_below(r['losses']))}"
                 for r in mine]
        lines.append(f"* {model}/{init}: " + ", ".join(cells))
    return "\n".join(lines)


def _escape(runs: list[dict]) -> str:
    """Mean ± s.e. of the steps to < PLATEAU over the runs that got there, and how many did not."""
    steps = [steps_below(r["losses"]) for r in runs]
    never = sum(not math.isfinite(v) for v in steps)
    return _mean_se(steps, ".0f") + (f" ({never} of {len(runs)} never)" if never else "")


def _steps(value: float) -> str:
    return f"{value:.0f} steps" if math.isfinite(value) else "never"


def figure(runs: list[dict], exponents: dict, settings: dict, image: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.6), sharey=True)
    for ax, model in zip(axes, ("sigprop", "hf")):
        for arm_model, init in ARMS:
            if arm_model != model:
                continue
            mine = [r for r in runs if r["model"] == model and r["init"] == init
                    and r["settings"] == settings]
            if not mine:
                continue
            steps = settings["steps"]
            edges = np.arange(0, steps + 1, BIN)
            curves = np.full((len(mine), len(edges) - 1), np.nan)
            for i, r in enumerate(mine):
                losses = np.asarray(r["losses"], dtype=float)
                for j in range(len(edges) - 1):
                    chunk = losses[edges[j]:edges[j + 1]]
                    if chunk.size == BIN and np.all(np.isfinite(chunk)):
                        curves[i, j] = chunk.mean()
            x = (edges[:-1] + edges[1:] - 1) / 2
            mean = np.nanmean(curves, axis=0)
            n = np.sum(np.isfinite(curves), axis=0)
            se = np.nanstd(curves, axis=0, ddof=1) / np.sqrt(n) if len(mine) > 1 else 0 * mean
            e = exponents[f"{model}/{init}"]
            tests = [r["test_loss"] for r in mine if r["status"] == "complete"]
            label = (f"{init}: log_gap_L {e['log_gap_L']:+.1f}, log_jac_L {e['log_jac_L']:+.1f}"
                     f"; test {np.mean(tests):.3f}" if tests else f"{init}: diverged")
            ax.plot(x, mean, color=COLORS[init], label=f"{label} (n={len(mine)})")
            ax.fill_between(x, mean - se, mean + se, color=COLORS[init], alpha=0.25, lw=0)
            for curve in curves:  # every seed, thin: a mean can hide one stuck run
                ax.plot(x, curve, color=COLORS[init], lw=0.6, alpha=0.45)
        ax.set_title(f"{LABELS[model]}, L = {DEPTH}, d = {WIDTH}")
        ax.set_xlabel("Adam step")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="upper right")
    axes[0].set_ylabel(f"training loss (nats/char, mean over {BIN} steps)")
    axes[0].set_ylim(top=min(4.6, axes[0].get_ylim()[1]))
    fig.suptitle(f"Shakespeare character LM: {settings['steps']} Adam steps at lr "
                 f"{settings['lr']:g}, batch {settings['batch']} × context {settings['context']}, "
                 "same data order; line and band: mean ± s.e. over seeds, thin lines: each seed",
                 fontsize=10)
    fig.tight_layout()
    image.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(image, dpi=120)


# ---------------------------------------------------------------------------------- main

def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("results/critical_init_training"))
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--workers", type=int, default=2, help="trainings in parallel")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per training")
    parser.add_argument("--image", type=Path,
                        default=Path("docs/images/critical_init_training.png"))
    parser.add_argument("--plot-only", action="store_true")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(args.threads)
    log_path = args.out / "log.txt"

    def log(message: str) -> None:
        line = f"{time.strftime('%H:%M:%S')} {message}"
        print(line, flush=True)
        with log_path.open("a") as handle:
            handle.write(line + "\n")

    from sigprop.data import shakespeare

    if shakespeare().vocab_size != VOCAB:
        sys.exit(f"the corpus has {shakespeare().vocab_size} symbols, not {VOCAB}")
    settings = {"steps": args.steps, "lr": args.lr, "context": 64, "batch": 32,
                "data_seed": 0, "eval_windows": 64, "depth": DEPTH, "width": WIDTH}
    started, cpu = time.perf_counter(), time.process_time()
    inits, exponents = initializations(args.out, log)
    log(f"initializations: {time.process_time() - cpu:.0f} CPU s in this process")
    if not args.plot_only:
        tasks = pending_tasks(args.out, settings, inits, args.seeds, args.threads)
        log(f"{len(tasks)} trainings to run ({args.steps} steps each, {args.workers} workers)")
        with (args.out / "runs.jsonl").open("a") as runs_file, \
                multiprocessing.get_context("spawn").Pool(args.workers) as pool:
            for result in pool.imap_unordered(train_one, tasks):
                runs_file.write(json.dumps(result) + "\n")
                runs_file.flush()
                os.fsync(runs_file.fileno())
                log(f"done {result['model']}/{result['init']} seed {result['seed']}: "
                    f"{result['status']}, test {result['test_loss']:.4f}, validation "
                    f"{result['validation_loss']:.4f} ({result['seconds']:.0f} s, "
                    f"{result['cpu_seconds']:.0f} CPU s)")
    runs = [r for r in read_runs(args.out / "runs.jsonl") if r["settings"] == settings]
    text = table(runs, exponents, settings)
    cpu_total = sum(r.get("cpu_seconds", 0.0) for r in runs)
    footer = (f"\n{len(runs)} trainings, {cpu_total / 60:.1f} CPU-minutes of training "
              f"({np.mean([r['cpu_seconds'] / r['steps_done'] for r in runs if r['steps_done']]):.2f}"
              f" CPU s/step); this invocation: {(time.perf_counter() - started) / 60:.1f} min wall"
              if runs else "\nno trainings stored yet")
    (args.out / "summary.md").write_text(text + "\n" + footer + "\n")
    print("\n" + text + footer)
    if runs:
        figure(runs, exponents, settings, args.image)
        log(f"figure: {args.image}")


def _scales(scales: dict) -> str:
    return ", ".join(f"{k} × {v:.3g}" for k, v in scales.items())


def _pm(value, stderr) -> str:
    if value is None:
        return "n/a"
    return f"{value:+.2f}" + (f" ± {stderr:.2f}" if stderr is not None else "")


def steps_below(losses: list[float], level: float = PLATEAU) -> float:
    """The first step at which the mean training loss of the last ``BIN`` steps is below
    ``level`` (the escape from the unigram plateau; NaN if never)."""
    x = np.asarray(losses, dtype=float)
    if x.size < BIN:
        return math.nan
    running = np.convolve(x, np.ones(BIN) / BIN, mode="valid")
    below = np.flatnonzero(running < level)
    return float(below[0] + BIN - 1) if below.size else math.nan


def _mean_se(values: list[float], spec: str = ".3f") -> str:
    values = [v for v in values if math.isfinite(v)]
    if not values:
        return "n/a"
    if len(values) == 1:
        return f"{values[0]:{spec}}"
    se = np.std(values, ddof=1) / math.sqrt(len(values))
    return f"{np.mean(values):{spec}} ± {se:{spec}}"


if __name__ == "__main__":
    main()
