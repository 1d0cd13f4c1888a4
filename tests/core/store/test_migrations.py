"""The versioned schema: the first released file migrates to the current head, the runner is transactional,
runs each step exactly once even with concurrent openers, and refuses files from a newer HumanAes; the
same steps on a PostgreSQL library."""

from __future__ import annotations

import dataclasses
import hashlib
import sqlite3
import threading
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy import inspect as sa_inspect

from humanaes_core.origins import Origin
from humanaes_core.store import decisions as decisions_mod
from humanaes_core.store.checks import CheckStore
from humanaes_core.store.decisions import DecisionStore, DecisionsVersionError, Flag, PhotoDecision
from humanaes_core.store.errors import CacheVersionError
from humanaes_core.store.migrations import (
    CACHE_COMPONENT,
    COMPONENTS,
    DECISIONS_COMPONENT,
    Migration,
    migrate,
    migrate_server,
)
from humanaes_core.store.scores import ScoreCache

FIXTURE_V1 = Path(__file__).resolve().parents[2] / "fixtures" / "schema_v1.sql"
H1, H2 = "1" * 40, "2" * 40


def _from_fixture(path: Path) -> Path:
    conn = sqlite3.connect(path)
    conn.executescript(FIXTURE_V1.read_text(encoding="utf-8"))
    conn.close()
    return path


def _schema(path: Path) -> dict[str, list]:
    """Tables and indexes with their columns, types, nullability, keys: what code relies on."""
    conn = sqlite3.connect(path)
    try:
        out: dict[str, list] = {}
        names = conn.execute("SELECT type, name FROM sqlite_master WHERE name NOT LIKE 'sqlite_%'").fetchall()
        for kind, name in sorted(names):
            if kind == "table":
                out[name] = [tuple(r[1:]) for r in conn.execute(f'PRAGMA table_info("{name}")')]
            else:
                out[name] = [r[2] for r in conn.execute(f'PRAGMA index_info("{name}")')]
        return out
    finally:
        conn.close()


def _content(path: Path) -> str:
    conn = sqlite3.connect(path)
    try:
        return hashlib.sha256("\n".join(conn.iterdump()).encode()).hexdigest()
    finally:
        conn.close()


def test_the_first_released_file_migrates_to_head_with_everything_kept(tmp_path):
    db = _from_fixture(tmp_path / "v1.sqlite")
    with ScoreCache(db) as cache, DecisionStore(db) as store:
        assert cache.schema_found == 1 and cache.schema_version == CACHE_COMPONENT.head
        assert store.schema_found == 1
        assert cache.get(H1, "modelfp000000001", "settingsfp000001") == {
            "dims": {"overall": 0.61},
            "level": "good",
            "note": "première",
        }
        assert cache.count() == 3 and cache.count("modelfp000000002") == 1
        assert store.all() == {
            H1: ("/photos/day1/IMG_0001.jpg", PhotoDecision(3, Flag.PICK)),
            H2: ("/photos/day1/IMG_0002.jpg", PhotoDecision(3, Flag.NONE)),
        }
        # the undo history written by the old version still works both ways
        assert store.redo_description() == "reject"
        store.redo()
        assert store.get(H2).rejected
        store.undo()
        store.undo()
        assert store.get(H1) == PhotoDecision(3, Flag.NONE)
    conn = sqlite3.connect(db)
    versions = dict(conn.execute("SELECT key, value FROM meta"))
    conn.close()
    assert versions == {
        "schema_version": str(CACHE_COMPONENT.head),
        "decisions_schema_version": str(DECISIONS_COMPONENT.head),
    }


def test_a_migrated_file_has_the_schema_of_a_new_one(tmp_path):
    old = _from_fixture(tmp_path / "old.sqlite")
    for component in COMPONENTS.values():
        migrate(old, component)
    new = tmp_path / "new.sqlite"
    ScoreCache(new).close()
    DecisionStore(new).close()
    CheckStore(new).close()
    assert _schema(old) == _schema(new)


