"""Train many causal LMs together for a fixed budget of Adam steps (docs/theory.md §8).

The configs are split into groups of ``members_per_pass``; each group is one stacked model
trained through ``vmap`` (``stacked.py``). Every step, each group takes one Adam step on the same
batch: every config sees the same data in the same order (common random numbers), so configs
differ only by their initialization. Training together changes nothing but the speed: each
config gets exactly the losses it would get alone (``tests/test_train.py``).

Devices. The models, batches and evaluation run on ``settings.device`` ("auto": CUDA when
available); every random draw (initialization, data order) stays on the CPU generators and is
moved there, so a seed gives the same initialization and batches on every device. On the CPU
nothing is moved at all.

Why groups rather than one stack of all S members: the step is bound by its many small
matrix products and by memory traffic. A stack of 4 members keeps each activation tensor
(4 · B · T · d floats = 2 MB at the reproduction's scale) near the cache; stacks of 16 or 32 ran
10–20 % slower per model-step here, and eager stacks of 8+ slower than a plain loop.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from sigprop.data import Batches, CharCorpus, evaluation_windows
from sigprop.runtime.devices import resolve_device
from sigprop.train.model import build_stacked_lm, lm_architecture
from sigprop.train.stacked import StackedRun, template_lm

CURVE_POINTS = 20
TRAIN_LOSS_SHARE = 0.1  # train_loss is the mean over this last share of the steps


@dataclass(frozen=True)
class TrainSettings:
    """What every config of a sweep shares: sizes, data and optimizer (the reproduction's scale:
    d = 64, depth 16, context 64, batch 32, 400 Adam steps).

    The MLP hidden width follows each block's ``ff_ratio``. ``eval_windows``: how many non-overlapping context
    windows of the validation and of the test split are evaluated at the end (None: all).
    ``seed`` sets the data order only; each config's "seed" sets its initialization.
    ``compile``: run the stacked step through ``torch.compile`` (fuses the elementwise work:
    1.3–1.4× faster per step here; costs a one-off compilation of 15–60 s per process and group
    size, so it pays from about a thousand model-steps on; falls back to eager with a warning
    if compilation fails). ``members_per_pass``: configs stacked in one ``vmap`` pass (a group
    count that divides the number of configs compiles once). ``device``: where the models
    train, "auto" (CUDA when available), "cpu", "cuda" or "cuda:N"; stored resolved, as a
    ``torch.device`` (``ValueError`` for an unknown or unavailable one).
    """

    depth: int = 16
    width: int = 64
    context: int = 64
    batch: int = 32
    steps: int = 400
    lr: float = 1e-3
    eval_windows: int | None = 64
    seed: int = 0
    dtype: torch.dtype = torch.float32
    compile: bool = True
    members_per_pass: int = 4
    device: str | torch.device = "auto"

    def __post_init__(self) -> None:
        object.__setattr__(self, "device", resolve_device(self.device))
        for name in ("depth", "width", "context", "batch", "steps", "members_per_pass"):
            _check_positive_int(name, getattr(self, name))
        if self.eval_windows is not None:
            _check_positive_int("eval_windows", self.eval_windows)
        if not (isinstance(self.lr, (int, float)) and math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"lr must be a finite number > 0; got {self.lr!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"seed must be a non-negative integer; got {self.seed!r}")
        if self.dtype not in (torch.float32, torch.float64):
            raise ValueError(f"dtype must be torch.float32 or torch.float64; got {self.dtype}")


def train_together(
    configs: list[dict],
    corpus: CharCorpus,
    settings: TrainSettings,
    on_step: Callable[[int, np.ndarray], None] | None = None,
) -> list[dict]:
    """Train one causal LM per config (``sigprop.train.model``), all together, for
    ``settings.steps`` Adam steps on ``corpus.train``.

    ``configs``: dicts of hyperparameters (``sigprop.train.model.CONFIG_KEYS``) and "seed"; all
    must share the block's structural options (``ValueError`` otherwise: group them first). ``on_step(step,
    losses)`` is called after every step with the configs' training losses (NaN once frozen).
    A diverging config never raises. Returns, per config in order::

        status            "complete" or "diverged"
        train_loss        mean training loss over the last 10 % of the steps (NaN if diverged)
        validation_loss   mean loss per token on the validation windows (NaN if diverged)
        test_loss         the same on the test windows (NaN if diverged)
        last_finite_loss  the last finite training loss (NaN if even the first was not)
        steps_done        Adam updates applied
        loss_curve        [(step, loss)]: the loss at step 0, then the mean training loss over
                          each of ~20 equal stretches of steps, at the stretch's last step
    """
    if not configs:
        return []
    structure = _shared_structure(configs)
    device = settings.device
    sizes = dict(depth=settings.depth, width=settings.width, dtype=settings.dtype)
    template = template_lm(structure, corpus.vocab_size, **sizes, device=device)
    groups = [configs[i : i + settings.members_per_pass]
              for i in range(0, len(configs), settings.members_per_pass)]
    runs = [StackedRun(build_stacked_lm(group, corpus.vocab_size, **sizes).to(device), template,
                       lr=settings.lr, compile=settings.compile) for group in groups]

    history = np.full((settings.steps, len(configs)), np.nan)
    batches = Batches(corpus.train, settings.batch, settings.context, settings.seed)
    steps_run = 0
    for step in range(settings.steps):
        inputs, targets = (t.to(device) for t in batches.next())
        history[step] = np.concatenate([run.step(inputs, targets) for run in runs])
        steps_run = step + 1
        if on_step is not None:
            on_step(step, history[step].copy())
        if not any(bool(run.active.any()) for run in runs):
            break

    held_out = {}
    for split in ("validation", "test"):
        windows = evaluation_windows(corpus.split(split), settings.context, settings.eval_windows)
        windows = tuple(t.to(device) for t in windows)
        held_out[split] = np.concatenate([run.evaluate(*windows, settings.batch) for run in runs])
    complete = np.concatenate([run.active.cpu().numpy() for run in runs])
    steps_done = np.concatenate([run.steps_done for run in runs])
    return [
        _result(history[:steps_run, m], bool(complete[m]), int(steps_done[m]),
                held_out["validation"][m], held_out["test"][m])
        for m in range(len(configs))
    ]


def _result(curve: np.ndarray, complete: bool, steps_done: int, validation: float, test: float) -> dict:
    """The outcome of one config from its per-step training losses (see ``train_together``)."""
    finite = np.flatnonzero(np.isfinite(curve))
    tail = curve[-max(1, round(TRAIN_LOSS_SHARE * len(curve))):]
    nan = float("nan")
    return {
        "status": "complete" if complete else "diverged",
        "train_loss": float(tail.mean()) if complete else nan,
        "validation_loss": float(validation) if complete else nan,
        "test_loss": float(test) if complete else nan,
        "last_finite_loss": float(curve[finite[-1]]) if finite.size else nan,
        "steps_done": steps_done,
        "loss_curve": _loss_curve(curve[: finite[-1] + 1] if finite.size else curve[:0]),
    }


def _loss_curve(curve: np.ndarray) -> list[tuple[int, float]]:
    """The loss at step 0, then the mean over ~CURVE_POINTS equal stretches of the later steps."""
    if curve.size == 0:
        return []
    points = [(0, float(curve[0]))]
    start = 1
    for end in np.unique(np.linspace(1, curve.size, CURVE_POINTS).round().astype(int)):
        if end > start:
            points.append((int(end - 1), float(curve[start:end].mean())))
            start = end
    return points


def _shared_structure(configs: list[dict]) -> tuple:
    structures = {lm_architecture(config).structure for config in configs}
    if len(structures) > 1:
        raise ValueError(f"configs trained together must share their structural options "
                         f"(activation, heads, norm, …); got {len(structures)} different ones: "
                         "group them first")
    return structures.pop()


def _check_positive_int(name: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be an integer >= 1; got {value!r}")
