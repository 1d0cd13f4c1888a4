"""Culling off the UI thread: decisions in the database, editors' ratings, bursts, sidecars and copies.

Three kinds of work, each on a worker thread of its own so that none waits behind another:

- decisions (`DecisionKeeper`): every key press, auto-cull, undo and redo is a small transaction in
  `humanaes_core.store.decisions.DecisionStore` (a SQLite file or a shared PostgreSQL library), run in
  order on one thread. The grid shows what the store says changed, never a guess made before the write,
  so an undo right after a quick series of key presses always shows what the database holds; what
  other windows and machines change arrives through the store's change feed the same way.
- folder scans (`FolderScanner`): ratings in XMP sidecars for photos the app has no decision for (an
  editor's, or HumanAes's own, recognised by the marks it writes: `humanaes_core.formats`), and
  perceptual fingerprints for burst grouping (kept in memory by content hash, so reopening a
  folder groups it at once).
- jobs (a `background.Lane` of the window): writing sidecars, copying or moving picks, exporting cards. Each
  reports once, at the end.

What a decision does to the store (`cullcontrol.decide_op`, `cullcontrol.auto_cull_op`) and the plans
made from photos are plain code without Qt in `cullcontrol`; this module only runs them off the UI thread.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from PySide6.QtCore import QObject, QTimer, Signal

from humanaes_core.store import Change, DecisionStore, Feed, Flag, LibraryOfflineError, PhotoDecision

from .background import Generation, Job, Lane
from .cullcontrol import StoreOp, auto_cull_op, decide_op

if TYPE_CHECKING:
    from humanaes_core.formats import Rating

log = logging.getLogger(__name__)

_CHUNK = 200  # results delivered to the UI in chunks of this many photos


# ------------------------------------------------------------------------------------ decisions


@dataclass(frozen=True)
class History:
    """What Edit ▸ Undo and Redo would do."""

    can_undo: bool = False
    can_redo: bool = False
    undo_text: str | None = None
    redo_text: str | None = None


def _history(store: DecisionStore) -> History:
    undo, redo = store.undo_description(), store.redo_description()
    return History(undo is not None, redo is not None, undo, redo)


class _Offline(NamedTuple):
    """A write that found the library server unreachable: kept, to be written when it is back."""

    message: str


class DecisionKeeper(QObject):
    """The app's side of `DecisionStore`: writes in key-press order on one thread, reports what changed.

    The store is the library the scoring worker uses too (the app's library setting, else
    ``$HUMANAES_LIBRARY`` or the user data folder), so decisions follow a photo's content like its card.
    Other windows, CLIs and machines on the same library are seen through the store's change feed,
    polled every `POLL_MS` on the decisions thread: what they changed arrives as `changed` like the
    window's own changes. Every write carries the feed revision this window has seen; a write that
    replaced another editor's newer decision, or another editor's write that replaced this window's,
    is reported with `notice`. When the library server cannot be reached, the write and every later one
    are kept in order (`offline` with the reason, for a banner), retried every `RETRY_MS`, and written
    when it is back (`online`): nothing is lost while the window is open.
    """

    POLL_MS = 1000
    RETRY_MS = 5000

    changed = Signal(list, str)  # [Change], what happened ("pick", "undo reject", ...)
    loaded = Signal(dict)  # {content hash: PhotoDecision} stored for a folder
    history_changed = Signal(object)  # History
    failed = Signal(str)
    notice = Signal(str)  # a conflict between two editors of one photo
    stale = Signal()  # the feed fell behind, or the library is back: reload the folder's decisions
    offline = Signal(str)  # the library server cannot be reached; writes are kept
    online = Signal(str)  # it is back; the kept writes are saved

    def __init__(self, parent: QObject | None = None, library: str | Path | None = None) -> None:
        super().__init__(parent)
        self._path = self._location(library)
        self._store: DecisionStore | None = None
        self._bg = Lane("humanaes-decisions", 1, self)
        self.history = History()
        # Touched on the decisions thread only: the feed revision seen, writes kept while offline.
        self._seen: int | None = None
        self._pending: list[tuple[StoreOp, Callable[[Any], None]]] = []
        self._polling = False
        self._poll = QTimer(self)
        self._poll.setInterval(self.POLL_MS)
        self._poll.timeout.connect(self._poll_feed)
        self._poll.start()
        self._retry = QTimer(self)
        self._retry.setInterval(self.RETRY_MS)
        self._retry.timeout.connect(self._flush)

    @staticmethod
    def _location(library: str | Path | None) -> str | Path:
        from humanaes_core.store import default_library_path

        return library if library else default_library_path()

    @property
    def busy(self) -> bool:
        return self._bg.busy

    @property
    def waiting(self) -> bool:
        """Writes are kept because the library server cannot be reached."""
        return self._retry.isActive()

    def set_library(self, library: str | Path | None) -> None:
        """Use another library from the next operation on (queued writes go to the old one first)."""
        location = self._location(library)

        def switch() -> None:
            self._close_store()
            self._path = location
            self._seen = None

        self._bg.submit(switch)

    def load(self, hashes: Sequence[str], folder: Generation | None = None) -> None:
        """Stored decisions of a folder's photos; arrive as `loaded({hash: decision})` unless `folder`
        has advanced (another folder was opened) by then."""
        wanted = list(hashes)
        self._run(lambda store: store.get_many(wanted), self.loaded.emit, guard=folder)

    def update(
        self,
        items: Sequence[tuple[str, Path]],
        description: str,
        fallback: Mapping[str, PhotoDecision] | None = None,
        **fields: Any,
    ) -> None:
        """Set `fields` (stars, flag, label) of the (content hash, path) items as one undo step.

        A photo without a stored decision starts from `fallback` (its imported sidecar rating), so
        pressing P on a photo an editor rated 4 stars keeps the 4 stars.
        """
        op = decide_op(items, description, fallback or {}, fields)
        self._write(op, lambda changes: self._report(changes, description))

    def auto_cull(
        self,
        plan: Sequence[tuple[str, Path, bool]],
        description: str,
        *,
        overwrite_manual: bool = False,
        fallback: Mapping[str, PhotoDecision] | None = None,
    ) -> None:
        """Pick the keepers and reject the rest of (content hash, path, keep), as ONE undo step.

        Stars are kept; the flag is set as HumanAes's, with the plan `description`. The photographer's
        own decisions (`cullcontrol.OWN_ORIGINS`) are left as they are unless `overwrite_manual`.
        """
        op = auto_cull_op(plan, description, fallback or {}, overwrite_manual=overwrite_manual)
        self._write(op, lambda changes: self._report(changes, description))

    def undo(self) -> None:
        self._travel(redo=False)

    def redo(self) -> None:
        self._travel(redo=True)

    def close(self) -> None:
        """Finish every queued write and close the database on its thread (the window is closing);
        writes still kept for an unreachable server get one last try."""
        self._poll.stop()
        self._retry.stop()
        self._bg.submit(self._last_flush)
        self._bg.submit(self._close_store)
        self._bg.shutdown()

    def _close_store(self) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None

    def _open(self) -> DecisionStore:
        """The store, opened on the decisions thread on first use."""
        if self._store is None:
            self._store = DecisionStore(self._path)
        if self._seen is None:
            self._seen = self._store.revision()
        return self._store

    def _travel(self, *, redo: bool) -> None:
        def op(store: DecisionStore, _seen: int | None = None) -> tuple[list[Change], str]:
            what = store.redo_description() if redo else store.undo_description()
            changes = store.redo() if redo else store.undo()
            return changes, f"{'redo' if redo else 'undo'} {what}" if what else ""

        self._write(op, lambda result: self._report(*result))

    def _report(self, changes: list[Change], what: str) -> None:
        self.changed.emit(changes, what)
        replaced = [c for c in changes if c.conflict]
        if replaced:
            self.notice.emit(
                f"{_photos(len(replaced))} had just been changed by another editor; "
                "your change replaced theirs"
            )

    # ---------------------------------------------------------------- running on the decisions thread

    def _run(
        self,
        op: Callable[[DecisionStore], Any],
        done: Callable[[Any], None],
        guard: Generation | None = None,
    ) -> None:
        def job() -> tuple[Any, History]:
            store = self._open()
            result = op(store)
            return result, _history(store)

        self._bg.submit(job, done=self._finished(done), failed=self._failed, guard=guard)

    def _write(self, op: StoreOp, done: Callable[[Any], None]) -> None:
        """Run a write in order; while the server is unreachable it is kept behind the earlier ones."""

        def job() -> tuple[Any, History] | _Offline | None:
            if self._pending:  # earlier writes wait for the server: keep the order
                self._pending.append((op, done))
                return None
            try:
                store = self._open()
                return op(store, self._seen), _history(store)
            except LibraryOfflineError as e:
                self._pending.append((op, done))
                return _Offline(str(e))

        def finished(out: tuple[Any, History] | _Offline | None) -> None:
            if isinstance(out, _Offline):
                self._went_offline(out.message)
            elif out is not None:
                self._finished(done)(out)

        self._bg.submit(job, done=finished, failed=self._failed)

    def _finished(self, done: Callable[[Any], None]) -> Callable[[tuple[Any, History]], None]:
        def finished(out: tuple[Any, History]) -> None:
            result, history = out
            self.history = history
            self.history_changed.emit(history)
            done(result)

        return finished

    def _failed(self, e: BaseException) -> None:
        if isinstance(e, LibraryOfflineError):
            self._went_offline(str(e))
            return
        self.failed.emit(f"Decisions could not be saved: {e}")

    def _went_offline(self, message: str) -> None:
        if not self._retry.isActive():
            self._retry.start()
        self.offline.emit(f"{message}. Your decisions are kept and saved as soon as the library is back.")

    def _flush(self) -> None:
        """Write the kept writes, in order, if the server is back."""
        if self._bg.busy:
            return

        def job() -> tuple[list[tuple[Callable[[Any], None], Any]], History] | _Offline:
            saved = []
            try:
                store = self._open()
                while self._pending:
                    op, done = self._pending[0]
                    saved.append((done, op(store, self._seen)))
                    self._pending.pop(0)
                return saved, _history(store)
            except LibraryOfflineError as e:
                return _Offline(str(e))

        def finished(out: tuple[list[tuple[Callable[[Any], None], Any]], History] | _Offline) -> None:
            if isinstance(out, _Offline):
                self.offline.emit(f"{out.message}. Your decisions are kept; trying again.")
                return
            saved, history = out
            self._retry.stop()
            self.history = history
            self.history_changed.emit(history)
            for done, result in saved:
                done(result)
            kept = f"; {_photos(len(saved), 'change')} saved" if saved else ""
            self.online.emit(f"The library is back{kept}.")
            self.stale.emit()  # what was read while it was away (a folder's decisions) is read again

        self._bg.submit(job, done=finished, failed=self._failed)

    def _last_flush(self) -> None:
        """On closing: one more try for the kept writes; what still cannot be written is logged."""
        if not self._pending:
            return
        try:
            store = self._open()
            while self._pending:
                op, _done = self._pending[0]
                op(store, self._seen)
                self._pending.pop(0)
        except LibraryOfflineError as e:
            log.error(
                "%d decision changes could not be saved: the library is unreachable (%s)",
                len(self._pending),
                e,
            )

    def _poll_feed(self) -> None:
        """What other windows, CLIs and machines changed since the last look (skipped while busy)."""
        if self._polling or self._bg.busy or self._retry.isActive():
            return
        self._polling = True

        def job() -> Feed:
            store = self._open()
            feed = store.changes_since(self._seen or 0)
            self._seen = feed.revision
            return feed

        def finished(feed: Feed) -> None:
            if not feed.complete:
                self.stale.emit()
            elif feed.changes:
                self._report_theirs(feed.changes)

        def ended() -> None:
            self._polling = False

        self._bg.submit(job, done=finished, failed=self._failed, ended=ended)

    def _report_theirs(self, changes: list[Change]) -> None:
        self.changed.emit(changes, "changed by another editor")
        overwritten = [c for c in changes if c.conflict]
        if overwritten:
            self.notice.emit(
                f"Another editor just changed {_photos(len(overwritten))} you had changed; "
                "their change is shown"
            )


def _photos(n: int, noun: str = "photo") -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


# ------------------------------------------------------------------------------ folder scanning


def decision_from_rating(rating: Rating) -> PhotoDecision | None:
    """A sidecar's rating as a decision with its origin (an editor's, or the photographer's or
    HumanAes's when HumanAes wrote it: `Rating.origin`); None when it holds none."""
    if rating.source is None:
        return None
    flag = Flag.REJECT if rating.rejected else Flag.PICK if rating.pick else Flag.NONE
    stars = rating.stars or None  # 0 stars is "unrated" in every editor
    if flag == Flag.NONE and stars is None and rating.label is None:
        return None
    return PhotoDecision(stars=stars, flag=flag, label=rating.label, origin=rating.origin, plan=rating.plan)


