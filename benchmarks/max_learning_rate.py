"""Maximum stable learning rate: does sigprop's critical initialization let a deep LM train at a
higher learning rate than its default, and than the published fix?

    python benchmarks/max_learning_rate.py [--out results/max_learning_rate] [--steps 120]
        [--seeds 3] [--workers 2] [--models pre-ln gpt2]
        [--image docs/images/max_learning_rate.png]
    python benchmarks/max_learning_rate.py --plot-only   # table and figure from stored runs

Run on demand (not in CI). Cost: a training of a depth-48, d = 64 LM takes 0.63 (Pre-LN) and
0.87 (GPT-2) CPU s per Adam step at one torch thread, plus about 3 CPU s of start-up and
evaluation; one rung of a ladder (3 seeds × 120 steps) is about 4 (Pre-LN) and 5.4 (GPT-2)
CPU-minutes, at most 9 rungs × 9 ladders ≈ 6.2 CPU-hours (3.1 h wall on 2 free cores; less
where ladders stop early or runs diverge early). The critical inits and the exponents take a
few CPU-minutes more.

The models (``sigprop.experiment.rescue.models``), depth L = 48, width d = 64, 4 heads, the
Shakespeare character vocabulary (84 symbols), dropout 0; seed s's model is built after
``torch.manual_seed(s)``:

* ``pre-ln``: ``encoder_lm(48, 64, 4, vocab, norm_first=True)``, a causal LM of 48
  ``nn.TransformerEncoderLayer(64, 4, 256, dropout=0, norm_first=True)`` blocks at PyTorch's
  default initialization;
* ``gpt2``: ``hf_lm("gpt2", 48, 64, 4, vocab)``, a Hugging Face ``GPT2LMHeadModel`` from its
  config at Hugging Face's own initialization (N(0, 0.02²), the residual output projections
  0.02/sqrt(2L): GPT-2's depth-scaled init is already part of this default).

The arms (what is done to the freshly built model, or to its training):

* ``default``: nothing;
* ``sigprop``, ``sigprop-normalized``: ``sigprop.apply_init`` with the model's critical
  initialization, found once by ``sigprop.critical_init(factory, vocab_size=84, seeds=4)``
  with the raw or the normalized gradient target (``gradient="normalized"``) and stored;
* ``warmup``: the published fix for instability at high learning rate, linear learning-rate
  warm-up (Xiong et al. 2020, "On Layer Normalization in the Transformer Architecture") over
  the first 10 % of the steps; the model at its default initialization;
* ``scaled-residual`` (Pre-LN only; an init-only fix added here): GPT-2's depth-scaled
  residual initialization (Radford et al. 2019; Megatron-LM, Shoeybi et al. 2019), the
  weights of the two maps that write into the residual stream of each block (attention
  ``out_proj`` and ``linear2``) × 1/sqrt(2L), for "the accumulation on the residual path with
  model depth". The ``gpt2`` default already has it, so that model has no such arm.

Every arm's exponents at initialization, L·λ_a = log_gap_L and L·λ_g = log_jac_L (and the
normalized gradient total log_jac_norm_L), are measured by ``sigprop.diagnose`` (float64,
seeds 0-3) with the arm's change applied (``prepare``); ``warmup`` has the default's.

Training (``sigprop.train.module.train_module``): causal character LM on Shakespeare
(``sigprop.train.tasks.CharLM``, context 64), Adam, no clipping, batch 32, ``--steps`` steps at
a constant learning rate (``warmup``: linear warm-up over 10 % of them), the same data order
(seed 0) for every run; test loss on the first 64 windows of the test split.

"Trains without divergence" at a learning rate means, for one run: its status is "complete"
(no NaN/inf loss or gradient at any step) AND its training loss, averaged over the last 10 %
of the steps, is below chance − 0.3 nats/char, where chance is the unigram entropy of the
training text (3.34 nats/char; the threshold is 3.04): the run left the unigram plateau and
stayed off it. A failed run is one of: "NaN" (non-finite loss or gradient: stopped there),
"plateau" (complete, but its running mean loss over 10 % of the steps never went below the
threshold) or "rose" (it went below, then ended above). The learning rate trains when all
seeds do. For each (model, arm) the grid lr = 1e-3 · 2^k (1e-3 … 0.256) is climbed from
1e-3, all seeds at each rung, and the climb stops after the first rung where every seed
fails. The maximum stable learning rate of an arm is the largest grid value at which every
seed trains ("< 1e-3" if none, "≥ 0.256" if the top of the grid still trains); the ratio
is that of sigprop's arm to the default's (a power of two: the grid is ×2). The issue's target
is a ratio ≥ 2 for sigprop's init.

Everything is stored under --out as it finishes: ``init_<model>_L<depth>_<gradient>.json``
(the ``CriticalInit``s), ``exponents_L<depth>.json``, ``runs.jsonl`` (one line per finished
training, keyed by model, arm, learning rate, seed and the settings; flushed and fsynced), so
a killed run loses only the trainings in progress and a rerun skips what is stored (the climb
is re-derived from the stored runs). ``summary.md`` holds the tables; the figure plots each
run's final training loss against the learning rate, one panel per model.
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import os
import queue
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn

from sigprop.experiment.rescue.suite import read_runs

DEPTH, WIDTH, HEADS = 48, 64, 4
GRID = tuple(round(1e-3 * 2 ** k, 6) for k in range(9))  # 1e-3, 2e-3, …, 0.256
MARGIN = 0.3           # trained: final training loss below chance − MARGIN (nats/char)
TAIL_SHARE = 0.1       # the final training loss: mean over this last share of the steps
WARMUP_SHARE = 0.1     # the warmup arm's linear warm-up, as a share of the steps
MEASURE_SEEDS = 4      # seeds of critical_init and diagnose
MODELS = ("pre-ln", "gpt2")
ARMS = {
    "pre-ln": ("default", "sigprop", "sigprop-normalized", "warmup", "scaled-residual"),
    "gpt2": ("default", "sigprop", "sigprop-normalized", "warmup"),
}
GRADIENTS = {"sigprop": "raw", "sigprop-normalized": "normalized"}  # critical_init's target
TITLES = {
    "pre-ln": "Pre-LN, nn.TransformerEncoderLayer (PyTorch default init)",
    "gpt2": "Hugging Face GPT2LMHeadModel (HF init)",
}
COLORS = {"default": "tab:blue", "sigprop": "tab:green", "sigprop-normalized": "tab:purple",
          "warmup": "tab:orange", "scaled-residual": "tab:brown"}
Log = Callable[[str], None]


# ---------------------------------------------------------------------------- the models

def vocabulary() -> int:
    """The character vocabulary of the task (84 symbols for Shakespeare)."""
    from sigprop.train.tasks import CharLM

    return CharLM().corpus.vocab_size


def build(model: str, seed: int, depth: int = DEPTH) -> nn.Module:
    """Seed ``seed``'s model at its framework's default initialization (float32)."""
    from sigprop.experiment.rescue.models import encoder_lm, hf_lm

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if model == "pre-ln":
            return encoder_lm(depth, WIDTH, HEADS, vocabulary(), norm_first=True)
        if model == "gpt2":
            return hf_lm("gpt2", depth, WIDTH, HEADS, vocabulary())
    raise ValueError(f"unknown model {model!r}")


def factory(model: str, depth: int) -> Callable[[int], nn.Module]:
    """``factory(seed)`` for ``critical_init``/``diagnose`` (which seed torch first)."""
    return lambda seed: build(model, seed, depth)


def prepare(model: nn.Module, arm: str, init_path: str | None) -> nn.Module:
    """The arm's change to a freshly built model, in place (``warmup`` changes the training,
    not the model)."""
    import sigprop

    if arm in GRADIENTS:
        sigprop.apply_init(model, sigprop.load_init(init_path))
    elif arm == "scaled-residual":
        scale_residual_outputs(model)
    elif arm not in ("default", "warmup"):
        raise ValueError(f"unknown arm {arm!r}")
    return model


def scale_residual_outputs(model: nn.Module) -> nn.Module:
    """GPT-2's depth-scaled residual init on a stack of ``nn.TransformerEncoderLayer``: the
    weights of the maps that write into the residual stream (``self_attn.out_proj``,
    ``linear2``) × 1/sqrt(2L), L blocks (2L residual branches)."""
    blocks = [b for b in model.blocks if isinstance(b, nn.TransformerEncoderLayer)]
    if not blocks or len(blocks) != len(model.blocks):
        raise ValueError("scaled-residual needs a stack of nn.TransformerEncoderLayer")
    factor = (2 * len(blocks)) ** -0.5
    with torch.no_grad():
        for block in blocks:
            block.self_attn.out_proj.weight.mul_(factor)
            block.linear2.weight.mul_(factor)
    return model


# ----------------------------------------------------------------- initializations, exponents

def init_path(out: Path, model: str, depth: int, arm: str) -> Path:
    return out / f"init_{model}_L{depth}_{GRADIENTS[arm]}.json"


def critical_inits(out: Path, models: list[str], depth: int, log: Log,
                   search: bool = True) -> dict[tuple[str, str], Path]:
    """The path of each model's critical init per sigprop arm, searched once and stored (with
    ``search`` False only the stored ones)."""
    import sigprop

    paths = {}
    for model in models:
        for arm, gradient in GRADIENTS.items():
            path = init_path(out, model, depth, arm)
            if not path.exists():
                if not search:
                    continue
                log(f"{model}: critical_init ({gradient} gradient, seeds 0-{MEASURE_SEEDS - 1})")
                init = sigprop.critical_init(factory(model, depth), vocab_size=vocabulary(),
                                             seeds=MEASURE_SEEDS, gradient=gradient)
                init.write(path)
                log(f"  {init.verdict()} ({init.seconds:.0f} s)")
            paths[model, arm] = path
    return paths


def arm_exponents(out: Path, models: list[str], depth: int, paths: dict, log: Log,
                  measure: bool = True) -> dict[str, dict]:
    """Every arm's totals at initialization by ``sigprop.diagnose`` (float64, seeds 0-3),
    stored in exponents_L<depth>.json and measured only where missing."""
    import sigprop

    path = out / f"exponents_L{depth}.json"
    stored = json.loads(path.read_text()) if path.exists() else {}
    for model in models:
        for arm in ARMS[model]:
            name = f"{model}/{arm}"
            if arm == "warmup" or not measure or (arm in GRADIENTS and (model, arm) not in paths):
                continue
            source = str(paths[model, arm]) if arm in GRADIENTS else None
            scales = init_scales(arm, source, depth)
            if name in stored and stored[name].get("scales") == scales:
                continue
            log(f"{name}: diagnose")
            diagnosis = sigprop.diagnose(factory(model, depth), vocab_size=vocabulary(),
                                         seeds=MEASURE_SEEDS,
                                         prepare=lambda m, a=arm, s=source: prepare(m, a, s))
            stored[name] = {key: _estimate(getattr(diagnosis, key))
                            for key in ("log_gap_L", "log_jac_L", "log_jac_norm_L")}
            stored[name]["scales"] = scales
            path.write_text(json.dumps(stored, indent=1))
    for model in models:  # the warm-up arm starts from the default initialization
        if f"{model}/default" in stored:
            stored[f"{model}/warmup"] = stored[f"{model}/default"]
    for name, e in stored.items():
        log(f"{name:30s} log_gap_L {_pm(e['log_gap_L'])}  log_jac_L {_pm(e['log_jac_L'])}  "
            f"log_jac_norm_L {_pm(e['log_jac_norm_L'])}")
    return stored


def unchanged_arms(paths: dict) -> set[tuple[str, str]]:
    """The sigprop arms whose critical init changes nothing (``critical_init`` found the
    default already critical: every knob at its neutral value). Their models are the
    default's, so their trainings would repeat the default's exactly: they are not run, and
    the default's runs stand for them (said in the table)."""
    import sigprop

    same = set()
    for (model, arm), path in paths.items():
        scales = sigprop.load_init(path).scales
        if all(abs(v - sigprop.KNOBS[k].neutral) < 1e-12 for k, v in scales.items()):
            same.add((model, arm))
    return same


