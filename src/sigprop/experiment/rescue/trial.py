"""One training of the rescue suite: a network, an arm, a seed.

``train_arm`` builds seed s's network for the arm (``arms.prepared``), trains it with
``sigprop.train.train_module`` on the network's task (its steps, learning rate and batch; the
batches of data seed 0, the same for every arm and seed) and returns the run as JSON: the
status, the training loss of every step, the test and validation loss and accuracy, and
``left_plateau_at``, the first step at which the mean training loss of the last ``WINDOW``
steps is ``PLATEAU_GAP`` below the task's chance level (the loss of a prediction that ignores
the input: the unigram entropy of Shakespeare, log 10 for digits, log 8 for a recall), None if
never.
"""

from __future__ import annotations

import math
import time

import numpy as np
import torch

from sigprop.experiment.rescue.arms import prepared, warmup_steps
from sigprop.experiment.rescue.networks import NETWORKS
from sigprop.init.result import load_init
from sigprop.train.module import train_module

WINDOW = 10
PLATEAU_GAP = 0.3  # nats below chance: the network has left the plateau
DATA_SEED = 0
EVAL_WINDOWS = 64


def train_arm(network: str, arm: str, seed: int, inits: dict[str, dict]) -> dict:
    """The run of ``arm`` on ``network`` with model seed ``seed`` (``inits``: the critical
    initializations' JSON by arm name)."""
    started = time.process_time()
    net = NETWORKS[network]
    task = net.task()
    model = prepared(net, arm, seed, {k: load_init(v) for k, v in inits.items()})
    result = train_module(model, task=task, steps=net.steps, lr=net.lr, batch=net.batch,
                          seed=DATA_SEED, warmup=warmup_steps(arm, net.steps),
                          eval_windows=EVAL_WINDOWS)
    finite = [v for v in result["losses"] if math.isfinite(v)]
    return {
        "network": network, "arm": arm, "seed": seed, **result,
        "last_finite_loss": finite[-1] if finite else math.inf,
        "chance": task.chance,
        "test_chance": task.held_out_chance("test", EVAL_WINDOWS),
        "left_plateau_at": left_plateau_at(result["losses"], task.chance),
        "cpu_seconds": time.process_time() - started,
        "threads": torch.get_num_threads(),
    }


def left_plateau_at(losses: list[float], chance: float) -> int | None:
    """The first step (counting from 1) whose trailing ``WINDOW``-step mean training loss is
    below chance − ``PLATEAU_GAP``; None if none is."""
    x = np.asarray(losses, dtype=float)
    if x.size < WINDOW:
        return None
    running = np.convolve(x, np.ones(WINDOW) / WINDOW, mode="valid")
    below = np.flatnonzero(running < chance - PLATEAU_GAP)
    return int(below[0] + WINDOW) if below.size else None
