"""The versioned schema: each part of the library has a version in ``meta`` and ordered migrations.

The score tables, the decision tables and the photo-checks table are separate components, each with its
own version key, so an older HumanAes that knows only the score tables still opens a library that has
the others. The migrations of a component are applied in one transaction when the library is opened: two
processes opening an old library at once migrate it exactly once (SQLite: ``BEGIN IMMEDIATE``;
PostgreSQL: a transaction-scoped advisory lock), and a step that fails leaves the library as it was
(PostgreSQL's DDL is transactional).

The same steps and versions serve SQLite and PostgreSQL. A step's statements are SQL text (where both
servers read it alike) or SQLAlchemy Core DDL elements (``CreateTable(table, if_not_exists=True)``,
``CreateIndex``), compiled for the library's dialect: a new table written with portable Core types works
on both. Where the frozen text of an old step differs between dialects, ``dialects`` holds the
replacement. Version 1 is the first released schema; its DDL is frozen here, not derived from the ORM
classes, so the ORM can change while old libraries still migrate step by step.

SQLAlchemy is imported only when a step is compiled or a server is migrated: a Core DDL step is given as
a function that builds it, so opening a SQLite library that is already at its head (every scan of a
cached folder) reads one ``meta`` row through the standard library's ``sqlite3`` and nothing more.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from humanaes_core.errors import HumanAesError
from humanaes_core.store.errors import CacheVersionError, DecisionsVersionError
from humanaes_core.store.location import LIBRARY_ENV_VAR

if TYPE_CHECKING:
    from sqlalchemy import Connection, Engine
    from sqlalchemy.engine import Dialect
    from sqlalchemy.schema import ExecutableDDLElement

__all__ = [
    "BUSY_TIMEOUT_MS",
    "CACHE_COMPONENT",
    "CHECKS_COMPONENT",
    "COMPONENTS",
    "DECISIONS_COMPONENT",
    "SCHEMA_VERSION",
    "Migration",
    "SchemaComponent",
    "connect_raw",
    "migrate",
    "migrate_server",
]

log = logging.getLogger(__name__)

#: How long SQLite itself waits for another connection's lock before reporting "busy".
BUSY_TIMEOUT_MS = 30_000


#: A step's statement: SQL text, or a function that builds a SQLAlchemy Core DDL element (called, and
#: SQLAlchemy imported, only when the step runs).
Statement = str | Callable[[], "ExecutableDDLElement"]


@dataclass(frozen=True)
class Migration:
    """One schema step: ``statements`` bring the tables from ``version - 1`` to ``version``.

    ``apply`` (optional) runs after the statements for steps that must transform data in Python; it
    gets the DB-API connection (``sqlite3`` or ``psycopg``, both have ``execute``). Both run inside the
    migration transaction: a step that fails leaves the library exactly as it was. ``dialects`` maps a
    dialect name (``"postgresql"``) to the statements that replace ``statements`` there.
    """

    version: int
    description: str
    statements: tuple[Statement, ...] = ()
    apply: Callable[[Any], None] | None = None
    dialects: dict[str, tuple[Statement, ...]] = field(default_factory=dict)

    def sql(self, dialect: str) -> list[str]:
        """The step's statements as SQL text for the dialect named ``dialect`` ("sqlite", "postgresql")."""
        chosen = self.dialects.get(dialect, self.statements)
        return [
            s if isinstance(s, str) else str(s().compile(dialect=_dialect(dialect))).strip() for s in chosen
        ]


def _dialect(name: str) -> Dialect:
    """SQLAlchemy's dialect ``name``, to compile a Core DDL step for it."""
    from sqlalchemy.dialects import postgresql, sqlite

    return {"sqlite": sqlite, "postgresql": postgresql}[name].dialect()


@dataclass(frozen=True)
class SchemaComponent:
    """A group of tables with its own version key in ``meta`` (the score tables', the decisions')."""

    name: str
    version_key: str
    migrations: tuple[Migration, ...]
    error: type[HumanAesError]

    @property
    def head(self) -> int:
        return self.migrations[-1].version if self.migrations else 0


