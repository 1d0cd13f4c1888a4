"""The thumbnail grid: a virtualised QListView whose tiles stretch to fill the row exactly.

Qt's icon mode leaves a ragged gap at the right edge when the width is not a multiple of the tile
size; here the column count follows from the preferred tile size and the tiles grow to fill the row,
as in most photo browsers. Only visible tiles are painted (and only they ask for thumbnails).
"""

from __future__ import annotations

from PySide6.QtCore import QAbstractItemModel, QPersistentModelIndex, Qt, QTimer
from PySide6.QtGui import QResizeEvent
from PySide6.QtWidgets import QAbstractItemView, QListView, QWidget

from .delegate import TileDelegate

SPACING = 4
MIN_TILE, MAX_TILE = 112, 360


class PhotoGrid(QListView):
    """Icon-mode list with uniform, row-filling tiles."""

    def __init__(self, preferred_tile: int = 184, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("grid")
        self.setViewMode(QListView.ViewMode.IconMode)
        self.setResizeMode(QListView.ResizeMode.Adjust)
        self.setMovement(QListView.Movement.Static)
        self.setUniformItemSizes(True)  # the view never asks 10,000 rows for their size
        self.setLayoutMode(QListView.LayoutMode.Batched)
        self.setBatchSize(400)
        self.setSpacing(SPACING)
        self.setWrapping(True)
        self.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)  # cull many at once
        self.setVerticalScrollMode(QAbstractItemView.ScrollMode.ScrollPerPixel)
        # Always on: a scroll bar appearing and disappearing would change the width and the tile size.
        self.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOn)
        self.verticalScrollBar().setSingleStep(32)
        self.setMouseTracking(True)
        self.setDragEnabled(False)
        self.tiles = TileDelegate(preferred_tile, self)
        self.setItemDelegate(self.tiles)
        self._preferred = min(max(preferred_tile, MIN_TILE), MAX_TILE)
        self._anchor: tuple[QPersistentModelIndex, int] | None = None

    def setModel(self, model: QAbstractItemModel | None) -> None:
        """Re-sorts and filters keep the current photo where it was on screen (see `_keep_anchor`)."""
        super().setModel(model)
        if model is not None:
            model.layoutAboutToBeChanged.connect(self._take_anchor)
            model.layoutChanged.connect(lambda *_: QTimer.singleShot(0, self._keep_anchor))

    def _take_anchor(self, *_args: object) -> None:
        """Remember the current tile and its distance from the top of the view, if it is on screen."""
        current = self.currentIndex()
        rect = self.visualRect(current) if current.isValid() else None
        visible = rect is not None and rect.intersects(self.viewport().rect())
        self._anchor = (QPersistentModelIndex(current), rect.top()) if visible and rect is not None else None

    def _keep_anchor(self) -> None:
        """Scroll so the current tile sits where it was before the rows moved (the scores re-sorted them):
        the photo being looked at never jumps off screen."""
        anchor, self._anchor = self._anchor, None
        if anchor is None or not anchor[0].isValid() or anchor[0] != self.currentIndex():
            return
        # The batched layout would place the rows over several event-loop turns; this one needs them now
        # (uniform tile sizes: a single pass over 10,000 rows takes a few milliseconds).
        self.setLayoutMode(QListView.LayoutMode.SinglePass)
        self.doItemsLayout()
        self.setLayoutMode(QListView.LayoutMode.Batched)
        rect = self.visualRect(self.currentIndex())
        bar = self.verticalScrollBar()
        bar.setValue(bar.value() + rect.top() - anchor[1])
        if not self.visualRect(self.currentIndex()).intersects(self.viewport().rect()):
            self.scrollTo(self.currentIndex())

    def visible_rows(self) -> list[int]:
        """The rows whose tiles are on screen now, top to bottom: the screenful that must look finished."""
        model = self.model()
        if model is None:
            return []
        area = self.viewport().rect()
        rows: list[int] = []
        for row in range(model.rowCount()):
            rect = self.visualRect(model.index(row, 0))
            if rect.intersects(area):
                rows.append(row)
            elif rows or rect.top() > area.bottom():
                break  # rows are laid out in order: past the bottom edge nothing more is visible
        return rows

    @property
    def preferred_tile(self) -> int:
        return self._preferred

    def set_preferred_tile(self, size: int) -> None:
        self._preferred = min(max(size, MIN_TILE), MAX_TILE)
        self.fit_tiles(force=True)

    def columns(self) -> int:
        avail = self.viewport().width() - SPACING
        return max(1, avail // (self._preferred + SPACING))

    def fit_tiles(self, force: bool = False) -> None:
        """Pick the column count for the preferred size, then widen the tiles to fill the row."""
        avail = self.viewport().width() - SPACING
        cols = self.columns()
        size = max(MIN_TILE // 2, avail // cols - SPACING - 1)
        if force or size != self.tiles.tile_size:
            self.tiles.tile_size = size
            self.doItemsLayout()
            current = self.currentIndex()
            if current.isValid():
                self.scrollTo(current)

    def resizeEvent(self, event: QResizeEvent) -> None:
        super().resizeEvent(event)
        self.fit_tiles()
