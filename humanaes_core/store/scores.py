"""Score cache: a folder is never scored twice.

Scoring a photo with a vision-language model costs seconds; looking it up here costs microseconds. Cards
are keyed by the photo's *content* (``hashing.content_hash_file``), the model fingerprint (the hash of
the checkpoint's manifest) and the settings key (what else changes a card: tiles, heads, prompt), so
renaming or copying a photo keeps its score while a new model or new settings never reuse a stale one.
Hashing every photo on every rescan would itself be slow (a 1,000-photo folder of 25 MB raws is 25 GB of
reading), so a second table remembers each absolute path's file signature (size, mtime, ctime, inode,
device) and the hash it had then, and a rescan of an unchanged folder only has to ``stat`` its files.

The cache's tables live in the library beside the decisions (a SQLite file or a PostgreSQL server,
``library.LibraryStore``); nothing here reads or writes the decision tables. Their schema is the
migrations' (``migrations.CACHE_COMPONENT``): ``file_hashes`` (the fast path: ``path``, the signature's
columns, ``content_hash``) and ``scores`` (``content_hash``, ``model_fp``, ``settings_fp``, ``card_json``,
``updated_at``; the two keys kept under their schema-1 names). Reads and writes are plain SQL that SQLite
and PostgreSQL read alike (``LibraryStore._query``, ``_execute_many``), so a cached rescan never imports
SQLAlchemy. Cards are upserts, so two processes storing the same card at once leave one row.

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
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from humanaes_core.store.errors import CacheUnavailableError
from humanaes_core.store.hashing import (
    FileSignature,
    HashedFile,
    content_hash_file,
    encode_path,
    signature_of,
    stat_regular,
)
from humanaes_core.store.library import MAX_PARAMS, LibraryStore, chunks, json_row, marks
from humanaes_core.store.migrations import CACHE_COMPONENT

__all__ = ["ScoreCache"]

log = logging.getLogger(__name__)

#: The stored form of a signature, in ``file_hashes``'s columns. Values are ``_int64`` of the signature's
#: fields; ``ctime_ns``, ``ino`` and ``dev`` are NULL in rows written by cache schema 1, which never match.
_SIGNATURE_COLUMNS = ("size", "mtime_ns", "ctime_ns", "ino", "dev")
#: Fast-path rows are replaced whole: the path's newest signature and hash.
_REMEMBER_SQL = (
    f"INSERT INTO file_hashes (path, content_hash, {', '.join(_SIGNATURE_COLUMNS)}) "
    "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (path) DO UPDATE SET content_hash = excluded.content_hash, "
    + ", ".join(f"{c} = excluded.{c}" for c in _SIGNATURE_COLUMNS)
)
_PUT_SQL = (
    "INSERT INTO scores (content_hash, model_fp, settings_fp, card_json, updated_at) VALUES (?, ?, ?, ?, ?) "
    "ON CONFLICT (content_hash, model_fp, settings_fp) DO UPDATE SET card_json = excluded.card_json, "
    "updated_at = excluded.updated_at"
)


def _int64(value: int) -> int:
    """``value`` wrapped into SQLite's signed 64-bit INTEGER (which raises OverflowError beyond it).

    Nanoseconds since 1970 leave int64 in 2262 and inodes may use all 64 unsigned bits. Wrapping keeps
    equality for every value a file system can hold (two values 2**64 apart never meet).
    """
    return (value + 2**63) % 2**64 - 2**63


def _stored(sig: FileSignature) -> tuple[int, ...]:
    return tuple(_int64(getattr(sig, column)) for column in _SIGNATURE_COLUMNS)


def _abs_key(path: str | Path) -> str:
    """Fast-path key: absolute and normalised; symlinks are not resolved (that costs syscalls per file)."""
    return os.path.abspath(os.fspath(path))


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
            fresh.append((self._fast_key(key), digest, *_stored(sig)))
        if fresh:
            self._remember(fresh)
        return hashes

    def _remember(self, fresh: list[tuple[Any, ...]]) -> None:
        """Store fast-path rows. Only an optimisation: when the library cannot be written (disk full,
        read-only), the hashes are still right and the next scan reads these files again."""
        try:
            self._execute_many(_REMEMBER_SQL, fresh)
        except CacheUnavailableError as e:
            log.info("score cache: the hashes of %d files were not remembered: %s", len(fresh), e)

    def _known_hashes(self, keys: list[str]) -> dict[str, tuple[tuple[int | None, ...], str]]:
        """The fast-path rows of these absolute paths: path -> (stored signature, content hash)."""
        encoded = {self._fast_key(k): k for k in keys}
        found: dict[str, tuple[tuple[int | None, ...], str]] = {}
        for chunk in chunks(list(encoded)):
            query = (
                f"SELECT path, content_hash, {', '.join(_SIGNATURE_COLUMNS)} FROM file_hashes "
                f"WHERE path IN ({marks(len(chunk))})"
            )
            for row_path, digest, *signature in self._query(query, chunk):
                found[encoded[row_path]] = (tuple(signature), digest)
        return found

    # ---------------------------------------------------------------- score cards

    def get(self, content_hash: str, model_fingerprint: str, settings_key: str) -> dict | None:
        """The cached card for this content under this model and settings, or ``None`` if never scored."""
        return self.get_many([content_hash], model_fingerprint, settings_key).get(content_hash)

    def get_many(
        self, content_hashes: Iterable[str], model_fingerprint: str, settings_key: str
    ) -> dict[str, dict]:
        """Cached cards for many hashes in one round of queries; hashes never scored are simply absent."""
        wanted = list(dict.fromkeys(content_hashes))
        found: dict[str, dict] = {}
        for chunk in chunks(wanted, MAX_PARAMS - 2):  # two parameters go to the model and settings
            query = (
                "SELECT content_hash, card_json FROM scores WHERE model_fp = ? AND settings_fp = ? "
                f"AND content_hash IN ({marks(len(chunk))})"
            )
            for digest, card_json in self._query(query, [model_fingerprint, settings_key, *chunk]):
                card = json_row(card_json, "score cache", digest)
                if card is not None:
                    found[digest] = card
        return found

    def put(self, content_hash: str, model_fingerprint: str, settings_key: str, card: dict) -> None:
        """Store (or replace) one card; rescoring the same photo overwrites rather than duplicates."""
        self.put_many([(content_hash, card)], model_fingerprint, settings_key)

    def put_many(self, rows: Iterable[tuple[str, dict]], model_fingerprint: str, settings_key: str) -> None:
        """Store many cards in one transaction, so a batch is either all cached or not at all."""
        now = time.time()
        params: list[tuple[str, str, str, str, float]] = []
        for content_hash, card in rows:
            if not isinstance(card, dict):
                raise TypeError(f"score card must be a dict, got {type(card).__name__}")
            # Serialise before opening the transaction: a bad card fails without touching the file.
            # ASCII escapes keep paths with undecodable bytes (lone surrogates) storable.
            card_json = json.dumps(card, ensure_ascii=True, separators=(",", ":"))
            params.append((content_hash, model_fingerprint, settings_key, card_json, now))
        if params:
            self._execute_many(_PUT_SQL, params)

    def count(self, model_fingerprint: str | None = None) -> int:
        """Number of cached cards, in total or for one model (for the status bar and housekeeping)."""
        if model_fingerprint is None:
            return int(self._query("SELECT count(*) FROM scores")[0][0])
        return int(self._query("SELECT count(*) FROM scores WHERE model_fp = ?", [model_fingerprint])[0][0])
