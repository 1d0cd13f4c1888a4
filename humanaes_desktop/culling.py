"""Culling off the UI thread: decisions in the database, editors' ratings, bursts, sidecars and copies.

Three kinds of work, each on a worker thread of its own so that none waits behind another:

- decisions (`DecisionKeeper`): every key press, auto-cull, undo and redo is a small SQLite transaction
  in `humanaes_core.store.decisions.DecisionStore`, run in order on one thread. The grid shows what the store
  says changed, never a guess made before the write, so an undo right after a quick series of key
  presses always shows what the database holds.
- folder scans (`FolderScanner`): ratings in editors' XMP sidecars for photos the app has no decision
  for, and perceptual fingerprints for burst grouping (kept in memory by content hash, so reopening a
  folder groups it at once).
- jobs (a `background.Lane` of the window): writing sidecars, copying or moving picks, exporting cards. Each
  reports once, at the end.

The functions that turn photos into plans (`sidecar_entries`, `picks_plan`, `export_plan`, `cull_plan`)
are plain code without Qt, so they are tested on their own and run wherever the caller likes.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QObject, Signal

from humanaes_core.store import Change, DecisionStore, Flag, PhotoDecision

from .background import Generation, Job, Lane

if TYPE_CHECKING:
    from humanaes_core.culling import Decision, SidecarEntry
    from humanaes_core.formats import Rating

    from .photos import Photo

log = logging.getLogger(__name__)

#: Decisions auto-cull leaves alone unless told otherwise: the photographer's own (made here, or in an
#: editor and imported from its sidecar). Auto-cull's own earlier decisions are always replaced.
MANUAL_SOURCES = frozenset({"user", "xmp"})
SOURCE_NAMES = {"user": "you", "auto": "auto-cull", "xmp": "XMP sidecar"}
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
        items, fallback = list(items), dict(fallback or {})

        def op(store: DecisionStore) -> list[Change]:
            current = store.get_many(h for h, _ in items)
            changes = []
            for content_hash, path in items:
                base = current.get(content_hash) or fallback.get(content_hash) or PhotoDecision()
                changes.append((content_hash, path, replace(base, source="user", **fields)))
            return store.apply(changes, description)

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

        Stars are kept; the flag is set with source "auto". The photographer's own decisions
        (`MANUAL_SOURCES`) are left as they are unless `overwrite_manual`.
        """
        plan, fallback = list(plan), dict(fallback or {})

        def op(store: DecisionStore) -> list[Change]:
            current = store.get_many(h for h, _, _ in plan)
            changes = []
            for content_hash, path, keep in plan:
                base = current.get(content_hash) or fallback.get(content_hash)
                if base is not None and base.source in MANUAL_SOURCES and not overwrite_manual:
                    continue
                new = replace(base or PhotoDecision(), flag=Flag.PICK if keep else Flag.REJECT, source="auto")
                changes.append((content_hash, path, new))
            return store.apply(changes, description)

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
    """An editor's sidecar rating as a decision with source "xmp"; None when it holds none."""
    if rating.source is None:
        return None
    flag = Flag.REJECT if rating.rejected else Flag.PICK if rating.pick else Flag.NONE
    stars = rating.stars or None  # 0 stars is "unrated" in every editor
    if flag == Flag.NONE and stars is None and rating.label is None:
        return None
    return PhotoDecision(stars=stars, flag=flag, label=rating.label, source="xmp")


class FolderScanner(QObject):
    """Per folder, in the background: editors' ratings of undecided photos, then burst groups."""

    imported = Signal(dict)  # {content hash: PhotoDecision} read from sidecars (source "xmp")
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
            fingerprint,
            group_photos,
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
                    fp = fingerprint(path)
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


# ------------------------------------------------------------------------------------- planning


def _level(photo: Photo) -> str | None:
    return None if photo.card is None else photo.card.level


def sidecar_entries(photos: Iterable[Photo]) -> list[SidecarEntry]:
    """The app's decisions as sidecar contents (`SidecarEntry.from_rating`). Photos without a decision
    made here are left out: their sidecar, if any, already says what the editor decided."""
    from humanaes_core.culling import SidecarEntry

    return [SidecarEntry.from_rating(p.path, p.decision, _level(p)) for p in photos if p.decision is not None]


def _decision_for_export(photo: Photo) -> Decision | None:
    from humanaes_core.culling import rated_decision

    rating = photo.rating
    who = "" if rating is None else SOURCE_NAMES.get(rating.source, rating.source)
    return rated_decision(rating, level=_level(photo), overall=photo.overall, who=who)


def picks_plan(photos: Iterable[Photo]) -> dict[Path, Decision]:
    """The picked photos as keepers for `humanaes_core.culling.copy_picks`."""
    plan = {}
    for photo in photos:
        if photo.flag == Flag.PICK:
            decision = _decision_for_export(photo)
            if decision is not None:
                plan[photo.path] = decision
    return plan


def export_plan(
    photos: Iterable[Photo],
) -> tuple[dict[Path, Any], dict[Path, Decision], dict[str, str]]:
    """(cards, decisions, errors) for `humanaes_core.culling.export_cards`: every scored photo's card, the
    decision of each photo that has a flag or stars, and why skipped photos were skipped."""
    cards: dict[Path, Any] = {}
    decisions: dict[Path, Decision] = {}
    errors: dict[str, str] = {}
    for photo in photos:
        if photo.card is not None:
            cards[photo.path] = photo.card
            decision = _decision_for_export(photo)
            if decision is not None:
                decisions[photo.path] = decision
        elif photo.error is not None:
            errors[str(photo.path)] = photo.error
    return cards, decisions, errors


def cull_plan(
    photos: Iterable[Photo],
    *,
    keep_top_percent: float | None = None,
    min_level: str | None = None,
    per: str = "folder",
    groups: Sequence[Sequence[Path]] | None = None,
) -> dict[Path, Decision]:
    """`humanaes_core.culling.plan_cull` over the scored photos (only their overall score and level are
    passed: converting 10,000 full cards to dicts would cost more than the ranking itself)."""
    from humanaes_core.culling import plan_cull

    cards = {
        p.path: {"dims": {"overall": p.card.dims["overall"]}, "level": p.card.level}
        for p in photos
        if p.card is not None
    }
    if not cards:
        return {}
    return plan_cull(cards, keep_top_percent=keep_top_percent, min_level=min_level, per=per, groups=groups)
