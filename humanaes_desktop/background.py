"""The app's one way to work off the UI thread: lanes of superqt workers, results back on the UI thread.

Every slow thing the app does — scoring, training, thumbnails, capture times, decisions, sidecar scans,
writes and exports — is a plain function submitted to a `Lane`. It runs as a superqt `FunctionWorker`
(the napari team's worker: a QRunnable whose signals are queued to the UI thread) on the lane's own
thread pool, and its result, error and progress reports arrive as calls on the UI thread. The UI thread
never waits for a job; only `Lane.shutdown` (closing a window) does.

Stale results are dropped here, in one place. A job belongs to a `Generation` (the lane's own unless
it is given another); once that generation advances (another folder, another run, newer settings) the
job is stale: nothing it returns or reports is delivered, a job still queued is skipped, and a running
one sees `job.cancelled` and can stop early.

Why a lane owns its pool instead of using Qt's global one: decisions must be written in key-press order
on one thread (its SQLite connection lives there), and a long scoring or training run must never hold
up thumbnails or key presses waiting for a free global thread.
"""

from __future__ import annotations

import gc
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from PySide6.QtCore import QObject, QThreadPool, QTimer, Signal

# superqt reaches Qt through qtpy, which would prefer PyQt5 if that is installed too: the app is PySide6.
os.environ.setdefault("QT_API", "pyside6")

from superqt.utils import FunctionWorker, create_worker

log = logging.getLogger(__name__)


class Generation:
    """A counter of "everything before this is outdated" moments; work remembers the value it began in."""

    def __init__(self) -> None:
        self._value = 0

    def advance(self) -> None:
        """Make all work begun so far stale."""
        self._value += 1

    def token(self) -> Token:
        return Token(self, self._value)


@dataclass(frozen=True)
class Token:
    """The generation a job began in; stale once it has advanced (readable from any thread)."""

    generation: Generation
    value: int

    @property
    def stale(self) -> bool:
        return self.generation._value != self.value


class _Worker(FunctionWorker):
    """superqt's FunctionWorker, run without its warnings capture.

    `WorkerBase.run` wraps every job in `warnings.catch_warnings()` and swaps `warnings.showwarning`:
    process-wide state that is not thread-safe, so with several workers at once (thumbnails, scoring,
    decisions) one worker's exit can leave another's handler installed for the whole app. A job
    already stale when its turn comes is skipped.
    """

    job: Job

    def run(self) -> None:
        if not (self.abort_requested or self.job.stale):
            try:
                result = self.work()
            except Exception as exc:  # delivered to the UI thread; must never take a pool thread down
                self.errored.emit(exc)
            else:
                self.returned.emit(result)
        self.finished.emit()


class Job(QObject):
    """One submitted function: its callbacks, its generation, and `report` for progress from its thread."""

    _reported = Signal(object)

    def __init__(
        self,
        lane: Lane,
        token: Token,
        done: Callable[[Any], None] | None,
        failed: Callable[[BaseException], None] | None,
        progress: Callable[[Any], None] | None,
        ended: Callable[[], None] | None,
    ) -> None:
        super().__init__()
        self._lane = lane
        self.token = token
        self._done, self._failed, self._progress, self._ended = done, failed, progress, ended
        self._reported.connect(self._on_progress)
        self.worker: _Worker | None = None

    @property
    def stale(self) -> bool:
        return self.token.stale

    @property
    def cancelled(self) -> bool:
        """Nothing this job produces will be delivered any more: a long job may stop (any thread)."""
        return self.token.stale or self._lane.closed

    def report(self, value: Any) -> None:
        """From the job's thread: `progress(value)` on the UI thread, unless the job is stale by then."""
        self._reported.emit(value)

    def _wanted(self) -> bool:
        return not self.cancelled

    def _on_progress(self, value: Any) -> None:
        if self._progress is not None and self._wanted():
            self._progress(value)

    def _on_returned(self, result: Any) -> None:
        if self._done is not None and self._wanted():
            self._done(result)

    def _on_errored(self, exc: BaseException) -> None:
        if self._failed is None:
            log.warning("background job failed", exc_info=exc)
        elif self._wanted():
            log.debug("background job failed", exc_info=exc)
            self._failed(exc)

    def _on_finished(self) -> None:
        self._lane._forget(self)
        if self._ended is not None and not self._lane.closed:
            self._ended()


