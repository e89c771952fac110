"""Sweeps: many initializations trained together, each stored as a trial of an Optuna study.

The study lives in a SQLite file (one machine) or a PostgreSQL database (several machines,
``postgresql://…``). Every configuration of a ``SweepSpec`` is enqueued once as a WAITING
trial; workers take WAITING trials in batches, evaluate each batch together and tell the
results. Workers record heartbeats for the trials they hold, so the trials of a worker that died
(even by SIGKILL) are found stale after a grace period and enqueued again: a sweep that is
killed and started again keeps every finished trial and reruns the interrupted ones.

    spec = SweepSpec(grid={"alpha": [0.2, 0.5], "sigma_w": [1.0, 2.0], "seed": [0, 1]},
                     fixed={"depth": 16, "width": 64, "steps": 500})
    run_study(normalize_storage(None, Path("results/sweep.db")), "alpha-sigma_w", spec,
              "mypackage.train:make_evaluate", workers=2, batch_size=8)
    trials_frame(storage, "alpha-sigma_w")   # one row per configuration
"""

from sigprop.sweep.run import load_factory, run_study, sweep_counts
from sigprop.sweep.design import Evaluate, SweepSpec, config_key
from sigprop.sweep.storage import normalize_storage, open_study, trials_frame
from sigprop.sweep.worker import GRACE_PERIOD_S, HEARTBEAT_INTERVAL_S, run_worker

__all__ = [
    "Evaluate",
    "GRACE_PERIOD_S",
    "HEARTBEAT_INTERVAL_S",
    "SweepSpec",
    "config_key",
    "load_factory",
    "normalize_storage",
    "open_study",
    "run_study",
    "run_worker",
    "sweep_counts",
    "trials_frame",
]
