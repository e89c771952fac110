"""A user's Post-LN stack, rescued in one command: the must-show of the rescue.

    python benchmarks/post_ln_stack.py [--out results/post_ln_stack] [--seeds 3] [--steps 200]
        [--repeats 3]

Run on demand from the repository root (not in CI). Two parts:

1. **Time.** ``sigprop init examples.post_ln_stack:stack --out FILE`` (32 Post-LN
   ``nn.TransformerEncoderLayer(64, 4, 256, dropout=0)`` at PyTorch's default initialization;
   the CLI's defaults: Post-LN blocks tune ``skip``, ``mlp_input`` and ``attn_values``, seeds
   0-3, the raw gradient target) as a whole process, ``--repeats`` times after one warm-up
   (imports and the θ-table cache warm), wall and CPU seconds (the children's
   ``resource.getrusage``) of each, median quoted. The target is ≤ 30 s on 2 cores.
2. **Training.** ``examples.post_ln_stack.language_model()`` (embedding, learned positions,
   the stack with a causal mask, final LayerNorm, linear head) built after
   ``torch.manual_seed(seed)``, at its default and after ``sigprop.apply_init(lm, FILE)``;
   ``sigprop.train.train_module`` on the Shakespeare character LM (Adam 1e-3, no warm-up,
   batch 32 × context 64, ``--steps`` steps, the same batches for every run). Reported per
   arm: the mean over seeds ± s.e. of the mean training loss over the last 20 steps and of the
   test loss, and the step at which each run left the unigram plateau (the first step whose
   trailing 10-step mean loss is 0.3 nats below the unigram entropy; ``left_plateau_at`` of
   the rescue suite), or "never".

Everything is stored under ``--out`` as it finishes (``init.json``, ``timing.json``,
``runs.jsonl``, ``summary.md``); a rerun skips stored runs.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import sigprop  # noqa: E402
from examples.post_ln_stack import language_model  # noqa: E402
from sigprop.experiment.rescue.trial import left_plateau_at  # noqa: E402
from sigprop.train.module import train_module  # noqa: E402
from sigprop.train.tasks import CharLM  # noqa: E402

FACTORY = "examples.post_ln_stack:stack"
TAIL = 20


def time_init(out: Path, repeats: int) -> dict:
    """Run ``sigprop init FACTORY --out out/init.json`` 1 + ``repeats`` times; wall and CPU
    seconds of the counted runs."""
    command = [str(Path(sys.executable).with_name("sigprop")), "init", FACTORY,
               "--out", str(out / "init.json")]
    walls, cpus = [], []
    for run in range(1 + repeats):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.perf_counter()
        subprocess.run(command, cwd=REPO, check=True, capture_output=True)
        wall = time.perf_counter() - started
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        print(f"init run {run} ({'warm-up' if run == 0 else 'counted'}): {wall:.1f} s wall, "
              f"{cpu:.1f} s CPU", flush=True)
        if run:
            walls.append(wall)
            cpus.append(cpu)
    return {"command": " ".join(["sigprop", *command[1:]]), "wall_seconds": walls,
            "cpu_seconds": cpus, "median_wall": float(np.median(walls)),
            "median_cpu": float(np.median(cpus))}


def train(arm: str, seed: int, steps: int, init: Path) -> dict:
    """One training of the language model at ``arm`` ("default" or "sigprop")."""
    torch.manual_seed(seed)
    model = language_model()
    if arm == "sigprop":
        sigprop.apply_init(model, init)
    task = CharLM(64)
    result = train_module(model, task=task, steps=steps, lr=1e-3, batch=32, seed=0)
    losses = result["losses"]
    return {"arm": arm, "seed": seed, "steps": steps, "status": result["status"],
            "tail_loss": float(np.mean(losses[-TAIL:])), "test_loss": result["test_loss"],
            "left_plateau_at": left_plateau_at(losses, task.chance), "chance": task.chance,
            "losses": losses, "seconds": result["seconds"]}


def summary(timing: dict, runs: list[dict]) -> str:
    """The markdown table of the timing and of the trainings."""
    lines = [f"`{timing['command']}`: median {timing['median_wall']:.1f} s wall, "
             f"{timing['median_cpu']:.1f} s CPU over {len(timing['wall_seconds'])} runs "
             f"(wall {', '.join(f'{w:.1f}' for w in timing['wall_seconds'])} s).", "",
             f"| arm | seeds | train loss, last {TAIL} steps | test loss | left the plateau at |",
             "|---|---|---|---|---|"]
    for arm in ("default", "sigprop"):
        mine = [r for r in runs if r["arm"] == arm]
        if not mine:
            continue
        cells = []
        for key in ("tail_loss", "test_loss"):
            x = np.array([r[key] for r in mine], dtype=float)
            se = x.std(ddof=1) / np.sqrt(x.size) if x.size > 1 else float("nan")
            cells.append(f"{x.mean():.3f} ± {se:.3f}")
        left = ", ".join(str(r["left_plateau_at"] or "never") for r in mine)
        lines.append(f"| {arm} | {len(mine)} | {cells[0]} | {cells[1]} | {left} |")
    lines.append(f"\nUnigram entropy (the plateau): {runs[0]['chance']:.3f} nats/char."
                 if runs else "")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "results" / "post_ln_stack")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(1)

    timing_file = args.out / "timing.json"
    if timing_file.exists():
        timing = json.loads(timing_file.read_text())
    else:
        timing = time_init(args.out, args.repeats)
        timing_file.write_text(json.dumps(timing, indent=1))
    print(sigprop.load_init(args.out / "init.json"))

    store = args.out / "runs.jsonl"
    runs = [json.loads(line) for line in store.read_text().splitlines()] if store.exists() else []
    done = {(r["arm"], r["seed"], r["steps"]) for r in runs}
    for seed in range(args.seeds):
        for arm in ("default", "sigprop"):
            if (arm, seed, args.steps) in done:
                continue
            run = train(arm, seed, args.steps, args.out / "init.json")
            print(f"{arm} seed {seed}: last-{TAIL} loss {run['tail_loss']:.3f}, test "
                  f"{run['test_loss']:.3f}, left the plateau at {run['left_plateau_at']}",
                  flush=True)
            with store.open("a") as handle:
                handle.write(json.dumps(run) + "\n")
            runs.append(run)
    text = summary(timing, [r for r in runs if r["steps"] == args.steps])
    (args.out / "summary.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
