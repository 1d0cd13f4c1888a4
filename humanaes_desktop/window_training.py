"""The main window's side of training: Photo ▸ Train on my ratings…, and switching to the model it made.

A mixin of `mainwindow.MainWindow`. The dialog (`training.TrainDialog`) is not modal and runs the
training on its own lane; the window keeps one, so asking again while it runs shows the running one.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from .training import TrainDialog


class TrainingHookup:
    """Fine-tune the current model on this folder's stars and rejects, then score with the result."""

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
        self.notice(f"Now scoring with {Path(model).name}; the folder re-scores.")
        self.restore_focus()

    def _close_training(self) -> None:
        """Closing the window: a run is cancelled and waited for, so no checkpoint is left half written."""
        if self._train_dialog is not None:
            self._train_dialog.close()
