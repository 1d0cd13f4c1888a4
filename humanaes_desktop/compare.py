"""The compare view: the frames of one burst side by side, each with its score, decision and 12-dim card.

Choosing the keeper of a burst is a comparison, not a series of separate judgements, so the members
are shown together: picture, overall score and level, stars and flag, and the 12 dimensions as compact
bars (the best frame is marked: open, sharp eyes first, then the score). ← → move between frames; P, X,
U and 0–5 work on the chosen frame as everywhere else; Esc goes back to the grid.

When the frames have faces, each column also shows them at 100 % with their verdicts (`faces`): the
wheel zooms and a drag pans every face of every frame at once, so a blink or a soft eye shows up by
comparison.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from PySide6.QtCore import QPointF, QRectF, Qt, Signal
from PySide6.QtGui import QFont, QFontMetrics, QKeyEvent, QMouseEvent, QPainter, QPen, QPixmap
from PySide6.QtWidgets import QWidget

from humanaes_core.store import Flag

from . import theme
from .faces import FaceCrops, FaceZoom, FaceZoomInput, paint_face_row
from .painting import paint_chip, paint_fitted, paint_flag_badge, paint_score_pill, paint_stars
from .photos import Photo
from .widgets import paint_mini_card

COLUMN_MIN = 240  # narrower than this and the mini card's bars stop being readable
HEADER = 34
FOOTER = 30
INFO = 36
CARD_ROW = 16
FACE_ROW = 150  # the faces of a frame at 100 %, with their verdicts
FACE_ROWS_GROUP = 240  # taller for group photos: the faces are what the frames are compared on


class CompareView(QWidget):
    """Painted columns, one per burst member; as many as fit, paged around the chosen one."""

    closed = Signal()
    current_changed = Signal(object)  # Photo

    def __init__(self, pixmap_for: Callable[[Photo], QPixmap | None], parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self._pixmap_for = pixmap_for
        self._members: list[Photo] = []
        self._best: Photo | None = None
        self._current = 0
        self._columns: list[tuple[int, QRectF]] = []  # (member index, rect) painted last
        self.face_crops: FaceCrops | None = None
        self.zoom: FaceZoom | None = None
        self._face_cells: list[QRectF] = []  # every face painted last: wheel and drag act there
        self.zoom_input = FaceZoomInput(self, lambda: self.zoom, lambda: self._face_cells)

    def show_faces(self, crops: FaceCrops, zoom: FaceZoom) -> None:
        """Show each frame's faces from `crops`, at the `zoom` shared with the detail panel."""
        self.face_crops, self.zoom = crops, zoom
        crops.ready.connect(lambda _path: self.update())
        zoom.changed.connect(self.update)

    def _face_height(self) -> int:
        """Room for each frame's faces: none without faces, more for a group."""
        if self.face_crops is None:
            return 0
        most = max(
            (len(m.card.faces) for m in self._members if m.card is not None and m.card.faces), default=0
        )
        return 0 if most == 0 else FACE_ROW if most <= 2 else FACE_ROWS_GROUP

    # ------------------------------------------------------------------ content

    def set_members(self, members: Sequence[Photo], best: Photo | None, current: Photo | None = None) -> None:
        self._members = list(members)
        self._best = best
        self._current = self._members.index(current) if current in self._members else 0
        self.update()

    def members(self) -> list[Photo]:
        return list(self._members)

    @property
    def best(self) -> Photo | None:
        return self._best

    def current(self) -> Photo | None:
        return self._members[self._current] if self._members else None

    def set_current(self, index: int) -> None:
        if not self._members:
            return
        index = min(max(index, 0), len(self._members) - 1)
        if index != self._current:
            self._current = index
            self.update()
            self.current_changed.emit(self._members[index])

    def columns_shown(self) -> range:
        """The members on screen: a page of as many as fit, containing the current one."""
        n = len(self._members)
        fit = max(1, min(n, int(self.width() // COLUMN_MIN)))
        start = (self._current // fit) * fit
        start = max(0, min(start, n - fit))
        return range(start, start + fit)

    # ------------------------------------------------------------------ input

    def keyPressEvent(self, event: QKeyEvent) -> None:
        key = event.key()
        if key in (Qt.Key.Key_Right, Qt.Key.Key_Down, Qt.Key.Key_Tab):
            self.set_current(self._current + 1)
        elif key in (Qt.Key.Key_Left, Qt.Key.Key_Up, Qt.Key.Key_Backtab):
            self.set_current(self._current - 1)
        elif key == Qt.Key.Key_Home:
            self.set_current(0)
        elif key == Qt.Key.Key_End:
            self.set_current(len(self._members) - 1)
        elif key in (Qt.Key.Key_Escape, Qt.Key.Key_Return, Qt.Key.Key_Enter):
            self.closed.emit()
        else:
            super().keyPressEvent(event)

    def focusNextPrevChild(self, _next: bool) -> bool:
        return False  # Tab moves between frames, not out of the view

    def mousePressEvent(self, event: QMouseEvent) -> None:
        # a press on a face also starts a pan (`zoom_input`); the click still chooses the frame
        for index, rect in self._columns:
            if rect.contains(event.position()):
                self.set_current(index)
                return
        super().mousePressEvent(event)

    # ------------------------------------------------------------------ painting

    def paintEvent(self, _event: object) -> None:
        p = QPainter(self)
        p.setRenderHint(QPainter.RenderHint.Antialiasing)
        p.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform)
        p.fillRect(self.rect(), theme.BASE)
        self._columns = []
        self._face_cells = []
        if not self._members:
            p.setPen(theme.MUTED)
            p.drawText(self.rect(), Qt.AlignmentFlag.AlignCenter, "No burst to compare")
            p.end()
            return
        shown = self.columns_shown()
        width = (self.width() - 12) / len(shown)
        body = QRectF(6, 6, self.width() - 12, self.height() - FOOTER - 6)
        for col, index in enumerate(shown):
            rect = QRectF(body.left() + col * width + 3, body.top(), width - 6, body.height())
            self._columns.append((index, rect))
            self._paint_column(p, rect, self._members[index], index == self._current)
        p.setPen(theme.MUTED)
        footer = QRectF(12, self.height() - FOOTER, self.width() - 24, FOOTER)
        n = len(self._members)
        where = f"frames {shown.start + 1}–{shown.stop} of {n}" if len(shown) < n else f"burst of {n}"
        p.drawText(footer, Qt.AlignmentFlag.AlignVCenter | Qt.AlignmentFlag.AlignLeft, where)
        keys = "← → choose  ·  P pick  ·  X reject  ·  U unflag  ·  0–5 stars  ·  Esc back"
        if self._face_cells and self.zoom is not None:
            keys = f"faces {self.zoom.text()}: wheel zoom, drag pan  ·  " + keys
        fm = QFontMetrics(p.font())
        room = int(footer.width() - fm.horizontalAdvance(where) - 24)  # the hint yields, never overlaps
        keys = fm.elidedText(keys, Qt.TextElideMode.ElideLeft, room)
        p.drawText(footer, Qt.AlignmentFlag.AlignVCenter | Qt.AlignmentFlag.AlignRight, keys)
        p.end()

    def _paint_column(self, p: QPainter, rect: QRectF, photo: Photo, current: bool) -> None:
        p.setPen(QPen(theme.ACCENT, 2) if current else QPen(theme.BORDER, 1))
        p.setBrush(theme.COLUMN_CURRENT if current else theme.PANEL)
        p.drawRoundedRect(rect, 8, 8)
        inner = rect.adjusted(10, 8, -10, -10)
        bold = QFont(self.font())
        bold.setBold(True)
        p.setFont(bold)
        fm = QFontMetrics(bold)
        tag = "best" if photo is self._best else ""
        tag_w = fm.horizontalAdvance(tag) + 16 if tag else 0
        header = QRectF(inner.left(), inner.top(), inner.width(), HEADER - 8)
        p.setPen(theme.TEXT)
        p.drawText(
            header.adjusted(0, 0, -tag_w - 4, 0),
            Qt.AlignmentFlag.AlignVCenter | Qt.AlignmentFlag.AlignLeft,
            fm.elidedText(photo.path.name, Qt.TextElideMode.ElideMiddle, int(header.width() - tag_w - 4)),
        )
        if tag:
            pill = QRectF(header.right() - tag_w, header.top() + 3, tag_w, header.height() - 6)
            paint_chip(p, pill, tag, theme.ACCENT, fill=None, border=theme.ACCENT)

        card_h = CARD_ROW * 12
        face_h = self._face_height()
        # As tall as the frames need (a portrait frame a little taller than wide), the rest left below.
        image_h = min(inner.height() - HEADER - INFO - card_h - face_h - 14, inner.width() * 1.25)
        image = QRectF(inner.left(), inner.top() + HEADER, inner.width(), max(60.0, image_h))
        self._paint_image(p, image, photo)
        if face_h and self.face_crops is not None and self.zoom is not None:
            faces = [] if photo.card is None or photo.card.faces is None else photo.card.faces
            row = QRectF(inner.left(), image.bottom() + 6, inner.width(), face_h - 6)
            p.setFont(self.font())
            self._face_cells += paint_face_row(p, row, faces, self.face_crops.get(photo), self.zoom)
            image = QRectF(image.left(), image.top(), image.width(), image.height() + face_h)

        info = QRectF(inner.left(), image.bottom() + 6, inner.width(), INFO - 6)
        x = info.left()
        if photo.card is not None:
            x += paint_score_pill(p, QPointF(x, info.top() + 4), info.height() - 8, photo.card, 18) + 10
        else:
            p.setPen(theme.MUTED)
            label = "skipped" if photo.error is not None else "not scored yet"
            p.drawText(QRectF(x, info.top(), 120, info.height()), Qt.AlignmentFlag.AlignVCenter, label)
            x += 120
        flag = photo.flag
        if flag != Flag.NONE:
            paint_flag_badge(p, QPointF(x, info.center().y() - 10), flag == Flag.PICK)
            x += 26
        paint_stars(p, QPointF(x, info.center().y()), photo.stars, 12.0, total=5)

        card = QRectF(inner.left(), info.bottom() + 8, inner.width(), card_h)
        p.setFont(self.font())
        paint_mini_card(p, card, None if photo.card is None else photo.card.dims)

    def _paint_image(self, p: QPainter, area: QRectF, photo: Photo) -> None:
        pixmap = self._pixmap_for(photo)
        if pixmap is None or pixmap.isNull():
            p.setPen(Qt.PenStyle.NoPen)
            p.setBrush(theme.BASE)
            p.drawRoundedRect(area, 4, 4)
            return
        target = paint_fitted(p, pixmap, area, radius=4)
        if photo.flag == Flag.REJECT:
            # Marked, not dimmed: frames are compared for sharpness, so a rejected one stays fully visible.
            p.save()
            p.setPen(QPen(theme.REJECT, 3))
            p.setBrush(Qt.BrushStyle.NoBrush)
            p.drawRoundedRect(target.adjusted(1.5, 1.5, -1.5, -1.5), 4, 4)
            p.restore()
            fm = QFontMetrics(p.font())
            label = "rejected"
            w = fm.horizontalAdvance(label) + 16
            chip = QRectF(target.right() - w - 8, target.top() + 8, w, fm.height() + 6)
            paint_chip(p, chip, label, theme.WHITE, fill=theme.REJECT)
