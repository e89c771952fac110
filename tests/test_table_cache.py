"""The on-disk array cache: round trip, exact keys, atomic writes, recovery, disabling."""

import os
from pathlib import Path

import numpy as np
import pytest

import sigprop.theory.table_cache as table_cache
from sigprop.theory.table_cache import cache_directory, cached, key_digest


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    root = tmp_path / "cache"
    monkeypatch.setenv("SIGPROP_CACHE", str(root))
    return root


class Counter:
    """compute() stand-in that counts its calls."""

    def __init__(self, value):
        self.value, self.calls = np.asarray(value), 0

    def __call__(self):
        self.calls += 1
        return self.value.copy()


def never():
    raise AssertionError("computed although the value is cached")


def files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_round_trip(cache):
    compute = Counter(np.arange(12.0).reshape(3, 4) / 7)
    key = ("v1", 16, 0.6)
    first = cached("tables", key, compute)
    assert compute.calls == 1 and np.array_equal(first, compute.value)
    second = cached("tables", key, never)  # loaded, compute not called
    assert np.array_equal(second, first) and second.dtype == first.dtype
    assert files(cache / "tables") == [key_digest(key) + ".npy"]  # no temporary left behind


def test_keys_are_exact_and_typed(cache):
    x = 0.6
    keys = [("v1", x), ("v1", np.nextafter(x, 1.0)), ("v2", x), ("v1", 1), ("v1", 1.0),
            ("v1", "1"), ("v1", 1, 2), ("v1", 12)]
    assert len({key_digest(key) for key in keys}) == len(keys)
    assert key_digest(("v1", np.float64(x), np.int64(3))) == key_digest(("v1", x, 3))
    for index, key in enumerate(keys):
        cached("k", key, Counter([float(index)]))
    for index, key in enumerate(keys):
        assert cached("k", key, never)[0] == index


def test_key_needs_a_version_string_and_plain_values(cache):
    with pytest.raises(TypeError, match="version"):
        cached("k", (16, 0.6), never)
    with pytest.raises(TypeError, match="version"):
        cached("k", (), never)
    with pytest.raises(TypeError, match="str, int or float"):
        cached("k", ("v1", [1, 2]), never)
    with pytest.raises(ValueError, match="kind"):
        cached("../elsewhere", ("v1",), never)


