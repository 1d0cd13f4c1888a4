"""Check results: what the photographer's checks found in a photo, stored once per content.

Faces, closed eyes, focus, blur, exposure and misfires depend only on the photo's pixels and on the
checks' own version (``humanaes_core.checks.CHECKS_VERSION``), never on the model or the scoring
settings, so they live in their own table (``photo_checks``, component ``checks`` with its own
schema version) keyed by (content hash, checks version): a renamed or copied photo keeps them, a new
model keeps them, and a new checks version computes them afresh without touching the old rows. A result
is stored as opaque JSON (``{"faces": [...], "checks": {...}}``); ``scoring.CachedScoring`` turns it into
``Face`` and ``PhotoChecks``.

Written with SQLAlchemy Core constructs and portable SQL types only; the upsert picks the dialect's
``ON CONFLICT`` form (SQLite and PostgreSQL spell it alike).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterable
from typing import Any

from sqlalchemy import Float, Integer, String, Text, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from humanaes_core.store.hashing import DIGEST_SIZE
from humanaes_core.store.library import LibraryStore
from humanaes_core.store.migrations import CHECKS_COMPONENT

__all__ = ["CheckStore"]

log = logging.getLogger(__name__)

_MAX_PARAMS = 500


class _Base(DeclarativeBase):
    """The checks table's own metadata, apart from the score and decision tables'."""


class CheckRow(_Base):
    """One photo's check results under one checks version."""

    __tablename__ = "photo_checks"

    content_hash: Mapped[str] = mapped_column(String(2 * DIGEST_SIZE), primary_key=True)
    checks_version: Mapped[int] = mapped_column(Integer, primary_key=True)
    result_json: Mapped[str] = mapped_column(Text)
    updated_at: Mapped[float] = mapped_column(Float)


def _decode(text: str, content_hash: str) -> dict | None:
    """A stored result; an unreadable row is a miss (the photo is checked again), never an error."""
    try:
        value = json.loads(text)
    except ValueError:
        log.warning("photo checks: unreadable result for %s, ignoring it", content_hash)
        return None
    return value if isinstance(value, dict) else None


class CheckStore(LibraryStore):
    """Check results keyed by photo content and checks version, in the library (a SQLite file or a
    PostgreSQL server, like the score cache)."""

    component = CHECKS_COMPONENT

    def get_many(self, content_hashes: Iterable[str], version: int) -> dict[str, dict]:
        """Stored results of these hashes under `version`; hashes never checked are absent."""
        wanted = list(dict.fromkeys(content_hashes))

        def fetch(session: Session) -> dict[str, dict]:
            found: dict[str, dict] = {}
            for start in range(0, len(wanted), _MAX_PARAMS - 1):
                rows = session.execute(
                    select(CheckRow.content_hash, CheckRow.result_json).where(
                        CheckRow.checks_version == version,
                        CheckRow.content_hash.in_(wanted[start : start + _MAX_PARAMS - 1]),
                    )
                )
                for digest, text in rows:
                    result = _decode(text, digest)
                    if result is not None:
                        found[digest] = result
            return found

        return self._read(fetch) if wanted else {}

    def put_many(self, rows: Iterable[tuple[str, dict]], version: int) -> None:
        """Store results (content hash, result dict) in one transaction; a result already stored for
        the same hash and version is replaced."""
        now = time.time()
        params: list[dict[str, Any]] = [
            {
                "content_hash": digest,
                "checks_version": version,
                "result_json": json.dumps(result, ensure_ascii=True, separators=(",", ":")),
                "updated_at": now,
            }
            for digest, result in rows
        ]
        if not params:
            return

        def write(session: Session) -> None:
            dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
            stmt = dialect.insert(CheckRow)
            stmt = stmt.on_conflict_do_update(
                index_elements=[CheckRow.content_hash, CheckRow.checks_version],
                set_={"result_json": stmt.excluded.result_json, "updated_at": stmt.excluded.updated_at},
            )
            session.execute(stmt, params)

        self._write(write)

    def count(self, version: int | None = None) -> int:
        """Number of stored results, in all or under one checks version."""
        query = select(func.count()).select_from(CheckRow)
        if version is not None:
            query = query.where(CheckRow.checks_version == version)
        return int(self._read(lambda session: session.execute(query).scalar_one()))
