"""The photo-checks table: keyed by content and checks version, its own schema version, never mixed up."""

from __future__ import annotations

import sqlite3

from humanaes_core.store import CheckStore, ScoreCache
from humanaes_core.store.migrations import CHECKS_COMPONENT

H1, H2 = "a" * 40, "b" * 40


def test_results_are_keyed_by_content_and_checks_version(tmp_path):
    db = tmp_path / "library.sqlite"
    with CheckStore(db) as store:
        store.put_many([(H1, {"faces": [], "checks": {"blur": "soft"}})], version=1)
        assert store.get_many([H1, H2], version=1) == {H1: {"faces": [], "checks": {"blur": "soft"}}}
        assert store.get_many([H1], version=2) == {}  # a new checks version is computed afresh
        store.put_many([(H1, {"faces": [{"box": [1, 2, 3, 4]}], "checks": {}})], version=1)
        assert store.get_many([H1], version=1)[H1]["faces"] == [{"box": [1, 2, 3, 4]}]
        assert store.count() == 1 and store.count(version=2) == 0


def test_the_checks_live_beside_the_scores_with_their_own_schema_version(tmp_path):
    db = tmp_path / "library.sqlite"
    ScoreCache(db).close()
    CheckStore(db).close()
    conn = sqlite3.connect(db)
    versions = dict(conn.execute("SELECT key, value FROM meta"))
    conn.close()
    assert versions[CHECKS_COMPONENT.version_key] == str(CHECKS_COMPONENT.head)
    assert "schema_version" in versions


def test_an_unreadable_row_is_a_miss_not_an_error(tmp_path):
    db = tmp_path / "library.sqlite"
    with CheckStore(db) as store:
        store.put_many([(H1, {"faces": []}), (H2, {"faces": []})], version=1)
    conn = sqlite3.connect(db)
    conn.execute("UPDATE photo_checks SET result_json = '{broken' WHERE content_hash = ?", (H1,))
    conn.commit()
    conn.close()
    with CheckStore(db) as store:
        assert set(store.get_many([H1, H2], version=1)) == {H2}


def test_a_damaged_library_keeps_the_checks_it_can_still_read(tmp_path):
    db = tmp_path / "library.sqlite"
    with CheckStore(db) as store, ScoreCache(db) as cache:
        store.put_many(
            [(f"{i:040x}", {"faces": [], "checks": {"misfire": "black"}}) for i in range(50)], version=1
        )
        cache.put_many([(f"{i:040x}", {"i": i, "pad": "x" * 300}) for i in range(2000)], "m", "s")
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    page, count = (conn.execute(f"PRAGMA {p}").fetchone()[0] for p in ("page_size", "page_count"))
    root = conn.execute("SELECT rootpage FROM sqlite_master WHERE name = 'photo_checks'").fetchone()[0]
    conn.close()
    first_bad = count * 3 // 4
    assert root < first_bad  # the damage hits score pages written after the checks
    with open(db, "r+b") as fh:
        fh.seek(first_bad * page)
        fh.write(b"\xff" * ((count - first_bad - 1) * page))
    with CheckStore(db) as store:
        assert store.recovered_from is not None
        assert len(store.get_many([f"{i:040x}" for i in range(50)], version=1)) == 50
