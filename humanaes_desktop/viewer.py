"""The full-screen view: one photo as large as the screen allows, its score along the bottom edge.

Arrow keys step through the grid's current order (sorted and filtered), Esc or Enter go back; the
culling keys (P, X, U, 0–5) work here too, and the strip shows the photo's flag, stars and what the checks
found (eyes closed, soft or missed focus, misfire).
"""

from __future__ import annotations

from PySide6.QtCore import QPointF, QRectF, Qt, Signal
from PySide6.QtGui import QFont, QFontMetrics, QKeyEvent, QPainter, QPixmap
from PySide6.QtWidgets import QWidget

from humanaes_core.schema import KEYS
from humanaes_core.store import Flag

from . import theme
from .painting import paint_chip, paint_fitted, paint_flag_badge, paint_score_pill, paint_stars
from .photos import Photo
from .verdicts import photo_badges
from .widgets import chips_text


class FullView(QWidget):
    """Black background, the photo fitted, an information strip painted over the bottom."""

    step = Signal(int)  # -1 previous, +1 next
    closed = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.photo: Photo | None = None
        self._pixmap: QPixmap | None = None
        self._position = ""

    def set_photo(self, photo: Photo | None, pixmap: QPixmap | None, position: str = "") -> None:
        self.photo, self._pixmap, self._position = photo, pixmap, position
        self.update()

    def set_pixmap(self, pixmap: QPixmap | None) -> None:
        self._pixmap = pixmap
        self.update()

    def keyPressEvent(self, event: QKeyEvent) -> None:
        key = event.key()
        if key in (Qt.Key.Key_Right, Qt.Key.Key_Down, Qt.Key.Key_PageDown):
            self.step.emit(1)
        elif key in (Qt.Key.Key_Left, Qt.Key.Key_Up, Qt.Key.Key_PageUp):
            self.step.emit(-1)
        elif key in (Qt.Key.Key_Escape, Qt.Key.Key_Return, Qt.Key.Key_Enter):
            self.closed.emit()
        else:
            super().keyPressEvent(event)

    def mouseDoubleClickEvent(self, _event: object) -> None:
        self.closed.emit()

    def paintEvent(self, _event: object) -> None:
        p = QPainter(self)
        p.setRenderHint(QPainter.RenderHint.Antialiasing)
        p.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform)
        p.fillRect(self.rect(), theme.VIEWER_BACKGROUND)
        strip_h = 54
        area = QRectF(0, 0, self.width(), self.height() - strip_h)
        if self._pixmap is not None and not self._pixmap.isNull():
            paint_fitted(p, self._pixmap, area)
        else:
            p.setPen(theme.MUTED)
            p.drawText(area, Qt.AlignmentFlag.AlignCenter, "Loading…" if self.photo else "")
        strip = QRectF(0, self.height() - strip_h, self.width(), strip_h)
        p.fillRect(strip, theme.VIEWER_STRIP)
        if self.photo is None:
            p.end()
            return
        bold = QFont(self.font())
        bold.setBold(True)
        bold.setPointSizeF(bold.pointSizeF() + 2)
        p.setFont(bold)
        x = 18.0
        card = self.photo.card
        if card is not None:
            x += paint_score_pill(p, QPointF(x, strip.top() + 12), strip_h - 24, card, 24) + 16
        p.setPen(theme.TEXT)
        name_w = QFontMetrics(bold).horizontalAdvance(self.photo.path.name)
        p.drawText(
            QRectF(x, strip.top(), name_w + 4, strip_h), Qt.AlignmentFlag.AlignVCenter, self.photo.path.name
        )
        x += name_w + 20
        if self.photo.flag != Flag.NONE:
            paint_flag_badge(p, QPointF(x, strip.center().y() - 11), self.photo.flag == Flag.PICK, 22.0)
            x += 32
        if self.photo.stars:
            x += paint_stars(p, QPointF(x, strip.center().y()), self.photo.stars, 16.0) + 18
        p.setFont(self.font())
        for badge in photo_badges(card):  # eyes closed, soft or missed focus, misfire: as on the tiles
            colour = theme.VERDICT_COLOURS[badge.severity]
            width = QFontMetrics(self.font()).horizontalAdvance(badge.text) + 16
            paint_chip(p, QRectF(x, strip.center().y() - 11, width, 22), badge.text, colour, border=colour)
            x += width + 8
        p.setPen(theme.MUTED)
        if self.photo.error is not None:
            info = f"skipped: {self.photo.error}"
        elif card is not None and len(card.dims) == len(KEYS):
            info = chips_text(card.dims, [k for k in KEYS if k != "overall"])
        else:
            info = "not scored yet"
        right = f"{self._position}    ← → next · Esc back"
        rw = QFontMetrics(self.font()).horizontalAdvance(right) + 18
        p.drawText(
            QRectF(x, strip.top(), max(0.0, self.width() - x - rw), strip_h),
            Qt.AlignmentFlag.AlignVCenter,
            QFontMetrics(self.font()).elidedText(
                info, Qt.TextElideMode.ElideRight, int(self.width() - x - rw)
            ),
        )
        p.drawText(
            QRectF(self.width() - rw, strip.top(), rw - 12, strip_h),
            Qt.AlignmentFlag.AlignVCenter | Qt.AlignmentFlag.AlignRight,
            right,
        )
        p.end()
