"""The detail panel: preview, the A–L hierarchy, the why, radar chart and (advanced) the heads."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QPixmap
from PySide6.QtWidgets import (
    QFrame,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QScrollArea,
    QSizePolicy,
    QVBoxLayout,
    QWidget,
)

from .explanation import ExplanationView
from .faces import FaceStrip
from .photos import Photo
from .widgets import (
    DecisionView,
    HeadsView,
    HierarchyView,
    ImageView,
    RadarChart,
    ScoreBadge,
)


def _section(title: str) -> QLabel:
    label = QLabel(title.upper())
    label.setObjectName("sectionTitle")
    label.setWordWrap(True)
    return label


class DetailPanel(QScrollArea):
    """Everything about the current photo; filled by the main window, never does I/O itself."""

    compare_requested = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWidgetResizable(True)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setMinimumWidth(360)
        self.setFrameShape(QFrame.Shape.NoFrame)
        body = QWidget()
        body.setObjectName("detailBody")
        layout = QVBoxLayout(body)
        layout.setContentsMargins(16, 14, 16, 16)
        layout.setSpacing(6)

        self.title = QLabel("No photo selected")
        self.title.setObjectName("photoTitle")
        self.title.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.title.setWordWrap(True)
        self.subtitle = QLabel("Open a folder with Ctrl+O or drop one on the window.")
        self.subtitle.setObjectName("muted")
        self.subtitle.setWordWrap(True)
        # Long paths must not widen the panel beyond the splitter (the scroll area has no horizontal bar).
        for label in (self.title, self.subtitle):
            label.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.preview = ImageView()
        self.preview.setMinimumHeight(220)
        self.preview.setMaximumHeight(280)
        self.badge = ScoreBadge()
        self.decision = DecisionView()
        self.decision.setToolTip("P pick · X reject · U unflag · 0–5 stars · Ctrl+Z undo")
        self.burst = QWidget()
        self.burst_label = QLabel()
        self.burst_label.setObjectName("muted")
        self.compare_button = QPushButton("Compare burst")
        self.compare_button.setToolTip("The frames of this burst side by side (Ctrl+G)")
        self.compare_button.clicked.connect(self.compare_requested)
        burst_row = QHBoxLayout(self.burst)
        burst_row.setContentsMargins(0, 0, 0, 0)
        burst_row.addWidget(self.burst_label, 1)
        burst_row.addWidget(self.compare_button)
        self.burst.hide()
        self.explanation = QLabel()
        self.explanation.setObjectName("explanation")
        self.explanation.setWordWrap(True)
        self.explanation.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Minimum)
        self.hierarchy = HierarchyView()
        self.radar = RadarChart()
        self.radar_legend = QLabel(
            "Filled: this photo  ·  dashed: folder average  ·  rings: level boundaries"
        )
        self.radar_legend.setObjectName("muted")
        self.radar_legend.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.radar_legend.setWordWrap(True)
        self.heads = HeadsView()
        self.attribution = ExplanationView()
        self.attribution_note = QLabel(
            "How much each part moved this photo's overall score away from the folder average; each group "
            "adds up to the line above it. Hover a row for what it measures."
        )
        self.attribution_note.setObjectName("muted")
        self.attribution_note.setWordWrap(True)

        self.faces = FaceStrip()  # every face at 100 % with its verdict; hidden without faces
        for w in (self.title, self.subtitle, self.preview, self.badge, self.decision, self.burst, self.faces):
            layout.addWidget(w)
        layout.addWidget(self.explanation)
        # Everything below only makes sense for a scored photo; it is hidden for pending or skipped ones.
        self.card_sections = QWidget()
        sections = QVBoxLayout(self.card_sections)
        sections.setContentsMargins(0, 0, 0, 0)
        sections.setSpacing(6)
        sections.addWidget(_section("Hierarchy  ·  tick = folder average"))
        sections.addWidget(self.hierarchy)
        sections.addWidget(_section("Why  ·  against the folder average"))
        sections.addWidget(self.attribution)
        sections.addWidget(self.attribution_note)
        sections.addWidget(_section("12 dimensions"))
        sections.addWidget(self.radar)
        sections.addWidget(self.radar_legend)
        sections.addWidget(_section("Advanced  ·  the model's heads"))
        sections.addWidget(self.heads)
        layout.addWidget(self.card_sections)
        layout.addStretch(1)
        self.setWidget(body)
        self.photo: Photo | None = None
        #: The badge's caption for a photo without a card (the window says when scoring cannot go on).
        self.pending_caption = "Not scored yet — scoring runs in the background"
        self.show_photo(None)

    def show_photo(
        self,
        photo: Photo | None,
        reference: Mapping[str, float] | None = None,
        explanation: Any = None,
    ) -> None:
        """Show `photo` (None clears). `reference`: the folder's mean displayed scores (ticks, radar);
        `explanation`: why its overall differs from the folder average (`attribution.Explanation`).
        Another photo starts at the top (its name and preview in view); the same one keeps the scroll."""
        if photo is None or self.photo is None or photo.path != self.photo.path:
            self.verticalScrollBar().setValue(0)
        self.photo = photo
        self.set_culling(photo)
        self.faces.set_photo(photo)
        if photo is None:
            self.title.setText("No photo selected")
            self.subtitle.setText("Open a folder with Ctrl+O or drop one on the window.")
            self.preview.set_pixmap(None, "")
            self._show_card(None, None, None)
            return
        self.title.setText(photo.path.name)
        parts = [photo.name if photo.name != photo.path.name else str(photo.path.parent)]
        if photo.captured:
            parts.append(datetime.fromtimestamp(photo.captured).strftime("%Y-%m-%d %H:%M"))
        self.subtitle.setText("  ·  ".join(parts))
        tiles = (
            None if photo.card is None else photo.card.tiles
        )  # how it was scored: a tooltip, not the panel
        self.subtitle.setToolTip("" if tiles is None else f"Scored from {tiles} image tiles of 448 px")
        if photo.error is not None:
            self._show_card(None, None, None)
            self.badge.hide()
            self.explanation.setText(f"Skipped: {photo.error}. The file could not be read as a photo.")
            self.explanation.show()
            return
        self._show_card(photo, reference, explanation)

    def set_culling(self, photo: Photo | None, burst_size: int = 1, best: bool = False) -> None:
        """The photo's decision, and its burst (with the compare button) when it is part of one."""
        self.decision.setVisible(photo is not None)
        if photo is not None:
            origin = None if photo.rating is None else photo.rating.origin
            self.decision.set_decision(photo.stars, int(photo.flag), origin)
        self.burst.setVisible(photo is not None and burst_size > 1)
        if burst_size > 1:
            self.burst_label.setText(f"Burst of {burst_size}" + ("  ·  the best frame" if best else ""))

    def set_preview(self, pixmap: QPixmap | None, message: str = "") -> None:
        self.preview.set_pixmap(pixmap, message)

    def _show_card(
        self,
        photo: Photo | None,
        reference: Mapping[str, float] | None,
        explanation: Any,
    ) -> None:
        card = None if photo is None else photo.card
        self.card_sections.setVisible(card is not None)
        self.badge.setVisible(photo is not None)
        if card is None:
            self.badge.set_score(None, self.pending_caption if photo else "")
            self.hierarchy.set_values(None)
            self.radar.set_values(None)
            self.heads.set_values(None)
            self.attribution.set_explanation(None)
            self.explanation.setVisible(False)
            return
        caption = "overall"
        if explanation is not None:  # the average the why compares with, so the two always agree
            caption += f"\nfolder average {explanation.reference:.2f}"
        elif reference is not None:
            caption += f"\nfolder average {reference['overall']:.2f}"
        self.badge.set_score(card.dims["overall"], caption)
        self.badge.setToolTip("The final score: the MetaVoter's vote over the model's three heads")
        self.hierarchy.set_values(card.dims, reference)
        self.radar.set_values(card.dims, reference)
        self.heads.set_values(card.heads)
        self.attribution.set_explanation(explanation)
        sentence = "" if explanation is None else explanation.sentence
        self.explanation.setText(sentence)
        self.explanation.setVisible(bool(sentence))
