"""Check results: what the photographer's checks found in a photo, stored once per content.

Faces, closed eyes, focus, blur, exposure and misfires depend only on the photo's pixels and on the
checks' own version (``humanaes_core.checks.CHECKS_VERSION``), never on the model or the scoring
settings, so they live in their own table (``photo_checks``, component ``checks`` with its own
schema version) keyed by (content hash, checks version): a renamed or copied photo keeps them, a new
model keeps them, and a new checks version computes them afresh without touching the old rows. A result
is stored as opaque JSON (``{"faces": [...], "checks": {...}}``); ``scoring.CachedScoring`` turns it into
``Face`` and ``PhotoChecks``.

The table is the migrations' (``migrations.CHECKS_COMPONENT``: ``content_hash``, ``checks_version``,
``result_json``, ``updated_at``); it is read and written in plain SQL that SQLite and PostgreSQL read
alike (``LibraryStore._query``, ``_execute_many``), like the score cache's.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable

from humanaes_core.store.library import MAX_PARAMS, LibraryStore, chunks, json_row, marks
from humanaes_core.store.migrations import CHECKS_COMPONENT

__all__ = ["CheckStore"]

_PUT_SQL = (
    "INSERT INTO photo_checks (content_hash, checks_version, result_json, updated_at) VALUES (?, ?, ?, ?) "
    "ON CONFLICT (content_hash, checks_version) DO UPDATE SET result_json = excluded.result_json, "
    "updated_at = excluded.updated_at"
)


class CheckStore(LibraryStore):
    """Check results keyed by photo content and checks version, in the library (a SQLite file or a
    PostgreSQL server, like the score cache)."""

    component = CHECKS_COMPONENT

    def get_many(self, content_hashes: Iterable[str], version: int) -> dict[str, dict]:
        """Stored results of these hashes under `version`; hashes never checked are absent."""
        wanted = list(dict.fromkeys(content_hashes))
        found: dict[str, dict] = {}
        for chunk in chunks(wanted, MAX_PARAMS - 1):  # one parameter goes to the version
            query = (
                "SELECT content_hash, result_json FROM photo_checks WHERE checks_version = ? "
                f"AND content_hash IN ({marks(len(chunk))})"
            )
            for digest, text in self._query(query, [version, *chunk]):
                result = json_row(text, "photo checks", digest)
                if result is not None:
                    found[digest] = result
        return found

    def put_many(self, rows: Iterable[tuple[str, dict]], version: int) -> None:
        """Store results (content hash, result dict) in one transaction; a result already stored for
        the same hash and version is replaced."""
        now = time.time()
        params = [
            (digest, version, json.dumps(result, ensure_ascii=True, separators=(",", ":")), now)
            for digest, result in rows
        ]
        if params:
            self._execute_many(_PUT_SQL, params)

    def count(self, version: int | None = None) -> int:
        """Number of stored results, in all or under one checks version."""
        if version is None:
            return int(self._query("SELECT count(*) FROM photo_checks")[0][0])
        return int(self._query("SELECT count(*) FROM photo_checks WHERE checks_version = ?", [version])[0][0])
