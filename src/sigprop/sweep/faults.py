"""Storage faults said in one line: what went wrong with the sweep's database, and what to do.

A sweep's database can fail in ways that are not bugs: a SQLite file that is not a database
(corrupted, or another kind of file), a disk that fills up, a read-only file or directory, a
PostgreSQL server that refuses connections or goes away, a study written by a sigprop whose
stored format this one cannot read. ``storage_faults`` turns the errors of these (raised by
sqlite3, psycopg2, SQLAlchemy or Optuna, which wrap one another) into ``StorageError``, a
``ValueError`` whose message names the storage and the remedy, so that the CLI prints it as one
line and exits 2. SQLite and PostgreSQL commit each transaction whole, so a fault never undoes
a stored result: rerunning the same command after the remedy resumes the sweep.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import sqlite3
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import sqlalchemy

from sigprop.spec import InvalidHyperparameter

RESUME = "results stored so far are kept; rerun the same command to resume"
T = TypeVar("T")


class StorageError(InvalidHyperparameter):
    """The sweep's database cannot be used as asked (a ``ValueError``: the CLI exits 2)."""


@contextlib.contextmanager
def storage_faults(url: str) -> Iterator[None]:
    """Re-raise a storage fault of the block as ``StorageError`` naming ``url`` (its password
    hidden); other errors pass through unchanged."""
    try:
        yield
    except StorageError:
        raise
    except Exception as error:  # noqa: BLE001 - classified below, re-raised if unknown
        message = describe_fault(error, url)
        if message is None:
            raise
        raise StorageError(message) from error


def describe_fault(error: BaseException, url: str) -> str | None:
    """The one-line description of a storage fault anywhere in ``error``'s chain of causes,
    or None if the chain holds none."""
    where = shown_url(url)
    for cause in _chain(error):
        text = str(cause).lower()
        if isinstance(cause, OSError) and cause.errno == errno.ENOSPC or (
                "disk is full" in text or "no space left" in text):
            return f"storage {where}: the disk is full; free some space ({RESUME})"
        if isinstance(cause, OSError) and cause.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
            return (f"storage {where}: cannot write {cause.filename or 'the database'} "
                    f"({cause.strerror}); give a writable --storage or --out")
        if "readonly database" in text or "read-only" in text:
            return (f"storage {where}: the database is read-only; give a writable --storage or "
                    f"--out ({RESUME} elsewhere)")
        if "file is not a database" in text or "database disk image is malformed" in text:
            return (f"storage {where}: the file is not a SQLite database (corrupted, or another "
                    "kind of file); it was left as it is: move it away or give another --storage")
        if "unable to open database file" in text:
            return (f"storage {where}: cannot open the database file (a missing or unwritable "
                    "directory?); give a writable --storage or --out")
        if _is_postgresql(cause) and ("could not connect" in text or "connection refused" in text
                                      or "could not translate host name" in text):
            return (f"storage {where}: cannot connect to the PostgreSQL server ("
                    f"{_first_line(cause)}); is it running and reachable?")
        if _is_postgresql(cause) and any(sign in text for sign in (
                "server closed the connection", "terminating connection",
                "the database system is", "could not receive data from server")):
            return f"storage {where}: the PostgreSQL server went away ({RESUME} once it is back)"
        if _is_postgresql(cause) and "password authentication failed" in text:
            return f"storage {where}: the server refused the user name or password"
        if _is_postgresql(cause) and "does not exist" in text and "database" in text:
            return f"storage {where}: {_first_line(cause)}; create the database first"
    return None


def shown_url(url: str) -> str:
    """``url`` with its password hidden."""
    try:
        return sqlalchemy.engine.make_url(url).render_as_string(hide_password=True)
    except sqlalchemy.exc.ArgumentError:
        return url


def _chain(error: BaseException) -> Iterator[BaseException]:
    """``error``, its causes and contexts, and the driver errors SQLAlchemy wraps (``orig``)."""
    seen: set[int] = set()
    stack = [error]
    while stack:
        current = stack.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        stack.extend([getattr(current, "orig", None), current.__cause__, current.__context__])


def _is_postgresql(error: BaseException) -> bool:
    return type(error).__module__.startswith(("psycopg2", "sqlalchemy")) and not isinstance(
        error, sqlite3.Error)


def _first_line(error: BaseException) -> str:
    return str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__


def guarded(function: Callable[..., T]) -> Callable[..., T]:
    """``function(storage, …)`` with the storage faults it meets raised as ``StorageError``."""

    @functools.wraps(function)
    def run(storage: str, *args: Any, **kwargs: Any) -> T:
        with storage_faults(storage):
            return function(storage, *args, **kwargs)

    return run
