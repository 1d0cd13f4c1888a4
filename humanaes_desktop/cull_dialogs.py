"""The auto-cull and sidecar dialogs: settings, and a preview of what will happen before it happens.

Auto-cull keeps the best photos by score and, with the check rules on, rejects closed eyes, missed
focus and misfires whatever their score (`humanaes_core.culling.CheckRules`). Each rule has a
sensitivity slider; a kind of shoot (ceremony, portrait session, event and group, sports) sets all of
them at once from `humanaes_core.culling.SHOOT_PRESETS`, and moving a slider afterwards makes it a
custom setting.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QButtonGroup,
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QDoubleSpinBox,
    QFormLayout,
    QGridLayout,
    QLabel,
    QRadioButton,
    QSlider,
    QVBoxLayout,
    QWidget,
)

from humanaes_core.culling import SHOOT_PRESETS, CheckRules
from humanaes_core.formats import LABELS
from humanaes_core.schema import LEVELS

from . import theme
from .background import Lane
from .settings import CULL_PER, AppSettings

PER_LABELS = {
    "folder": "Each folder",
    "burst": "Each burst (the best frames of every burst)",
    "all": "All photos together",
}
#: The kinds of shoot the dialog offers (`SHOOT_PRESETS` keys; "wedding" is the ceremony's alias).
SHOOT_LABELS = {
    "ceremony": "Ceremony (wedding)",
    "portrait": "Portrait session",
    "event": "Event and group",
    "sports": "Sports",
}
CUSTOM = "custom"
SCORE_ONLY = "none"  # every rule off: the score alone decides
CONVENTION_LABELS = {
    "auto": "Automatic: name.xmp for RAW files (Lightroom), name.ext.xmp for others (darktable, digiKam)",
    "name.xmp": "name.xmp (Lightroom Classic, Camera Raw, Capture One)",
    "name.ext.xmp": "name.ext.xmp (darktable, digiKam)",
}


@dataclass(frozen=True)
class CullParams:
    """What auto-cull keeps, where photos compete, and whether the photographer's own decisions yield."""

    keep_top_percent: float | None
    min_level: str | None
    per: str
    overwrite_manual: bool
    rules: CheckRules = field(default_factory=CheckRules)

    def describe(self) -> str:
        """The undo step's name, and the plan recorded with each decision it makes."""
        from humanaes_core.culling import describe_plan

        plan = describe_plan(self.keep_top_percent, self.min_level, self.per)
        return f"auto-cull: {plan}" + rules_words(self.rules)


def rules_words(rules: CheckRules) -> str:
    """'; reject closed eyes, missed focus' for the undo history and notices ('' with no rule on)."""
    names = [
        name
        for name, on in (
            ("closed eyes", rules.closed_eyes is not None),
            ("missed focus", rules.missed_focus is not None),
            ("misfires", rules.misfire),
        )
        if on
    ]
    return f"; reject {', '.join(names)}" if names else ""


def preset_of(rules: CheckRules) -> str:
    """The kind of shoot whose preset these rules are, `SCORE_ONLY` with every rule off, else `CUSTOM`."""
    if not rules.active:
        return SCORE_ONLY
    return next((key for key in SHOOT_LABELS if SHOOT_PRESETS[key] == rules), CUSTOM)


