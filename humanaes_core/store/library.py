"""The library a store works on: a SQLite file (the embedded default) or a PostgreSQL server (the shared one).

The score cache and the decision store are written once against this base; it opens the backend the
location names (``location.library_target``) and hands their work to it: ``sqlite.SQLiteStore`` (WAL,
``BEGIN IMMEDIATE``, damaged files moved aside) or ``server.ServerStore`` (upserts, advisory locks, retries
while the server is unreachable). Units of work (``_read``, ``_write``) are portable SQLAlchemy; ``_insert``
is the dialect's ``INSERT`` with ``ON CONFLICT``, which both speak alike.

The lookups a scan makes for every photo (``_query``: a folder's fast-path hashes, its cached cards and
check results) are plain SQL that both servers read alike, run by the backend's own driver: on a SQLite
file that is the standard library's ``sqlite3``, so reopening a cached folder needs no SQLAlchemy at all
(importing it takes longer than the whole lookup). SQLAlchemy and psycopg are imported on first use.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, ClassVar, Self, TypeVar

from humanaes_core.store.location import default_library_path, library_target
from humanaes_core.store.migrations import SchemaComponent
from humanaes_core.store.sqlite import SQLiteStore

if TYPE_CHECKING:
    from sqlalchemy import Engine
    from sqlalchemy.orm import Session

    from humanaes_core.store.server import ServerStore

__all__ = ["MAX_PARAMS", "LibraryStore", "chunks", "json_row", "marks"]

T = TypeVar("T")
log = logging.getLogger(__name__)
#: Parameters one statement binds at most: well under SQLite's limit (999 on old builds).
MAX_PARAMS = 500


def chunks(items: Sequence[T], size: int = MAX_PARAMS) -> Iterator[Sequence[T]]:
    """``items`` in slices of at most ``size``, so no single statement binds more parameters."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


def json_row(text: str, what: str, content_hash: str) -> dict | None:
    """A stored JSON object (a card, a check result); an unreadable row is logged and read as a miss, so
    the photo is simply scored or checked again, never an error."""
    try:
        value = json.loads(text)
    except ValueError:
        log.warning("%s: unreadable row for %s, ignoring it", what, content_hash)
        return None
    return value if isinstance(value, dict) else None


def marks(count: int) -> str:
    """``?, ?, …``: the placeholders of a plain-SQL ``IN`` list of ``count`` values."""
    return ", ".join("?" * count)


class LibraryStore:
    """Base of the stores: subclasses name their schema ``component``, work through ``_read``/``_write``."""

    component: ClassVar[SchemaComponent]

    def __init__(self, location: str | os.PathLike[str] | None = None) -> None:
        target = library_target(location) if location is not None else default_library_path()
        self._backend: SQLiteStore | ServerStore
        if isinstance(target, str):
            from humanaes_core.store.server import ServerStore

            self._backend = ServerStore(target, self.component)
        else:
            self._backend = SQLiteStore(target, self.component)

    @property
    def path(self) -> Path | str:
        """The library: a SQLite file's path, or the server's URL (what another store opens it with)."""
        return self._backend.target

    @property
    def where(self) -> str:
        """The library for messages: the file's path, or the server's URL without its password."""
        return str(self._backend.where)

    @property
    def shared(self) -> bool:
        """Whether the library is on a server (other machines may be writing to it)."""
        return self._backend.dialect == "postgresql"

    @property
    def recovered_from(self) -> Path | None:
        """Where a damaged file was moved to when opening had to start a fresh one (None: it did not)."""
        return self._backend.recovered_from

    @property
    def schema_found(self) -> int:
        """The component's schema version the library was at when this handle opened it."""
        return self._backend.schema_found

    @property
    def engine(self) -> Engine:
        """The SQLAlchemy engine of the library (a damaged SQLite file's replacement gets a new one)."""
        return self._backend.engine

    def _read(self, work: Callable[[Session], T]) -> T:
        return self._backend.read(work)

    def _write(self, work: Callable[[Session], T]) -> T:
        return self._backend.write(work)

    def _driver_sql(self, sql: str) -> str:
        """Plain SQL written with SQLite's ``?`` placeholders, as the backend's driver takes it (psycopg's
        are ``%s``; none of the stores' statements has a literal ``?`` or ``%``)."""
        return sql.replace("?", "%s") if self.shared else sql

    def _query(self, sql: str, params: Sequence[object] = ()) -> list[tuple]:
        """The rows of one read-only query in plain SQL (see the module's notes and ``_driver_sql``)."""
        return self._backend.rows(self._driver_sql(sql), params)

    def _execute_many(self, sql: str, rows: Sequence[Sequence[object]]) -> None:
        """Run one plain-SQL statement (an upsert) for each of ``rows``, all in one write transaction."""
        statement = self._driver_sql(sql)
        self._write(lambda session: session.connection().exec_driver_sql(statement, list(rows)))

    def _insert(self, table: Any) -> Any:
        """``INSERT`` into ``table`` in the library's dialect, for ``on_conflict_do_update``."""
        from sqlalchemy.dialects import postgresql, sqlite

        return {"sqlite": sqlite.insert, "postgresql": postgresql.insert}[self._backend.dialect](table)

    def _serialise_decisions(self, session: Session) -> None:
        """Make this write transaction the only decision writer until it commits: SQLite's ``BEGIN
        IMMEDIATE`` already is; on the server an advisory lock does it."""
        if self.shared:
            from humanaes_core.store.server import lock_decisions

            lock_decisions(session)

    def close(self) -> None:
        """Release pooled connections."""
        self._backend.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.where!r})"
