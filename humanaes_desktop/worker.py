"""Scoring off the UI thread: collect files, resolve (maybe download) the model, score through the cache.

The UI thread only ever receives events. Everything slow — walking folders, hashing files, loading
or downloading the model, the model itself, cache writes — happens in a `ScoringRun` on the scoring
lane (`background.Lane`). The cache hits arrive first, as one batch, before anything that needs torch:
the expert head for attribution is read only after them (or just before the model loads), so a fully
cached folder shows its scores without waiting for torch to import. Newly scored photos then arrive in
small batches, so the grid fills without the UI drowning in one event per photo.

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

from PySide6.QtCore import QObject, Signal

from .background import Job, Lane
from .settings import ScoringSettings

log = logging.getLogger(__name__)

FLUSH_EVERY_S = 0.1
FLUSH_MAX = 64


@dataclass(frozen=True)
class ScoringJob:
    """What to score: photo files and/or folders, and how."""

    paths: tuple[str, ...]
    settings: ScoringSettings
    recursive: bool = True
    library: str = ""  # the app's library setting ("": the default library)


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
    attributor: Any = None  # humanaes_core.attribution.HeadsAttributor, None if it could not be read
    settings: ScoringSettings = field(default_factory=ScoringSettings)


class ScoringRun:
    """One ScoringJob, run on a lane thread; pause, resume and cancel are safe to call from any thread.

    What it finds is reported as (event name, args) through the lane job: "files_found" (files,
    problems), "hashes" ({path: content hash}), "model_ready" (ModelInfo: first without its attributor,
    then once more with it after the cache hits), "results" ([(path, card, error)]), "progress"
    (Progress), "download" (description, done bytes, total bytes).
    """

    def __init__(self, job: ScoringJob, scorer: Any = None) -> None:
        self.job = job
        self.scorer = scorer  # a Scorer from an earlier run with the same settings, reused
        self._cancel = threading.Event()
        self._running = threading.Event()
        self._running.set()
        self.progress_state = Progress()
        self._scoring_since: float | None = None
        self._scoring_active_s = 0.0
        self._scored_since = 0
        self._report: Callable[[Any], None] = lambda _event: None
        self._info: ModelInfo | None = None  # sent without its attributor until the cache hits are out
        self._flush: Callable[[], None] = lambda: None  # sends the results held back (set by _consume)

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

    @property
    def cancelled(self) -> bool:
        return self._cancel.is_set()

    # -------------------------------------------------------------- the run (lane thread)

    def run(self, job: Job) -> bool:
        """Score the job's photos; returns whether it was cancelled. Errors propagate to the lane."""
        self._report = job.report
        self._run()
        return self._cancel.is_set()

    def _send(self, event: str, *args: Any) -> None:
        self._report((event, args))

    def _run(self) -> None:
        from humanaes_core.formats import collect_photos
        from humanaes_core.store import ScoreCache

        files, problems = collect_photos(self.job.paths, recursive=self.job.recursive)
        self._send("files_found", files, [(p.path, p.reason) for p in problems])
        state = self.progress_state
        state.total = len(files)
        self._send("progress", replace(state))
        if not files or self._cancel.is_set():
            return
        with ScoreCache(self.job.library or None) as cache:
            # Hashed here, before the model is even resolved, so decisions show at once (and still show
            # when the model cannot be loaded); the scoring run below reuses these hashes.
            hashed = cache.hash_files(files)
            self._send(
                "hashes", {str(p): h.content_hash for p, h in hashed.items() if not isinstance(h, OSError)}
            )
            if self._cancel.is_set():
                return
            scoring = self._make_scoring(cache)
            if self._cancel.is_set():
                return
            self._consume(scoring, files, hashed)

    def _make_scoring(self, cache: Any) -> Any:
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
            progress=_download_bar(lambda desc, n, total: self._send("download", desc, n, total)),
            on_model_load=self._loading,
        )
        if self.scorer is not None and getattr(self.scorer, "fingerprint", None) == scoring.model_fp:
            scoring.scorer = self.scorer
        self._info = ModelInfo(scoring.model_path, scoring.model_fp, None, s)
        self._send("model_ready", self._info)
        return scoring

    def _send_attributor(self) -> None:
        """The model info again, now with the heads for explanations (once per run).

        Reading it imports torch (seconds, the first time): that waits until the cache hits are on
        screen, or until the model is about to load anyway (or has, in an earlier run: then with the
        first photo it scores).
        """
        from humanaes_core.attribution import HeadsAttributor
        from humanaes_core.errors import HumanAesError

        info, self._info = self._info, None
        if info is None:
            return
        try:
            attributor = HeadsAttributor.from_checkpoint(info.path)
        except (HumanAesError, OSError, ValueError) as e:
            log.warning("attribution unavailable for %s: %s", info.path, e)
            return
        self._send("model_ready", replace(info, attributor=attributor))

    def _loading(self, loading: bool) -> None:
        if loading:  # the cache hits held in the batch go out before the model takes seconds to load
            self._flush()
            self._send_attributor()
        self.progress_state.loading_model = loading
        if not loading:
            self._scoring_since = time.perf_counter()
        self._send("progress", replace(self.progress_state))

    def _consume(self, scoring: Any, files: list[Path], hashed: Any) -> None:
        state = self.progress_state
        batch: list[tuple[str, Any, str | None]] = []
        last_flush: float | None = None  # from the first result: the cache lookup before it is no wait

        def flush() -> None:
            nonlocal batch, last_flush
            if batch:
                self._send("results", batch)
                batch = []
            self._update_rate()
            self._send("progress", replace(state))
            last_flush = time.perf_counter()

        self._flush = flush
        iterator = scoring.run(files, hashed)
        try:
            for result in iterator:
                if last_flush is None:
                    last_flush = time.perf_counter()
                card = result.card
                batch.append((str(result.source), card, result.error))
                state.done += 1
                hit = False
                if result.error is not None:
                    state.failed += 1
                elif scoring.stats.cached > state.cached:
                    state.cached = scoring.stats.cached
                    hit = True
                else:
                    state.scored += 1
                    self._scored_since += 1
                    if self._info is not None:  # a model kept from an earlier run: nothing announced it
                        self._send_attributor()
                # Cache hits come out of one query within milliseconds: one batch, one sort on screen.
                if (not hit and len(batch) >= FLUSH_MAX) or time.perf_counter() - last_flush >= FLUSH_EVERY_S:
                    flush()
                if not self._running.is_set():
                    flush()
                    self._wait_while_paused()
                if self._cancel.is_set():
                    break
        finally:
            # Closing the generator runs its finally blocks (decode threads stop) before the cache closes.
            iterator.close()
            flush()
            self.scorer = scoring.scorer
        if not self._cancel.is_set():
            self._send_attributor()  # a fully cached folder: after its scores are on their way to the screen

    def _wait_while_paused(self) -> None:
        state = self.progress_state
        was_scoring = self._scoring_since is not None
        if self._scoring_since is not None:  # paused time does not count towards photos/s
            self._scoring_active_s += time.perf_counter() - self._scoring_since
            self._scoring_since = None
        state.paused = True
        self._send("progress", replace(state))
        self._running.wait()
        state.paused = False
        if was_scoring:
            self._scoring_since = time.perf_counter()
        self._send("progress", replace(state))

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
    """Starts, pauses, resumes and cancels runs on the scoring lane, one at a time.

    Its signals carry no generation: starting a run makes everything the previous one still sends
    stale (`background.Lane.invalidate`), so cards of two models or two folders never mix on screen.
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
        self._lane = Lane("humanaes-scoring", 1, self)
        self._run: ScoringRun | None = None
        self._pending: ScoringJob | None = None
        self._scorer: Any = None
        self._scorer_settings: ScoringSettings | None = None
        self._events = {
            "files_found": self.files_found,
            "hashes": self.hashes,
            "model_ready": self.model_ready,
            "results": self.results,
            "progress": self.progress,
            "download": self.download,
        }

    @property
    def running(self) -> bool:
        return self._run is not None

    @property
    def paused(self) -> bool:
        return self._run is not None and self._run.paused

    @property
    def has_model(self) -> bool:
        """A Scorer (the model, in memory) is kept from an earlier run."""
        return self._scorer is not None

    def start(
        self, paths: list[str], settings: ScoringSettings, recursive: bool = True, library: str = ""
    ) -> None:
        """Score `paths` into `library` (the app's setting); a run in progress is cancelled first and
        nothing more of it is delivered."""
        self._lane.invalidate()
        job = ScoringJob(tuple(paths), replace(settings), recursive, library)
        if self._run is not None:
            self._pending = job
            self._run.cancel()
        else:
            self._launch(job)

    def pause(self) -> None:
        if self._run is not None:
            self._run.pause()

    def resume(self) -> None:
        if self._run is not None:
            self._run.resume()

    def toggle_pause(self) -> None:
        if self.paused:
            self.resume()
        else:
            self.pause()

    def cancel(self) -> None:
        """Stop after the batch in flight; what was scored stays cached and its results still arrive."""
        self._pending = None
        if self._run is not None:
            self._run.cancel()

    def drop_model(self) -> None:
        """Forget the kept Scorer (another model or settings): its memory is freed after the run ends."""
        self._scorer = None
        self._scorer_settings = None

    def shutdown(self) -> None:
        """Cancel and wait for the run (closing the window): at most the batch in flight."""
        self._lane.invalidate()  # nothing from the ending run is delivered any more
        self.cancel()
        self._lane.shutdown()

    # -------------------------------------------------------------- internals

    def _launch(self, job: ScoringJob) -> None:
        if self._scorer_settings != job.settings:
            self.drop_model()  # let the old model go before the new one loads: never two in memory
        run = ScoringRun(job, self._scorer)
        self._run = run
        self._lane.submit(
            run.run,
            with_job=True,
            progress=self._on_event,
            done=self.finished.emit,
            failed=lambda error: self._on_error(run, error),
            ended=lambda: self._on_ended(run),
        )
        self.running_changed.emit(True)

    def _on_event(self, event: tuple[str, tuple]) -> None:
        name, args = event
        self._events[name].emit(*args)

    def _on_error(self, run: ScoringRun, error: BaseException) -> None:
        from humanaes_core.errors import HumanAesError

        if isinstance(error, HumanAesError):
            self.failed.emit(str(error))
        else:
            log.error("scoring run failed", exc_info=error)
            self.failed.emit(
                f"Scoring stopped because of an unexpected error: {error.__class__.__name__}: {error}"
            )
        self.finished.emit(run.cancelled)

    def _on_ended(self, run: ScoringRun) -> None:
        if run.scorer is not None:
            self._scorer, self._scorer_settings = run.scorer, run.job.settings
            run.scorer = None
        self._run = None
        pending, self._pending = self._pending, None
        if pending is not None:
            self._launch(pending)
        else:
            self.running_changed.emit(False)
