"""The sweep engine: resuming after SIGKILL, several workers on SQLite and PostgreSQL, atomic
claiming, heartbeats, storage URLs, spec checks and the results table.

The trainer is faked (tests/sweep_fakes.py): deterministic losses, a short sleep per batch.
Heartbeats are 1 s with a 3 s grace period here, instead of 10 s / 60 s.
"""

from __future__ import annotations

import collections
import math
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import optuna
import pytest
from optuna.trial import TrialState

import sweep_fakes
from sigprop.sweep import (
    SweepSpec,
    config_key,
    normalize_storage,
    open_study,
    run_study,
    run_worker,
    trials_frame,
)

TESTS = Path(__file__).parent
FAST = {"heartbeat_interval": 1, "grace_period": 3}
GRID_KEYS = ("alpha", "sigma_w", "seed")


def test_configurations_are_the_grid_product_in_a_fixed_order():
    spec = SweepSpec(grid={"alpha": [0.1, 0.2], "seed": [0, 1, 2]}, fixed={"steps": 10})
    configs = spec.configurations()
    assert configs[:4] == [
        {"alpha": 0.1, "seed": 0}, {"alpha": 0.1, "seed": 1},
        {"alpha": 0.1, "seed": 2}, {"alpha": 0.2, "seed": 0},
    ]
    assert len(configs) == 6 and configs == spec.configurations()
    with pytest.raises(ValueError, match="alpha"):
        SweepSpec(grid={"alpha": []}, fixed={})
    with pytest.raises(ValueError, match="both"):
        SweepSpec(grid={"alpha": [0.1]}, fixed={"alpha": 0.2})
    with pytest.raises(ValueError, match="distinct"):
        SweepSpec(grid={"seed": [1, 1.0]}, fixed={})
    with pytest.raises(ValueError, match="finite"):
        SweepSpec(grid={"sigma_w": [math.nan]}, fixed={})


def test_sampled_ranges_give_a_deterministic_space_filling_design_crossed_with_the_grid():
    spec = SweepSpec(grid={"seed": [0, 1]}, fixed={"steps": 10},
                     sampled={"alpha": [0.1, 0.9], "sigma_w": [0.5, 5.0]}, samples=16)
    configs = spec.configurations()
    assert len(configs) == 32 and configs == spec.configurations()
    assert [c["seed"] for c in configs[:4]] == [0, 1, 0, 1]
    points = spec.sample_points()
    assert [{k: c[k] for k in ("alpha", "sigma_w")} for c in configs[::2]] == points
    alphas = np.array([p["alpha"] for p in points])
    sigmas = np.array([p["sigma_w"] for p in points])
    assert np.all((0.1 <= alphas) & (alphas <= 0.9)) and np.all((0.5 <= sigmas) & (sigmas <= 5.0))
    # space filling: each quarter of each range holds 4 ± 1 of the 16 points
    for values, (low, high) in ((alphas, (0.1, 0.9)), (sigmas, (0.5, 5.0))):
        counts = np.histogram(values, bins=4, range=(low, high))[0]
        assert np.all(np.abs(counts - 4) <= 1), counts
    other_seed = SweepSpec(grid={}, fixed={}, sampled=spec.sampled, samples=16, sample_seed=1)
    assert other_seed.sample_points() != points
    assert SweepSpec.from_json(spec.to_json()) == spec
    for kwargs, message in [
        (dict(sampled={"alpha": [0.9, 0.1]}, samples=4), "low < high"),
        (dict(sampled={"alpha": [0.1, math.inf]}, samples=4), "finite"),
        (dict(sampled={"alpha": [0.1, 0.9]}, samples=0), "samples"),
        (dict(samples=3), "samples"),
        (dict(sampled={"alpha": [0.1, 0.9]}, samples=2, sample_seed=-1), "sample_seed"),
    ]:
        with pytest.raises(ValueError, match=message):
            SweepSpec(grid={"seed": [0]}, fixed={}, **kwargs)
    with pytest.raises(ValueError, match="grid and sampled"):
        SweepSpec(grid={"alpha": [0.5]}, fixed={}, sampled={"alpha": [0.1, 0.9]}, samples=2)
    with pytest.raises(ValueError, match="at least one swept"):
        SweepSpec(grid={}, fixed={})


