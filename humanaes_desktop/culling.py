"""Culling off the UI thread: decisions in the database, editors' ratings, bursts, sidecars and copies.

Three kinds of work, each on a worker thread of its own so that none waits behind another:

- decisions (`DecisionKeeper`): every key press, auto-cull, undo and redo is a small SQLite transaction
  in `humanaes_core.store.decisions.DecisionStore`, run in order on one thread. The grid shows what the store
  says changed, never a guess made before the write, so an undo right after a quick series of key
  presses always shows what the database holds.
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
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QObject, Signal

from humanaes_core.store import Change, DecisionStore, Flag, PhotoDecision

from .background import Generation, Job, Lane
from .cullcontrol import auto_cull_op, decide_op

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


class DecisionKeeper(QObject):
    """The app's side of `DecisionStore`: writes in key-press order on one thread, reports what changed.

    The store is the cache's SQLite file (``$HUMANAES_CACHE`` or the user data folder), the same one
    the scoring worker uses, so decisions follow a photo's content like its score card does.
    """

    changed = Signal(list, str)  # [Change], what happened ("pick", "undo reject", ...)
    loaded = Signal(dict)  # {content hash: PhotoDecision} stored for a folder
    history_changed = Signal(object)  # History
    failed = Signal(str)

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        from humanaes_core.store import default_library_path

        self._path = default_library_path()
        self._store: DecisionStore | None = None
        self._bg = Lane("humanaes-decisions", 1, self)
        self.history = History()

    @property
    def busy(self) -> bool:
        return self._bg.busy

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
        self._run(op, lambda changes: self.changed.emit(changes, description))

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
        self._run(op, lambda changes: self.changed.emit(changes, description))

    def undo(self) -> None:
        self._travel(redo=False)

    def redo(self) -> None:
        self._travel(redo=True)

    def close(self) -> None:
        """Finish every queued write and close the database on its thread (the window is closing)."""
        self._bg.submit(self._close_store)
        self._bg.shutdown()

    def _close_store(self) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None

    def _travel(self, *, redo: bool) -> None:
        def op(store: DecisionStore) -> tuple[list[Change], str]:
            what = store.redo_description() if redo else store.undo_description()
            changes = store.redo() if redo else store.undo()
            return changes, f"{'redo' if redo else 'undo'} {what}" if what else ""

        self._run(op, lambda result: self.changed.emit(*result))

    def _run(
        self,
        op: Callable[[DecisionStore], Any],
        done: Callable[[Any], None],
        guard: Generation | None = None,
    ) -> None:
        def job() -> tuple[Any, History]:
            if self._store is None:
                self._store = DecisionStore(self._path)
            result = op(self._store)
            return result, _history(self._store)

        def finished(out: tuple[Any, History]) -> None:
            result, history = out
            self.history = history
            self.history_changed.emit(history)
            done(result)

        self._bg.submit(
            job,
            done=finished,
            failed=lambda e: self.failed.emit(f"Decisions could not be saved: {e}"),
            guard=guard,
        )


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
