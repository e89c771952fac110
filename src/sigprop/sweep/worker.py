"""One worker: take WAITING trials in batches, evaluate them together, store the results.

Many workers, in this process or others, on this machine or others, can work the same study;
the database is the only thing they share.
"""

from __future__ import annotations

import json
import logging
import math
import os
import socket
import threading
import time
import traceback
from collections.abc import Callable

import optuna
from optuna.trial import FrozenTrial, TrialState

from sigprop.sweep.design import STATUSES, Evaluate, config_key
from sigprop.sweep.faults import guarded
from sigprop.sweep.storage import _load, _quiet, connect

HEARTBEAT_INTERVAL_S = 10
GRACE_PERIOD_S = 60
POLL_INTERVAL_S = 0.5  # how often an idle worker looks for work while others still run trials
MAX_RETRY = 3  # a configuration whose worker died this often is left FAIL until the next start

OnBatch = Callable[[list[dict], list[dict]], None]
_log = logging.getLogger(__name__)


@guarded
def run_worker(
    storage: str,
    study_name: str,
    evaluate: Evaluate,
    batch_size: int,
    on_batch: OnBatch | None = None,
    *,
    heartbeat_interval: int = HEARTBEAT_INTERVAL_S,
    grace_period: int = GRACE_PERIOD_S,
) -> int:
    """Work the study until no trial is WAITING or RUNNING; return how many trials this worker
    finished (COMPLETE or FAIL).

    Each round:

    1. ``optuna.storages.fail_stale_trials``: a RUNNING trial whose heartbeat is older than
       ``grace_period`` s belongs to a dead worker; it becomes FAIL, and Optuna's
       ``RetryHeartbeatStaleTrialCallback`` enqueues a WAITING copy (at most MAX_RETRY times
       per configuration and start, see ``open_study``).
    2. Claim up to ``batch_size`` WAITING trials, each with ``set_trial_state_values(RUNNING)``,
       which succeeds for one worker only (a row lock in PostgreSQL, BEGIN IMMEDIATE in SQLite).
       A heartbeat is recorded just before the claim, so every RUNNING trial has one (Optuna
       never declares stale a trial that never had a heartbeat). A trial whose configuration
       is already COMPLETE or in the batch (a rare duplicate, see ``open_study``) is marked
       FAIL with ``superseded_by`` (that trial's number) instead of being evaluated.
    3. ``evaluate`` the claimed configurations (grid point merged with the study's ``fixed``).
       From its claim until its result is stored, a background thread records each held
       trial's heartbeat every ``heartbeat_interval`` s: writing the results can wait for the
       database as long as evaluating (SQLite's write lock under contention), and a trial
       without fresh heartbeats then would be taken by another worker and evaluated twice.
    4. Store each result: its fields become user attributes, with ``worker_pid`` and
       ``worker_host``, and the trial is told COMPLETE. The value is ``test_loss``; a diverged
       run is COMPLETE too, with ``status="diverged"`` and the value ``last_finite_loss``
       (+inf if there is none), so sorting by value still puts it last. A result that breaks
       the contract makes its trial FAIL with ``error``.

    If ``evaluate`` raises, the batch's trials become FAIL with the message in ``error`` and
    the worker goes on with the next batch; the next start of the sweep retries them. If the
    worker is interrupted (KeyboardInterrupt, SystemExit), the trials it holds become FAIL and
    are enqueued again at once. ``on_batch(configs, results)`` is called after each batch.

    Every worker of a study must use the same ``heartbeat_interval`` and ``grace_period``
    (whole seconds, as Optuna requires): a worker with a shorter grace period would take the
    trials of live workers that beat less often. A storage fault (a full disk, a server that
    went away, …) stops the worker with ``StorageError``; the trials it held are retried by
    the next start, once their heartbeat is stale.
    """
    check_settings(batch_size, heartbeat_interval, grace_period)
    rdb = connect(
        storage, heartbeat_interval=heartbeat_interval, grace_period=grace_period, retries=MAX_RETRY
    )
    study = _load(rdb, study_name)
    fixed = study.user_attrs.get("fixed", {})
    finished = 0
    while True:
        with _quiet():
            optuna.storages.fail_stale_trials(study)
        with _Heartbeat(rdb, heartbeat_interval) as heartbeat:
            batch, busy = _claim(study, rdb, batch_size, heartbeat)
            if not batch:
                if not busy:
                    return finished
                time.sleep(POLL_INTERVAL_S)
                continue
            configs = [{**fixed, **trial.params} for trial in batch]
            try:
                results = evaluate(configs)
                _check_results(results, len(batch))
            except Exception as error:  # noqa: BLE001 - recorded in the trials, the sweep goes on
                _log.error("evaluate failed on trials %s", [t.number for t in batch],
                           exc_info=True)
                results = [{"status": "failed", "error": _describe(error)} for _ in batch]
                finished += sum(_fail(study, rdb, trial, results[0]["error"]) for trial in batch)
            except BaseException:
                _release(study, rdb, batch)
                raise
            else:
                finished += sum(_store(study, rdb, t, r) for t, r in zip(batch, results))
        if on_batch is not None:
            on_batch(configs, results)


def check_settings(batch_size: int, heartbeat_interval: int, grace_period: int) -> None:
    check_positive_int("batch_size", batch_size)
    check_positive_int("heartbeat_interval", heartbeat_interval)
    check_positive_int("grace_period", grace_period)
    if grace_period <= heartbeat_interval:
        raise ValueError(
            f"grace_period: must exceed heartbeat_interval ({heartbeat_interval} s), "
            f"got {grace_period} s"
        )


def check_positive_int(name: str, value: object) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name}: must be an integer >= 1, got {value!r}")


