"""The toolbar controls that choose what the grid shows: sort order (`SortControls`) and filters
(`FilterBar`).

Each owns its widgets and says what the photographer chose as a value — a (key, descending) pair, a
`photos.Filter` — so the window applies values and never reads a chip or a spin box. Their widgets are
placed straight into the window's toolbars (`place`), the score filters on the main bar and the
decision and check filters (eyes closed, soft or missed focus, misfire, faces) on the culling bar.
"""

from __future__ import annotations

from PySide6.QtCore import QObject, Signal
from PySide6.QtGui import QColor, QKeySequence
from PySide6.QtWidgets import QComboBox, QDoubleSpinBox, QLabel, QToolBar, QToolButton

from humanaes_core.schema import LEVELS

from . import theme
from .photos import SORT_KEYS, Filter
from .verdicts import CHECK_FILTERS

ASCENDING_BY_DEFAULT = ("name", "captured")
FLAG_CHIPS = (
    ("pick", "Picks", "Show picked photos", theme.PICK),
    ("none", "Unflagged", "Show photos neither picked nor rejected", theme.MUTED),
    ("reject", "Rejects", "Show rejected photos", theme.REJECT),
)


def _chip(text: str, tip: str, colour: QColor) -> QToolButton:
    chip = QToolButton()
    chip.setObjectName("levelChip")
    chip.setCheckable(True)
    chip.setChecked(True)
    chip.setText(text)
    chip.setToolTip(tip)
    chip.setStyleSheet(
        f"QToolButton#levelChip:checked {{ border-color: {colour.name()}; color: {colour.name()}; }}"
    )
    return chip


class SortControls(QObject):
    """The sort key combo and the order button; `changed(key, descending)` when either changes."""

    changed = Signal(str, bool)

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.combo = QComboBox()
        self.combo.setMinimumContentsLength(20)
        for key, label in SORT_KEYS:
            self.combo.addItem(label, key)
        self.combo.setToolTip("Sort by the overall score, any of the 12 dimensions, a head, name or time")
        self.order_button = QToolButton()
        self.order_button.setCheckable(True)
        self.order_button.setToolTip("Sort order")
        self.combo.currentIndexChanged.connect(self._on_key_changed)
        self.order_button.toggled.connect(self.announce)

    def place(self, toolbar: QToolBar) -> None:
        toolbar.addWidget(QLabel("Sort"))
        toolbar.addWidget(self.combo)
        toolbar.addWidget(self.order_button)

    @property
    def key(self) -> str:
        return str(self.combo.currentData())

    @property
    def descending(self) -> bool:
        return self.order_button.isChecked()

    def set_sort(self, key: str, descending: bool | None = None) -> None:
        """Like picking it in the toolbar: a new key starts in its natural order unless `descending`."""
        self.combo.setCurrentIndex(self.combo.findData(key))
        if descending is not None:
            self.order_button.setChecked(descending)

    def restore(self, key: str, descending: bool) -> None:
        """Show a saved sort without announcing it (`announce` does)."""
        self.combo.blockSignals(True)
        self.combo.setCurrentIndex(max(0, self.combo.findData(key)))
        self.combo.blockSignals(False)
        self.order_button.blockSignals(True)
        self.order_button.setChecked(descending)
        self.order_button.blockSignals(False)

    def announce(self) -> None:
        """Label the order button for the key, and announce the sort."""
        key, descending = self.key, self.descending
        if key == "captured":
            self.order_button.setText("newest first" if descending else "oldest first")
        elif key in ASCENDING_BY_DEFAULT:
            self.order_button.setText("Z → A" if descending else "A → Z")
        else:
            self.order_button.setText("best first" if descending else "worst first")
        self.changed.emit(key, descending)

    def _on_key_changed(self) -> None:
        self.order_button.blockSignals(True)
        self.order_button.setChecked(self.key not in ASCENDING_BY_DEFAULT)
        self.order_button.blockSignals(False)
        self.announce()


