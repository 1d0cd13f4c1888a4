"""The SQLite base shared by the score cache and the decision store: one file, handled defensively.

Storage is SQLite in WAL mode: readers (the UI) and writers (the scoring worker, a second CLI, the
decision store) in other threads or processes do not block each other. Units of work run in SQLAlchemy 2
sessions; the lookups a scan makes (``rows``: fast-path hashes, cached cards, check results) run on plain
read-only ``sqlite3`` connections, and the SQLAlchemy engine is made on first use, so a rescan of a cached
folder never imports SQLAlchemy (a quarter of a second). The file holds a photographer's decisions, so:

- **Short write transactions that take the write lock first** (``BEGIN IMMEDIATE``): a writer waits for
  another one in SQLite's busy handler (``busy_timeout``) instead of failing with "database is locked"
  when a read snapshot turns stale, and what is still busy after that is retried with back-off.
- **Crash safety**: every write is committed on its own as soon as it exists; WAL keeps committed
  transactions through a killed process, and an interrupted one simply never happened.
- **Only a SQLite database is ever treated as one**: a file at the library's path that does not start
  with SQLite's header (a photo named by mistake with ``--cache``, a device, a pipe) is refused with a
  one-line error and left untouched, before SQLite opens it; an absent (or empty) file becomes a new
  library. A PostgreSQL URL opens the server instead (``server.ServerStore``); other URLs are refused
  (``location.library_target``).
- **Damage**: a SQLite file that SQLite says is not a database or that fails its ``quick_check`` when
  it is opened, or that reports corruption later, is moved aside as ``<name>.damaged-<timestamp>``
  (with a warning in the log and ``recovered_from`` set), the scores, decisions and (when wholly
  readable) undo history still in it are copied into a fresh file, and work goes on. Nothing else ever
  deletes rows of another component.
- **A full disk or a read-only file** ends the write that hit it with ``CacheUnavailableError`` (one
  line); every transaction committed before it stays in the file.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import sqlite3
import stat as stat_mod
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple, TypeVar

from humanaes_core.errors import HumanAesError
from humanaes_core.files import nonblocking_opener
from humanaes_core.store.errors import CacheBusyError, CacheUnavailableError
from humanaes_core.store.location import (
    LIBRARY_ENV_VAR,
    LIBRARY_NAME,
    adopt_legacy_file,
    default_folder,
    file_lock,
    library_path,
)
from humanaes_core.store.migrations import BUSY_TIMEOUT_MS, COMPONENTS, SchemaComponent, connect_raw, migrate

if TYPE_CHECKING:
    from sqlalchemy import Engine
    from sqlalchemy.orm import Session, sessionmaker

__all__ = ["SQLITE_HEADER", "SQLiteStore", "database_damage", "refuse_foreign"]

log = logging.getLogger(__name__)

#: Readers kept open between lookups (``SQLiteStore._query``); more at once are opened and closed.
_IDLE_READERS = 4
_BUSY_RETRIES = 4  # busy even after busy_timeout: back-off retries (0.05 s doubling) before giving up
_WRITE_OPTION = "humanaes_write"  # execution option that makes a transaction BEGIN IMMEDIATE
_SQLITE_BUSY, _SQLITE_LOCKED, _SQLITE_CORRUPT, _SQLITE_NOTADB = 5, 6, 11, 26
_SQLITE_FULL = 13
#: The file cannot be written (or opened) at all: no retry or repair helps, the photographer must act.
_SQLITE_CANNOT = {
    3: "permission denied",
    8: "the file is read-only",
    10: "a disk I/O error; is the disk full or gone?",
    14: "it cannot be opened",
}
#: The first 16 bytes of every SQLite 3 database file.
SQLITE_HEADER = b"SQLite format 3\x00"

T = TypeVar("T")


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


def _cannot_use(exc: BaseException) -> str | None:
    """Why SQLite cannot use the file at all (disk full, read-only, I/O error), or None for other errors."""
    code = _error_code(exc)
    if code == _SQLITE_FULL:
        return "the disk is full; everything saved before is kept, free some space and run again"
    if code in _SQLITE_CANNOT:
        orig = getattr(exc, "orig", exc)
        return f"{_SQLITE_CANNOT[code]} ({getattr(orig, 'sqlite_errorname', None) or orig})"
    return None


def database_damage(path: str | os.PathLike[str], *, thorough: bool = False) -> str | None:
    """Why the file at ``path`` is not a usable SQLite database, or None if it is (or does not exist).

    ``quick_check`` reads every page (tens of milliseconds for a 60 MB file); ``thorough`` runs the full
    ``integrity_check`` (indexes against tables too). A lock held by another process is not damage. A
    file that is no SQLite database at all is not damage either: ``refuse_foreign`` raises for it.
    """
    where = Path(path)
    if not refuse_foreign(where):
        return None  # absent, or a new database (in WAL mode the first commits may not be in the file yet)
    try:
        conn = sqlite3.connect(str(where), timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None)
    except sqlite3.Error as e:
        raise CacheUnavailableError(f"cannot open the library {where}: {e}") from None
    try:
        check = "PRAGMA integrity_check(1)" if thorough else "PRAGMA quick_check(1)"
        rows = conn.execute(check).fetchall()
    except sqlite3.DatabaseError as e:
        if _is_damage(e):
            return str(e)
        if _is_busy(e):
            return None  # in use elsewhere: a later error will say whether it is damaged
        raise CacheUnavailableError(f"cannot open the library {where}: {e}") from None
    finally:
        conn.close()
    verdict = "; ".join(str(r[0]) for r in rows)
    return None if verdict == "ok" else verdict


#: Library files this process has SQLite connections to, by (device, inode), with how many handles.
#: Their header is never read with open()/close() again: POSIX record locks belong to the process, and
#: closing ANY descriptor of a file drops all of them, SQLite's included; another process would then
#: take the file for unused, check its WAL into the main file and delete the WAL and its index while
#: this process still reads and writes through them (its later commits would be lost).
_IN_USE: dict[tuple[int, int], int] = {}
_IN_USE_LOCK = threading.Lock()


def _file_id(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_dev, st.st_ino)


def _hold(file_id: tuple[int, int] | None, delta: int) -> None:
    if file_id is None:
        return
    with _IN_USE_LOCK:
        count = _IN_USE.get(file_id, 0) + delta
        if count > 0:
            _IN_USE[file_id] = count
        else:
            _IN_USE.pop(file_id, None)


def refuse_foreign(where: Path) -> bool:
    """Raise ``CacheUnavailableError`` unless ``where`` is absent or a regular file that starts like a
    SQLite database (empty, or a prefix of the header, counts: another opener is creating it). Returns
    whether the file has content. Read without blocking, so a pipe cannot hang the check; a file this
    process already has open as a library is not opened again (see ``_IN_USE``).
    """
    file_id = _file_id(where)
    with _IN_USE_LOCK:
        if file_id is not None and file_id in _IN_USE:
            return True
    try:
        fd = nonblocking_opener(where, os.O_RDONLY | getattr(os, "O_BINARY", 0))
    except FileNotFoundError:
        return False
    except IsADirectoryError:
        raise CacheUnavailableError(
            f"cannot open the library {where}: it is a folder; point {LIBRARY_ENV_VAR} at a file"
        ) from None
    except OSError as e:
        raise CacheUnavailableError(f"cannot open the library {where}: {e.strerror or e}") from None
    try:
        st = os.fstat(fd)
        if stat_mod.S_ISDIR(st.st_mode):
            raise CacheUnavailableError(
                f"cannot open the library {where}: it is a folder; point {LIBRARY_ENV_VAR} at a file"
            )
        if not stat_mod.S_ISREG(st.st_mode):
            raise CacheUnavailableError(
                f"cannot use {where} as the library: it is not a regular file (a device, pipe or socket); "
                "it was left untouched"
            )
        head = os.read(fd, len(SQLITE_HEADER))
    except OSError as e:
        raise CacheUnavailableError(f"cannot read the library {where}: {e.strerror or e}") from None
    finally:
        os.close(fd)
    if not SQLITE_HEADER.startswith(head):
        raise CacheUnavailableError(
            f"cannot use {where} as the library: it is not a SQLite database (it was left untouched); "
            "name a new file or an existing HumanAes library"
        )
    return bool(head)


def _aside_name(db: Path) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    target = db.with_name(f"{db.name}.damaged-{stamp}")
    n = 1
    while target.exists() or Path(f"{target}-wal").exists():
        n += 1
        target = db.with_name(f"{db.name}.damaged-{stamp}-{n}")
    return target


def _move_aside(db: Path, reason: str) -> Path:
    """Rename the damaged file (and its WAL, which may hold its last commits) out of the way; never a
    file that is not a SQLite database (``refuse_foreign``): that would rename someone's photo."""
    refuse_foreign(db)
    target = _aside_name(db)
    wal = Path(f"{db}-wal")
    if wal.exists():  # first, so nobody opens the old WAL against the new, empty file
        os.replace(wal, f"{target}-wal")
    os.replace(db, target)
    for derived in (Path(f"{db}-shm"), Path(f"{db}-journal")):
        with contextlib.suppress(FileNotFoundError):
            derived.unlink()
    log.warning(
        "The HumanAes library %s is damaged (%s). It was moved aside to %s and a new one was started; "
        "whatever scores and decisions could still be read from it are copied into the new one.",
        db,
        reason,
        target,
    )
    return target


