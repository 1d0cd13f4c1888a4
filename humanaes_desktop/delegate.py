"""How one grid tile is painted: thumbnail, overall score pill in the level's colour, file name, and the
culling state: stars, a pick or reject badge (rejects dimmed), and "×N" on a collapsed burst.

Everything is painted from data already in memory (the Photo and an in-memory thumbnail), so
painting 10,000 tiles' worth of scrolling costs no I/O.
"""

from __future__ import annotations

from PySide6.QtCore import QModelIndex, QPersistentModelIndex, QPointF, QRectF, QSize, Qt
from PySide6.QtGui import QColor, QFont, QFontMetrics, QPainter, QPainterPath, QPen, QPixmap
from PySide6.QtWidgets import QStyle, QStyledItemDelegate, QStyleOptionViewItem, QWidget

from humanaes_core.schema import BY_KEY
from humanaes_core.store import Flag

from . import theme
from .photos import GroupRole, Photo, PhotoRole
from .widgets import level_pill, paint_flag_badge, paint_stars, stars_width

NAME_STRIP = 26
PAD = 6
STAR_SIZE = 11.0


class TileDelegate(QStyledItemDelegate):
    """Paints tiles of `tile_size` × (`tile_size` + name strip)."""

    def __init__(self, tile_size: int = 184, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.tile_size = tile_size
        self.sort_key = "overall"

    def sizeHint(self, _option: QStyleOptionViewItem, _index: QModelIndex | QPersistentModelIndex) -> QSize:
        return QSize(self.tile_size, self.tile_size + NAME_STRIP)

    def paint(
        self, p: QPainter, option: QStyleOptionViewItem, index: QModelIndex | QPersistentModelIndex
    ) -> None:
        photo: Photo | None = index.data(PhotoRole)
        if photo is None:
            return
        pixmap = index.data(Qt.ItemDataRole.DecorationRole)
        r = QRectF(option.rect).adjusted(3, 3, -3, -3)
        selected = bool(option.state & QStyle.StateFlag.State_Selected)
        hover = bool(option.state & QStyle.StateFlag.State_MouseOver)
        p.save()
        p.setRenderHint(QPainter.RenderHint.Antialiasing)
        p.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform)
        p.setPen(QPen(theme.ACCENT, 2) if selected else Qt.PenStyle.NoPen)
        p.setBrush(QColor("#2f3136") if selected else (QColor("#26272b") if hover else theme.PANEL))
        p.drawRoundedRect(r, 8, 8)

        image_area = QRectF(r.left() + PAD, r.top() + PAD, r.width() - 2 * PAD, r.height() - NAME_STRIP - PAD)
        if photo.error is not None:
            self._paint_skipped(p, image_area, photo.error)
        elif isinstance(pixmap, QPixmap) and not pixmap.isNull():
            size = pixmap.size().scaled(image_area.size().toSize(), Qt.AspectRatioMode.KeepAspectRatio)
            target = QRectF(
                image_area.left() + (image_area.width() - size.width()) / 2,
                image_area.top() + (image_area.height() - size.height()) / 2,
                size.width(),
                size.height(),
            )
            clip = QPainterPath()
            clip.addRoundedRect(target, 4, 4)
            p.save()
            p.setClipPath(clip)
            p.drawPixmap(target, pixmap, QRectF(pixmap.rect()))
            p.restore()
        else:
            p.setPen(Qt.PenStyle.NoPen)
            p.setBrush(theme.BASE)
            p.drawRoundedRect(image_area, 4, 4)

        self._paint_scores(p, image_area, photo)
        flag = photo.flag
        if flag == Flag.REJECT:  # dimmed, as editors show rejects: still visible, clearly out
            p.setPen(Qt.PenStyle.NoPen)
            p.setBrush(QColor(16, 16, 18, 150))
            p.drawRoundedRect(image_area, 4, 4)
        if flag != Flag.NONE:
            paint_flag_badge(p, QPointF(image_area.left() + 6, image_area.top() + 6), flag == Flag.PICK)
        members = index.data(GroupRole)
        if isinstance(members, int) and members > 1:
            self._paint_group_badge(p, image_area, members)

        name_rect = QRectF(
            r.left() + PAD + 2, r.bottom() - NAME_STRIP, r.width() - 2 * PAD - 4, NAME_STRIP - 2
        )
        stars = photo.stars
        if stars:
            width = stars_width(stars, STAR_SIZE)
            paint_stars(p, QPointF(name_rect.right() - width, name_rect.center().y()), stars, STAR_SIZE)
            name_rect.setRight(name_rect.right() - width - 6)
        font = QFont(option.font)
        font.setPointSizeF(max(7.0, font.pointSizeF() - 1))
        p.setFont(font)
        p.setPen(theme.TEXT if selected else theme.MUTED)
        name = photo.path.name
        p.drawText(
            name_rect,
            Qt.AlignmentFlag.AlignVCenter | Qt.AlignmentFlag.AlignLeft,
            QFontMetrics(font).elidedText(name, Qt.TextElideMode.ElideMiddle, int(name_rect.width())),
        )
        p.restore()

    def _paint_scores(self, p: QPainter, area: QRectF, photo: Photo) -> None:
        bold = QFont(p.font())
        bold.setBold(True)
        p.setFont(bold)
        fm = QFontMetrics(bold)
        h = fm.height() + 6
        x, y = area.left() + 6, area.bottom() - h - 6
        if photo.card is None:
            if photo.error is None:
                text = "scoring…"
                w = fm.horizontalAdvance(text) + 16
                p.setPen(Qt.PenStyle.NoPen)
                p.setBrush(QColor(20, 20, 22, 200))
                p.drawRoundedRect(QRectF(x, y, w, h), h / 2, h / 2)
                p.setPen(theme.MUTED)
                p.drawText(QRectF(x, y, w, h), Qt.AlignmentFlag.AlignCenter, text)
            return
        overall = photo.card.dims["overall"]
        text = f"{overall:.2f}  {photo.card.level}"
        w = fm.horizontalAdvance(text) + 16
        level_pill(p, QRectF(x, y, w, h), overall, text)
        key = self.sort_key
        if key in ("overall", "name", "captured"):
            return
        value = photo.sort_value(key)
        if value is None:
            return
        label = (
            BY_KEY[key].letter
            if key in BY_KEY
            else {"lm": "LM", "regression": "Reg", "expert": "Exp"}.get(key[5:], "MV")
        )
        text2 = f"{label} {value:.2f}"
        w2 = fm.horizontalAdvance(text2) + 14
        rect2 = QRectF(area.right() - w2 - 6, y, w2, h)
        p.setPen(Qt.PenStyle.NoPen)
        p.setBrush(QColor(20, 20, 22, 215))
        p.drawRoundedRect(rect2, h / 2, h / 2)
        p.setPen(theme.level_colour(value))
        p.drawText(rect2, Qt.AlignmentFlag.AlignCenter, text2)

    def _paint_group_badge(self, p: QPainter, area: QRectF, members: int) -> None:
        """'×N' in the top-right corner: this tile stands for a burst of N photos."""
        bold = QFont(p.font())
        bold.setBold(True)
        p.setFont(bold)
        fm = QFontMetrics(bold)
        text = f"×{members}"
        h = fm.height() + 6
        w = fm.horizontalAdvance(text) + 14
        rect = QRectF(area.right() - w - 6, area.top() + 6, w, h)
        p.setPen(QPen(theme.ACCENT, 1.2))
        p.setBrush(QColor(20, 20, 22, 220))
        p.drawRoundedRect(rect, h / 2, h / 2)
        p.setPen(theme.TEXT)
        p.drawText(rect, Qt.AlignmentFlag.AlignCenter, text)

    def _paint_skipped(self, p: QPainter, area: QRectF, reason: str) -> None:
        p.setPen(QPen(QColor("#5a2a28"), 1))
        p.setBrush(QColor("#2a1d1d"))
        p.drawRoundedRect(area, 4, 4)
        bold = QFont(p.font())
        bold.setBold(True)
        p.setFont(bold)
        p.setPen(theme.NEGATIVE)
        top = QRectF(area.left() + 8, area.top() + area.height() * 0.25, area.width() - 16, 22)
        p.drawText(top, Qt.AlignmentFlag.AlignCenter, "⚠  skipped")
        normal = QFont(p.font())
        normal.setBold(False)
        normal.setPointSizeF(max(7.0, normal.pointSizeF() - 1))
        p.setFont(normal)
        p.setPen(QColor("#e0b4b0"))
        body = QRectF(area.left() + 8, top.bottom() + 4, area.width() - 16, area.bottom() - top.bottom() - 10)
        p.drawText(
            body, Qt.AlignmentFlag.AlignHCenter | Qt.AlignmentFlag.AlignTop | Qt.TextFlag.TextWordWrap, reason
        )
