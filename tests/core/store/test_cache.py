"""Score cache: content-keyed cards, the file-signature fast path, WAL, upserts and rescan speed. What is
not about SQLite's file runs on a SQLite file and on a PostgreSQL library (the ``library`` fixture)."""

from __future__ import annotations

import hashlib
import os
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text

from humanaes_core.store import scores as scores_mod
from humanaes_core.store.errors import CacheUnavailableError, CacheVersionError
from humanaes_core.store.hashing import content_hash_file
from humanaes_core.store.migrations import CACHE_COMPONENT
from humanaes_core.store.scores import ScoreCache

MODEL = "internvl-1b@abc123"
SETTINGS = "tiles=6;prompt=0"

CARD = {
    "overall": 0.71,
    "dims": {"facial_brightness": {"score": 0.62, "level": "good"}, "environment": {"score": 0.18}},
    "levels": ["bad", "poor", "fair", "good", "excellent"],
    "note": "ünïcødé ok",
    "flags": {"face_found": True, "crop": None},
}


@pytest.fixture
def cache(library: Path | str) -> Iterator[ScoreCache]:
    with ScoreCache(library) as c:
        yield c


@pytest.fixture
def sqlite_cache(tmp_path: Path) -> Iterator[ScoreCache]:
    with ScoreCache(tmp_path / "db" / "cache.sqlite") as c:
        yield c


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Record every full read of a file the cache performs."""
    calls: list[str] = []
    real = scores_mod.content_hash_file

    def counting(path: str | Path) -> str:
        calls.append(os.fspath(path))
        return real(path)

    monkeypatch.setattr(scores_mod, "content_hash_file", counting)
    return calls


def _write(path: Path, data: bytes, mtime_s: int = 1_600_000_000) -> Path:
    """Write a file with an explicit, old mtime so tests never depend on timestamp granularity."""
    path.write_bytes(data)
    os.utime(path, ns=(mtime_s * 10**9, mtime_s * 10**9))
    return path


def test_content_hash_file_is_blake2b_160(tmp_path: Path) -> None:
    data = os.urandom(3 * (1 << 20) + 123)  # spans several 1 MiB chunks and a partial one
    f = _write(tmp_path / "big.bin", data)
    assert content_hash_file(f) == hashlib.blake2b(data, digest_size=20).hexdigest()
    assert len(content_hash_file(f)) == 40


def test_round_trip_nested_card(cache: ScoreCache, library: Path | str, tmp_path: Path) -> None:
    h = cache.content_hash(_write(tmp_path / "a.jpg", b"photo-a"))
    assert cache.get(h, MODEL, SETTINGS) is None
    cache.put(h, MODEL, SETTINGS, CARD)
    assert cache.get(h, MODEL, SETTINGS) == CARD
    assert cache.path == library
    assert cache.shared == isinstance(library, str)
    assert isinstance(library, str) or library.exists()


def test_keys_separate_by_model_and_settings(cache: ScoreCache) -> None:
    h = "0" * 40
    cache.put(h, MODEL, SETTINGS, {"v": 1})
    cache.put(h, "internvl-8b@def456", SETTINGS, {"v": 2})
    cache.put(h, MODEL, "tiles=12;prompt=0", {"v": 3})
    assert cache.get(h, MODEL, SETTINGS) == {"v": 1}
    assert cache.get(h, "internvl-8b@def456", SETTINGS) == {"v": 2}
    assert cache.get(h, MODEL, "tiles=12;prompt=0") == {"v": 3}
    assert cache.get(h, "internvl-8b@def456", "tiles=12;prompt=0") is None
    assert cache.count() == 3
    assert cache.count(MODEL) == 2
    assert cache.count("internvl-8b@def456") == 1
    assert cache.count("nope") == 0


def test_same_content_two_paths_shares_card(cache: ScoreCache, tmp_path: Path) -> None:
    a = _write(tmp_path / "a.jpg", b"identical bytes")
    (tmp_path / "copy").mkdir()
    b = _write(tmp_path / "copy" / "renamed.jpg", b"identical bytes", mtime_s=1_700_000_000)
    other = _write(tmp_path / "c.jpg", b"different bytes")
    ha, hb = cache.content_hash(a), cache.content_hash(b)
    assert ha == hb
    assert cache.content_hash(other) != ha
    cache.put(ha, MODEL, SETTINGS, CARD)
    assert cache.get(hb, MODEL, SETTINGS) == CARD


def test_modified_file_gets_new_hash(cache: ScoreCache, tmp_path: Path, reads: list[str]) -> None:
    f = _write(tmp_path / "a.jpg", b"version-1")
    h1 = cache.content_hash(f)
    # Same size, different bytes, newer mtime: must be detected and re-read.
    _write(f, b"version-2", mtime_s=1_600_000_100)
    h2 = cache.content_hash(f)
    assert h2 != h1
    assert h2 == content_hash_file(f)
    # Size change alone (mtime restored) is also a change.
    _write(f, b"version-2 but longer", mtime_s=1_600_000_100)
    h3 = cache.content_hash(f)
    assert h3 not in (h1, h2)
    assert len(reads) == 3
    # The row was updated, not duplicated: the new hash is now served from the fast path.
    assert cache.content_hash(f) == h3
    assert len(reads) == 3


def test_fast_path_avoids_reading(cache: ScoreCache, tmp_path: Path, reads: list[str]) -> None:
    f = _write(tmp_path / "a.jpg", b"x" * 5000)
    first = cache.content_hash(f)
    assert len(reads) == 1
    assert cache.content_hash(f) == first
    assert cache.content_hash(str(f)) == first
    assert len(reads) == 1  # second and third calls: no reads


def test_fast_path_is_persistent_across_instances(
    library: Path | str, tmp_path: Path, reads: list[str]
) -> None:
    db = library
    f = _write(tmp_path / "a.jpg", b"persist")
    with ScoreCache(db) as c1:
        h = c1.content_hash(f)
    with ScoreCache(db) as c2:
        assert c2.content_hash(f) == h
    assert len(reads) == 1


def test_content_hashes_1000_files_cached_rescan(cache: ScoreCache, tmp_path: Path, reads: list[str]) -> None:
    folder = tmp_path / "shoot"
    folder.mkdir()
    files = [_write(folder / f"IMG_{i:04d}.jpg", f"photo {i}".encode() * 20) for i in range(1000)]

    first = cache.content_hashes(files)
    assert len(reads) == 1000
    assert all(isinstance(v, str) for v in first.values())
    assert len(set(first.values())) == 1000
    assert first[files[7]] == content_hash_file(files[7])

    reads.clear()
    t0 = time.perf_counter()
    second = cache.content_hashes(files)
    elapsed = time.perf_counter() - t0
    assert reads == []
    assert second == first
    assert list(second) == files  # caller's order
    per_file_ms = elapsed * 1000 / len(files)
    print(f"cached rescan: {per_file_ms:.4f} ms/file ({elapsed * 1000:.1f} ms for {len(files)} files)")
    assert per_file_ms < 2.0


def test_content_hashes_reports_missing_and_unreadable(cache: ScoreCache, tmp_path: Path) -> None:
    good = _write(tmp_path / "good.jpg", b"fine")
    missing = tmp_path / "gone.jpg"
    a_dir = tmp_path / "subdir"
    a_dir.mkdir()
    out = cache.content_hashes([good, str(missing), a_dir])
    assert out[good] == content_hash_file(good)
    assert isinstance(out[missing], FileNotFoundError)
    assert isinstance(out[a_dir], OSError)
    with pytest.raises(FileNotFoundError):
        cache.content_hash(missing)
    # Errors are not cached: once the file appears it hashes normally.
    _write(missing, b"now here")
    assert cache.content_hash(missing) == content_hash_file(missing)


def test_content_hashes_only_rehashes_changed(cache: ScoreCache, tmp_path: Path, reads: list[str]) -> None:
    files = [_write(tmp_path / f"{i}.jpg", bytes([i]) * 100) for i in range(10)]
    cache.content_hashes(files)
    reads.clear()
    _write(files[3], b"edited", mtime_s=1_650_000_000)
    new = _write(tmp_path / "new.jpg", b"new photo")
    out = cache.content_hashes([*files, new, files[0]])  # duplicate input is harmless
    assert sorted(reads) == sorted([os.path.abspath(files[3]), os.path.abspath(new)])
    assert out[files[3]] == content_hash_file(files[3])


def test_get_many_and_put_many(cache: ScoreCache) -> None:
    rows = [(f"{i:040x}", {"overall": i / 1200}) for i in range(1200)]  # > 2 chunks of parameters
    cache.put_many(rows, MODEL, SETTINGS)
    assert cache.count(MODEL) == 1200
    wanted = [h for h, _ in rows[::3]] + ["f" * 40]
    got = cache.get_many(wanted, MODEL, SETTINGS)
    assert len(got) == 400
    assert "f" * 40 not in got
    assert got[rows[300][0]] == {"overall": 300 / 1200}
    assert cache.get_many(wanted, MODEL, "other settings") == {}
    assert cache.get_many([], MODEL, SETTINGS) == {}


def test_upsert_replaces_without_duplicates(cache: ScoreCache) -> None:
    h = "a" * 40
    cache.put(h, MODEL, SETTINGS, {"v": 1})
    cache.put(h, MODEL, SETTINGS, {"v": 2})
    cache.put_many([(h, {"v": 3}), ("b" * 40, {"v": 9})], MODEL, SETTINGS)
    assert cache.count() == 2
    assert cache.get(h, MODEL, SETTINGS) == {"v": 3}


def test_put_rejects_non_dict_without_partial_write(cache: ScoreCache) -> None:
    with pytest.raises(TypeError):
        cache.put_many([("a" * 40, {"ok": 1}), ("b" * 40, [1, 2])], MODEL, SETTINGS)  # type: ignore[list-item]
    assert cache.count() == 0


def test_wal_and_pragmas(sqlite_cache: ScoreCache) -> None:
    cache = sqlite_cache
    with cache.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 30000
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 1  # NORMAL
    # WAL is persistent in the file itself, visible to any client.
    raw = sqlite3.connect(cache.path)
    try:
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        raw.close()


def test_schema_tables_and_version(sqlite_cache: ScoreCache) -> None:
    cache = sqlite_cache
    raw = sqlite3.connect(cache.path)
    try:
        tables = {r[0] for r in raw.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        version = raw.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()[0]
    finally:
        raw.close()
    assert {"meta", "file_hashes", "scores"} <= tables
    assert version == str(CACHE_COMPONENT.head) == "2"
    assert cache.schema_version == 2


def test_newer_schema_is_refused(library: Path | str) -> None:
    with ScoreCache(library) as cache, cache.engine.begin() as conn:
        conn.execute(text("UPDATE meta SET value='99' WHERE key='schema_version'"))
    with pytest.raises(CacheVersionError, match="newer HumanAes"):
        ScoreCache(library)


def test_second_instance_sees_writes(library: Path | str) -> None:
    db = library
    with ScoreCache(db) as writer, ScoreCache(db) as reader:
        assert reader.get("c" * 40, MODEL, SETTINGS) is None
        writer.put("c" * 40, MODEL, SETTINGS, CARD)
        assert reader.get("c" * 40, MODEL, SETTINGS) == CARD
        assert reader.count() == 1
        writer.put("c" * 40, MODEL, SETTINGS, {"v": "new"})
        assert reader.get_many(["c" * 40], MODEL, SETTINGS) == {"c" * 40: {"v": "new"}}


# ------------------------------------------------------------------ the whole signature (issue 16, item 14)


def test_a_same_size_photo_swapped_in_with_its_mtime_restored_is_read_again(
    cache: ScoreCache, tmp_path: Path, reads: list[str]
) -> None:
    """``cp -p other.jpg a.jpg`` or ``rsync -t``: same size, same mtime, another inode (and ctime)."""
    f = _write(tmp_path / "a.jpg", b"version-1")
    first = cache.content_hash(f)
    other = _write(tmp_path / "incoming.tmp", b"version-2")  # same size, same mtime
    os.replace(other, f)
    assert (f.stat().st_size, f.stat().st_mtime_ns) == (9, 1_600_000_000 * 10**9)
    assert cache.content_hash(f) == content_hash_file(f) != first
    assert len(reads) == 2
    assert cache.content_hash(f) == content_hash_file(f) and len(reads) == 2  # and then fast again


def test_a_photo_rewritten_in_place_with_its_mtime_restored_is_read_again(
    cache: ScoreCache, tmp_path: Path, reads: list[str]
) -> None:
    """Same inode, same size, mtime set back: only the ctime, which nobody can set back, tells."""
    f = _write(tmp_path / "a.jpg", b"version-1")
    first = cache.content_hash(f)
    ino, ctime = f.stat().st_ino, f.stat().st_ctime_ns
    deadline = time.monotonic() + 5
    while f.stat().st_ctime_ns == ctime and time.monotonic() < deadline:  # past the clock's tick
        time.sleep(0.01)
        _write(f, b"version-2")
    assert f.stat().st_ino == ino and f.stat().st_ctime_ns != ctime
    assert cache.content_hash(f) == content_hash_file(f) != first


def test_rows_of_cache_schema_1_are_read_again_once(tmp_path: Path, reads: list[str]) -> None:
    """A v1 row has no ctime, inode or device: it cannot vouch for the file, so the file is hashed again."""
    f = _write(tmp_path / "a.jpg", b"the real bytes")
    db = tmp_path / "v1.sqlite"
    conn = sqlite3.connect(db)
    conn.executescript((Path(__file__).resolve().parents[2] / "fixtures" / "schema_v1.sql").read_text())
    with conn:  # what HumanAes 0.1 stored for the file that was at this path before
        conn.execute(
            "INSERT INTO file_hashes VALUES (?, ?, ?, ?)", (str(f), 14, f.stat().st_mtime_ns, "9" * 40)
        )
    conn.close()
    with ScoreCache(db) as cache:
        assert cache.schema_found == 1
        assert cache.content_hash(f) == content_hash_file(f)
        assert cache.content_hash(f) == content_hash_file(f)
    assert len(reads) == 1


# ------------------------------------------------------------------ values beyond int64 (issue 16, item 8)


def test_a_file_dated_after_2262_is_hashed_and_remembered(
    cache: ScoreCache, tmp_path: Path, reads: list[str]
) -> None:
    """Nanoseconds since 1970 leave SQLite's int64 in April 2262: storing that raised OverflowError and
    stopped the scan of the whole folder."""
    future = _write(tmp_path / "future.jpg", b"from the future")
    year_3000 = 32_503_680_000 * 10**9
    os.utime(future, ns=(year_3000, year_3000))
    if future.stat().st_mtime_ns < 2**63:
        pytest.skip("this file system cannot date a file after 2262")
    ordinary = _write(tmp_path / "ordinary.jpg", b"from today")
    out = cache.content_hashes([future, ordinary])
    assert out == {future: content_hash_file(future), ordinary: content_hash_file(ordinary)}
    assert cache.content_hashes([future, ordinary]) == out and len(reads) == 2  # fast path on the 2nd
    os.utime(future, ns=(year_3000 + 1, year_3000 + 1))  # a change out there is still seen
    assert cache.content_hash(future) == out[future] and len(reads) == 3


def test_inodes_and_devices_beyond_int64_are_stored(
    cache: ScoreCache, tmp_path: Path, reads: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Inodes use all 64 unsigned bits on some file systems (st_dev too): stored wrapped, still exact."""
    real = scores_mod.signature_of
    monkeypatch.setattr(
        scores_mod, "signature_of", lambda st: real(st)._replace(ino=2**64 - 1, dev=2**63 + 7)
    )
    f = _write(tmp_path / "a.jpg", b"on a big file system")
    assert cache.content_hash(f) == content_hash_file(f)
    assert cache.content_hash(f) == content_hash_file(f) and len(reads) == 1
    monkeypatch.setattr(
        scores_mod, "signature_of", lambda st: real(st)._replace(ino=2**64 - 2, dev=2**63 + 7)
    )
    assert cache.content_hash(f) == content_hash_file(f) and len(reads) == 2  # another inode: read again
    wrap = scores_mod._int64
    assert [wrap(v) for v in (0, 2**63 - 1, -(2**63), 123)] == [0, 2**63 - 1, -(2**63), 123]
    assert len({wrap(v) for v in (2**63, 2**63 + 1, 2**64 - 1, 1, 0)}) == 5


