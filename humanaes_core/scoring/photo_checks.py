"""The photo checks of a scan: looked up in the library, computed in worker threads when missing.

``CachedScoring`` hands every photo of a run to ``ScanChecks.prefetch`` as soon as it is hashed: results
stored under the same content hash and checks version are read in one query (never recomputed), the
others are computed by ``checks.check_photo`` in a small pool of CPU threads while the cards are read or
scored, and stored as each one finishes. ``attach`` puts them on a card (``card.faces``,
``card.checks``) when the card is yielded. A photo whose checks fail (undecodable for the checks, a
missing model file) keeps ``None``: the checks never cost a photo its score.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from humanaes_core.checks import CHECKS_VERSION, Face, PhotoChecks
from humanaes_core.errors import HumanAesError
from humanaes_core.files import decode_timeout, run_with_time_limit
from humanaes_core.scoring.card import ScoreCard
from humanaes_core.store import CheckStore

__all__ = ["DEFAULT_CHECK_WORKERS", "ScanChecks"]

log = logging.getLogger(__name__)

#: Threads that run the checks: each uses one core, and the scan's decoding and the model want the rest.
DEFAULT_CHECK_WORKERS = max(1, min(2, (os.cpu_count() or 2) // 2))

Result = tuple[list[Face], PhotoChecks]


def _from_stored(data: Mapping) -> Result:
    return [Face.from_dict(f) for f in data.get("faces") or []], PhotoChecks.from_dict(
        data.get("checks") or {}
    )


def check_photo(path: Path) -> Result:
    """``checks.check_photo``, imported when a photo needs checking: it brings numpy and LiteRT, which a
    scan whose results are all stored never needs."""
    from humanaes_core.checks import check_photo as check

    return check(path)


class ScanChecks:
    """Check results for the photos of a scan, keyed like the scan keys them (content hash, or the path
    without a library). The library (`library`, a path; None: results are not stored) is opened on
    first use and closed by ``close``, after the threads stopped."""

    def __init__(self, library: Path | None, workers: int = DEFAULT_CHECK_WORKERS) -> None:
        self.library = library
        self.store: CheckStore | None = None
        self.workers = workers
        self._pool: ThreadPoolExecutor | None = None
        self._known: dict[str, Result] = {}
        self._pending: dict[str, Future[Result | None]] = {}
        self._broken = False  # the checks cannot run here at all (a model file missing): say it once
        self._unstorable = False  # the library refused a result (disk full): stop writing, say it once

    def prefetch(self, photos: Mapping[str, Path]) -> None:
        """Start getting the results of these photos (key -> a file with that content)."""
        wanted = [k for k in photos if k not in self._known and k not in self._pending]
        if not wanted:
            return
        if self.store is None and self.library is not None:
            try:
                self.store = CheckStore(self.library)
            except HumanAesError as e:  # the checks still run, unstored
                log.warning("photo checks: cannot open the library (%s)", e)
                self.library = None
        if self.store is not None:
            try:
                stored = self.store.get_many(wanted, CHECKS_VERSION)
            except HumanAesError as e:  # the library is busy or gone: check anyway, unstored
                log.warning("photo checks: cannot read stored results (%s)", e)
                stored = {}
            for key, data in stored.items():
                try:
                    self._known[key] = _from_stored(data)
                except (KeyError, TypeError, ValueError):
                    continue  # a row from a broken writer: computed again below
        missing = [k for k in wanted if k not in self._known]
        if self._broken or not missing:
            return
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="humanaes-checks")
        for key in missing:
            self._pending[key] = self._pool.submit(self._compute, key, photos[key])

    def _compute(self, key: str, path: Path) -> Result | None:
        if self._broken:
            return None
        try:  # under scoring's decode time limit: a file that hangs costs a bounded wait, never the scan
            faces, checks = run_with_time_limit(
                lambda _deadline: check_photo(path), decode_timeout(), str(path)
            )
        except ImportError as e:  # LiteRT or the model files are not installed: no photo can be checked
            self._broken = True
            log.warning("photo checks are off: %s", e)
            return None
        except Exception as e:  # a photo the checks cannot read must not stop the scan
            log.warning("photo checks: %s: %s", path, e)
            return None
        store = self.store
        if store is not None and not self._unstorable:
            try:
                store.put_many(
                    [(key, {"faces": [f.to_dict() for f in faces], "checks": checks.to_dict()})],
                    CHECKS_VERSION,
                )
            except HumanAesError as e:  # a full disk or a read-only library: say it once, keep checking
                self._unstorable = True
                log.warning("photo checks: results are no longer stored (%s)", e)
        return faces, checks

    def attach(self, key: str, card: ScoreCard) -> ScoreCard:
        """Put the photo's results on `card` (waiting for them if they are being computed)."""
        result = self._known.get(key)
        if result is None and key in self._pending:
            result = self._pending.pop(key).result()
            if result is not None:
                self._known[key] = result
        if result is not None:
            card.faces, card.checks = list(result[0]), result[1]
        return card

    def close(self) -> None:
        """Drop the work not started, let the photos being checked finish (at most one per thread, so
        their results are stored), then close the library."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
        self._pending.clear()
        if self.store is not None:
            self.store.close()
            self.store = None
