"""Painted widgets of the detail panel: hierarchy bars, radar chart, head scores, preview.

Painted with QPainter (QtCharts is not part of PySide6-Essentials); each widget takes plain values,
so it can be tested and reused without a model.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from PySide6.QtCore import QPointF, QRectF, QSize, Qt
from PySide6.QtGui import QColor, QFont, QFontMetrics, QPainter, QPen, QPixmap, QPolygonF
from PySide6.QtWidgets import QSizePolicy, QWidget

from humanaes_core.schema import BY_KEY, KEYS, score_to_level

from . import theme
from .painting import level_pill, paint_bar, paint_fitted, paint_flag_badge, paint_stars

#: The hierarchy as shown: (key, depth). Overall ← F ← A–E, J ← G–I, K.
HIERARCHY: tuple[tuple[str, int], ...] = (
    ("overall", 0),
    ("facial_aesthetic", 1),
    ("facial_brightness", 2),
    ("facial_feature_clarity", 2),
    ("facial_skin_tone", 2),
    ("facial_structure", 2),
    ("facial_contour_clarity", 2),
    ("general_appearance_aesthetic", 1),
    ("outfit", 2),
    ("body_shape", 2),
    ("looks", 2),
    ("environment", 1),
)
SHORT_NAMES = {
    "general_appearance_aesthetic": "General Appearance",
    "facial_contour_clarity": "Contour Clarity",
    "facial_feature_clarity": "Feature Clarity",
}


#: Names for the compact card, where the hierarchy says what "Facial" would.
MINI_NAMES = {
    "overall": "Overall",
    "facial_aesthetic": "Face",
    "facial_brightness": "Brightness",
    "facial_feature_clarity": "Feature Clarity",
    "facial_skin_tone": "Skin Tone",
    "facial_structure": "Structure",
    "facial_contour_clarity": "Contour Clarity",
    "general_appearance_aesthetic": "Appearance",
}


def mini_name(key: str) -> str:
    """The shortest clear name of a dimension, where space is tight (radar rim, chips, tiles)."""
    return MINI_NAMES.get(key) or short_name(key)


def short_name(key: str) -> str:
    return SHORT_NAMES.get(key, BY_KEY[key].name)


def font_like(base: QFont, size_delta: float = 0.0, bold: bool = False) -> QFont:
    f = QFont(base)
    if size_delta:
        f.setPointSizeF(max(6.0, f.pointSizeF() + size_delta))
    f.setBold(bold)
    return f


class HierarchyView(QWidget):
    """Overall ← Facial aesthetic ← A–E, General appearance ← G–I, Environment: score, word and bar each."""

    ROW = 24

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._dims: Mapping[str, float] | None = None
        self._reference: Mapping[str, float] | None = None
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.setMinimumHeight(self.ROW * len(HIERARCHY) + 4)

    def set_values(
        self, dims: Mapping[str, float] | None, reference: Mapping[str, float] | None = None
    ) -> None:
        self._dims, self._reference = dims, reference
        self.update()

    def values(self) -> dict[str, float]:
        return dict(self._dims or {})

    def sizeHint(self) -> QSize:
        return QSize(380, self.ROW * len(HIERARCHY) + 4)

    def paintEvent(self, _event: object) -> None:
        p = QPainter(self)
        p.setRenderHint(QPainter.RenderHint.Antialiasing)
        w = self.width()
        normal, bold, small = (
            self.font(),
            font_like(self.font(), bold=True),
            font_like(self.font(), -1.5, bold=True),
        )
        fm = QFontMetrics(normal)
        word_w, score_w = fm.horizontalAdvance("excellent") + 8, fm.horizontalAdvance("0.000") + 10
        bar_w = max(60.0, min(140.0, w * 0.24))
        bar_x = w - word_w - score_w - bar_w - 4
        for i, (key, depth) in enumerate(HIERARCHY):
            y = 2 + i * self.ROW
            value = None if self._dims is None else self._dims.get(key)
            colour = theme.level_colour(value)
            x = 4 + depth * 16
            if depth:  # tree guide
                p.setPen(QPen(theme.BORDER, 1))
                p.drawLine(QPointF(x - 9, y + self.ROW / 2), QPointF(x - 3, y + self.ROW / 2))
            badge = QRectF(x, y + 3, 18, self.ROW - 6)
            p.setPen(Qt.PenStyle.NoPen)
            p.setBrush(theme.RAISED if depth == 2 else theme.PARENT_BADGE)
            p.drawRoundedRect(badge, 4, 4)
            p.setFont(small)
            p.setPen(theme.MUTED if depth == 2 else theme.TEXT)
            p.drawText(badge, Qt.AlignmentFlag.AlignCenter, BY_KEY[key].letter)
            p.setFont(bold if depth < 2 else normal)
            p.setPen(theme.TEXT if depth < 2 else theme.SECONDARY_TEXT)
            name_rect = QRectF(x + 24, y, bar_x - x - 30, self.ROW)
            name = "Overall" if key == "overall" else short_name(key)
            p.drawText(
                name_rect,
                Qt.AlignmentFlag.AlignVCenter | Qt.AlignmentFlag.AlignLeft,
                QFontMetrics(p.font()).elidedText(name, Qt.TextElideMode.ElideRight, int(name_rect.width())),
            )
            ref = None if self._reference is None else self._reference.get(key)
            paint_bar(p, QRectF(bar_x, y + self.ROW / 2 - 4, bar_w, 8), value, colour, ref)
            p.setFont(bold if depth < 2 else normal)
            p.setPen(theme.TEXT)
            text = "–" if value is None else f"{value:.3f}"
            p.drawText(
                QRectF(bar_x + bar_w, y, score_w, self.ROW),
                Qt.AlignmentFlag.AlignVCenter | Qt.AlignmentFlag.AlignRight,
                text,
            )
            p.setFont(normal)
            p.setPen(colour)
            p.drawText(
                QRectF(w - word_w, y, word_w, self.ROW),
                Qt.AlignmentFlag.AlignVCenter | Qt.AlignmentFlag.AlignRight,
                "" if value is None else score_to_level(value),
            )
        p.end()


class RadarChart(QWidget):
    """The 12 dimensions on 12 spokes; rings at the level boundaries; the reference dashed."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._values: Mapping[str, float] | None = None
        self._reference: Mapping[str, float] | None = None
        self.setMinimumSize(300, 300)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)

    def set_values(
        self, values: Mapping[str, float] | None, reference: Mapping[str, float] | None = None
    ) -> None:
        self._values, self._reference = values, reference
        self.update()

    def values(self) -> dict[str, float]:
        return dict(self._values or {})

    def sizeHint(self) -> QSize:
        return QSize(340, 320)

    def _polygon(self, centre: QPointF, radius: float, values: Mapping[str, float]) -> QPolygonF:
        poly = QPolygonF()
        for i, key in enumerate(KEYS):
            a = -math.pi / 2 + 2 * math.pi * i / len(KEYS)
            r = radius * min(max(values.get(key, 0.0), 0.0), 1.0)
            poly.append(QPointF(centre.x() + r * math.cos(a), centre.y() + r * math.sin(a)))
        return poly

    def paintEvent(self, _event: object) -> None:
        p = QPainter(self)
        p.setRenderHint(QPainter.RenderHint.Antialiasing)
        side = min(self.width(), self.height())
        centre = QPointF(self.width() / 2, self.height() / 2)
        radius = side / 2 - 48  # room for the dimension names around the rim
        for ring in (0.2, 0.4, 0.6, 0.8, 1.0):
            p.setPen(QPen(theme.BORDER, 1))
            p.setBrush(Qt.BrushStyle.NoBrush)
            ring_poly = self._polygon(centre, radius * ring, dict.fromkeys(KEYS, 1.0))
            p.drawPolygon(ring_poly)
        small = font_like(self.font(), -1.0, bold=True)
        p.setFont(small)
        for i, key in enumerate(KEYS):
            a = -math.pi / 2 + 2 * math.pi * i / len(KEYS)
            end = QPointF(centre.x() + radius * math.cos(a), centre.y() + radius * math.sin(a))
            p.setPen(QPen(theme.BORDER, 1))
            p.drawLine(centre, end)
            label = QPointF(
                centre.x() + (radius + 30) * math.cos(a), centre.y() + (radius + 18) * math.sin(a)
            )
            value = None if self._values is None else self._values.get(key)
            p.setPen(theme.level_colour(value) if value is not None else theme.MUTED)
            p.drawText(
                QRectF(label.x() - 45, label.y() - 15, 90, 30),
                Qt.AlignmentFlag.AlignCenter | Qt.TextFlag.TextWordWrap,
                mini_name(key),
            )
        if self._reference:
            pen = QPen(theme.REFERENCE, 1.2, Qt.PenStyle.DashLine)
            p.setPen(pen)
            p.setBrush(Qt.BrushStyle.NoBrush)
            p.drawPolygon(self._polygon(centre, radius, self._reference))
        if self._values:
            colour = theme.level_colour(self._values.get("overall"))
            fill = QColor(colour)
            fill.setAlpha(60)
            p.setPen(QPen(colour, 2))
            p.setBrush(fill)
            poly = self._polygon(centre, radius, self._values)
            p.drawPolygon(poly)
            p.setBrush(colour)
            p.setPen(Qt.PenStyle.NoPen)
            for pt in poly:
                p.drawEllipse(pt, 2.5, 2.5)
        p.end()