_META_DDL = (
    'CREATE TABLE IF NOT EXISTS meta (\n\t"key" TEXT NOT NULL, \n\tvalue TEXT NOT NULL, \n\t'
    'PRIMARY KEY ("key")\n)'
)

#: The first released schema (cache schema 1), exactly as HumanAes 0.1 created it.
_CACHE_V1 = (
    _META_DDL,
    "CREATE TABLE IF NOT EXISTS file_hashes (\n\tpath TEXT NOT NULL, \n\tsize BIGINT NOT NULL, \n\t"
    "mtime_ns BIGINT NOT NULL, \n\tcontent_hash VARCHAR(40) NOT NULL, \n\tPRIMARY KEY (path)\n)",
    "CREATE TABLE IF NOT EXISTS scores (\n\tcontent_hash VARCHAR(40) NOT NULL, \n\tmodel_fp TEXT NOT NULL, "
    "\n\tsettings_fp TEXT NOT NULL, \n\tcard_json TEXT NOT NULL, \n\tupdated_at FLOAT NOT NULL, \n\t"
    "PRIMARY KEY (content_hash, model_fp, settings_fp)\n)",
    "CREATE INDEX IF NOT EXISTS ix_scores_model_settings ON scores (model_fp, settings_fp)",
)

#: The first released decision tables (decisions schema 1).
_DECISIONS_V1 = (
    _META_DDL,
    "CREATE TABLE IF NOT EXISTS decision_history (\n\tid INTEGER NOT NULL, \n\tstep INTEGER NOT NULL, \n\t"
    "content_hash VARCHAR(40) NOT NULL, \n\tpath TEXT NOT NULL, \n\tbefore_json TEXT, \n\tafter_json TEXT, "
    "\n\tdescription TEXT NOT NULL, \n\tundone INTEGER NOT NULL, \n\tcreated_at FLOAT NOT NULL, \n\t"
    "PRIMARY KEY (id)\n)",
    "CREATE INDEX IF NOT EXISTS ix_decision_history_step ON decision_history (step)",
    "CREATE TABLE IF NOT EXISTS decisions (\n\tcontent_hash VARCHAR(40) NOT NULL, \n\tpath TEXT NOT NULL, "
    "\n\tstars INTEGER, \n\tflag INTEGER NOT NULL, \n\tlabel TEXT, \n\tsource TEXT NOT NULL, \n\t"
    "updated_at FLOAT NOT NULL, \n\tPRIMARY KEY (content_hash)\n)",
    "CREATE INDEX IF NOT EXISTS ix_decisions_path ON decisions (path)",
)

#: Cache schema 2: the fast path keeps the whole file signature, so a photo swapped in with its size and
#: mtime restored (``cp -p``, ``rsync -t``) is hashed again. Rows of schema 1 have NULLs there: they never
#: match and are refreshed by the next scan.
_CACHE_V2 = tuple(
    f"ALTER TABLE file_hashes ADD COLUMN {column} BIGINT" for column in ("ctime_ns", "ino", "dev")
)

#: Decisions schema 2: every decision records its origin (``humanaes_core.origins``) and HumanAes's the plan
#: that made them. The ``source`` column keeps its name and is rewritten from schema 1's "user" / "auto" /
#: "xmp" to photographer / humanaes / editor. No schema-1 row came from a sidecar HumanAes wrote (the app
#: stored imported ratings only once the photographer changed them, as "user"), so "xmp" is the editor's.
#: Undo steps keep their JSON: `PhotoDecision.from_dict` reads schema 1's ``source`` the same way.
_DECISIONS_V2 = (
    "ALTER TABLE decisions ADD COLUMN plan TEXT",
    "UPDATE decisions SET source = CASE source WHEN 'user' THEN 'photographer' WHEN 'auto' THEN 'humanaes' "
    "WHEN 'xmp' THEN 'editor' ELSE source END",
)

#: PostgreSQL has no rowid: the history's id is an identity column there (same name, type and values).
_DECISIONS_V1_SERVER = tuple(
    ddl.replace("id INTEGER NOT NULL,", "id INTEGER GENERATED BY DEFAULT AS IDENTITY,")
    for ddl in _DECISIONS_V1
)