def test_the_migrations_create_what_the_decision_orm_classes_describe(tmp_path):
    """The decision store works through ORM classes; the score and check stores' plain SQL is checked
    against the migrated tables by every test that stores and reads a card or a check result."""
    db = tmp_path / "fresh.sqlite"
    for component in COMPONENTS.values():
        migrate(db, component)
    schema = _schema(db)
    for table in decisions_mod._Base.metadata.sorted_tables:
        columns = {c[0]: c for c in schema[table.name]}
        assert set(columns) == {c.name for c in table.columns}, table.name
        for column in table.columns:
            _name, _type, notnull, _default, pk = columns[column.name]
            assert bool(notnull) == (not column.nullable or column.primary_key), (table.name, column.name)
            assert bool(pk) == column.primary_key, (table.name, column.name)
        for index in table.indexes:
            assert schema[index.name] == [c.name for c in index.columns]


def _future(component, *steps: Migration):
    return dataclasses.replace(component, migrations=component.migrations + steps)


def test_future_steps_run_in_order_exactly_once_and_keep_the_data(tmp_path):
    db = _from_fixture(tmp_path / "v1.sqlite")
    applied: list[int] = []

    def backfill(conn: sqlite3.Connection) -> None:
        applied.append(2)
        conn.execute("UPDATE scores SET origin = 'legacy:' || model_fp")

    v3 = _future(
        CACHE_COMPONENT,
        Migration(
            2,
            "scores remember where they came from",
            ("ALTER TABLE scores ADD COLUMN origin TEXT",),
            backfill,
        ),
        Migration(3, "index on origin", ("CREATE INDEX ix_scores_origin ON scores (origin)",)),
    )
    assert migrate(db, v3) == 1
    assert migrate(db, v3) == 3  # second open: nothing left to do
    assert applied == [2]
    conn = sqlite3.connect(db)
    origins = sorted(r[0] for r in conn.execute("SELECT origin FROM scores"))
    version = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0]
    conn.close()
    assert origins == ["legacy:modelfp000000001", "legacy:modelfp000000001", "legacy:modelfp000000002"]
    assert version == "3" and "ix_scores_origin" in _schema(db)


def test_a_failing_step_leaves_the_file_exactly_as_it_was(tmp_path):
    db = _from_fixture(tmp_path / "v1.sqlite")
    before = _content(db)

    def explode(conn: sqlite3.Connection) -> None:
        raise RuntimeError("step 3 failed halfway")

    broken = _future(
        CACHE_COMPONENT,
        Migration(2, "add a column", ("ALTER TABLE scores ADD COLUMN origin TEXT",)),
        Migration(3, "fails", ("CREATE TABLE halfway (x INTEGER)",), explode),
    )
    with pytest.raises(RuntimeError, match="halfway"):
        migrate(db, broken)
    assert _content(db) == before  # steps 2 and 3 rolled back together
    with ScoreCache(db) as cache:  # and the current version still opens it
        assert cache.count() == 3


def test_concurrent_openers_migrate_once(tmp_path):
    db = _from_fixture(tmp_path / "v1.sqlite")
    calls: list[str] = []

    def counted(conn: sqlite3.Connection) -> None:
        calls.append(threading.current_thread().name)
        conn.execute("CREATE TABLE migration_log (at INTEGER)")  # a second run would fail here

    head = DECISIONS_COMPONENT.head
    v2 = _future(DECISIONS_COMPONENT, Migration(head + 1, "log", (), counted))
    found: list[int] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(8)

    def opener() -> None:
        try:
            barrier.wait()
            found.append(migrate(db, v2))
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=opener, name=f"opener-{i}") for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == [] and len(calls) == 1
    assert sorted(found) == [1] + [head + 1] * 7


def test_files_from_a_newer_version_are_refused_untouched(tmp_path):
    db = _from_fixture(tmp_path / "v1.sqlite")
    conn = sqlite3.connect(db)
    with conn:
        conn.execute("UPDATE meta SET value = '7' WHERE key = 'schema_version'")
        conn.execute("UPDATE meta SET value = '5' WHERE key = 'decisions_schema_version'")
    conn.close()
    before = _content(db)
    with pytest.raises(CacheVersionError, match="newer HumanAes"):
        ScoreCache(db)
    with pytest.raises(DecisionsVersionError, match="decisions schema 5"):
        DecisionStore(db)
    assert _content(db) == before


def test_an_unreadable_version_is_refused(tmp_path):
    db = _from_fixture(tmp_path / "v1.sqlite")
    conn = sqlite3.connect(db)
    with conn:
        conn.execute("UPDATE meta SET value = 'one' WHERE key = 'schema_version'")
    conn.close()
    with pytest.raises(CacheVersionError, match="unrecognised"):
        ScoreCache(db)


