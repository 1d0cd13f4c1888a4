"""The auto-cull and sidecar dialogs: settings, and a preview of what will happen before it happens."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

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
    QVBoxLayout,
    QWidget,
)

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

    def describe(self) -> str:
        """The undo step's name, and the plan recorded with each decision it makes."""
        from humanaes_core.culling import describe_plan

        return f"auto-cull: {describe_plan(self.keep_top_percent, self.min_level, self.per)}"


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

        form = QFormLayout()
        form.setLabelAlignment(Qt.AlignmentFlag.AlignRight)
        form.addRow("Keep", keep)
        form.addRow("Rank within", self.per)
        form.addRow("", self.overwrite)
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
        self.refresh()

    def params(self) -> CullParams:
        by_percent = self.by_percent.isChecked()
        return CullParams(
            keep_top_percent=float(self.percent.value()) if by_percent else None,
            min_level=None if by_percent else str(self.level.currentData()),
            per=str(self.per.currentData()),
            overwrite_manual=self.overwrite.isChecked(),
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
