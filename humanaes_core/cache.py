"""Score cache: a folder is never scored twice.

Scoring a photo with a vision-language model costs seconds; looking it up here costs microseconds. Cards
are keyed by the photo's *content* (a BLAKE2b hash of its bytes), the model fingerprint and the scoring
settings fingerprint, so renaming or copying a photo keeps its score while a new model or new settings
never reuse a stale one. Hashing every photo on every rescan would itself be slow (a 1,000-photo folder
of 25 MB raws is 25 GB of reading), so a second table remembers ``(size, mtime_ns) -> hash`` per absolute
path and a rescan of an unchanged folder only has to ``stat`` its files.

Storage is SQLite in WAL mode through SQLAlchemy 2: readers (the UI) and a writer (the scoring worker) in
other threads or processes do not block each other, and every write is one short transaction.

Known limit of the fast path: like ``make`` and ``rsync``'s quick check, it trusts ``(size, mtime_ns)``. A
file rewritten in place with the same size inside one timestamp tick, or whose mtime is deliberately
restored, keeps its old hash until its size or mtime changes.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sqlite3
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import platformdirs
from sqlalchemy import URL, BigInteger, Engine, Float, Index, String, Text, create_engine, event, func, select
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker
from sqlalchemy.schema import CreateIndex, CreateTable

from humanaes_core.errors import HumanAesError

__all__ = [
    "CACHE_ENV_VAR",
    "SCHEMA_VERSION",
    "CacheVersionError",
    "ScoreCache",
    "content_hash_file",
    "default_cache_path",
]

log = logging.getLogger(__name__)

CACHE_ENV_VAR = "HUMANAES_CACHE"
SCHEMA_VERSION = 1

_CHUNK_BYTES = 1 << 20  # 1 MiB: large enough that syscall overhead vanishes, small enough to stay in cache
_DIGEST_SIZE = 20  # 160 bits: collisions are not a practical concern for a personal photo library
_MAX_PARAMS = 500  # stay well under SQLite's bound-parameter limit (999 on old builds)


class CacheVersionError(HumanAesError):
    """The cache file was written by a newer HumanAes whose schema this version cannot read safely."""


def default_cache_path() -> Path:
    """Cache location: ``$HUMANAES_CACHE`` if set (tests, CI, portable installs), else the user data dir."""
    override = os.environ.get(CACHE_ENV_VAR, "").strip()
    if override:
        return Path(override).expanduser()
    return Path(platformdirs.user_data_dir("humanaes", appauthor=False)) / "cache.sqlite"


def content_hash_file(path: str | Path) -> str:
    """BLAKE2b-160 hex digest of the file's bytes, streamed so multi-GB files never sit in memory."""
    digest = hashlib.blake2b(digest_size=_DIGEST_SIZE)
    buf = bytearray(_CHUNK_BYTES)
    view = memoryview(buf)
    with open(path, "rb") as fh:
        while n := fh.readinto(buf):
            digest.update(view[:n])
    return digest.hexdigest()


# --------------------------------------------------------------------------------------------- schema


class Base(DeclarativeBase):
    """Declarative base private to the cache, so its metadata never mixes with other databases."""