@functools.cache
def _decision_changes_v3() -> tuple[Any, Any]:
    """The change feed's table and index, as decisions schema 3 created them."""
    from sqlalchemy import BigInteger, Column, Float, Index, Integer, MetaData, String, Table, Text

    table = Table(
        "decision_changes",
        MetaData(),
        Column(
            "revision", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
        ),
        Column("content_hash", String(40), nullable=False),
        Column("writer", Text, nullable=False),
        Column("overwrote", Text, nullable=True),
        Column("changed_at", Float, nullable=False),
        sqlite_autoincrement=True,  # revisions never reused, even after the oldest rows are pruned
    )
    return table, Index("ix_decision_changes_hash", table.c.content_hash)


def _create_decision_changes_v3() -> ExecutableDDLElement:
    from sqlalchemy.schema import CreateTable

    return CreateTable(_decision_changes_v3()[0], if_not_exists=True)


def _create_decision_changes_index_v3() -> ExecutableDDLElement:
    from sqlalchemy.schema import CreateIndex

    return CreateIndex(_decision_changes_v3()[1], if_not_exists=True)


#: Decisions schema 3: the change feed. Every decision write appends one row per photo it changed, with
#: the writing handle's id (and the id of a handle whose newer change it replaced unseen), so other
#: processes see what changed since the revision they last read and both editors of a conflict are
#: told. Portable Core DDL (see module doc).
_DECISIONS_V3: tuple[Statement, ...] = (_create_decision_changes_v3, _create_decision_changes_index_v3)

#: The score tables: ``meta``, ``file_hashes`` (the path fast path) and ``scores``.
CACHE_COMPONENT = SchemaComponent(
    "cache",
    "schema_version",
    (
        Migration(1, "first released schema: meta, file_hashes, scores", _CACHE_V1),
        Migration(2, "file_hashes: ctime_ns, ino, dev (the whole file signature)", _CACHE_V2),
    ),
    CacheVersionError,
)
#: The photographer's decisions and their undo history.
DECISIONS_COMPONENT = SchemaComponent(
    "decisions",
    "decisions_schema_version",
    (
        Migration(
            1,
            "first released schema: decisions, decision_history",
            _DECISIONS_V1,
            dialects={"postgresql": _DECISIONS_V1_SERVER},
        ),
        Migration(2, "decisions: origin (photographer, editor, humanaes) and plan", _DECISIONS_V2),
        Migration(3, "decision_changes: the change feed other processes read", _DECISIONS_V3),
    ),
    DecisionsVersionError,
)
#: The first photo-checks table (checks schema 1): faces and whole-photo checks per content hash and
#: checks version. Plain portable SQL (no SQLite-only types), like the ORM in ``store.checks``.
_CHECKS_V1 = (
    _META_DDL,
    "CREATE TABLE IF NOT EXISTS photo_checks (\n\tcontent_hash VARCHAR(40) NOT NULL, \n\t"
    "checks_version INTEGER NOT NULL, \n\tresult_json TEXT NOT NULL, \n\tupdated_at FLOAT NOT NULL, \n\t"
    "PRIMARY KEY (content_hash, checks_version)\n)",
)
#: What the photographer's checks found (closed eyes, focus, blur, exposure, misfires), kept apart from
#: the score cards: they do not depend on the model, and a new checks version keeps the cards.
CHECKS_COMPONENT = SchemaComponent(
    "checks",
    "checks_schema_version",
    (Migration(1, "first photo-checks table: photo_checks", _CHECKS_V1),),
    CacheVersionError,
)
#: Every part of the file, by name; a damaged file's replacement gets all of them before salvage.
COMPONENTS: dict[str, SchemaComponent] = {
    c.name: c for c in (CACHE_COMPONENT, DECISIONS_COMPONENT, CHECKS_COMPONENT)
}
#: The score tables' schema version (the ``schema_version`` key in ``meta``).
SCHEMA_VERSION = CACHE_COMPONENT.head


