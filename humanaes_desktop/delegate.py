"""How one grid tile is painted: thumbnail, overall score pill in the level's colour, file name, and the
culling state: stars, a pick or reject badge (rejects dimmed), "×N" on a collapsed burst, and the
checks' findings ("Eyes closed", "Soft focus", "Missed focus", "Misfire") as badges above the score.

Everything is painted from data already in memory (the Photo and an in-memory thumbnail), so
painting 10,000 tiles' worth of scrolling costs no I/O.
"""

from __future__ import annotations

from PySide6.QtCore import QModelIndex, QPersistentModelIndex, QPointF, QRectF, QSize, Qt
from PySide6.QtGui import QFont, QFontMetrics, QPainter, QPen, QPixmap
from PySide6.QtWidgets import QStyle, QStyledItemDelegate, QStyleOptionViewItem, QWidget

from humanaes_core.schema import BY_KEY
from humanaes_core.store import Flag

from . import theme
from .painting import (
    dim_reject,
    paint_chip,
    paint_fitted,
    paint_flag_badge,
    paint_score_pill,
    paint_stars,
    stars_width,
)
from .photos import HEAD_LABELS, GroupRole, Photo, PhotoRole
from .verdicts import photo_badges
from .widgets import mini_name

NAME_STRIP = 26
PAD = 6
STAR_SIZE = 11.0


class TileDelegate(QStyledItemDelegate):
    """Paints tiles of `tile_size` × (`tile_size` + name strip)."""

    def __init__(self, tile_size: int = 184, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.tile_size = tile_size
        self.sort_key = "overall"
        self.pending_text = "scoring…"  # on tiles not scored yet; "not scored" once scoring cannot go on

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
        p.setBrush(theme.TILE_SELECTED if selected else (theme.TILE_HOVER if hover else theme.PANEL))
        p.drawRoundedRect(r, 8, 8)

        image_area = QRectF(r.left() + PAD, r.top() + PAD, r.width() - 2 * PAD, r.height() - NAME_STRIP - PAD)
        if photo.error is not None:
            self._paint_skipped(p, image_area, photo.error)
        elif isinstance(pixmap, QPixmap) and not pixmap.isNull():
            paint_fitted(p, pixmap, image_area, radius=4)
        else:
            p.setPen(Qt.PenStyle.NoPen)
            p.setBrush(theme.BASE)
            p.drawRoundedRect(image_area, 4, 4)

        flag = photo.flag
        if flag == Flag.REJECT:
            dim_reject(p, image_area)  # the photo only: the score pill and badges above stay legible
        self._paint_scores(p, image_area, photo)
        self._paint_check_badges(p, image_area, photo)
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
                text = self.pending_text
                paint_chip(p, QRectF(x, y, fm.horizontalAdvance(text) + 16, h), text, theme.MUTED)
            return
        paint_score_pill(p, QPointF(x, y), h, photo.card, 16)
        key = self.sort_key
        if key in ("overall", "name", "captured"):
            return
        value = photo.sort_value(key)
        if value is None:
            return
        label = mini_name(key) if key in BY_KEY else HEAD_LABELS[key[5:]]
        text2 = f"{label} {value:.2f}"
        w2 = fm.horizontalAdvance(text2) + 14
        paint_chip(p, QRectF(area.right() - w2 - 6, y, w2, h), text2, theme.level_colour(value))

    def _paint_check_badges(self, p: QPainter, area: QRectF, photo: Photo) -> None:
        """The checks' findings stacked above the score pill, worst first; what does not fit is "+N"."""
        badges = photo_badges(photo.card)
        if not badges:
            return
        font = QFont(p.font())
        font.setBold(True)
        pill_h = QFontMetrics(font).height() + 6  # as `_paint_scores` paints it
        font.setPointSizeF(max(7.0, font.pointSizeF() - 1))
        p.setFont(font)
        fm = QFontMetrics(font)
        h = fm.height() + 4
        room = max(1, int((area.height() - pill_h - 40) // (h + 3)))  # below the flag, above the pill
        shown = badges if len(badges) <= room else badges[: room - 1]
        texts = [(b.text, theme.VERDICT_COLOURS[b.severity]) for b in shown]
        if len(shown) < len(badges):
            texts.append((f"+{len(badges) - len(shown)}", theme.TEXT))
        bottom = area.bottom() - pill_h - 10  # just above the score pill
        for text, colour in texts:
            width = min(fm.horizontalAdvance(text) + 12, area.width() - 12)
            rect = QRectF(area.left() + 6, bottom - h, width, h)
            paint_chip(
                p,
                rect,
                fm.elidedText(text, Qt.TextElideMode.ElideRight, int(width - 8)),
                colour,
                border=colour,
            )
            bottom -= h + 3

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
        paint_chip(p, rect, text, theme.TEXT, border=theme.ACCENT)

    def _paint_skipped(self, p: QPainter, area: QRectF, reason: str) -> None:
        p.setPen(QPen(theme.SKIPPED_BORDER, 1))
        p.setBrush(theme.SKIPPED_FILL)
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
        p.setPen(theme.SKIPPED_TEXT)
        body = QRectF(area.left() + 8, top.bottom() + 4, area.width() - 16, area.bottom() - top.bottom() - 10)
        p.drawText(
            body, Qt.AlignmentFlag.AlignHCenter | Qt.AlignmentFlag.AlignTop | Qt.TextFlag.TextWordWrap, reason
        )
