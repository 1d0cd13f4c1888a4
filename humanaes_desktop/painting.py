"""Painting helpers shared by the grid, the compare view, the full-screen view and the detail panel.

One function per look, so a photo, its score pill, a dimmed reject, a star or a badge is drawn the
same way wherever it appears. Colours come from `theme`; nothing here does I/O.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from PySide6.QtCore import QPointF, QRectF, Qt
from PySide6.QtGui import QColor, QFontMetrics, QPainter, QPainterPath, QPen, QPixmap, QPolygonF

from . import theme

if TYPE_CHECKING:
    from humanaes_core.scoring import ScoreCard


def fitted(pixmap: QPixmap, area: QRectF) -> QRectF:
    """Where `pixmap` goes when fitted into `area`, aspect kept, centred."""
    size = pixmap.size().scaled(area.size().toSize(), Qt.AspectRatioMode.KeepAspectRatio)
    return QRectF(
        area.left() + (area.width() - size.width()) / 2,
        area.top() + (area.height() - size.height()) / 2,
        size.width(),
        size.height(),
    )


def paint_fitted(
    p: QPainter, pixmap: QPixmap, area: QRectF, radius: float = 0.0, dimmed: bool = False
) -> QRectF:
    """Draw `pixmap` fitted into `area` with rounded corners (`radius`), dimmed for a reject;
    returns where it went."""
    target = fitted(pixmap, area)
    p.save()
    if radius:
        clip = QPainterPath()
        clip.addRoundedRect(target, radius, radius)
        p.setClipPath(clip)
    p.drawPixmap(target, pixmap, QRectF(pixmap.rect()))
    if dimmed:
        dim_reject(p, target, radius)
    p.restore()
    return target


def dim_reject(p: QPainter, rect: QRectF, radius: float = 4.0) -> None:
    """Lay the reject dimming over `rect`, as editors show rejects: still visible, clearly out."""
    p.save()
    p.setPen(Qt.PenStyle.NoPen)
    p.setBrush(theme.REJECT_DIM)
    p.drawRoundedRect(rect, radius, radius)
    p.restore()


def score_text(card: ScoreCard) -> str:
    """'0.73  good': the overall score and its level, as every score pill shows it."""
    return f"{card.dims['overall']:.2f}  {card.level}"


def level_pill(p: QPainter, rect: QRectF, score: float | None, text: str) -> None:
    """A rounded label in the level's colour with dark text, as on tiles and the panel header."""
    p.setPen(Qt.PenStyle.NoPen)
    p.setBrush(theme.level_colour(score))
    p.drawRoundedRect(rect, rect.height() / 2, rect.height() / 2)
    p.setPen(theme.ON_LEVEL)
    p.drawText(rect, Qt.AlignmentFlag.AlignCenter, text)


def paint_score_pill(p: QPainter, top_left: QPointF, height: float, card: ScoreCard, padding: float) -> float:
    """The card's score pill (`score_text` on its level's colour) in the painter's font; returns its width."""
    text = score_text(card)
    width = QFontMetrics(p.font()).horizontalAdvance(text) + padding
    level_pill(p, QRectF(top_left.x(), top_left.y(), width, height), card.dims["overall"], text)
    return width


def paint_chip(
    p: QPainter,
    rect: QRectF,
    text: str,
    colour: QColor,
    fill: QColor | None = theme.OVERLAY,
    border: QColor | None = None,
) -> None:
    """A rounded label over a photo: `text` in `colour` on `fill` (None: transparent), maybe outlined."""
    p.setPen(QPen(border, 1.2) if border is not None else Qt.PenStyle.NoPen)
    p.setBrush(fill if fill is not None else Qt.BrushStyle.NoBrush)
    p.drawRoundedRect(rect, rect.height() / 2, rect.height() / 2)
    p.setPen(colour)
    p.drawText(rect, Qt.AlignmentFlag.AlignCenter, text)


def paint_bar(
    p: QPainter, rect: QRectF, value: float | None, colour: QColor, reference: float | None = None
) -> None:
    """A rounded track, a fill up to `value` in [0, 1], and a tick where the reference is."""
    radius = rect.height() / 2
    p.setPen(Qt.PenStyle.NoPen)
    p.setBrush(theme.RAISED)
    p.drawRoundedRect(rect, radius, radius)
    if value is not None:
        fill = QRectF(rect)
        fill.setWidth(max(rect.height(), rect.width() * min(max(value, 0.0), 1.0)))
        p.setBrush(colour)
        p.drawRoundedRect(fill, radius, radius)
    if reference is not None:
        x = rect.left() + rect.width() * min(max(reference, 0.0), 1.0)
        p.setPen(QPen(theme.REFERENCE, 1.5))
        p.drawLine(QPointF(x, rect.top() - 2), QPointF(x, rect.bottom() + 2))


def star_path(centre: QPointF, radius: float) -> QPainterPath:
    """A five-pointed star (drawn, not a font glyph: every platform and font shows the same star)."""
    path = QPainterPath()
    for i in range(10):
        r = radius if i % 2 == 0 else radius * 0.45
        a = -math.pi / 2 + i * math.pi / 5
        point = QPointF(centre.x() + r * math.cos(a), centre.y() + r * math.sin(a))
        if i == 0:
            path.moveTo(point)
        else:
            path.lineTo(point)
    path.closeSubpath()
    return path


def stars_width(count: int, size: float) -> float:
    return count * (size + 2)


def paint_stars(p: QPainter, origin: QPointF, filled: int, size: float, total: int = 0) -> float:
    """`filled` gold stars from `origin` (left edge, vertical centre), then outlines up to `total`;
    returns the width used."""
    p.save()
    p.setRenderHint(QPainter.RenderHint.Antialiasing)
    n = max(filled, total)
    for i in range(n):
        centre = QPointF(origin.x() + i * (size + 2) + size / 2, origin.y())
        if i < filled:
            p.setPen(Qt.PenStyle.NoPen)
            p.setBrush(theme.STAR)
        else:
            p.setPen(QPen(theme.FAINT, 1))
            p.setBrush(Qt.BrushStyle.NoBrush)
        p.drawPath(star_path(centre, size / 2))
    p.restore()
    return stars_width(n, size)


def paint_flag_badge(p: QPainter, top_left: QPointF, picked: bool, size: float = 20.0) -> QRectF:
    """A round badge: a white tick on green for a pick, a white cross on red for a reject."""
    rect = QRectF(top_left.x(), top_left.y(), size, size)
    p.save()
    p.setRenderHint(QPainter.RenderHint.Antialiasing)
    p.setPen(QPen(theme.BADGE_OUTLINE, 1.5))
    p.setBrush(theme.PICK if picked else theme.REJECT)
    p.drawEllipse(rect)
    pen = QPen(theme.WHITE, max(1.6, size / 10))
    pen.setCapStyle(Qt.PenCapStyle.RoundCap)
    pen.setJoinStyle(Qt.PenJoinStyle.RoundJoin)
    p.setPen(pen)
    c, k = rect.center(), size * 0.22
    if picked:
        tick = QPolygonF(
            [
                QPointF(c.x() - k, c.y()),
                QPointF(c.x() - k * 0.25, c.y() + k * 0.8),
                QPointF(c.x() + k, c.y() - k),
            ]
        )
        p.drawPolyline(tick)
    else:
        p.drawLine(QPointF(c.x() - k, c.y() - k), QPointF(c.x() + k, c.y() + k))
        p.drawLine(QPointF(c.x() - k, c.y() + k), QPointF(c.x() + k, c.y() - k))
    p.restore()
    return rect
