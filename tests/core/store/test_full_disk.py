"""A full disk while the library is written: one line (``CacheUnavailableError``), every transaction
committed before it kept, nothing moved aside as damaged (issue 16, item 10).

Two ways to fill it: a real, small tmpfs the test mounts (root only; skipped where it cannot mount), and
SQLite's own ``max_page_count``, which raises the same SQLITE_FULL anywhere.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import event

from humanaes_core.store.decisions import DecisionStore, Flag
from humanaes_core.store.errors import CacheUnavailableError
from humanaes_core.store.hashing import content_hash_file
from humanaes_core.store.scores import ScoreCache

PAD = {"pad": "x" * 1500}


@contextlib.contextmanager
def small_disk(where: Path, size: str = "512k") -> Iterator[Path]:
    """A tmpfs of ``size`` mounted at ``where``; skips the test when this process cannot mount one."""
    where.mkdir(parents=True, exist_ok=True)
    mount, umount = shutil.which("mount"), shutil.which("umount")
    if os.name != "posix" or mount is None or umount is None or os.geteuid() != 0:
        pytest.skip("mounting a small file system needs root")
    done = subprocess.run(
        [
            mount,
            "-t",
            "tmpfs",
            "-o",
            f"size={size},mode=0755",
            f"humanaes-{uuid.uuid4().hex[:8]}",
            str(where),
        ],
        capture_output=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode(errors='replace').strip()}")
    try:
        yield where
    finally:
        subprocess.run([umount, "-l", str(where)], capture_output=True, check=False)


def fill(disk: Path, leave: int = 0) -> Path:
    """Fill ``disk`` up, then give back ``leave`` bytes; returns the filler to delete."""
    filler = disk / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        with contextlib.suppress(OSError):
            while True:
                os.write(fd, b"\0" * 65536)
        with contextlib.suppress(OSError):
            while True:
                os.write(fd, b"\0" * 512)
    finally:
        os.close(fd)
    os.truncate(filler, max(0, filler.stat().st_size - leave))
    return filler


def cap_pages(store: ScoreCache | DecisionStore, extra: int) -> None:
    """Let the file grow by at most ``extra`` pages from now on (SQLite reports SQLITE_FULL beyond)."""
    store.engine.dispose()

    def on_connect(conn, _record) -> None:
        pages = conn.execute("PRAGMA page_count").fetchone()[0]
        conn.execute(f"PRAGMA max_page_count={pages + extra}")

    event.listen(store.engine, "connect", on_connect)


def put_until_full(cache: ScoreCache) -> tuple[int, CacheUnavailableError]:
    for i in range(100_000):
        try:
            cache.put(f"{i:040x}", "m", "s", {"i": i, **PAD})
        except CacheUnavailableError as e:
            return i, e
    raise AssertionError("the disk never filled up")


def _check_full(error: CacheUnavailableError, db: Path) -> None:
    assert "disk is full" in str(error) and "\n" not in str(error)
    assert not [p for p in db.parent.iterdir() if ".damaged-" in p.name]  # full is not damage


def test_a_full_disk_ends_the_write_in_one_line_and_keeps_what_was_committed(tmp_path):
    with small_disk(tmp_path / "disk") as disk:
        db = disk / "library.sqlite"
        with ScoreCache(db) as cache, DecisionStore(db) as store:
            store.set_flag([("d" * 40, "/p/d.jpg")], Flag.PICK)
            filler = fill(disk, leave=48 << 10)
            stored, error = put_until_full(cache)
            _check_full(error, db)
            with pytest.raises(CacheUnavailableError, match="disk is full"):
                store.set_flag([("e" * 40, "/p/e.jpg")], Flag.REJECT)
            assert cache.count() == stored and store.get("d" * 40).picked  # still readable while full
        filler.unlink()
        with ScoreCache(db) as cache, DecisionStore(db) as store:  # space again: everything is there
            assert cache.recovered_from is None and cache.count() == stored
            assert cache.get(f"{stored - 1:040x}", "m", "s") == {"i": stored - 1, **PAD}
            assert store.get("d" * 40).picked and store.get("e" * 40) is None
            cache.put("f" * 40, "m", "s", {"after": True})
            assert cache.count() == stored + 1


def test_hashing_on_a_full_disk_still_answers(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="humanaes_core.store.scores")
    """The path fast path is only an optimisation: when it cannot be stored, the hashes are still right."""
    photo = tmp_path / "a.jpg"
    photo.write_bytes(b"photo bytes")
    with small_disk(tmp_path / "disk") as disk, ScoreCache(disk / "library.sqlite") as cache:
        assert cache.count() == 0  # open: its shared memory is there (creating it on a full disk fails)
        fill(disk)
        assert cache.content_hash(photo) == content_hash_file(photo)
        assert "not remembered" in caplog.text and "disk is full" in caplog.text


def test_opening_on_a_full_disk_is_one_line(tmp_path):
    photo = tmp_path / "a.jpg"
    photo.write_bytes(b"photo bytes")
    with small_disk(tmp_path / "disk") as disk:
        ScoreCache(disk / "library.sqlite").close()
        fill(disk)
        with pytest.raises(CacheUnavailableError) as e, ScoreCache(disk / "library.sqlite") as cache:
            cache.content_hash(photo)
        assert "\n" not in str(e.value) and "disk" in str(e.value)


def test_max_page_count_full_is_one_line_and_keeps_what_was_committed(tmp_path):
    db = tmp_path / "library.sqlite"
    with ScoreCache(db) as cache:
        cache.put("0" * 40, "m", "s", {"first": True})
        cap_pages(cache, extra=6)
        stored, error = put_until_full(cache)
        _check_full(error, db)
        with pytest.raises(CacheUnavailableError, match="disk is full"):
            cache.put_many([(f"{i:040x}", PAD) for i in range(10_000, 10_050)], "m", "s")
    with ScoreCache(db) as cache:
        assert cache.count() == 1 + stored - 1  # key 0 was overwritten by the loop's first card
        assert cache.get(f"{stored - 1:040x}", "m", "s") == {"i": stored - 1, **PAD}


def test_a_read_only_library_is_one_line(tmp_path):
    if os.geteuid() == 0:
        pytest.skip("root writes read-only files")
    db = tmp_path / "library.sqlite"
    ScoreCache(db).close()
    db.chmod(0o444)
    try:
        with pytest.raises(CacheUnavailableError) as e, ScoreCache(db) as cache:
            cache.put("a" * 40, "m", "s", {"v": 1})
        assert "\n" not in str(e.value)
    finally:
        db.chmod(0o644)