def _open_descriptors(path: Path) -> int:
    """How many of this process's file descriptors point at `path`."""
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            count += os.readlink(f"/proc/self/fd/{fd}") == str(path)
        except OSError:
            continue
    return count


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc/self/fd (Linux)")
def test_lookups_from_many_threads_leave_no_connection_behind(tmp_path: Path) -> None:
    """Cached lookups run on plain sqlite3 readers (no SQLAlchemy) that can only read; a few are kept
    between lookups: a long-lived store read from many threads does not pile up open files, and closing
    the store lets go of the file entirely (another process may then clean up its WAL)."""
    import threading

    db = tmp_path / "library.sqlite"
    cache = ScoreCache(db)
    cache.put("a" * 40, "m", "s", {"x": 1})
    found: list[dict | None] = []
    for _ in range(3):
        threads = [
            threading.Thread(target=lambda: found.append(cache.get("a" * 40, "m", "s"))) for _ in range(10)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert found == [{"x": 1}] * 30
    # SQLite keeps a closed connection's descriptor while another of the process holds a lock on the
    # file, and reuses it for the next: bounded by the lookups at once (10), not by all 30
    assert _open_descriptors(db) <= 10 + 1
    with pytest.raises(CacheUnavailableError, match=r"readonly|read-only"):
        cache._query("DELETE FROM scores")  # the lookup path can never write
    assert cache.count() == 1
    cache.close()
    assert _open_descriptors(db) == 0
