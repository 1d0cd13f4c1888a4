"""Thumbnails of a folder of large JPEGs through the desktop app's own loader, headless.

Ours is `humanaes_desktop.thumbnails.ImageLoader`, the object the photo grid asks for thumbnails: two
pool threads, draft-mode decoding at the thumbnail size, an on-disk thumbnail cache. Naive is what a
simple viewer does: open, decode the full image, `thumbnail()`, one photo after another.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from PIL import Image

from .common import Section, ratio, secs

FIRST_SCREEN = 40  # thumbnails visible in the grid of a maximised window at the default zoom


def _app() -> object:
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtWidgets import QApplication  # not QGuiApplication: widgets (the app, its tests) need this

    return QApplication.instance() or QApplication([])


def _thumbnail_size() -> int:
    try:
        from humanaes_desktop.mainwindow import THUMBNAIL_SIZE
    except ImportError:
        return 320
    return int(THUMBNAIL_SIZE)


def _load_all(
    paths: list[Path], size: int, cache_dir: Path, first: int, timeout_s: float
) -> tuple[float, float]:
    """(seconds to the first screen, seconds to all) for a fresh loader, as the grid drives it."""
    from PySide6.QtCore import QCoreApplication

    from humanaes_desktop.thumbnails import ImageLoader

    _app()
    loader = ImageLoader(size, cache_dir=cache_dir, threads=2, max_queue=len(paths))
    done: set[str] = set()
    failed: dict[str, str] = {}

    def on_ready(path: str) -> None:  # a Python slot: PySide6 mis-counts references of builtin-method slots
        done.add(path)

    def on_failed(path: str, reason: str) -> None:
        failed[path] = reason

    loader.ready.connect(on_ready)
    loader.failed.connect(on_failed)
    started = time.perf_counter()
    deadline = started + timeout_s

    def wait_for(count: int) -> float:
        while len(done) + len(failed) < count:
            if time.perf_counter() > deadline:
                raise TimeoutError(f"thumbnails: {len(done)} of {count} after {timeout_s:.0f} s")
            QCoreApplication.processEvents()  # (the overload with a time limit crashes PySide6 6.12)
            time.sleep(0.001)
        return time.perf_counter() - started

    for p in reversed(paths[:first]):  # newest request first: asking in reverse serves the top row first
        loader.request(p)
    t_first = wait_for(first)
    for p in reversed(paths[first:]):
        loader.request(p)
    t_all = wait_for(len(paths))
    loader.wait()
    loader.deleteLater()
    if failed:
        raise RuntimeError(f"thumbnails failed: {list(failed.items())[:3]}")
    return t_first, t_all


def run(paths: list[Path], work: Path, naive_sample: int) -> Section:
    n = len(paths)
    first = min(FIRST_SCREEN, n)
    size = _thumbnail_size()
    sec = Section(
        "thumbnails",
        f"Thumbnails ({size} px) of a {n}-photo folder of 24 MP JPEGs",
        "python -m bench --only thumbnails",
        ["approach", f"first screen ({first})", f"all {n}", "vs naive (all)"],
    )
    try:
        _app()
        import humanaes_desktop.thumbnails  # noqa: F401
    except ImportError as e:
        sec.skipped = f"the desktop app cannot be imported here ({e})"
        return sec
    for p in paths:  # page cache, for both sides
        p.read_bytes()
    sample = paths[: max(first, min(naive_sample, n))]
    started = time.perf_counter()
    t_naive_first = 0.0
    for i, p in enumerate(sample, 1):
        img = Image.open(p).convert("RGB")  # full decode
        img.thumbnail((size, size), Image.Resampling.LANCZOS)
        if i == first:
            t_naive_first = time.perf_counter() - started
    naive_per = (time.perf_counter() - started) / len(sample)
    t_naive_all = naive_per * n
    thumbs = work / "thumbnail-cache"
    cold_first, cold_all = _load_all(paths, size, thumbs, first, timeout_s=60 + 2 * n)
    warm_first, warm_all = _load_all(paths, size, thumbs, first, timeout_s=60 + n)
    extrapolated = "" if len(sample) == n else f" (measured on {len(sample)}, × {n / len(sample):.1f})"
    sec.row(
        "naive: full decode + `thumbnail()`, one by one",
        secs(t_naive_first),
        secs(t_naive_all) + extrapolated,
        "1.00×",
    )
    sec.row(
        "**ours, first visit (draft decode, 2 threads)**",
        f"**{secs(cold_first)}**",
        f"**{secs(cold_all)}**",
        f"**{ratio(t_naive_all, cold_all)}**",
    )
    sec.row(
        "ours, folder reopened (disk thumbnail cache)",
        secs(warm_first),
        secs(warm_all),
        ratio(t_naive_all, warm_all),
    )
    sec.notes += [
        f"First screen: the time until the first {first} thumbnails are in memory, ready to paint. Ours "
        "includes writing each new thumbnail to the disk cache and making the QImage/QPixmap the grid draws.",
        f"First screen vs naive: {ratio(t_naive_first, cold_first)} (first visit), "
        f"{ratio(t_naive_first, warm_first)} (reopened).",
    ]
    return sec