class HeadsView(QWidget):
    """The four head scores side by side: LM, regression, expert, MetaVoter."""

    ROW = 22
    HEADS = (("lm", "LM"), ("regression", "Regression"), ("expert", "Expert"), ("metavoter", "MetaVoter"))

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._heads: Mapping[str, float] | None = None
        self.setFixedHeight(self.ROW * len(self.HEADS) + 4)

    def set_values(self, heads: Mapping[str, float] | None) -> None:
        self._heads = heads
        self.update()

    def values(self) -> dict[str, float]:
        return dict(self._heads or {})

    def paintEvent(self, _event: object) -> None:
        p = QPainter(self)
        p.setRenderHint(QPainter.RenderHint.Antialiasing)
        fm = QFontMetrics(self.font())
        label_w = fm.horizontalAdvance("Regression") + 16
        score_w = fm.horizontalAdvance("0.000") + 10
        for i, (key, label) in enumerate(self.HEADS):
            y = 2 + i * self.ROW
            value = None if self._heads is None else self._heads.get(key)
            p.setPen(theme.MUTED)
            p.drawText(QRectF(4, y, label_w, self.ROW), Qt.AlignmentFlag.AlignVCenter, label)
            bar = QRectF(label_w, y + self.ROW / 2 - 4, self.width() - label_w - score_w - 4, 8)
            paint_bar(p, bar, value, theme.level_colour(value))
            p.setPen(theme.TEXT)
            p.drawText(
                QRectF(self.width() - score_w, y, score_w - 4, self.ROW),
                Qt.AlignmentFlag.AlignVCenter | Qt.AlignmentFlag.AlignRight,
                "–" if value is None else f"{value:.3f}",
            )
        p.end()