def with_unchanged(runs: dict[str, dict], same: set[tuple[str, str]]) -> dict[str, dict]:
    """``runs`` plus, for every arm of ``same``, a copy of the default's runs under its name."""
    extra = {}
    for r in runs.values():
        for model, arm in same:
            if r["model"] == model and r["arm"] == "default":
                copy = {**r, "arm": arm, "same_as_default": True}
                extra[_key(copy)] = copy
    return {**runs, **extra}


def _estimate(estimate) -> dict:
    return {"mean": float(estimate.mean), "stderr": float(estimate.stderr)}


# ------------------------------------------------------------------------------ trainings

def worker_start() -> None:
    torch.set_num_threads(1)


def train_one(task: dict) -> dict:
    """One training (runs in a worker process): seed ``seed``'s model, the arm's change, Adam
    at ``lr`` for the settings' steps."""
    torch.set_num_threads(1)
    from sigprop.train.module import train_module
    from sigprop.train.tasks import CharLM

    settings = task["settings"]
    model = prepare(build(task["model"], task["seed"], settings["depth"]), task["arm"],
                    task["init_path"])
    cpu = time.process_time()
    result = train_module(model, task=CharLM(settings["context"]), steps=settings["steps"],
                          lr=task["lr"], batch=settings["batch"], seed=settings["data_seed"],
                          warmup=task["warmup"], eval_windows=settings["eval_windows"])
    return {**{k: task[k] for k in ("model", "arm", "lr", "seed", "settings", "warmup")},
            "init_scales": init_scales(task["arm"], task["init_path"], settings["depth"]),
            **result, "cpu_seconds": time.process_time() - cpu}