class Lane(QObject):
    """A named pool of `threads` workers (one: jobs run in submission order, always on the same thread)."""

    def __init__(self, name: str, threads: int = 1, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.setObjectName(name)
        self.generation = Generation()
        self._pool = QThreadPool(self)
        self._pool.setMaxThreadCount(threads)
        self._pool.setExpiryTimeout(-1)  # threads live as long as the lane: thread-bound state stays valid
        self._jobs: set[Job] = set()
        self.closed = False

    @property
    def busy(self) -> bool:
        """Jobs submitted whose end has not been delivered yet."""
        return bool(self._jobs)

    @property
    def threads(self) -> int:
        return self._pool.maxThreadCount()

    def submit(
        self,
        fn: Callable[..., Any],
        *args: Any,
        done: Callable[[Any], None] | None = None,
        failed: Callable[[BaseException], None] | None = None,
        progress: Callable[[Any], None] | None = None,
        ended: Callable[[], None] | None = None,
        guard: Generation | None = None,
        with_job: bool = False,
    ) -> Job:
        """Run `fn(*args)` (`fn(job, *args)` with `with_job`, for `job.report` and `job.cancelled`).

        On the UI thread afterwards: `done(result)` or `failed(exception)`, unless the job is stale by
        then (its generation: `guard`, else the lane's, has advanced); then `ended()` in any case, so
        bookkeeping such as "start the next run" never depends on a result being wanted.
        """
        job = Job(self, (guard or self.generation).token(), done, failed, progress, ended)
        call_args = (job, *args) if with_job else args
        worker = create_worker(
            fn,
            *call_args,
            _worker_class=_Worker,
            _start_thread=False,
            _ignore_errors=True,
            _connect={"returned": job._on_returned, "errored": job._on_errored, "finished": job._on_finished},
        )
        worker.job = job
        job.worker = worker
        self._jobs.add(job)
        self._pool.start(worker)
        return job

    def invalidate(self) -> None:
        """Everything submitted so far (under the lane's own generation) is stale."""
        self.generation.advance()
        for job in list(self._jobs):
            if job.stale and job.worker is not None:
                job.worker.quit()  # skipped if it has not started yet

    def wait(self, msecs: int = -1) -> bool:
        """Block until every job has run (closing a window, tests); False on timeout."""
        return self._pool.waitForDone(msecs)

    def shutdown(self, *, drop_queued: bool = False) -> None:
        """Wait for the jobs (all of them, or with `drop_queued` only those running); nothing is
        delivered afterwards. Writes the photographer asked for are never dropped by default."""
        self.closed = True
        if drop_queued:
            for job in list(self._jobs):
                if job.worker is not None:
                    job.worker.quit()
        self._pool.waitForDone()

    def _forget(self, job: Job) -> None:
        self._jobs.discard(job)
        job.worker = None


class UiThreadGarbage(QObject):
    """Python's cyclic garbage collected on the UI thread only.

    The collector runs in whichever thread happens to allocate when a threshold is crossed. With lanes of
    worker threads that is often a worker, and a reference cycle holding a Qt object (a dialog and its
    callbacks, a finished job) is then destroyed off the UI thread, which crashes PySide. Automatic
    collection is turned off and this timer collects, on the UI thread, the generations whose
    thresholds have been crossed, as the automatic collector would have.
    """

    def __init__(self, parent: QObject | None = None, interval_ms: int = 500) -> None:
        super().__init__(parent)
        gc.disable()
        self._timer = QTimer(self)
        self._timer.timeout.connect(self.collect_due)
        self._timer.start(interval_ms)

    def collect_due(self) -> None:
        counts, thresholds = gc.get_count(), gc.get_threshold()
        due = [g for g in range(3) if counts[g] > thresholds[g]]
        if due:
            gc.collect(max(due))
