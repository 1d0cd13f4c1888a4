"""The grid's data: one `Photo` per file and a list model that sorts and filters them.

Sorting and filtering live in this model rather than in a QSortFilterProxyModel: a proxy compares
rows by calling `data()` — a Python call per comparison, about 280,000 of them to sort 10,000
photos. Here the order is one `sorted()` with a key function (one Python call per photo), so a sort
or filter change on 10,000 photos takes milliseconds and the view's selection is kept through
`layoutChanged` with persistent indexes.

`data()` never touches the disk: thumbnails come from the `ThumbnailProvider`'s memory cache and are
requested asynchronously when missing.

Culling state lives here too: each photo's decision (stars, pick/reject) as stored in the cache database
or imported from an editor's XMP sidecar, and its burst group. With bursts collapsed, a group is one row:
its best frame (open, sharp eyes first, then the score), standing for the others.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QAbstractListModel, QModelIndex, QObject, QPersistentModelIndex, Qt, QTimer, Signal

from humanaes_core.culling import frame_key
from humanaes_core.schema import BY_KEY, KEYS, LEVELS
from humanaes_core.store import Flag, PhotoDecision

from .settings import FLAG_NAMES
from .verdicts import CHECK_FILTER_KEYS, has_any, photo_badges

if TYPE_CHECKING:
    from humanaes_core.scoring import ScoreCard

    from .thumbnails import ImageLoader

PhotoRole = Qt.ItemDataRole.UserRole + 1
ScoreRole = Qt.ItemDataRole.UserRole + 2
GroupRole = Qt.ItemDataRole.UserRole + 3  # how many photos a row stands for (bursts collapsed), else 1

_FLAG_NAME = {Flag.PICK: "pick", Flag.NONE: "none", Flag.REJECT: "reject"}

#: The four heads in a photographer's words (the technical names are in `HEAD_TOOLTIPS`).
HEAD_LABELS = {
    "lm": "Rating in words",
    "regression": "Direct rating",
    "expert": "Detailed assessment",
    "metavoter": "Final vote",
}
HEAD_TOOLTIPS = {
    "lm": "LM head: the rating word's expected level (Eq. 4)",
    "regression": "Regression head: a linear layer on the hidden state",
    "expert": "Expert head: Overall (L) of the A–L hierarchy",
    "metavoter": "MetaVoter: the vote over the three heads, the overall score",
}

#: (sort key, menu label): the overall score, the 12 dimensions, the four heads, name, capture time.
SORT_KEYS: tuple[tuple[str, str], ...] = (
    ("overall", "Overall score"),
    *((k, f"{BY_KEY[k].letter} · {BY_KEY[k].name}") for k in KEYS if k != "overall"),
    *((f"head:{h}", label) for h, label in HEAD_LABELS.items()),
    ("name", "File name"),
    ("captured", "Capture time"),
)
SORT_LABELS = dict(SORT_KEYS)


@dataclass(eq=False)
class Photo:
    """One file of the open folder and what is known about it so far."""

    path: Path
    name: str  # path relative to the opened folder, for display and name sorting
    card: ScoreCard | None = None
    error: str | None = None  # why it was skipped
    captured: float | None = None  # EXIF DateTimeOriginal (or the file's mtime), unix seconds
    content_hash: str | None = None  # the cache's key for this file's bytes; decisions are stored under it
    decision: PhotoDecision | None = None  # what the photographer (or auto-cull) decided, from the database
    xmp: PhotoDecision | None = None  # an editor's sidecar rating, shown until overridden
    group: int | None = None  # index of its burst in the model's groups (None: not part of a burst)

    @property
    def rating(self) -> PhotoDecision | None:
        """The decision in force: the app's own, else the editor's sidecar rating, else None."""
        return self.decision if self.decision is not None else self.xmp

    @property
    def flag(self) -> Flag:
        rating = self.rating
        return Flag.NONE if rating is None else rating.flag

    @property
    def stars(self) -> int:
        rating = self.rating
        return 0 if rating is None or rating.stars is None else rating.stars

    @property
    def state(self) -> str:
        if self.error is not None:
            return "skipped"
        return "scored" if self.card is not None else "pending"

    @property
    def overall(self) -> float | None:
        return None if self.card is None else self.card.dims.get("overall")

    def sort_value(self, key: str) -> Any:
        """The value sorted on, or None when unknown (unknown values always sort last)."""
        if key == "name":
            return self.name.casefold()
        if key == "captured":
            return self.captured
        if self.card is None:
            return None
        if key.startswith("head:"):
            return self.card.heads.get(key[5:])
        return self.card.dims.get(key)


@dataclass(frozen=True)
class Filter:
    """Which photos are shown. Score filters (levels, minimum score) hide unscored and skipped photos;
    decision filters (flags, minimum stars) apply to every photo, scored or not; check filters
    (`verdicts.CHECK_FILTER_KEYS`: eyes closed, soft or missed focus, misfire, faces) show only the
    photos with any of the chosen findings."""

    levels: frozenset[str] = frozenset(LEVELS)
    min_score: float = 0.0
    flags: frozenset[str] = frozenset(FLAG_NAMES)
    min_stars: int = 0
    checks: frozenset[str] = frozenset()

    @property
    def score_active(self) -> bool:
        return self.levels != frozenset(LEVELS) or self.min_score > 0.0

    @property
    def decision_active(self) -> bool:
        return self.flags != frozenset(FLAG_NAMES) or self.min_stars > 0

    @property
    def active(self) -> bool:
        return self.score_active or self.decision_active or bool(self.checks)

    def accepts(self, photo: Photo) -> bool:
        if self.decision_active and (
            _FLAG_NAME[photo.flag] not in self.flags or photo.stars < self.min_stars
        ):
            return False
        if self.checks and not has_any(photo.card, self.checks):
            return False
        if not self.score_active:
            return True
        if photo.card is None:
            return False
        overall = photo.card.dims["overall"]
        return photo.card.level in self.levels and overall >= self.min_score


def common_root(paths: Sequence[Path]) -> Path | None:
    """The deepest folder containing every path (names are shown relative to it)."""
    if not paths:
        return None
    try:
        return Path(os.path.commonpath([str(p.parent) for p in paths]))
    except ValueError:  # different drives on Windows
        return None


class PhotoModel(QAbstractListModel):
    """All photos of the open folder; rows are the sorted, filtered view of them."""

    #: Emitted after rows changed order or visibility (for the status bar's "N of M shown").
    layout_updated = Signal()
    #: Emitted after decisions changed (stars, flags), for the status bar and the detail panel.
    decisions_updated = Signal()

    def __init__(self, thumbnails: ImageLoader | None = None, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._photos: list[Photo] = []
        self._by_path: dict[str, int] = {}
        self._order: list[int] = []  # row -> index into _photos
        self._row_of: dict[int, int] = {}  # index into _photos -> row (visible ones only)
        self._sort_key = "overall"
        self._descending = True
        self._filter = Filter()
        self._reference: list[Any] | None = None
        self._mean_dims: dict[str, float] | None = None
        self._by_hash: dict[str, list[int]] = {}  # content hash -> photos (identical files share a decision)
        self._groups: list[list[int]] = []  # bursts of two or more photos, members in capture order
        self._collapsed = False
        self._represents: dict[int, int] = {}  # shown item -> how many photos it stands for (collapsed)
        self.thumbnails = thumbnails
        if thumbnails is not None:
            thumbnails.ready.connect(self._thumbnail_ready)
        # Scores arrive in many small batches while scoring runs; re-sorting after each would make tiles
        # jump around constantly, so re-sorts are coalesced to at most one per interval.
        self._resort_timer = QTimer(self)
        self._resort_timer.setSingleShot(True)
        self._resort_timer.setInterval(400)
        self._resort_timer.timeout.connect(self.resort)

    # ------------------------------------------------------------------ Qt model API

    def rowCount(self, parent: QModelIndex | QPersistentModelIndex = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(self._order)

    def data(
        self, index: QModelIndex | QPersistentModelIndex, role: int = Qt.ItemDataRole.DisplayRole
    ) -> Any:
        if not index.isValid() or not 0 <= index.row() < len(self._order):
            return None
        photo = self._photos[self._order[index.row()]]
        if role == PhotoRole:
            return photo
        if role == Qt.ItemDataRole.DisplayRole:
            return photo.name
        if role == Qt.ItemDataRole.DecorationRole:
            return None if self.thumbnails is None else self.thumbnails.get(photo.path)
        if role == ScoreRole:
            return photo.sort_value(self._sort_key)
        if role == GroupRole:
            return self._represents.get(self._order[index.row()], 1)
        if role == Qt.ItemDataRole.ToolTipRole:
            return self._tooltip(photo)
        return None

    # ------------------------------------------------------------------ content

    @property
    def photos(self) -> list[Photo]:
        """All photos, shown or not, in scan order."""
        return self._photos

    def set_photos(self, paths: Iterable[Path], root: Path | None = None) -> None:
        """Replace the content with new files (pending, unscored)."""
        paths = list(paths)
        root = root or common_root(paths)
        self.beginResetModel()
        self._photos = [Photo(p, _relative(p, root)) for p in paths]
        self._by_path = {str(p.path): i for i, p in enumerate(self._photos)}
        self._by_hash = {}
        self._groups = []
        self._reference = self._mean_dims = None
        self._compute_order()
        self.endResetModel()
        self.layout_updated.emit()

    def photo(self, row: int) -> Photo | None:
        return self._photos[self._order[row]] if 0 <= row < len(self._order) else None

    def row_of(self, path: str | Path) -> int:
        """Row of a photo, -1 when unknown or filtered out."""
        i = self._by_path.get(str(path))
        return -1 if i is None else self._row_of.get(i, -1)

    def update_results(self, results: Iterable[tuple[str, ScoreCard | None, str | None]]) -> list[Photo]:
        """Apply a batch of (path, card, error) from the scoring worker; returns the photos it changed.

        Re-sorts are coalesced (see `_resort_timer`), except for the folder's first scores: no tile has
        a score to be seen jumping yet, and the first screen is then the sorted one at once (a cached
        folder arrives as one batch)."""
        first_scores = not any(p.card is not None for p in self._photos)
        changed: list[int] = []
        for path, card, error in results:
            i = self._by_path.get(path)
            if i is None:
                continue
            photo = self._photos[i]
            photo.card, photo.error = card, error
            changed.append(i)
        if changed:
            self._reference = self._mean_dims = None
            self._rows_changed(changed)
            if self._sort_key not in ("name", "captured") or self._filter.active or self._collapsed:
                if first_scores:
                    self.resort()
                else:
                    self._resort_timer.start()
        return [self._photos[i] for i in changed]

    # ------------------------------------------------------------------ decisions

    def set_hashes(self, hashes: Mapping[str, str]) -> None:
        """Content hashes by path (computed by the scoring worker): the keys decisions are stored under."""
        for path, content_hash in hashes.items():
            i = self._by_path.get(path)
            if i is not None:
                self._photos[i].content_hash = content_hash
                self._by_hash.setdefault(content_hash, []).append(i)

    def photos_with_hash(self, content_hash: str) -> list[Photo]:
        return [self._photos[i] for i in self._by_hash.get(content_hash, ())]

    def set_decisions(
        self, decisions: Mapping[str, PhotoDecision | None], *, imported: bool = False
    ) -> list[Photo]:
        """Show decisions keyed by content hash (None: cleared). `imported`: ratings read from editors'
        sidecars, shown for photos the app has no decision of its own for. Returns the photos changed."""
        changed: list[int] = []
        for content_hash, decision in decisions.items():
            for i in self._by_hash.get(content_hash, ()):
                photo = self._photos[i]
                if imported:
                    photo.xmp = decision
                else:
                    photo.decision = decision
                changed.append(i)
        if changed:
            self._rows_changed(changed)
            if self._filter.decision_active:
                self._resort_timer.start()
            self.decisions_updated.emit()
        return [self._photos[i] for i in changed]

    def decision_counts(self) -> dict[str, int]:
        """Picked, rejected and starred photos of the folder (for the status bar)."""
        out = {"picked": 0, "rejected": 0, "starred": 0}
        for p in self._photos:
            flag = p.flag
            if flag == Flag.PICK:
                out["picked"] += 1
            elif flag == Flag.REJECT:
                out["rejected"] += 1
            if p.stars:
                out["starred"] += 1
        return out

    # ------------------------------------------------------------------ bursts

    def set_groups(self, groups: Iterable[Sequence[str | os.PathLike[str]]]) -> None:
        """Bursts from `humanaes_core.culling.group_photos` (singletons may be included and are ignored)."""
        for photo in self._photos:
            photo.group = None
        self._groups = []
        for members in groups:
            items = [i for i in (self._by_path.get(os.fspath(m)) for m in members) if i is not None]
            if len(items) < 2:
                continue
            gid = len(self._groups)
            self._groups.append(items)
            for i in items:
                self._photos[i].group = gid
        if self._collapsed:
            self.resort()
        elif self._order:
            self.dataChanged.emit(self.index(0), self.index(len(self._order) - 1))

    @property
    def has_groups(self) -> bool:
        return bool(self._groups)

    def group_count(self) -> int:
        return len(self._groups)

    def groups(self) -> list[list[Path]]:
        """The bursts (two or more photos each) as paths, members in capture order."""
        return [[self._photos[i].path for i in members] for members in self._groups]

    def group_members(self, photo: Photo) -> list[Photo]:
        """The photo's burst in capture order ([photo] when it is not part of one)."""
        if photo.group is None or photo.group >= len(self._groups):
            return [photo]
        return [self._photos[i] for i in self._groups[photo.group]]

    def best_of_group(self, photo: Photo) -> Photo:
        """The best frame (`_best`: open, sharp eyes first, then the score; the first when unscored)."""
        if photo.group is None or photo.group >= len(self._groups):
            return photo
        return self._photos[self._best(self._groups[photo.group])]

    @property
    def collapsed(self) -> bool:
        return self._collapsed

    def set_collapsed(self, collapsed: bool) -> None:
        """Show each burst as its best frame only."""
        if collapsed != self._collapsed:
            self._collapsed = collapsed
            self.resort()

    def represented(self, row: int) -> int:
        """How many photos the row stands for (more than 1 only for a collapsed burst)."""
        return self._represents.get(self._order[row], 1) if 0 <= row < len(self._order) else 0

    def set_capture_times(self, times: dict[str, float]) -> None:
        changed = []
        for path, t in times.items():
            i = self._by_path.get(path)
            if i is not None:
                self._photos[i].captured = t
                changed.append(i)
        if changed and self._sort_key == "captured":
            self._resort_timer.start()

    def clear_scores(self) -> None:
        """Forget every card and error (another model or other settings): nothing stale stays on screen."""
        for photo in self._photos:
            photo.card = None
            photo.error = None
        self._reference = self._mean_dims = None
        self.resort()
        if self._order:
            self.dataChanged.emit(self.index(0), self.index(len(self._order) - 1))

    def reference_cards(self, model: str) -> list[Any]:
        """The full cards of the folder's scored photos by `model` (what "the folder average" of an
        explanation means), cached until a card changes."""
        if self._reference is None:
            self._reference = [p.card for p in self._photos if p.card is not None and p.card.expert_raw]
        return [c for c in self._reference if not c.model or c.model == model]

    def mean_dims(self) -> dict[str, float] | None:
        """Mean of the displayed 12 values (overall = MetaVoter) over scored photos: the ticks and radar."""
        if self._mean_dims is None:
            dims = [p.card.dims for p in self._photos if p.card is not None and len(p.card.dims) == len(KEYS)]
            if not dims:
                return None
            self._mean_dims = {k: sum(d[k] for d in dims) / len(dims) for k in KEYS}
        return self._mean_dims

    def counts(self) -> dict[str, int]:
        out = {"total": len(self._photos), "shown": len(self._order), "scored": 0, "skipped": 0, "pending": 0}
        for p in self._photos:
            out[p.state] += 1
        return out

    # ------------------------------------------------------------------ sorting and filtering

    @property
    def resort_pending(self) -> bool:
        """Rows are waiting for a coalesced re-sort (see `update_results`): the order shown may change."""
        return self._resort_timer.isActive()

    @property
    def sort_key(self) -> str:
        return self._sort_key

    @property
    def descending(self) -> bool:
        return self._descending

    @property
    def filter(self) -> Filter:
        return self._filter

    def set_sort(self, key: str, descending: bool) -> None:
        if key not in SORT_LABELS:
            raise ValueError(f"unknown sort key {key!r}")
        if (key, descending) != (self._sort_key, self._descending):
            self._sort_key, self._descending = key, descending
            self.resort()

    def set_filter(self, levels: Iterable[str], min_score: float) -> None:
        new = replace(self._filter, levels=frozenset(levels) & frozenset(LEVELS), min_score=float(min_score))
        if new != self._filter:
            self._filter = new
            self.resort()

    def set_check_filter(self, checks: Iterable[str]) -> None:
        """Show only photos with any of these findings (`verdicts.CHECK_FILTER_KEYS`); none: every photo."""
        new = replace(self._filter, checks=frozenset(checks) & frozenset(CHECK_FILTER_KEYS))
        if new != self._filter:
            self._filter = new
            self.resort()

    def set_decision_filter(self, flags: Iterable[str], min_stars: int) -> None:
        """Show only photos with one of these flags ("pick", "none", "reject") and at least `min_stars`."""
        new = replace(
            self._filter, flags=frozenset(flags) & frozenset(FLAG_NAMES), min_stars=min(max(min_stars, 0), 5)
        )
        if new != self._filter:
            self._filter = new
            self.resort()

    def resort(self) -> None:
        """Recompute the rows now, keeping selection and current item on the same photos."""
        self._resort_timer.stop()
        self.layoutAboutToBeChanged.emit()
        old_persistent = self.persistentIndexList()
        old_items = [
            self._order[ix.row()] if 0 <= ix.row() < len(self._order) else -1 for ix in old_persistent
        ]
        self._compute_order()
        new_indexes = []
        for item in old_items:
            row = self._row_of.get(item, -1)
            new_indexes.append(self.index(row, 0) if row >= 0 else QModelIndex())
        self.changePersistentIndexList(old_persistent, new_indexes)
        self.layoutChanged.emit()
        self.layout_updated.emit()

    def _compute_order(self) -> None:
        key, accepts = self._sort_key, self._filter.accepts
        shown = [i for i, p in enumerate(self._photos) if accepts(p)]
        self._represents = {}
        if self._collapsed and self._groups:
            shown = self._collapse(shown)
        # Name order first, so photos with equal values stay in a stable, sensible order.
        shown.sort(key=lambda i: self._photos[i].name.casefold())
        known = [i for i in shown if self._photos[i].sort_value(key) is not None]
        unknown = [i for i in shown if self._photos[i].sort_value(key) is None]
        value: Callable[[int], Any] = lambda i: self._photos[i].sort_value(key)  # noqa: E731
        known.sort(key=value, reverse=self._descending)
        self._order = known + unknown
        self._row_of = {item: row for row, item in enumerate(self._order)}

    def _collapse(self, shown: list[int]) -> list[int]:
        """Keep each burst's best shown frame; the others are represented by it."""
        visible = set(shown)
        kept = [i for i in shown if self._photos[i].group is None]
        for members in self._groups:
            present = [i for i in members if i in visible]
            if present:
                best = self._best(present)
                kept.append(best)
                self._represents[best] = len(present)
        return kept

    def _best(self, items: Sequence[int]) -> int:
        """The core's best frame (`humanaes_core.culling.frame_key`: fewest closed eyes, sharp eyes, then
        the overall score); the earlier frame on ties; the first frame when none is scored."""
        scored = [
            (frame_key(card), position, i)
            for position, i in enumerate(items)
            if (card := self._photos[i].card) is not None
        ]
        return min(scored)[2] if scored else items[0]

    # ------------------------------------------------------------------ helpers

    def _rows_changed(self, items: Iterable[int]) -> None:
        rows = sorted(r for r in (self._row_of.get(i, -1) for i in items) if r >= 0)
        if not rows:
            return
        start = prev = rows[0]
        for row in [*rows[1:], None]:
            if row is not None and row == prev + 1:
                prev = row
                continue
            self.dataChanged.emit(self.index(start), self.index(prev))
            if row is not None:
                start = prev = row

    def _thumbnail_ready(self, path: str) -> None:
        i = self._by_path.get(path)
        row = -1 if i is None else self._row_of.get(i, -1)
        if row >= 0:
            ix = self.index(row)
            self.dataChanged.emit(ix, ix, [Qt.ItemDataRole.DecorationRole])

    def _tooltip(self, photo: Photo) -> str:
        if photo.error is not None:
            return f"{photo.path}\nskipped: {photo.error}"
        if photo.card is None:
            return f"{photo.path}\nnot scored yet"
        card = photo.card
        text = f"{photo.path}\noverall {card.dims['overall']:.3f} ({card.level})"
        if photo.group is not None:
            text += f"\nburst of {len(self.group_members(photo))}"
        for verdict in photo_badges(card):
            text += f"\n{verdict.text}: {verdict.tip}"
        return text


def _relative(path: Path, root: Path | None) -> str:
    if root is None:
        return path.name
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return path.name
