"""Culling off the UI thread: decisions in the database, editors' ratings, bursts, sidecars and copies.

Three kinds of work, each on a worker thread of its own so that none waits behind another:

- decisions (`DecisionKeeper`): every key press, auto-cull, undo and redo is a small SQLite transaction
  in `humanaes_core.store.decisions.DecisionStore`, run in order on one thread. The grid shows what the store
  says changed, never a guess made before the write, so an undo right after a quick series of key
  presses always shows what the database holds.
- folder scans (`FolderScanner`): ratings in editors' XMP sidecars for photos the app has no decision
  for, and perceptual fingerprints for burst grouping (kept in memory by content hash, so reopening a
  folder groups it at once).
- jobs (a `Background` of the window): writing sidecars, copying or moving picks, exporting cards. Each
  reports once, at the end.

The functions that turn photos into plans (`sidecar_entries`, `picks_plan`, `export_plan`, `cull_plan`)
are plain code without Qt, so they are tested on their own and run wherever the caller likes.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QObject, Signal

from humanaes_core.store import Change, DecisionStore, Flag, PhotoDecision

if TYPE_CHECKING:
    from humanaes_core.culling import Decision
    from humanaes_core.formats import Rating

    from .photos import Photo

log = logging.getLogger(__name__)

#: Decisions auto-cull leaves alone unless told otherwise: the photographer's own (made here, or in an
#: editor and imported from its sidecar). Auto-cull's own earlier decisions are always replaced.
MANUAL_SOURCES = frozenset({"user", "xmp"})
SOURCE_NAMES = {"user": "you", "auto": "auto-cull", "xmp": "XMP sidecar"}
_CHUNK = 200  # results delivered to the UI in chunks of this many photos


class Background(QObject):
    """One worker thread running submitted jobs in order; their results come back on the UI thread.

    A plain single-thread executor plus a queued signal: simpler than a QThread per job, FIFO by
    construction (so decisions are written in the order the keys were pressed), and `shutdown` waits
    for the job in flight, so nothing is half-written when the window closes.
    """

    _deliver = Signal(object)

    def __init__(self, name: str, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)
        self._pending = 0
        self._closed = False
        self._deliver.connect(self._on_deliver)

    @property
    def busy(self) -> bool:
        """Jobs submitted whose results have not been delivered yet."""
        return self._pending > 0

    def submit(
        self,
        fn: Callable[[], Any],
        done: Callable[[Any], None] | None = None,
        failed: Callable[[BaseException], None] | None = None,
    ) -> Future:
        """Run `fn()` on the worker thread; then `done(result)` or `failed(exception)` on the UI thread."""
        self._pending += 1

        def run() -> None:
            try:
                result = fn()
            except Exception as e:  # reported to the UI; a failing job must not kill the worker
                log.debug("background job failed", exc_info=True)
                self._deliver.emit((failed, (e,), True))
                return
            self._deliver.emit((done, (result,), True))

        return self._pool.submit(run)

    def call_in_ui(self, fn: Callable[..., None], *args: Any) -> None:
        """From the worker thread: call `fn(*args)` on the UI thread (progress, partial results)."""
        self._deliver.emit((fn, args, False))

    def shutdown(self, *, drop_queued: bool = False) -> None:
        """Wait for the jobs (all of them, or with `drop_queued` only the one running); nothing is
        delivered afterwards. Writes the photographer asked for are never dropped by default."""
        self._closed = True
        self._pool.shutdown(wait=True, cancel_futures=drop_queued)

    def _on_deliver(self, item: tuple[Callable[..., None] | None, tuple, bool]) -> None:
        fn, args, finishes = item
        if finishes:
            self._pending -= 1
        if fn is not None and not self._closed:
            fn(*args)


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
    loaded = Signal(int, dict)  # generation, {content hash: PhotoDecision} stored for a folder
    history_changed = Signal(object)  # History
    failed = Signal(str)

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        from humanaes_core.store import default_cache_path

        self._path = default_cache_path()
        self._store: DecisionStore | None = None
        self._bg = Background("humanaes-decisions", self)
        self.history = History()

    @property
    def busy(self) -> bool:
        return self._bg.busy

    def load(self, generation: int, hashes: Sequence[str]) -> None:
        """Stored decisions of a folder's photos; arrives as `loaded(generation, {hash: decision})`."""
        wanted = list(hashes)
        self._run(lambda store: store.get_many(wanted), lambda found: self.loaded.emit(generation, found))

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
        """Finish every queued write and close the database (the window is closing)."""
        self._bg.shutdown()
        if self._store is not None:
            self._store.close()
            self._store = None

    def _travel(self, *, redo: bool) -> None:
        def op(store: DecisionStore) -> tuple[list[Change], str]:
            what = store.redo_description() if redo else store.undo_description()
            changes = store.redo() if redo else store.undo()
            return changes, f"{'redo' if redo else 'undo'} {what}" if what else ""

        self._run(op, lambda result: self.changed.emit(*result))

    def _run(self, op: Callable[[DecisionStore], Any], done: Callable[[Any], None]) -> None:
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

        self._bg.submit(job, finished, lambda e: self.failed.emit(f"Decisions could not be saved: {e}"))


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
        self._bg = Background("humanaes-scan", self)
        self._generation = 0
        # content hash -> (capture time, time source, perceptual hash): fingerprints outlive the folder
        self._prints: dict[str, tuple[float | None, str, str]] = {}
        self.grouping = False  # a burst search is running for the current folder

    @property
    def busy(self) -> bool:
        return self._bg.busy

    def cancel(self) -> None:
        """Forget the current folder: its running scan stops at the next photo, nothing more arrives."""
        self._generation += 1
        self.grouping = False

    def shutdown(self) -> None:
        self.cancel()
        self._bg.shutdown(drop_queued=True)  # only reads: nothing is lost

    def import_ratings(self, items: Sequence[tuple[str, Path]]) -> None:
        """Read the sidecar (or embedded XMP) rating of each (content hash, path)."""
        from humanaes_core.formats import XmpError, read_rating

        gen, items = self._generation, list(items)

        def job() -> dict[str, PhotoDecision]:
            found: dict[str, PhotoDecision] = {}
            for content_hash, path in items:
                if gen != self._generation:
                    return {}
                try:
                    decision = decision_from_rating(read_rating(path))
                except (XmpError, OSError, RuntimeError, ValueError) as e:
                    log.debug("no rating read from %s: %s", path, e)
                    continue
                if decision is not None:
                    found[content_hash] = decision
                if len(found) >= _CHUNK:
                    self._bg.call_in_ui(self._deliver_ratings, gen, found)
                    found = {}
            return found

        self._bg.submit(job, lambda found: self._deliver_ratings(gen, found))

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

        gen, items, known = self._generation, list(items), dict(self._prints)
        hamming = DEFAULT_MAX_HAMMING if max_hamming is None else max_hamming
        gap = DEFAULT_MAX_GAP_S if max_gap_s is None else max_gap_s
        self.grouping = True

        def job() -> tuple[dict, list[list[Path]]] | None:
            todo = [(h, p) for h, p in items if h not in known]
            new: dict[str, tuple[float | None, str, str]] = {}
            for n, (content_hash, path) in enumerate(todo, start=1):
                if gen != self._generation:
                    return None
                try:
                    fp = fingerprint(path)
                except Exception as e:  # an unreadable photo is simply not part of a burst
                    log.debug("no fingerprint for %s: %s", path, e)
                    continue
                new[content_hash] = (fp.capture_time, fp.time_source, fp.hash)
                if n % 25 == 0:
                    self._bg.call_in_ui(self._report, gen, n, len(todo))
            prints = {**known, **new}
            triples = [(p, prints[h][0], prints[h][2]) for h, p in items if h in prints]
            return new, group_photos(triples, max_hamming=hamming, max_gap_s=gap)

        def done(result: tuple[dict, list[list[Path]]] | None) -> None:
            if result is None or gen != self._generation:
                return
            new, groups = result
            self._prints.update(new)
            self.grouping = False
            self.groups_found.emit(groups)

        self._bg.submit(job, done)

    def _deliver_ratings(self, gen: int, found: dict[str, PhotoDecision]) -> None:
        if gen == self._generation and found:
            self.imported.emit(found)

    def _report(self, gen: int, done: int, total: int) -> None:
        if gen == self._generation:
            self.progress.emit("Finding bursts", done, total)