class ImageView(QWidget):
    """A pixmap fitted into the widget, centred; a message when there is none yet."""

    def __init__(self, parent: QWidget | None = None, background: QColor | None = None) -> None:
        super().__init__(parent)
        self._pixmap: QPixmap | None = None
        self._message = ""
        self._background = background
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)

    def set_pixmap(self, pixmap: QPixmap | None, message: str = "") -> None:
        self._pixmap, self._message = pixmap, message
        self.update()

    def pixmap(self) -> QPixmap | None:
        return self._pixmap

    def paintEvent(self, _event: object) -> None:
        p = QPainter(self)
        p.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform)
        p.setRenderHint(QPainter.RenderHint.Antialiasing)
        if self._background is not None:
            p.fillRect(self.rect(), self._background)
        if self._pixmap is None or self._pixmap.isNull():
            p.setPen(theme.MUTED)
            p.drawText(self.rect(), Qt.AlignmentFlag.AlignCenter | Qt.TextFlag.TextWordWrap, self._message)
            p.end()
            return
        paint_fitted(p, self._pixmap, QRectF(self.rect()), radius=6)
        p.end()


def paint_mini_card(p: QPainter, rect: QRectF, dims: Mapping[str, float] | None) -> None:
    """The 12 dimensions as compact rows (letter, name when there is room, bar, value), in the panel's
    hierarchy order: overall first, children indented under their parent."""
    row_h = rect.height() / len(HIERARCHY)
    small = font_like(p.font(), -1.5)
    p.save()
    p.setFont(small)
    fm = QFontMetrics(small)
    value_w = fm.horizontalAdvance("0.00") + 6
    name_w = rect.width() * 0.45 if rect.width() >= 200 else 0.0
    for i, (key, depth) in enumerate(HIERARCHY):
        y = rect.top() + i * row_h
        value = None if dims is None else dims.get(key)
        x = rect.left() + depth * 8
        p.setPen(theme.TEXT if depth < 2 else theme.MUTED)
        p.drawText(QRectF(x, y, 14, row_h), Qt.AlignmentFlag.AlignVCenter, BY_KEY[key].letter)
        if name_w:
            name = mini_name(key)
            width = int(rect.left() + name_w - x - 16)
            p.drawText(
                QRectF(x + 14, y, width, row_h),
                Qt.AlignmentFlag.AlignVCenter,
                fm.elidedText(name, Qt.TextElideMode.ElideRight, width),
            )
        left = rect.left() + (name_w or 18)
        bar_h = min(6.0, row_h * 0.45)
        bar = QRectF(left, y + (row_h - bar_h) / 2, rect.right() - value_w - left, bar_h)
        paint_bar(p, bar, value, theme.level_colour(value))
        p.setPen(theme.TEXT)
        p.drawText(
            QRectF(rect.right() - value_w, y, value_w, row_h),
            Qt.AlignmentFlag.AlignVCenter | Qt.AlignmentFlag.AlignRight,
            "–" if value is None else f"{value:.2f}",
        )
    p.restore()


