"""Storage faults: each is one clear line (``StorageError``, exit 2 from the CLI) and nothing
already stored is lost or overwritten.

The faults are real ones from SQLite and psycopg2: a file of random bytes, a port nothing
listens on, a study marked as written in a newer format, and a full or read-only database
made with SQLite's own limits (``PRAGMA max_page_count``, ``PRAGMA query_only``) on the
connections of the code under test.
"""

from __future__ import annotations

import hashlib
import sqlite3
import subprocess
import sys

import optuna
import pytest
import sqlalchemy
from optuna.trial import TrialState

import sweep_fakes
from sigprop.sweep import config_key, normalize_storage, open_study, run_worker, trials_frame
from sigprop.sweep import worker as worker_module
from sigprop.sweep.faults import StorageError, describe_fault
from sigprop.sweep.storage import find_study

FAST = {"heartbeat_interval": 1, "grace_period": 3}


def _digest(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_corrupted_sqlite_file_is_named_and_left_untouched(tmp_path):
    bad = tmp_path / "sweep.sqlite"
    bad.write_bytes(bytes(range(256)) * 40)
    before = _digest(bad)
    url = normalize_storage(str(bad), bad)
    with pytest.raises(StorageError, match="not a SQLite database"):
        open_study(url, "s", sweep_fakes.spec(1))
    with pytest.raises(StorageError, match="not a SQLite database"):
        find_study(url, None)
    assert _digest(bad) == before
    done = subprocess.run([sys.executable, "-m", "sigprop", "analyze", "--storage", str(bad)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "not a SQLite database" in done.stderr
    assert _digest(bad) == before


def test_a_refused_postgresql_connection_is_one_line_without_the_password():
    url = "postgresql://user:secret-word@127.0.0.1:1/sweeps"  # nothing listens on port 1
    with pytest.raises(StorageError, match="cannot connect to the PostgreSQL server") as caught:
        open_study(url, "s", sweep_fakes.spec(1))
    assert "secret-word" not in str(caught.value) and "\n" not in str(caught.value)


def test_a_study_of_a_newer_format_is_refused_and_not_touched(tmp_path):
    url = normalize_storage(None, tmp_path / "s.db")
    study = open_study(url, "s", sweep_fakes.spec(1))
    study.set_user_attr("spec_format", 99)
    study.set_user_attr("sigprop_version", "9.0")
    before = [(t.number, t.state) for t in open_study(url, "s", None).trials]
    with pytest.raises(StorageError, match=r"written by sigprop 9\.0 \(sweep format 99\)"):
        open_study(url, "s", sweep_fakes.spec(1))
    with pytest.raises(StorageError, match="cannot read"):
        find_study(url, "s")
    assert [(t.number, t.state) for t in open_study(url, "s", None).trials] == before


def test_a_study_records_its_format_and_the_sigprop_that_wrote_it(tmp_path):
    url = normalize_storage(None, tmp_path / "s.db")
    attrs = open_study(url, "s", sweep_fakes.spec(1)).user_attrs
    assert attrs["spec_format"] == 1 and isinstance(attrs["sigprop_version"], str)


def _limit_writes(monkeypatch, pragma: str, after_batches: int) -> None:
    """Every transaction of the worker's storage runs ``pragma`` once ``after_batches``
    batches have been stored: SQLite's own full-disk or read-only error from then on."""
    batches = {"stored": 0}
    connect = worker_module.connect

    def limited(*args, **kwargs):
        rdb = connect(*args, **kwargs)

        @sqlalchemy.event.listens_for(rdb.engine, "begin")
        def limit(connection):
            if batches["stored"] >= after_batches:
                connection.exec_driver_sql(pragma(connection) if callable(pragma) else pragma)

        return rdb

    monkeypatch.setattr(worker_module, "connect", limited)
    return batches


@pytest.mark.parametrize("fault,pragma,message", [
    ("full disk", lambda c: "PRAGMA max_page_count = "
     f"{c.exec_driver_sql('PRAGMA page_count').scalar()}", "the disk is full"),
    ("read-only", "PRAGMA query_only = ON", "read-only"),
])
def test_a_write_fault_mid_sweep_stops_the_worker_and_keeps_every_stored_result(
        tmp_path, monkeypatch, fault, pragma, message):
    url = normalize_storage(None, tmp_path / "s.db")
    open_study(url, "s", sweep_fakes.spec(4))  # 16 configurations
    batches = _limit_writes(monkeypatch, pragma, after_batches=3)

    def count_batches(configs, results):
        batches["stored"] += 1

    def with_curves(configs):  # a training's loss curve: every result needs new pages
        return [{**result, "loss_curve": [result["test_loss"]] * 4000}
                for result in sweep_fakes.instant_evaluate()(configs)]

    with pytest.raises(StorageError, match=message):
        run_worker(url, "s", with_curves, 2, count_batches, **FAST)
    monkeypatch.undo()
    stored = trials_frame(url, "s")
    complete = stored[stored["state"] == "COMPLETE"]
    assert len(complete) == 6, fault  # three batches of two, all kept
    # the trials the worker held when the fault came are retried by the next start
    assert run_worker(url, "s", sweep_fakes.instant_evaluate(), 4, **FAST) >= 10
    final = open_study(url, "s", None).trials
    assert {config_key(t.params) for t in final if t.state == TrialState.COMPLETE} == {
        config_key(c) for c in sweep_fakes.spec(4).configurations()}


def test_describe_fault_reads_through_optuna_and_sqlalchemy_wrappers(tmp_path):
    connection = sqlite3.connect(tmp_path / "full.db")
    connection.execute("CREATE TABLE t (x BLOB)")
    pages = connection.execute("PRAGMA page_count").fetchone()[0]
    connection.execute(f"PRAGMA max_page_count = {pages}")
    with pytest.raises(sqlite3.OperationalError) as full:  # SQLite's own full-disk error
        connection.execute("INSERT INTO t VALUES (?)", (b"0" * 100_000,))
    driver = sqlalchemy.exc.OperationalError("INSERT …", {}, full.value)
    try:
        try:
            raise driver
        except sqlalchemy.exc.OperationalError as error:
            raise optuna.exceptions.StorageInternalError("commit failed") from error
    except optuna.exceptions.StorageInternalError as wrapped:
        assert "the disk is full" in describe_fault(wrapped, "sqlite:///x.db")
    assert describe_fault(RuntimeError("something else"), "sqlite:///x.db") is None
    import psycopg2  # the server restarting under a worker: said as gone, not as a bug
    restarting = psycopg2.OperationalError(
        'connection to server on socket "/tmp/x/.s.PGSQL.5432" failed: FATAL:  the database '
        "system is shutting down")
    assert "went away" in describe_fault(restarting, "postgresql+psycopg2://u:p@h/db")
    assert "the disk is full" in describe_fault(OSError(28, "No space left on device"), "x")