class FilterBar(QObject):
    """Level chips and a minimum score; flag chips and minimum stars; check chips (off: every photo, on:
    only the photos with any of the checked findings). `changed(Filter)` on every change."""

    changed = Signal(object)  # photos.Filter

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.level_chips: dict[str, QToolButton] = {}
        for i, level in enumerate(LEVELS, start=1):
            chip = _chip(level, f"Show photos rated {level} (Ctrl+{i})", theme.LEVEL_COLOURS[level])
            chip.setShortcut(QKeySequence(f"Ctrl+{i}"))
            self.level_chips[level] = chip
        self.min_score = QDoubleSpinBox()
        self.min_score.setRange(0.0, 1.0)
        self.min_score.setSingleStep(0.05)
        self.min_score.setDecimals(2)
        self.min_score.setToolTip("Hide photos whose overall score is below this")
        self.flag_chips = {key: _chip(text, tip, colour) for key, text, tip, colour in FLAG_CHIPS}
        self.stars_combo = QComboBox()
        self.stars_combo.addItem("any", 0)
        for n in range(1, 6):
            self.stars_combo.addItem("★" * n + ("" if n == 5 else " and up"), n)
        self.stars_combo.setToolTip("Hide photos with fewer stars than this")
        self.check_chips: dict[str, QToolButton] = {}
        for key, text, tip in CHECK_FILTERS:
            chip = _chip(text, tip, theme.ACCENT if key == "faces" else theme.REJECT)
            chip.setChecked(False)
            self.check_chips[key] = chip
        for chip in (*self.level_chips.values(), *self.flag_chips.values(), *self.check_chips.values()):
            chip.toggled.connect(self.announce)
        self.min_score.valueChanged.connect(self.announce)
        self.stars_combo.currentIndexChanged.connect(self.announce)

    def place_score_filters(self, toolbar: QToolBar) -> None:
        toolbar.addWidget(QLabel("Level"))
        for chip in self.level_chips.values():
            toolbar.addWidget(chip)
        toolbar.addWidget(QLabel("Min"))
        toolbar.addWidget(self.min_score)

    def place_decision_filters(self, toolbar: QToolBar) -> None:
        toolbar.addWidget(QLabel("Show"))
        for chip in self.flag_chips.values():
            toolbar.addWidget(chip)
        toolbar.addWidget(QLabel("Stars"))
        toolbar.addWidget(self.stars_combo)

    def place_check_filters(self, toolbar: QToolBar) -> None:
        toolbar.addWidget(QLabel("Only"))
        for chip in self.check_chips.values():
            toolbar.addWidget(chip)

    def filter(self) -> Filter:
        """What the controls say now."""
        return Filter(
            levels=frozenset(lv for lv, chip in self.level_chips.items() if chip.isChecked()),
            min_score=float(self.min_score.value()),
            flags=frozenset(key for key, chip in self.flag_chips.items() if chip.isChecked()),
            min_stars=int(self.stars_combo.currentData()),
            checks=frozenset(key for key, chip in self.check_chips.items() if chip.isChecked()),
        )

    def set_filter(self, value: Filter, *, notify: bool = True) -> None:
        """Show `value` (a saved filter, or one set from code); one `changed` at the end if `notify`."""
        widgets = [
            *self.level_chips.values(),
            self.min_score,
            *self.flag_chips.values(),
            self.stars_combo,
            *self.check_chips.values(),
        ]
        for widget in widgets:
            widget.blockSignals(True)
        for level, chip in self.level_chips.items():
            chip.setChecked(level in value.levels)
        self.min_score.setValue(value.min_score)
        for key, chip in self.flag_chips.items():
            chip.setChecked(key in value.flags)
        self.stars_combo.setCurrentIndex(max(0, self.stars_combo.findData(value.min_stars)))
        for key, chip in self.check_chips.items():
            chip.setChecked(key in value.checks)
        for widget in widgets:
            widget.blockSignals(False)
        if notify:
            self.announce()

    def announce(self) -> None:
        """Announce what the controls say now."""
        self.changed.emit(self.filter())
