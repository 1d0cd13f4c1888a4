"""The main window: folder grid, detail panel, scoring progress, full-screen view, and culling.

It wires the pieces together and holds no scoring or culling logic: files, scores, thumbnails,
decisions, editors' ratings and bursts arrive as signals from background workers, so the window stays
responsive whatever the model, the database or the disk is doing.

Culling keys (as in Lightroom and darktable): P pick, X reject, U unflag, 0–5 stars, Ctrl+Z undo,
Ctrl+Shift+Z / Ctrl+Y redo; they act on the selected photos in the grid, the photo in full screen, or
the chosen frame in the compare view (Ctrl+G).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import replace
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
    QMessageBox,
    QProgressBar,
    QPushButton,
    QSizePolicy,
    QSplitter,
    QStackedWidget,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from humanaes_core.culling import SidecarReport, write_sidecar_entries
from humanaes_core.errors import HumanAesError
from humanaes_core.schema import LEVELS
from humanaes_core.store import Change, Flag

from . import theme
from .background import Generation, Job, Lane
from .compare import CompareView
from .cull_dialogs import AutoCullDialog, CullParams, SidecarDialog
from .culling import (
    MANUAL_SOURCES,
    DecisionKeeper,
    FolderScanner,
    History,
    cull_plan,
    export_plan,
    picks_plan,
    sidecar_entries,
)
from .detail import DetailPanel
from .dialogs import DownloadDialog, SettingsDialog
from .grid import PhotoGrid
from .photos import SORT_KEYS, Photo, PhotoModel
from .settings import AppSettings, thumbnail_dir
from .thumbnails import CaptureTimeScanner, ImageLoader
from .training import TrainDialog
from .viewer import FullView
from .widgets import format_duration
from .worker import ModelInfo, Progress, ScoringController

THUMBNAIL_SIZE = 320
PREVIEW_SIZE = 1800
ASCENDING_BY_DEFAULT = ("name", "captured")
FLAG_CHIPS = (
    ("pick", "Picks", "Show picked photos", theme.PICK),
    ("none", "Unflagged", "Show photos neither picked nor rejected", theme.MUTED),
    ("reject", "Rejects", "Show rejected photos", theme.REJECT),
)
FLAG_WORDS = {Flag.PICK: "pick", Flag.REJECT: "reject", Flag.NONE: "unflag"}


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
        self.decisions = DecisionKeeper(self)
        self.scanner = FolderScanner(self)
        self.jobs = Lane("humanaes-jobs", 1, self)
        self._folder = Generation()  # decisions loaded for an earlier folder are dropped
        self._last_row: int | None = None
        self._comparing = False
        self._train_dialog: TrainDialog | None = None
        self.last_notice = ""
        self.last_sidecar_report: SidecarReport | None = None
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

        # Culling: single keys, as in Lightroom and darktable. Text fields swallow them while focused.
        self.pick_action = self._action(
            "Pick", "P", lambda: self.set_flag(Flag.PICK), "Pick the selected photos"
        )
        self.reject_action = self._action(
            "Reject", "X", lambda: self.set_flag(Flag.REJECT), "Reject the selected photos"
        )
        self.unflag_action = self._action(
            "Unflag", "U", lambda: self.set_flag(Flag.NONE), "Neither picked nor rejected"
        )
        self.star_actions = [
            self._action(
                "No Stars" if n == 0 else f"{n} Star{'s' if n > 1 else ''}",
                str(n),
                lambda _checked=False, n=n: self.set_stars(n),
                "Clear the stars" if n == 0 else f"Rate {n} star{'s' if n > 1 else ''}",
            )
            for n in range(6)
        ]
        self.undo_action = self._action("Undo", QKeySequence.StandardKey.Undo, self.undo)
        self.redo_action = self._action("Redo", "Ctrl+Shift+Z", self.redo, "Redo")
        self.redo_action.setShortcuts([QKeySequence("Ctrl+Shift+Z"), QKeySequence("Ctrl+Y")])
        self.undo_action.setEnabled(False)
        self.redo_action.setEnabled(False)
        self.auto_cull_action = self._action(
            "Auto-Cull…", "Ctrl+Shift+A", self.open_auto_cull, "Keep the best, reject the rest"
        )
        self.collapse_action = self._action(
            "Collapse Bursts",
            "Ctrl+B",
            lambda checked=False: self.set_collapsed(bool(checked)),
            "Show each burst as its best-scoring photo",
        )
        self.collapse_action.setCheckable(True)
        self.compare_action = self._action(
            "Compare Burst", "Ctrl+G", self.toggle_compare, "The frames of this burst side by side"
        )
        self.write_xmp_action = self._action(
            "Write XMP Sidecars…",
            "Ctrl+Shift+S",
            self.write_sidecars,
            "Ratings for Lightroom, darktable, digiKam",
        )
        self.copy_picks_action = self._action("Copy Picks to…", None, lambda: self.copy_picks(move=False))
        self.move_picks_action = self._action("Move Picks to…", None, lambda: self.copy_picks(move=True))
        self.export_action = self._action(
            "Export Cards (CSV/JSON)…", "Ctrl+Shift+E", self.export_cards, "Every score card and decision"
        )
        self.train_action = self._action(
            "Train on My Ratings…",
            None,
            self.train_on_ratings,
            "Fine-tune the model on your stars and rejects",
        )

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

        # Culling bar: what to show by decision, bursts, and the culling commands.
        self.addToolBarBreak()
        cull_bar = self.cull_bar = self.addToolBar("Culling")
        cull_bar.setObjectName("cullToolbar")
        cull_bar.setMovable(False)
        cull_bar.setIconSize(QSize(16, 16))
        cull_bar.addWidget(QLabel("Show"))
        self.flag_chips: dict[str, QToolButton] = {}
        for key, text, tip, colour in FLAG_CHIPS:
            chip = QToolButton()
            chip.setObjectName("levelChip")
            chip.setCheckable(True)
            chip.setChecked(True)
            chip.setText(text)
            chip.setToolTip(tip)
            chip.setStyleSheet(
                f"QToolButton#levelChip:checked {{ border-color: {colour.name()}; color: {colour.name()}; }}"
            )
            cull_bar.addWidget(chip)
            self.flag_chips[key] = chip
        cull_bar.addWidget(QLabel("Stars"))
        self.stars_combo = QComboBox()
        self.stars_combo.addItem("any", 0)
        for n in range(1, 6):
            self.stars_combo.addItem("★" * n + ("" if n == 5 else " and up"), n)
        self.stars_combo.setToolTip("Hide photos with fewer stars than this")
        cull_bar.addWidget(self.stars_combo)
        cull_bar.addSeparator()
        cull_bar.addAction(self.collapse_action)
        cull_bar.addAction(self.compare_action)
        cull_bar.addSeparator()
        cull_bar.addAction(self.auto_cull_action)
        cull_spacer = QWidget()
        cull_spacer.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Preferred)
        cull_bar.addWidget(cull_spacer)
        cull_bar.addAction(self.write_xmp_action)
        cull_bar.addAction(self.train_action)

        # Grid
        self.grid = PhotoGrid(self.settings.tile_size)
        self.delegate = self.grid.tiles
        self.grid.setModel(self.model)
        self.compare_view = CompareView(lambda photo: self.thumbnails.get(photo.path))
        self.compare_view.hide()

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
        left_layout.addWidget(self.compare_view, 1)

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
        self.cull_label = QLabel()  # burst search progress, then how many bursts
        self.errors_button = QToolButton()
        self.errors_button.setText("0 skipped")
        self.errors_button.setToolTip("Show the files that could not be scored (Ctrl+E)")
        self.errors_button.clicked.connect(self.toggle_errors)
        self.errors_button.hide()
        status.addWidget(self.status_label, 1)
        status.addPermanentWidget(self.cull_label)
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
        edit_menu = menu.addMenu("&Edit")
        edit_menu.addAction(self.undo_action)
        edit_menu.addAction(self.redo_action)
        view_menu = menu.addMenu("&View")
        view_menu.addAction(self.full_action)
        view_menu.addAction(self.errors_action)
        view_menu.addSeparator()
        view_menu.addAction(self.zoom_in_action)
        view_menu.addAction(self.zoom_out_action)
        view_menu.addSeparator()
        view_menu.addAction(self.collapse_action)
        view_menu.addAction(self.compare_action)
        photo_menu = menu.addMenu("&Photo")
        photo_menu.addAction(self.pick_action)
        photo_menu.addAction(self.reject_action)
        photo_menu.addAction(self.unflag_action)
        rating_menu = photo_menu.addMenu("&Rating")
        for action in self.star_actions:
            rating_menu.addAction(action)
        photo_menu.addSeparator()
        photo_menu.addAction(self.auto_cull_action)
        photo_menu.addSeparator()
        photo_menu.addAction(self.train_action)
        export_menu = menu.addMenu("E&xport")
        export_menu.addAction(self.write_xmp_action)
        export_menu.addAction(self.copy_picks_action)
        export_menu.addAction(self.move_picks_action)
        export_menu.addSeparator()
        export_menu.addAction(self.export_action)
        scoring_menu = menu.addMenu("&Scoring")
        scoring_menu.addAction(self.pause_action)
        scoring_menu.addAction(self.cancel_action)
        self._rebuild_recent_menu()

    def _connect(self) -> None:
        self.controller.files_found.connect(self._on_files_found)
        self.controller.hashes.connect(self._on_hashes)
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
        self.decisions.loaded.connect(self._on_decisions_loaded)
        self.decisions.changed.connect(self._on_decisions_changed)
        self.decisions.history_changed.connect(self._on_history)
        self.decisions.failed.connect(self._on_decisions_failed)
        self.scanner.imported.connect(lambda found: self.model.set_decisions(found, imported=True))
        self.scanner.groups_found.connect(self._on_groups)
        self.scanner.progress.connect(self._on_scan_progress)
        self.model.decisions_updated.connect(self._on_decisions_shown)
        self.model.layout_updated.connect(self._keep_row)
        for chip in self.flag_chips.values():
            chip.toggled.connect(self._apply_decision_filter)
        self.stars_combo.currentIndexChanged.connect(self._apply_decision_filter)
        self.thumbnails.ready.connect(self._on_thumbnail_ready)
        self.compare_view.current_changed.connect(lambda _photo: self._show_current())
        self.compare_view.closed.connect(self.close_compare)
        self.panel.compare_requested.connect(self.open_compare)

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
        for key, chip in self.flag_chips.items():
            chip.blockSignals(True)
            chip.setChecked(key in s.flags)
            chip.blockSignals(False)
        self.stars_combo.blockSignals(True)
        self.stars_combo.setCurrentIndex(max(0, self.stars_combo.findData(s.min_stars)))
        self.stars_combo.blockSignals(False)
        self.collapse_action.setChecked(s.collapse_bursts)
        self.model.set_collapsed(s.collapse_bursts)
        self._apply_sort()
        self._apply_filter()
        self._apply_decision_filter()

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
        s.flags = [key for key, chip in self.flag_chips.items() if chip.isChecked()]
        s.min_stars = int(self.stars_combo.currentData())
        s.collapse_bursts = self.model.collapsed
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
        self.close_compare()
        self._folder.advance()  # decisions, ratings and bursts of the previous folder are dropped
        self.scanner.cancel()
        self.cull_label.setText("")
        self._last_row = None
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
        if self._comparing:
            return self.compare_view.current()
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
        if current.isValid():
            self._last_row = current.row()
        self._show_current()

    def _show_current(self) -> None:
        """Detail panel, preview and full view for the current photo (grid, or the compare view's choice)."""
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
        self._refresh_culling_panel()

    def _refresh_culling_panel(self) -> None:
        photo = self.current_photo()
        if photo is None:
            return
        size = len(self.model.group_members(photo))
        self.panel.set_culling(photo, size, size > 1 and self.model.best_of_group(photo) is photo)
        self.panel.compare_button.setVisible(not self._comparing)

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
        if self._comparing:
            chosen = self.compare_view.current()
            self.close_compare()
            if chosen is not None:
                self.select_path(chosen.path)
        if self.current_photo() is None:
            return
        self._was_maximized = self.isMaximized()
        self.stack.setCurrentWidget(self.full_view)
        self.menuBar().hide()
        self.toolbar.hide()
        self.cull_bar.hide()
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
        self.cull_bar.show()
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

    # ================================================================== culling: decisions

    def notice(self, text: str, msecs: int = 10000) -> None:
        """A short message in the status bar (never a dialog): what a key or a job just did."""
        self.last_notice = text
        self.statusBar().showMessage(text, msecs)

    def _on_hashes(self, hashes: dict[str, str]) -> None:
        """The folder's content hashes are known: fetch its stored decisions."""
        self.model.set_hashes(hashes)
        self.decisions.load(sorted(set(hashes.values())), self._folder)

    def _on_decisions_loaded(self, found: dict) -> None:
        self.model.set_decisions(found)
        undecided: list[tuple[str, Path]] = []
        everything: list[tuple[str, Path]] = []
        seen: set[str] = set()
        for photo in self.model.photos:
            h = photo.content_hash
            if h is None:
                continue
            everything.append((h, photo.path))
            if h not in found and h not in seen:
                undecided.append((h, photo.path))
            seen.add(h)
        if undecided:
            self.scanner.import_ratings(undecided)  # editors' ratings show until the photographer decides
        if everything:
            self.cull_label.setText("Finding bursts…")
            self.scanner.find_bursts(everything)

    def selected_photos(self) -> list[Photo]:
        """What the culling keys act on: the compare view's frame, the full-screen photo, or the grid's
        selection (the current photo when nothing is selected)."""
        if self._comparing or self.in_full_view:
            photo = self.current_photo()
            return [photo] if photo is not None else []
        rows = sorted({ix.row() for ix in self.grid.selectionModel().selectedIndexes()})
        photos = [p for p in (self.model.photo(r) for r in rows) if p is not None]
        if not photos:
            current = self.current_photo()
            photos = [current] if current is not None else []
        return photos

    def _decide(self, description: str, **fields: Any) -> None:
        items: list[tuple[str, Path]] = []
        fallback = {}
        seen: set[str] = set()
        waiting = 0
        for photo in self.selected_photos():
            h = photo.content_hash
            if h is None:
                waiting += 1
                continue
            if h in seen:
                continue
            seen.add(h)
            items.append((h, photo.path))
            if photo.xmp is not None:
                fallback[h] = photo.xmp
        if waiting:
            self.notice("This photo is still being read; try again in a moment.")
        if items:
            self.decisions.update(items, description, fallback, **fields)

    def set_flag(self, flag: Flag) -> None:
        """P / X / U on the selection."""
        self._decide(FLAG_WORDS[Flag(flag)], flag=Flag(flag))

    def set_stars(self, stars: int) -> None:
        """0-5 on the selection; 0 clears the stars."""
        self._decide(
            f"{stars} star{'s' if stars != 1 else ''}" if stars else "clear stars", stars=stars or None
        )

    def undo(self) -> None:
        self.decisions.undo()

    def redo(self) -> None:
        self.decisions.redo()

    def _on_decisions_changed(self, changes: list[Change], what: str) -> None:
        shown = self.model.set_decisions({c.content_hash: c.decision for c in changes})
        n = len({c.content_hash for c in changes})
        if not changes:
            if what in ("undo", "redo"):
                self.notice(f"Nothing to {what}.")
            return
        text = f"{what[:1].upper()}{what[1:]}: {n} photo{'s' if n != 1 else ''}"
        if not shown:
            text += " (in another folder)"
        self.notice(text)

    def _on_decisions_failed(self, message: str) -> None:
        """The database refused a write (disk full, read-only, newer schema): one banner, no dialog."""
        self.banner_text.setText(message)
        self.banner.show()

    def _on_history(self, history: History) -> None:
        self.undo_action.setEnabled(history.can_undo)
        self.redo_action.setEnabled(history.can_redo)
        self.undo_action.setText(f"Undo {history.undo_text}" if history.undo_text else "Undo")
        self.redo_action.setText(f"Redo {history.redo_text}" if history.redo_text else "Redo")

    def _on_decisions_shown(self) -> None:
        self._update_status()
        self._refresh_culling_panel()
        if self.in_full_view:
            self.full_view.update()
        if self._comparing:
            self.compare_view.update()

    def _apply_decision_filter(self) -> None:
        flags = [key for key, chip in self.flag_chips.items() if chip.isChecked()]
        self.model.set_decision_filter(flags, int(self.stars_combo.currentData()))
        self._scroll_to_current()

    def set_decision_filter(self, flags: Sequence[str], min_stars: int = 0) -> None:
        """Programmatic flag/stars filter (tests): like clicking the chips."""
        for key, chip in self.flag_chips.items():
            chip.blockSignals(True)
            chip.setChecked(key in flags)
            chip.blockSignals(False)
        self.stars_combo.blockSignals(True)
        self.stars_combo.setCurrentIndex(max(0, self.stars_combo.findData(min_stars)))
        self.stars_combo.blockSignals(False)
        self._apply_decision_filter()

    def _keep_row(self) -> None:
        """A photo that a decision filtered out (reject it while rejects are hidden) hands the selection
        to the photo that took its place, so culling goes on with the next photo."""
        if self._last_row is None or self.grid.currentIndex().isValid() or not self.model.rowCount():
            return
        self.select_row(min(self._last_row, self.model.rowCount() - 1))

    # ================================================================== culling: bursts

    def _on_groups(self, groups: list) -> None:
        self.model.set_groups(groups)
        n = self.model.group_count()
        self.cull_label.setText(f"{n} burst{'s' if n != 1 else ''}" if n else "no bursts")
        self._refresh_culling_panel()
        if self._comparing:
            photo = self.compare_view.current()
            members = self.model.group_members(photo) if photo is not None else []
            if len(members) > 1:
                self.compare_view.set_members(members, self.model.best_of_group(photo), photo)
            else:
                self.close_compare()

    def _on_scan_progress(self, what: str, done: int, total: int) -> None:
        self.cull_label.setText(f"{what} {done}/{total}")

    def set_collapsed(self, collapsed: bool) -> None:
        """Show each burst as its best-scoring photo (with a ×N badge), or every photo."""
        self.collapse_action.setChecked(collapsed)
        self.model.set_collapsed(collapsed)
        self.settings.collapse_bursts = collapsed
        if collapsed and not self.model.has_groups:
            self.notice("Still finding bursts…" if self.scanner.grouping else "No bursts in this folder.")
        self._scroll_to_current()

    def toggle_compare(self) -> None:
        if self._comparing:
            self.close_compare()
        else:
            self.open_compare()

    def open_compare(self) -> None:
        """The current photo's burst side by side (Ctrl+G)."""
        photo = self.current_photo()
        if photo is None:
            return
        members = self.model.group_members(photo)
        if len(members) < 2:
            self.notice(
                "Still finding bursts…"
                if self.scanner.grouping
                else f"{photo.path.name} is not part of a burst."
            )
            return
        if self.in_full_view:
            self.leave_full_view()
        self._comparing = True
        self.compare_view.set_members(members, self.model.best_of_group(photo), photo)
        self.grid.hide()
        self.empty_hint.hide()
        self.compare_view.show()
        self.compare_view.setFocus()
        self._show_current()

    def close_compare(self) -> None:
        """Back to the grid, on the frame chosen in the compare view (or its burst's tile when collapsed)."""
        if not self._comparing:
            return
        chosen = self.compare_view.current()
        self._comparing = False
        self.compare_view.hide()
        self._update_empty_state()
        if chosen is not None and not self.select_path(chosen.path):
            self.select_path(self.model.best_of_group(chosen).path)
        self.grid.setFocus()
        self._show_current()

    @property
    def comparing(self) -> bool:
        return self._comparing

    def _on_thumbnail_ready(self, _path: str) -> None:
        if self._comparing:
            self.compare_view.update()

    # ================================================================== culling: auto-cull

    def _cull_groups(self, params: CullParams) -> list[list[Path]] | None:
        if params.per != "burst":
            return None
        if self.scanner.grouping:
            raise HumanAesError("bursts are still being found; try again in a moment, or rank per folder")
        return self.model.groups()

    def preview_cull(self, params: CullParams, photos: Sequence[Photo] | None = None) -> tuple[str, bool]:
        """What auto-cull with these settings would do, in words; and whether it can be applied.

        `photos`: a snapshot to plan on (the dialog computes previews on a worker thread from one);
        default: the folder as it is now.
        """
        photos = list(self.model.photos if photos is None else photos)
        try:
            groups = self._cull_groups(params)
            plan = cull_plan(
                photos,
                keep_top_percent=params.keep_top_percent,
                min_level=params.min_level,
                per=params.per,
                groups=groups,
            )
        except HumanAesError as e:
            return f"Cannot cull: {e}", False
        if not plan:
            return "No photo is scored yet: nothing to cull.", False
        by_path = {p.path: p for p in photos}
        manual = [
            path
            for path in plan
            if (rating := by_path[path].rating) is not None and rating.source in MANUAL_SOURCES
        ]
        kept = sum(d.keep for d in plan.values())
        text = f"Of {len(plan)} scored photos, {kept} would be picked and {len(plan) - kept} rejected."
        if manual:
            if params.overwrite_manual:
                text += f" {len(manual)} decisions of your own would be replaced."
            else:
                picked = kept - sum(plan[p].keep for p in manual)
                rejected = len(plan) - len(manual) - picked
                text += (
                    f" {len(manual)} photos you decided yourself stay as they are "
                    f"(so {picked} picked, {rejected} rejected by auto-cull)."
                )
        unscored = sum(1 for p in photos if p.card is None and p.error is None)
        if unscored:
            text += f" {unscored} photos are not scored yet and are left alone."
        return text, True

    def open_auto_cull(self) -> None:
        """Photo ▸ Auto-Cull…: the dialog previews on a snapshot of the folder (ranking 10,000 photos
        per folder takes a few hundred milliseconds: too long for the UI thread on every spin-box step)."""
        snapshot = [replace(p) for p in self.model.photos]
        dialog = AutoCullDialog(self.settings, lambda params: self.preview_cull(params, snapshot), self)
        try:
            accepted = dialog.exec()
        finally:
            dialog.stop_previews()
            dialog.deleteLater()
        if accepted:
            dialog.store(self.settings)
            self.settings.save()
            self.apply_auto_cull(dialog.params())

    def apply_auto_cull(self, params: CullParams) -> None:
        """Pick the keepers, reject the rest: one undo step; the photographer's own decisions stay unless
        `params.overwrite_manual`."""
        try:
            plan = cull_plan(
                self.model.photos,
                keep_top_percent=params.keep_top_percent,
                min_level=params.min_level,
                per=params.per,
                groups=self._cull_groups(params),
            )
        except HumanAesError as e:
            self.notice(f"Auto-cull: {e}")
            return
        by_path = {p.path: p for p in self.model.photos}
        items: list[tuple[str, Path, bool]] = []
        fallback = {}
        seen: set[str] = set()
        for path, decision in plan.items():
            photo = by_path[path]
            h = photo.content_hash
            if h is None or h in seen:
                continue
            seen.add(h)
            items.append((h, photo.path, decision.keep))
            if photo.xmp is not None:
                fallback[h] = photo.xmp
        if items:
            self.decisions.auto_cull(
                items, params.describe(), overwrite_manual=params.overwrite_manual, fallback=fallback
            )

    # ================================================================== culling: export

    def _on_job_failed(self, error: BaseException) -> None:
        self.notice(f"Stopped: {error}", 20000)

    def write_sidecars(self) -> None:
        """Export ▸ Write XMP sidecars…: convention and keeper label, then write in the background."""
        entries = sidecar_entries(self.model.photos)
        if not entries:
            self.notice("No decisions to write yet: pick (P), reject (X) or rate (1–5) photos first.")
            return
        picks = sum(1 for e in entries if e.pick)
        rejects = sum(1 for e in entries if e.rejected)
        summary = (
            f"{len(entries)} photos with decisions made in HumanAes: {picks} picked, {rejects} rejected, "
            f"{len(entries) - picks - rejects} rated or cleared. "
            "Photos you have not decided here are left alone."
        )
        dialog = SidecarDialog(self.settings, summary, self)
        if not dialog.exec():
            return
        convention, label = dialog.choice()
        self.settings.sidecar_convention, self.settings.keeper_label = convention, label
        self.settings.save()
        self.write_sidecars_now(convention, label)

    def write_sidecars_now(self, convention: str = "auto", keeper_label: str = "") -> None:
        """Write every decision made here into its photo's sidecar(s), off the UI thread; one summary."""
        entries = sidecar_entries(self.model.photos)
        if not entries:
            return
        total = len(entries)
        self.notice(f"Writing XMP sidecars for {total} photos…", 0)

        def write(job: Job) -> SidecarReport:
            def progress(done: int, of: int) -> None:
                if done % 25 == 0:  # a notice per photo would flood the UI thread
                    job.report((done, of))

            return write_sidecar_entries(entries, convention, keeper_label or None, progress=progress)

        self.jobs.submit(
            write,
            with_job=True,
            progress=lambda counts: self.notice(f"Writing XMP sidecars… {counts[0]}/{counts[1]}", 0),
            done=self._on_sidecars_written,
            failed=self._on_job_failed,
        )

    def _on_sidecars_written(self, report: SidecarReport) -> None:
        self.last_sidecar_report = report
        n = len(set(report.written))
        text = f"Wrote {n} XMP sidecar{'s' if n != 1 else ''} for {report.photos} photos"
        if report.failed:
            text += f"; {len(report.failed)} could not be written (see Skipped files)"
            for path, reason in report.failed:
                self._add_error(str(path), f"sidecar not written: {reason}")
        self.notice(text + ".", 20000)

    def copy_picks(self, move: bool = False) -> None:
        """Export ▸ Copy/Move picks to…: the picked photos and their sidecars into another folder."""
        plan = picks_plan(self.model.photos)
        verb = "Move" if move else "Copy"
        if not plan:
            self.notice("No picks yet: pick photos with P, or run Auto-Cull, first.")
            return
        dest = QFileDialog.getExistingDirectory(self, f"{verb} {len(plan)} picks to…", self.paths[0])
        if not dest:
            return
        if move:
            answer = QMessageBox.question(
                self,
                "Move picks",
                f"Move {len(plan)} picked photos (and their sidecars) to {dest}? "
                "They leave this folder; nothing is ever overwritten.",
            )
            if answer != QMessageBox.StandardButton.Yes:
                return
        self.copy_picks_now(dest, move)

    def copy_picks_now(self, dest: str | os.PathLike[str], move: bool = False) -> None:
        from humanaes_core.culling import copy_picks

        plan = picks_plan(self.model.photos)
        if not plan:
            return
        self.notice(f"{'Moving' if move else 'Copying'} {len(plan)} picks…", 0)
        self.jobs.submit(
            lambda: copy_picks(plan, dest, move=move),
            done=lambda report: self._on_picks_copied(report, Path(dest), move),
            failed=self._on_job_failed,
        )

    def _on_picks_copied(self, report: Any, dest: Path, move: bool) -> None:
        text = f"{'Moved' if move else 'Copied'} {len(report.copied)} picks to {dest}"
        if report.already_there:
            text += f" ({len(report.already_there)} already there)"
        for path, reason in report.failed:
            self._add_error(str(path), f"not {'moved' if move else 'copied'}: {reason}")
        if report.failed:
            text += f"; {len(report.failed)} failed (see Skipped files)"
        self.notice(text + ".", 20000)
        if move and report.copied:
            self.rescan()  # the moved photos are no longer in this folder

    def export_cards(self) -> None:
        """Export ▸ Export cards…: every card and decision as CSV, JSON or JSON lines."""
        folder = Path(self.paths[0]) if self.paths else Path.home()
        start = str((folder if folder.is_dir() else folder.parent) / f"{folder.name or 'photos'}-cards.csv")
        path, _ = QFileDialog.getSaveFileName(
            self, "Export score cards", start, "CSV (*.csv);;JSON (*.json);;JSON lines (*.jsonl)"
        )
        if path:
            self.export_cards_now(path)

    def export_cards_now(self, path: str | os.PathLike[str]) -> None:
        from humanaes_core.culling import export_cards

        cards, decisions, errors = export_plan(self.model.photos)
        groups = self.model.groups() or None
        self.jobs.submit(
            lambda: export_cards(cards, path, decisions=decisions, groups=groups, errors=errors),
            done=lambda out: self.notice(f"Exported {len(cards)} score cards to {out}.", 20000),
            failed=self._on_job_failed,
        )

    # ================================================================== culling: training

    def train_on_ratings(self) -> None:
        """Photo ▸ Train on my ratings…: fine-tune the current model on this folder's stars and rejects."""
        if not self.paths:
            self.notice("Open a folder you have rated first.")
            return
        if self._train_dialog is not None and self._train_dialog.running:
            self._train_dialog.show()
            self._train_dialog.raise_()
            return
        first = Path(self.paths[0])
        folder = first if first.is_dir() else first.parent
        dialog = TrainDialog(folder, self.model.photos, self.settings, self)
        dialog.use_model.connect(self.use_model)
        self._train_dialog = dialog
        dialog.show()

    def use_model(self, model: str) -> None:
        """Switch scoring to another checkpoint (the folder re-scores in the background)."""
        self.apply_settings(replace(self.settings, scoring=replace(self.settings.scoring, model=model)))

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
        decided = self.model.decision_counts()
        if decided["picked"] or decided["rejected"]:
            text += f"  ·  {decided['picked']} picked, {decided['rejected']} rejected"
        if self.model_info is not None:
            text += f"  ·  model {Path(self.model_info.settings.model).name}"
        self.status_label.setText(text)
        self._update_empty_state()

    def _update_empty_state(self) -> None:
        empty = self.model.rowCount() == 0
        self.empty_hint.setVisible(empty and not self._comparing)
        self.grid.setVisible(not empty and not self._comparing)
        if empty and self.model.photos and self.model.filter.active:
            self.empty_hint.setText("No photo passes the filters (level, minimum score, flags, stars).")
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
        self.close_compare()
        self.save_state()
        if self._train_dialog is not None:
            self._train_dialog.close()  # cancels a run and waits for it: no half-written checkpoint
        self.capture_times.cancel()
        self.scanner.shutdown()
        self.jobs.shutdown()  # sidecar writes or copies asked for finish: never half done
        # (and decisions: a key pressed just before closing is still saved)
        self.decisions.close()
        self.controller.shutdown()
        self.thumbnails.clear()
        self.previews.clear()
        self.thumbnails.wait(3000)
        self.previews.wait(3000)
        self.capture_times.wait(3000)
        super().closeEvent(event)