def init_scales(arm: str, init_path: str | None, depth: int) -> dict[str, float]:
    """What the arm changed in the initialization, for the record."""
    import sigprop

    if arm in GRADIENTS:
        return dict(sigprop.load_init(init_path).scales)
    if arm == "scaled-residual":
        return {"out_proj, linear2": (2 * depth) ** -0.5}
    return {}


def warmup_steps(arm: str, steps: int) -> int:
    return max(1, round(WARMUP_SHARE * steps)) if arm == "warmup" else 0


def current_runs(out: Path, settings: dict, depth: int, paths: dict, log: Log | None = None
                 ) -> dict[str, dict]:
    """The stored runs with these settings, by key; a sigprop arm's runs only where they
    were trained with the stored critical init (a re-searched init starts its ladder anew)."""
    scales = {key: init_scales(key[1], str(path), depth) for key, path in paths.items()}
    runs, stale = {}, 0
    for r in read_runs(out / "runs.jsonl"):
        if r["settings"] != settings:
            continue
        if r["arm"] in GRADIENTS and r.get("init_scales") != scales.get((r["model"], r["arm"])):
            stale += 1
            continue
        runs[_key(r)] = r
    if stale and log is not None:
        log(f"{stale} stored runs of sigprop arms were trained with another init: ignored")
    return runs


