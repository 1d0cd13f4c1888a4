"""The settings dialog and the model download dialog."""

from __future__ import annotations

from dataclasses import replace

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QProgressDialog,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from .settings import MODEL_PRESETS, PRECISIONS, AppSettings, ScoringSettings

PRECISION_LABELS = {
    "auto": "Automatic (bf16/fp16 on a GPU, fp32 on the CPU)",
    "fp32": "fp32 (full precision)",
    "fp16": "fp16",
    "bf16": "bf16",
    "4bit": "4-bit NF4 (CUDA GPU, needs bitsandbytes)",
}


class SettingsDialog(QDialog):
    """Model, precision, device, speed/accuracy and batch size; plus folder scanning."""

    def __init__(self, settings: AppSettings, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("HumanAes settings")
        self.setMinimumWidth(560)
        self._settings = settings
        s = settings.scoring

        self.model = QComboBox()
        self.model.setEditable(True)
        self.model.addItems(list(MODEL_PRESETS))
        self.model.setCurrentText(s.model)
        self.model.setToolTip("A hub id (downloaded once into the cache) or a native checkpoint folder")
        browse = QPushButton("Folder…")
        browse.clicked.connect(self._browse)
        model_row = QHBoxLayout()
        model_row.addWidget(self.model, 1)
        model_row.addWidget(browse)

        self.precision = QComboBox()
        for key in PRECISIONS:
            self.precision.addItem(PRECISION_LABELS[key], key)
        self.precision.setCurrentIndex(max(0, self.precision.findData(s.precision)))

        self.device = QComboBox()
        self.device.setEditable(True)
        self.device.addItems(["auto", "cpu", "cuda", "cuda:0", "cuda:1"])
        self.device.setCurrentText(s.device)

        self.max_tiles = QSpinBox()
        self.max_tiles.setRange(1, 40)
        self.max_tiles.setValue(s.max_tiles)
        self.max_tiles.setToolTip(
            "448-px tiles per photo: fewer is faster, 12 is what the model was trained with"
        )

        self.batch_size = QSpinBox()
        self.batch_size.setRange(1, 256)
        self.batch_size.setValue(s.batch_size)

        self.recursive = QCheckBox("Include sub-folders when opening a folder")
        self.recursive.setChecked(settings.recursive)

        self.library = QLineEdit(settings.library)
        self.library.setPlaceholderText("library.sqlite in your data folder")
        self.library.setToolTip(
            "Where scores and decisions are kept: a SQLite file, or a PostgreSQL server shared by a "
            "studio's machines (postgresql+psycopg://user@host/database)"
        )

        form = QFormLayout()
        form.setLabelAlignment(Qt.AlignmentFlag.AlignRight)
        form.addRow("Model", model_row)
        form.addRow("Precision", self.precision)
        form.addRow("Device", self.device)
        form.addRow("Max tiles", self.max_tiles)
        form.addRow("Batch size", self.batch_size)
        form.addRow("", self.recursive)
        form.addRow("Library", self.library)
        hint = QLabel(
            "Max tiles trades speed for accuracy: 12 matches the paper; 4–6 is several times faster "
            "on a CPU. "
            "Changing the model, precision, device or tiles re-scores the open folder in the background; "
            "scores of different models or settings are cached separately and never mixed."
        )
        hint.setObjectName("muted")
        hint.setWordWrap(True)
        buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel
        )
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(hint)
        layout.addWidget(buttons)

    def _browse(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Choose a HumanAes checkpoint folder")
        if folder:
            self.model.setCurrentText(folder)

    def scoring(self) -> ScoringSettings:
        """The scoring settings as edited (validated)."""
        return ScoringSettings(
            model=self.model.currentText().strip(),
            precision=str(self.precision.currentData()),
            device=self.device.currentText().strip(),
            max_tiles=self.max_tiles.value(),
            batch_size=self.batch_size.value(),
        ).validated()

    def result_settings(self) -> AppSettings:
        return replace(
            self._settings,
            scoring=self.scoring(),
            recursive=self.recursive.isChecked(),
            library=self.library.text().strip(),
        )


class DownloadDialog(QProgressDialog):
    """Non-modal progress of a model download (several GB for the 8B); browsing continues meanwhile."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("Downloading the model…", "Hide", 0, 1000, parent)
        self.setWindowTitle("Downloading model")
        self.setWindowModality(Qt.WindowModality.NonModal)
        self.setAutoClose(False)
        self.setAutoReset(False)
        self.setMinimumDuration(0)
        self.setMinimumWidth(420)

    def report(self, description: str, done: float, total: float) -> None:
        gb = 1024**3
        self.setLabelText(f"{description}\n{done / gb:.2f} of {total / gb:.2f} GB")
        self.setValue(int(1000 * done / total) if total > 0 else 0)
        if not self.isVisible() and done < total:
            self.show()
        if total > 0 and done >= total:
            self.hide()
