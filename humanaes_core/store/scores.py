"""Score cache: a folder is never scored twice.

Scoring a photo with a vision-language model costs seconds; looking it up here costs microseconds. Cards
are keyed by the photo's *content* (``hashing.content_hash_file``), the model fingerprint (the hash of
the checkpoint's manifest) and the settings key (what else changes a card: tiles, heads, prompt), so
renaming or copying a photo keeps its score while a new model or new settings never reuse a stale one.
Hashing every photo on every rescan would itself be slow (a 1,000-photo folder of 25 MB raws is 25 GB of
reading), so a second table remembers each absolute path's file signature (size, mtime, ctime, inode,
device) and the hash it had then, and a rescan of an unchanged folder only has to ``stat`` its files.

The cache's tables live in the library beside the decisions (a SQLite file or a PostgreSQL server,
``library.LibraryStore``); nothing here reads or writes the decision tables. Cards are upserts, so two
processes storing the same card at once leave one row. On disk the two keys are the columns ``model_fp`` and
``settings_fp`` (schema 1, kept as they are).

The fast path trusts the whole signature, not only ``(size, mtime_ns)`` as ``make`` and ``rsync``'s quick
check do: a photo replaced by another of the same size whose mtime was restored (``cp -p``, ``rsync -t``,
``touch -r``) has a new inode or at least a new ctime, which nobody can set back, so it is read again.
What remains: a file rewritten in place with the same size inside one timestamp tick of both its mtime
and ctime. Moving the library to another disk, or a disk whose device number changes, costs one re-read.
Signature values are stored as SQLite's signed 64-bit integers, wrapped: a file dated after 2262 (beyond
int64 nanoseconds) or an inode above 2**63 is scanned like any other.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from sqlalchemy import BigInteger, Float, Index, String, Text, func, select
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from humanaes_core.store.errors import CacheUnavailableError
from humanaes_core.store.hashing import (
    DIGEST_SIZE,
    FileSignature,
    HashedFile,
    content_hash_file,
    encode_path,
    signature_of,
    stat_regular,
)
from humanaes_core.store.library import LibraryStore
from humanaes_core.store.migrations import CACHE_COMPONENT

__all__ = ["ScoreCache"]

log = logging.getLogger(__name__)

_MAX_PARAMS = 500  # stay well under SQLite's bound-parameter limit (999 on old builds)


class Base(DeclarativeBase):
    """Declarative base of the score tables only, so their metadata never mixes with the decisions'."""


