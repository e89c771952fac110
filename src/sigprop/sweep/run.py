"""A sweep on this machine: open the study, start worker processes, show progress, wait."""

from __future__ import annotations

import importlib
import importlib.util
import multiprocessing
import os
import signal
import sys
import time
from collections.abc import Mapping
from typing import Any

import optuna
from optuna.trial import TrialState
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from sigprop.sweep.design import Evaluate, SweepSpec
from sigprop.sweep.faults import StorageError, guarded
from sigprop.sweep.storage import _load, configuration_trials, connect, open_study
from sigprop.sweep.worker import (
    GRACE_PERIOD_S,
    HEARTBEAT_INTERVAL_S,
    check_positive_int,
    check_settings,
    run_worker,
)

PROGRESS_INTERVAL_S = 0.5
SINGLE_THREAD_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
EXIT_STORAGE_FAULT = 3  # a worker stopped by a storage fault (sent to the parent)


@guarded
def run_study(
    storage: str,
    study_name: str,
    spec: SweepSpec,
    evaluate_factory: str,
    workers: int,
    batch_size: int,
    progress: bool = True,
    *,
    factory_kwargs: Mapping[str, Any] | None = None,
    heartbeat_interval: int = HEARTBEAT_INTERVAL_S,
    grace_period: int = GRACE_PERIOD_S,
) -> None:
    """Run the sweep ``spec`` in ``study_name`` with ``workers`` local worker processes.

    Opening the study enqueues what is missing (``open_study``), so running the same command
    again resumes: COMPLETE trials are kept, trials of dead workers are retried once their
    heartbeat is ``grace_period`` s old, failed ones are retried. Each worker is a fresh
    ("spawn") process limited to one torch thread, which imports ``evaluate_factory``
    ("package.module:function", a function returning an ``Evaluate``), calls it with
    ``factory_kwargs`` (picklable; how this machine evaluates, such as its device, as opposed
    to the spec, which is what the study evaluates) and calls ``run_worker``. Workers on other
    machines can join the same study with ``run_worker``.

    With ``progress``, a rich progress bar counts the configurations that have a COMPLETE trial.
    Raises ``StorageError`` (a ValueError) if a worker met a storage fault, RuntimeError if a
    worker process exits with another error.
    """
    _check_factory_name(evaluate_factory)
    check_settings(batch_size, heartbeat_interval, grace_period)
    check_positive_int("workers", workers)
    open_study(storage, study_name, spec)
    context = multiprocessing.get_context("spawn")
    faults = context.SimpleQueue()  # a worker's storage fault, said once
    processes = [
        context.Process(
            target=_worker_process,
            args=(storage, study_name, evaluate_factory, dict(factory_kwargs or {}), batch_size,
                  heartbeat_interval, grace_period, faults),
            name=f"sigprop-sweep-worker-{i}",
        )
        for i in range(workers)
    ]
    for process in processes:
        process.start()
    try:
        _watch(storage, study_name, processes, progress)
    except BaseException:  # Ctrl-C: SIGTERM makes each worker hand its trials back and exit
        for process in processes:
            if process.is_alive():
                process.terminate()
        raise
    finally:
        for process in processes:
            process.join()
    if not faults.empty():
        raise StorageError(faults.get())
    failed = [p.exitcode for p in processes if p.exitcode != 0]
    if failed:
        raise RuntimeError(
            f"{len(failed)} of {workers} sweep workers exited with an error (exit codes "
            f"{failed}); their unfinished trials are retried by the next run"
        )


def load_factory(evaluate_factory: str, **factory_kwargs: Any) -> Evaluate:
    """The Evaluate made by ``evaluate_factory`` ("package.module:function") called with
    ``factory_kwargs``."""
    module_name, function_name = _check_factory_name(evaluate_factory)
    factory = getattr(importlib.import_module(module_name), function_name)
    return factory(**factory_kwargs)


@guarded
def sweep_counts(storage: str, study_name: str) -> dict[str, int]:
    """Configurations by where they stand: ``total``, ``complete`` (a COMPLETE trial),
    ``running`` (a RUNNING one), ``failed`` (only FAIL trials) and ``waiting``."""
    return _counts(_load(connect(storage), study_name))


def _counts(study: optuna.Study) -> dict[str, int]:
    counts = dict(total=0, complete=0, running=0, failed=0, waiting=0)
    for trials in configuration_trials(study.get_trials(deepcopy=False)).values():
        states = {t.state for t in trials}
        counts["total"] += 1
        if TrialState.COMPLETE in states:
            counts["complete"] += 1
        elif TrialState.RUNNING in states:
            counts["running"] += 1
        elif TrialState.WAITING in states:
            counts["waiting"] += 1
        else:
            counts["failed"] += 1
    return counts


def _worker_process(
    storage: str,
    study_name: str,
    evaluate_factory: str,
    factory_kwargs: dict[str, Any],
    batch_size: int,
    heartbeat_interval: int,
    grace_period: int,
    faults: Any,
) -> None:
    # Several workers share the cores: one thread each, set before torch can be imported.
    for name in SINGLE_THREAD_ENV:
        os.environ[name] = "1"
    # Ctrl-C reaches the whole process group; the parent answers it by sending SIGTERM, which
    # unwinds the worker (SystemExit) so that it hands its trials back before it exits.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
    evaluate = load_factory(evaluate_factory, **factory_kwargs)
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(1)
    try:
        run_worker(storage, study_name, evaluate, batch_size,
                   heartbeat_interval=heartbeat_interval, grace_period=grace_period)
    except StorageError as fault:  # said by the parent, as one line
        faults.put(str(fault))
        sys.exit(EXIT_STORAGE_FAULT)


def _watch(storage: str, study_name: str, processes: list, progress: bool) -> None:
    """Wait for the workers, redrawing the progress bar from the storage."""
    if not progress:
        while any(p.is_alive() for p in processes):
            time.sleep(PROGRESS_INTERVAL_S)
        return
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[detail]}"),
        TimeElapsedColumn(),
    )
    study = _load(connect(storage), study_name)
    with Progress(*columns) as bar:
        task = bar.add_task(study_name, total=None, detail="")
        while True:
            alive = any(p.is_alive() for p in processes)
            counts = _counts(study)
            detail = f"running {counts['running']}  waiting {counts['waiting']}"
            if counts["failed"]:
                detail += f"  [red]failed {counts['failed']}"
            bar.update(task, total=counts["total"], completed=counts["complete"], detail=detail)
            if not alive:
                return
            time.sleep(PROGRESS_INTERVAL_S)


def _check_factory_name(evaluate_factory: str) -> tuple[str, str]:
    module_name, _, function_name = str(evaluate_factory).partition(":")
    if not module_name or not function_name.isidentifier():
        raise ValueError(
            f"evaluate_factory: expected 'package.module:function', got {evaluate_factory!r}"
        )
    try:
        found = importlib.util.find_spec(module_name) is not None
    except ImportError:
        found = False
    if not found:
        raise ValueError(f"evaluate_factory: cannot find module {module_name!r}")
    return module_name, function_name