class RuleRow(QWidget):
    """One check rule: on or off, and how strict (a 0–100 slider for a sensitivity in [0, 1])."""

    def __init__(self, text: str, tip: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.check = QCheckBox(text)
        self.check.setToolTip(tip)
        self.slider = QSlider(Qt.Orientation.Horizontal)
        self.slider.setRange(0, 100)
        self.slider.setSingleStep(5)
        self.slider.setPageStep(10)
        self.slider.setToolTip(tip)
        self.value = QLabel()
        self.value.setObjectName("muted")
        self.value.setMinimumWidth(90)
        row = QGridLayout(self)
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(self.check, 0, 0)
        row.addWidget(QLabel("lenient"), 0, 1)
        row.addWidget(self.slider, 0, 2)
        row.addWidget(QLabel("strict"), 0, 3)
        row.addWidget(self.value, 0, 4)
        row.setColumnMinimumWidth(0, 150)
        row.setColumnStretch(2, 1)
        self.check.toggled.connect(self._show)
        self.slider.valueChanged.connect(self._show)

    def set_sensitivity(self, value: float | None) -> None:
        for widget in (self.check, self.slider):
            widget.blockSignals(True)
        self.check.setChecked(value is not None)
        if value is not None:
            self.slider.setValue(round(value * 100))
        for widget in (self.check, self.slider):
            widget.blockSignals(False)
        self._show()

    def sensitivity(self) -> float | None:
        return self.slider.value() / 100 if self.check.isChecked() else None

    def _show(self) -> None:
        self.slider.setEnabled(self.check.isChecked())
        self.value.setText(f"sensitivity {self.slider.value()}" if self.check.isChecked() else "off")


#: preview(params) -> (text, can apply)
Preview = Callable[[CullParams], tuple[str, bool]]
#: warning(params) -> a sentence when the plan rejects (nearly) everything, else None
Warning = Callable[[CullParams], str | None]


class AutoCullDialog(QDialog):
    """Keep the top N % or everything at or above a level, per folder, burst or all; shows the outcome.

    The preview is computed on a worker thread (`preview` must be safe to call there); only the answer
    for the latest settings is shown, and Apply waits for it.
    """

    def __init__(
        self,
        settings: AppSettings,
        preview: Preview,
        parent: QWidget | None = None,
        warning: Warning | None = None,
    ) -> None:
        super().__init__(parent)
        self.setWindowTitle("Auto-cull")
        self.setMinimumWidth(560)
        self._preview = preview
        self._warning = warning
        self._previews = Lane("humanaes-cull-preview", 1, self)

        # The row is labelled "Keep": the choices complete the sentence ("Keep the top 20 %").
        self.by_percent = QRadioButton("the top")
        self.by_level = QRadioButton("everything at or above")
        group = QButtonGroup(self)
        group.addButton(self.by_percent)
        group.addButton(self.by_level)
        self.percent = QDoubleSpinBox()
        self.percent.setRange(1.0, 100.0)
        self.percent.setDecimals(0)
        self.percent.setSingleStep(5.0)
        self.percent.setSuffix(" %")
        self.percent.setValue(settings.cull_keep_top)
        self.level = QComboBox()
        for level in LEVELS:
            self.level.addItem(level, level)
        self.level.setCurrentIndex(max(0, self.level.findData(settings.cull_min_level)))
        (self.by_level if settings.cull_by == "level" else self.by_percent).setChecked(True)
        keep = QGridLayout()
        keep.addWidget(self.by_percent, 0, 0)
        keep.addWidget(self.percent, 0, 1)
        keep.addWidget(self.by_level, 1, 0)
        keep.addWidget(self.level, 1, 1)
        keep.setColumnStretch(2, 1)

        self.per = QComboBox()
        for key in CULL_PER:
            self.per.addItem(PER_LABELS[key], key)
        self.per.setCurrentIndex(max(0, self.per.findData(settings.cull_per)))
        self.overwrite = QCheckBox("Also change photos I picked, rejected or rated myself")
        self.overwrite.setChecked(settings.cull_overwrite_manual)
        self.overwrite.setToolTip(
            "Off: your own decisions (made here or imported from an editor's sidecar) stay as they are. "
            "HumanAes's earlier auto-cull decisions, also those humanaes-cull wrote into sidecars, are "
            "always replaced"
        )

        # Check rules: what is rejected whatever its score, set by a kind of shoot or one by one.
        self.shoot = QComboBox()
        self.shoot.addItem("Any (the score alone decides)", SCORE_ONLY)
        for key, label in SHOOT_LABELS.items():
            self.shoot.addItem(label, key)
        self.shoot.addItem("Custom", CUSTOM)
        self.shoot.setToolTip("Sets the rules below for a kind of shoot; moving a slider makes them custom")
        self.closed_eyes = RuleRow(
            "Closed eyes",
            "Rejects a photo whose main face blinked; stricter also rejects group photos where fewer of "
            "the faces have both eyes closed (at full strictness, any one face)",
        )
        self.missed_focus = RuleRow(
            "Missed focus",
            "Rejects a photo whose main face's eyes are not sharp against the rest of the face and the "
            "sharpest part of the frame; lenient rejects only missed focus, strict soft focus too",
        )
        self.misfire = QCheckBox("Misfires (black, white or blank frames)")
        self.misfire.setToolTip("Frames with nothing in them: lens cap, flash misfire, shot of the floor")
        self.set_rules(CheckRules.from_dict(settings.cull_rules) if settings.cull_rules else CheckRules())

        form = QFormLayout()
        form.setLabelAlignment(Qt.AlignmentFlag.AlignRight)
        form.addRow("Keep", keep)
        form.addRow("Rank within", self.per)
        form.addRow("", self.overwrite)
        form.addRow("Kind of shoot", self.shoot)
        form.addRow("Reject", self.closed_eyes)
        form.addRow("", self.missed_focus)
        form.addRow("", self.misfire)
        self.preview_label = QLabel()
        self.preview_label.setObjectName("explanation")
        self.preview_label.setWordWrap(True)
        self.warning_label = QLabel()  # red: the plan rejects everything or nearly everything
        self.warning_label.setWordWrap(True)
        self.warning_label.setStyleSheet(f"color: {theme.REJECT.name()}; font-weight: bold;")
        self.warning_label.hide()
        note = QLabel(
            "Keepers are picked and the rest rejected, as one step you can undo (Ctrl+Z). Stars you gave "
            "stay. Review the result and override any photo with P, X or U."
        )
        note.setObjectName("muted")
        note.setWordWrap(True)
        self.buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel
        )
        self.buttons.button(QDialogButtonBox.StandardButton.Ok).setText("Apply")
        self.buttons.accepted.connect(self.accept)
        self.buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.preview_label)
        layout.addWidget(self.warning_label)
        layout.addWidget(note)
        layout.addWidget(self.buttons)

        for signal in (
            self.by_percent.toggled,
            self.percent.valueChanged,
            self.level.currentIndexChanged,
            self.per.currentIndexChanged,
            self.overwrite.toggled,
        ):
            signal.connect(self.refresh)
        for row in (self.closed_eyes, self.missed_focus):
            row.check.toggled.connect(self._rules_edited)
            row.slider.valueChanged.connect(self._rules_edited)
        self.misfire.toggled.connect(self._rules_edited)
        self.shoot.currentIndexChanged.connect(self._shoot_chosen)
        self.refresh()

    def rules(self) -> CheckRules:
        """The check rules the controls say."""
        return CheckRules(
            closed_eyes=self.closed_eyes.sensitivity(),
            missed_focus=self.missed_focus.sensitivity(),
            misfire=self.misfire.isChecked(),
        )

    def set_rules(self, rules: CheckRules) -> None:
        """Show `rules` (and the kind of shoot they are the preset of); one refresh afterwards."""
        self.misfire.blockSignals(True)
        self.closed_eyes.set_sensitivity(rules.closed_eyes)
        self.missed_focus.set_sensitivity(rules.missed_focus)
        self.misfire.setChecked(rules.misfire)
        self.misfire.blockSignals(False)
        self._show_shoot(preset_of(rules))

    def choose_shoot(self, key: str) -> None:
        """Like picking a kind of shoot in the combo: its preset sets every rule."""
        self.shoot.setCurrentIndex(max(0, self.shoot.findData(key)))

    def _shoot_chosen(self) -> None:
        key = str(self.shoot.currentData())
        if key in SHOOT_PRESETS or key == SCORE_ONLY:
            self.set_rules(SHOOT_PRESETS.get(key, CheckRules()))
            self.refresh()

    def _rules_edited(self) -> None:
        self._show_shoot(preset_of(self.rules()))
        self.refresh()

    def _show_shoot(self, key: str) -> None:
        self.shoot.blockSignals(True)
        self.shoot.setCurrentIndex(max(0, self.shoot.findData(key)))
        self.shoot.blockSignals(False)

    def params(self) -> CullParams:
        by_percent = self.by_percent.isChecked()
        return CullParams(
            keep_top_percent=float(self.percent.value()) if by_percent else None,
            min_level=None if by_percent else str(self.level.currentData()),
            per=str(self.per.currentData()),
            overwrite_manual=self.overwrite.isChecked(),
            rules=self.rules(),
        )

    @property
    def busy(self) -> bool:
        """A preview is being computed."""
        return self._previews.busy

    def refresh(self) -> None:
        """Recompute the preview for the current settings, in the background."""
        self.percent.setEnabled(self.by_percent.isChecked())
        self.level.setEnabled(self.by_level.isChecked())
        self._previews.invalidate()  # only the answer for the latest settings is shown
        params = self.params()
        self.buttons.button(QDialogButtonBox.StandardButton.Ok).setEnabled(False)
        if not self.preview_label.text():
            self.preview_label.setText("Counting…")
        self._previews.submit(
            self._preview_and_warning,
            params,
            done=self._show,
            failed=lambda e: self._show((f"Cannot preview: {e}", False)),
        )

    def _preview_and_warning(self, params: CullParams) -> tuple[str, bool, str | None]:
        """On the preview thread: the outcome in words, and the red warning if the plan rejects all."""
        text, ok = self._preview(params)
        return text, ok, self._warning(params) if self._warning is not None else None

    def _show(self, result: tuple[str, bool] | tuple[str, bool, str | None]) -> None:
        text, ok, warning = (*result, None)[:3]
        self.preview_label.setText(text)
        self.warning_label.setText(warning or "")
        self.warning_label.setVisible(bool(warning))
        self.buttons.button(QDialogButtonBox.StandardButton.Ok).setEnabled(ok)

    def stop_previews(self) -> None:
        """Wait for the preview in flight and drop the rest (the dialog is done)."""
        self._previews.shutdown(drop_queued=True)

    def store(self, settings: AppSettings) -> None:
        """Remember the choices for next time."""
        p = self.params()
        settings.cull_by = "percent" if p.keep_top_percent is not None else "level"
        settings.cull_keep_top = float(self.percent.value())
        settings.cull_min_level = str(self.level.currentData())
        settings.cull_per = p.per
        settings.cull_overwrite_manual = p.overwrite_manual
        settings.cull_rules = p.rules.to_dict()