class FolderScanner(QObject):
    """Per folder, in the background: editors' ratings of undecided photos, then burst groups."""

    imported = Signal(dict)  # {content hash: PhotoDecision} read from sidecars, with their origins
    groups_found = Signal(list)  # [[Path, ...], ...] from grouping.group_photos, singletons included
    progress = Signal(str, int, int)  # what, done, total

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._bg = Lane("humanaes-scan", 1, self)
        # content hash -> (capture time, time source, perceptual hash): fingerprints outlive the folder
        self._prints: dict[str, tuple[float | None, str, str]] = {}
        self.grouping = False  # a burst search is running for the current folder

    @property
    def busy(self) -> bool:
        return self._bg.busy

    def cancel(self) -> None:
        """Forget the current folder: its running scan stops at the next photo, nothing more arrives."""
        self._bg.invalidate()
        self.grouping = False

    def shutdown(self) -> None:
        self.cancel()
        self._bg.shutdown(drop_queued=True)  # only reads: nothing is lost

    def import_ratings(self, items: Sequence[tuple[str, Path]]) -> None:
        """Read the sidecar (or embedded XMP) rating of each (content hash, path)."""
        from humanaes_core.formats import XmpError, read_rating

        items = list(items)

        def read(job: Job) -> None:
            found: dict[str, PhotoDecision] = {}
            for content_hash, path in items:
                if job.cancelled:
                    return
                try:
                    decision = decision_from_rating(read_rating(path))
                except (XmpError, OSError, RuntimeError, ValueError) as e:
                    log.debug("no rating read from %s: %s", path, e)
                    continue
                if decision is not None:
                    found[content_hash] = decision
                if len(found) >= _CHUNK:
                    job.report(found)
                    found = {}
            if found:
                job.report(found)

        self._bg.submit(read, with_job=True, progress=self.imported.emit)

    def find_bursts(
        self,
        items: Sequence[tuple[str, Path]],
        max_hamming: int | None = None,
        max_gap_s: float | None = None,
    ) -> None:
        """Fingerprint the (content hash, path) items not fingerprinted before, then group all of them."""
        from humanaes_core.culling import (
            DEFAULT_MAX_GAP_S,
            DEFAULT_MAX_HAMMING,
            group_photos,
            photo_fingerprint,
        )

        items, known = list(items), dict(self._prints)
        hamming = DEFAULT_MAX_HAMMING if max_hamming is None else max_hamming
        gap = DEFAULT_MAX_GAP_S if max_gap_s is None else max_gap_s
        self.grouping = True

        def group(job: Job) -> tuple[dict, list[list[Path]]] | None:
            todo = [(h, p) for h, p in items if h not in known]
            new: dict[str, tuple[float | None, str, str]] = {}
            for n, (content_hash, path) in enumerate(todo, start=1):
                if job.cancelled:
                    return None
                try:
                    fp = photo_fingerprint(path)
                except Exception as e:  # an unreadable photo is simply not part of a burst
                    log.debug("no fingerprint for %s: %s", path, e)
                    continue
                new[content_hash] = (fp.capture_time, fp.time_source, fp.hash)
                if n % 25 == 0:
                    job.report((n, len(todo)))
            prints = {**known, **new}
            triples = [(p, prints[h][0], prints[h][2]) for h, p in items if h in prints]
            return new, group_photos(triples, max_hamming=hamming, max_gap_s=gap)

        def done(result: tuple[dict, list[list[Path]]] | None) -> None:
            if result is None:
                return
            new, groups = result
            self._prints.update(new)
            self.grouping = False
            self.groups_found.emit(groups)

        self._bg.submit(
            group,
            with_job=True,
            done=done,
            progress=lambda counts: self.progress.emit("Finding bursts", *counts),
        )
