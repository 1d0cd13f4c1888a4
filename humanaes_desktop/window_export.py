"""The main window's Export menu: XMP sidecars, copying or moving picks, exporting score cards.

A mixin of `mainwindow.MainWindow`. What to write, copy or export, and what to say afterwards, is
`cullcontrol.CullingController`'s; the dialogs are asked here and the work runs on the window's `jobs`
lane (`background.Lane`), each job reporting once at the end, so the UI thread never waits for a disk.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtWidgets import QFileDialog, QMessageBox

from humanaes_core.culling import SidecarReport, write_sidecar_entries
from humanaes_core.wording import count

from .actions import returns_focus
from .background import Job
from .cull_dialogs import SidecarDialog

if TYPE_CHECKING:
    from humanaes_core.culling import CopyReport


class ExportHookup:
    """Export ▸ Write XMP sidecars, Copy/Move picks, Export cards."""

    def _on_job_failed(self, error: BaseException) -> None:
        self.notice(f"Stopped: {error}", 20000)

    def _report_failures(self, failures: list[tuple[str, str]]) -> None:
        for path, reason in failures:
            self._add_error(path, reason)

    # ------------------------------------------------------------------ sidecars

    @returns_focus
    def write_sidecars(self) -> None:
        """Export ▸ Write XMP sidecars…: convention and keeper label, then write in the background."""
        entries = self.culling.sidecar_entries()
        if not entries:
            self.notice("No decisions to write yet: pick (P), reject (X) or rate (1–5) photos first.")
            return
        dialog = SidecarDialog(self.settings, self.culling.sidecar_summary(entries), self)
        if not dialog.exec():
            return
        convention, label = dialog.choice()
        self.settings.sidecar_convention, self.settings.keeper_label = convention, label
        self.settings.save()
        self.write_sidecars_now(convention, label)

    def write_sidecars_now(self, convention: str = "auto", keeper_label: str = "") -> None:
        """Write every decision made here into its photo's sidecar(s), off the UI thread; one summary."""
        entries = self.culling.sidecar_entries()
        if not entries:
            return
        total = len(entries)
        self.notice(f"Writing XMP sidecars for {count(total, 'photo')}…", 0)

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
        text, failures = self.culling.sidecars_written(report)
        self._report_failures(failures)
        self.notice(text, 20000)

    # ------------------------------------------------------------------ picks

    @returns_focus
    def copy_picks(self, move: bool = False) -> None:
        """Export ▸ Copy/Move picks to…: the picked photos and their sidecars into another folder."""
        plan = self.culling.picks()
        verb = "Move" if move else "Copy"
        if not plan:
            self.notice("No picks yet: pick photos with P, or run Auto-Cull, first.")
            return
        dest = QFileDialog.getExistingDirectory(self, f"{verb} {count(len(plan), 'pick')} to…", self.paths[0])
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

        plan = self.culling.picks()
        if not plan:
            return
        self.notice(f"{'Moving' if move else 'Copying'} {count(len(plan), 'pick')}…", 0)
        self.jobs.submit(
            lambda: copy_picks(plan, dest, move=move),
            done=lambda report: self._on_picks_copied(report, Path(dest), move),
            failed=self._on_job_failed,
        )

    def _on_picks_copied(self, report: CopyReport, dest: Path, move: bool) -> None:
        text, failures = self.culling.picks_copied(report, dest, move)
        self._report_failures(failures)
        self.notice(text, 20000)
        if move and report.copied:
            self.rescan()  # the moved photos are no longer in this folder

    # ------------------------------------------------------------------ cards

    @returns_focus
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

        cards, decisions, errors = self.culling.export_plan()
        groups = self.model.groups() or None
        self.jobs.submit(
            lambda: export_cards(cards, path, decisions=decisions, groups=groups, errors=errors),
            done=lambda out: self.notice(f"Exported {len(cards)} score cards to {out}.", 20000),
            failed=self._on_job_failed,
        )
