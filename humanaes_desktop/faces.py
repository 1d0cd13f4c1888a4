"""Faces at 100 %: every face of a photo cropped from the full-resolution image, each with its verdict
("Eyes closed", "Soft focus"…), in the detail panel (`FaceStrip`) and in the compare view's columns
(`paint_face_row`).

Whether the bride blinked or focus landed on the eyes can only be judged at 100 %, and across the
frames of a burst only side by side at the same zoom, on the same spot: one `FaceZoom` (scale and pan)
is shared by every face shown, so a wheel turn or a drag on one face moves all of them, as Photo
Mechanic's and darktable's culling views do. Each crop is centred on its own face's eyes, so the same
pan shows the same part of every face even when the subject moved between frames.

Crops come from `FaceCrops`, which decodes the full-resolution photo off the UI thread (a
`background.Lane`; newest request first, requests long superseded dropped) and keeps only the regions
around the faces in memory.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import QEvent, QObject, QPointF, QRectF, QSize, Qt, Signal
from PySide6.QtGui import (
    QFont,
    QFontMetrics,
    QHelpEvent,
    QImage,
    QMouseEvent,
    QPainter,
    QPaintEvent,
    QPen,
    QResizeEvent,
    QWheelEvent,
)
from PySide6.QtWidgets import QSizePolicy, QToolTip, QWidget

from . import theme
from .background import Lane
from .thumbnails import pil_to_qimage
from .verdicts import PROBLEM, UNKNOWN, face_tip, face_verdicts

if TYPE_CHECKING:
    from humanaes_core.checks import Face

    from .photos import Photo

#: A face cell in the detail panel: 200 × 120 photo pixels at 100 %. Wide, because eyes sit side by
#: side: the cell holds both eyes of a face about 400 px across (a head-and-shoulders portrait at 12 MP).
CELL_W, CELL_H = 200, 120
ASPECT = CELL_W / CELL_H
VERDICT_LINE = 15
#: The zoom steps a wheel click moves between (as editors step: whole fractions, never 51 %).
ZOOM_STEPS = (0.25, 0.33, 0.5, 0.67, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, 8.0)
CROP_HALF_MIN, CROP_HALF_MAX = 256, 1024  # the region kept around each face's eyes, in photo pixels


@dataclass(frozen=True)
class FaceCrop:
    """The part of the full-resolution photo around one face: `image` starts at `origin` (photo pixels);
    `anchor` is where a 100 % view centres (between the eyes)."""

    image: QImage
    origin: tuple[int, int]
    anchor: tuple[float, float]


def face_anchor(face: Face) -> tuple[float, float]:
    """Between the eyes when the landmarks have them, else the middle of the box."""
    eyes = [face.landmarks[k] for k in ("left_eye", "right_eye") if k in face.landmarks]
    if eyes:
        return sum(x for x, _ in eyes) / len(eyes), sum(y for _, y in eyes) / len(eyes)
    x, y, w, h = face.box
    return x + w / 2, y + h / 2


def crop_faces(path: Path, faces: Sequence[Face]) -> list[QImage | FaceCrop]:
    """On a lane thread: decode `path` upright at full resolution and cut the region around each face."""
    from humanaes_core.model import load_image

    img = load_image(path)  # full resolution (a RAW file's embedded preview only when it is full size)
    crops: list[QImage | FaceCrop] = []
    for face in faces:
        ax, ay = face_anchor(face)
        half = min(max(CROP_HALF_MIN, face.size), CROP_HALF_MAX)
        left, top = max(0, int(ax - half)), max(0, int(ay - half))
        right, bottom = min(img.width, int(ax + half)), min(img.height, int(ay + half))
        if right <= left or bottom <= top:  # a face outside this decode: nothing to show
            crops.append(QImage())
            continue
        crops.append(FaceCrop(pil_to_qimage(img.crop((left, top, right, bottom))), (left, top), (ax, ay)))
    return crops


class FaceZoom(QObject):
    """The zoom and pan shared by every face on screen: `scale` 1.0 is 100 % (one photo pixel per device
    pixel, also on a high-density screen); `pan` is in photo pixels from each face's anchor. `changed`
    after every change."""

    changed = Signal()

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.scale = 1.0
        self.pan = QPointF(0.0, 0.0)

    def step(self, steps: int) -> None:
        """Zoom in (`steps` > 0) or out by that many `ZOOM_STEPS`, stopping at either end."""
        nearest = min(range(len(ZOOM_STEPS)), key=lambda i: abs(ZOOM_STEPS[i] - self.scale))
        scale = ZOOM_STEPS[min(max(nearest + steps, 0), len(ZOOM_STEPS) - 1)]
        if scale != self.scale:
            self.scale = scale
            self.changed.emit()

    def pan_by(self, dx: float, dy: float, dpr: float = 1.0) -> None:
        """Drag by (dx, dy) logical pixels of a screen with `dpr` device pixels each: the faces follow
        the pointer."""
        self.pan -= QPointF(dx, dy) * dpr / self.scale
        self.changed.emit()

    def reset(self) -> None:
        """Back to 100 %, centred on the eyes."""
        self.scale, self.pan = 1.0, QPointF(0.0, 0.0)
        self.changed.emit()

    def text(self) -> str:
        return f"{self.scale * 100:.0f} %"

    def view(self, crop: FaceCrop, cell: QRectF, dpr: float = 1.0) -> tuple[QRectF, QRectF]:
        """(source rectangle in the crop's image, target rectangle in `cell`) for this zoom and pan, on a
        screen with `dpr` device pixels per logical pixel."""
        scale = self.scale / dpr  # logical pixels per photo pixel
        w, h = cell.width() / scale, cell.height() / scale
        cx, cy = crop.anchor[0] + self.pan.x(), crop.anchor[1] + self.pan.y()
        # On whole photo pixels: at 100 % each screen pixel is one photo pixel, never a blend of two.
        seen = QRectF(round(cx - w / 2), round(cy - h / 2), w, h)
        ox, oy = crop.origin
        have = QRectF(ox, oy, crop.image.width(), crop.image.height()).intersected(seen)
        if have.isEmpty():
            return QRectF(), QRectF()
        target = QRectF(
            cell.left() + (have.left() - seen.left()) * scale,
            cell.top() + (have.top() - seen.top()) * scale,
            have.width() * scale,
            have.height() * scale,
        )
        return have.translated(-ox, -oy), target


class FaceZoomInput(QObject):
    """The mouse on the faces of one widget drives the shared `FaceZoom`: the wheel zooms, a drag pans,
    a double-click goes back to 100 %. One handler for the detail panel's strip and the compare view,
    installed as the widget's event filter: it takes the events over a face (`cells()`, as last painted)
    and leaves the rest, and a press, to the widget (the compare view chooses the frame clicked)."""

    def __init__(
        self, widget: QWidget, zoom: Callable[[], FaceZoom | None], cells: Callable[[], Sequence[QRectF]]
    ) -> None:
        super().__init__(widget)
        self._widget, self._zoom, self._cells = widget, zoom, cells
        self._drag: QPointF | None = None
        widget.installEventFilter(self)

    def _on_face(self, event: QMouseEvent | QWheelEvent) -> FaceZoom | None:
        """The zoom, if `event` happened over a face."""
        zoom = self._zoom()
        if zoom is None or not any(c.contains(event.position()) for c in self._cells()):
            return None
        return zoom

    def eventFilter(self, _watched: QObject, event: QEvent) -> bool:
        kind = event.type()
        if kind == QEvent.Type.Wheel and isinstance(event, QWheelEvent) and (zoom := self._on_face(event)):
            zoom.step(1 if event.angleDelta().y() > 0 else -1)
            return True
        if kind == QEvent.Type.MouseButtonPress and isinstance(event, QMouseEvent):
            self._drag = event.position() if self._on_face(event) else None
            return False
        if kind == QEvent.Type.MouseMove and isinstance(event, QMouseEvent) and self._drag is not None:
            zoom = self._zoom()
            if zoom is not None:
                delta = event.position() - self._drag
                self._drag = event.position()
                zoom.pan_by(delta.x(), delta.y(), self._widget.devicePixelRatioF())
                return True
        if kind == QEvent.Type.MouseButtonRelease:
            self._drag = None
        if (
            kind == QEvent.Type.MouseButtonDblClick
            and isinstance(event, QMouseEvent)
            and (zoom := self._on_face(event))
        ):
            zoom.reset()
            return True
        return False


class FaceCrops(QObject):
    """Face crops of photos, made off the UI thread and kept for the last `memory_items` photos.

    `get` answers from memory or returns None and queues the photo; `ready(path)` says it arrived.
    """

    ready = Signal(str)

    def __init__(self, memory_items: int = 24, max_queue: int = 8, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._memory: OrderedDict[tuple, list[QImage | FaceCrop]] = OrderedDict()
        self._memory_items = memory_items
        self._queue: deque[tuple[tuple, Path, list[Face]]] = deque()
        self._max_queue = max_queue
        self._running: tuple | None = None
        self._lane = Lane("humanaes-faces", 1, self)

    @staticmethod
    def key(photo: Photo) -> tuple:
        faces = [] if photo.card is None or photo.card.faces is None else photo.card.faces
        return (str(photo.path), tuple(f.box for f in faces))

    def get(self, photo: Photo) -> list[QImage | FaceCrop] | None:
        """The photo's crops, one per face (an empty QImage where none could be cut), or None for now."""
        if photo.card is None or not photo.card.faces:
            return []
        key = self.key(photo)
        crops = self._memory.get(key)
        if crops is not None:
            self._memory.move_to_end(key)
            return crops
        if key != self._running and all(k != key for k, _, _ in self._queue):
            self._queue.append((key, photo.path, list(photo.card.faces)))
            while len(self._queue) > self._max_queue:
                self._queue.popleft()  # asked for long ago: the photographer has moved on
            self._pump()
        return None

    def clear(self) -> None:
        """Another folder: forget everything, drop what is queued or running."""
        self._lane.invalidate()
        self._queue.clear()
        self._memory.clear()
        self._running = None

    def wait(self, msecs: int = 5000) -> bool:
        return self._lane.wait(msecs)

    def _pump(self) -> None:
        if self._running is not None or not self._queue:
            return
        key, path, faces = self._queue.pop()  # newest first: what is on screen now
        self._running = key
        self._lane.submit(
            crop_faces,
            path,
            faces,
            done=lambda crops, key=key: self._loaded(key, crops),
            failed=lambda _error, key=key: self._loaded(key, None),
            ended=self._ended,
        )

    def _loaded(self, key: tuple, crops: list[QImage | FaceCrop] | None) -> None:
        """Keep the crops; a photo that cannot be decoded keeps empty images ("no image"), so it is not
        decoded again and again."""
        self._memory[key] = [QImage() for _ in key[1]] if crops is None else crops
        while len(self._memory) > self._memory_items:
            self._memory.popitem(last=False)
        self.ready.emit(key[0])

    def _ended(self) -> None:
        self._running = None
        self._pump()


def verdict_height(font: QFont) -> float:
    """Room under a face cell for its verdict lines (eyes, focus, gaze)."""
    return 3 * max(VERDICT_LINE, QFontMetrics(font).height())


def paint_face(
    p: QPainter, cell: QRectF, face: Face, crop: QImage | FaceCrop | None, zoom: FaceZoom, lines: bool = True
) -> None:
    """One face at the shared zoom in `cell` (framed red for a problem), its verdicts below when `lines`."""
    verdicts = face_verdicts(face)
    p.save()
    p.setPen(Qt.PenStyle.NoPen)
    p.setBrush(theme.BASE)
    p.drawRect(cell)
    if isinstance(crop, FaceCrop):
        source, target = zoom.view(crop, cell, p.device().devicePixelRatioF())
        if not source.isEmpty():
            p.setClipRect(cell)
            p.drawImage(target, crop.image, source)
            p.setClipping(False)
    else:
        p.setPen(theme.MUTED)
        p.drawText(cell, Qt.AlignmentFlag.AlignCenter, "…" if crop is None else "no image")
    worst = theme.REJECT if any(v.severity == PROBLEM for v in verdicts) else theme.BORDER
    p.setPen(QPen(worst, 2 if worst == theme.REJECT else 1))
    p.setBrush(Qt.BrushStyle.NoBrush)
    p.drawRect(cell.adjusted(0.5, 0.5, -0.5, -0.5))
    if lines:
        fm = QFontMetrics(p.font())
        line_h = max(VERDICT_LINE, fm.height())
        y = cell.bottom() + 3
        for verdict in verdicts:
            if verdict.severity == UNKNOWN and verdict is not verdicts[0]:
                continue  # "can't tell" once is enough
            p.setPen(theme.VERDICT_COLOURS[verdict.severity])
            text = fm.elidedText(verdict.text, Qt.TextElideMode.ElideRight, int(cell.width()))
            p.drawText(QRectF(cell.left(), y, cell.width(), line_h), Qt.AlignmentFlag.AlignLeft, text)
            y += line_h
    p.restore()


def face_cells(area: QRectF, count: int, gap: float, row_height: float) -> list[QRectF]:
    """`count` cells of CELL_W × CELL_H (narrower when a row would not hold one), wrapped into rows of
    `row_height`, on whole pixels."""
    width = int(min(CELL_W, area.width()))
    per_row = max(1, int((area.width() + gap) // (width + gap)))
    left, top = round(area.left()), round(area.top())
    return [
        QRectF(left + (i % per_row) * (width + gap), top + (i // per_row) * row_height, width, CELL_H)
        for i in range(count)
    ]


def reading_order(faces: Sequence[Face]) -> list[int]:
    """Indexes of `faces` as one reads a group: rows top to bottom (a face joins a row when its middle
    is within half a face of the row's first one), each row left to right. The detector's order can
    change from frame to frame; this one lines the same group up face for face across a burst."""
    rows: list[tuple[float, list[int]]] = []
    for i in sorted(range(len(faces)), key=lambda i: faces[i].box[1] + faces[i].box[3] / 2):
        middle = faces[i].box[1] + faces[i].box[3] / 2
        if rows and abs(middle - rows[-1][0]) < faces[i].box[3] / 2:
            rows[-1][1].append(i)
        else:
            rows.append((middle, [i]))
    return [i for _, row in rows for i in sorted(row, key=lambda i: faces[i].box[0])]


def grid_cells(area: QRectF, count: int, line_h: float, gap: int = 4) -> list[QRectF]:
    """`count` cells filling `area` in the number of rows that makes them largest, `line_h` left under
    each row for the verdicts; one face gets the whole width, several are never taller than wide."""
    best: tuple[float, list[QRectF]] = (-1.0, [])
    for rows in range(1, count + 1):
        per_row = -(-count // rows)
        width = int((area.width() - gap * (per_row - 1)) / per_row)
        height = int((area.height() - gap * (rows - 1)) / rows - line_h)
        if count > 1:
            height = min(height, width)
        if width < 8 or height < 8:
            continue
        if width * height > best[0]:
            left, top = round(area.left()), round(area.top())
            cells = [
                QRectF(
                    left + (i % per_row) * (width + gap),
                    top + (i // per_row) * (height + line_h + gap),
                    width,
                    height,
                )
                for i in range(count)
            ]
            best = (width * height, cells)
    return best[1]


def paint_face_row(
    p: QPainter,
    area: QRectF,
    faces: Sequence[Face],
    crops: Sequence[QImage | FaceCrop] | None,
    zoom: FaceZoom,
) -> list[QRectF]:
    """A compare column's faces, in reading order, filling `area` (cells shrink to fit: still 100 %,
    less of each face); returns the cells painted."""
    if not faces:
        return []
    line_h = verdict_height(p.font()) * 2 / 3  # eyes and focus; the column is narrow
    cells = grid_cells(area, len(faces), line_h)
    for i, cell in zip(reading_order(faces), cells, strict=False):
        paint_face(p, cell, faces[i], None if crops is None or i >= len(crops) else crops[i], zoom)
    return cells


class FaceStrip(QWidget):
    """The detail panel's faces: every face of the current photo at 100 % with its verdict, wrapped into
    rows. Wheel zooms, drag pans, double-click goes back to 100 %: on every face shown anywhere."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Preferred)
        self.setMouseTracking(True)
        self.crops: FaceCrops | None = None
        self.zoom: FaceZoom | None = None
        self.photo: Photo | None = None
        self._cells: list[QRectF] = []
        self._shown: list[Face] = []  # the face in each cell (reading order)
        self.zoom_input = FaceZoomInput(self, lambda: self.zoom, lambda: self._cells)
        self.hide()

    def set_source(self, crops: FaceCrops, zoom: FaceZoom) -> None:
        """Where crops come from and the zoom shared with the compare view."""
        self.crops, self.zoom = crops, zoom
        crops.ready.connect(self._crop_ready)
        zoom.changed.connect(self.update)

    def faces(self) -> list[Face]:
        card = None if self.photo is None else self.photo.card
        return [] if card is None or card.faces is None else list(card.faces)

    def set_photo(self, photo: Photo | None) -> None:
        self.photo = photo
        faces = self.faces()
        self.setVisible(bool(faces) and self.crops is not None)
        self._fit_height()
        self.update()

    def _fit_height(self) -> None:
        """As tall as the rows of faces at the current width (the panel scrolls, it never squeezes)."""
        self.setMinimumHeight(self.heightForWidth(self.width()))
        self.updateGeometry()

    def _title_height(self) -> float:
        return QFontMetrics(self.font()).height() + 8

    def _row_height(self) -> float:
        return CELL_H + verdict_height(self.font()) + 6

    def hasHeightForWidth(self) -> bool:
        return True

    def heightForWidth(self, width: int) -> int:
        n = len(self.faces())
        per_row = max(1, int((width + 6) // (min(CELL_W, width) + 6)))
        rows = -(-n // per_row) if n else 0
        return int(self._title_height() + rows * self._row_height())

    def sizeHint(self) -> QSize:
        return QSize(CELL_W * 2, self.heightForWidth(CELL_W * 2 + 6))

    def minimumSizeHint(self) -> QSize:
        return QSize(CELL_W, self.heightForWidth(self.width() or CELL_W * 2))

    def resizeEvent(self, event: QResizeEvent) -> None:
        super().resizeEvent(event)
        self._fit_height()

    def paintEvent(self, _event: QPaintEvent) -> None:
        faces = self.faces()
        if not faces or self.zoom is None or self.crops is None or self.photo is None:
            return
        p = QPainter(self)
        p.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, self.zoom.scale < 1)
        title = QRectF(0, 0, self.width(), self._title_height())
        bold = QFont(self.font())
        bold.setBold(True)
        p.setFont(bold)
        p.setPen(theme.MUTED)
        n = len(faces)
        p.drawText(
            title,
            Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter,
            f"{n} FACE{'S' if n != 1 else ''}  ·  {self.zoom.text()}",
        )
        p.setFont(self.font())
        p.drawText(
            title, Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter, "wheel zoom · drag pan"
        )
        crops = self.crops.get(self.photo)
        area = QRectF(0, title.bottom(), self.width(), self.height() - title.bottom())
        self._cells = face_cells(area, n, 6, self._row_height())
        order = reading_order(faces)
        self._shown = [faces[i] for i in order]
        for i, cell in zip(order, self._cells, strict=True):
            paint_face(p, cell, faces[i], None if crops is None else crops[i], self.zoom)
        p.end()

    def event(self, event: QEvent) -> bool:
        if isinstance(event, QHelpEvent) and event.type() == QEvent.Type.ToolTip:
            face = self._face_at(QPointF(event.pos()))
            if face is None:
                QToolTip.hideText()
            else:
                tips = [face_tip(face), *(v.tip for v in face_verdicts(face))]
                QToolTip.showText(event.globalPos(), "\n".join(tips), self)
            return True
        return super().event(event)

    def _face_at(self, position: QPointF) -> Face | None:
        for face, cell in zip(self._shown, self._cells, strict=False):
            if cell.contains(position):
                return face
        return None

    def _crop_ready(self, path: str) -> None:
        if self.photo is not None and str(self.photo.path) == path:
            self.update()
