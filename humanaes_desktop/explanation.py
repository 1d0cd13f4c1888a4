"""The "why" of the detail panel: signed bars that add up to the shown score's difference from the folder.

It draws a `humanaes_core.attribution.Explanation` group by group: the overall split over its three
inputs, the detailed assessment over Face, Appearance and Environment, then Face and Appearance over
their own parts. Every bar is a share of the same number (shown overall − folder average), on one
scale, so bars under Face and bars under Overall mean the same amount of score. The technical names
(heads, the vote) live in the tooltips.
"""

from __future__ import annotations

from PySide6.QtCore import QEvent, QPointF, QRectF, Qt
from PySide6.QtGui import QFontMetrics, QPainter, QPen
from PySide6.QtWidgets import QSizePolicy, QToolTip, QWidget

from humanaes_core.attribution import NODE_TOOLTIPS, VOTER_INPUTS, Explanation
from humanaes_core.schema import BY_KEY

from . import theme
from .widgets import font_like, short_name, sign_colour, signed

#: The groups drawn, top to bottom: (node key, title).
GROUPS: tuple[tuple[str, str], ...] = (
    ("overall", "Overall"),
    ("expert", "Detailed assessment"),
    ("facial_aesthetic", "Face"),
    ("general_appearance_aesthetic", "Appearance"),
)


def _members(group: str) -> tuple[str, ...]:
    """The rows under a group: the vote's three inputs under Overall, a dimension's children."""
    return VOTER_INPUTS if group == "overall" else BY_KEY["overall" if group == "expert" else group].children


def node_label(node: Explanation) -> str:
    """A row's name: the photographer's name of a vote input, a dimension's short name."""
    return node.name if node.key not in BY_KEY else short_name(node.key)


def node_tooltip(node: Explanation) -> str:
    """What a row means, with its technical name and numbers."""
    what = NODE_TOOLTIPS.get(node.key)
    if what is None:
        dim = BY_KEY[node.key]
        what = f"{dim.letter} · {dim.name} (expert head)."
    return (
        f"{what}\nThis photo {node.value:.3f}, folder average {node.reference:.3f}; moves the overall by "
        f"{signed(node.total)}.\nShares are Owen values (Shapley values within the hierarchy's groups), "
        "so each group adds up to the row it explains."
    )


class ExplanationView(QWidget):
    """Signed bars per group of the explanation tree; a tooltip on each row says what it is."""

    ROW = 21
    HEADER = 28

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._explanation: Explanation | None = None
        self._rows: list[tuple[QRectF, Explanation]] = []
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        rows = sum(len(_members(key)) for key, _ in GROUPS)
        self.setFixedHeight(rows * self.ROW + len(GROUPS) * (self.HEADER + 6))

    def set_explanation(self, explanation: Explanation | None) -> None:
        self._explanation = explanation
        self.update()

    def explanation(self) -> Explanation | None:
        return self._explanation

    def contributions(self) -> dict[str, dict[str, float]]:
        """{group: {member: what it adds to the overall's difference}} as drawn."""
        if self._explanation is None:
            return {}
        out = {}
        for key, _ in GROUPS:
            node = self._explanation.find(key)
            if node is not None:
                out[key] = {k: c.total for k, c in node.children.items()}
        return out

    def event(self, event: QEvent) -> bool:
        if event.type() == QEvent.Type.ToolTip:
            pos = QPointF(event.pos())  # type: ignore[attr-defined]
            hit = next((node for rect, node in self._rows if rect.contains(pos)), None)
            if hit is None:
                QToolTip.hideText()
            else:
                QToolTip.showText(event.globalPos(), node_tooltip(hit), self)  # type: ignore[attr-defined]
            return True
        return super().event(event)

    def paintEvent(self, _event: object) -> None:
        p = QPainter(self)
        p.setRenderHint(QPainter.RenderHint.Antialiasing)
        self._rows = []
        root = self._explanation
        if root is None:
            p.setPen(theme.MUTED)
            p.drawText(
                self.rect().adjusted(4, 0, -4, 0),
                Qt.AlignmentFlag.AlignTop | Qt.TextFlag.TextWordWrap,
                "The why appears once this photo and some others in the folder are scored.",
            )
            p.end()
            return
        normal, bold = self.font(), font_like(self.font(), bold=True)
        fm = QFontMetrics(normal)
        name_w = min(fm.horizontalAdvance("Detailed assessment") + 22, self.width() * 0.5)
        value_w = fm.horizontalAdvance("+0.000") + 8
        scale = max((abs(n.total) for n in root.walk() if n is not root), default=0.0)
        scale = max(scale, 1e-6)
        y = 0.0
        for key, title in GROUPS:
            group = root.find(key)
            if group is None:
                continue
            y = self._paint_header(p, group, title, y, bold, normal)
            y = self._paint_rows(p, group, y, name_w, value_w, scale, fm)
            y += 6
        p.end()

    def _paint_header(self, p: QPainter, group: Explanation, title: str, y: float, bold, normal) -> float:
        head = QRectF(4, y + 4, self.width() - 8, self.HEADER - 6)
        p.setFont(bold)
        p.setPen(theme.TEXT)
        p.drawText(head, Qt.AlignmentFlag.AlignVCenter | Qt.AlignmentFlag.AlignLeft, title)
        p.setFont(normal)
        total = signed(group.total)
        tw = QFontMetrics(normal).horizontalAdvance(total)
        p.setPen(theme.MUTED)
        p.drawText(
            head.adjusted(0, 0, -tw, 0),
            Qt.AlignmentFlag.AlignVCenter | Qt.AlignmentFlag.AlignRight,
            f"{group.value:.2f} vs {group.reference:.2f}  ",
        )
        p.setPen(sign_colour(group.total))
        p.drawText(head, Qt.AlignmentFlag.AlignVCenter | Qt.AlignmentFlag.AlignRight, total)
        self._rows.append((head, group))
        return y + self.HEADER

    def _paint_rows(
        self, p: QPainter, group: Explanation, y: float, name_w: float, value_w: float, scale: float, fm
    ) -> float:
        axis_left, axis_right = name_w, self.width() - value_w - 4
        mid = (axis_left + axis_right) / 2
        half = (axis_right - axis_left) / 2 - 2
        p.setPen(QPen(theme.BORDER, 1))
        p.drawLine(QPointF(mid, y), QPointF(mid, y + len(group.children) * self.ROW))
        for child in group.children.values():
            row = QRectF(0, y, self.width(), self.ROW)
            self._rows.append((row, child))
            p.setPen(theme.SECONDARY_TEXT)
            p.drawText(
                QRectF(14, y, name_w - 18, self.ROW),
                Qt.AlignmentFlag.AlignVCenter | Qt.AlignmentFlag.AlignLeft,
                fm.elidedText(node_label(child), Qt.TextElideMode.ElideRight, int(name_w - 18)),
            )
            length = half * abs(child.total) / scale
            colour = sign_colour(child.total)
            bar = QRectF(mid if child.total >= 0 else mid - length, y + 5, max(length, 1.0), self.ROW - 10)
            p.setPen(Qt.PenStyle.NoPen)
            p.setBrush(colour)
            p.drawRoundedRect(bar, 2, 2)
            p.setPen(colour)
            p.drawText(
                QRectF(axis_right, y, value_w, self.ROW),
                Qt.AlignmentFlag.AlignVCenter | Qt.AlignmentFlag.AlignRight,
                signed(child.total),
            )
            y += self.ROW
        return y
