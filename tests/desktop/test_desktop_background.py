"""The app's one background mechanism (`humanaes_desktop.background`): delivery on the UI thread, order,
progress, errors, and the stale-result guard."""

from __future__ import annotations

import threading
import time
import warnings

import pytest

pytest.importorskip("PySide6")
pytest.importorskip("pytestqt")

from humanaes_desktop.background import Generation, Job, Lane


def test_results_come_back_on_the_ui_thread_in_submission_order(qtbot):
    lane = Lane("test-order", 1)
    seen: list[tuple[int, bool]] = []
    workers: set[int] = set()

    def work(n: int) -> int:
        workers.add(threading.get_ident())
        time.sleep(0.002)
        return n

    for n in range(20):
        lane.submit(
            work, n, done=lambda n: seen.append((n, threading.current_thread() is threading.main_thread()))
        )
    assert lane.busy
    qtbot.waitUntil(lambda: not lane.busy, timeout=5000)
    assert seen == [(n, True) for n in range(20)]
    assert len(workers) == 1 and threading.main_thread().ident not in workers  # one thread, never the UI's


def test_progress_errors_and_ended(qtbot):
    lane = Lane("test-progress", 1)
    progress: list[int] = []
    errors: list[BaseException] = []
    ended: list[str] = []

    def counting(job: Job, n: int) -> str:
        for i in range(n):
            job.report(i)
        return "counted"

    def broken() -> None:
        raise ValueError("no such photo")

    done: list[str] = []
    lane.submit(
        counting,
        3,
        with_job=True,
        progress=progress.append,
        done=done.append,
        ended=lambda: ended.append("a"),
    )
    lane.submit(broken, failed=errors.append, ended=lambda: ended.append("b"))
    qtbot.waitUntil(lambda: not lane.busy, timeout=5000)
    assert progress == [0, 1, 2] and done == ["counted"]
    assert [str(e) for e in errors] == ["no such photo"] and isinstance(errors[0], ValueError)
    assert ended == ["a", "b"]


def test_superseded_work_delivers_nothing_and_stops_early(qtbot):
    lane = Lane("test-stale", 1)
    gate = threading.Event()
    delivered: list[str] = []
    ran: list[str] = []
    ended: list[str] = []

    def slow(job: Job) -> str:
        ran.append("slow")
        gate.wait(5)
        job.report("late progress")
        return "stale" if job.cancelled else "not told"

    def queued() -> str:
        ran.append("queued")
        return "queued"

    lane.submit(
        slow,
        with_job=True,
        done=delivered.append,
        progress=delivered.append,
        ended=lambda: ended.append("slow"),
    )
    lane.submit(queued, done=delivered.append, ended=lambda: ended.append("queued"))
    qtbot.waitUntil(lambda: ran == ["slow"], timeout=5000)
    lane.invalidate()  # another folder was opened
    lane.submit(lambda: "fresh", done=delivered.append)
    gate.set()
    qtbot.waitUntil(lambda: not lane.busy, timeout=5000)
    assert delivered == ["fresh"]
    assert ran == ["slow"]  # the stale job still queued never ran
    assert ended == ["slow", "queued"]  # bookkeeping runs whether or not the result was wanted


def test_a_shared_generation_guards_jobs_on_any_lane(qtbot):
    folder = Generation()
    lane = Lane("test-guard", 1)
    delivered: list[str] = []
    gate = threading.Event()
    lane.submit(lambda: gate.wait(5) and "old folder", done=delivered.append, guard=folder)
    folder.advance()
    lane.submit(lambda: "new folder", done=delivered.append, guard=folder)
    lane.submit(lambda: "unguarded", done=delivered.append)
    gate.set()
    qtbot.waitUntil(lambda: not lane.busy, timeout=5000)
    assert delivered == ["new folder", "unguarded"]


def test_shutdown_waits_for_every_job_and_delivers_nothing_after(qtbot):
    lane = Lane("test-shutdown", 1)
    written: list[int] = []
    delivered: list[int] = []

    def write(n: int) -> int:
        time.sleep(0.01)
        written.append(n)
        return n

    for n in range(5):
        lane.submit(write, n, done=delivered.append)
    lane.shutdown()  # closing the window: the writes asked for all happen
    assert written == list(range(5))
    qtbot.wait(50)
    assert delivered == []


def test_workers_leave_the_process_warnings_state_alone(qtbot):
    """superqt's own run() swaps warnings.showwarning per job, which is not thread-safe."""
    lane = Lane("test-warnings", 4)

    def noisy() -> None:
        for _ in range(20):
            warnings.warn("a library being chatty", UserWarning, stacklevel=1)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        before_show, before_filters = warnings.showwarning, list(warnings.filters)
        for _ in range(200):
            lane.submit(noisy)
        assert lane.wait(20000)
        qtbot.waitUntil(lambda: not lane.busy, timeout=10000)
        assert warnings.showwarning is before_show
        assert warnings.filters == before_filters


def test_garbage_is_collected_on_the_ui_thread_only(qtbot) -> None:
    """Automatic collection is off; the UI thread's timer collects what crossed the thresholds."""
    import gc

    from humanaes_desktop.background import UiThreadGarbage

    collector = UiThreadGarbage()
    try:
        assert not gc.isenabled()
        for _ in range(gc.get_threshold()[0] + 10):
            cycle: list = []
            cycle.append(cycle)
        assert gc.get_count()[0] > gc.get_threshold()[0]
        collector.collect_due()
        assert gc.get_count()[0] < gc.get_threshold()[0]
    finally:
        collector.deleteLater()
        gc.enable()