def test_a_sampled_sweep_is_stored_with_float_distributions_and_resumes(tmp_path):
    url = normalize_storage(None, tmp_path / "s.db")
    spec = SweepSpec(grid={"seed": [0]}, fixed={"steps": 100, "activation": "tanh"},
                     sampled={"alpha": [0.1, 0.9], "sigma_w": [1.0, 3.0]}, samples=5)
    study = open_study(url, "s", spec)
    assert len(study.trials) == 5
    assert isinstance(study.trials[0].distributions["alpha"], optuna.distributions.FloatDistribution)
    assert len(open_study(url, "s", SweepSpec.from_json(study.user_attrs)).trials) == 5
    with pytest.raises(ValueError, match=r"samples: stored 5, given 6"):
        open_study(url, "s", SweepSpec(grid=spec.grid, fixed=spec.fixed, sampled=spec.sampled,
                                       samples=6))
    with pytest.raises(ValueError, match=r"sampled\['alpha'\]"):
        open_study(url, "s", SweepSpec(grid=spec.grid, fixed=spec.fixed,
                                       sampled={**spec.sampled, "alpha": [0.2, 0.9]}, samples=5))
    run_worker(url, "s", sweep_fakes.instant_evaluate(), 3, **FAST)
    frame = trials_frame(url, "s")
    assert len(frame) == 5 and set(frame["state"]) == {"COMPLETE"}
    assert [dict(alpha=a, sigma_w=w) for a, w in zip(frame["alpha"], frame["sigma_w"])] \
        == spec.sample_points()


def test_storage_urls_are_normalized_and_checked(tmp_path):
    assert normalize_storage(None, tmp_path / "s.db") == f"sqlite:///{tmp_path / 's.db'}"
    assert normalize_storage(str(tmp_path / "x.db"), Path("unused")) == f"sqlite:///{tmp_path}/x.db"
    assert normalize_storage("sqlite:///a.db", Path("unused")) == "sqlite:///a.db"
    socket_url = "postgresql://postgres:@/postgres?host=/tmp/pg"
    assert normalize_storage(socket_url, Path("unused")) == (
        "postgresql+psycopg2://postgres:@/postgres?host=/tmp/pg"
    )
    assert normalize_storage("postgres://u:p@db.lan:5433/sweeps", Path("unused")) == (
        "postgresql+psycopg2://u:p@db.lan:5433/sweeps"
    )
    for bad, message in [
        ("mysql://u@h/db", "unsupported"),
        ("sqlite:///:memory:", "in-memory"),
        ("sqlite://", "in-memory"),
        ("postgresql://u@host", "no database"),
        ("", "storage"),
    ]:
        with pytest.raises(ValueError, match=message):
            normalize_storage(bad, Path("unused"))


def test_opening_again_enqueues_nothing_and_a_different_spec_is_an_error(tmp_path):
    url = normalize_storage(None, tmp_path / "s.db")
    spec = sweep_fakes.spec(3)
    study = open_study(url, "s", spec)
    assert len(study.trials) == 12
    assert study.user_attrs["fixed"] == {"steps": 100, "activation": "tanh"}
    assert study.user_attrs["grid"]["sigma_w"] == [1.0, 3.0]
    # the same sweep, written differently: keys and values reordered, ints for floats
    same = SweepSpec(
        grid={"seed": [1, 0], "sigma_w": [3, 1], "alpha": spec.grid["alpha"]}, fixed=spec.fixed
    )
    assert len(open_study(url, "s", same).trials) == 12
    assert len(open_study(url, "s", None).trials) == 12
    assert {config_key(t.params) for t in study.trials} == {
        config_key(c) for c in spec.configurations()
    }
    other = SweepSpec(grid={**spec.grid, "seed": [0, 1, 2]}, fixed=spec.fixed)
    with pytest.raises(ValueError, match=r"different sweep.*grid\['seed'\]"):
        open_study(url, "s", other)
    with pytest.raises(ValueError, match=r"fixed\['steps'\]: stored 100, given 200"):
        open_study(url, "s", SweepSpec(grid=spec.grid, fixed={**spec.fixed, "steps": 200}))
    with pytest.raises(ValueError, match="no sweep named"):
        open_study(url, "missing", None)


