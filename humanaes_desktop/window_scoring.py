"""The main window's side of scoring: opening folders, the scoring worker's signals, pause, cancel,
settings, and the list of skipped files.

A mixin of `mainwindow.MainWindow`: it uses the widgets the window builds (grid, banner, status bar,
skipped-files list) and its `controller` (`worker.ScoringController`). Everything it receives arrives
as a signal from the scoring lane; nothing here waits.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt, QTimer
from PySide6.QtWidgets import QAbstractItemView, QFileDialog, QListWidgetItem

from humanaes_core.wording import count

from . import theme
from .actions import returns_focus
from .dialogs import DownloadDialog, SettingsDialog
from .settings import AppSettings
from .widgets import format_duration
from .worker import ModelInfo, Progress


class ScoringHookup:
    """Open, score, pause, cancel, change settings; report progress and skipped files."""

    # ------------------------------------------------------------------ opening folders

    @returns_focus
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
        self._auto_selected = None
        self._first_screen_jobs = []  # the new folder's whole-folder scans wait for its first screen
        self._scores_in = False
        self.thumbnails.clear()
        self.previews.clear()
        self.face_crops.clear()
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
        if self._pending_select is None:
            # Re-scoring the open folder (other settings, another model) rebuilds the rows: the selection
            # comes back to the same photo, so the next P, X or star acts on the photo the user chose.
            current = self.current_photo()
            self._pending_select = None if current is None else str(current.path)
        self._set_unscorable(None)
        self.last_progress = Progress()
        self.progress_bar.setRange(0, 0)
        self.progress_bar.show()
        self.rate_label.setText("")
        self.controller.start(
            self.paths, self.settings.scoring, self.settings.recursive, self.settings.library
        )

    # ------------------------------------------------------------------ the first screen first

    def after_first_screen(self, job: Callable[[], None]) -> None:
        """Run `job` once the open folder's first screen is finished, at once if it is.

        Scans of the whole folder (capture times, burst fingerprints) would otherwise compete for the
        CPU with the few things the photographer is waiting for: the cached scores, the sort, and the
        thumbnails of the tiles on screen.
        """
        if self._first_screen_jobs is None:
            job()
        else:
            self._first_screen_jobs.append(job)

    def tiles_on_screen_ready(self) -> bool:
        """Every tile on screen has its thumbnail in memory (or the reason it cannot have one)."""
        rows = self.grid.visible_rows()
        photos = [p for p in (self.model.photo(r) for r in rows) if p is not None]
        return bool(photos) and all(
            self.thumbnails.peek(p.path) is not None or self.thumbnails.error(p.path) is not None
            for p in photos
        )

    def _scores_arrived(self) -> None:
        """The run is past its cache lookup: the grid shows its final order as far as the cache knows."""
        if self._first_screen_jobs is None or self._scores_in:
            return
        self._scores_in = True
        # The timers are the window's: they die with it.
        QTimer.singleShot(0, self, self._check_first_screen)  # after the grid has laid out the sorted rows
        # A screen that never asks for a thumbnail (an empty filter, a hidden grid) must not hold the
        # scans back for long.
        jobs = self._first_screen_jobs
        QTimer.singleShot(FIRST_SCREEN_WAIT_MS, self, lambda: self._release(jobs))

    def _check_first_screen(self) -> None:
        if self._first_screen_jobs is not None and self._scores_in and self.tiles_on_screen_ready():
            self._release(self._first_screen_jobs)

    def _release(self, jobs: list[Callable[[], None]]) -> None:
        if jobs is not self._first_screen_jobs:
            return  # another folder was opened since
        self._first_screen_jobs = None
        for job in jobs:
            job()

    def _rebuild_recent_menu(self) -> None:
        self.recent_menu.clear()
        for folder in self.settings.recent_folders:
            action = self.recent_menu.addAction(folder)
            action.triggered.connect(lambda _checked=False, f=folder: self.open_paths([f]))
        self.recent_menu.setEnabled(bool(self.settings.recent_folders))

    # ------------------------------------------------------------------ worker signals

    def _on_files_found(self, files: list[Path], problems: list[tuple[str, str]]) -> None:
        root = Path(self.paths[0]) if len(self.paths) == 1 and os.path.isdir(self.paths[0]) else None
        self.model.set_photos(files, root)
        if self.model.sort_key == "captured":
            self.capture_times.scan(files)  # the order on screen depends on them
        else:
            self.after_first_screen(lambda: self.capture_times.scan(files))
        for path, reason in problems:
            self._add_error(path, reason)
        if not files:
            self.status_label.setText("No photos found here.")
        self.progress_bar.setRange(0, max(1, len(files)))
        self.progress_bar.setValue(0)
        select, self._pending_select = self._pending_select, None
        row = self.model.row_of(select) if select else -1
        if row >= 0:  # the photo selected before (the row number may hold another photo now)
            self.select_row(row)
            self.grid.scrollTo(self.grid.currentIndex(), QAbstractItemView.ScrollHint.PositionAtCenter)
        elif self.model.rowCount() and not self.grid.currentIndex().isValid():
            self.select_row(0)
            self._auto_selected = self.current_photo()

    def _on_model_ready(self, info: ModelInfo) -> None:
        self.model_info = info
        self.model_is_demo = _is_demo_checkpoint(info.path)
        self._update_status()
        self._detail_timer.start()

    def _on_results(self, batch: list[tuple[str, Any, str | None]]) -> None:
        changed = self.model.update_results(batch)
        self._scores_arrived()
        auto, self._auto_selected = self._auto_selected, None
        if auto is not None and self.current_photo() is auto:
            # The first scores sorted the folder: the photo selected for the photographer (not by them)
            # gives way to the new first one, so the folder opens at the top of its ranking.
            self.select_row(0)
            self.grid.scrollToTop()
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
            self._scores_arrived()  # the cache hits (if any) are in: the rest takes the model's time
            self.rate_label.setText("Loading the model…")
        elif progress.paused:
            self.rate_label.setText("Paused")
        elif progress.rate > 0:
            self.rate_label.setText(
                f"{progress.rate:.1f} photos/s  ·  {format_duration(progress.eta_s)} left"
            )
        elif progress.cached and progress.done < progress.total:
            self.rate_label.setText(f"{progress.cached} from cache")
        self.commands["pause"].setText("Resume" if progress.paused else "Pause")

    def _on_download(self, description: str, done: float, total: float) -> None:
        if self._download_dialog is None:
            self._download_dialog = DownloadDialog(self)
        self._download_dialog.report(description, done, total)

    def _on_failed(self, message: str) -> None:
        """One clear, non-modal message; browsing, sorting and cached scores keep working. Photos left
        unscored say why instead of "scoring…" forever."""
        self._scores_arrived()
        self.banner_text.setText(message)
        self.banner.show()
        self._set_unscorable("model unavailable" if self.model_info is None else "scoring stopped")
        self.status_label.setText("Scoring stopped — see the message above the grid.")

    def _set_unscorable(self, reason: str | None) -> None:
        """Why the photos still waiting will not be scored in this run (None: they are being scored)."""
        self.unscorable = reason
        self.delegate.pending_text = "scoring…" if reason is None else "not scored"
        self.panel.pending_caption = (
            "Not scored yet — scoring runs in the background" if reason is None else f"Not scored: {reason}"
        )
        self.grid.viewport().update()

    def _on_finished(self, cancelled: bool) -> None:
        self._scores_arrived()
        p = self.last_progress
        if self._download_dialog is not None:
            self._download_dialog.hide()
        self._update_status()
        parts = [f"{p.scored} scored", f"{p.cached} from cache"]
        if p.failed:
            parts.append(f"{p.failed} skipped")
        prefix = "Cancelled — scores so far are saved" if cancelled else "Done"
        if self.unscorable is not None:
            prefix = "Stopped"
        self.rate_label.setText(f"{prefix}: " + ", ".join(parts) if p.total else "")
        if self.unscorable is not None:
            self.refresh_detail()

    def _on_running_changed(self, running: bool) -> None:
        self.commands.set_condition("scoring", running)
        self.commands["pause"].setText("Pause")
        if not running:
            self.progress_bar.hide()

    def _update_status(self) -> None:
        counts = self.model.counts()
        if counts["total"] == 0:
            return
        shown = counts["shown"]
        text = (
            f"{shown} of {count(counts['total'], 'photo')} shown"
            if shown != counts["total"]
            else count(shown, "photo")
        )
        text += f"  ·  {counts['scored']} scored"
        if counts["pending"] and self.unscorable is not None:
            text += f", {counts['pending']} not scored: {self.unscorable}"
        elif counts["pending"]:
            text += f", {counts['pending']} waiting"
        decided = self.model.decision_counts()
        if decided["picked"] or decided["rejected"]:
            text += f"  ·  {decided['picked']} picked, {decided['rejected']} rejected"
        if self.model_info is not None:
            text += f"  ·  model {Path(self.model_info.settings.model).name}"
            if self.model_is_demo:
                text += f"  ·  {DEMO_LABEL}"
        self.status_label.setText(text)
        self._update_empty_state()

    # ------------------------------------------------------------------ scoring control

    def toggle_pause(self) -> None:
        if self.controller.running:
            self.controller.toggle_pause()
            self.commands["pause"].setText("Resume" if self.controller.paused else "Pause")
            self.rate_label.setText("Paused" if self.controller.paused else "Resuming…")

    def cancel_scoring(self) -> None:
        if self.controller.running:
            self.controller.cancel()
            self.status_label.setText("Cancelling after the current batch…")

    @returns_focus
    def open_settings(self) -> None:
        dialog = SettingsDialog(self.settings, self)
        if dialog.exec():
            self.apply_settings(dialog.result_settings())

    def apply_settings(self, new: AppSettings) -> None:
        """Take new settings; another model or scoring setup clears the scores and re-scores lazily."""
        scoring_changed = new.scoring != self.settings.scoring
        library_changed = new.library != self.settings.library
        rescan = scoring_changed or library_changed or new.recursive != self.settings.recursive
        self.settings.scoring = new.scoring
        self.settings.recursive = new.recursive
        self.settings.library = new.library
        self.settings.save()
        if library_changed:  # the rescan below reads the folder's cards and decisions from the new one
            self.decisions.set_library(new.library)
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

    # ------------------------------------------------------------------ skipped files

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
        self.errors_stack.setCurrentWidget(self.errors_list if n else self.errors_none)

    def toggle_errors(self) -> None:
        self.errors_dock.setVisible(not self.errors_dock.isVisible())

    def _on_error_activated(self, item: QListWidgetItem) -> None:
        self.select_path(item.data(Qt.ItemDataRole.UserRole))
        self.grid.setFocus()


DEMO_LABEL = "demo model — scores are not aesthetic judgements"
#: The longest the whole-folder scans wait for the first screen after the scores are in.
FIRST_SCREEN_WAIT_MS = 2000


def _is_demo_checkpoint(path: Path) -> bool:
    """Whether the loaded checkpoint is the demo model (humanaes.json provenance `demo: true`)."""
    from humanaes_core.errors import HumanAesError
    from humanaes_core.model import read_meta

    try:
        return bool(read_meta(path).provenance.get("demo"))
    except (HumanAesError, OSError):
        return False
