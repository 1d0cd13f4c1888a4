"""Only a SQLite database (or nothing) is ever treated as the library: a photo, a text file, a device or a
pipe named as the library is refused in one line and left exactly as it was; database URLs other than
``sqlite:///path`` are refused instead of becoming folders named after their scheme (issue 16, item 3)."""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
from pathlib import Path

import pytest

from humanaes_core.store import server as server_mod
from humanaes_core.store.decisions import DecisionStore, Flag
from humanaes_core.store.errors import CacheUnavailableError, LibraryOfflineError
from humanaes_core.store.location import default_library_path, library_path, library_target
from humanaes_core.store.scores import ScoreCache
from humanaes_core.store.sqlite import SQLITE_HEADER, database_damage

JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01" + bytes(range(256)) * 64 + b"\xff\xd9"
FOREIGN = {
    "photo": ("IMG_2.jpg", JPEG),
    "text": ("notes.txt", b"shopping list\n"),
    "random": ("cache.sqlite", os.urandom(64 << 10)),
    "zeros": ("library.sqlite", b"\0" * 8192),
    "almost": ("old.sqlite", b"SQLite format 2\0" + b"\0" * 4080),
}


def _beside(path: Path) -> list[str]:
    return sorted(p.name for p in path.parent.iterdir())


def _one_line(e: pytest.ExceptionInfo[BaseException]) -> str:
    text = str(e.value)
    assert "\n" not in text and "Traceback" not in text
    return text


@pytest.mark.parametrize("kind", sorted(FOREIGN))
@pytest.mark.parametrize("store_type", [ScoreCache, DecisionStore])
def test_a_file_that_is_not_a_sqlite_database_is_refused_untouched(tmp_path, kind, store_type):
    name, data = FOREIGN[kind]
    target = tmp_path / "shoot" / name
    target.parent.mkdir()
    target.write_bytes(data)
    os.utime(target, ns=(1_600_000_000 * 10**9, 1_600_000_000 * 10**9))
    before = (target.stat().st_ino, target.stat().st_mtime_ns, _beside(target))
    with pytest.raises(CacheUnavailableError) as e:
        store_type(target)
    assert "not a SQLite database" in _one_line(e) and "left untouched" in str(e.value)
    assert target.read_bytes() == data  # not moved aside as .damaged-…, no WAL or lock beside it
    assert (target.stat().st_ino, target.stat().st_mtime_ns, _beside(target)) == before


def test_database_damage_refuses_a_foreign_file_instead_of_calling_it_damage(tmp_path):
    photo = tmp_path / "IMG_1.jpg"
    photo.write_bytes(JPEG)
    with pytest.raises(CacheUnavailableError, match="not a SQLite database"):
        database_damage(photo)
    assert photo.read_bytes() == JPEG


def test_a_pipe_is_refused_without_hanging(tmp_path):
    fifo = tmp_path / "library.sqlite"
    os.mkfifo(fifo)
    outcome: list[BaseException] = []

    def opener() -> None:
        try:
            ScoreCache(fifo).close()
        except BaseException as e:
            outcome.append(e)

    thread = threading.Thread(target=opener, daemon=True)
    thread.start()
    thread.join(20)
    if thread.is_alive():  # let the stuck opener go before failing
        with open(fifo, "wb"):
            pass
        pytest.fail("opening a pipe as the library hangs")
    assert len(outcome) == 1 and isinstance(outcome[0], CacheUnavailableError)
    assert "not a regular file" in str(outcome[0])
    assert fifo.is_fifo() and _beside(fifo) == ["library.sqlite"]


def test_a_link_to_a_device_is_refused(tmp_path):
    link = tmp_path / "library.sqlite"
    link.symlink_to(os.devnull)
    with pytest.raises(CacheUnavailableError, match="not a regular file"):
        DecisionStore(link)
    assert link.is_symlink() and Path(os.devnull).is_char_device()


def test_an_empty_file_becomes_a_library(tmp_path):
    empty = tmp_path / "new.sqlite"
    empty.touch()
    with ScoreCache(empty) as cache:
        cache.put("a" * 40, "m", "s", {"v": 1})
    assert empty.read_bytes()[:16] == SQLITE_HEADER


def test_a_damaged_sqlite_file_is_still_moved_aside_and_salvaged(tmp_path, caplog):
    db = tmp_path / "library.sqlite"
    db.write_bytes(SQLITE_HEADER + os.urandom(64 << 10))
    with caplog.at_level(logging.WARNING, logger="humanaes_core.store.sqlite"), ScoreCache(db) as cache:
        assert cache.recovered_from is not None and cache.recovered_from.read_bytes()[:16] == SQLITE_HEADER
        cache.put("a" * 40, "m", "s", {"ok": True})
    assert "damaged" in caplog.text