def test_worker_stores_results_and_trials_frame_has_one_row_per_configuration(tmp_path):
    url = normalize_storage(None, tmp_path / "s.db")
    spec = sweep_fakes.spec(2)
    open_study(url, "s", spec)
    batches = []
    finished = run_worker(url, "s", sweep_fakes.instant_evaluate(), 3,
                          on_batch=lambda configs, results: batches.append(len(configs)), **FAST)
    assert finished == 8 and batches == [3, 3, 2]
    frame = trials_frame(url, "s")
    assert len(frame) == 8
    assert [dict(zip(GRID_KEYS, row)) for row in frame[list(GRID_KEYS)].itertuples(index=False)] \
        == spec.configurations()
    assert set(frame["state"]) == {"COMPLETE"} and set(frame["attempts"]) == {1}
    assert set(frame["worker_pid"]) == {os.getpid()}
    for _, row in frame.iterrows():
        expected = sweep_fakes.fake_losses({**row.to_dict(), "steps": 100})
        assert row["status"] == expected["status"]
        assert row["last_finite_loss"] == pytest.approx(expected["last_finite_loss"])
        assert row["lambda_a"] == expected["lambda_a"] and row["steps_done"] == 100
        if row["status"] == "complete":
            assert row["value"] == pytest.approx(expected["test_loss"])
            assert row["test_loss"] == pytest.approx(expected["test_loss"])
        else:  # diverged: COMPLETE, valued by the last finite loss; losses kept as reported
            assert row["value"] == pytest.approx(expected["last_finite_loss"])
            assert math.isnan(row["test_loss"]) and row["train_loss"] == math.inf


def test_failed_evaluations_are_recorded_and_retried_by_the_next_start(tmp_path):
    url = normalize_storage(None, tmp_path / "s.db")
    spec = sweep_fakes.spec(2)  # alpha 0.1 and 0.9: the 0.9 half raises
    open_study(url, "s", spec)
    assert run_worker(url, "s", sweep_fakes.broken_evaluate(), 2, **FAST) == 8
    frame = trials_frame(url, "s")
    failed = frame[frame["alpha"] > 0.5]
    assert set(failed["state"]) == {"FAIL"} and set(failed["status"]) == {"failed"}
    assert set(failed["error"]) == {"RuntimeError: trainer exploded"}
    assert set(frame[frame["alpha"] < 0.5]["state"]) == {"COMPLETE"}
    open_study(url, "s", spec)  # a new start enqueues the failed configurations again
    assert run_worker(url, "s", sweep_fakes.instant_evaluate(), 2, **FAST) == 4
    frame = trials_frame(url, "s")
    assert set(frame["state"]) == {"COMPLETE"}
    assert sorted(frame["attempts"]) == [1] * 4 + [2] * 4


def test_a_live_worker_keeps_its_trials_past_the_grace_period(tmp_path):
    """Its heartbeat thread keeps them fresh while evaluate runs longer than the grace period,
    so a second worker, polling all along, never takes them."""
    url = normalize_storage(None, tmp_path / "s.db")
    open_study(url, "s", SweepSpec(grid={"alpha": [0.1, 0.9], "sigma_w": [1.0], "seed": [0]},
                                    fixed={"steps": 1}))
    slow = lambda configs: sweep_fakes.evaluate(configs, seconds=4.5)  # noqa: E731
    holder = threading.Thread(target=run_worker, args=(url, "s", slow, 2), kwargs=FAST)
    holder.start()
    time.sleep(0.5)
    assert run_worker(url, "s", sweep_fakes.instant_evaluate(), 2, **FAST) == 0
    holder.join()
    trials = open_study(url, "s", None).trials
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 2


