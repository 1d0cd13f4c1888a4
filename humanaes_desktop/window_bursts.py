"""The main window's side of bursts: the groups the folder scanner finds, collapsing each burst to its
best-scoring frame, and the compare view of a burst's frames side by side (Ctrl+G).

A mixin of `mainwindow.MainWindow`. Which frame is best is the list model's rule
(`photos.PhotoModel.best_of_group`); finding the bursts is `culling.FolderScanner`'s, off the UI thread.
"""

from __future__ import annotations


class BurstsHookup:
    """Bursts found, collapsed or not, compared side by side."""

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
        self.commands["collapse"].setChecked(collapsed)
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
