"""A small on-disk cache of computed numpy arrays, shared by processes and runs.

``cached(kind, key, compute)`` returns the array stored for ``(kind, key)``, or calls
``compute()``, stores its result and returns it. Intended for tables that are expensive to build
but depend on a few numbers only (e.g. the attention Chebyshev tables, one per (n, σ)).

Location
    ``$SIGPROP_CACHE`` if set (and not empty), else ``$XDG_CACHE_HOME/sigprop``, else
    ``~/.cache/sigprop``; each ``kind`` is a sub-folder. ``SIGPROP_CACHE=off`` (any case)
    disables the cache: ``compute()`` is called every time and nothing is read or written. A
    location that cannot be created or written to disables storing silently (the result is still
    computed and returned).

Keys
    ``key`` is a non-empty tuple of str, int and float. Its first element must be a
    format/version string that the caller bumps whenever the computation (or the layout of the
    array) changes; old files are then simply never read again. Floats are encoded exactly, via
    ``float.hex``, so keys that differ in the last bit name different files; every element is
    tagged with its type and length, so the encoding is unambiguous. The file name is the
    SHA-256 of that encoding (``<kind>/<64 hex digits>.npy``).

Size
    The cache holds at most ``$SIGPROP_CACHE_MB`` megabytes (default ``DEFAULT_MEGABYTES``):
    every ``TRIM_EVERY`` stores a process adds up the files, and if they exceed the bound it
    deletes the least recently used ones (a read touches a file's modification time) down to
    ``TRIM_TO`` of it. Processes sharing the cache may trim at once: a file another one deleted
    first is skipped, and a reader that loses a file recomputes it.

Files
    Arrays are written with ``np.save`` and read with ``np.load(allow_pickle=False)`` (no
    object arrays, nothing executable). Writes are atomic: the array goes to a temporary file in
    the same folder (``.<digest prefix>-<pid>-<random>.tmp``, never read; a killed process may
    leave one behind), which ``os.replace`` then renames onto the final name, so parallel worker
    processes see either no file or a complete one, never a half-written one (concurrent writers
    of one key each write a complete file; the last rename wins). A file that cannot be read or
    parsed (truncated, corrupt, unreadable) is recomputed and overwritten. Files are not
    fsync'ed: after a power loss a file may be empty or truncated, and is then recomputed.
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
from collections.abc import Callable
from pathlib import Path

import numpy as np

_ENVIRONMENT = "SIGPROP_CACHE"
_SIZE_ENVIRONMENT = "SIGPROP_CACHE_MB"
_KIND = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
DEFAULT_MEGABYTES = 256
TRIM_EVERY = 64  # stores of this process between two checks of the cache's size
TRIM_TO = 0.8  # a trim deletes down to this share of the bound
_stores = 0  # stores of this process since its last check

__all__ = ["cache_directory", "cached", "key_digest", "size_bound", "store", "stored", "trim"]


def cached(kind: str, key: tuple, compute: Callable[[], np.ndarray]) -> np.ndarray:
    """The array stored for (kind, key), or ``compute()``'s result, stored for next time.

    ``kind`` names a sub-folder (letters, digits, ``._-``); ``key`` is a tuple of str/int/float
    whose first element is the caller's format/version string (see the module docstring).
    """
    found = stored(kind, key)
    if found is not None:
        return found
    value = np.asarray(compute())
    store(kind, key, value)
    return value


def stored(kind: str, key: tuple) -> np.ndarray | None:
    """The array stored for (kind, key), or None when there is none (missing, unreadable, or
    the cache is off)."""
    path = _path(kind, key)
    if path is None:
        return None
    try:
        value = np.load(path, allow_pickle=False)
    except Exception:  # missing, or corrupt, truncated, unreadable
        return None
    try:
        os.utime(path)  # recently used: the last to be trimmed
    except OSError:
        pass
    return value


def store(kind: str, key: tuple, value: np.ndarray) -> None:
    """Store ``value`` for (kind, key) atomically (nothing when the cache is off or the
    location cannot be written)."""
    global _stores
    path = _path(kind, key)
    if path is not None:
        _store(path, np.asarray(value))
        _stores += 1
        if _stores >= TRIM_EVERY:
            _stores = 0
            trim(path.parent.parent)


def _path(kind: str, key: tuple) -> Path | None:
    if not isinstance(kind, str) or not _KIND.fullmatch(kind):
        raise ValueError(f"cache kind must be a plain folder name; got {kind!r}")
    digest = key_digest(key)
    root = cache_directory()
    return None if root is None else root / kind / f"{digest}.npy"


def cache_directory() -> Path | None:
    """The cache root now in effect (see the module docstring), or None when disabled."""
    setting = os.environ.get(_ENVIRONMENT, "")
    if setting.strip().lower() == "off":
        return None
    if setting:
        return Path(setting).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    if xdg:
        return Path(xdg).expanduser() / "sigprop"
    return Path.home() / ".cache" / "sigprop"


def size_bound() -> int:
    """The cache's bound in bytes: ``$SIGPROP_CACHE_MB`` megabytes, else
    ``DEFAULT_MEGABYTES``."""
    setting = os.environ.get(_SIZE_ENVIRONMENT, "").strip()
    try:
        megabytes = float(setting) if setting else DEFAULT_MEGABYTES
    except ValueError:
        raise ValueError(f"{_SIZE_ENVIRONMENT} must be a number of megabytes; got {setting!r}")
    if not 0 < megabytes < 1e7:
        raise ValueError(f"{_SIZE_ENVIRONMENT} must be in (0, 1e7) megabytes; got {setting!r}")
    return int(megabytes * 2**20)


def trim(root: Path, bound: int | None = None) -> int:
    """Delete the least recently used files of the cache at ``root`` until it holds at most
    ``TRIM_TO`` × ``bound`` bytes (default ``size_bound()``), if it holds more than ``bound``;
    returns the bytes deleted. Leftover temporary files count like any other file (a file
    being written now is the most recent, and goes last)."""
    bound = size_bound() if bound is None else bound
    files = []
    for folder in (root.iterdir() if root.is_dir() else ()):
        if not folder.is_dir():
            continue
        with os.scandir(folder) as entries:
            for entry in entries:
                try:
                    info = entry.stat()
                except OSError:
                    continue  # deleted by another process meanwhile
                files.append((info.st_mtime, info.st_size, entry.path))
    total = sum(size for _, size, _ in files)
    if total <= bound:
        return 0
    deleted = 0
    for _, size, path in sorted(files):
        if total - deleted <= TRIM_TO * bound:
            break
        try:
            os.unlink(path)
            deleted += size
        except OSError:
            pass  # gone already, or not ours to delete
    return deleted


def key_digest(key: tuple) -> str:
    """SHA-256 (hex) of the exact, type-tagged encoding of ``key``."""
    if not isinstance(key, tuple) or not key or not isinstance(key[0], str):
        raise TypeError(
            "cache key must be a non-empty tuple starting with a format/version string; "
            f"got {key!r}"
        )
    parts = []
    for item in key:
        if isinstance(item, str):
            token = "s" + item
        elif isinstance(item, (bool, np.bool_)):
            token = "b" + str(int(item))
        elif isinstance(item, (int, np.integer)):
            token = "i" + str(int(item))
        elif isinstance(item, (float, np.floating)):
            token = "f" + float(item).hex()
        else:
            raise TypeError(f"cache key elements must be str, int or float; got {item!r}")
        parts.append(f"{len(token)}:{token}")
    return hashlib.sha256(";".join(parts).encode("utf-8")).hexdigest()


def _store(path: Path, value: np.ndarray) -> None:
    """Write ``value`` to ``path`` atomically; any file-system failure is ignored."""
    temporary = path.parent / f".{path.stem[:16]}-{os.getpid()}-{secrets.token_hex(4)}.tmp"
    leftover = False
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # Like tempfile.mkstemp, but with the usual permissions (0666 minus the umask).
        handle = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        leftover = True
        with os.fdopen(handle, "wb") as stream:
            np.save(stream, value, allow_pickle=False)
        os.replace(temporary, path)
        leftover = False
    except OSError:
        pass
    finally:
        if leftover:
            try:
                os.unlink(temporary)
            except OSError:
                pass