@pytest.mark.parametrize("damage", ["garbage", "truncated", "empty", "pickled"])
def test_corrupt_file_is_recomputed_and_overwritten(cache, damage):
    key, value = ("v1", 3), np.linspace(0.0, 1.0, 50)
    cached("k", key, Counter(value))
    path = cache / "k" / (key_digest(key) + ".npy")
    good = path.read_bytes()
    if damage == "garbage":
        path.write_bytes(b"not an npy file at all")
    elif damage == "truncated":
        path.write_bytes(good[: len(good) // 2])
    elif damage == "empty":
        path.write_bytes(b"")
    else:  # an object array: np.load(allow_pickle=False) refuses it
        np.save(path, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    compute = Counter(value)
    assert np.array_equal(cached("k", key, compute), value)
    assert compute.calls == 1
    assert np.array_equal(np.load(path, allow_pickle=False), value)  # overwritten with a good one
    assert files(cache / "k") == [path.name]


def test_writes_are_atomic(cache, monkeypatch):
    """The array goes to a temporary file in the same folder, renamed onto the final name; a
    write that fails half-way leaves neither a partial final file nor the temporary."""
    key, value = ("v1", 5), np.arange(1000.0)
    final = cache / "k" / (key_digest(key) + ".npy")
    real_save, real_replace, renames = np.save, os.replace, []

    def replace(source, target):
        source, target = Path(source), Path(target)
        assert source.parent == target.parent and source.name.startswith(".")
        assert not target.exists()  # nothing visible under the final name before the rename
        assert np.array_equal(np.load(source, allow_pickle=False), value)  # complete already
        renames.append(target)
        real_replace(source, target)

    monkeypatch.setattr(table_cache.os, "replace", replace)
    assert np.array_equal(cached("k", key, Counter(value)), value)
    assert renames == [final] and files(final.parent) == [final.name]

    def failing_save(stream, array, allow_pickle):
        stream.write(b"\x93NUMPY half")
        raise OSError("disk full")

    other = ("v1", 6)
    monkeypatch.setattr(table_cache.np, "save", failing_save)
    assert np.array_equal(cached("k", other, Counter(value)), value)  # still computed
    assert files(final.parent) == [final.name]  # no partial file, no temporary
    monkeypatch.setattr(table_cache.np, "save", real_save)
    compute = Counter(value)
    cached("k", other, compute)
    assert compute.calls == 1  # nothing was stored by the failed write


@pytest.mark.parametrize("setting", ["off", "OFF"])
def test_disabled_cache_computes_every_time(tmp_path, monkeypatch, setting):
    monkeypatch.setenv("SIGPROP_CACHE", setting)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    compute = Counter([1.0, 2.0])
    for _ in range(3):
        assert np.array_equal(cached("k", ("v1",), compute), [1.0, 2.0])
    assert compute.calls == 3
    assert cache_directory() is None
    assert files(tmp_path) == []  # nothing written anywhere


def test_unwritable_location_still_computes(tmp_path, monkeypatch):
    blocker = tmp_path / "a-file"
    blocker.write_text("a file where the cache folder would go")
    monkeypatch.setenv("SIGPROP_CACHE", str(blocker / "cache"))
    compute = Counter([3.0])
    for _ in range(2):
        assert np.array_equal(cached("k", ("v1",), compute), [3.0])
    assert compute.calls == 2


def test_location(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("SIGPROP_CACHE", str(tmp_path / "mine"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_directory() == tmp_path / "mine"
    monkeypatch.setenv("SIGPROP_CACHE", "")
    assert cache_directory() == tmp_path / "xdg" / "sigprop"
    monkeypatch.delenv("SIGPROP_CACHE")
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert cache_directory() == tmp_path / "home" / ".cache" / "sigprop"
    cached("k", ("v1",), Counter([1.0]))
    assert len(files(tmp_path / "home" / ".cache" / "sigprop" / "k")) == 1


def test_trim_keeps_the_cache_within_its_bound_dropping_the_least_recently_used(cache):
    arrays = [np.full(1024, float(i)) for i in range(12)]  # 8 kB each
    for i, array in enumerate(arrays):
        table_cache.store("k", ("v1", i), array)
        os.utime(cache / "k" / f"{key_digest(('v1', i))}.npy", (1000 + i, 1000 + i))
    assert table_cache.stored("k", ("v1", 0)) is not None  # read: now the most recently used
    size = sum(p.stat().st_size for p in (cache / "k").iterdir())
    bound = size // 2
    deleted = table_cache.trim(cache, bound)
    left = sum(p.stat().st_size for p in (cache / "k").iterdir())
    assert deleted > 0 and left <= table_cache.TRIM_TO * bound
    assert table_cache.stored("k", ("v1", 0)) is not None  # used last, kept
    assert table_cache.stored("k", ("v1", 1)) is None  # the oldest, dropped
    assert table_cache.trim(cache, bound) == 0  # within the bound: nothing to do


def test_stores_trim_the_cache_on_their_own(cache, monkeypatch):
    monkeypatch.setenv("SIGPROP_CACHE_MB", str(64 * 1024 / 2**20))  # 64 kB
    monkeypatch.setattr(table_cache, "_stores", 0)
    for i in range(3 * table_cache.TRIM_EVERY):
        table_cache.store("k", ("v1", i), np.full(1024, float(i)))  # 8 kB each
    total = sum(p.stat().st_size for p in (cache / "k").iterdir())
    assert total <= 64 * 1024 + table_cache.TRIM_EVERY * 8 * 1024


def test_a_bad_size_bound_is_named(monkeypatch):
    monkeypatch.setenv("SIGPROP_CACHE_MB", "lots")
    with pytest.raises(ValueError, match="SIGPROP_CACHE_MB"):
        table_cache.size_bound()


def test_processes_sharing_a_trimmed_cache_read_whole_arrays_or_recompute(cache):
    """Several processes store, read and trim one small cache at once: every value they get
    back is the right one (read whole, or recomputed after another process deleted it)."""
    import subprocess
    import sys

    script = (
        "import numpy as np, sigprop.theory.table_cache as c\n"
        "for i in range(300):\n"
        "    key = ('v1', i % 40)\n"
        "    got = c.cached('k', key, lambda: np.full(2048, float(key[1])))\n"
        "    assert got.shape == (2048,) and np.all(got == key[1]), (key, got[:3])\n"
        "    if i % 7 == 0:\n"
        "        c.trim(c.cache_directory(), 100_000)\n"
    )
    env = {**os.environ, "SIGPROP_CACHE": str(cache)}
    workers = [subprocess.Popen([sys.executable, "-c", script], env=env) for _ in range(3)]
    assert [w.wait(timeout=120) for w in workers] == [0, 0, 0]
