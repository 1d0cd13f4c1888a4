"""Losing scores never loses decisions: a damaged file's replacement keeps the decisions and, when all
of it is readable, the undo history; what the cache does with its own tables leaves the decisions alone."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import pytest

from humanaes_core.store.decisions import DecisionStore, Flag, PhotoDecision
from humanaes_core.store.scores import ScoreCache

N_CARDS = 2000


def _library(db: Path) -> Path:
    """Many cards, decisions on five photos in two undo steps, everything checkpointed into the file."""
    with ScoreCache(db) as cache, DecisionStore(db) as store:
        cache.put_many([(f"{i:040x}", {"i": i, "pad": "x" * 300}) for i in range(N_CARDS)], "m", "s")
        store.set_stars([(f"{i:040x}", f"/p/{i}.jpg") for i in range(5)], 4)
        store.set_flag([(f"{0:040x}", "/p/0.jpg")], Flag.REJECT)
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    return db


def _pages(db: Path) -> tuple[int, int, dict[str, int]]:
    conn = sqlite3.connect(db)
    try:
        size = conn.execute("PRAGMA page_size").fetchone()[0]
        count = conn.execute("PRAGMA page_count").fetchone()[0]
        roots = dict(conn.execute("SELECT name, rootpage FROM sqlite_master WHERE rootpage > 0"))
        return size, count, roots
    finally:
        conn.close()


def _decision_rows(db: Path) -> list[tuple]:
    conn = sqlite3.connect(db)
    try:
        return [
            *conn.execute("SELECT * FROM decisions ORDER BY content_hash"),
            *conn.execute("SELECT * FROM decision_history ORDER BY id"),
        ]
    finally:
        conn.close()


def test_damaged_score_pages_keep_the_decisions_and_their_undo_history(tmp_path):
    db = _library(tmp_path / "library.sqlite")
    page, count, roots = _pages(db)
    first_bad = count * 3 // 4
    assert max(roots["decisions"], roots["decision_history"]) < first_bad  # only score pages are hit
    with open(db, "r+b") as fh:
        fh.seek(first_bad * page)
        fh.write(os.urandom((count - first_bad - 1) * page))
    with DecisionStore(db) as store:
        assert store.recovered_from is not None
        assert store.count() == 5 and store.get(f"{0:040x}") == PhotoDecision(4, Flag.REJECT)
        assert store.undo_description() == "reject"
        store.undo()
        assert store.get(f"{0:040x}") == PhotoDecision(4)
        store.undo()
        assert store.count() == 0 and not store.can_undo()
    with ScoreCache(db) as cache:
        assert 0 < cache.count() < N_CARDS


def test_a_partly_readable_undo_history_is_not_half_copied(tmp_path):
    db = tmp_path / "library.sqlite"
    with DecisionStore(db) as store:  # one auto-cull step whose history spans many pages
        store.set_stars([(f"{i:040x}", f"/photos/{'deep/' * 20}{i}.jpg") for i in range(1200)], 2)
    conn = sqlite3.connect(db)
    try:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        page = conn.execute("PRAGMA page_size").fetchone()[0]
        query = "SELECT pageno FROM dbstat WHERE name = ? AND pagetype = 'leaf' ORDER BY pageno"
        leaves = [n for (n,) in conn.execute(query, ("decision_history",))]
    except sqlite3.OperationalError:
        pytest.skip("this SQLite has no dbstat table")
    finally:
        conn.close()
    assert len(leaves) > 2
    with open(db, "r+b") as fh:  # garbage over the history's last page: its first rows stay readable
        fh.seek((leaves[-1] - 1) * page)
        fh.write(os.urandom(page))
    with DecisionStore(db) as store:
        assert store.recovered_from is not None
        assert store.count() == 1200  # the decisions themselves are kept
        assert not store.can_undo() and not store.can_redo()  # no undo step that would undo half a step


def test_everything_the_cache_does_leaves_the_decisions_alone(tmp_path, monkeypatch):
    db = _library(tmp_path / "library.sqlite")
    before = _decision_rows(db)
    photo = tmp_path / "a.jpg"
    photo.write_bytes(b"photo")
    with ScoreCache(db) as cache:
        digest = cache.content_hash(photo)
        cache.put_many([(f"{i:040x}", {"new": i}) for i in range(N_CARDS)], "m", "s")  # rescored
        cache.put(digest, "other-model", "s", {"v": 1})
        assert cache.count() == N_CARDS + 1
    assert _decision_rows(db) == before
