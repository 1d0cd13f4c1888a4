"""Train on my ratings: the personal fine-tune of `humanaes_core.train` on the open folder's decisions.

The photographer's stars and rejects become overall scores exactly as the rated-folder loader maps
sidecar ratings (`humanaes_core.data.loaders.STAR_SCORES`, `REJECT_SCORE`), written to a small CSV next to the
new checkpoint (the CSV format of DESIGN section 6, absolute paths). That way training needs no XMP
sidecars to be written into the photographer's folders first, and the checkpoint's provenance points
at a file that says exactly which ratings it learnt from.

Only the photographer's and editors' decisions are used (`humanaes_core.origins.TRAINABLE_ORIGINS`).
HumanAes's own are left out, whether the app's auto-cull made them or they were read back from sidecars
``humanaes-cull --write-xmp`` wrote: they are the model's own opinion, and training on them would only
teach the model what it already thinks. So are picks without stars: a pick says "keep", not how good.
The dialog lists what it left out and why.

Training runs on a lane of `background`; `Trainer` reports every optimizer step through `on_step`,
which is also where a cancel request takes effect (the core has no stop API: the callback raises).
Stage 2 (the MetaVoter) has no steps to report, so a cancel there waits for it to finish.
"""

from __future__ import annotations

import csv
import logging
import math
import shutil
import threading
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import platformdirs
from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtWidgets import (
    QDialog,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from humanaes_core.store import Flag
from humanaes_core.wording import count

from .background import Job, Lane

if TYPE_CHECKING:
    from humanaes_core.train import TrainConfig

    from .photos import Photo
    from .settings import AppSettings

log = logging.getLogger(__name__)

#: Fewer rated photos than this cannot train anything (the MetaVoter's BatchNorm needs a batch of two,
#: and a hold-out needs photos to spare).
MIN_RATED = 4
RATINGS_SUFFIX = ".ratings.csv"


@dataclass(frozen=True)
class RatedSet:
    """The training rows of a folder and what was left out."""

    rows: list[tuple[Path, float]]  # (photo, overall score)
    stars: int = 0
    rejects: int = 0
    skipped: tuple[tuple[Path, str], ...] = ()  # (photo, why it is not used)

    def describe(self) -> str:
        used = count(len(self.rows), "rated photo")
        parts = [f"{self.stars} with stars", f"{self.rejects} rejected"]
        text = f"{used} ({', '.join(parts)})"
        if self.skipped:
            reasons = Counter(why for _, why in self.skipped).most_common()
            text += "; not used: " + "; ".join(f"{n} {why}" for why, n in reasons)
        return text

    def skipped_text(self, limit: int = 40) -> str:
        """Each photo left out with why, one per line (the first `limit`), for the summary's tooltip."""
        lines = [f"{path.name}: {why}" for path, why in self.skipped[:limit]]
        if len(self.skipped) > limit:
            lines.append(f"... and {len(self.skipped) - limit} more")
        return "\n".join(lines)


def rated_photos(photos: Iterable[Photo]) -> RatedSet:
    """The photographer's and editors' ratings as (photo, overall score): 1-5 stars -> the level's
    centre, reject -> 0; HumanAes's own decisions and picks without stars are left out, with why."""
    from humanaes_core.data import REJECT_SCORE, STAR_SCORES
    from humanaes_core.origins import untrainable_reason

    rows: list[tuple[Path, float]] = []
    skipped: list[tuple[Path, str]] = []
    stars = rejects = 0
    for photo in photos:
        rating = photo.rating
        if rating is None:
            continue
        if why := untrainable_reason(rating.origin, rating.plan):
            skipped.append((photo.path, why))
            continue
        if rating.flag == Flag.REJECT:
            rows.append((photo.path, REJECT_SCORE))
            rejects += 1
        elif rating.stars:
            rows.append((photo.path, STAR_SCORES[rating.stars]))
            stars += 1
        elif rating.flag == Flag.PICK:
            skipped.append((photo.path, "picks without stars (a pick says keep, not how good)"))
    return RatedSet(rows, stars, rejects, tuple(skipped))


def write_ratings_csv(rows: Iterable[tuple[Path, float]], target: Path) -> Path:
    """`path,overall` rows with absolute paths (the CSV format `humanaes_core.data.load_csv` reads),
    replaced atomically. It stays valid UTF-8, as every CSV HumanAes writes: undecodable bytes of a file
    name appear as ``\\xNN`` (`humanaes_core.formats.csv_text`), so training reports that photo as not
    found instead of the dialog failing to write the file."""
    from humanaes_core.files import atomic_write
    from humanaes_core.formats import csv_text

    target.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(target, newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["path", "overall"])
        for path, score in rows:
            writer.writerow([csv_text(str(Path(path).resolve())), f"{score:.4f}"])
    return target


def models_dir() -> Path:
    """Where personal checkpoints go by default: <user data dir>/humanaes/models."""
    return Path(platformdirs.user_data_dir("humanaes", appauthor=False)) / "models"


def default_output(folder: Path, when: datetime | None = None) -> Path:
    """models_dir()/<folder name>-<date>, with -2, -3 ... when that is taken."""
    when = when or datetime.now()
    stem = f"{folder.name or 'photos'}-{when:%Y-%m-%d}"
    base = models_dir()
    candidate, n = base / stem, 2
    while candidate.exists() or ratings_file(candidate).exists():
        candidate, n = base / f"{stem}-{n}", n + 1
    return candidate


def ratings_file(output: Path) -> Path:
    return output.with_name(output.name + RATINGS_SUFFIX)


@dataclass(frozen=True)
class TrainOutcome:
    """What a finished run left: the checkpoint, its optimizer steps, the last losses, the metrics."""

    output: Path
    steps: int
    stage1_loss: float | None
    metavoter_mae: float | None
    metrics: dict | None
    taste: list[str] = field(default_factory=list)  # what changed for the photographer (TasteReport.lines)


class TrainingCancelled(Exception):
    """Raised from the step callback to stop `Trainer` (it has no stop API of its own)."""


class TrainingRun(QObject):
    """One training run of `humanaes_core.train.Trainer` on a lane thread, reporting progress as signals
    (emitted on the UI thread)."""

    prepared = Signal(int, int)  # total optimizer steps of stage 1, training photos
    stepped = Signal(int, float)  # step, loss
    stage = Signal(str)  # what it is doing now, for the dialog
    succeeded = Signal(object)  # TrainOutcome
    failed = Signal(str)
    cancelled = Signal(str)

    def __init__(self, config: TrainConfig, ratings_csv: Path | None = None, parent: QObject | None = None):
        super().__init__(parent)
        self.config = config
        self.ratings_csv = ratings_csv
        self.total_steps = 0
        self._cancel = threading.Event()
        self._out_existed = Path(config.out).expanduser().exists()
        self._lane = Lane("humanaes-training", 1, self)
        self._report: Callable[[Any], None] = lambda _event: None

    def start(self) -> None:
        self._lane.submit(self._work, with_job=True, progress=self._emit, done=self._emit)

    @property
    def running(self) -> bool:
        return self._lane.busy

    def wait(self, msecs: int = -1) -> bool:
        """Block until the run has ended (closing the window, tests)."""
        return self._lane.wait(msecs)

    def cancel(self) -> None:
        """Stop after the current stage-1 step (a stage-2 run finishes first)."""
        self._cancel.set()

    @property
    def cancel_requested(self) -> bool:
        return self._cancel.is_set()

    def _emit(self, event: tuple[str, tuple]) -> None:
        name, args = event
        getattr(self, name).emit(*args)

    def _send(self, signal: str, *args: Any) -> None:
        self._report((signal, args))

    def _work(self, job: Job) -> tuple[str, tuple]:
        """The whole run on the lane thread; returns its last signal (even removing leftovers is I/O)."""
        from humanaes_core.errors import HumanAesError

        self._report = job.report
        try:
            return "succeeded", (self._train(),)
        except TrainingCancelled:
            return "cancelled", (self._discard("Training cancelled"),)
        except HumanAesError as e:
            return "failed", (self._discard(str(e)),)
        except Exception as e:  # shown to the photographer; the traceback goes to the log
            log.exception("training failed")
            return "failed", (self._discard(f"Training stopped: {e.__class__.__name__}: {e}"),)

    def _train(self) -> TrainOutcome:
        from humanaes_core.train import Trainer, forget_accelerator_settings

        self._send("stage", "Loading the base model and your ratings…")
        try:
            trainer = Trainer(self.config, on_step=self._on_step)
        except BaseException:
            forget_accelerator_settings()
            raise
        with trainer:
            return self._run(trainer)

    def _run(self, trainer: Any) -> TrainOutcome:
        self.total_steps = trainer.total_steps
        self._send("prepared", trainer.total_steps, len(trainer.train_samples))
        if self._cancel.is_set():
            raise TrainingCancelled
        self._send("stage", "Stage 1: fine-tuning on your ratings")
        result = trainer.run()
        outcome = TrainOutcome(
            Path(result.output),
            int(result.steps),
            result.stage1_loss,
            result.metavoter_loss[-1] if result.metavoter_loss else None,
            result.metrics,
            [] if result.taste is None else result.taste.lines(),
        )
        del result, trainer  # the trained model in memory: the app loads the checkpoint when asked
        return outcome

    def _on_step(self, step: int, logs: dict[str, Any]) -> None:
        loss = logs.get("loss")
        self._send("stepped", step, float(loss) if isinstance(loss, int | float) else math.nan)
        if self._cancel.is_set():
            raise TrainingCancelled
        if step >= self.total_steps:
            self._send("stage", "Learning how you weigh face, appearance and environment…")

    def _discard(self, message: str) -> str:
        """Remove what an unfinished run left (only what this run created); say what stayed."""
        from humanaes_core.model import is_checkpoint

        out = Path(self.config.out).expanduser()
        if not self._out_existed and out.is_dir() and not is_checkpoint(out):
            shutil.rmtree(out, ignore_errors=True)
        if self.ratings_csv is not None:
            self.ratings_csv.unlink(missing_ok=True)
        return f"{message}. Nothing was saved; the current model stays in use."


class TrainDialog(QDialog):
    """Settings, progress and the result of one "Train on my ratings" run; non-modal."""

    use_model = Signal(str)  # the new checkpoint, when the photographer switches to it

    def __init__(
        self, folder: Path, photos: Iterable[Photo], settings: AppSettings, parent: QWidget | None = None
    ) -> None:
        super().__init__(parent)
        self.setWindowTitle("Train on my ratings")
        self.setMinimumWidth(600)
        self.folder = folder
        self.settings = settings
        self.rated = rated_photos(photos)
        self.training: TrainingRun | None = None
        self.outcome: TrainOutcome | None = None
        self.message = ""

        self.summary = QLabel(self.rated.describe())
        self.summary.setWordWrap(True)
        self.summary.setToolTip(self.rated.skipped_text())
        self.base = QLabel(settings.scoring.model)
        self.base.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.base.setWordWrap(True)
        self.output = QLineEdit()
        self._set_output(default_output(folder))
        browse = QPushButton("Folder…")
        browse.clicked.connect(self._browse)
        out_row = QHBoxLayout()
        out_row.addWidget(self.output, 1)
        out_row.addWidget(browse)
        self.epochs = QSpinBox()
        self.epochs.setRange(1, 50)
        self.epochs.setValue(3)
        self.epochs.setToolTip("Passes over your ratings; a few hundred photos need several")
        self.max_tiles = QSpinBox()
        self.max_tiles.setRange(1, 40)
        self.max_tiles.setValue(settings.scoring.max_tiles)
        self.max_tiles.setToolTip("448-px tiles per photo: fewer is faster; match what you score with")
        form = QFormLayout()
        form.addRow("Ratings", self.summary)
        form.addRow("Base model", self.base)
        form.addRow("New model folder", out_row)
        form.addRow("Epochs", self.epochs)
        form.addRow("Max tiles", self.max_tiles)

        self.progress = QProgressBar()
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        self.progress.setFormat("step %v / %m")
        self.progress.hide()  # shown once a run starts
        self.status = QLabel(
            "Training runs in the background; browsing and culling keep working. On a CPU it takes a while."
        )
        self.status.setObjectName("muted")
        self.status.setWordWrap(True)

        self.start_button = QPushButton("Start training")
        self.start_button.setDefault(True)
        self.start_button.clicked.connect(self.start)
        self.cancel_button = QPushButton("Cancel training")
        self.cancel_button.clicked.connect(self.cancel)
        self.cancel_button.hide()
        self.use_button = QPushButton("Use the new model")
        self.use_button.clicked.connect(self._use)
        self.use_button.hide()
        self.close_button = QPushButton("Close")
        self.close_button.clicked.connect(self.close)
        buttons = QHBoxLayout()
        buttons.addStretch(1)
        for b in (self.start_button, self.cancel_button, self.use_button, self.close_button):
            buttons.addWidget(b)

        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.progress)
        layout.addWidget(self.status)
        layout.addLayout(buttons)
        if len(self.rated.rows) < MIN_RATED:
            self.start_button.setEnabled(False)
            self.status.setText(
                f"Rate at least {MIN_RATED} photos with stars (1–5) or reject some (X) first: "
                "training learns your taste from them."
            )

    # ------------------------------------------------------------------ running

    @property
    def running(self) -> bool:
        return self.training is not None and self.training.running

    def config(self) -> TrainConfig:
        """The TrainConfig this dialog runs (data: the ratings CSV beside the output folder)."""
        from humanaes_core.train import TrainConfig

        out = Path(self.output.text().strip()).expanduser()
        n = len(self.rated.rows)
        device = self.settings.scoring.device
        return TrainConfig(
            data=str(ratings_file(out)),
            base=self.settings.scoring.model,
            out=str(out),
            epochs=self.epochs.value(),
            max_tiles=self.max_tiles.value(),
            batch_size=4,
            workers=0,  # no DataLoader processes forked from a GUI process
            save_every=0,
            val_fraction=0.05 if n >= 40 else 0.0,  # a hold-out of one or two photos measures nothing
            cpu=device == "cpu",
            quiet=True,
            allow_absolute_paths=True,
            name=f"{Path(self.settings.scoring.model).name} + {self.folder.name or 'my'} ratings",
        )

    def start(self) -> None:
        """Write the ratings CSV and start the run (no-op while one runs)."""
        if self.running or len(self.rated.rows) < MIN_RATED:
            return
        from humanaes_core.errors import HumanAesError

        try:
            config = self.config()
            config.validate()
            out = Path(config.out)
            if out.exists() and any(out.iterdir()):
                raise HumanAesError(f"{out} exists and is not empty; choose a new folder")
            csv_path = write_ratings_csv(self.rated.rows, Path(config.data))
        except (HumanAesError, OSError) as e:
            self._finished(f"Cannot start: {e}")
            return
        self.outcome = None
        if self.training is not None:
            self.training.deleteLater()  # the last run has ended (start is a no-op while one runs)
        self.training = training = TrainingRun(config, csv_path, self)
        training.prepared.connect(self._on_prepared)
        training.stepped.connect(self._on_step)
        training.stage.connect(self.status.setText)
        training.succeeded.connect(self._on_succeeded)
        training.failed.connect(self._finished)
        training.cancelled.connect(self._finished)
        for w in (self.output, self.epochs, self.max_tiles):
            w.setEnabled(False)
        self.start_button.hide()
        self.use_button.hide()
        self.cancel_button.show()
        self.cancel_button.setEnabled(True)
        self.progress.setRange(0, 0)  # busy until the step count is known
        self.progress.setFormat("step %v / %m")
        self.progress.show()
        training.start()

    def cancel(self) -> None:
        if self.running and self.training is not None:
            self.training.cancel()
            self.cancel_button.setEnabled(False)
            self.status.setText("Cancelling after the current step…")

    def wait(self, msecs: int = -1) -> bool:
        """Block until the run has ended (closing the window, tests)."""
        return self.training is None or self.training.wait(msecs)

    def _on_prepared(self, total: int, samples: int) -> None:
        self.progress.setRange(0, max(1, total))
        self.progress.setValue(0)
        self.status.setText(f"Learning: {count(total, 'step')} on {count(samples, 'photo')}")

    def _on_step(self, step: int, loss: float) -> None:
        self.progress.setValue(step)
        if not math.isnan(loss):
            self.progress.setFormat(f"step %v / %m  ·  loss {loss:.4f}")

    def _on_succeeded(self, outcome: TrainOutcome) -> None:
        self.outcome = outcome
        self.progress.setRange(0, 1)
        self.progress.setValue(1)
        self.progress.setFormat("done")
        late = self.training is not None and self.training.cancel_requested
        prefix = "The last step cannot be interrupted, so the run finished. " if late else ""
        lines = [f"{prefix}Trained on your ratings; saved to {outcome.output}.", *outcome.taste]
        self._finished("\n".join(lines))
        technical = f"{count(outcome.steps, 'step')}"
        if outcome.stage1_loss is not None:
            technical += f", final loss {outcome.stage1_loss:.4f}"
        if outcome.metavoter_mae is not None:
            technical += f", MetaVoter MAE {outcome.metavoter_mae:.3f}"
        self.status.setToolTip(technical)
        self.use_button.show()
        self.use_button.setDefault(True)

    def _finished(self, message: str) -> None:
        self.message = message
        self.status.setText(message)
        self.cancel_button.hide()
        if self.outcome is None:
            self.progress.setRange(0, 1)
            self.progress.setValue(0)
            self.start_button.show()
            for w in (self.output, self.epochs, self.max_tiles):
                w.setEnabled(True)
            self._set_output(default_output(self.folder))

    def _set_output(self, path: Path) -> None:
        """Show the output folder from its start (a long path is cut at its end, not its beginning) and
        wide enough for a usual path; the full path is in the tooltip."""
        text = str(path)
        self.output.setText(text)
        self.output.setCursorPosition(0)
        self.output.setToolTip(text)
        self.output.setMinimumWidth(min(self.output.fontMetrics().horizontalAdvance(text) + 24, 640))

    def _use(self) -> None:
        """Switch to the new model once: the dialog's work is done, so it closes (the window says it
        re-scores)."""
        if self.outcome is not None:
            self.use_button.setEnabled(False)
            self.use_model.emit(str(self.outcome.output))
            self.close()

    def _browse(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Where should the new model go?", str(models_dir()))
        if folder:
            self._set_output(Path(folder) / default_output(self.folder).name)

    def closeEvent(self, event: Any) -> None:
        if self.running:
            self.cancel()
            self.wait()
        super().closeEvent(event)