class Meta(Base):
    """Key/value facts about the file itself; the ``*schema_version`` keys are what migrations read first."""

    __tablename__ = "meta"

    key: Mapped[str] = mapped_column(Text, primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class FileHash(Base):
    """Fast path: the last seen signature of an absolute path and the content hash it had then.

    Columns hold ``_int64`` of the signature's fields; ``ctime_ns``, ``ino`` and ``dev`` are NULL in rows
    written by cache schema 1, which therefore never match.
    """

    __tablename__ = "file_hashes"

    path: Mapped[str] = mapped_column(Text, primary_key=True)  # encode_path() of the absolute path
    size: Mapped[int] = mapped_column(BigInteger)
    mtime_ns: Mapped[int] = mapped_column(BigInteger)
    content_hash: Mapped[str] = mapped_column(String(2 * DIGEST_SIZE))
    ctime_ns: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    ino: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    dev: Mapped[int | None] = mapped_column(BigInteger, nullable=True)


#: The stored form of a signature, in ``FileHash``'s column order.
_SIGNATURE_COLUMNS = ("size", "mtime_ns", "ctime_ns", "ino", "dev")


def _int64(value: int) -> int:
    """``value`` wrapped into SQLite's signed 64-bit INTEGER (which raises OverflowError beyond it).

    Nanoseconds since 1970 leave int64 in 2262 and inodes may use all 64 unsigned bits. Wrapping keeps
    equality for every value a file system can hold (two values 2**64 apart never meet).
    """
    return (value + 2**63) % 2**64 - 2**63


def _stored(sig: FileSignature) -> tuple[int, ...]:
    return tuple(_int64(getattr(sig, column)) for column in _SIGNATURE_COLUMNS)


class ScoreRow(Base):
    """One score card (opaque JSON) per content hash, model fingerprint and settings key."""

    __tablename__ = "scores"

    content_hash: Mapped[str] = mapped_column(String(2 * DIGEST_SIZE), primary_key=True)
    model_fingerprint: Mapped[str] = mapped_column("model_fp", Text, primary_key=True)
    settings_key: Mapped[str] = mapped_column("settings_fp", Text, primary_key=True)
    card_json: Mapped[str] = mapped_column(Text)
    updated_at: Mapped[float] = mapped_column(Float)  # unix seconds; lets a later "prune old" feature exist

    # count(model_fp) and per-model housekeeping would otherwise scan the whole table.
    __table_args__ = (Index("ix_scores_model_settings", "model_fp", "settings_fp"),)


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


class ScoreCache(LibraryStore):
    """Persistent score-card store keyed by photo content; safe to open from several threads or processes."""

    component = CACHE_COMPONENT

    @property
    def schema_version(self) -> int:
        """The cache schema this file is at (always the head once opened: older files are migrated)."""
        return self.component.head

    # ---------------------------------------------------------------- content hashes

    def _fast_key(self, key: str) -> str:
        """The fast-path row of an absolute path. On a shared library each machine keeps its own rows
        (``host|path``): two machines mounting a share at the same path see other devices and inodes,
        and would otherwise replace each other's rows and read every photo again on every scan."""
        return encode_path(f"{platform.node()}|{key}" if self.shared else key)

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
                stats[key] = stat_regular(key)
            except OSError as exc:
                results[given] = exc
        hashes = self._hash_stated(stats)
        for given, key in keys_for.items():
            if given not in results:
                results[given] = hashes[key]
        # Preserve the caller's order (errors from the stat pass were inserted early).
        return {Path(p): results[Path(p)] for p in paths}

    def _hash_stated(self, stats: dict[str, os.stat_result]) -> dict[str, HashedFile | OSError]:
        """Hash each stat'ed file through the fast path: only files whose signature changed are read."""
        known = self._known_hashes(list(stats)) if stats else {}
        hashes: dict[str, HashedFile | OSError] = {}
        fresh: list[dict[str, Any]] = []
        for key, st in stats.items():
            sig = signature_of(st)
            row = known.get(key)
            if row is not None and row[0] == _stored(sig):
                hashes[key] = HashedFile(row[1], sig)
                continue
            # The stat was taken before reading: if the file changes while we hash it, its signature will
            # no longer match the stored one next time and it is simply hashed again.
            try:
                digest = content_hash_file(key)
            except OSError as exc:
                hashes[key] = exc
                continue
            hashes[key] = HashedFile(digest, sig)
            columns = dict(zip(_SIGNATURE_COLUMNS, _stored(sig), strict=True))
            fresh.append({"path": self._fast_key(key), "content_hash": digest, **columns})
        if fresh:
            self._remember(fresh)
        return hashes

    def _remember(self, fresh: list[dict[str, Any]]) -> None:
        """Store fast-path rows. Only an optimisation: when the library cannot be written (disk full,
        read-only), the hashes are still right and the next scan reads these files again."""
        stmt = self._insert(FileHash)
        stmt = stmt.on_conflict_do_update(
            index_elements=[FileHash.path],
            set_={name: getattr(stmt.excluded, name) for name in (*_SIGNATURE_COLUMNS, "content_hash")},
        )
        try:
            self._write(lambda session: session.execute(stmt, fresh))
        except CacheUnavailableError as e:
            log.info("score cache: the hashes of %d files were not remembered: %s", len(fresh), e)

    def _known_hashes(self, keys: list[str]) -> dict[str, tuple[tuple[int | None, ...], str]]:
        """The fast-path rows of these absolute paths: path -> (stored signature, content hash)."""
        encoded = {self._fast_key(k): k for k in keys}
        columns = [getattr(FileHash, name) for name in _SIGNATURE_COLUMNS]

        def fetch(session: Session) -> dict[str, tuple[tuple[int | None, ...], str]]:
            found: dict[str, tuple[tuple[int | None, ...], str]] = {}
            for chunk in _chunks(list(encoded)):
                query = select(FileHash.path, FileHash.content_hash, *columns).where(FileHash.path.in_(chunk))
                for row_path, digest, *signature in session.execute(query):
                    found[encoded[row_path]] = (tuple(signature), digest)
            return found

        return self._read(fetch)

    # ---------------------------------------------------------------- score cards

    def get(self, content_hash: str, model_fingerprint: str, settings_key: str) -> dict | None:
        """The cached card for this content under this model and settings, or ``None`` if never scored."""
        card_json = self._read(
            lambda session: session.execute(
                select(ScoreRow.card_json).where(
                    ScoreRow.content_hash == content_hash,
                    ScoreRow.model_fingerprint == model_fingerprint,
                    ScoreRow.settings_key == settings_key,
                )
            ).scalar_one_or_none()
        )
        return None if card_json is None else _decode_card(card_json, content_hash)

    def get_many(
        self, content_hashes: Iterable[str], model_fingerprint: str, settings_key: str
    ) -> dict[str, dict]:
        """Cached cards for many hashes in one round of queries; hashes never scored are simply absent."""
        wanted = list(dict.fromkeys(content_hashes))
        if not wanted:
            return {}

        def fetch(session: Session) -> dict[str, dict]:
            found: dict[str, dict] = {}
            for chunk in _chunks(wanted, _MAX_PARAMS - 2):  # two parameters go to the model and settings
                rows = session.execute(
                    select(ScoreRow.content_hash, ScoreRow.card_json).where(
                        ScoreRow.model_fingerprint == model_fingerprint,
                        ScoreRow.settings_key == settings_key,
                        ScoreRow.content_hash.in_(chunk),
                    )
                )
                for digest, card_json in rows:
                    card = _decode_card(card_json, digest)
                    if card is not None:
                        found[digest] = card
            return found

        return self._read(fetch)

    def put(self, content_hash: str, model_fingerprint: str, settings_key: str, card: dict) -> None:
        """Store (or replace) one card; rescoring the same photo overwrites rather than duplicates."""
        self.put_many([(content_hash, card)], model_fingerprint, settings_key)

    def put_many(self, rows: Iterable[tuple[str, dict]], model_fingerprint: str, settings_key: str) -> None:
        """Store many cards in one transaction, so a batch is either all cached or not at all."""
        now = time.time()
        params: list[dict[str, Any]] = []
        for content_hash, card in rows:
            if not isinstance(card, dict):
                raise TypeError(f"score card must be a dict, got {type(card).__name__}")
            params.append(
                {
                    "content_hash": content_hash,
                    "model_fingerprint": model_fingerprint,
                    "settings_key": settings_key,
                    # Serialise before opening the transaction: a bad card fails without touching the file.
                    # ASCII escapes keep paths with undecodable bytes (lone surrogates) storable.
                    "card_json": json.dumps(card, ensure_ascii=True, separators=(",", ":")),
                    "updated_at": now,
                }
            )
        if not params:
            return
        stmt = self._insert(ScoreRow)
        stmt = stmt.on_conflict_do_update(
            index_elements=[ScoreRow.content_hash, ScoreRow.model_fingerprint, ScoreRow.settings_key],
            set_={"card_json": stmt.excluded.card_json, "updated_at": stmt.excluded.updated_at},
        )
        self._write(lambda session: session.execute(stmt, params))

    def count(self, model_fingerprint: str | None = None) -> int:
        """Number of cached cards, in total or for one model (for the status bar and housekeeping)."""
        query = select(func.count()).select_from(ScoreRow)
        if model_fingerprint is not None:
            query = query.where(ScoreRow.model_fingerprint == model_fingerprint)
        return int(self._read(lambda session: session.execute(query).scalar_one()))