class SidecarDialog(QDialog):
    """Sidecar naming convention and the colour label for keepers, before writing."""

    def __init__(self, settings: AppSettings, summary: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Write XMP sidecars")
        self.setMinimumWidth(600)
        self.convention = QComboBox()
        for key, label in CONVENTION_LABELS.items():
            self.convention.addItem(label, key)
        self.convention.setCurrentIndex(max(0, self.convention.findData(settings.sidecar_convention)))
        self.label = QComboBox()
        self.label.addItem("none", "")
        for name in LABELS:
            self.label.addItem(name, name)
        self.label.setCurrentIndex(max(0, self.label.findData(settings.keeper_label)))
        form = QFormLayout()
        form.setLabelAlignment(Qt.AlignmentFlag.AlignRight)
        form.addRow("Sidecar names", self.convention)
        form.addRow("Colour label for picks", self.label)
        text = QLabel(
            f"{summary}\n\nPicks and starred photos get their stars (a pick without stars gets its "
            "level's: bad 1 … excellent 5); rejects get Rating −1. An existing sidecar is updated in "
            "place: keywords, develop settings and everything else in it stay. Photos are never modified."
        )
        text.setWordWrap(True)
        text.setObjectName("muted")
        buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel
        )
        buttons.button(QDialogButtonBox.StandardButton.Ok).setText("Write sidecars")
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(text)
        layout.addWidget(buttons)

    def choice(self) -> tuple[str, str]:
        """(convention, keeper label or "")."""
        return str(self.convention.currentData()), str(self.label.currentData())
