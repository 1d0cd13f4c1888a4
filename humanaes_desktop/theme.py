"""The dark theme: neutral greys (no colour cast next to photos), one accent, and a colour per level.

Every colour the app paints or styles is a named token here; widgets never spell a colour themselves.
Kept in code rather than a .qss file so an installed wheel needs no package data to look right.
"""

from __future__ import annotations

from PySide6.QtCore import QPointF, QRectF, Qt
from PySide6.QtGui import QColor, QIcon, QPainter, QPainterPath, QPalette, QPen, QPixmap
from PySide6.QtWidgets import QApplication

from humanaes_core.schema import LEVELS, score_to_level

WINDOW = QColor("#1d1e20")
PANEL = QColor("#242528")
BASE = QColor("#17181a")
RAISED = QColor("#2c2d31")
BORDER = QColor("#37383d")
TEXT = QColor("#e6e6e6")
MUTED = QColor("#9a9ca1")
FAINT = QColor("#5f6167")
ACCENT = QColor("#5b9dff")
POSITIVE = QColor("#4cc38a")
NEGATIVE = QColor("#f0645a")
STAR = QColor("#f2c14e")  # star ratings, as editors show them
PICK = QColor("#3fbf7f")
REJECT = QColor("#ef5a50")
WHITE = QColor("#ffffff")
BLACK = QColor("#000000")

# Controls (style sheet and palette)
PRESSED = QColor("#34363b")  # pressed or checked buttons, hovered push buttons
PRESSED_BORDER = QColor("#45474d")
SCROLLBAR = QColor("#3b3d42")
SCROLLBAR_HOVER = QColor("#50535a")
HIGHLIGHTED_TEXT = QColor("#0b0b0c")
BANNER = QColor("#3a2f1c")  # the warm "scoring stopped" banner above the grid
BANNER_BORDER = QColor("#6b5326")
BANNER_TEXT = QColor("#f3dfb5")

# Painted views
TILE_HOVER = QColor("#26272b")
TILE_SELECTED = QColor("#2f3136")
COLUMN_CURRENT = QColor("#2a2b2f")  # the chosen frame in the compare view
OVERLAY = QColor(20, 20, 22, 215)  # dark chips over a photo (pending, sort value, ×N)
REJECT_DIM = QColor(16, 16, 18, 150)  # laid over rejected photos: still visible, clearly out
BADGE_OUTLINE = QColor(15, 15, 17, 200)  # ring around pick/reject badges, readable on any photo
ON_LEVEL = QColor("#111214")  # text on a level-coloured pill
SKIPPED_FILL = QColor("#2a1d1d")  # tiles of files that could not be read
SKIPPED_BORDER = QColor("#5a2a28")
SKIPPED_TEXT = QColor("#e0b4b0")
VIEWER_BACKGROUND = QColor("#0c0c0d")  # full screen: darker than the window, nothing competes
VIEWER_STRIP = QColor("#151618")
REFERENCE = QColor(255, 255, 255, 160)  # folder-average ticks and the radar's dashed outline
PARENT_BADGE = QColor("#3a3c42")  # letter badges of parent dimensions in the hierarchy
SECONDARY_TEXT = QColor("#cfd0d3")  # leaf dimension names: between TEXT and MUTED
ICON_BACKGROUND = QColor("#202124")
CAUTION = QColor("#f0a43c")  # a check's warning: soft focus, one eye closed, looking away

#: A check verdict's severity (`verdicts.FINE` …) → the colour its words are shown in.
VERDICT_COLOURS: dict[str, QColor] = {
    "fine": POSITIVE,
    "caution": CAUTION,
    "problem": REJECT,
    "unknown": MUTED,
}

#: bad → excellent: red, orange, amber, yellow-green, green; all readable on the dark greys.
LEVEL_COLOURS: dict[str, QColor] = {
    "bad": QColor("#ef5a50"),
    "poor": QColor("#f08c3c"),
    "fair": QColor("#e8c547"),
    "good": QColor("#9ccc5a"),
    "excellent": QColor("#3fbf7f"),
}
assert tuple(LEVEL_COLOURS) == LEVELS


def level_colour(score: float | None) -> QColor:
    """The colour of the level a score falls in (grey for 'not scored')."""
    if score is None or score != score:
        return FAINT
    return LEVEL_COLOURS[score_to_level(min(max(score, 0.0), 1.0))]


