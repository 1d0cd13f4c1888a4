"""Scoring in a worker thread: collect files, resolve (maybe download) the model, score through the cache.

The UI thread only ever receives signals. Everything slow — walking folders, hashing files, loading
or downloading the model, the model itself, cache writes — happens in the worker's QThread. Results
arrive in small batches (cache hits first, at once), so the grid fills without the UI drowning in
one signal per photo.

One run at a time: a new run (another folder, other settings) cancels the current one and starts
when it has ended, so two models are never in memory at once. A loaded Scorer is kept between runs
with the same settings, so rescanning a folder does not reload the model.
"""

from __future__ import annotations

import io
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, QThread, Signal, Slot

from .settings import ScoringSettings

log = logging.getLogger(__name__)

FLUSH_EVERY_S = 0.1
FLUSH_MAX = 64


@dataclass(frozen=True)
class ScoringJob:
    """What to score: photo files and/or folders, how, and which run this is."""

    paths: tuple[str, ...]
    settings: ScoringSettings
    recursive: bool = True
    generation: int = 0


@dataclass
class Progress:
    """Where a run stands, for the status bar."""

    total: int = 0
    done: int = 0
    cached: int = 0
    scored: int = 0
    failed: int = 0
    rate: float = 0.0  # newly scored photos per second (pauses excluded)
    eta_s: float | None = None
    paused: bool = False
    loading_model: bool = False


@dataclass
class ModelInfo:
    """The resolved model: where it is, its fingerprint, and its expert FFNs for attribution."""

    path: Path
    fingerprint: str
    attributor: Any = None  # humanaes_core.attribution.ExpertAttributor, None if it could not be read
    settings: ScoringSettings = field(default_factory=ScoringSettings)