def run_key(model: str, arm: str, lr: float, seed: int, settings: dict) -> str:
    return json.dumps([model, arm, lr, seed, settings], sort_keys=True)


def _key(run: dict) -> str:
    return run_key(run["model"], run["arm"], run["lr"], run["seed"], run["settings"])


def outcome(run: dict, threshold: float) -> str:
    """"trained", "NaN" (a non-finite loss or gradient), "plateau" (never below ``threshold``)
    or "rose" (below it at some point, above it at the end): the module docstring's rule."""
    if run["status"] != "complete":
        return "NaN"
    if run["train_loss"] < threshold:
        return "trained"
    losses = np.asarray(run["losses"], dtype=float)
    window = max(1, round(TAIL_SHARE * losses.size))
    running = np.convolve(losses, np.ones(window) / window, mode="valid")
    return "rose" if np.any(running < threshold) else "plateau"


def climb(model: str, arm: str, runs: dict[str, dict], seeds: int, settings: dict,
          threshold: float, grid: tuple[float, ...]) -> tuple[str, float | None, list[int]]:
    """Where an arm's climb of the grid stands, from the stored runs: ("pending", lr, seeds
    still to train at lr), ("stopped", lr where every seed failed, []) or ("top", None, [])."""
    for lr in grid:
        rows = {s: runs.get(run_key(model, arm, lr, s, settings)) for s in range(seeds)}
        missing = [s for s, r in rows.items() if r is None]
        if missing:
            return "pending", lr, missing
        if all(outcome(r, threshold) != "trained" for r in rows.values()):
            return "stopped", lr, []
    return "top", None, []