STYLE_SHEET = f"""
* {{ outline: none; }}
QMainWindow, QDialog {{ background: {WINDOW.name()}; }}
QWidget {{ color: {TEXT.name()}; font-size: 10pt; }}
QToolTip {{ background: {RAISED.name()}; color: {TEXT.name()}; border: 1px solid {BORDER.name()};
    padding: 4px; }}
QMenuBar {{ background: {WINDOW.name()}; }}
QMenuBar::item:selected, QMenu::item:selected {{ background: {RAISED.name()}; }}
QMenu {{ background: {PANEL.name()}; border: 1px solid {BORDER.name()}; padding: 4px; }}
QMenu::item {{ padding: 5px 24px 5px 12px; border-radius: 4px; }}
QMenu::separator {{ height: 1px; background: {BORDER.name()}; margin: 4px 6px; }}
QToolBar {{ background: {WINDOW.name()}; border: none; border-bottom: 1px solid {BORDER.name()};
    padding: 4px 6px; spacing: 6px; }}
QToolBar QLabel {{ color: {MUTED.name()}; padding-left: 6px; }}
QToolButton {{ background: transparent; border: 1px solid transparent; border-radius: 6px;
    padding: 4px 8px; }}
QToolButton:hover {{ background: {RAISED.name()}; border-color: {BORDER.name()}; }}
QToolButton:pressed, QToolButton:checked {{ background: {PRESSED.name()};
    border-color: {PRESSED_BORDER.name()}; }}
QToolButton:disabled {{ color: {FAINT.name()}; }}
QToolButton#levelChip {{ border: 1px solid {BORDER.name()}; padding: 3px 8px; color: {MUTED.name()}; }}
QToolButton#levelChip:checked {{ color: {TEXT.name()}; background: {RAISED.name()}; }}
QPushButton {{ background: {RAISED.name()}; border: 1px solid {BORDER.name()}; border-radius: 6px;
    padding: 5px 14px; }}
QPushButton:hover {{ background: {PRESSED.name()}; }}
QPushButton:default {{ border-color: {ACCENT.name()}; }}
QComboBox, QLineEdit {{ background: {BASE.name()};
    border: 1px solid {BORDER.name()}; border-radius: 6px; padding: 4px 8px; min-height: 18px;
    selection-background-color: {ACCENT.name()}; }}
QComboBox:focus, QLineEdit:focus {{ border-color: {ACCENT.name()}; }}
QComboBox::drop-down {{ border: none; width: 18px; }}
QComboBox QAbstractItemView {{ background: {PANEL.name()}; border: 1px solid {BORDER.name()};
    selection-background-color: {RAISED.name()}; }}
QListView#grid {{ background: {BASE.name()}; border: none; }}
QListWidget {{ background: {BASE.name()}; border: none; }}
QListWidget::item {{ padding: 4px 6px; }}
QListWidget::item:selected {{ background: {RAISED.name()}; }}
QScrollArea, QScrollArea > QWidget > QWidget {{ background: {PANEL.name()}; border: none; }}
QSplitter::handle {{ background: {BORDER.name()}; }}
QSplitter::handle:horizontal {{ width: 1px; }}
QScrollBar:vertical {{ background: transparent; width: 10px; margin: 2px; }}
QScrollBar::handle:vertical {{ background: {SCROLLBAR.name()}; border-radius: 3px; min-height: 32px; }}
QScrollBar::handle:vertical:hover {{ background: {SCROLLBAR_HOVER.name()}; }}
QScrollBar:horizontal {{ background: transparent; height: 10px; margin: 2px; }}
QScrollBar::handle:horizontal {{ background: {SCROLLBAR.name()}; border-radius: 3px; min-width: 32px; }}
QScrollBar::add-line, QScrollBar::sub-line {{ width: 0; height: 0; }}
QScrollBar::add-page, QScrollBar::sub-page {{ background: none; }}
QStatusBar {{ background: {WINDOW.name()}; border-top: 1px solid {BORDER.name()}; color: {MUTED.name()}; }}
QStatusBar QLabel {{ color: {MUTED.name()}; padding: 0 6px; }}
QStatusBar::item {{ border: none; }}
QProgressBar {{ background: {BASE.name()}; border: 1px solid {BORDER.name()}; border-radius: 5px;
    text-align: center; color: {TEXT.name()}; min-height: 14px; max-height: 14px; font-size: 8pt; }}
QProgressBar::chunk {{ background: {ACCENT.name()}; border-radius: 4px; }}
QDockWidget {{ titlebar-close-icon: none; color: {MUTED.name()}; }}
QDockWidget::title {{ background: {WINDOW.name()}; padding: 6px; border-top: 1px solid {BORDER.name()}; }}
QFrame#banner {{ background: {BANNER.name()}; border: 1px solid {BANNER_BORDER.name()}; border-radius: 8px; }}
QFrame#banner QLabel {{ color: {BANNER_TEXT.name()}; }}
QLabel#sectionTitle {{ color: {MUTED.name()}; font-size: 8pt; font-weight: 600; letter-spacing: 1px;
    padding-top: 10px; }}
QLabel#photoTitle {{ font-size: 12pt; font-weight: 600; }}
QLabel#muted {{ color: {MUTED.name()}; }}
QLabel#explanation {{ background: {RAISED.name()}; border-radius: 8px; padding: 8px 10px; }}
QCheckBox::indicator {{ width: 14px; height: 14px; border: 1px solid {BORDER.name()}; border-radius: 3px;
    background: {BASE.name()}; }}
QCheckBox::indicator:checked {{ background: {ACCENT.name()}; border-color: {ACCENT.name()}; }}
QRadioButton::indicator {{ width: 12px; height: 12px; border: 1px solid {BORDER.name()}; border-radius: 7px;
    background: {BASE.name()}; }}
QRadioButton::indicator:checked {{ background: {ACCENT.name()}; border-color: {ACCENT.name()}; }}
"""