class _Salvaged(NamedTuple):
    """A table worth copying out of a damaged file: its schema-1 columns, and whether only all of it
    is worth having (an undo history with steps missing would undo half a key press)."""

    columns: tuple[str, ...]
    whole_only: bool = False


#: The path fast path is not copied: it rebuilds itself on the next scan.
_SALVAGE: dict[str, _Salvaged] = {
    "scores": _Salvaged(("content_hash", "model_fp", "settings_fp", "card_json", "updated_at")),
    "decisions": _Salvaged(("content_hash", "path", "stars", "flag", "label", "source", "updated_at")),
    "photo_checks": _Salvaged(("content_hash", "checks_version", "result_json", "updated_at")),
    "decision_history": _Salvaged(
        (
            "id",
            "step",
            "content_hash",
            "path",
            "before_json",
            "after_json",
            "description",
            "undone",
            "created_at",
        ),
        whole_only=True,
    ),
}


def _readable_rows(src: sqlite3.Connection, table: str, spec: _Salvaged) -> list[tuple]:
    """The rows of ``table`` that can still be read (none when ``spec.whole_only`` and some cannot)."""
    rows: list[tuple] = []
    try:
        cursor = src.execute(f"SELECT {', '.join(spec.columns)} FROM {table}")
        while batch := cursor.fetchmany(500):
            rows.extend(batch)
    except sqlite3.Error:
        return [] if spec.whole_only else rows  # keep what was read before the damage
    return rows