def test_decisions_schema_2_gives_every_old_decision_its_origin(tmp_path):
    """Schema 1's "user" / "auto" / "xmp" become photographer / humanaes / editor, in the rows and in the
    undo steps written by the old version."""
    db = _from_fixture(tmp_path / "v1.sqlite")
    conn = sqlite3.connect(db)
    with conn:
        for n, source in ((3, "auto"), (4, "xmp")):
            conn.execute(
                "INSERT INTO decisions VALUES (?, ?, NULL, -1, NULL, ?, 0)",
                (str(n) * 40, f"/p/{n}.jpg", source),
            )
    conn.close()
    assert migrate(db, DECISIONS_COMPONENT) == 1 and DECISIONS_COMPONENT.head == 3  # 3: the change feed
    conn = sqlite3.connect(db)
    stored = dict(conn.execute("SELECT content_hash, source FROM decisions").fetchall())
    plans = {row[0] for row in conn.execute("SELECT plan FROM decisions")}
    conn.close()
    assert stored == {H1: "photographer", H2: "photographer", "3" * 40: "humanaes", "4" * 40: "editor"}
    assert plans == {None}
    with DecisionStore(db) as store:
        assert {h: d.origin for h, (_, d) in store.all().items()} == {
            H1: Origin.PHOTOGRAPHER,
            H2: Origin.PHOTOGRAPHER,
            "3" * 40: Origin.HUMANAES,
            "4" * 40: Origin.EDITOR,
        }
        store.redo()  # the old "reject" step, its JSON still saying "source": "user"
        assert store.get(H2) == PhotoDecision(3, Flag.REJECT, origin=Origin.PHOTOGRAPHER)


def test_a_cache_file_without_decision_tables_gets_them(tmp_path):
    """Files from before the decision tables existed (b9e78f8): the decisions start at version 0."""
    db = _from_fixture(tmp_path / "cache-only.sqlite")
    conn = sqlite3.connect(db)
    with conn:
        conn.execute("DROP TABLE decisions")
        conn.execute("DROP TABLE decision_history")
        conn.execute("DELETE FROM meta WHERE key = 'decisions_schema_version'")
    conn.close()
    with DecisionStore(db) as store:
        assert store.schema_found == 0 and store.count() == 0
        store.set_stars([(H1, "/p/a.jpg")], 5)
        assert store.get(H1) == PhotoDecision(5)
    with ScoreCache(db) as cache:
        assert cache.count() == 3


def test_cache_schema_2_keeps_the_v1_fast_path_rows_without_a_signature(tmp_path):
    db = _from_fixture(tmp_path / "v1.sqlite")
    assert migrate(db, CACHE_COMPONENT) == 1 and CACHE_COMPONENT.head == 2
    conn = sqlite3.connect(db)
    rows = conn.execute(
        "SELECT path, size, mtime_ns, content_hash, ctime_ns, ino, dev FROM file_hashes"
    ).fetchall()
    conn.close()
    assert sorted(rows) == [
        ("/photos/day1/IMG_0001.jpg", 1234567, 1600000000000000000, "1" * 40, None, None, None),
        ("/photos/day1/IMG_0002.jpg", 7654321, 1600000001000000000, "2" * 40, None, None, None),
    ]


# ------------------------------------------------------------------------- the same steps on a server


def _only(component, version: int):
    """The component as a HumanAes that knew only its steps up to ``version``."""
    return dataclasses.replace(
        component, migrations=tuple(m for m in component.migrations if m.version <= version)
    )


def _server_schema(engine) -> dict[str, list]:
    """Tables and indexes of the library's schema with their columns, nullability and keys."""
    inspector = sa_inspect(engine)
    out: dict[str, list] = {}
    for table in inspector.get_table_names():
        pk = set(inspector.get_pk_constraint(table)["constrained_columns"])
        out[table] = sorted(
            (c["name"], c["nullable"] and c["name"] not in pk, c["name"] in pk)
            for c in inspector.get_columns(table)
        )
        for index in inspector.get_indexes(table):
            out[index["name"]] = index["column_names"]
    return out


