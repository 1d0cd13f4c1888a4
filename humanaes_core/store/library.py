"""The library a store works on: a SQLite file (the embedded default) or a PostgreSQL server (the shared one).

The score cache and the decision store are written once, in portable SQLAlchemy, against this base; it
opens the backend the location names (``location.library_target``) and hands their units of work to it:
``sqlite.SQLiteStore`` (WAL, ``BEGIN IMMEDIATE``, damaged files moved aside) or ``server.ServerStore``
(upserts, advisory locks, retries while the server is unreachable). ``_insert`` is the dialect's
``INSERT`` with ``ON CONFLICT``, which both speak alike.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any, ClassVar, Self, TypeVar

from sqlalchemy import Engine
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from humanaes_core.store.location import default_library_path, library_target
from humanaes_core.store.migrations import SchemaComponent
from humanaes_core.store.server import ServerStore, lock_decisions
from humanaes_core.store.sqlite import SQLiteStore

__all__ = ["LibraryStore"]

T = TypeVar("T")

_INSERTS = {"sqlite": sqlite.insert, "postgresql": postgresql.insert}


class LibraryStore:
    """Base of the stores: subclasses name their schema ``component``, work through ``_read``/``_write``."""

    component: ClassVar[SchemaComponent]

    def __init__(self, location: str | os.PathLike[str] | None = None) -> None:
        target = library_target(location) if location is not None else default_library_path()
        self._backend: SQLiteStore | ServerStore = (
            ServerStore(target, self.component)
            if isinstance(target, str)
            else SQLiteStore(target, self.component)
        )

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
        return isinstance(self._backend, ServerStore)

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

    def _insert(self, table: Any) -> Any:
        """``INSERT`` into ``table`` in the library's dialect, for ``on_conflict_do_update``."""
        return _INSERTS[self._backend.dialect](table)

    def _serialise_decisions(self, session: Session) -> None:
        """Make this write transaction the only decision writer until it commits: SQLite's ``BEGIN
        IMMEDIATE`` already is; on the server an advisory lock does it."""
        if isinstance(self._backend, ServerStore):
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