def palette() -> QPalette:
    """Fusion palette so the widgets the style sheet does not cover are dark as well."""
    pal = QPalette()
    roles = {
        QPalette.ColorRole.Window: WINDOW,
        QPalette.ColorRole.WindowText: TEXT,
        QPalette.ColorRole.Base: BASE,
        QPalette.ColorRole.AlternateBase: PANEL,
        QPalette.ColorRole.ToolTipBase: RAISED,
        QPalette.ColorRole.ToolTipText: TEXT,
        QPalette.ColorRole.PlaceholderText: FAINT,
        QPalette.ColorRole.Text: TEXT,
        QPalette.ColorRole.Button: RAISED,
        QPalette.ColorRole.ButtonText: TEXT,
        QPalette.ColorRole.BrightText: WHITE,
        QPalette.ColorRole.Highlight: ACCENT,
        QPalette.ColorRole.HighlightedText: HIGHLIGHTED_TEXT,
        QPalette.ColorRole.Link: ACCENT,
        QPalette.ColorRole.Mid: BORDER,
        QPalette.ColorRole.Dark: BASE,
        QPalette.ColorRole.Light: RAISED,
        QPalette.ColorRole.Shadow: BLACK,
    }
    for role, colour in roles.items():
        pal.setColor(role, colour)
    for role in (QPalette.ColorRole.Text, QPalette.ColorRole.WindowText, QPalette.ColorRole.ButtonText):
        pal.setColor(QPalette.ColorGroup.Disabled, role, FAINT)
    return pal


def apply(app: QApplication) -> None:
    """Fusion style + dark palette + style sheet + the app icon. Spin boxes are left to Fusion (dark through
    the palette): a style sheet rule for them would hide their arrows, which it cannot draw without images."""
    app.setStyle("Fusion")
    app.setPalette(palette())
    app.setStyleSheet(STYLE_SHEET)
    app.setWindowIcon(app_icon())


def app_icon(size: int = 256) -> QIcon:
    """The HumanAes mark: a ring of five level-coloured arcs around a head-and-shoulders silhouette."""
    pix = QPixmap(size, size)
    pix.fill(Qt.GlobalColor.transparent)
    p = QPainter(pix)
    p.setRenderHint(QPainter.RenderHint.Antialiasing)
    s = float(size)
    p.setPen(Qt.PenStyle.NoPen)
    p.setBrush(ICON_BACKGROUND)
    p.drawRoundedRect(QRectF(0, 0, s, s), s * 0.22, s * 0.22)
    ring = QRectF(s * 0.14, s * 0.14, s * 0.72, s * 0.72)
    pen = QPen()
    pen.setWidthF(s * 0.07)
    pen.setCapStyle(Qt.PenCapStyle.FlatCap)
    for i, colour in enumerate(LEVEL_COLOURS.values()):
        pen.setColor(colour)
        p.setPen(pen)
        p.drawArc(ring, int((90 - i * 72 - 4) * 16), -64 * 16)
    p.setPen(Qt.PenStyle.NoPen)
    p.setBrush(TEXT)
    p.drawEllipse(QPointF(s * 0.5, s * 0.42), s * 0.11, s * 0.11)
    body = QPainterPath()
    body.moveTo(s * 0.3, s * 0.7)
    body.cubicTo(s * 0.32, s * 0.54, s * 0.68, s * 0.54, s * 0.7, s * 0.7)
    body.closeSubpath()
    p.drawPath(body)
    p.end()
    return QIcon(pix)