class Meta(Base):
    """Key/value facts about the file itself; ``schema_version`` is what future migrations read first."""

    __tablename__ = "meta"

    key: Mapped[str] = mapped_column(Text, primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class FileHash(Base):
    """Fast path: the last seen ``(size, mtime_ns)`` of an absolute path and the content hash it had then."""

    __tablename__ = "file_hashes"

    path: Mapped[str] = mapped_column(Text, primary_key=True)
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


def _set_sqlite_pragmas(dbapi_conn: sqlite3.Connection, _record: object) -> None:
    """Per-connection settings: WAL for concurrent readers, NORMAL sync (safe in WAL), patient lock waits."""
    cur = dbapi_conn.cursor()
    try:
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.execute("PRAGMA foreign_keys=ON")
    finally:
        cur.close()


# --------------------------------------------------------------------------------------------- cache


class ScoreCache:
    """Persistent score-card store keyed by photo content; safe to open from several threads or processes."""

    path: Path
    schema_version: int

    def __init__(self, path: str | Path | None = None) -> None:
        self.path = Path(path).expanduser() if path is not None else default_cache_path()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._engine: Engine = create_engine(URL.create("sqlite+pysqlite", database=str(self.path)))
        event.listen(self._engine, "connect", _set_sqlite_pragmas)
        self._sessions: sessionmaker[Session] = sessionmaker(self._engine, expire_on_commit=False)
        try:
            self._init_schema()
        except BaseException:
            self._engine.dispose()
            raise

    # ---------------------------------------------------------------- lifecycle

    def _init_schema(self) -> None:
        """Create missing tables with IF NOT EXISTS, so two processes opening the file at once never clash."""
        with self._engine.begin() as conn:
            for table in Base.metadata.sorted_tables:
                conn.execute(CreateTable(table, if_not_exists=True))
                for index in table.indexes:
                    conn.execute(CreateIndex(index, if_not_exists=True))
            conn.execute(
                sqlite_insert(Meta)
                .values(key="schema_version", value=str(SCHEMA_VERSION))
                .on_conflict_do_nothing(index_elements=[Meta.key])
            )
            stored = conn.execute(select(Meta.value).where(Meta.key == "schema_version")).scalar_one()
        try:
            version = int(stored)
        except ValueError:
            raise CacheVersionError(f"{self.path}: unrecognised cache schema version {stored!r}") from None
        if version > SCHEMA_VERSION:
            raise CacheVersionError(
                f"{self.path} was written by a newer HumanAes (cache schema {version}, this version reads "
                f"{SCHEMA_VERSION}). Update HumanAes or point {CACHE_ENV_VAR} at another file."
            )
        self.schema_version = version

    def close(self) -> None:
        """Release pooled connections (and with them SQLite's file handles and WAL checkpoint duties)."""
        self._engine.dispose()

    def __enter__(self) -> ScoreCache:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"ScoreCache({str(self.path)!r})"

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
        ``Path(p)`` for each input ``p``; a file that cannot be stat'ed or read maps to its ``OSError`` so
        the caller can report it without losing the rest of the folder.
        """
        results: dict[Path, str | OSError] = {}
        stats: dict[str, tuple[int, int]] = {}  # abs key -> (size, mtime_ns)
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
                st = os.stat(key)
            except OSError as exc:
                results[given] = exc
                continue
            stats[key] = (st.st_size, st.st_mtime_ns)

        known: dict[str, tuple[int, int, str]] = {}
        if stats:
            with self._sessions() as session:
                for chunk in _chunks(list(stats)):
                    rows = session.execute(
                        select(FileHash.path, FileHash.size, FileHash.mtime_ns, FileHash.content_hash).where(
                            FileHash.path.in_(chunk)
                        )
                    )
                    for row_path, size, mtime_ns, digest in rows:
                        known[row_path] = (size, mtime_ns, digest)

        hashes: dict[str, str | OSError] = {}
        fresh: list[dict[str, Any]] = []
        for key, (size, mtime_ns) in stats.items():
            row = known.get(key)
            if row is not None and row[0] == size and row[1] == mtime_ns:
                hashes[key] = row[2]
                continue
            # The stat was taken before reading: if the file changes while we hash it, its mtime will no
            # longer match the stored one next time and it is simply hashed again.
            try:
                digest = content_hash_file(key)
            except OSError as exc:
                hashes[key] = exc
                continue
            hashes[key] = digest
            fresh.append({"path": key, "size": size, "mtime_ns": mtime_ns, "content_hash": digest})

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
            with self._sessions.begin() as session:
                session.execute(stmt, fresh)

        for given, key in keys_for.items():
            if given not in results:
                results[given] = hashes[key]
        # Preserve the caller's order (errors from the stat pass were inserted early).
        return {Path(p): results[Path(p)] for p in paths}

    # ---------------------------------------------------------------- score cards

    def get(self, content_hash: str, model_fp: str, settings_fp: str) -> dict | None:
        """The cached card for this content under this model and settings, or ``None`` if never scored."""
        with self._sessions() as session:
            card_json = session.execute(
                select(ScoreRow.card_json).where(
                    ScoreRow.content_hash == content_hash,
                    ScoreRow.model_fp == model_fp,
                    ScoreRow.settings_fp == settings_fp,
                )
            ).scalar_one_or_none()
        return None if card_json is None else _decode_card(card_json, content_hash)

    def get_many(self, content_hashes: Iterable[str], model_fp: str, settings_fp: str) -> dict[str, dict]:
        """Cached cards for many hashes in one round of queries; hashes never scored are simply absent."""
        wanted = list(dict.fromkeys(content_hashes))
        found: dict[str, dict] = {}
        if not wanted:
            return found
        with self._sessions() as session:
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
                    "card_json": json.dumps(card, ensure_ascii=False, separators=(",", ":")),
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
        with self._sessions.begin() as session:
            session.execute(stmt, params)

    def count(self, model_fp: str | None = None) -> int:
        """Number of cached cards, in total or for one model (for the status bar and housekeeping)."""
        query = select(func.count()).select_from(ScoreRow)
        if model_fp is not None:
            query = query.where(ScoreRow.model_fp == model_fp)
        with self._sessions() as session:
            return int(session.execute(query).scalar_one())
