"""The main window: folder grid, detail panel, scoring progress, full-screen view, and culling.

It wires the pieces together and holds no scoring or culling logic: files, scores, thumbnails,
decisions, editors' ratings and bursts arrive as signals from background workers, so the window stays
responsive whatever the model, the database or the disk is doing.

This module builds the window and wires it; each concept it serves has a module of its own:
`actions` (every command as data), `filterbar` (sort and filter controls), `cullcontrol` (culling
decisions, no Qt), and the window's hookups `window_scoring`, `window_culling`, `window_bursts`,
`window_export` and `window_training`.

Culling keys (as in Lightroom and darktable): P pick, X reject, U unflag, 0–5 stars, Ctrl+Z undo,
Ctrl+Shift+Z / Ctrl+Y redo; they act on the selected photos in the grid, the photo in full screen, or
the chosen frame in the compare view (Ctrl+G).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from PySide6.QtCore import QByteArray, QItemSelectionModel, QModelIndex, QSize, Qt, QTimer
from PySide6.QtGui import QCloseEvent, QDragEnterEvent, QDropEvent
from PySide6.QtWidgets import (
    QDockWidget,
    QFrame,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QMainWindow,
    QMenu,
    QProgressBar,
    QPushButton,
    QSizePolicy,
    QSplitter,
    QStackedWidget,
    QToolBar,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from humanaes_core.culling import SidecarReport
from humanaes_core.schema import LEVELS

from .actions import build_actions, build_menus
from .background import Generation, Lane
from .compare import CompareView
from .cullcontrol import CullingController
from .culling import DecisionKeeper, FolderScanner
from .detail import DetailPanel
from .dialogs import DownloadDialog
from .faces import FaceCrops, FaceZoom
from .filterbar import FilterBar, SortControls
from .grid import PhotoGrid
from .photos import Filter, Photo, PhotoModel
from .settings import FLAG_NAMES, AppSettings, thumbnail_dir
from .thumbnails import CaptureTimeScanner, ImageLoader
from .training import TrainDialog
from .viewer import FullView
from .window_bursts import BurstsHookup
from .window_culling import CullingHookup
from .window_export import ExportHookup
from .window_scoring import ScoringHookup
from .window_training import TrainingHookup
from .worker import ModelInfo, Progress, ScoringController

THUMBNAIL_SIZE = 320
PREVIEW_SIZE = 1800


class MainWindow(ScoringHookup, CullingHookup, BurstsHookup, ExportHookup, TrainingHookup, QMainWindow):
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
        self.face_crops = FaceCrops(parent=self)  # faces at 100 %, cut from the full-resolution photo
        self.face_zoom = FaceZoom(self)  # one zoom and pan for every face on screen
        self.model = PhotoModel(self.thumbnails, self)
        self.controller = ScoringController(self)
        self.decisions = DecisionKeeper(self, self.settings.library)
        self.culling = CullingController(self, self.decisions)
        self.scanner = FolderScanner(self)
        self.jobs = Lane("humanaes-jobs", 1, self)
        self._folder = Generation()  # decisions loaded for an earlier folder are dropped
        self._last_row: int | None = None
        self._comparing = False
        self._train_dialog: TrainDialog | None = None
        self.last_notice = ""
        self.last_sidecar_report: SidecarReport | None = None
        self.model_info: ModelInfo | None = None
        self.model_is_demo = False  # the loaded checkpoint is the demo model: the status bar says so
        self.paths: list[str] = []
        self.last_progress = Progress()
        self._download_dialog: DownloadDialog | None = None
        self._pending_select: str | None = None
        self._auto_selected: Photo | None = None  # row 0, selected on opening until the first scores sort
        self._first_screen_jobs: list[Callable[[], None]] | None = None  # see `after_first_screen`
        self._scores_in = False  # the open folder's scoring run is past its cache lookup
        self.unscorable: str | None = None  # why waiting photos will not be scored (model unavailable)
        self._was_maximized = False

        self.commands = build_actions(self)
        self.sorting = SortControls(self)
        self.filters = FilterBar(self)
        self._build_toolbars()
        self._build_centre()
        self._build_errors_dock()
        self._build_status_bar()
        self._build_menus()
        self._connect()
        self._restore_state()

    # ================================================================== construction

    def _toolbar(self, title: str, name: str) -> QToolBar:
        toolbar = self.addToolBar(title)
        toolbar.setObjectName(name)
        toolbar.setMovable(False)
        toolbar.setIconSize(QSize(16, 16))
        return toolbar

    @staticmethod
    def _spacer() -> QWidget:
        spacer = QWidget()
        spacer.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Preferred)
        return spacer

    def _build_toolbars(self) -> None:
        """The main bar (folder, scoring, sort, score filters) and, below it, the culling bar."""
        c = self.commands
        toolbar = self.toolbar = self._toolbar("Main", "mainToolbar")
        toolbar.addAction(c["open"])
        toolbar.addAction(c["rescan"])
        toolbar.addSeparator()
        toolbar.addAction(c["pause"])
        toolbar.addAction(c["cancel"])
        toolbar.addSeparator()
        self.sorting.place(toolbar)
        toolbar.addSeparator()
        self.filters.place_score_filters(toolbar)
        toolbar.addWidget(self._spacer())
        toolbar.addAction(c["settings"])

        # Culling bar: what to show by decision, bursts, and the culling commands.
        self.addToolBarBreak()
        cull_bar = self.cull_bar = self._toolbar("Culling", "cullToolbar")
        self.filters.place_decision_filters(cull_bar)
        cull_bar.addSeparator()
        cull_bar.addAction(c["collapse"])
        cull_bar.addAction(c["compare"])
        cull_bar.addSeparator()
        cull_bar.addAction(c["auto_cull"])
        cull_bar.addWidget(self._spacer())
        cull_bar.addAction(c["write_xmp"])
        cull_bar.addAction(c["train"])
        # The photo checks' filters on a row of their own: on one row with the culling buttons they
        # pushed Auto-Cull, Write XMP Sidecars and Train into the toolbar's overflow menu at 1440 px.
        self.addToolBarBreak()
        self.checks_bar = self._toolbar("Checks", "checksToolbar")
        self.filters.place_check_filters(self.checks_bar)

    def _build_banner(self) -> QFrame:
        """For problems that concern the whole run (model missing, offline, no GPU, ...)."""
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
        return self.banner

    def _build_centre(self) -> None:
        """Banner, grid (or compare view) and detail panel side by side; the full view stacked over them."""
        self.grid = PhotoGrid(self.settings.tile_size)
        self.delegate = self.grid.tiles
        self.grid.setModel(self.model)
        self.compare_view = CompareView(lambda photo: self.thumbnails.get(photo.path))
        self.compare_view.show_faces(self.face_crops, self.face_zoom)
        self.compare_view.hide()

        self.empty_hint = QLabel("Open a folder of photos (Ctrl+O) or drop one here.")
        self.empty_hint.setObjectName("muted")
        self.empty_hint.setAlignment(Qt.AlignmentFlag.AlignCenter)

        left = QWidget()
        left_layout = QVBoxLayout(left)
        left_layout.setContentsMargins(8, 8, 0, 0)
        left_layout.setSpacing(8)
        left_layout.addWidget(self._build_banner())
        left_layout.addWidget(self.empty_hint, 1)
        left_layout.addWidget(self.grid, 1)
        left_layout.addWidget(self.compare_view, 1)

        self.panel = DetailPanel()
        self.panel.faces.set_source(self.face_crops, self.face_zoom)
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

    def _build_errors_dock(self) -> None:
        """The skipped files, or one line saying nothing was skipped (never a large empty panel)."""
        self.errors_list = QListWidget()
        self.errors_none = QLabel("Nothing was skipped: every file found was read.")
        self.errors_none.setObjectName("muted")
        self.errors_none.setContentsMargins(12, 8, 12, 8)
        self.errors_stack = QStackedWidget()
        self.errors_stack.addWidget(self.errors_list)
        self.errors_stack.addWidget(self.errors_none)
        self.errors_stack.setCurrentWidget(self.errors_none)
        self.errors_dock = QDockWidget("Skipped files", self)
        self.errors_dock.setObjectName("errorsDock")
        self.errors_dock.setWidget(self.errors_stack)
        self.errors_dock.setFeatures(QDockWidget.DockWidgetFeature.DockWidgetClosable)
        self.addDockWidget(Qt.DockWidgetArea.BottomDockWidgetArea, self.errors_dock)
        self.errors_dock.hide()

    def _build_status_bar(self) -> None:
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
        """The menus of `actions.ACTIONS`, and File ▸ Open Recent (filled from the settings) among them."""
        menus = build_menus(self.menuBar(), self.commands)
        self.recent_menu = QMenu("Open &Recent", self)
        menus["&File"].insertMenu(self.commands["rescan"], self.recent_menu)
        self._rebuild_recent_menu()

    def _connect(self) -> None:
        c, d, s = self.controller, self.decisions, self.scanner
        c.files_found.connect(self._on_files_found)
        c.hashes.connect(self._on_hashes)
        c.model_ready.connect(self._on_model_ready)
        c.results.connect(self._on_results)
        c.progress.connect(self._on_progress)
        c.download.connect(self._on_download)
        c.failed.connect(self._on_failed)
        c.finished.connect(self._on_finished)
        c.running_changed.connect(self._on_running_changed)
        self.capture_times.times.connect(self.model.set_capture_times)
        self.previews.ready.connect(self._on_preview_ready)
        self.previews.failed.connect(self._on_preview_failed)
        self.model.layout_updated.connect(self._update_status)
        self.model.modelReset.connect(self._update_empty_state)
        self.grid.selectionModel().currentChanged.connect(self._on_current_changed)
        self.grid.activated.connect(lambda _ix: self.enter_full_view())
        self.sorting.changed.connect(self._apply_sort)
        self.filters.changed.connect(self._apply_filter)
        self.full_view.step.connect(self.step)
        self.full_view.closed.connect(self.leave_full_view)
        self.errors_list.itemActivated.connect(self._on_error_activated)
        d.loaded.connect(self._on_decisions_loaded)
        d.changed.connect(self._on_decisions_changed)
        d.history_changed.connect(self._on_history)
        d.failed.connect(self._on_decisions_failed)
        d.offline.connect(self._on_decisions_failed)
        d.online.connect(self._on_library_back)
        d.notice.connect(self.notice)
        d.stale.connect(self._on_decisions_stale)
        s.imported.connect(lambda found: self.model.set_decisions(found, imported=True))
        s.groups_found.connect(self._on_groups)
        s.progress.connect(self._on_scan_progress)
        self.model.decisions_updated.connect(self._on_decisions_shown)
        self.model.layout_updated.connect(self._keep_row)
        self.thumbnails.ready.connect(self._on_thumbnail_ready)
        self.thumbnails.ready.connect(lambda _path: self._check_first_screen())
        self.thumbnails.failed.connect(lambda _path, _reason: self._check_first_screen())
        self.compare_view.current_changed.connect(lambda _photo: self._show_current())
        self.compare_view.closed.connect(self.close_compare)
        self.panel.compare_requested.connect(self.open_compare)

    # ================================================================== saved state

    def _restore_state(self) -> None:
        s = self.settings
        if s.geometry:
            self.restoreGeometry(QByteArray.fromBase64(s.geometry.encode()))
        if s.splitter:
            self.splitter.restoreState(QByteArray.fromBase64(s.splitter.encode()))
        self.sorting.restore(s.sort_key, s.sort_descending)
        saved = Filter(frozenset(s.levels), s.min_score, frozenset(s.flags), s.min_stars)
        self.filters.set_filter(saved, notify=False)
        self.commands["collapse"].setChecked(s.collapse_bursts)
        self.model.set_collapsed(s.collapse_bursts)
        self.sorting.announce()
        self.filters.announce()

    def save_state(self) -> None:
        """Window size, splitter, sort and filter go into the settings file."""
        s = self.settings
        shown = self.filters.filter()
        s.geometry = bytes(self.saveGeometry().toBase64().data()).decode()
        s.splitter = bytes(self.splitter.saveState().toBase64().data()).decode()
        s.sort_key = self.model.sort_key
        s.sort_descending = self.model.descending
        s.levels = [lv for lv in LEVELS if lv in shown.levels]
        s.min_score = shown.min_score
        s.tile_size = self.grid.preferred_tile
        s.flags = [key for key in FLAG_NAMES if key in shown.flags]
        s.min_stars = shown.min_stars
        s.collapse_bursts = self.model.collapsed
        s.save()

    # ================================================================== sorting and filtering

    def _apply_sort(self, key: str, descending: bool) -> None:
        self.delegate.sort_key = key
        self.model.set_sort(key, descending)
        self._scroll_to_current()

    def set_sort(self, key: str, descending: bool | None = None) -> None:
        """Programmatic sort (tests, keyboard): like picking it in the toolbar."""
        self.sorting.set_sort(key, descending)

    def _apply_filter(self, shown: Filter) -> None:
        self.model.set_filter(shown.levels, shown.min_score)
        self.model.set_decision_filter(shown.flags, shown.min_stars)
        self.model.set_check_filter(shown.checks)
        self._scroll_to_current()

    def set_decision_filter(self, flags: Sequence[str], min_stars: int = 0) -> None:
        """Programmatic flag/stars filter (tests): like clicking the chips."""
        current = self.filters.filter()
        self.filters.set_filter(Filter(current.levels, current.min_score, frozenset(flags), min_stars))

    def _scroll_to_current(self) -> None:
        index = self.grid.currentIndex()
        if index.isValid():
            self.grid.scrollTo(index)
        elif self.model.rowCount():
            self.select_row(0)

    def restore_focus(self) -> None:
        """Keyboard focus back on the view the user works in (after a dialog: see `focus`)."""
        self.activateWindow()
        if self.in_full_view:
            target: QWidget = self.full_view
        elif self._comparing:
            target = self.compare_view
        else:
            target = self.grid
        target.setFocus(Qt.FocusReason.ActiveWindowFocusReason)

    def zoom_tiles(self, delta: int) -> None:
        self.grid.set_preferred_tile(self.grid.preferred_tile + delta)

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
        self.panel.show_photo(photo, self.model.mean_dims(), self.explanation_for(photo))
        self._refresh_culling_panel()

    def _refresh_culling_panel(self) -> None:
        photo = self.current_photo()
        if photo is None:
            return
        size = len(self.model.group_members(photo))
        self.panel.set_culling(photo, size, size > 1 and self.model.best_of_group(photo) is photo)
        self.panel.compare_button.setVisible(not self._comparing)

    def explanation_for(self, photo: Photo) -> Any:
        """Why the photo shows its overall score, against the folder's other cards by the same model
        (`humanaes_core.attribution.Explanation`), or None when it cannot be said yet."""
        info, card = self.model_info, photo.card
        if info is None or info.attributor is None or card is None or not card.expert_raw:
            return None
        if card.model and card.model != info.fingerprint:
            return None  # never explain a card with another model's heads
        reference = self.model.reference_cards(info.fingerprint)
        if not reference:
            return None
        from humanaes_core.attribution import explain_card

        return explain_card(card, reference, info.attributor)

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

    def _update_empty_state(self) -> None:
        empty = self.model.rowCount() == 0
        self.empty_hint.setVisible(empty and not self._comparing)
        self.grid.setVisible(not empty and not self._comparing)
        if empty and self.model.photos and self.model.filter.active:
            self.empty_hint.setText(
                "No photo passes the filters (level, minimum score, flags, stars, checks)."
            )
        elif empty:
            self.empty_hint.setText("Open a folder of photos (Ctrl+O) or drop one here.")

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
        self._show_chrome(False)
        self.showFullScreen()
        self._update_full_view()
        self.full_view.setFocus()

    def leave_full_view(self) -> None:
        if self.stack.currentWidget() is not self.full_view:
            return
        self.stack.setCurrentWidget(self.splitter)
        self._show_chrome(True)
        if self._was_maximized:
            self.showMaximized()
        else:
            self.showNormal()
        self.grid.setFocus()

    def _show_chrome(self, visible: bool) -> None:
        for bar in (self.menuBar(), self.toolbar, self.cull_bar, self.checks_bar, self.statusBar()):
            bar.setVisible(visible)

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

    # ================================================================== drops and closing

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
        self._close_training()
        self.capture_times.cancel()
        self.scanner.shutdown()
        self.jobs.shutdown()  # sidecar writes or copies asked for finish: never half done
        # (and decisions: a key pressed just before closing is still saved)
        self.decisions.close()
        self.controller.shutdown()
        self.thumbnails.clear()
        self.previews.clear()
        self.face_crops.clear()
        self.thumbnails.wait(3000)
        self.previews.wait(3000)
        self.face_crops.wait(3000)
        self.capture_times.wait(3000)
        super().closeEvent(event)
