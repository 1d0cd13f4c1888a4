"""Score cache: a folder is never scored twice.

Scoring a photo with a vision-language model costs seconds; looking it up here costs microseconds. Cards
are keyed by the photo's *content* (a BLAKE2b hash of its bytes), the model fingerprint and the scoring
settings fingerprint, so renaming or copying a photo keeps its score while a new model or new settings
never reuse a stale one. Hashing every photo on every rescan would itself be slow (a 1,000-photo folder
of 25 MB raws is 25 GB of reading), so a second table remembers ``(size, mtime_ns) -> hash`` per absolute
path and a rescan of an unchanged folder only has to ``stat`` its files.

Storage is SQLite in WAL mode through SQLAlchemy 2: readers (the UI) and writers (the scoring worker, a
second CLI, the decision store) in other threads or processes do not block each other. The file holds a
photographer's decisions too (``decisions``), so it is handled defensively:

- **Short write transactions that take the write lock first** (``BEGIN IMMEDIATE``): a writer waits for
  another one in SQLite's busy handler (``busy_timeout``) instead of failing with "database is locked"
  when a read snapshot turns stale, and what is still busy after that is retried with back-off.
- **Crash safety**: every card is committed on its own as soon as it exists; WAL keeps committed
  transactions through a killed process, and an interrupted one simply never happened.
- **Damage**: a file that is not a database or fails SQLite's ``quick_check`` when it is opened, or that
  reports corruption later, is moved aside as ``<name>.damaged-<timestamp>`` (with a warning in the log
  and ``recovered_from`` set), the cards and decisions still readable in it are copied into a fresh file,
  and work goes on.
- **Versioned schema**: each part of the file (the cache's tables, the decision tables) has a version in
  ``meta`` and an ordered list of migrations that are applied in one ``BEGIN IMMEDIATE`` transaction when
  the file is opened, so two processes opening an old file at once migrate it exactly once. Version 1 is
  the first released schema; its DDL is frozen here, not derived from the ORM classes, so the ORM can
  change while old files still migrate step by step.
- **Any file name**: paths that are not valid UTF-8 (undecodable bytes become lone surrogates in Python)
  cannot be stored as SQLite text; they are stored as ``fsbytes:<hex>`` and decoded back on reading.

Known limit of the fast path: like ``make`` and ``rsync``'s quick check, it trusts ``(size, mtime_ns)``. A
file rewritten in place with the same size inside one timestamp tick, or whose mtime is deliberately
restored, keeps its old hash until its size or mtime changes.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import logging
import os
import random
import sqlite3
import stat as stat_mod
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, ClassVar, NamedTuple, TypeVar

import platformdirs
from sqlalchemy import URL, BigInteger, Engine, Float, Index, String, Text, create_engine, event, func, select
from sqlalchemy import exc as sa_exc
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker

from humanaes_core.errors import HumanAesError

__all__ = [
    "BUSY_TIMEOUT_MS",
    "CACHE_ENV_VAR",
    "COMPONENTS",
    "SCHEMA_VERSION",
    "CacheBusyError",
    "CacheUnavailableError",
    "CacheVersionError",
    "FileSignature",
    "HashedFile",
    "Migration",
    "NotRegularFileError",
    "SchemaComponent",
    "ScoreCache",
    "content_hash_file",
    "database_damage",
    "decode_path",
    "default_cache_path",
    "encode_path",
    "file_signature",
    "migrate",
]

log = logging.getLogger(__name__)

CACHE_ENV_VAR = "HUMANAES_CACHE"
SCHEMA_VERSION = 1
#: How long SQLite itself waits for another connection's lock before reporting "busy".
BUSY_TIMEOUT_MS = 30_000

_CHUNK_BYTES = 1 << 20  # 1 MiB: large enough that syscall overhead vanishes, small enough to stay in cache
_DIGEST_SIZE = 20  # 160 bits: collisions are not a practical concern for a personal photo library
_MAX_PARAMS = 500  # stay well under SQLite's bound-parameter limit (999 on old builds)
_BUSY_RETRIES = 4  # busy even after busy_timeout: back-off retries (0.05 s doubling) before giving up
_WRITE_OPTION = "humanaes_write"  # execution option that makes a transaction BEGIN IMMEDIATE
_RAW_PATH_PREFIX = "fsbytes:"  # never the start of an absolute path on POSIX or Windows
_LOCK_WAIT_S = 60.0

_SQLITE_BUSY, _SQLITE_LOCKED, _SQLITE_CORRUPT, _SQLITE_NOTADB = 5, 6, 11, 26

T = TypeVar("T")


class CacheVersionError(HumanAesError):
    """The cache file was written by a newer HumanAes whose schema this version cannot read safely."""


class CacheBusyError(HumanAesError):
    """Another program kept the database locked for longer than every wait and retry allowed."""


class CacheUnavailableError(HumanAesError):
    """The cache file cannot be opened at all (a folder in its place, no permission, disk full)."""


class NotRegularFileError(OSError):
    """A path that is a named pipe, device or socket: reading it could block forever or never end."""

    def __init__(self, path: str) -> None:
        super().__init__(errno.EINVAL, "not a regular file (a pipe, device or socket)", path)


def default_cache_path() -> Path:
    """Cache location: ``$HUMANAES_CACHE`` if set (tests, CI, portable installs), else the user data dir."""
    override = os.environ.get(CACHE_ENV_VAR, "").strip()
    if override:
        return Path(override).expanduser()
    return Path(platformdirs.user_data_dir("humanaes", appauthor=False)) / "cache.sqlite"


def _nonblocking_opener(path: str, flags: int) -> int:
    """Open without blocking: a named pipe with a photo's name would otherwise hang ``open`` forever."""
    return os.open(path, flags | getattr(os, "O_NONBLOCK", 0))