def run_trainings(out: Path, models: list[str], settings: dict, seeds: int, workers: int,
                  threshold: float, grid: tuple[float, ...], paths: dict,
                  same: set[tuple[str, str]], log: Log) -> None:
    """Climb every (model, arm) ladder at once (but the arms of ``same``, whose models are the
    default's): the pending trainings, lowest rung first, ``workers`` at a time; each finished
    training is stored before the next is chosen."""
    runs = current_runs(out, settings, settings["depth"], paths, log)
    ladders = [(m, a) for m in models for a in ARMS[m] if (m, a) not in same]
    for model, arm in sorted(same):
        log(f"{model}/{arm}: critical_init left the default unchanged; its runs are the "
            "default's (not repeated)")
    bound = len(ladders) * len(grid) * seeds
    log(f"{len(ladders)} ladders × ≤ {len(grid)} learning rates × {seeds} seeds: at most "
        f"{bound} trainings of {settings['steps']} steps, {len(runs)} stored runs")
    results: queue.Queue = queue.Queue()
    in_flight: dict[str, dict] = {}
    context = multiprocessing.get_context("spawn")
    with (out / "runs.jsonl").open("a") as runs_file, \
            context.Pool(workers, initializer=worker_start) as pool:
        while True:
            wanted = []
            for order, (model, arm) in enumerate(ladders):
                state, lr, missing = climb(model, arm, runs, seeds, settings, threshold, grid)
                for seed in missing if state == "pending" else []:
                    key = run_key(model, arm, lr, seed, settings)
                    if key not in in_flight:
                        wanted.append((grid.index(lr), order, seed, {
                            "model": model, "arm": arm, "lr": lr, "seed": seed,
                            "settings": settings, "warmup": warmup_steps(arm, settings["steps"]),
                            "init_path": str(paths[model, arm]) if arm in GRADIENTS else None}))
            wanted.sort(key=lambda w: w[:3])
            for *_, task in wanted[:max(0, workers - len(in_flight))]:
                in_flight[_key(task)] = task
                pool.apply_async(train_one, (task,), callback=results.put,
                                 error_callback=lambda e, t=task: results.put((t, e)))
            if not in_flight:
                break
            result = results.get()
            if isinstance(result, tuple):
                task, error = result
                raise RuntimeError(f"training {task['model']}/{task['arm']} lr {task['lr']:g} "
                                   f"seed {task['seed']} failed") from error
            runs_file.write(json.dumps(result) + "\n")
            runs_file.flush()
            os.fsync(runs_file.fileno())
            key = _key(result)
            runs[key] = result
            in_flight.pop(key)
            log(f"done {result['model']}/{result['arm']} lr {result['lr']:g} seed "
                f"{result['seed']}: {outcome(result, threshold)}, train {result['train_loss']:.3f}"
                f", test {result['test_loss']:.3f}, {result['steps_done']} steps "
                f"({result['cpu_seconds']:.0f} CPU s)")


# ---------------------------------------------------------------------- table and figure

def max_stable(model: str, arm: str, runs: dict[str, dict], seeds: int, settings: dict,
               threshold: float, grid: tuple[float, ...]) -> tuple[float | None, str]:
    """(the largest grid lr at which every seed trained, or None; its qualifier: "" exact,
    "<" none trained, "≥" the top of the grid trained, "?" the climb is unfinished, "gap <lr>"
    a lower rung failed, every rung trained up to <lr> ("-" none))."""
    state, _, _ = climb(model, arm, runs, seeds, settings, threshold, grid)
    trained = []
    for lr in grid:
        rows = [runs.get(run_key(model, arm, lr, s, settings)) for s in range(seeds)]
        if any(r is None for r in rows):
            break
        trained.append(all(outcome(r, threshold) == "trained" for r in rows))
    best = max((lr for lr, ok in zip(grid, trained) if ok), default=None)
    if state == "pending":
        return best, "?"
    if best is None:
        return None, "<"
    if state == "top" and trained[-1]:
        return best, "≥"
    below = trained[:grid.index(best) + 1]
    if all(below):
        return best, ""
    contiguous = grid[below.index(False) - 1] if below.index(False) else None
    return best, f"gap {contiguous:g}" if contiguous else "gap -"