def test_a_server_library_migrates_step_by_step_to_the_schema_of_a_new_one(postgres_library, tmp_path):
    engine = create_engine(postgres_library)
    try:
        for component in COMPONENTS.values():
            assert migrate_server(engine, _only(component, 1)) == 0
        with engine.begin() as conn:  # rows of the first schema, as an old HumanAes left them
            conn.execute(text("INSERT INTO file_hashes VALUES ('/p/a.jpg', 1, 2, :h)"), {"h": H1})
            conn.execute(text("INSERT INTO scores VALUES (:h, 'm', 's', '{}', 1.0)"), {"h": H1})
        for component in COMPONENTS.values():
            assert migrate_server(engine, component) == 1
            assert migrate_server(engine, component) == component.head  # nothing left to do
        with ScoreCache(postgres_library) as cache:
            assert cache.get(H1, "m", "s") == {} and cache.schema_found == CACHE_COMPONENT.head
        migrated = _server_schema(engine)
        fresh = tmp_path / "fresh.sqlite"
        for component in COMPONENTS.values():
            migrate(fresh, component)
        on_file = create_engine(f"sqlite:///{fresh}")
        try:  # the score and check stores' plain SQL reads the same tables on both
            assert migrated == _server_schema(on_file)
        finally:
            on_file.dispose()
        for table in decisions_mod._Base.metadata.sorted_tables:  # what the ORM classes describe
            assert {c[0] for c in migrated[table.name]} == {c.name for c in table.columns}, table.name
            for column in table.columns:
                (entry,) = [c for c in migrated[table.name] if c[0] == column.name]
                assert entry[1] == (column.nullable and not column.primary_key), (table.name, column.name)
                assert entry[2] == column.primary_key, (table.name, column.name)
            for index in table.indexes:
                assert migrated[index.name] == [c.name for c in index.columns]
    finally:
        engine.dispose()


def test_a_failing_step_leaves_a_server_library_as_it_was(postgres_library):
    engine = create_engine(postgres_library)

    def explode(conn) -> None:
        conn.execute("UPDATE scores SET card_json = 'half'")
        raise RuntimeError("step failed halfway")

    broken = _future(
        CACHE_COMPONENT,
        Migration(
            CACHE_COMPONENT.head + 1, "add a column", ("ALTER TABLE scores ADD COLUMN origin TEXT",), explode
        ),
    )
    try:
        with ScoreCache(postgres_library) as cache:
            cache.put(H1, "m", "s", {"v": 1})
        before = _server_schema(engine)
        with pytest.raises(RuntimeError, match="halfway"):
            migrate_server(engine, broken)
        assert _server_schema(engine) == before  # PostgreSQL's DDL is transactional
        with ScoreCache(postgres_library) as cache:
            assert cache.get(H1, "m", "s") == {"v": 1}
    finally:
        engine.dispose()


def test_concurrent_openers_migrate_a_server_library_once(postgres_library):
    calls: list[str] = []

    def counted(conn) -> None:
        calls.append(threading.current_thread().name)
        conn.execute("CREATE TABLE migration_log (at INTEGER)")  # a second run would fail here

    head = DECISIONS_COMPONENT.head
    later = _future(DECISIONS_COMPONENT, Migration(head + 1, "log", (), counted))
    engines = [create_engine(postgres_library) for _ in range(6)]
    found: list[int] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(len(engines))

    def opener(engine) -> None:
        try:
            barrier.wait()
            found.append(migrate_server(engine, later))
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=opener, args=(e,), name=f"opener-{i}") for i, e in enumerate(engines)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
    finally:
        for engine in engines:
            engine.dispose()
    assert errors == [] and len(calls) == 1
    assert sorted(found) == [0] + [head + 1] * 5


def test_a_server_library_from_a_newer_version_is_refused_untouched(postgres_library):
    with ScoreCache(postgres_library) as cache, DecisionStore(cache) as store, cache.engine.begin() as conn:
        store.set_stars([(H1, "/p/a.jpg")], 3)
        conn.execute(text("UPDATE meta SET value = '7' WHERE key = 'schema_version'"))
        conn.execute(text("UPDATE meta SET value = 'five' WHERE key = 'decisions_schema_version'"))
    with pytest.raises(CacheVersionError, match="newer HumanAes"):
        ScoreCache(postgres_library)
    with pytest.raises(DecisionsVersionError, match="unrecognised"):
        DecisionStore(postgres_library)
    engine = create_engine(postgres_library)
    try:
        with engine.connect() as conn:
            assert conn.execute(text("SELECT stars FROM decisions")).scalars().all() == [3]
    finally:
        engine.dispose()