def content_hash_file(path: str | Path) -> str:
    """BLAKE2b-160 hex digest of the file's bytes, streamed so multi-GB files never sit in memory.

    Only regular files are read (``NotRegularFileError`` otherwise): ``/dev/zero`` or a pipe behind a
    symlink named ``IMG_0001.jpg`` must not turn a folder scan into an endless read.
    """
    digest = hashlib.blake2b(digest_size=_DIGEST_SIZE)
    buf = bytearray(_CHUNK_BYTES)
    view = memoryview(buf)
    with open(path, "rb", opener=_nonblocking_opener) as fh:
        mode = os.fstat(fh.fileno()).st_mode
        if stat_mod.S_ISDIR(mode):
            raise IsADirectoryError(errno.EISDIR, "Is a directory", os.fspath(path))
        if not stat_mod.S_ISREG(mode):
            raise NotRegularFileError(os.fspath(path))
        while n := fh.readinto(buf):
            digest.update(view[:n])
    return digest.hexdigest()


class FileSignature(NamedTuple):
    """What ``stat`` says about a file's identity and version: if any of it changes, so may the bytes."""

    size: int
    mtime_ns: int
    ctime_ns: int
    ino: int
    dev: int


def _signature(st: os.stat_result) -> FileSignature:
    return FileSignature(st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev)


def file_signature(path: str | os.PathLike[str]) -> FileSignature:
    """The file's current signature (raises ``OSError``); compare two to see whether it was replaced."""
    return _signature(os.stat(path))


class HashedFile(NamedTuple):
    """A file's content hash and the signature it had just before its bytes were read (or looked up)."""

    content_hash: str
    signature: FileSignature


def encode_path(path: str) -> str:
    """``path`` as text SQLite can store: itself, or ``fsbytes:<hex of its bytes>`` when it is not UTF-8.

    Python represents undecodable bytes in file names as lone surrogates, which no UTF-8 encoder
    accepts; without this a photo named in Latin-1 on a Linux disk would crash every write.
    """
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        return _RAW_PATH_PREFIX + os.fsencode(path).hex()
    return path


def decode_path(text: str) -> str:
    """Reverse of ``encode_path``."""
    if text.startswith(_RAW_PATH_PREFIX):
        try:
            return os.fsdecode(bytes.fromhex(text[len(_RAW_PATH_PREFIX) :]))
        except ValueError:
            return text
    return text


# --------------------------------------------------------------------------------------------- schema


class Base(DeclarativeBase):
    """Declarative base private to the cache, so its metadata never mixes with other databases."""