def _lr_text(lr: float | None, mark: str, grid: tuple[float, ...]) -> str:
    if lr is None:
        return f"< {grid[0]:g}" if mark == "<" else "none yet"
    if mark.startswith("gap"):
        upto = mark[4:]
        return f"{lr:g} (a lower rung failed; " + (
            f"every rung stable up to {upto})" if upto != "-" else f"{grid[0]:g} failed)")
    return {"≥": f"≥ {lr:g}", "?": f"{lr:g} (climb unfinished)"}.get(mark, f"{lr:g}")


def table(runs: dict[str, dict], exponents: dict, models: list[str], seeds: int, settings: dict,
          threshold: float, chance: float, grid: tuple[float, ...],
          same: set[tuple[str, str]]) -> str:
    lines = [
        (f"Stable: status complete (no NaN/inf) and mean training loss over the last 10 % of "
         f"{settings['steps']} steps < chance − {MARGIN} = {threshold:.3f} nats/char (chance = "
         f"unigram entropy {chance:.3f}); an lr is stable when all {seeds} seed(s) are. Depth "
         f"{settings['depth']}, d = {settings['width']}, batch {settings['batch']} × context "
         f"{settings['context']}, Adam, data order seed {settings['data_seed']}."), "",
        ("| model | arm | L·λ_a (log_gap_L) | L·λ_g (log_jac_L) | log_jac_norm_L "
         "| max stable lr | × default |"),
        "|---|---|---|---|---|---|---|",
    ]
    verdicts = []
    for model in models:
        base, base_mark = max_stable(model, "default", runs, seeds, settings, threshold, grid)
        for arm in ARMS[model]:
            lr, mark = max_stable(model, arm, runs, seeds, settings, threshold, grid)
            e = exponents.get(f"{model}/{arm}")
            cells = ([_pm(e[k]) for k in ("log_gap_L", "log_jac_L", "log_jac_norm_L")]
                     if e else ["n/a"] * 3)
            ratio = _ratio(lr, mark, base, base_mark) if arm != "default" else "1"
            name = f"{arm} (= default: init unchanged)" if (model, arm) in same else arm
            lines.append(f"| {model} | {name} | {' | '.join(cells)} "
                         f"| {_lr_text(lr, mark, grid)} | {ratio} |")
            if arm in GRADIENTS:
                verdicts.append(f"* {model}, {arm}: max stable lr {_lr_text(lr, mark, grid)} vs "
                                f"default {_lr_text(base, base_mark, grid)}: ratio "
                                f"{_ratio(lr, mark, base, base_mark)} (target ≥ 2×: "
                                f"{_target(lr, mark, base, base_mark)})"
                                + (": critical_init found the default already critical and "
                                   "changed nothing" if (model, arm) in same else ""))
    lines += ["", "Target (sigprop's init raises the max stable lr ≥ 2×):", "", *verdicts, "",
              ("Per learning rate: trained seeds / runs, failures (NaN: non-finite loss or "
               "gradient; plateau: never below the threshold; rose: below it, then above at "
               "the end), mean ± s.e. final training loss and test loss over the complete "
               "runs:"), "",
              "| model | arm | lr | trained | failures | final train loss | test loss |",
              "|---|---|---|---|---|---|---|"]
    for model in models:
        for arm in ARMS[model]:
            for lr in grid:
                rows = [r for s in range(seeds)
                        if (r := runs.get(run_key(model, arm, lr, s, settings))) is not None]
                if not rows:
                    continue
                kinds = [outcome(r, threshold) for r in rows]
                failures = ", ".join(f"{kinds.count(k)} {k}" for k in ("NaN", "plateau", "rose")
                                     if kinds.count(k)) or "-"
                complete = [r for r in rows if r["status"] == "complete"]
                lines.append(
                    f"| {model} | {arm} | {lr:g} | {kinds.count('trained')}/{len(rows)} "
                    f"| {failures} | {_mean_se([r['train_loss'] for r in complete])} "
                    f"| {_mean_se([r['test_loss'] for r in complete])} |")
    return "\n".join(lines)


