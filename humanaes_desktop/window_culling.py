"""The main window's side of culling decisions: keys, undo and redo, what the store says changed,
editors' ratings, and the auto-cull dialog.

A mixin of `mainwindow.MainWindow`. What a key or auto-cull decides is `cullcontrol.CullingController`'s
business (no Qt); this mixin implements the `cullcontrol.CullingView` it talks to, and shows what the
decision thread (`culling.DecisionKeeper`) reports.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from humanaes_core.store import Change, Flag

from .actions import returns_focus
from .cull_dialogs import AutoCullDialog, CullParams
from .culling import History
from .photos import Photo


class CullingHookup:
    """Decisions on the selection, their history, and what they do to the grid."""

    # ------------------------------------------------------------------ cullcontrol.CullingView

    def folder_photos(self) -> list[Photo]:
        return self.model.photos

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

    def bursts(self) -> list[list[Path]]:
        return self.model.groups()

    def finding_bursts(self) -> bool:
        return self.scanner.grouping

    def notice(self, text: str, msecs: int = 10000) -> None:
        """A short message in the status bar (never a dialog): what a key or a job just did."""
        self.last_notice = text
        self.statusBar().showMessage(text, msecs)

    # ------------------------------------------------------------------ keys

    def set_flag(self, flag: Flag) -> None:
        """P / X / U on the selection."""
        self.culling.set_flag(flag)

    def set_stars(self, stars: int) -> None:
        """0-5 on the selection; 0 clears the stars."""
        self.culling.set_stars(stars)

    def undo(self) -> None:
        self.culling.undo()

    def redo(self) -> None:
        self.culling.redo()

    # ------------------------------------------------------------------ what the store reports

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
            self.after_first_screen(lambda: self.scanner.find_bursts(everything))

    def _on_decisions_changed(self, changes: list[Change], what: str) -> None:
        shown = self.model.set_decisions({c.content_hash: c.decision for c in changes})
        text = self.culling.changes_text(changes, what, bool(shown))
        if text is not None:
            self.notice(text)

    def _on_decisions_failed(self, message: str) -> None:
        """The database refused a write (disk full, read-only, newer schema), or the library server
        cannot be reached (the writes are kept): one banner, no dialog."""
        self.banner_text.setText(message)
        self.banner.show()

    def _on_library_back(self, message: str) -> None:
        """The library server is back and the kept writes are saved."""
        self.banner.hide()
        self.notice(message)

    def _on_decisions_stale(self) -> None:
        """Other editors changed more than the change feed keeps: read the folder's decisions again."""
        hashes = sorted({p.content_hash for p in self.model.photos if p.content_hash})
        if hashes:
            self.decisions.load(hashes, self._folder)

    def _on_history(self, history: History) -> None:
        self.commands.set_condition("can_undo", history.can_undo)
        self.commands.set_condition("can_redo", history.can_redo)
        self.commands["undo"].setText(f"Undo {history.undo_text}" if history.undo_text else "Undo")
        self.commands["redo"].setText(f"Redo {history.redo_text}" if history.redo_text else "Redo")

    def _on_decisions_shown(self) -> None:
        self._update_status()
        self._refresh_culling_panel()
        if self.in_full_view:
            self.full_view.update()
        if self._comparing:
            self.compare_view.update()

    def _keep_row(self) -> None:
        """A photo that a decision filtered out (reject it while rejects are hidden) hands the selection
        to the photo that took its place, so culling goes on with the next photo."""
        if self._last_row is None or self.grid.currentIndex().isValid() or not self.model.rowCount():
            return
        self.select_row(min(self._last_row, self.model.rowCount() - 1))

    # ------------------------------------------------------------------ auto-cull

    def preview_cull(self, params: CullParams, photos: Sequence[Photo] | None = None) -> tuple[str, bool]:
        """What auto-cull with these settings would do, in words; and whether it can be applied."""
        return self.culling.preview_cull(params, photos)

    @returns_focus
    def open_auto_cull(self) -> None:
        """Photo ▸ Auto-Cull…: the dialog previews on a snapshot of the folder (ranking 10,000 photos
        per folder takes a few hundred milliseconds: too long for the UI thread on every spin-box step)."""
        snapshot = [replace(p) for p in self.model.photos]
        dialog = AutoCullDialog(
            self.settings,
            lambda params: self.preview_cull(params, snapshot),
            self,
            warning=lambda params: self.culling.cull_warning(params, snapshot),
        )
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
        self.culling.apply_auto_cull(params)