class Meta(Base):
    """Key/value facts about the file itself; the ``*schema_version`` keys are what migrations read first."""

    __tablename__ = "meta"

    key: Mapped[str] = mapped_column(Text, primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class FileHash(Base):
    """Fast path: the last seen ``(size, mtime_ns)`` of an absolute path and the content hash it had then."""

    __tablename__ = "file_hashes"

    path: Mapped[str] = mapped_column(Text, primary_key=True)  # encode_path() of the absolute path
    size: Mapped[int] = mapped_column(BigInteger)
    mtime_ns: Mapped[int] = mapped_column(BigInteger)
    content_hash: Mapped[str] = mapped_column(String(2 * _DIGEST_SIZE))


class ScoreRow(Base):
    """One score card (opaque JSON) per content hash, model fingerprint and settings fingerprint."""

    __tablename__ = "scores"

    content_hash: Mapped[str] = mapped_column(String(2 * _DIGEST_SIZE), primary_key=True)
    model_fp: Mapped[str] = mapped_column(Text, primary_key=True)
    settings_fp: Mapped[str] = mapped_column(Text, primary_key=True)
    card_json: Mapped[str] = mapped_column(Text)
    updated_at: Mapped[float] = mapped_column(Float)  # unix seconds; lets a later "prune old" feature exist

    # count(model_fp) and per-model housekeeping would otherwise scan the whole table.
    __table_args__ = (Index("ix_scores_model_settings", "model_fp", "settings_fp"),)


# ----------------------------------------------------------------------------------------- migrations


@dataclass(frozen=True)
class Migration:
    """One schema step: ``statements`` bring the tables from ``version - 1`` to ``version``.

    ``apply`` (optional) runs after the statements for steps that must transform data in Python. Both
    run inside the migration transaction: a step that fails leaves the file exactly as it was.
    """

    version: int
    description: str
    statements: tuple[str, ...] = ()
    apply: Callable[[sqlite3.Connection], None] | None = None


@dataclass(frozen=True)
class SchemaComponent:
    """A group of tables with its own version key in ``meta`` (the cache's, the decisions')."""

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


class DecisionsVersionError(HumanAesError):
    """The decision tables were written by a newer HumanAes."""


CACHE_COMPONENT = SchemaComponent(
    "cache",
    "schema_version",
    (Migration(1, "first released schema: meta, file_hashes, scores", _CACHE_V1),),
    CacheVersionError,
)
DECISIONS_COMPONENT = SchemaComponent(
    "decisions",
    "decisions_schema_version",
    (Migration(1, "first released schema: decisions, decision_history", _DECISIONS_V1),),
    DecisionsVersionError,
)
#: Every part of the file, by name; a damaged file's replacement gets all of them before salvage.
COMPONENTS: dict[str, SchemaComponent] = {c.name: c for c in (CACHE_COMPONENT, DECISIONS_COMPONENT)}


def _connect_raw(path: Path) -> sqlite3.Connection:
    """A plain sqlite3 connection in autocommit mode (we write BEGIN/COMMIT), patient with locks."""
    conn = sqlite3.connect(str(path), timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None)
    try:
        conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        conn.execute("PRAGMA journal_mode=WAL")
    except BaseException:
        conn.close()
        raise
    return conn


def migrate(path: str | os.PathLike[str], component: SchemaComponent) -> int:
    """Bring ``component``'s tables in the file to its head version; returns the version found.

    One ``BEGIN IMMEDIATE`` transaction holds the write lock from the version read to the commit, so a
    second process opening the same old file waits and then finds nothing left to do. A file whose
    version is newer than this code knows is refused with ``component.error`` and left untouched.
    """
    where = Path(path)
    conn = _connect_raw(where)
    try:
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.execute(_META_DDL)
            row = conn.execute("SELECT value FROM meta WHERE key = ?", (component.version_key,)).fetchone()
            found = _parse_version(row[0] if row else None, where, component)
            if found > component.head:
                raise component.error(
                    f"{where} was written by a newer HumanAes ({component.name} schema {found}, this "
                    f"version reads {component.head}). Update HumanAes or point {CACHE_ENV_VAR} at "
                    "another file."
                )
            for step in component.migrations:
                if step.version <= found:
                    continue
                for statement in step.statements:
                    conn.execute(statement)
                if step.apply is not None:
                    step.apply(conn)
                if found > 0:
                    log.info(
                        "%s: %s schema -> %d (%s)", where, component.name, step.version, step.description
                    )
            if found != component.head:
                conn.execute(
                    "INSERT INTO meta (key, value) VALUES (?, ?) "
                    "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                    (component.version_key, str(component.head)),
                )
            conn.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            raise
    finally:
        conn.close()
    return found


def _parse_version(stored: str | None, where: Path, component: SchemaComponent) -> int:
    if stored is None:
        return 0
    try:
        return int(stored)
    except ValueError:
        raise component.error(f"{where}: unrecognised {component.name} schema version {stored!r}") from None


# ------------------------------------------------------------------------------------- damaged files


def _error_code(exc: BaseException) -> int | None:
    orig = getattr(exc, "orig", exc)
    code = getattr(orig, "sqlite_errorcode", None)
    return None if code is None else code & 0xFF


def _is_busy(exc: BaseException) -> bool:
    code = _error_code(exc)
    if code is not None:
        return code in (_SQLITE_BUSY, _SQLITE_LOCKED)
    text = str(getattr(exc, "orig", exc)).lower()
    return "database is locked" in text or "database is busy" in text or "database table is locked" in text


def _is_damage(exc: BaseException) -> bool:
    code = _error_code(exc)
    if code is not None:
        return code in (_SQLITE_CORRUPT, _SQLITE_NOTADB)
    text = str(getattr(exc, "orig", exc)).lower()
    return "malformed" in text or "not a database" in text


def database_damage(path: str | os.PathLike[str], *, thorough: bool = False) -> str | None:
    """Why the file at ``path`` is not a usable SQLite database, or None if it is (or does not exist).

    ``quick_check`` reads every page (tens of milliseconds for a 60 MB cache); ``thorough`` runs the full
    ``integrity_check`` (indexes against tables too). A lock held by another process is not damage.
    """
    where = Path(path)
    try:
        st = where.stat()
    except FileNotFoundError:
        return None
    except OSError as e:
        raise CacheUnavailableError(f"cannot open the cache {where}: {e.strerror or e}") from None
    if stat_mod.S_ISDIR(st.st_mode):
        raise CacheUnavailableError(
            f"cannot open the cache {where}: it is a folder; point {CACHE_ENV_VAR} at a file"
        )
    if st.st_size == 0:
        return None  # a new database (in WAL mode the first commits may not have reached the file yet)
    try:
        conn = sqlite3.connect(str(where), timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None)
    except sqlite3.Error as e:
        raise CacheUnavailableError(f"cannot open the cache {where}: {e}") from None
    try:
        check = "PRAGMA integrity_check(1)" if thorough else "PRAGMA quick_check(1)"
        rows = conn.execute(check).fetchall()
    except sqlite3.DatabaseError as e:
        if _is_damage(e):
            return str(e)
        if _is_busy(e):
            return None  # in use elsewhere: a later error will say whether it is damaged
        raise CacheUnavailableError(f"cannot open the cache {where}: {e}") from None
    finally:
        conn.close()
    verdict = "; ".join(str(r[0]) for r in rows)
    return None if verdict == "ok" else verdict


@contextlib.contextmanager
def _file_lock(db: Path) -> Iterator[None]:
    """Exclusive lock on ``<db>.lock`` between processes, for moving a damaged file aside exactly once."""
    lock_path = db.with_name(db.name + ".lock")
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline = time.monotonic() + _LOCK_WAIT_S
        while True:
            try:
                if os.name == "nt":
                    import msvcrt

                    msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
                else:
                    import fcntl

                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise CacheBusyError(
                        f"{db}: another HumanAes is repairing this cache; try again"
                    ) from None
                time.sleep(0.05)
        yield
    finally:
        os.close(fd)  # closing releases the lock on both platforms


def _aside_name(db: Path) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    target = db.with_name(f"{db.name}.damaged-{stamp}")
    n = 1
    while target.exists() or Path(f"{target}-wal").exists():
        n += 1
        target = db.with_name(f"{db.name}.damaged-{stamp}-{n}")
    return target


def _move_aside(db: Path, reason: str) -> Path:
    """Rename the damaged file (and its WAL, which may hold its last commits) out of the way."""
    target = _aside_name(db)
    wal = Path(f"{db}-wal")
    if wal.exists():  # first, so nobody opens the old WAL against the new, empty file
        os.replace(wal, f"{target}-wal")
    os.replace(db, target)
    for derived in (Path(f"{db}-shm"), Path(f"{db}-journal")):
        with contextlib.suppress(FileNotFoundError):
            derived.unlink()
    log.warning(
        "The HumanAes cache %s is damaged (%s). It was moved aside to %s and a new cache was started; "
        "whatever scores and decisions could still be read from it are copied into the new one.",
        db,
        reason,
        target,
    )
    return target


#: Tables worth copying out of a damaged file, with their columns in schema 1 (the undo history and the
#: path fast path are not: the first is meaningless without every step, the second rebuilds itself).
_SALVAGE: dict[str, tuple[str, ...]] = {
    "scores": ("content_hash", "model_fp", "settings_fp", "card_json", "updated_at"),
    "decisions": ("content_hash", "path", "stars", "flag", "label", "source", "updated_at"),
}


def _salvage(damaged: Path, fresh: Path) -> dict[str, int]:
    """Copy every row still readable from ``damaged`` into ``fresh``; reading stops at the first bad page."""
    copied: dict[str, int] = {}
    try:
        src = sqlite3.connect(str(damaged), isolation_level=None)
    except sqlite3.Error:
        return copied
    try:
        dst = _connect_raw(fresh)
    except sqlite3.Error:
        src.close()
        return copied
    try:
        for table, columns in _SALVAGE.items():
            rows: list[tuple] = []
            try:
                cursor = src.execute(f"SELECT {', '.join(columns)} FROM {table}")
                while batch := cursor.fetchmany(500):
                    rows.extend(batch)
            except sqlite3.Error:
                pass  # keep what was read before the damage
            if not rows:
                continue
            marks = ", ".join("?" * len(columns))
            dst.execute("BEGIN IMMEDIATE")
            try:
                dst.executemany(
                    f"INSERT OR IGNORE INTO {table} ({', '.join(columns)}) VALUES ({marks})", rows
                )
                dst.execute("COMMIT")
            except sqlite3.Error:
                dst.execute("ROLLBACK")
                continue
            copied[table] = len(rows)
    finally:
        src.close()
        dst.close()
    return copied


def _replace_damaged(db: Path, reason: str) -> Path:
    """Move ``db`` aside, build a fresh file with every component's schema and salvage into it."""
    target = _move_aside(db, reason)
    for component in COMPONENTS.values():
        migrate(db, component)
    copied = _salvage(target, db)
    if copied:
        log.warning(
            "Recovered from %s: %s.", target, ", ".join(f"{n} rows of {table}" for table, n in copied.items())
        )
    return target


# --------------------------------------------------------------------------------------------- engine


def _on_connect(dbapi_conn: sqlite3.Connection, _record: object) -> None:
    """Per-connection settings: we issue BEGIN ourselves; patient lock waits first, then WAL."""
    dbapi_conn.isolation_level = None  # autocommit reads; writes say BEGIN IMMEDIATE (see _on_begin)
    cur = dbapi_conn.cursor()
    try:
        cur.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")  # before WAL: switching may wait for a lock
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")  # safe in WAL: a killed process loses no commit
        cur.execute("PRAGMA foreign_keys=ON")
    finally:
        cur.close()


def _on_begin(conn: Any) -> None:
    """Write transactions take the write lock up front, so they wait (busy handler) instead of failing
    when another writer committed after they started reading (SQLITE_BUSY_SNAPSHOT in WAL mode)."""
    if conn.get_execution_options().get(_WRITE_OPTION):
        conn.exec_driver_sql("BEGIN IMMEDIATE")


def _make_engine(path: Path) -> Engine:
    engine = create_engine(URL.create("sqlite+pysqlite", database=str(path)))
    event.listen(engine, "connect", _on_connect)
    event.listen(engine, "begin", _on_begin)
    return engine


#: Files this process found healthy, by path, device, inode, size and mtime: opening the same, unchanged
#: file again (the app opens it for every scoring run) skips the quick_check.
_CHECKED: set[tuple[str, int, int, int, int]] = set()
_CHECKED_LOCK = threading.Lock()


def _checked_key(path: Path) -> tuple[str, int, int, int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return (str(path), st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


class SQLiteStore:
    """One process's handle on the HumanAes database file, shared by the cache and the decision store.

    Subclasses name their ``component``; opening checks the file for damage (once per process and
    file), migrates the component, and every read or write goes through ``_read``/``_write``, which retry
    while another process holds the lock and replace the file if SQLite reports it damaged.
    """

    component: ClassVar[SchemaComponent]
    path: Path
    #: Where the damaged file was moved to when this handle had to start a fresh one (None: it did not).
    recovered_from: Path | None

    def __init__(self, path: str | os.PathLike[str] | None = None) -> None:
        self.path = Path(path).expanduser() if path is not None else default_cache_path()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise CacheUnavailableError(f"cannot create the folder of the cache {self.path}: {e}") from None
        self.recovered_from = None
        self._swap = threading.Lock()
        self._generation = 0
        self.schema_found = self._open()

    # ---------------------------------------------------------------- opening

    def _open(self) -> int:
        key = _checked_key(self.path)
        with _CHECKED_LOCK:
            known = key is not None and key in _CHECKED
        if not known:
            reason = database_damage(self.path)
            if reason is not None:
                self._recover_file(reason, thorough=False)
        found = self._migrate_or_recover()
        key = _checked_key(self.path)
        if key is not None:
            with _CHECKED_LOCK:
                _CHECKED.add(key)
        self._start_engine()
        return found

    def _migrate_or_recover(self) -> int:
        """Migrate; if SQLite finds damage that the check missed, replace the file (looking again under
        the lock first, then regardless) and migrate the fresh one."""
        attempt = 0
        while True:
            try:
                return migrate(self.path, self.component)
            except sqlite3.DatabaseError as e:
                if not _is_damage(e) or attempt == 2:
                    raise self._unavailable(e) from None
                self._recover_file(str(e), thorough=True, force=attempt == 1)
                attempt += 1

    def _unavailable(self, e: BaseException) -> HumanAesError:
        if _is_busy(e):
            return CacheBusyError(f"{self.path} stayed locked by another program; try again ({e})")
        return CacheUnavailableError(f"cannot open the cache {self.path}: {e}")

    def _start_engine(self) -> None:
        engine = _make_engine(self.path)
        self._engine: Engine = engine
        self._sessions: sessionmaker[Session] = sessionmaker(engine, expire_on_commit=False)
        self._write_sessions: sessionmaker[Session] = sessionmaker(
            engine.execution_options(**{_WRITE_OPTION: True}), expire_on_commit=False
        )

    def _recover_file(self, reason: str, *, thorough: bool, force: bool = False) -> None:
        """Replace the damaged file unless, looked at again under the lock, it is healthy now (another
        process replaced it already); ``force`` skips that second look."""
        with _file_lock(self.path):
            still = reason if force else database_damage(self.path, thorough=thorough)
            if still is None:
                return
            self.recovered_from = _replace_damaged(self.path, still)
        with _CHECKED_LOCK:
            _CHECKED.difference_update({k for k in _CHECKED if k[0] == str(self.path)})

    def _recover(self, generation: int, exc: BaseException, *, force: bool) -> None:
        """SQLite reported damage while in use: swap in a healthy file (once, whichever thread sees it)."""
        with self._swap:
            if generation != self._generation:
                return  # another thread of this handle already recovered
            self._engine.dispose()
            self._recover_file(str(getattr(exc, "orig", exc)), thorough=True, force=force)
            self._migrate_or_recover()
            self._start_engine()
            self._generation += 1

    # ---------------------------------------------------------------- transactions

    def _run(self, work: Callable[[Session], T], *, write: bool) -> T:
        delay = 0.05
        busy = 0
        recoveries = 0
        started = time.monotonic()
        while True:
            generation = self._generation
            try:
                if write:
                    with self._write_sessions.begin() as session:
                        return work(session)
                with self._sessions() as session:
                    return work(session)
            except sa_exc.DBAPIError as e:
                if _is_busy(e):
                    busy += 1
                    if busy > _BUSY_RETRIES:
                        raise CacheBusyError(
                            f"{self.path} stayed locked by another program for "
                            f"{time.monotonic() - started:.0f} s; try again when it has finished"
                        ) from e
                    log.info("%s is busy, retrying in %.2f s", self.path, delay)
                    time.sleep(delay * (1 + random.random()))
                    delay = min(delay * 2, 2.0)
                    continue
                if _is_damage(e):
                    if recoveries >= 2:
                        raise CacheUnavailableError(f"the cache {self.path} keeps failing: {e.orig}") from e
                    # first time: replace the file if it is still damaged; second time: replace it anyway
                    self._recover(generation, e, force=recoveries > 0)
                    recoveries += 1
                    continue
                raise

    def _read(self, work: Callable[[Session], T]) -> T:
        """Run ``work`` on autocommit reads (no snapshot held between statements)."""
        return self._run(work, write=False)

    def _write(self, work: Callable[[Session], T]) -> T:
        """Run ``work`` in one short BEGIN IMMEDIATE transaction, retried as a whole if needed."""
        return self._run(work, write=True)

    # ---------------------------------------------------------------- lifecycle

    def close(self) -> None:
        """Release pooled connections (and with them SQLite's file handles and WAL checkpoint duties)."""
        self._engine.dispose()

    def __enter__(self) -> SQLiteStore:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.path)!r})"