class ScoreBadge(QWidget):
    """The big overall score and its level word at the top of the panel."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._score: float | None = None
        self._caption = ""
        self.setFixedHeight(46)

    def set_score(self, score: float | None, caption: str = "") -> None:
        self._score, self._caption = score, caption
        self.update()

    def caption(self) -> str:
        return self._caption

    def paintEvent(self, _event: object) -> None:
        p = QPainter(self)
        p.setRenderHint(QPainter.RenderHint.Antialiasing)
        big = font_like(self.font(), 12, bold=True)
        p.setFont(big)
        colour = theme.level_colour(self._score)
        text = "–" if self._score is None else f"{self._score:.2f}"
        p.setPen(colour)
        width = QFontMetrics(big).horizontalAdvance(text)
        p.drawText(QRectF(2, 0, width + 4, self.height()), Qt.AlignmentFlag.AlignVCenter, text)
        x = width + 14
        if self._score is not None:
            p.setFont(font_like(self.font(), 0, bold=True))
            word = score_to_level(self._score)
            ww = QFontMetrics(p.font()).horizontalAdvance(word) + 20
            level_pill(p, QRectF(x, self.height() / 2 - 11, ww, 22), self._score, word)
            x += ww + 10
        p.setFont(self.font())
        p.setPen(theme.MUTED)
        p.drawText(
            QRectF(x, 0, self.width() - x, self.height()),
            Qt.AlignmentFlag.AlignVCenter | Qt.TextFlag.TextWordWrap,
            self._caption,
        )
        p.end()


def signed(x: float, digits: int = 3) -> str:
    """'+0.012' / '-0.034' (as in the explanation sentence), and no '-0.000' for values that round to 0."""
    text = f"{x:+.{digits}f}"
    return f"{0:.{digits}f}" if float(text) == 0.0 else text


def sign_colour(x: float, digits: int = 3) -> QColor:
    """Green for a gain, red for a loss, neutral for what `signed` shows as 0: a zero moved nothing."""
    value = float(f"{x:.{digits}f}")
    if value == 0.0:
        return theme.MUTED
    return theme.POSITIVE if value > 0 else theme.NEGATIVE


def format_duration(seconds: float | None) -> str:
    """'45 s', '3 min', '1 h 20 min' for the status bar's time left."""
    if seconds is None or seconds != seconds or seconds < 0:
        return "–"
    if seconds < 60:
        return f"{max(1, round(seconds))} s"
    minutes = round(seconds / 60)
    if minutes < 60:
        return f"{minutes} min"
    return f"{minutes // 60} h {minutes % 60} min"