def connect_raw(path: Path) -> sqlite3.Connection:
    """A plain sqlite3 connection in autocommit mode (we write BEGIN/COMMIT), patient with locks."""
    conn = sqlite3.connect(str(path), timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None)
    try:
        conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        _switch_to_wal(conn)
    except BaseException:
        conn.close()
        raise
    return conn


def _switch_to_wal(conn: sqlite3.Connection, attempts: int = 8) -> None:
    """`PRAGMA journal_mode=WAL`, retried: SQLite answers "database is locked" at once, without its busy
    handler, while another connection is switching the same file (several openers of an old file)."""
    for attempt in range(attempts):
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as e:
            if "locked" not in str(e) or attempt == attempts - 1:
                raise
            time.sleep(0.02 * 2**attempt)


def migrate(path: str | os.PathLike[str], component: SchemaComponent) -> int:
    """Bring ``component``'s tables in the file to its head version; returns the version found.

    One ``BEGIN IMMEDIATE`` transaction holds the write lock from the version read to the commit, so a
    second process opening the same old file waits and then finds nothing left to do. A file whose
    version is newer than this code knows is refused with ``component.error`` and left untouched.
    """
    where = Path(path)
    conn = connect_raw(where)
    try:
        conn.execute("BEGIN IMMEDIATE")
        try:
            found = _migrate_in(conn.execute, conn, "sqlite", str(where), component)
            conn.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            raise
    finally:
        conn.close()
    return found


#: Server-wide key of the advisory lock that serialises migrations (any fixed 64-bit number).
_MIGRATION_LOCK = 0x48756D616E416573  # "HumanAes"


def migrate_server(engine: Engine, component: SchemaComponent) -> int:
    """``migrate`` on a PostgreSQL library: one transaction, serialised by an advisory lock that is held
    until its commit, so concurrent openers migrate once; DDL is transactional, so a failing step leaves
    the library as it was."""
    from sqlalchemy import text

    with engine.begin() as conn:
        conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK})
        where = engine.url.render_as_string(hide_password=True)
        dbapi = conn.connection.dbapi_connection
        return _migrate_in(_server_executor(conn), dbapi, engine.dialect.name, where, component)


def _server_executor(conn: Connection) -> Callable[[str, dict], Any]:
    from sqlalchemy import text

    def execute(sql: str, params: dict) -> Any:
        return conn.execute(text(sql), params) if params else conn.exec_driver_sql(sql)

    return execute


def _migrate_in(
    execute: Callable[[str, dict], Any],
    dbapi: Any,
    dialect: str,
    where: str,
    component: SchemaComponent,
) -> int:
    """The body of ``migrate``'s transaction: read the version, refuse a newer one, run the steps.

    ``execute(sql, params)`` runs one statement (named ``:parameters``) on the transaction's connection;
    ``dbapi`` is that connection's DB-API object, for a step's ``apply``.
    """
    execute(_META_DDL, {})
    row = execute("SELECT value FROM meta WHERE key = :key", {"key": component.version_key}).fetchone()
    found = _parse_version(row[0] if row else None, where, component)
    if found > component.head:
        raise component.error(
            f"{where} was written by a newer HumanAes ({component.name} schema {found}, this version "
            f"reads {component.head}). Update HumanAes or point {LIBRARY_ENV_VAR} at another file."
        )
    for step in component.migrations:
        if step.version <= found:
            continue
        for statement in step.sql(dialect):
            execute(statement, {})
        if step.apply is not None:
            step.apply(dbapi)
        if found > 0:
            log.info("%s: %s schema -> %d (%s)", where, component.name, step.version, step.description)
    if found != component.head:
        execute(
            "INSERT INTO meta (key, value) VALUES (:key, :value) "
            "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            {"key": component.version_key, "value": str(component.head)},
        )
    return found


def _parse_version(stored: str | None, where: str, component: SchemaComponent) -> int:
    if stored is None:
        return 0
    try:
        return int(stored)
    except ValueError:
        raise component.error(f"{where}: unrecognised {component.name} schema version {stored!r}") from None