# --------------------------------------------------------------------------------------------- helpers


def _chunks(items: Sequence[Any], size: int = _MAX_PARAMS) -> Iterator[Sequence[Any]]:
    """Split ``items`` so no single statement binds more than ``size`` parameters."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _abs_key(path: str | Path) -> str:
    """Fast-path key: absolute and normalised; symlinks are not resolved (that costs syscalls per file)."""
    return os.path.abspath(os.fspath(path))


def _decode_card(card_json: str, content_hash: str) -> dict | None:
    """Parse a stored card; a corrupt row is logged and treated as a miss so the photo is simply rescored."""
    try:
        card = json.loads(card_json)
    except ValueError:
        log.warning("score cache: unreadable card for %s, ignoring it", content_hash)
        return None
    return card if isinstance(card, dict) else None


def _stat_regular(key: str) -> os.stat_result:
    """``os.stat`` that refuses what cannot be hashed: folders and pipes, devices, sockets."""
    st = os.stat(key)
    if stat_mod.S_ISDIR(st.st_mode):
        raise IsADirectoryError(errno.EISDIR, "Is a directory", key)
    if not stat_mod.S_ISREG(st.st_mode):
        raise NotRegularFileError(key)
    return st


# --------------------------------------------------------------------------------------------- cache


class ScoreCache(SQLiteStore):
    """Persistent score-card store keyed by photo content; safe to open from several threads or processes."""

    component = CACHE_COMPONENT

    def __init__(self, path: str | os.PathLike[str] | None = None) -> None:
        super().__init__(path)

    @property
    def schema_version(self) -> int:
        """The cache schema this file is at (always the head once opened: older files are migrated)."""
        return self.component.head

    def __enter__(self) -> ScoreCache:
        return self

    # ---------------------------------------------------------------- content hashes

    def content_hash(self, path: str | Path) -> str:
        """Hash of one file's content, re-reading it only if its size or mtime changed since last time.

        Raises ``OSError`` (e.g. ``FileNotFoundError``, ``PermissionError``) for files that cannot be read.
        """
        result = self.content_hashes([path])[Path(path)]
        if isinstance(result, OSError):
            raise result
        return result

    def content_hashes(self, paths: Sequence[str | Path]) -> dict[Path, str | OSError]:
        """Hashes for many files at once, the way a folder rescan needs them.

        Every file is stat'ed, the fast-path rows are fetched in one (chunked) query, only new or changed
        files are read, and the refreshed rows are written in one transaction. The result is keyed by
        ``Path(p)`` for each input ``p``; a file that cannot be stat'ed or read (or is not a regular file)
        maps to its ``OSError`` so the caller can report it without losing the rest of the folder.
        """
        return {
            p: (h if isinstance(h, OSError) else h.content_hash) for p, h in self.hash_files(paths).items()
        }

    def hash_files(self, paths: Sequence[str | Path]) -> dict[Path, HashedFile | OSError]:
        """``content_hashes`` plus each file's signature as it was before its bytes were read.

        A caller that reads the file again later (to decode it) compares the signature then: if it
        changed, the bytes it decoded may not be the bytes that were hashed.
        """
        results: dict[Path, HashedFile | OSError] = {}
        stats: dict[str, os.stat_result] = {}  # abs key -> stat
        keys_for: dict[Path, str] = {}
        for p in paths:
            given = Path(p)
            if given in keys_for or given in results:
                continue
            key = _abs_key(p)
            keys_for[given] = key
            if key in stats:
                continue
            try:
                stats[key] = _stat_regular(key)
            except OSError as exc:
                results[given] = exc

        known: dict[str, tuple[int, int, str]] = {}
        if stats:
            encoded = {encode_path(k): k for k in stats}

            def fetch(session: Session) -> dict[str, tuple[int, int, str]]:
                found: dict[str, tuple[int, int, str]] = {}
                for chunk in _chunks(list(encoded)):
                    rows = session.execute(
                        select(FileHash.path, FileHash.size, FileHash.mtime_ns, FileHash.content_hash).where(
                            FileHash.path.in_(chunk)
                        )
                    )
                    for row_path, size, mtime_ns, digest in rows:
                        found[encoded[row_path]] = (size, mtime_ns, digest)
                return found

            known = self._read(fetch)

        hashes: dict[str, HashedFile | OSError] = {}
        fresh: list[dict[str, Any]] = []
        for key, st in stats.items():
            sig = _signature(st)
            row = known.get(key)
            if row is not None and row[0] == sig.size and row[1] == sig.mtime_ns:
                hashes[key] = HashedFile(row[2], sig)
                continue
            # The stat was taken before reading: if the file changes while we hash it, its mtime will no
            # longer match the stored one next time and it is simply hashed again.
            try:
                digest = content_hash_file(key)
            except OSError as exc:
                hashes[key] = exc
                continue
            hashes[key] = HashedFile(digest, sig)
            fresh.append(
                {"path": encode_path(key), "size": sig.size, "mtime_ns": sig.mtime_ns, "content_hash": digest}
            )

        if fresh:
            stmt = sqlite_insert(FileHash)
            stmt = stmt.on_conflict_do_update(
                index_elements=[FileHash.path],
                set_={
                    "size": stmt.excluded.size,
                    "mtime_ns": stmt.excluded.mtime_ns,
                    "content_hash": stmt.excluded.content_hash,
                },
            )
            self._write(lambda session: session.execute(stmt, fresh))

        for given, key in keys_for.items():
            if given not in results:
                results[given] = hashes[key]
        # Preserve the caller's order (errors from the stat pass were inserted early).
        return {Path(p): results[Path(p)] for p in paths}

    # ---------------------------------------------------------------- score cards

    def get(self, content_hash: str, model_fp: str, settings_fp: str) -> dict | None:
        """The cached card for this content under this model and settings, or ``None`` if never scored."""
        card_json = self._read(
            lambda session: session.execute(
                select(ScoreRow.card_json).where(
                    ScoreRow.content_hash == content_hash,
                    ScoreRow.model_fp == model_fp,
                    ScoreRow.settings_fp == settings_fp,
                )
            ).scalar_one_or_none()
        )
        return None if card_json is None else _decode_card(card_json, content_hash)

    def get_many(self, content_hashes: Iterable[str], model_fp: str, settings_fp: str) -> dict[str, dict]:
        """Cached cards for many hashes in one round of queries; hashes never scored are simply absent."""
        wanted = list(dict.fromkeys(content_hashes))
        if not wanted:
            return {}

        def fetch(session: Session) -> dict[str, dict]:
            found: dict[str, dict] = {}
            for chunk in _chunks(wanted, _MAX_PARAMS - 2):  # two parameters go to the fingerprints
                rows = session.execute(
                    select(ScoreRow.content_hash, ScoreRow.card_json).where(
                        ScoreRow.model_fp == model_fp,
                        ScoreRow.settings_fp == settings_fp,
                        ScoreRow.content_hash.in_(chunk),
                    )
                )
                for digest, card_json in rows:
                    card = _decode_card(card_json, digest)
                    if card is not None:
                        found[digest] = card
            return found

        return self._read(fetch)

    def put(self, content_hash: str, model_fp: str, settings_fp: str, card: dict) -> None:
        """Store (or replace) one card; rescoring the same photo overwrites rather than duplicates."""
        self.put_many([(content_hash, card)], model_fp, settings_fp)

    def put_many(self, rows: Iterable[tuple[str, dict]], model_fp: str, settings_fp: str) -> None:
        """Store many cards in one transaction, so a batch is either all cached or not at all."""
        now = time.time()
        params: list[dict[str, Any]] = []
        for content_hash, card in rows:
            if not isinstance(card, dict):
                raise TypeError(f"score card must be a dict, got {type(card).__name__}")
            params.append(
                {
                    "content_hash": content_hash,
                    "model_fp": model_fp,
                    "settings_fp": settings_fp,
                    # Serialise before opening the transaction: a bad card fails without touching the file.
                    # ASCII escapes keep paths with undecodable bytes (lone surrogates) storable.
                    "card_json": json.dumps(card, ensure_ascii=True, separators=(",", ":")),
                    "updated_at": now,
                }
            )
        if not params:
            return
        stmt = sqlite_insert(ScoreRow)
        stmt = stmt.on_conflict_do_update(
            index_elements=[ScoreRow.content_hash, ScoreRow.model_fp, ScoreRow.settings_fp],
            set_={"card_json": stmt.excluded.card_json, "updated_at": stmt.excluded.updated_at},
        )
        self._write(lambda session: session.execute(stmt, params))

    def count(self, model_fp: str | None = None) -> int:
        """Number of cached cards, in total or for one model (for the status bar and housekeeping)."""
        query = select(func.count()).select_from(ScoreRow)
        if model_fp is not None:
            query = query.where(ScoreRow.model_fp == model_fp)
        return int(self._read(lambda session: session.execute(query).scalar_one()))