def chips_text(values: Mapping[str, float], keys: Sequence[str]) -> str:
    """'Brightness 0.61 · Feature Clarity 0.42 · …' for compact overlays."""
    return "  ·  ".join(f"{mini_name(k)} {values[k]:.2f}" for k in keys if k in values)


#: Who made a decision (`humanaes_core.origins.Origin`), as the detail panel says it.
DECISION_ORIGINS = {"photographer": "by you", "editor": "by an editor (XMP)", "humanaes": "by auto-cull"}


class DecisionView(QWidget):
    """The photo's stars (five, filled up to the rating), pick/reject badge and who decided."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._stars = 0
        self._flag = 0
        self._origin: str | None = None
        self.setFixedHeight(28)

    def set_decision(self, stars: int, flag: int, origin: str | None) -> None:
        """`flag`: 1 pick, -1 reject, 0 none (humanaes_core.store.decisions.Flag values); `origin`: who."""
        self._stars, self._flag, self._origin = stars, int(flag), origin
        self.update()

    def _who(self) -> str:
        if not self._origin or not (self._flag or self._stars):
            return ""
        return DECISION_ORIGINS.get(self._origin, self._origin)

    def text(self) -> str:
        """What the view shows, in words (tests, accessibility)."""
        what = {1: "Picked", -1: "Rejected", 0: "Not flagged"}[self._flag]
        stars = f"{self._stars} star{'s' if self._stars != 1 else ''}" if self._stars else "no stars"
        who = self._who()
        return f"{what}, {stars}" + (f", {who}" if who else "")

    def paintEvent(self, _event: object) -> None:
        p = QPainter(self)
        p.setRenderHint(QPainter.RenderHint.Antialiasing)
        y = self.height() / 2
        x = 2 + paint_stars(p, QPointF(2, y), self._stars, 15.0, total=5) + 12
        if self._flag:
            paint_flag_badge(p, QPointF(x, y - 10), self._flag > 0)
            x += 26
        who = self._who()
        label = {1: "Picked", -1: "Rejected", 0: "Not flagged"}[self._flag] + (f"  ·  {who}" if who else "")
        p.setPen(theme.TEXT if self._flag else theme.MUTED)
        p.drawText(
            QRectF(x, 0, self.width() - x, self.height()),
            Qt.AlignmentFlag.AlignVCenter,
            QFontMetrics(self.font()).elidedText(label, Qt.TextElideMode.ElideRight, int(self.width() - x)),
        )
        p.end()