class ScoringWorker(QObject):
    """Runs one ScoringJob in its thread; pause, resume and cancel are safe to call from any thread."""

    files_found = Signal(int, list, list)  # generation, [Path], [(path, reason)]
    hashes = Signal(int, dict)  # generation, {path str: content hash} (decisions are keyed by it)
    model_ready = Signal(int, object)  # generation, ModelInfo
    results = Signal(int, list)  # generation, [(path str, ScoreCard | None, error | None)]
    progress = Signal(int, object)  # generation, Progress
    download = Signal(int, str, float, float)  # generation, description, done bytes, total bytes
    failed = Signal(int, str)  # generation, a message for the photographer (model missing, offline, ...)
    finished = Signal(int, bool)  # generation, cancelled

    def __init__(self, job: ScoringJob, scorer: Any = None) -> None:
        super().__init__()
        self.job = job
        self.scorer = scorer  # a Scorer from an earlier run with the same settings, reused
        self._cancel = threading.Event()
        self._running = threading.Event()
        self._running.set()
        self.progress_state = Progress()
        self._scoring_since: float | None = None
        self._scoring_active_s = 0.0
        self._scored_since = 0

    # -------------------------------------------------------------- control (any thread)

    def pause(self) -> None:
        self._running.clear()

    def resume(self) -> None:
        self._running.set()

    def cancel(self) -> None:
        self._cancel.set()
        self._running.set()  # a paused run must wake up to notice

    @property
    def paused(self) -> bool:
        return not self._running.is_set()

    # -------------------------------------------------------------- the run (worker thread)

    @Slot()
    def run(self) -> None:
        gen = self.job.generation
        try:
            self._run(gen)
        except Exception as e:
            from humanaes_core.errors import HumanAesError

            if isinstance(e, HumanAesError):
                self.failed.emit(gen, str(e))
            else:
                log.exception("scoring run failed")
                self.failed.emit(
                    gen, f"Scoring stopped because of an unexpected error: {e.__class__.__name__}: {e}"
                )
        finally:
            self.finished.emit(gen, self._cancel.is_set())

    def _run(self, gen: int) -> None:
        from humanaes_core.formats import collect_photos
        from humanaes_core.store import ScoreCache

        files, problems = collect_photos(self.job.paths, recursive=self.job.recursive)
        self.files_found.emit(gen, files, [(p.path, p.reason) for p in problems])
        state = self.progress_state
        state.total = len(files)
        self.progress.emit(gen, replace(state))
        if not files or self._cancel.is_set():
            return
        with ScoreCache() as cache:
            # Hashed here, before the model is even resolved, so decisions show at once (and still show
            # when the model cannot be loaded); the scoring run below finds them on the cache's fast path.
            hashes = cache.content_hashes(files)
            self.hashes.emit(gen, {str(p): h for p, h in hashes.items() if isinstance(h, str)})
            if self._cancel.is_set():
                return
            scoring = self._make_scoring(gen, cache)
            if self._cancel.is_set():
                return
            self._consume(gen, scoring, files)

    def _make_scoring(self, gen: int, cache: Any) -> Any:
        from humanaes_core.attribution import ExpertAttributor
        from humanaes_core.errors import HumanAesError
        from humanaes_core.scoring import CachedScoring

        s = self.job.settings
        scoring = CachedScoring(
            s.model,
            cache=cache,
            device=s.device,
            precision=s.dtype,
            quantize=s.quantize,
            max_tiles=s.max_tiles,
            batch_size=s.batch_size,
            heads="all",
            progress=_download_bar(lambda desc, n, total: self.download.emit(gen, desc, n, total)),
            on_model_load=lambda loading: self._loading(gen, loading),
        )
        if self.scorer is not None and getattr(self.scorer, "fingerprint", None) == scoring.model_fp:
            scoring.scorer = self.scorer
        try:
            attributor = ExpertAttributor.from_checkpoint(scoring.model_path)
        except (HumanAesError, OSError, ValueError) as e:
            log.warning("attribution unavailable for %s: %s", scoring.model_path, e)
            attributor = None
        self.model_ready.emit(gen, ModelInfo(scoring.model_path, scoring.model_fp, attributor, s))
        return scoring

    def _loading(self, gen: int, loading: bool) -> None:
        self.progress_state.loading_model = loading
        if not loading:
            self._scoring_since = time.perf_counter()
        self.progress.emit(gen, replace(self.progress_state))

    def _consume(self, gen: int, scoring: Any, files: list[Path]) -> None:
        state = self.progress_state
        batch: list[tuple[str, Any, str | None]] = []
        last_flush = time.perf_counter()

        def flush() -> None:
            nonlocal batch, last_flush
            if batch:
                self.results.emit(gen, batch)
                batch = []
            self._update_rate()
            self.progress.emit(gen, replace(state))
            last_flush = time.perf_counter()

        iterator = scoring.run(files)
        try:
            for result in iterator:
                card = result.card
                batch.append((str(result.source), card, result.error))
                state.done += 1
                if result.error is not None:
                    state.failed += 1
                elif scoring.stats.cached > state.cached:
                    state.cached = scoring.stats.cached
                else:
                    state.scored += 1
                    self._scored_since += 1
                if len(batch) >= FLUSH_MAX or time.perf_counter() - last_flush >= FLUSH_EVERY_S:
                    flush()
                if not self._running.is_set():
                    flush()
                    self._wait_while_paused(gen)
                if self._cancel.is_set():
                    break
        finally:
            # Closing the generator runs its finally blocks (decode threads stop) before the cache closes.
            iterator.close()
            flush()
            self.scorer = scoring.scorer

    def _wait_while_paused(self, gen: int) -> None:
        state = self.progress_state
        was_scoring = self._scoring_since is not None
        if self._scoring_since is not None:  # paused time does not count towards photos/s
            self._scoring_active_s += time.perf_counter() - self._scoring_since
            self._scoring_since = None
        state.paused = True
        self.progress.emit(gen, replace(state))
        self._running.wait()
        state.paused = False
        if was_scoring:
            self._scoring_since = time.perf_counter()
        self.progress.emit(gen, replace(state))

    def _update_rate(self) -> None:
        state = self.progress_state
        active = self._scoring_active_s
        if self._scoring_since is not None:
            active += time.perf_counter() - self._scoring_since
        if self._scored_since and active > 0:
            state.rate = self._scored_since / active
            state.eta_s = (state.total - state.done) / state.rate if state.rate > 0 else None


def _download_bar(emit: Callable[[str, float, float], None]) -> type:
    """A tqdm class for huggingface_hub that reports byte progress through `emit` instead of a terminal."""
    from tqdm.auto import tqdm

    class _Bar(tqdm):  # type: ignore[misc, valid-type]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            kwargs["file"] = io.StringIO()
            kwargs.pop("name", None)
            super().__init__(*args, **kwargs)

        def update(self, n: float | None = 1) -> bool | None:
            out = super().update(n)
            if self.unit == "B" and self.total:
                emit(str(self.desc or "Downloading"), float(self.n), float(self.total))
            return out

    return _Bar