def _claim(
    study: optuna.Study, rdb: optuna.storages.RDBStorage, batch_size: int,
    heartbeat: _Heartbeat,
) -> tuple[list[FrozenTrial], bool]:
    """Up to ``batch_size`` trials now RUNNING for this worker (each handed to ``heartbeat``
    as it is claimed), and whether other trials are still WAITING or RUNNING elsewhere (so
    an empty batch means: wait, not stop)."""
    trials = study.get_trials(deepcopy=False)
    taken = {config_key(t.params): t.number for t in trials if t.state == TrialState.COMPLETE}
    busy = any(t.state == TrialState.RUNNING for t in trials)
    batch: list[FrozenTrial] = []
    for trial in trials:
        if len(batch) == batch_size:
            break
        if trial.state != TrialState.WAITING:
            continue
        busy = True
        rdb.record_heartbeat(trial._trial_id)
        try:
            if not rdb.set_trial_state_values(trial._trial_id, TrialState.RUNNING):
                continue  # another worker took it first
        except optuna.exceptions.UpdateFinishedTrialError:
            continue
        key = config_key(trial.params)
        if key in taken:
            _fail(study, rdb, trial, None, superseded_by=taken[key])
            continue
        taken[key] = trial.number
        heartbeat.hold(trial)
        batch.append(trial)
    return batch, busy


def _store(
    study: optuna.Study, rdb: optuna.storages.RDBStorage, trial: FrozenTrial, result: dict
) -> bool:
    """Write one result into its trial; False if the trial was no longer ours."""
    try:
        attrs = {key: _jsonable(value) for key, value in result.items()}
        attrs.update(worker_pid=os.getpid(), worker_host=socket.gethostname())
        value = _value(result)
    except ValueError as error:
        return _fail(study, rdb, trial, f"invalid result: {error}")
    try:
        for key, attr in attrs.items():
            rdb.set_trial_user_attr(trial._trial_id, key, attr)
        study.tell(trial.number, value, state=TrialState.COMPLETE)
    except (optuna.exceptions.UpdateFinishedTrialError, ValueError):  # no longer RUNNING
        _log.warning("trial %d was taken back (late heartbeat); result dropped", trial.number)
        return False
    return True


def _fail(
    study: optuna.Study,
    rdb: optuna.storages.RDBStorage,
    trial: FrozenTrial,
    error: str | None,
    superseded_by: int | None = None,
) -> bool:
    """Mark a trial FAIL, with its error or the number of the trial that makes it redundant;
    True if it counts as a finished evaluation."""
    try:
        if superseded_by is not None:
            rdb.set_trial_user_attr(trial._trial_id, "superseded_by", superseded_by)
        else:
            rdb.set_trial_user_attr(trial._trial_id, "status", "failed")
            rdb.set_trial_user_attr(trial._trial_id, "error", error)
        rdb.set_trial_user_attr(trial._trial_id, "worker_pid", os.getpid())
        study.tell(trial.number, state=TrialState.FAIL)
    except (optuna.exceptions.UpdateFinishedTrialError, ValueError):  # no longer RUNNING
        return False
    return superseded_by is None


def _release(study: optuna.Study, rdb: optuna.storages.RDBStorage, batch: list[FrozenTrial]):
    """Give interrupted trials back now instead of after the grace period."""
    retry = rdb.get_heartbeat_stale_trial_callback()
    for trial in batch:
        try:
            if rdb.set_trial_state_values(trial._trial_id, TrialState.FAIL):
                with _quiet():
                    retry(study, rdb.get_trial(trial._trial_id))
        except Exception:  # noqa: BLE001 - best effort; the heartbeat covers the rest
            _log.warning("could not release trial %d", trial.number, exc_info=True)


class _Heartbeat:
    """Records the heartbeat of the trials it holds (``hold``) every ``interval`` s, in a
    background thread, until the ``with`` block ends."""

    def __init__(self, rdb: optuna.storages.RDBStorage, interval: int):
        self._rdb, self._ids, self._interval = rdb, [], interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name="sweep-heartbeat", daemon=True)

    def hold(self, trial: FrozenTrial) -> None:
        """Beat for ``trial`` too, from the next interval on (its claim recorded one)."""
        self._ids = [*self._ids, trial._trial_id]

    def __enter__(self) -> _Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._stop.set()
        self._thread.join()

    def _beat(self) -> None:
        while True:
            for trial_id in self._ids:
                try:
                    self._rdb.record_heartbeat(trial_id)
                except Exception:  # noqa: BLE001 - a missed beat is retried next interval
                    _log.warning("heartbeat of trial id %d failed", trial_id, exc_info=True)
            if self._stop.wait(self._interval):
                return


def _value(result: dict) -> float:
    status = result.get("status")
    if status not in STATUSES:
        raise ValueError(f"status must be one of {STATUSES}, got {status!r}")
    if status == "complete":
        loss = result.get("test_loss")
        if not _is_finite(loss):
            raise ValueError(f"a complete run needs a finite test_loss, got {loss!r}")
        return float(loss)
    loss = result.get("last_finite_loss")
    return float(loss) if _is_finite(loss) else math.inf


def _check_results(results: object, n: int) -> None:
    if not isinstance(results, list) or len(results) != n:
        raise TypeError(f"evaluate must return a list of {n} result dicts, got {results!r:.200}")
    if not all(isinstance(r, dict) for r in results):
        raise TypeError("evaluate must return one dict per configuration")


def _jsonable(value: object) -> object:
    if hasattr(value, "tolist"):  # numpy and torch scalars and arrays
        value = value.tolist()
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        raise ValueError(f"{value!r:.100} is not JSON-serializable") from None
    return value


def _is_finite(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _describe(error: BaseException) -> str:
    last = traceback.format_exception_only(type(error), error)[-1].strip()
    return last[:2000]