def _ratio(lr, mark, base, base_mark) -> str:
    if "?" in (mark, base_mark):
        return "n/a (unfinished)"
    if lr is None:
        return "< 1" if base is not None else "n/a (neither trains)"
    if base is None:
        return "> 1 (default never stable)"
    ratio = lr / base
    prefix = "≥ " if mark == "≥" and base_mark != "≥" else ""
    prefix = "≤ " if base_mark == "≥" and mark != "≥" else prefix
    return f"{prefix}{ratio:g}" + (" (both at the top)" if mark == base_mark == "≥" else "")


def _target(lr, mark, base, base_mark) -> str:
    if "?" in (mark, base_mark):
        return "unfinished"
    if lr is None:
        return "not met" if base is not None else "undecided (neither is stable at the bottom)"
    if base is None:
        return "met (the default is never stable)"
    if base_mark == "≥":
        return "undecided (the default is stable at the top of the grid)"
    return "met" if lr / base >= 2 else "not met"


def figure(runs: dict[str, dict], exponents: dict, models: list[str], seeds: int,
           settings: dict, threshold: float, chance: float, grid: tuple[float, ...],
           image: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    top = 4.2  # losses above are drawn at the top; NaN runs a row above it
    fig, axes = plt.subplots(1, len(models), figsize=(6.4 * len(models), 6.2), sharey=True,
                             squeeze=False)
    for ax, model in zip(axes[0], models):
        arms = ARMS[model]
        for i, arm in enumerate(arms):
            color, shift = COLORS[arm], 2 ** (0.12 * (i - (len(arms) - 1) / 2))
            means, xs = [], []
            for lr in grid:
                rows = [r for s in range(seeds)
                        if (r := runs.get(run_key(model, arm, lr, s, settings))) is not None]
                for r in rows:
                    kind = outcome(r, threshold)
                    y = top + 0.15 if kind == "NaN" else min(r["train_loss"], top)
                    style = ({"marker": "x", "c": color, "linewidths": 1.5} if kind == "NaN" else
                             {"marker": "o" if kind == "trained" else "^", "edgecolors": color,
                              "facecolors": color if kind == "trained" else "none"})
                    ax.scatter(lr * shift, y, s=22, zorder=3, **style)
                complete = [min(r["train_loss"], top) for r in rows if r["status"] == "complete"]
                if complete:
                    xs.append(lr * shift)
                    means.append(np.mean(complete))
            lr, mark = max_stable(model, arm, runs, seeds, settings, threshold, grid)
            e = exponents.get(f"{model}/{arm}")
            same = any(r.get("same_as_default") for r in runs.values()
                       if r["model"] == model and r["arm"] == arm)
            label = (f"{arm}{' (= default)' if same else ''}: max stable "
                     f"{_lr_text(lr, mark, grid)}" +
                     (f" (L·λ_a {e['log_gap_L']['mean']:+.1f}, L·λ_g "
                      f"{e['log_jac_L']['mean']:+.1f})" if e else ""))
            ax.plot(xs, means, color=color, lw=1.2, alpha=0.8, label=label)
        ax.axhline(threshold, color="k", ls="--", lw=0.8)
        ax.axhline(chance, color="grey", ls=":", lw=0.8)
        ax.text(grid[0] / 1.35, threshold - 0.02, f"stable below chance − {MARGIN}",
                fontsize=7, va="top")
        ax.text(grid[0] / 1.35, chance + 0.02, "unigram entropy (chance)", fontsize=7,
                color="grey")
        ax.set_xscale("log", base=2)
        ax.set_xlim(grid[0] / 1.4, grid[-1] * 1.4)
        ax.set_xticks(grid, [f"{lr:g}" for lr in grid], rotation=45, fontsize=7)
        ax.set_xlabel("learning rate (Adam)")
        ax.set_title(f"{TITLES[model]}, L = {settings['depth']}", fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=1,
                  frameon=False)
    axes[0][0].set_ylabel(f"final training loss (mean of the last 10 % of {settings['steps']} "
                          "steps, nats/char)", fontsize=8)
    low = min([r["train_loss"] for r in runs.values() if r["status"] == "complete"],
              default=threshold)
    axes[0][0].set_ylim(min(low, threshold) - 0.1, top + 0.3)
    ticks = [t for t in np.arange(2.0, top + 1e-9, 0.25) if t >= min(low, threshold) - 0.1]
    axes[0][0].set_yticks([*ticks, top + 0.15], [f"{t:g}" for t in ticks] + ["NaN"])
    fig.suptitle(f"Shakespeare character LM, {settings['steps']} Adam steps, batch "
                 f"{settings['batch']}, same data order; each marker one seed (o trained, "
                 f"△ failed; losses > {top:g} drawn at {top:g}, × NaN), line: mean of the "
                 "complete runs",
                 fontsize=9)
    fig.tight_layout()
    image.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(image, dpi=120)
    plt.close(fig)


# ---------------------------------------------------------------------------------- main

def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("results/max_learning_rate"))
    parser.add_argument("--steps", type=int, default=120)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2, help="trainings in parallel")
    parser.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS))
    parser.add_argument("--image", type=Path, default=Path("docs/images/max_learning_rate.png"))
    parser.add_argument("--plot-only", action="store_true",
                        help="tables and figure from what is stored; nothing is computed")
    parser.add_argument("--depth", type=int, default=DEPTH, help=argparse.SUPPRESS)
    parser.add_argument("--max-lr", type=float, default=GRID[-1], help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(1)
    log_path = args.out / "log.txt"

    def log(message: str) -> None:
        line = f"{time.strftime('%H:%M:%S')} {message}"
        print(line, flush=True)
        with log_path.open("a") as handle:
            handle.write(line + "\n")

    from sigprop.train.tasks import CharLM

    chance = CharLM().chance
    threshold = chance - MARGIN
    grid = tuple(lr for lr in GRID if lr <= args.max_lr * (1 + 1e-9))
    settings = {"steps": args.steps, "batch": 32, "context": 64, "data_seed": 0,
                "eval_windows": 64, "depth": args.depth, "width": WIDTH, "heads": HEADS,
                "warmup_share": WARMUP_SHARE}
    started = time.perf_counter()
    compute = not args.plot_only
    paths = critical_inits(args.out, args.models, args.depth, log, search=compute)
    exponents = arm_exponents(args.out, args.models, args.depth, paths, log, measure=compute)
    same = unchanged_arms(paths)
    if compute:
        run_trainings(args.out, args.models, settings, args.seeds, args.workers, threshold,
                      grid, paths, same, log)
    runs = current_runs(args.out, settings, args.depth, paths)
    shown = with_unchanged(runs, same)
    text = table(shown, exponents, args.models, args.seeds, settings, threshold, chance, grid,
                 same)
    cpu = sum(r.get("cpu_seconds", 0.0) for r in runs.values())
    steps = sum(r["steps_done"] for r in runs.values())
    footer = (f"\n{len(runs)} trainings, {cpu / 3600:.2f} CPU-hours of training "
              f"({cpu / max(steps, 1):.2f} CPU s per step, evaluation included); this "
              f"invocation: {(time.perf_counter() - started) / 60:.1f} min wall")
    (args.out / "summary.md").write_text(text + "\n" + footer + "\n")
    print("\n" + text + footer)
    if runs:
        figure(shown, exponents, args.models, args.seeds, settings, threshold, chance, grid,
               args.image)
        log(f"figure: {args.image}")


def _pm(estimate: dict) -> str:
    mean, stderr = estimate["mean"], estimate["stderr"]
    return f"{mean:+.2f}" + (f" ± {stderr:.2f}" if math.isfinite(stderr) else "")


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