# ------------------------------------------------------------------------------------- planning


def level_stars_of(photo: Photo) -> int | None:
    """Stars the photo's level is worth (bad 1 … excellent 5); None when it is not scored."""
    from humanaes_core.culling import level_stars

    return None if photo.card is None else level_stars(photo.card.level)


@dataclass(frozen=True)
class SidecarEntry:
    """What goes into one photo's sidecar: stars (None: unrated), reject, pick, an explicit label."""

    path: Path
    stars: int | None
    rejected: bool
    pick: bool | None
    label: str | None


def sidecar_entries(photos: Iterable[Photo]) -> list[SidecarEntry]:
    """The app's decisions as sidecar contents. Photos without a decision made here are left out (their
    sidecar, if any, already says what the editor decided). Stars as the photographer set them; a pick
    without stars gets its level's stars; rejects are Rating -1."""
    entries = []
    for photo in photos:
        d = photo.decision
        if d is None:
            continue
        rejected = d.flag == Flag.REJECT
        picked = d.flag == Flag.PICK
        stars = d.stars or (level_stars_of(photo) if picked else None)
        entries.append(SidecarEntry(photo.path, stars, rejected, True if picked else None, d.label))
    return entries


@dataclass
class SidecarReport:
    """What a sidecar run did."""

    photos: int = 0
    sidecars: list[Path] = field(default_factory=list)
    skipped: int = 0  # nothing to say and no sidecar yet: no empty sidecar is made
    failed: list[tuple[Path, str]] = field(default_factory=list)


