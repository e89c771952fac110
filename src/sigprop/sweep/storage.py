"""Where a sweep lives: an Optuna study in a SQLite file or a PostgreSQL database.

One study per sweep, direction "minimize". The study's user attributes hold the spec
(``SweepSpec.to_json`` and ``n_configurations``) and ``enqueued`` once every configuration has
a trial. Each configuration is an Optuna trial whose ``params`` are its swept values, with
categorical distributions over the grid values and float distributions over the sampled
ranges, so Optuna's own tools (``trials_dataframe``, the dashboard) show them; a retried
configuration is a new trial with the same params.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import sqlite3
import time
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import optuna
import sqlalchemy
from optuna.trial import FrozenTrial, TrialState

from sigprop.spec import InvalidHyperparameter
from sigprop.sweep.design import SweepSpec, config_key
from sigprop.sweep.faults import StorageError, guarded

if TYPE_CHECKING:
    import pandas

SQLITE_TIMEOUT_S = 120.0  # how long a SQLite transaction waits for the write lock
ENQUEUE_STALL_S = 10.0  # an unfinished enqueue that makes no progress this long was abandoned
RESULT_COLUMNS = ("status", "test_loss", "train_loss", "last_finite_loss")
# The layout of a study's stored spec. A sigprop that writes a newer layout raises it; one that
# meets a study of a newer layout than it knows refuses to touch it.
SPEC_FORMAT = 1


def normalize_storage(storage: str | None, default_path: Path) -> str:
    """The SQLAlchemy URL of a sweep's storage.

    ``None`` is the SQLite file ``default_path``; a plain path (no ``://``) is a SQLite file;
    ``sqlite:///FILE`` is kept; ``postgresql://`` or ``postgres://`` URLs get the psycopg2 driver
    (``postgresql+psycopg2://``). Anything else, an in-memory SQLite database (which worker
    processes cannot share) or an unparsable URL raises ValueError.
    """
    if storage is None:
        return f"sqlite:///{Path(default_path).expanduser().resolve()}"
    return _normalize(storage)


@guarded
def open_study(storage: str, study_name: str, spec: SweepSpec | None) -> optuna.Study:
    """Create the sweep's study, or load it, and make sure every configuration has a trial.

    On creation the spec goes into the study's user attributes and every configuration is
    enqueued once, as a WAITING trial (``Study.enqueue_trial``'s mechanism, with distributions).
    Only the process that created the study enqueues (study names are unique in the database,
    so exactly one ``create_study`` succeeds); another process opening it meanwhile waits for
    the ``enqueued`` mark. Opening an existing study with a spec checks that it describes the
    same sweep (ValueError if not) and re-enqueues every configuration that has no WAITING,
    RUNNING or COMPLETE trial: so a restart retries configurations whose evaluation failed.
    ``spec=None`` only loads an existing study.
    """
    rdb = connect(storage)
    if spec is None:
        return _load(rdb, study_name)
    with _quiet():
        try:
            optuna.create_study(storage=rdb, study_name=study_name, direction="minimize")
            created = True
        except optuna.exceptions.DuplicatedStudyError:
            created = False
    study = _load(rdb, study_name)
    if created:
        _store_spec(study, spec)
    else:
        stored = _stored_spec(study)
        if stored is None:  # its creator died before writing the spec: adopt the study
            _store_spec(study, spec)
        elif not stored.same_sweep(spec):
            raise ValueError(_mismatch(study_name, stored, spec))
        else:
            spec = stored  # keeps the stored order of values, hence the same distributions
        _wait_for_enqueue(study)
    _enqueue_missing(study, spec)
    study.set_user_attr("enqueued", True)
    return study


@guarded
def trials_frame(storage: str, study_name: str) -> pandas.DataFrame:
    """One row per configuration, from its latest attempt: the config's settings, ``number``,
    ``state`` (Optuna's trial state), ``status``, ``test_loss``, ``train_loss``,
    ``last_finite_loss``, ``value``, ``attempts`` (trials made for it), then every other user
    attribute of the trial. Rows follow ``SweepSpec.configurations()``."""
    import pandas

    study = _load(connect(storage), study_name)
    latest: dict[str, FrozenTrial] = {}
    attempts: dict[str, int] = {}
    for trial in study.get_trials(deepcopy=False):
        if "superseded_by" in trial.user_attrs:
            continue
        key = config_key(trial.params)
        attempts[key] = attempts.get(key, 0) + 1
        if key not in latest or trial.number > latest[key].number:
            latest[key] = trial
    rows = []
    for key, trial in latest.items():
        row: dict[str, Any] = dict(trial.params)
        row.update(number=trial.number, state=trial.state.name)
        row.update({name: trial.user_attrs.get(name) for name in RESULT_COLUMNS})
        row.update(value=trial.value, attempts=attempts[key])
        row.update({k: v for k, v in trial.user_attrs.items() if k not in row})
        rows.append(row)
    rows.sort(key=lambda row: (row.get("config_index", len(rows)), row["number"]))
    return pandas.DataFrame(rows)


@guarded
def connect(
    storage: str,
    *,
    heartbeat_interval: int | None = None,
    grace_period: int | None = None,
    retries: int = 0,
) -> optuna.storages.RDBStorage:
    """An Optuna RDBStorage for ``storage``, safe to use from several processes at once.

    With ``heartbeat_interval`` set, Optuna's heartbeat is on: ``fail_stale_trials`` fails a
    RUNNING trial whose last heartbeat is older than ``grace_period`` seconds, and with
    ``retries`` > 0 a ``RetryHeartbeatStaleTrialCallback(max_retry=retries)`` puts a WAITING
    copy of it back.

    SQLite: Python's sqlite3 driver starts a transaction only at the first write, so Optuna's
    "read the trial, check it is WAITING, mark it RUNNING" would not be atomic and two processes
    could take the same trial. Every transaction here starts with ``BEGIN IMMEDIATE`` instead,
    which takes the database's write lock up front; others wait for it up to
    SQLITE_TIMEOUT_S rather than failing with "database is locked". The file is in WAL mode, so
    readers outside the sweep never block it. PostgreSQL needs none of this: Optuna locks the
    trial row with SELECT ... FOR UPDATE.
    """
    url = _normalize(storage)
    sqlite = url.startswith("sqlite")
    if sqlite:
        _prepare_sqlite_file(sqlalchemy.engine.make_url(url).database)
        engine_kwargs: dict[str, Any] = {
            "connect_args": {"timeout": SQLITE_TIMEOUT_S, "isolation_level": None}
        }
    else:
        engine_kwargs = {"pool_pre_ping": True}
    heartbeat: dict[str, Any] = {}
    if heartbeat_interval is not None:
        heartbeat = {"heartbeat_interval": heartbeat_interval, "grace_period": grace_period}
        if retries > 0:
            with _quiet():
                callback = optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=retries)
            heartbeat["heartbeat_stale_trial_callback"] = callback
    rdb = _retry(lambda: optuna.storages.RDBStorage(url, engine_kwargs, **heartbeat))
    if sqlite:
        sqlalchemy.event.listen(rdb.engine, "begin", _begin_immediate)
    return rdb


def configuration_trials(trials: list[FrozenTrial]) -> dict[str, list[FrozenTrial]]:
    """Trials grouped by configuration, each group in trial order."""
    groups: dict[str, list[FrozenTrial]] = {}
    for trial in sorted(trials, key=lambda t: t.number):
        groups.setdefault(config_key(trial.params), []).append(trial)
    return groups


def _normalize(storage: str) -> str:
    if not isinstance(storage, str) or not storage.strip():
        raise ValueError(f"storage: expected a SQLite path or a database URL, got {storage!r}")
    storage = storage.strip()
    if "://" not in storage:
        return f"sqlite:///{Path(storage).expanduser().resolve()}"
    scheme = storage.split("://", 1)[0].lower()
    if scheme in ("postgresql", "postgres"):
        storage = "postgresql+psycopg2://" + storage.split("://", 1)[1]
    elif scheme not in ("sqlite", "postgresql+psycopg2"):
        raise ValueError(
            f"storage: unsupported URL scheme {scheme!r}; use a SQLite file path, "
            "sqlite:///FILE or postgresql://USER:PASSWORD@HOST[:PORT]/DATABASE"
        )
    try:
        url = sqlalchemy.engine.make_url(storage)
    except sqlalchemy.exc.ArgumentError as error:
        raise ValueError(f"storage: cannot parse {storage!r} as a database URL ({error})") from None
    if scheme == "sqlite" and (not url.database or url.database == ":memory:"):
        raise ValueError(
            "storage: an in-memory SQLite database cannot be shared by worker processes; "
            "give a file, e.g. sqlite:///results/sweep.db"
        )
    if scheme != "sqlite" and not url.database:
        raise ValueError(f"storage: {storage!r} names no database (…/DATABASE)")
    return storage


def _load(rdb: optuna.storages.RDBStorage, study_name: str) -> optuna.Study:
    try:
        return optuna.load_study(
            study_name=study_name, storage=rdb, sampler=optuna.samplers.RandomSampler(seed=0)
        )
    except KeyError:
        raise ValueError(f"study_name: no sweep named {study_name!r} in this storage") from None


def _store_spec(study: optuna.Study, spec: SweepSpec) -> None:
    """The spec's parts, one attribute each, its format and the writing sigprop's version,
    then ``n_configurations``: readers wait for it."""
    for key, value in spec.to_json().items():
        study.set_user_attr(key, value)
    study.set_user_attr("spec_format", SPEC_FORMAT)
    study.set_user_attr("sigprop_version", _version())
    study.set_user_attr("n_configurations", len(spec.configurations()))


def _stored_spec(study: optuna.Study, wait_s: float = ENQUEUE_STALL_S) -> SweepSpec | None:
    """The spec stored with the study, waiting a little for a creator that is writing it;
    ``StorageError`` if another sigprop wrote it in a layout this one cannot read."""
    deadline = time.monotonic() + wait_s
    while True:
        attrs = study.user_attrs
        if "n_configurations" in attrs:
            return _readable_spec(study.study_name, attrs)
        if time.monotonic() > deadline:
            return None
        time.sleep(0.2)


def _readable_spec(study_name: str, attrs: dict[str, Any]) -> SweepSpec:
    """The stored spec, or ``StorageError`` naming the sigprop that wrote it (studies written
    before the format was recorded have layout 1)."""
    written_by = attrs.get("sigprop_version", "an earlier version")
    refusal = (f"study {study_name!r} was written by sigprop {written_by} (sweep format "
               f"{attrs.get('spec_format', 1)}), which this sigprop ({_version()}, format "
               f"{SPEC_FORMAT}) cannot read; it was left as it is: use the sigprop that wrote "
               "it, or another study name")
    if not isinstance(attrs.get("spec_format", 1), int) or attrs.get("spec_format", 1) > SPEC_FORMAT:
        raise StorageError(refusal)
    try:
        return SweepSpec.from_json(attrs)
    except (KeyError, TypeError, ValueError) as error:
        raise StorageError(f"{refusal} ({type(error).__name__}: {error})") from None


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("sigprop")
    except PackageNotFoundError:
        return "unknown"


def _wait_for_enqueue(study: optuna.Study) -> None:
    """Wait until the study's creator has enqueued every configuration, or has stopped making
    progress for ENQUEUE_STALL_S (it died: the caller enqueues what is missing)."""
    count, since = -1, time.monotonic()
    while not study.user_attrs.get("enqueued"):
        now_count = len(study.get_trials(deepcopy=False))
        if now_count != count:
            count, since = now_count, time.monotonic()
        elif time.monotonic() - since > ENQUEUE_STALL_S:
            return
        time.sleep(0.2)


def _enqueue_missing(study: optuna.Study, spec: SweepSpec) -> None:
    live = (TrialState.WAITING, TrialState.RUNNING, TrialState.COMPLETE)
    groups = configuration_trials(study.get_trials(deepcopy=False))
    distributions = {
        name: optuna.distributions.CategoricalDistribution(tuple(values))
        for name, values in spec.grid.items()
    } | {
        name: optuna.distributions.FloatDistribution(low, high)
        for name, (low, high) in spec.sampled.items()
    }
    for index, config in enumerate(spec.configurations()):
        if any(t.state in live for t in groups.get(config_key(config), [])):
            continue
        study.add_trial(
            optuna.trial.create_trial(
                state=TrialState.WAITING,
                params=config,
                distributions=distributions,
                user_attrs={"config_index": index},
                system_attrs={"fixed_params": config},
            )
        )


def _mismatch(study_name: str, stored: SweepSpec, given: SweepSpec) -> str:
    stored_json, given_json = stored.to_json(), given.to_json()
    differences = []
    for part in stored_json:
        if part == "sample_positions":
            continue  # follow from the screen, reported below
        if not (isinstance(stored_json[part], dict) and isinstance(given_json[part], dict)):
            if stored_json[part] != given_json[part]:
                differences.append(f"{part}: stored {stored_json[part]}, given {given_json[part]}")
            continue
        for name in sorted(set(stored_json[part]) | set(given_json[part])):
            old, new = stored_json[part].get(name), given_json[part].get(name)
            if _canonical(old, part) != _canonical(new, part):
                differences.append(f"{part}[{name!r}]: stored {old if old is not None else '(absent)'}, "
                                   f"given {new if new is not None else '(absent)'}")
    return (
        f"study {study_name!r} already holds a different sweep ({'; '.join(differences)}); "
        "give it the same swept and fixed settings, or use another study name"
    )


def _canonical(value: Any, part: str) -> Any:
    """A grid list compares as a set of values, a sampled range as [low, high], a fixed
    setting as one value."""
    if isinstance(value, list):
        keys = [config_key({"v": v}) for v in value]
        return frozenset(keys) if part == "grid" else tuple(keys)
    return config_key({"v": value})


def _prepare_sqlite_file(path: str) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    connection = sqlite3.connect(path, timeout=SQLITE_TIMEOUT_S, isolation_level=None)
    try:
        # Persistent in the file; needs a moment without other writers, hence the timeout.
        connection.execute("PRAGMA journal_mode=WAL")
    except sqlite3.OperationalError:
        pass  # still correct in the default rollback-journal mode, only less concurrent
    finally:
        connection.close()


def _begin_immediate(connection: sqlalchemy.engine.Connection) -> None:
    connection.exec_driver_sql("BEGIN IMMEDIATE")


def _retry(make, attempts: int = 5):
    """Creating the tables from several processes at once can collide; the loser retries."""
    for attempt in range(attempts):
        try:
            with _quiet():
                return make()
        except (sqlalchemy.exc.SQLAlchemyError, optuna.exceptions.StorageInternalError):
            if attempt == attempts - 1:
                raise
            time.sleep(0.2 * (attempt + 1))


@contextlib.contextmanager
def _quiet():
    """Optuna marks the heartbeat API experimental and warns at every use, and logs every
    study it creates at INFO level: the sweep's own progress display says what matters."""
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(max(verbosity, optuna.logging.WARNING))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            yield
    finally:
        optuna.logging.set_verbosity(verbosity)


def existing_storage(storage: str | Path) -> str:
    """The URL of a storage that must already hold a sweep: a SQLite file must exist (opening
    it would create an empty one). ``InvalidHyperparameter`` otherwise."""
    url = normalize_storage(str(storage), Path(str(storage)))
    if url.startswith("sqlite"):
        database = Path(sqlalchemy.engine.make_url(url).database)
        if not database.is_file():
            raise InvalidHyperparameter(f"storage: no such SQLite file {database}")
    return url


@guarded
def find_study(url: str, study: str | None) -> tuple[str, dict[str, Any]]:
    """The name and user attributes of the sweep ``study``, or of the storage's only study.
    ``InvalidHyperparameter`` naming the studies there are when it is ambiguous or missing."""
    studies = {s.study_name: s for s in connect(url).get_all_studies()}
    names = sorted(studies)
    if study is None and len(names) == 1:
        study = names[0]
    elif not names:
        raise InvalidHyperparameter(f"storage {url} holds no study")
    elif study is None:
        raise InvalidHyperparameter(f"storage holds {len(names)} studies; choose one with "
                                    f"--study: {', '.join(names)}")
    elif study not in studies:
        raise InvalidHyperparameter(f"no study named {study!r} in the storage; available: "
                                    f"{', '.join(names)}")
    attrs = studies[study].user_attrs
    if "fixed" not in attrs:
        raise InvalidHyperparameter(f"study {study!r} is not a sigprop sweep (no stored spec)")
    _readable_spec(study, attrs)
    return study, attrs


def read_artifact(url: str, study: str, attrs: dict[str, Any], name: str) -> dict | None:
    """A JSON artifact kept with a study (``write_artifact``): the file beside a SQLite database,
    else the study's user attribute ``name`` (``attrs``); None if absent or unreadable."""
    path = artifact_path(url, study, name)
    if path is None:
        return attrs.get(name)
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return data if isinstance(data, dict) and data.get("study") == study else None


@guarded
def write_artifact(url: str, study: str, name: str, data: dict) -> None:
    """Keep the JSON ``data`` (with a "study" key) with the study: as ``X.<study>.<name>.json``
    beside a SQLite file ``X.sqlite`` (replaced atomically), else as its user attribute
    ``name`` (other databases)."""
    path = artifact_path(url, study, name)
    if path is None:
        open_study(url, study, None).set_user_attr(name, data)
        return
    partial = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    partial.write_text(json.dumps(data, indent=1, allow_nan=False) + "\n")
    os.replace(partial, path)


def artifact_path(url: str, study: str, name: str) -> Path | None:
    """Where ``write_artifact`` keeps ``name`` beside a SQLite file; None for other databases
    (the study's user attribute holds it)."""
    if not url.startswith("sqlite"):
        return None
    database = Path(sqlalchemy.engine.make_url(url).database)
    safe = re.sub(r"[^\w.-]", "_", study)
    return database.with_name(f"{database.stem}.{safe}.{name}.json")
