"""The main window: folder grid, detail panel, scoring progress, full-screen view.

It wires the pieces together and holds no scoring logic: files, scores and thumbnails arrive as
signals from background workers, so the window stays responsive whatever the model is doing.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from PySide6.QtCore import QByteArray, QItemSelectionModel, QModelIndex, QSize, Qt, QTimer
from PySide6.QtGui import QAction, QCloseEvent, QDragEnterEvent, QDropEvent, QKeySequence
from PySide6.QtWidgets import (
    QComboBox,
    QDockWidget,
    QDoubleSpinBox,
    QFileDialog,
    QFrame,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QMainWindow,
    QMenu,
    QProgressBar,
    QPushButton,
    QSizePolicy,
    QSplitter,
    QStackedWidget,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from humanaes_core.schema import LEVELS

from . import theme
from .detail import DetailPanel
from .dialogs import DownloadDialog, SettingsDialog
from .grid import PhotoGrid
from .photos import SORT_KEYS, Photo, PhotoModel
from .settings import AppSettings, thumbnail_dir
from .thumbnails import CaptureTimeScanner, ImageLoader
from .viewer import FullView
from .widgets import format_duration
from .worker import ModelInfo, Progress, ScoringController

THUMBNAIL_SIZE = 320
PREVIEW_SIZE = 1800
ASCENDING_BY_DEFAULT = ("name", "captured")


class MainWindow(QMainWindow):
    """Open a folder, watch it being scored, sort and filter it, and see why each photo scored as it did."""

    def __init__(self, settings: AppSettings | None = None, model: str | None = None) -> None:
        super().__init__()
        self.settings = settings or AppSettings.load()
        if model:
            self.settings.scoring.model = model
        self.setWindowTitle("HumanAes")
        self.setAcceptDrops(True)
        self.resize(1440, 900)

        self.thumbnails = ImageLoader(THUMBNAIL_SIZE, cache_dir=thumbnail_dir(), threads=2, parent=self)
        self.previews = ImageLoader(PREVIEW_SIZE, memory_items=6, threads=1, max_queue=3, parent=self)
        self.capture_times = CaptureTimeScanner(self)
        self.model = PhotoModel(self.thumbnails, self)
        self.controller = ScoringController(self)
        self.model_info: ModelInfo | None = None
        self.paths: list[str] = []
        self.last_progress = Progress()
        self._download_dialog: DownloadDialog | None = None
        self._pending_select: str | None = None
        self._was_maximized = False

        self._build_actions()
        self._build_ui()
        self._build_menus()
        self._connect()
        self._restore_state()

    # ================================================================== construction

    def _action(self, text: str, shortcut: str | QKeySequence | None, slot: Any, tip: str = "") -> QAction:
        action = QAction(text, self)
        if shortcut is not None:
            action.setShortcut(QKeySequence(shortcut))
        action.setToolTip(
            f"{tip or text} ({QKeySequence(shortcut).toString()})" if shortcut else (tip or text)
        )
        action.triggered.connect(slot)
        self.addAction(action)  # shortcuts work even with the menu bar hidden in full screen
        return action

    def _build_actions(self) -> None:
        self.open_action = self._action("Open Folder…", QKeySequence.StandardKey.Open, self.choose_folder)
        self.rescan_action = self._action(
            "Rescan", "F5", self.rescan, "Rescan the folder for new or changed photos"
        )
        self.pause_action = self._action("Pause", "Space", self.toggle_pause, "Pause or resume scoring")
        self.cancel_action = self._action(
            "Cancel", "Ctrl+.", self.cancel_scoring, "Stop scoring; scores so far stay"
        )
        self.settings_action = self._action("Settings…", "Ctrl+,", self.open_settings)
        self.full_action = self._action(
            "Full-Screen Photo", None, self.enter_full_view, "Full screen (Enter)"
        )
        self.errors_action = self._action("Skipped Files", "Ctrl+E", self.toggle_errors)
        self.zoom_in_action = self._action("Larger Tiles", "Ctrl+=", lambda: self.zoom_tiles(24))
        self.zoom_out_action = self._action("Smaller Tiles", "Ctrl+-", lambda: self.zoom_tiles(-24))
        self.quit_action = self._action("Quit", QKeySequence.StandardKey.Quit, self.close)
        self.pause_action.setEnabled(False)
        self.cancel_action.setEnabled(False)

    def _build_ui(self) -> None:
        toolbar = self.toolbar = self.addToolBar("Main")
        toolbar.setObjectName("mainToolbar")
        toolbar.setMovable(False)
        toolbar.setIconSize(QSize(16, 16))
        toolbar.addAction(self.open_action)
        toolbar.addAction(self.rescan_action)
        toolbar.addSeparator()
        toolbar.addAction(self.pause_action)
        toolbar.addAction(self.cancel_action)
        toolbar.addSeparator()
        toolbar.addWidget(QLabel("Sort"))
        self.sort_combo = QComboBox()
        self.sort_combo.setMinimumContentsLength(20)
        for key, label in SORT_KEYS:
            self.sort_combo.addItem(label, key)
        self.sort_combo.setToolTip(
            "Sort by the overall score, any of the 12 dimensions, a head, name or time"
        )
        toolbar.addWidget(self.sort_combo)
        self.order_button = QToolButton()
        self.order_button.setCheckable(True)
        self.order_button.setToolTip("Sort order")
        toolbar.addWidget(self.order_button)
        toolbar.addSeparator()
        toolbar.addWidget(QLabel("Level"))
        self.level_chips: dict[str, QToolButton] = {}
        for i, level in enumerate(LEVELS, start=1):
            chip = QToolButton()
            chip.setObjectName("levelChip")
            chip.setCheckable(True)
            chip.setChecked(True)
            chip.setText(level)
            chip.setToolTip(f"Show photos rated {level} (Ctrl+{i})")
            chip.setShortcut(QKeySequence(f"Ctrl+{i}"))
            colour = theme.LEVEL_COLOURS[level].name()
            chip.setStyleSheet(
                f"QToolButton#levelChip:checked {{ border-color: {colour}; color: {colour}; }}"
            )
            toolbar.addWidget(chip)
            self.level_chips[level] = chip
        toolbar.addWidget(QLabel("Min"))
        self.min_score = QDoubleSpinBox()
        self.min_score.setRange(0.0, 1.0)
        self.min_score.setSingleStep(0.05)
        self.min_score.setDecimals(2)
        self.min_score.setToolTip("Hide photos whose overall score is below this")
        toolbar.addWidget(self.min_score)
        spacer = QWidget()
        spacer.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Preferred)
        toolbar.addWidget(spacer)
        toolbar.addAction(self.settings_action)

        # Grid
        self.grid = PhotoGrid(self.settings.tile_size)
        self.delegate = self.grid.tiles
        self.grid.setModel(self.model)

        self.empty_hint = QLabel("Open a folder of photos (Ctrl+O) or drop one here.")
        self.empty_hint.setObjectName("muted")
        self.empty_hint.setAlignment(Qt.AlignmentFlag.AlignCenter)

        # Banner for problems that concern the whole run (model missing, offline, no GPU, ...)
        self.banner = QFrame()
        self.banner.setObjectName("banner")
        self.banner_text = QLabel()
        self.banner_text.setWordWrap(True)
        self.banner_text.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        banner_settings = QPushButton("Settings…")
        banner_settings.clicked.connect(self.open_settings)
        banner_close = QPushButton("Dismiss")
        banner_close.clicked.connect(self.banner.hide)
        banner_layout = QHBoxLayout(self.banner)
        banner_layout.setContentsMargins(12, 8, 12, 8)
        banner_layout.addWidget(self.banner_text, 1)
        banner_layout.addWidget(banner_settings, 0, Qt.AlignmentFlag.AlignTop)
        banner_layout.addWidget(banner_close, 0, Qt.AlignmentFlag.AlignTop)
        self.banner.hide()

        left = QWidget()
        left_layout = QVBoxLayout(left)
        left_layout.setContentsMargins(8, 8, 0, 0)
        left_layout.setSpacing(8)
        left_layout.addWidget(self.banner)
        left_layout.addWidget(self.empty_hint, 1)
        left_layout.addWidget(self.grid, 1)

        self.panel = DetailPanel()
        self.splitter = QSplitter(Qt.Orientation.Horizontal)
        self.splitter.setObjectName("mainSplitter")
        self.splitter.addWidget(left)
        self.splitter.addWidget(self.panel)
        self.splitter.setStretchFactor(0, 1)
        self.splitter.setStretchFactor(1, 0)
        self.splitter.setSizes([1000, 500])
        self.splitter.setChildrenCollapsible(False)

        self.full_view = FullView()
        self.stack = QStackedWidget()
        self.stack.addWidget(self.splitter)
        self.stack.addWidget(self.full_view)
        self.setCentralWidget(self.stack)

        # Skipped files
        self.errors_list = QListWidget()
        self.errors_dock = QDockWidget("Skipped files", self)
        self.errors_dock.setObjectName("errorsDock")
        self.errors_dock.setWidget(self.errors_list)
        self.errors_dock.setFeatures(QDockWidget.DockWidgetFeature.DockWidgetClosable)
        self.addDockWidget(Qt.DockWidgetArea.BottomDockWidgetArea, self.errors_dock)
        self.errors_dock.hide()

        # Status bar
        status = self.statusBar()
        self.status_label = QLabel("Ready")
        self.progress_bar = QProgressBar()
        self.progress_bar.setFixedWidth(220)
        self.progress_bar.setFormat("%v / %m")
        self.progress_bar.hide()
        self.rate_label = QLabel()
        self.errors_button = QToolButton()
        self.errors_button.setText("0 skipped")
        self.errors_button.setToolTip("Show the files that could not be scored (Ctrl+E)")
        self.errors_button.clicked.connect(self.toggle_errors)
        self.errors_button.hide()
        status.addWidget(self.status_label, 1)
        status.addPermanentWidget(self.errors_button)
        status.addPermanentWidget(self.rate_label)
        status.addPermanentWidget(self.progress_bar)

        self._detail_timer = QTimer(self)
        self._detail_timer.setSingleShot(True)
        self._detail_timer.setInterval(300)
        self._detail_timer.timeout.connect(self.refresh_detail)
        self._update_empty_state()

    def _build_menus(self) -> None:
        menu = self.menuBar()
        file_menu = menu.addMenu("&File")
        file_menu.addAction(self.open_action)
        self.recent_menu = QMenu("Open &Recent", self)
        file_menu.addMenu(self.recent_menu)
        file_menu.addAction(self.rescan_action)
        file_menu.addSeparator()
        file_menu.addAction(self.settings_action)
        file_menu.addSeparator()
        file_menu.addAction(self.quit_action)
        view_menu = menu.addMenu("&View")
        view_menu.addAction(self.full_action)
        view_menu.addAction(self.errors_action)
        view_menu.addSeparator()
        view_menu.addAction(self.zoom_in_action)
        view_menu.addAction(self.zoom_out_action)
        scoring_menu = menu.addMenu("&Scoring")
        scoring_menu.addAction(self.pause_action)
        scoring_menu.addAction(self.cancel_action)
        self._rebuild_recent_menu()

    def _connect(self) -> None:
        self.controller.files_found.connect(self._on_files_found)
        self.controller.model_ready.connect(self._on_model_ready)
        self.controller.results.connect(self._on_results)
        self.controller.progress.connect(self._on_progress)
        self.controller.download.connect(self._on_download)
        self.controller.failed.connect(self._on_failed)
        self.controller.finished.connect(self._on_finished)
        self.controller.running_changed.connect(self._on_running_changed)
        self.capture_times.times.connect(self.model.set_capture_times)
        self.previews.ready.connect(self._on_preview_ready)
        self.previews.failed.connect(self._on_preview_failed)
        self.model.layout_updated.connect(self._update_status)
        self.model.modelReset.connect(self._update_empty_state)
        self.grid.selectionModel().currentChanged.connect(self._on_current_changed)
        self.grid.activated.connect(lambda _ix: self.enter_full_view())
        self.sort_combo.currentIndexChanged.connect(self._on_sort_key_changed)
        self.order_button.toggled.connect(self._apply_sort)
        for chip in self.level_chips.values():
            chip.toggled.connect(self._apply_filter)
        self.min_score.valueChanged.connect(self._apply_filter)
        self.full_view.step.connect(self.step)
        self.full_view.closed.connect(self.leave_full_view)
        self.errors_list.itemActivated.connect(self._on_error_activated)

    def _restore_state(self) -> None:
        s = self.settings
        if s.geometry:
            self.restoreGeometry(QByteArray.fromBase64(s.geometry.encode()))
        if s.splitter:
            self.splitter.restoreState(QByteArray.fromBase64(s.splitter.encode()))
        index = self.sort_combo.findData(s.sort_key)
        self.sort_combo.blockSignals(True)
        self.sort_combo.setCurrentIndex(max(0, index))
        self.sort_combo.blockSignals(False)
        self.order_button.blockSignals(True)
        self.order_button.setChecked(s.sort_descending)
        self.order_button.blockSignals(False)
        for level, chip in self.level_chips.items():
            chip.blockSignals(True)
            chip.setChecked(level in s.levels)
            chip.blockSignals(False)
        self.min_score.blockSignals(True)
        self.min_score.setValue(s.min_score)
        self.min_score.blockSignals(False)
        self._apply_sort()
        self._apply_filter()

    def save_state(self) -> None:
        """Window size, splitter, sort and filter go into the settings file."""
        s = self.settings
        s.geometry = bytes(self.saveGeometry().toBase64().data()).decode()
        s.splitter = bytes(self.splitter.saveState().toBase64().data()).decode()
        s.sort_key = self.model.sort_key
        s.sort_descending = self.model.descending
        s.levels = [lv for lv, chip in self.level_chips.items() if chip.isChecked()]
        s.min_score = float(self.min_score.value())
        s.tile_size = self.grid.preferred_tile
        s.save()

    # ================================================================== opening folders

    def choose_folder(self) -> None:
        start = self.paths[0] if self.paths else (self.settings.recent_folders or [str(Path.home())])[0]
        folder = QFileDialog.getExistingDirectory(self, "Open a folder of photos", start)
        if folder:
            self.open_paths([folder])

    def open_paths(self, paths: Sequence[str | os.PathLike]) -> None:
        """Show these folders/files and start scoring them (cached photos appear at once)."""
        self.paths = [os.path.abspath(os.fspath(p)) for p in paths]
        if not self.paths:
            return
        if len(self.paths) == 1 and os.path.isdir(self.paths[0]):
            self.settings.add_recent(self.paths[0])
            self.settings.save()  # the recent list survives even if the app is killed
            self._rebuild_recent_menu()
        name = Path(self.paths[0]).name if len(self.paths) == 1 else f"{len(self.paths)} items"
        self.setWindowTitle(f"{name} — HumanAes")
        self.thumbnails.clear()
        self.previews.clear()
        self.capture_times.cancel()
        self.model.set_photos([])
        self.panel.show_photo(None)
        self.errors_list.clear()
        self._update_errors_button()
        self.banner.hide()
        self.status_label.setText("Looking for photos…")
        self._start_scoring()

    def rescan(self) -> None:
        """Look for new or changed photos; unchanged ones come from the cache without the model."""
        if self.paths:
            current = self.current_photo()
            self._pending_select = None if current is None else str(current.path)
            self.open_paths(self.paths)

    def _start_scoring(self) -> None:
        self.last_progress = Progress()
        self.progress_bar.setRange(0, 0)
        self.progress_bar.show()
        self.rate_label.setText("")
        self.controller.start(self.paths, self.settings.scoring, self.settings.recursive)

    def _rebuild_recent_menu(self) -> None:
        self.recent_menu.clear()
        for folder in self.settings.recent_folders:
            action = self.recent_menu.addAction(folder)
            action.triggered.connect(lambda _checked=False, f=folder: self.open_paths([f]))
        self.recent_menu.setEnabled(bool(self.settings.recent_folders))

    # ================================================================== worker signals

    def _on_files_found(self, files: list[Path], problems: list[tuple[str, str]]) -> None:
        root = Path(self.paths[0]) if len(self.paths) == 1 and os.path.isdir(self.paths[0]) else None
        self.model.set_photos(files, root)
        self.capture_times.scan(files)
        for path, reason in problems:
            self._add_error(path, reason)
        if not files:
            self.status_label.setText("No photos found here.")
        self.progress_bar.setRange(0, max(1, len(files)))
        self.progress_bar.setValue(0)
        select, self._pending_select = self._pending_select, None
        row = self.model.row_of(select) if select else -1
        if self.model.rowCount() and not self.grid.currentIndex().isValid():
            self.select_row(max(row, 0))

    def _on_model_ready(self, info: ModelInfo) -> None:
        self.model_info = info
        self._detail_timer.start()

    def _on_results(self, batch: list[tuple[str, Any, str | None]]) -> None:
        changed = self.model.update_results(batch)
        for photo in changed:
            if photo.error is not None:
                self._add_error(str(photo.path), photo.error)
        self._update_status()
        if changed:
            self._detail_timer.start()  # the folder average moved: the attribution of the shown photo too

    def _on_progress(self, progress: Progress) -> None:
        self.last_progress = progress
        if progress.total:
            self.progress_bar.setRange(0, progress.total)
            self.progress_bar.setValue(progress.done)
        if progress.loading_model:
            self.rate_label.setText("Loading the model…")
        elif progress.paused:
            self.rate_label.setText("Paused")
        elif progress.rate > 0:
            self.rate_label.setText(
                f"{progress.rate:.1f} photos/s  ·  {format_duration(progress.eta_s)} left"
            )
        elif progress.cached and progress.done < progress.total:
            self.rate_label.setText(f"{progress.cached} from cache")
        self.pause_action.setText("Resume" if progress.paused else "Pause")

    def _on_download(self, description: str, done: float, total: float) -> None:
        if self._download_dialog is None:
            self._download_dialog = DownloadDialog(self)
        self._download_dialog.report(description, done, total)

    def _on_failed(self, message: str) -> None:
        """One clear, non-modal message; browsing, sorting and cached scores keep working."""
        self.banner_text.setText(message)
        self.banner.show()
        self.status_label.setText("Scoring stopped — see the message above the grid.")

    def _on_finished(self, cancelled: bool) -> None:
        p = self.last_progress
        if self._download_dialog is not None:
            self._download_dialog.hide()
        self._update_status()
        parts = [f"{p.scored} scored", f"{p.cached} from cache"]
        if p.failed:
            parts.append(f"{p.failed} skipped")
        prefix = "Cancelled — scores so far are saved" if cancelled else "Done"
        self.rate_label.setText(f"{prefix}: " + ", ".join(parts) if p.total else "")

    def _on_running_changed(self, running: bool) -> None:
        self.pause_action.setEnabled(running)
        self.cancel_action.setEnabled(running)
        self.pause_action.setText("Pause")
        if not running:
            self.progress_bar.hide()

    def _on_preview_ready(self, path: str) -> None:
        photo = self.current_photo()
        if photo is not None and str(photo.path) == path:
            pix = self.previews.peek(photo.path)
            self.panel.set_preview(pix)
            if self.stack.currentWidget() is self.full_view:
                self.full_view.set_pixmap(pix)

    def _on_preview_failed(self, path: str, reason: str) -> None:
        photo = self.current_photo()
        if photo is not None and str(photo.path) == path:
            self.panel.set_preview(None, f"Cannot show this file: {reason}")

    # ================================================================== selection and detail

    def current_photo(self) -> Photo | None:
        index = self.grid.currentIndex()
        return self.model.photo(index.row()) if index.isValid() else None

    def select_row(self, row: int) -> None:
        index = self.model.index(row)
        if index.isValid():
            self.grid.selectionModel().setCurrentIndex(
                index, QItemSelectionModel.SelectionFlag.ClearAndSelect
            )
            self.grid.scrollTo(index)

    def select_path(self, path: str | Path) -> bool:
        row = self.model.row_of(path)
        if row >= 0:
            self.select_row(row)
        return row >= 0

    def _on_current_changed(self, current: QModelIndex, _previous: QModelIndex) -> None:
        self.refresh_detail()
        photo = self.current_photo()
        if photo is None:
            return
        pix = self.previews.get(photo.path)
        if pix is None:
            self.panel.set_preview(self.thumbnails.peek(photo.path), "Loading preview…")
        else:
            self.panel.set_preview(pix)
        if self.stack.currentWidget() is self.full_view:
            self._update_full_view()

    def refresh_detail(self) -> None:
        """Re-fill the panel for the current photo (its card, the folder average, the attribution)."""
        photo = self.current_photo()
        if photo is None:
            self.panel.show_photo(None)
            return
        attributions, sentence = self.attribution_for(photo)
        self.panel.show_photo(photo, self.model.mean_dims(), attributions, sentence)

    def attribution_for(self, photo: Photo) -> tuple[dict[str, Any] | None, str]:
        """Exact Shapley attribution of the photo's expert parents against the folder's mean card."""
        info = self.model_info
        card = photo.card
        reference = self.model.reference()
        if (
            info is None
            or info.attributor is None
            or card is None
            or not card.expert_raw
            or reference is None
        ):
            return None, ""
        if card.model and card.model != info.fingerprint:
            return None, ""  # never explain a card with another model's FFNs
        from humanaes_core.attribution import explain

        attributions = info.attributor.attribute(card, reference)
        return attributions, explain(attributions, "the folder average")

    # ================================================================== sorting and filtering

    def _on_sort_key_changed(self) -> None:
        key = self.sort_combo.currentData()
        self.order_button.blockSignals(True)
        self.order_button.setChecked(key not in ASCENDING_BY_DEFAULT)
        self.order_button.blockSignals(False)
        self._apply_sort()

    def _apply_sort(self) -> None:
        key = str(self.sort_combo.currentData())
        descending = self.order_button.isChecked()
        if key in ASCENDING_BY_DEFAULT:
            self.order_button.setText("Z → A" if descending else "A → Z")
            if key == "captured":
                self.order_button.setText("newest first" if descending else "oldest first")
        else:
            self.order_button.setText("best first" if descending else "worst first")
        self.delegate.sort_key = key
        self.model.set_sort(key, descending)
        self._scroll_to_current()

    def set_sort(self, key: str, descending: bool | None = None) -> None:
        """Programmatic sort (tests, keyboard): like picking it in the toolbar."""
        self.sort_combo.setCurrentIndex(self.sort_combo.findData(key))
        if descending is not None:
            self.order_button.setChecked(descending)

    def _apply_filter(self) -> None:
        levels = [lv for lv, chip in self.level_chips.items() if chip.isChecked()]
        self.model.set_filter(levels, self.min_score.value())
        self._scroll_to_current()

    def _scroll_to_current(self) -> None:
        index = self.grid.currentIndex()
        if index.isValid():
            self.grid.scrollTo(index)
        elif self.model.rowCount():
            self.select_row(0)

    # ================================================================== full-screen view

    def enter_full_view(self) -> None:
        if self.current_photo() is None:
            return
        self._was_maximized = self.isMaximized()
        self.stack.setCurrentWidget(self.full_view)
        self.menuBar().hide()
        self.toolbar.hide()
        self.statusBar().hide()
        self.showFullScreen()
        self._update_full_view()
        self.full_view.setFocus()

    def leave_full_view(self) -> None:
        if self.stack.currentWidget() is not self.full_view:
            return
        self.stack.setCurrentWidget(self.splitter)
        self.menuBar().show()
        self.toolbar.show()
        self.statusBar().show()
        if self._was_maximized:
            self.showMaximized()
        else:
            self.showNormal()
        self.grid.setFocus()

    @property
    def in_full_view(self) -> bool:
        return self.stack.currentWidget() is self.full_view

    def step(self, delta: int) -> None:
        """Move the current photo by `delta` in the grid's order (arrow keys in full screen)."""
        row = self.grid.currentIndex().row()
        new = min(max(row + delta, 0), self.model.rowCount() - 1)
        if new != row and new >= 0:
            self.select_row(new)

    def _update_full_view(self) -> None:
        photo = self.current_photo()
        row = self.grid.currentIndex().row()
        position = f"{row + 1} / {self.model.rowCount()}" if photo else ""
        pix = None if photo is None else (self.previews.get(photo.path) or self.thumbnails.peek(photo.path))
        self.full_view.set_photo(photo, pix, position)

    def keyPressEvent(self, event: Any) -> None:
        if event.key() == Qt.Key.Key_Escape and self.in_full_view:
            self.leave_full_view()
            return
        super().keyPressEvent(event)

    # ================================================================== scoring control

    def toggle_pause(self) -> None:
        if self.controller.running:
            self.controller.toggle_pause()
            self.pause_action.setText("Resume" if self.controller.paused else "Pause")
            self.rate_label.setText("Paused" if self.controller.paused else "Resuming…")

    def cancel_scoring(self) -> None:
        if self.controller.running:
            self.controller.cancel()
            self.status_label.setText("Cancelling after the current batch…")

    def open_settings(self) -> None:
        dialog = SettingsDialog(self.settings, self)
        if dialog.exec():
            self.apply_settings(dialog.result_settings())

    def apply_settings(self, new: AppSettings) -> None:
        """Take new settings; another model or scoring setup clears the scores and re-scores lazily."""
        scoring_changed = new.scoring != self.settings.scoring
        rescan = scoring_changed or new.recursive != self.settings.recursive
        self.settings.scoring = new.scoring
        self.settings.recursive = new.recursive
        self.settings.save()
        if scoring_changed:
            # Cards are keyed by model and settings in the cache; on screen they are cleared, so a card of
            # the old model can never sit next to one of the new model.
            self.controller.drop_model()
            self.model_info = None
            self.model.clear_scores()
            self.errors_list.clear()
            self._update_errors_button()
            self.refresh_detail()
        if rescan and self.paths:
            self.banner.hide()
            self._start_scoring()

    # ================================================================== skipped files

    def _add_error(self, path: str, reason: str) -> None:
        item = QListWidgetItem(f"{Path(path).name}  —  {reason}")
        item.setToolTip(path)
        item.setData(Qt.ItemDataRole.UserRole, path)
        item.setForeground(theme.NEGATIVE)
        self.errors_list.addItem(item)
        self._update_errors_button()

    def _update_errors_button(self) -> None:
        n = self.errors_list.count()
        self.errors_button.setText(f"{n} skipped")
        self.errors_button.setVisible(n > 0)

    def toggle_errors(self) -> None:
        self.errors_dock.setVisible(not self.errors_dock.isVisible())

    def _on_error_activated(self, item: QListWidgetItem) -> None:
        self.select_path(item.data(Qt.ItemDataRole.UserRole))
        self.grid.setFocus()

    # ================================================================== misc

    def zoom_tiles(self, delta: int) -> None:
        self.grid.set_preferred_tile(self.grid.preferred_tile + delta)

    def _update_status(self) -> None:
        counts = self.model.counts()
        if counts["total"] == 0:
            return
        shown = counts["shown"]
        text = f"{shown} of {counts['total']} photos shown" if shown != counts["total"] else f"{shown} photos"
        text += f"  ·  {counts['scored']} scored"
        if counts["pending"]:
            text += f", {counts['pending']} waiting"
        if self.model_info is not None:
            text += f"  ·  model {Path(self.model_info.settings.model).name}"
        self.status_label.setText(text)
        self._update_empty_state()

    def _update_empty_state(self) -> None:
        empty = self.model.rowCount() == 0
        self.empty_hint.setVisible(empty)
        self.grid.setVisible(not empty)
        if empty and self.model.photos and self.model.filter.active:
            self.empty_hint.setText("No photo passes the level and minimum-score filter.")
            self.empty_hint.setVisible(True)
        elif empty:
            self.empty_hint.setText("Open a folder of photos (Ctrl+O) or drop one here.")

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:
        if event.mimeData().hasUrls() and all(u.isLocalFile() for u in event.mimeData().urls()):
            event.acceptProposedAction()

    def dropEvent(self, event: QDropEvent) -> None:
        paths = [u.toLocalFile() for u in event.mimeData().urls() if u.isLocalFile()]
        if paths:
            event.acceptProposedAction()
            self.open_paths(paths)

    def closeEvent(self, event: QCloseEvent) -> None:
        if self.in_full_view:
            self.leave_full_view()
        self.save_state()
        self.capture_times.cancel()
        self.controller.shutdown()
        self.thumbnails.clear()
        self.previews.clear()
        self.thumbnails.wait(3000)
        self.previews.wait(3000)
        self.capture_times.wait(3000)
        super().closeEvent(event)