def write_sidecar_entries(
    entries: Sequence[SidecarEntry],
    convention: str = "auto",
    keeper_label: str | None = None,
    *,
    digikam: bool = True,
    cancelled: Callable[[], bool] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> SidecarReport:
    """Merge each entry into its photo's sidecar(s) (`xmp.write_decision`); failures are collected.

    `keeper_label` colours picks (unless the photographer gave the photo a label of its own) and is
    taken off rejects that carry it from an earlier run, as `humanaes_core.culling.plan.write_sidecars` does.
    """
    from humanaes_core.formats import XmpError, existing_sidecars, read_rating, write_decision

    report = SidecarReport()
    for n, entry in enumerate(entries, start=1):
        if cancelled is not None and cancelled():
            break
        if progress is not None and n % 25 == 0:
            progress(n, len(entries))
        empty = entry.stars is None and not entry.rejected and not entry.pick and entry.label is None
        try:
            if empty and not existing_sidecars(entry.path):
                report.skipped += 1
                continue
            label = entry.label
            if label is None and keeper_label:
                if entry.pick:
                    label = keeper_label
                elif entry.rejected:
                    current = read_rating(entry.path).label
                    label = "" if current is not None and current.lower() == keeper_label.lower() else None
            report.sidecars += write_decision(
                entry.path,
                entry.stars,
                entry.rejected,
                label,
                pick=entry.pick,
                convention=convention,
                digikam=digikam,
            )
            report.photos += 1
        except (XmpError, OSError, ValueError) as e:
            report.failed.append((entry.path, str(e)))
    return report


def _decision_for_export(photo: Photo) -> Decision | None:
    from humanaes_core.culling import Decision

    rating = photo.rating
    if rating is None or (rating.flag == Flag.NONE and not rating.stars):
        return None
    rejected = rating.flag == Flag.REJECT
    stars = rating.stars or level_stars_of(photo) or 0
    what = "rejected" if rejected else "picked" if rating.flag == Flag.PICK else f"{stars} stars"
    return Decision(
        keep=not rejected,
        stars=stars,
        reason=f"{what} ({SOURCE_NAMES.get(rating.source, rating.source)})",
        overall=photo.overall or 0.0,
        level=photo.card.level if photo.card is not None else "",
    )


def picks_plan(photos: Iterable[Photo]) -> dict[Path, Decision]:
    """The picked photos as keepers for `humanaes_core.culling.plan.copy_picks`."""
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
    """`humanaes_core.culling.plan.plan_cull` over the scored photos (only their overall score and level are
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
