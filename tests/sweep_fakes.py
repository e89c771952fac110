"""Stand-ins for the batched trainer, importable by sweep worker processes (for example
"sweep_fakes:slow_evaluate"). Losses are deterministic functions of the configuration.

If the environment variable SWEEP_FAKES_LOG names a directory, every evaluation appends the
configuration's key to ``<pid>.log`` there, so a test can count how often each configuration
was evaluated, and by which process.
"""

from __future__ import annotations

import math
import os
import time
from pathlib import Path

from sigprop.sweep import SweepSpec, config_key

BATCH_SECONDS = 0.25


def spec(n_alpha: int = 4) -> SweepSpec:
    """n_alpha × 2 × 2 configurations; those with sigma_w = 3 diverge."""
    alphas = [round(0.1 + 0.8 * i / max(n_alpha - 1, 1), 6) for i in range(n_alpha)]
    return SweepSpec(
        grid={"alpha": alphas, "sigma_w": [1.0, 3.0], "seed": [0, 1]},
        fixed={"steps": 100, "activation": "tanh"},
    )


def fake_losses(config: dict) -> dict:
    """Losses smooth in the settings, except that sigma_w > 2 diverges. ``lambda_a`` stands
    for the extra fields a real trainer stores."""
    train = (config["alpha"] - 0.5) ** 2 + 0.1 * config["sigma_w"] + 0.01 * config["seed"]
    extra = {"lambda_a": config["sigma_w"] - 1.0, "steps_done": config["steps"]}
    if config["sigma_w"] > 2:
        return {"status": "diverged", "train_loss": math.inf, "test_loss": math.nan,
                "last_finite_loss": 10.0 + train, **extra}
    return {"status": "complete", "train_loss": train, "test_loss": train + 0.05,
            "last_finite_loss": train, **extra}


def evaluate(configs: list[dict], seconds: float = BATCH_SECONDS) -> list[dict]:
    log = os.environ.get("SWEEP_FAKES_LOG")
    if log:
        grid_keys = ("alpha", "sigma_w", "seed")
        with open(Path(log) / f"{os.getpid()}.log", "a") as file:
            for config in configs:
                file.write(config_key({k: config[k] for k in grid_keys}) + "\n")
    time.sleep(seconds)
    return [fake_losses(config) for config in configs]


def slow_evaluate():
    return evaluate


def instant_evaluate():
    return lambda configs: evaluate(configs, seconds=0.0)


def hanging_evaluate(n_batches: int = 3):
    """Evaluates ``n_batches`` batches, then hangs on the next one until the process is killed:
    a worker caught in the middle of a batch, deterministically."""
    done = []

    def evaluate_then_hang(configs: list[dict]) -> list[dict]:
        if len(done) == n_batches:
            time.sleep(3600)
        done.append(len(configs))
        return evaluate(configs)

    return evaluate_then_hang


def broken_evaluate():
    """Raises on every batch holding a configuration with alpha > 0.5."""

    def evaluate_or_raise(configs: list[dict]) -> list[dict]:
        if any(config["alpha"] > 0.5 for config in configs):
            raise RuntimeError("trainer exploded")
        return evaluate(configs, seconds=0.0)

    return evaluate_or_raise
