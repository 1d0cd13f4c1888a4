"""Thumbnails, previews and capture times, all made off the UI thread.

`ImageLoader.get()` is what the grid's `data()` calls: it answers from memory or returns None and
queues a background job, so painting never waits for a disk. Jobs run newest-request-first, so
when a photographer scrolls quickly through 10,000 photos the tiles on screen are made first and
requests for tiles scrolled past are dropped once the queue is long.

Thumbnails are cached on disk under a key made from the path, size and mtime, so a changed file
gets a new thumbnail and an unchanged one is never decoded twice.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections import OrderedDict, deque
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from PIL import Image
from PySide6.QtCore import QBuffer, QIODevice, QObject, Signal
from PySide6.QtGui import QImage, QPixmap

from humanaes_core.files import atomic_write

from .background import Job, Lane

log = logging.getLogger(__name__)

_THUMB_VERSION = 1  # bump when the way thumbnails are made changes, so old files are not reused


def pil_to_qimage(img: Image.Image) -> QImage:
    """An RGB PIL image as a QImage that owns its pixels (safe to pass between threads)."""
    img = img.convert("RGB")
    data = img.tobytes()
    qimg = QImage(data, img.width, img.height, 3 * img.width, QImage.Format.Format_RGB888)
    return qimg.copy()


def load_scaled(path: Path, size: int) -> QImage:
    """Decode upright sRGB (EXIF orientation, ICC, alpha handled by humanaes_core) and fit into size²."""
    from humanaes_core.model import load_image

    img = load_image(path, target=(size, size), fast_decode=True)
    img.thumbnail((size, size), Image.Resampling.LANCZOS)
    return pil_to_qimage(img)


def thumbnail_key(path: Path, size: int) -> str | None:
    """Disk-cache key from path, size and mtime (None when the file cannot be stat'ed)."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    text = f"{_THUMB_VERSION}|{size}|{os.path.abspath(path)}|{st.st_size}|{st.st_mtime_ns}"
    return hashlib.sha1(text.encode("utf-8", "surrogateescape")).hexdigest()


def load_thumbnail(path: Path, size: int, cache_dir: Path | None) -> QImage:
    """The scaled image from the disk cache, or decoded (and then cached); runs on a lane thread."""
    cached: Path | None = None
    if cache_dir is not None:
        key = thumbnail_key(path, size)
        if key is not None:
            cached = cache_dir / key[:2] / f"{key}.jpg"
            if cached.is_file():
                image = QImage(str(cached))
                if not image.isNull():
                    return image
    image = load_scaled(path, size)
    if cached is not None:
        write_jpeg(image, cached)
    return image


def write_jpeg(image: QImage, target: Path, quality: int = 88) -> None:
    """Encode in memory, then `atomic_write`: a crash never leaves half a thumbnail in the cache."""
    buffer = QBuffer()
    buffer.open(QIODevice.OpenModeFlag.WriteOnly)
    if not image.save(buffer, "JPEG", quality):
        log.debug("thumbnail could not be encoded for %s", target)
        return
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        with atomic_write(target, "wb") as f:
            f.write(bytes(buffer.data().data()))
    except OSError as e:  # a read-only cache only costs speed
        log.debug("thumbnail cache write failed for %s: %s", target, e)


class ImageLoader(QObject):
    """Asynchronous, memory-cached (and optionally disk-cached) scaled images of photos."""

    ready = Signal(str)  # a path whose image is now in memory
    failed = Signal(str, str)  # path, reason

    def __init__(
        self,
        size: int,
        cache_dir: Path | None = None,
        memory_items: int = 3000,
        threads: int = 2,
        max_queue: int = 256,
        parent: QObject | None = None,
    ) -> None:
        super().__init__(parent)
        self.size = size
        self.cache_dir = cache_dir
        self._memory: OrderedDict[str, QPixmap] = OrderedDict()
        self._memory_items = memory_items
        self._broken: dict[str, str] = {}
        self._queue: deque[Path] = deque()
        self._queued: set[str] = set()
        self._running: set[str] = set()
        self._max_queue = max_queue
        self._lane = Lane("humanaes-images", threads, self)

    def get(self, path: Path) -> QPixmap | None:
        """The image if it is in memory; otherwise None, and it is loaded in the background."""
        key = str(path)
        pix = self._memory.get(key)
        if pix is not None:
            self._memory.move_to_end(key)
            return pix
        if key not in self._broken:
            self.request(path)
        return None

    def peek(self, path: Path) -> QPixmap | None:
        """The in-memory image without queuing a load."""
        return self._memory.get(str(path))

    def error(self, path: Path) -> str | None:
        return self._broken.get(str(path))

    def request(self, path: Path) -> None:
        key = str(path)
        if key in self._running or key in self._memory:
            return
        if key in self._queued:
            self._queue.remove(path)  # move to the front: it was asked for again
        self._queue.append(path)
        self._queued.add(key)
        while len(self._queue) > self._max_queue:  # requests for tiles long scrolled past
            self._queued.discard(str(self._queue.popleft()))
        self._pump()

    def clear(self) -> None:
        """Forget queued work and memory (a new folder); jobs already running are ignored when they end."""
        self._lane.invalidate()
        self._queue.clear()
        self._queued.clear()
        self._running.clear()
        self._memory.clear()
        self._broken.clear()

    def wait(self, msecs: int = 5000) -> bool:
        """Let running jobs finish (used on shutdown and in tests)."""
        return self._lane.wait(msecs)

    @property
    def busy(self) -> bool:
        return bool(self._queue or self._running)

    def _pump(self) -> None:
        while self._queue and len(self._running) < self._lane.threads:
            path = self._queue.pop()  # newest request first: that is what is on screen now
            key = str(path)
            self._queued.discard(key)
            self._running.add(key)
            self._lane.submit(
                load_thumbnail,
                path,
                self.size,
                self.cache_dir,
                done=lambda image, key=key: self._on_loaded(key, image),
                failed=lambda error, key=key: self._on_failed(key, _reason(error)),
            )

    def _on_loaded(self, path: str, image: QImage) -> None:
        self._running.discard(path)
        self._memory[path] = QPixmap.fromImage(image)
        while len(self._memory) > self._memory_items:
            self._memory.popitem(last=False)
        self._pump()
        self.ready.emit(path)

    def _on_failed(self, path: str, reason: str) -> None:
        self._running.discard(path)
        self._broken[path] = reason
        self._pump()
        self.failed.emit(path, reason)


def capture_time(path: Path) -> float:
    """Capture time as unix seconds for sorting and display; the file's mtime when it has none, 0.0 when
    it cannot even be stat'ed.

    Read by `humanaes_core.culling.bursts.capture_time`, which knows RAW files (through Exiv2) and sub-second
    times. An EXIF time without a UTC offset comes back as wall-clock read as UTC; it is turned into
    local time here, so the detail panel shows the time the camera's clock showed. (A time with an
    offset comes back as the true instant, so it shows as that instant's UTC clock time; sorting within
    a shoot is unaffected either way.)
    """
    from humanaes_core.culling import capture_time as exif_time

    seconds, source = exif_time(path)
    if seconds is None:
        return 0.0
    if source == "exif":
        wall = datetime.fromtimestamp(seconds, UTC).replace(tzinfo=None)
        return wall.timestamp()  # naive datetime -> local time
    return seconds


def _reason(error: BaseException) -> str:
    """Why a photo cannot be shown: a decoder's own reason, else the exception."""
    return str(getattr(error, "reason", None) or f"{error.__class__.__name__}: {error}")


def _capture_times(job: Job, paths: Sequence[Path]) -> None:
    """Capture times in chunks of 200 (reported through `job`), until the job is superseded."""
    chunk: dict[str, float] = {}
    for path in paths:
        if job.cancelled:
            return
        chunk[str(path)] = capture_time(path)
        if len(chunk) >= 200:
            job.report(chunk)
            chunk = {}
    if chunk:
        job.report(chunk)


class CaptureTimeScanner(QObject):
    """Reads capture times of a whole folder in one background job (sorting by time needs all of them)."""

    times = Signal(dict)  # {path: unix seconds}

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._lane = Lane("humanaes-capture-times", 1, self)

    def scan(self, paths: Sequence[Path]) -> None:
        self.cancel()
        self._lane.submit(_capture_times, list(paths), with_job=True, progress=self.times.emit)

    def cancel(self) -> None:
        self._lane.invalidate()

    def wait(self, msecs: int = 5000) -> bool:
        return self._lane.wait(msecs)