class ScoringController(QObject):
    """Owns the worker thread; starts, pauses, resumes and cancels runs, and drops stale signals.

    Its signals carry no generation: anything from a run that is no longer current never gets here,
    so cards of two models or two folders never mix on screen.
    """

    files_found = Signal(list, list)
    hashes = Signal(dict)
    model_ready = Signal(object)
    results = Signal(list)
    progress = Signal(object)
    download = Signal(str, float, float)
    failed = Signal(str)
    finished = Signal(bool)  # cancelled
    running_changed = Signal(bool)

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._generation = 0
        self._thread: QThread | None = None
        self._worker: ScoringWorker | None = None
        self._pending: ScoringJob | None = None
        self._scorer: Any = None
        self._scorer_settings: ScoringSettings | None = None

    @property
    def running(self) -> bool:
        return self._thread is not None

    @property
    def paused(self) -> bool:
        return self._worker is not None and self._worker.paused

    def start(self, paths: list[str], settings: ScoringSettings, recursive: bool = True) -> int:
        """Score `paths`; a run in progress is cancelled first. Returns the new run's generation."""
        self._generation += 1
        job = ScoringJob(tuple(paths), replace(settings), recursive, self._generation)
        if self._thread is not None:
            self._pending = job
            assert self._worker is not None
            self._worker.cancel()
        else:
            self._launch(job)
        return self._generation

    def pause(self) -> None:
        if self._worker is not None:
            self._worker.pause()

    def resume(self) -> None:
        if self._worker is not None:
            self._worker.resume()

    def toggle_pause(self) -> None:
        if self.paused:
            self.resume()
        else:
            self.pause()

    def cancel(self) -> None:
        """Stop after the batch in flight; what was scored stays cached and its results still arrive."""
        self._pending = None
        if self._worker is not None:
            self._worker.cancel()

    def drop_model(self) -> None:
        """Forget the kept Scorer (another model or settings): its memory is freed after the run ends."""
        self._scorer = None
        self._scorer_settings = None

    def shutdown(self) -> None:
        """Cancel and wait for the worker thread (closing the window): at most the batch in flight."""
        self._generation += 1  # nothing from the ending run is delivered any more
        self.cancel()
        if self._thread is not None:
            self._thread.quit()
            self._thread.wait()

    # -------------------------------------------------------------- internals

    def _launch(self, job: ScoringJob) -> None:
        if self._scorer_settings != job.settings:
            self.drop_model()  # let the old model go before the new one loads: never two in memory
        scorer = self._scorer
        worker = ScoringWorker(job, scorer)
        thread = QThread(self)
        thread.setObjectName(f"humanaes-scoring-{job.generation}")
        worker.moveToThread(thread)
        thread.started.connect(worker.run)
        worker.files_found.connect(self._on_files_found)
        worker.hashes.connect(self._on_hashes)
        worker.model_ready.connect(self._on_model_ready)
        worker.results.connect(self._on_results)
        worker.progress.connect(self._on_progress)
        worker.download.connect(self._on_download)
        worker.failed.connect(self._on_failed)
        worker.finished.connect(self._on_finished)
        self._worker, self._thread = worker, thread
        thread.start()
        self.running_changed.emit(True)

    def _current(self, gen: int) -> bool:
        return gen == self._generation

    @Slot(int, list, list)
    def _on_files_found(self, gen: int, files: list, problems: list) -> None:
        if self._current(gen):
            self.files_found.emit(files, problems)

    @Slot(int, dict)
    def _on_hashes(self, gen: int, hashes: dict) -> None:
        if self._current(gen):
            self.hashes.emit(hashes)

    @Slot(int, object)
    def _on_model_ready(self, gen: int, info: ModelInfo) -> None:
        if self._current(gen):
            self.model_ready.emit(info)

    @Slot(int, list)
    def _on_results(self, gen: int, batch: list) -> None:
        if self._current(gen):
            self.results.emit(batch)

    @Slot(int, object)
    def _on_progress(self, gen: int, progress: Progress) -> None:
        if self._current(gen):
            self.progress.emit(progress)

    @Slot(int, str, float, float)
    def _on_download(self, gen: int, desc: str, done: float, total: float) -> None:
        if self._current(gen):
            self.download.emit(desc, done, total)

    @Slot(int, str)
    def _on_failed(self, gen: int, message: str) -> None:
        if self._current(gen):
            self.failed.emit(message)

    @Slot(int, bool)
    def _on_finished(self, gen: int, cancelled: bool) -> None:
        worker, thread = self._worker, self._thread
        assert worker is not None and thread is not None
        if worker.scorer is not None:
            self._scorer, self._scorer_settings = worker.scorer, worker.job.settings
            worker.scorer = None
        thread.quit()
        thread.wait()
        worker.deleteLater()
        thread.deleteLater()
        self._worker = self._thread = None
        if self._current(gen):
            self.finished.emit(cancelled)
        pending, self._pending = self._pending, None
        if pending is not None:
            self._launch(pending)
        else:
            self.running_changed.emit(False)
