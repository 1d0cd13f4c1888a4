"""The thumbnail grid: a virtualised QListView whose tiles stretch to fill the row exactly.

Qt's icon mode leaves a ragged gap at the right edge when the width is not a multiple of the tile
size; here the column count follows from the preferred tile size and the tiles grow to fill the row,
as in most photo browsers. Only visible tiles are painted (and only they ask for thumbnails).
"""

from __future__ import annotations

from PySide6.QtCore import Qt
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