def test_a_photo_swapped_in_while_in_use_is_not_moved_aside(tmp_path):
    """Damage seen while the library is open is repaired by moving the file aside: never a non-database."""
    db = tmp_path / "library.sqlite"
    with ScoreCache(db) as cache:
        cache.put("a" * 40, "m", "s", {"v": 1})
        cache.engine.dispose()
        for companion in ("-wal", "-shm"):
            Path(f"{db}{companion}").unlink(missing_ok=True)
        db.write_bytes(JPEG)
        with pytest.raises(CacheUnavailableError) as e:
            cache.get("a" * 40, "m", "s")
        assert "not a SQLite database" in _one_line(e)
    assert db.read_bytes() == JPEG
    assert not [p for p in tmp_path.iterdir() if ".damaged-" in p.name]


def test_many_openers_of_a_foreign_file_all_refuse_it(tmp_path):
    photo = tmp_path / "IMG_2.jpg"
    photo.write_bytes(JPEG)
    errors: list[BaseException] = []
    barrier = threading.Barrier(6)

    def opener(i: int) -> None:
        barrier.wait()
        try:
            (DecisionStore if i % 2 else ScoreCache)(photo).close()
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=opener, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(errors) == 6 and all(isinstance(e, CacheUnavailableError) for e in errors)
    assert photo.read_bytes() == JPEG and _beside(photo) == ["IMG_2.jpg"]


# ------------------------------------------------------------------------------------------- URLs

URLS = [
    "mysql+pymysql://u@h/x",
    "sqlite://",  # in memory: nothing would be kept
    "sqlite:///library.sqlite?mode=ro",
    "file:///tmp/library.sqlite",
    "https://example.com/library.sqlite",
]


@pytest.mark.parametrize("url", URLS)
def test_a_database_url_is_refused_and_creates_nothing(tmp_path, monkeypatch, url):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(CacheUnavailableError) as e:
        ScoreCache(url)
    assert "not a library HumanAes can use" in _one_line(e)
    with pytest.raises(CacheUnavailableError, match="not a library HumanAes can use"):
        DecisionStore(url)
    assert list(tmp_path.iterdir()) == []  # no folder named "mysql+pymysql:"


def test_a_database_url_in_the_environment_is_refused_when_opened(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HUMANAES_LIBRARY", URLS[0])
    default_library_path()  # finding where it is does not fail (the app calls this while starting)
    with pytest.raises(CacheUnavailableError, match="not a library HumanAes can use"):
        ScoreCache()
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("scheme", ["postgresql+psycopg", "postgresql", "postgres"])
def test_an_unreachable_server_is_reported_after_bounded_retries_without_the_password(
    tmp_path, monkeypatch, scheme
):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(server_mod, "RETRY_S", 0.3)
    url = f"{scheme}://editor:secret@/humanaes?host={tmp_path / 'no-server'}"
    assert default_library_path() != url and library_target(url).startswith("postgresql+psycopg://")
    with pytest.raises(LibraryOfflineError) as e:
        DecisionStore(url)
    assert "cannot reach the library server" in _one_line(e) and "secret" not in _one_line(e)
    assert list(tmp_path.iterdir()) == []  # no folder named "postgresql:"


def test_a_sqlite_url_names_its_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    absolute = tmp_path / "abs" / "library.sqlite"
    assert library_path(f"sqlite:///{absolute}") == absolute  # sqlite:////tmp/...: four slashes
    assert library_path("sqlite+pysqlite:///rel.sqlite") == Path("rel.sqlite")
    with ScoreCache(f"sqlite:///{absolute}") as cache:
        cache.put("a" * 40, "m", "s", {"v": 1})
    with DecisionStore("sqlite:///rel.sqlite") as store:
        store.set_flag([("b" * 40, "/p/b.jpg")], Flag.PICK)
    conn = sqlite3.connect(absolute)
    assert conn.execute("SELECT count(*) FROM scores").fetchone() == (1,)
    conn.close()
    assert (tmp_path / "rel.sqlite").read_bytes()[:16] == SQLITE_HEADER
    monkeypatch.setenv("HUMANAES_LIBRARY", f"sqlite:///{absolute}")
    assert default_library_path() == absolute


@pytest.mark.parametrize(
    "path", ["C:/Users/me/library.sqlite", "./postgresql+psycopg:/x.sqlite", "a:b.sqlite"]
)
def test_paths_that_only_resemble_urls_are_paths(path):
    assert library_path(path) == Path(path)
