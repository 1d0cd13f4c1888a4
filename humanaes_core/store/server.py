"""The PostgreSQL library: the shared one, for a studio where several machines cull the same shoot.

The tables, migrations and versions are SQLite's (``migrations``); what SQLite's file handling did is
translated to a server:

- **Write discipline.** Cards and fast-path rows are upserts (``INSERT … ON CONFLICT DO UPDATE``), atomic
  on their own. A decision write reads the current decisions and appends one step to the one, linear undo
  history; SQLite serialised that with ``BEGIN IMMEDIATE``, here the transaction takes an advisory lock
  held until its commit (``lock_decisions``), so two editors' steps never interleave or share a number.
- **Outage.** A connection the server dropped (restart, network) is replaced before use (the pool pings
  it), and a statement that fails because the server cannot be reached is retried with back-off for
  ``RETRY_S`` seconds; after that the caller gets ``LibraryOfflineError``: the transaction did not happen,
  everything committed before is on the server, and the caller keeps its change (the app queues it).
  Serialisation failures and deadlocks are retried the same way.
- **Damage** is the server's business (WAL, checksums, backups): data corruption it reports ends the
  statement with ``CacheUnavailableError``; no file is moved aside.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Sequence
from typing import TypeVar

from sqlalchemy import Engine, create_engine, make_url, text
from sqlalchemy import exc as sa_exc
from sqlalchemy.orm import Session, sessionmaker

from humanaes_core.store.errors import CacheUnavailableError, LibraryOfflineError
from humanaes_core.store.migrations import SchemaComponent, migrate_server

__all__ = ["RETRY_S", "ServerStore", "lock_decisions", "make_engine"]

log = logging.getLogger(__name__)

T = TypeVar("T")

#: How long a statement is retried while the server cannot be reached, before the caller is told.
RETRY_S = 8.0
_CONNECT_TIMEOUT_S = 3
#: Server-wide key of the advisory lock a decision write holds until its commit ("HADecide").
_DECISIONS_LOCK = 0x4841446563696465
#: SQLSTATE classes of a lost or refused connection (08: connection exception; 57P: shutdown, crash
#: recovery, cannot connect now) and of transactions the server asks to run again.
_OFFLINE_STATES = ("08", "57P")
_AGAIN_STATES = ("40001", "40P01")
_DAMAGE_STATES = ("XX001", "XX002")
#: What a server says while it cannot take connections for a moment (it answers with FATAL then too).
_TRANSIENT_FATAL = ("starting up", "shutting down", "recovery mode", "too many clients", "connection slots")
_OUTCOME = {
    "open": "the library could not be opened",
    "read": "nothing could be read",
    "write": "this change is not saved yet",
}


def make_engine(url: str) -> Engine:
    """An engine on the server at ``url`` that replaces dropped connections before handing them out."""
    return create_engine(
        make_url(url),
        pool_pre_ping=True,
        connect_args={"connect_timeout": _CONNECT_TIMEOUT_S, "application_name": "humanaes"},
    )


def lock_decisions(session: Session) -> None:
    """Serialise decision writes across every process using the library, until this transaction ends."""
    session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _DECISIONS_LOCK})


def _sqlstate(exc: BaseException) -> str | None:
    return getattr(getattr(exc, "orig", exc), "sqlstate", None)


def _is_offline(exc: sa_exc.DBAPIError) -> bool:
    """The server could not be reached or dropped the connection (not: the statement was wrong)."""
    if exc.connection_invalidated:
        return True
    state = _sqlstate(exc)
    if state is None:  # a failed connection attempt carries no state in psycopg, only the server's words
        if not isinstance(exc, sa_exc.OperationalError):
            return False
        text = str(exc.orig)
        # "FATAL:" is the server answering: a wrong password or database is refused, not away
        return "FATAL:" not in text or any(words in text for words in _TRANSIENT_FATAL)
    return state.startswith(_OFFLINE_STATES)


class ServerStore:
    """One process's handle on a PostgreSQL library for one schema component (the cache's, the decisions').

    ``read``/``write`` run a unit of work in a transaction, retrying it whole while the server is
    unreachable or asks for it (see the module's notes).
    """

    dialect = "postgresql"
    recovered_from = None  # a server's damage is not repaired by moving a file aside

    def __init__(self, url: str, component: SchemaComponent) -> None:
        self.target = url
        try:
            self.where = make_url(url).render_as_string(hide_password=True)
            self._engine = make_engine(url)
        except sa_exc.ArgumentError as e:
            raise CacheUnavailableError(f"cannot use {url!r} as the library: {e}") from None
        self.component = component
        self._sessions: sessionmaker[Session] = sessionmaker(self._engine, expire_on_commit=False)
        try:
            self.schema_found = self._retrying(lambda: migrate_server(self._engine, component), doing="open")
        except sa_exc.DBAPIError as e:  # refused: a wrong password, no such database, no permission
            self._engine.dispose()
            raise CacheUnavailableError(f"cannot open the library server {self.where}: {_reason(e)}") from e
        except BaseException:
            self._engine.dispose()
            raise

    def read(self, work: Callable[[Session], T]) -> T:
        return self._retrying(lambda: self._once(work, write=False), doing="read")

    def write(self, work: Callable[[Session], T]) -> T:
        return self._retrying(lambda: self._once(work, write=True), doing="write")

    def rows(self, sql: str, params: Sequence[object]) -> list[tuple]:
        """The rows of one read-only query in psycopg's SQL (``%s`` placeholders)."""

        def query(session: Session) -> list[tuple]:
            return [tuple(row) for row in session.connection().exec_driver_sql(sql, tuple(params))]

        return self.read(query)

    def _once(self, work: Callable[[Session], T], *, write: bool) -> T:
        if write:
            with self._sessions.begin() as session:
                return work(session)
        with self._sessions() as session:
            return work(session)

    def _retrying(self, attempt: Callable[[], T], *, doing: str) -> T:
        deadline = time.monotonic() + RETRY_S
        delay = 0.1
        while True:
            try:
                return attempt()
            except sa_exc.DBAPIError as e:
                state = _sqlstate(e)
                if state in _DAMAGE_STATES:
                    raise CacheUnavailableError(
                        f"the library server {self.where} reports damaged data ({e.orig}); "
                        "nothing was changed; its administrator should check the database"
                    ) from e
                offline = _is_offline(e)
                if not offline and state not in _AGAIN_STATES:
                    raise
                if time.monotonic() + delay > deadline:
                    if not offline:
                        raise
                    raise LibraryOfflineError(
                        f"cannot reach the library server {self.where} ({_reason(e)}); "
                        f"{_OUTCOME[doing]}; everything saved before is safe on the server; "
                        "try again when it is back"
                    ) from e
                log.info("library server %s: %s; retrying in %.1f s", self.where, _reason(e), delay)
                time.sleep(delay * (1 + random.random() / 2))
                delay = min(delay * 2, 2.0)

    @property
    def engine(self) -> Engine:
        return self._engine

    def close(self) -> None:
        self._engine.dispose()


def _reason(exc: sa_exc.DBAPIError) -> str:
    return str(exc.orig).strip().splitlines()[0] if exc.orig is not None else str(exc)