def test_a_worker_storing_slowly_keeps_its_trials(tmp_path, monkeypatch):
    """Writing a result can wait for the database longer than the grace period (SQLite's
    write lock under load): the heartbeat covers a trial until its result is stored, so a
    second worker, polling all along, never takes it and evaluates it again (the cause of the
    claims test's failures at load 8–11)."""
    from sigprop.sweep import worker

    url = normalize_storage(None, tmp_path / "s.db")
    open_study(url, "s", SweepSpec(grid={"alpha": [0.1], "sigma_w": [1.0], "seed": [0]},
                                    fixed={"steps": 1}))
    store = worker._store

    def slow_store(*args):
        if threading.current_thread().name == "holder":
            time.sleep(4.5)  # longer than the 3 s grace period
        return store(*args)

    monkeypatch.setattr(worker, "_store", slow_store)
    evaluated = []

    def evaluate(configs):
        evaluated.extend(configs)
        return sweep_fakes.evaluate(configs, seconds=0.0)

    holder = threading.Thread(target=run_worker, args=(url, "s", evaluate, 1), kwargs=FAST,
                              name="holder")
    holder.start()
    time.sleep(0.5)
    assert run_worker(url, "s", evaluate, 1, **FAST) == 0
    holder.join()
    assert len(evaluated) == 1
    assert [t.state for t in open_study(url, "s", None).trials] == [TrialState.COMPLETE]


def test_sigkill_then_restart_loses_no_finished_trial(tmp_path):
    url = normalize_storage(None, tmp_path / "s.db")
    spec = sweep_fakes.spec(4)  # 16 configurations
    # one worker, batches of 2: three batches finish, then it hangs inside the fourth
    code = (
        "from sigprop.sweep import run_study; import sweep_fakes; "
        f"run_study({url!r}, 'k', sweep_fakes.spec(4), 'sweep_fakes:hanging_evaluate', "
        "workers=1, batch_size=2, progress=False, heartbeat_interval=1, grace_period=3)"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), *sys.path])}
    sweep = subprocess.Popen([sys.executable, "-c", code], env=env, start_new_session=True)
    try:
        states = _wait_for(url, "k", lambda s: s[TrialState.COMPLETE] == 6
                           and s[TrialState.RUNNING] == 2, sweep)
    finally:
        os.killpg(sweep.pid, signal.SIGKILL)  # the sweep and its worker process
        sweep.wait()
    before = {t.number: t for t in open_study(url, "k", None).trials}
    finished = {n: t for n, t in before.items() if t.state == TrialState.COMPLETE}
    interrupted = {n for n, t in before.items() if t.state == TrialState.RUNNING}
    assert len(finished) == 6 and len(interrupted) == 2, states

    started = time.monotonic()
    run_study(url, "k", spec, "sweep_fakes:slow_evaluate", workers=2, batch_size=2,
              progress=False, **FAST)
    assert time.monotonic() - started < 30

    after = {t.number: t for t in open_study(url, "k", None).trials}
    for number, trial in finished.items():  # kept, unchanged
        assert after[number].state == TrialState.COMPLETE
        assert after[number].value == trial.value
        assert after[number].user_attrs == trial.user_attrs
    complete = collections.Counter(
        config_key(t.params) for t in after.values() if t.state == TrialState.COMPLETE
    )
    assert complete == {config_key(c): 1 for c in spec.configurations()}
    for number in interrupted:  # failed as stale, and rerun as a retry of the same config
        assert after[number].state == TrialState.FAIL
        retries = [t for t in after.values() if t.system_attrs.get("failed_trial") == number]
        assert [t.state for t in retries] == [TrialState.COMPLETE]
        assert retries[0].params == after[number].params
    assert len(after) == 16 + 2


def test_two_workers_share_one_sqlite_study(tmp_path, monkeypatch):
    url = normalize_storage(None, tmp_path / "s.db")
    _two_workers(url, tmp_path, monkeypatch)


def test_two_workers_share_one_postgresql_study(tmp_path, monkeypatch):
    pgserver = pytest.importorskip("pgserver", reason="pgserver (embedded PostgreSQL) missing")
    pytest.importorskip("psycopg2", reason="psycopg2-binary (PostgreSQL driver) missing")
    data = Path(tempfile.mkdtemp(prefix="sigprop-pg-"))  # short: it holds the unix socket
    try:
        server = pgserver.get_server(data, cleanup_mode="delete")
    except Exception as error:  # noqa: BLE001 - no PostgreSQL here: say why, skip
        pytest.skip(f"could not start PostgreSQL with pgserver: {error}")
    try:
        _two_workers(server.get_uri(), tmp_path, monkeypatch)
    finally:
        server.cleanup()


