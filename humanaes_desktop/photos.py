"""The grid's data: one `Photo` per file and a list model that sorts and filters them.

Sorting and filtering live in this model rather than in a QSortFilterProxyModel: a proxy compares
rows by calling `data()` — a Python call per comparison, about 280,000 of them to sort 10,000
photos. Here the order is one `sorted()` with a key function (one Python call per photo), so a sort
or filter change on 10,000 photos takes milliseconds and the view's selection is kept through
`layoutChanged` with persistent indexes.

`data()` never touches the disk: thumbnails come from the `ThumbnailProvider`'s memory cache and are
requested asynchronously when missing.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QAbstractListModel, QModelIndex, QObject, QPersistentModelIndex, Qt, QTimer, Signal

from humanaes_core.schema import BY_KEY, KEYS, LEVELS

if TYPE_CHECKING:
    from humanaes_core.scoring import ScoreCard

    from .thumbnails import ImageLoader

PhotoRole = Qt.ItemDataRole.UserRole + 1
ScoreRole = Qt.ItemDataRole.UserRole + 2

HEAD_LABELS = {
    "lm": "LM head",
    "regression": "Regression head",
    "expert": "Expert head",
    "metavoter": "MetaVoter",
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
    """Which scored photos are shown; unscored and skipped ones are shown only while nothing is filtered."""

    levels: frozenset[str] = frozenset(LEVELS)
    min_score: float = 0.0

    @property
    def active(self) -> bool:
        return self.levels != frozenset(LEVELS) or self.min_score > 0.0

    def accepts(self, photo: Photo) -> bool:
        if not self.active:
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

    def __init__(self, thumbnails: ImageLoader | None = None, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._photos: list[Photo] = []
        self._by_path: dict[str, int] = {}
        self._order: list[int] = []  # row -> index into _photos
        self._row_of: dict[int, int] = {}  # index into _photos -> row (visible ones only)
        self._sort_key = "overall"
        self._descending = True
        self._filter = Filter()
        self._reference: dict[str, float] | None = None
        self._mean_dims: dict[str, float] | None = None
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
        """Apply a batch of (path, card, error) from the scoring worker; returns the photos it changed."""
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
            if self._sort_key not in ("name", "captured") or self._filter.active:
                self._resort_timer.start()
        return [self._photos[i] for i in changed]

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

    def reference(self) -> dict[str, float] | None:
        """Mean expert-head card of the scored photos (the attribution baseline), cached until a change."""
        if self._reference is None:
            raws = [p.card.expert_raw for p in self._photos if p.card is not None and p.card.expert_raw]
            if not raws:
                return None
            self._reference = {k: sum(r[k] for r in raws) / len(raws) for k in KEYS}
        return self._reference

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
        new = Filter(frozenset(levels) & frozenset(LEVELS), float(min_score))
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
        # Name order first, so photos with equal values stay in a stable, sensible order.
        shown.sort(key=lambda i: self._photos[i].name.casefold())
        known = [i for i in shown if self._photos[i].sort_value(key) is not None]
        unknown = [i for i in shown if self._photos[i].sort_value(key) is None]
        value: Callable[[int], Any] = lambda i: self._photos[i].sort_value(key)  # noqa: E731
        known.sort(key=value, reverse=self._descending)
        self._order = known + unknown
        self._row_of = {item: row for row, item in enumerate(self._order)}

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
        return f"{photo.path}\noverall {card.dims['overall']:.3f} ({card.level})"


def _relative(path: Path, root: Path | None) -> str:
    if root is None:
        return path.name
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return path.name