def _salvage(damaged: Path, fresh: Path) -> dict[str, int]:
    """Copy every row still readable from ``damaged`` into ``fresh``; reading stops at the first bad page."""
    copied: dict[str, int] = {}
    try:
        src = sqlite3.connect(str(damaged), isolation_level=None)
    except sqlite3.Error:
        return copied
    try:
        dst = connect_raw(fresh)
    except sqlite3.Error:
        src.close()
        return copied
    try:
        for table, spec in _SALVAGE.items():
            rows = _readable_rows(src, table, spec)
            if not rows:
                continue
            names, marks = ", ".join(spec.columns), ", ".join("?" * len(spec.columns))
            dst.execute("BEGIN IMMEDIATE")
            try:
                dst.executemany(f"INSERT OR IGNORE INTO {table} ({names}) VALUES ({marks})", rows)
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
    from sqlalchemy import URL, create_engine, event

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


class _Sessions(NamedTuple):
    """A library file's SQLAlchemy engine, its read sessions and its ``BEGIN IMMEDIATE`` write sessions."""

    engine: Engine
    sessions: sessionmaker[Session]
    write_sessions: sessionmaker[Session]


class SQLiteStore:
    """One process's handle on a library file for one schema component (the cache's, the decisions').

    Opening checks the file for damage (once per process and file) and migrates the component; every
    read or write goes through ``read``/``write``, which retry while another process holds the lock and
    replace the file if SQLite reports it damaged. ``library.LibraryStore`` chooses this or the server.
    """

    dialect = "sqlite"
    path: Path
    #: Where the damaged file was moved to when this handle had to start a fresh one (None: it did not).
    recovered_from: Path | None

    def __init__(self, path: str | os.PathLike[str], component: SchemaComponent) -> None:
        self.component = component
        self.path = library_path(path)
        self.target = self.where = self.path
        refuse_foreign(self.path)  # before anything is created beside it
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise CacheUnavailableError(f"cannot create the folder of the library {self.path}: {e}") from None
        self.recovered_from = None
        self._swap = threading.Lock()
        self._orm_lock = threading.Lock()
        self._generation = 0
        self._idle: list[sqlite3.Connection] = []  # readers between lookups (``_query``)
        self._epoch = 0  # counts file swaps and closes: a reader of an older epoch is not kept
        self.schema_found = self._open()

    # ---------------------------------------------------------------- opening

    def _open(self) -> int:
        if self.path == default_folder() / LIBRARY_NAME and adopt_legacy_file(self.path):
            refuse_foreign(self.path)
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
        return CacheUnavailableError(f"cannot open the library {self.path}: {_cannot_use(e) or e}")

    def _start_engine(self) -> None:
        """Hold the file as this process's (``_IN_USE``); the engine itself is made on first use."""
        self._in_use = _file_id(self.path)
        _hold(self._in_use, +1)
        self._orm: _Sessions | None = None

    def _sessions(self) -> _Sessions:
        """The engine and its session makers, made on first use (``_start_engine`` drops them)."""
        with self._orm_lock:
            if self._orm is None:
                from sqlalchemy.orm import sessionmaker

                engine = _make_engine(self.path)
                self._orm = _Sessions(
                    engine,
                    sessionmaker(engine, expire_on_commit=False),
                    sessionmaker(engine.execution_options(**{_WRITE_OPTION: True}), expire_on_commit=False),
                )
            return self._orm

    def _query(self, sql: str, params: Sequence[object]) -> list[tuple]:
        """One read-only query on an idle reader of this handle, or a new one. Readers are kept open
        between lookups (like the engine's pool): the last connection to a WAL file closing would
        checkpoint it and drop its shared memory, which a full disk could not give back."""
        with self._orm_lock:
            epoch = self._epoch
            conn = self._idle.pop() if self._idle else None
        try:
            if conn is None:
                conn = sqlite3.connect(
                    str(self.path),
                    timeout=BUSY_TIMEOUT_MS / 1000,
                    isolation_level=None,
                    check_same_thread=False,
                )
                conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
                conn.execute("PRAGMA query_only=ON")  # a lookup can never write
            rows = conn.execute(sql, params).fetchall()
        except BaseException:
            if conn is not None:
                conn.close()
            raise
        with self._orm_lock:
            if epoch == self._epoch and len(self._idle) < _IDLE_READERS:  # not replaced or closed meanwhile
                self._idle.append(conn)
                return rows
        conn.close()
        return rows

    def _recover_file(self, reason: str, *, thorough: bool, force: bool = False) -> None:
        """Replace the damaged file unless, looked at again under the lock, it is healthy now (another
        process replaced it already); ``force`` skips that second look."""
        with file_lock(self.path):
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
            self._drop_engine()
            self._recover_file(str(getattr(exc, "orig", exc)), thorough=True, force=force)
            self._migrate_or_recover()
            self._start_engine()
            self._generation += 1

    # ---------------------------------------------------------------- transactions

    def _run(self, attempt: Callable[[], T], *, write: bool) -> T:
        """``attempt()`` until it does not fail with a SQLite error that waiting or a new file cures:
        SQLite's own (``rows``) or SQLAlchemy's wrapping of them (``read``, ``write``)."""
        delay = 0.05
        busy = 0
        recoveries = 0
        started = time.monotonic()
        while True:
            generation = self._generation
            try:
                return attempt()
            except Exception as e:
                if not isinstance(getattr(e, "orig", e), sqlite3.Error):
                    raise
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
                        raise CacheUnavailableError(
                            f"the library {self.path} keeps failing: {getattr(e, 'orig', e)}"
                        ) from e
                    # first time: replace the file if it is still damaged; second time: replace it anyway
                    self._recover(generation, e, force=recoveries > 0)
                    recoveries += 1
                    continue
                reason = _cannot_use(e)
                if reason is not None:  # e.g. the disk filled up: what was committed before stays
                    raise CacheUnavailableError(
                        f"cannot {'write to' if write else 'read'} the library {self.path}: {reason}"
                    ) from e
                raise

    def _in_session(self, work: Callable[[Session], T], *, write: bool) -> T:
        orm = self._sessions()
        if write:
            with orm.write_sessions.begin() as session:
                return work(session)
        with orm.sessions() as session:
            return work(session)

    def read(self, work: Callable[[Session], T]) -> T:
        """Run ``work`` on autocommit reads (no snapshot held between statements)."""
        return self._run(lambda: self._in_session(work, write=False), write=False)

    def write(self, work: Callable[[Session], T]) -> T:
        """Run ``work`` in one short BEGIN IMMEDIATE transaction, retried as a whole if needed."""
        return self._run(lambda: self._in_session(work, write=True), write=True)

    def rows(self, sql: str, params: Sequence[object]) -> list[tuple]:
        """The rows of one read-only query (``?`` placeholders), on a plain ``sqlite3`` reader."""
        return self._run(lambda: self._query(sql, params), write=False)

    # ---------------------------------------------------------------- lifecycle

    @property
    def engine(self) -> Engine:
        return self._sessions().engine

    def _drop_engine(self) -> None:
        """Close the engine's pool and the idle readers, and let go of the file (``_IN_USE``); a reader in
        another thread's lookup now is closed when that lookup ends (``_epoch``)."""
        with self._orm_lock:
            orm, self._orm = self._orm, None
            idle, self._idle = self._idle, []
            self._epoch += 1
        if orm is not None:
            orm.engine.dispose()
        for conn in idle:
            conn.close()
        _hold(self._in_use, -1)
        self._in_use = None

    def close(self) -> None:
        """Release pooled connections (and with them SQLite's file handles and WAL checkpoint duties)."""
        self._drop_engine()