def test_claims_are_atomic_under_contention(tmp_path, monkeypatch):
    """Four workers taking one trial at a time from SQLite with instant evaluations: with
    Optuna's plain SQLite setup, two processes regularly take the same WAITING trial."""
    url = normalize_storage(None, tmp_path / "s.db")
    log = _evaluation_log(tmp_path, monkeypatch)
    spec = sweep_fakes.spec(10)  # 40 configurations
    run_study(url, "c", spec, "sweep_fakes:instant_evaluate", workers=4, batch_size=1,
              progress=False, **FAST)
    evaluations = collections.Counter(key for keys in _read_log(log).values() for key in keys)
    assert evaluations == {config_key(c): 1 for c in spec.configurations()}
    assert [t.state for t in open_study(url, "c", None).trials] == [TrialState.COMPLETE] * 40


def test_a_duplicated_configuration_is_evaluated_once(tmp_path):
    """Two processes repairing the same failed configuration at the same moment can enqueue it
    twice; workers evaluate it once and mark the other trial superseded."""
    url = normalize_storage(None, tmp_path / "s.db")
    study = open_study(url, "s", sweep_fakes.spec(1))  # 4 configurations
    first, second = study.trials[0], study.trials[1]
    for trial in (first, second, second):
        study.add_trial(optuna.trial.create_trial(
            state=TrialState.WAITING, params=trial.params, distributions=trial.distributions,
            user_attrs=trial.user_attrs))
    assert run_worker(url, "s", sweep_fakes.instant_evaluate(), 8, **FAST) == 4
    trials = open_study(url, "s", None).trials
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 4 + [TrialState.FAIL] * 3
    assert [t.user_attrs["superseded_by"] for t in trials[4:]] == [0, 1, 1]
    frame = trials_frame(url, "s")
    assert len(frame) == 4 and set(frame["attempts"]) == {1}
    assert set(frame["number"]) == {0, 1, 2, 3}


def _two_workers(url: str, tmp_path: Path, monkeypatch) -> None:
    log = _evaluation_log(tmp_path, monkeypatch)
    spec = sweep_fakes.spec(6)  # 24 configurations, 12 batches of 0.25 s
    run_study(url, "two", spec, "sweep_fakes:slow_evaluate", workers=2, batch_size=2,
              progress=False, **FAST)
    study = open_study(url, "two", None)
    assert len(study.trials) == 24
    assert all(t.state == TrialState.COMPLETE for t in study.trials)
    assert {config_key(t.params) for t in study.trials} == {
        config_key(c) for c in spec.configurations()
    }
    by_worker = _read_log(log)
    evaluations = collections.Counter(key for keys in by_worker.values() for key in keys)
    assert evaluations == {config_key(c): 1 for c in spec.configurations()}
    pids = {t.user_attrs["worker_pid"] for t in study.trials}
    assert len(pids) == 2 and os.getpid() not in pids and pids == set(by_worker)
    assert len(trials_frame(url, "two")) == 24


def _evaluation_log(tmp_path: Path, monkeypatch) -> Path:
    log = tmp_path / "evaluations"
    log.mkdir()
    monkeypatch.setenv("SWEEP_FAKES_LOG", str(log))  # inherited by the worker processes
    return log


def _read_log(log: Path) -> dict[int, list[str]]:
    return {int(f.stem): f.read_text().split("\n")[:-1] for f in log.glob("*.log")}


def _wait_for(url, study_name, condition, process, timeout=30.0):
    """Poll the study's trial states until ``condition(counts)`` holds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, "the sweep ended early"
        try:
            trials = open_study(url, study_name, None).trials
        except ValueError:  # not created yet
            trials = []
        counts = collections.Counter(t.state for t in trials)
        if condition(counts):
            return counts
        time.sleep(0.1)
    raise AssertionError(f"timed out; trial states {dict(counts)}")
