"""The rescue suite end to end: find, measure, train, report (``sigprop.rescue``).

1. For every network: its critical initializations and every arm's exponents
   (``prepare``), stored under ``out``/inits and ``out``/exponents.
2. Every missing run of (network, arm, seed) trained by ``workers`` processes (one torch thread
   each), each run appended to ``out``/runs.jsonl (flushed and fsync'ed) as it finishes: a
   killed suite loses only the runs in progress, and a rerun trains only what is missing.
3. The report (``report``): ``out``/report.md with the tables, ``out``/rescue.png.

``quick``: one seed, and only the default and the sigprop arm of every network.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

from sigprop.experiment.rescue import prepare
from sigprop.experiment.rescue.arms import arms_of
from sigprop.experiment.rescue.networks import NETWORKS
from sigprop.experiment.rescue.report import RescueReport, summarize
from sigprop.runtime.progress import progress_bar

QUICK_ARMS = ("default", "sigprop")


@dataclass(frozen=True)
class Task:
    """One training to run: the network, the arm, the model seed and the initializations."""

    network: str
    arm: str
    seed: int
    inits: dict

    @property
    def key(self) -> tuple[str, str, int]:
        return self.network, self.arm, self.seed


def rescue(
    out: str | Path = "results/rescue",
    *,
    networks: Sequence[str] | None = None,
    arms: Sequence[str] | None = None,
    seeds: int = 3,
    quick: bool = False,
    workers: int = 2,
    plot: str | Path | None = None,
    show_progress: bool = False,
    log: Callable[[str], None] = print,
) -> RescueReport:
    """Train the deep networks whose defaults do not train (``NETWORKS``; or those named) with
    every arm (or those named) and ``seeds`` seeds, report the table and the figure
    (``out``/report.md, ``out``/rescue.png, or ``plot``), and return the ``RescueReport``.
    ``quick``: one seed, the default and the sigprop arm only. Rerunning adds only the missing
    runs; a run already stored is never trained again."""
    names = list(NETWORKS) if networks is None else list(networks)
    unknown = [n for n in names if n not in NETWORKS]
    if unknown:
        raise ValueError(f"networks must be among {', '.join(NETWORKS)}; got {unknown}")
    if isinstance(seeds, bool) or not isinstance(seeds, int) or not 1 <= seeds <= 10:
        raise ValueError(f"seeds must be an integer in [1, 10]; got {seeds!r}")
    if isinstance(workers, bool) or not isinstance(workers, int) or not 1 <= workers <= 64:
        raise ValueError(f"workers must be an integer in [1, 64]; got {workers!r}")
    known = {a.name for n in names for a in arms_of(NETWORKS[n])}
    if arms is not None and not set(arms) <= known:
        raise ValueError(f"arms must be among {', '.join(sorted(known))}; got "
                         f"{sorted(set(arms) - known)}")
    chosen = QUICK_ARMS if quick else arms
    seed_list = range(1 if quick else seeds)
    out = Path(out)
    started = time.perf_counter()
    tasks, exponents = [], {}
    for name in names:
        network = NETWORKS[name]
        inits = prepare.critical_inits(network, out / "inits", log, quick=quick)
        network_arms = [a.name for a in arms_of(network)
                        if chosen is None or a.name in chosen]
        exponents[name] = prepare.arm_exponents(network, inits, out / "exponents", log,
                                                network_arms)
        payload = {arm: init.to_json() for arm, init in inits.items()}
        tasks += [Task(name, arm, seed, payload) for arm in network_arms for seed in seed_list]
    runs_path = out / "runs.jsonl"
    done = {(r["network"], r["arm"], r["seed"]) for r in read_runs(runs_path)}
    pending = [t for t in tasks if t.key not in done]
    log(f"{len(tasks) - len(pending)} of {len(tasks)} runs stored; training {len(pending)} with "
        f"{workers} worker{'s' if workers > 1 else ''}")
    if pending:
        _train(pending, runs_path, workers, show_progress, log)
    wanted = {t.key for t in tasks}
    runs = [r for r in read_runs(runs_path) if (r["network"], r["arm"], r["seed"]) in wanted]
    report = summarize(runs, exponents, names)
    report.write(out, plot)
    log(f"rescue suite: {len(runs)} runs in {(time.perf_counter() - started) / 60:.1f} min; "
        f"report {out / 'report.md'}")
    return report


def read_runs(path: Path) -> list[dict]:
    """Every stored run (a line cut by a kill is skipped)."""
    if not path.exists():
        return []
    runs = []
    for line in path.read_text().splitlines():
        try:
            runs.append(json.loads(line))
        except json.JSONDecodeError:
            pass
    return runs


def _train(pending: list[Task], path: Path, workers: int, show_progress: bool,
           log: Callable[[str], None]) -> None:
    """Train ``pending`` with ``workers`` spawned processes (one: in this process, with the
    library's thread policy), storing each run as it finishes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if workers == 1:
        pool, runs = None, (_train_in_process(task) for task in pending)
    else:
        pool = multiprocessing.get_context("spawn").Pool(workers, initializer=_one_thread)
        runs = pool.imap_unordered(_train_one, pending)
    try:
        with path.open("a") as store, progress_bar(len(pending), "training",
                                                   show_progress) as step:
            for run in runs:
                store.write(json.dumps(run) + "\n")
                store.flush()
                os.fsync(store.fileno())
                if step is not None:
                    step()
                log(f"{run['network']} / {run['arm']} / seed {run['seed']}: {run['status']}, "
                    f"test loss {run['test_loss']:.3f}, accuracy {run['test_accuracy']:.3f} "
                    f"({run['cpu_seconds']:.0f} CPU s)")
    finally:
        if pool is not None:
            pool.terminate()  # every run is stored by now, or lost with the interruption
            pool.join()


def _one_thread() -> None:
    import torch

    torch.set_num_threads(1)


def _train_one(task: Task) -> dict:
    from sigprop.experiment.rescue.trial import train_arm

    return train_arm(task.network, task.arm, task.seed, task.inits)


def _train_in_process(task: Task) -> dict:
    from sigprop.runtime.threads import torch_threads

    with torch_threads():
        return _train_one(task)
