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
import tempfile
import threading
from collections import OrderedDict, deque
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from PIL import Image
from PySide6.QtCore import QObject, QRunnable, QThreadPool, Signal
from PySide6.QtGui import QImage, QPixmap

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


class _Signals(QObject):
    loaded = Signal(int, str, QImage)
    failed = Signal(int, str, str)


class _LoadJob(QRunnable):
    def __init__(self, loader: ImageLoader, generation: int, path: Path) -> None:
        super().__init__()
        self.setAutoDelete(True)
        self._signals = loader._signals
        self._size = loader.size
        self._cache_dir = loader.cache_dir
        self._generation = generation
        self._path = path

    def run(self) -> None:
        try:
            image = self._load()
        except Exception as e:  # a broken file must never take a pool thread down
            reason = getattr(e, "reason", None) or f"{e.__class__.__name__}: {e}"
            self._signals.failed.emit(self._generation, str(self._path), reason)
            return
        self._signals.loaded.emit(self._generation, str(self._path), image)

    def _load(self) -> QImage:
        cached: Path | None = None
        if self._cache_dir is not None:
            key = thumbnail_key(self._path, self._size)
            if key is not None:
                cached = self._cache_dir / key[:2] / f"{key}.jpg"
                if cached.is_file():
                    image = QImage(str(cached))
                    if not image.isNull():
                        return image
        image = load_scaled(self._path, self._size)
        if cached is not None:
            _write_atomically(image, cached)
        return image


def _write_atomically(image: QImage, target: Path) -> None:
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".thumb.", suffix=".jpg", dir=target.parent)
        os.close(fd)
        if image.save(tmp, "JPEG", 88):
            os.replace(tmp, target)
        else:
            os.unlink(tmp)
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
        self._generation = 0
        self._pool = QThreadPool(self)
        self._pool.setMaxThreadCount(threads)
        self._signals = _Signals()
        self._signals.loaded.connect(self._on_loaded)
        self._signals.failed.connect(self._on_failed)

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
        self._generation += 1
        self._queue.clear()
        self._queued.clear()
        self._running.clear()
        self._memory.clear()
        self._broken.clear()

    def wait(self, msecs: int = 5000) -> bool:
        """Let running jobs finish (used on shutdown and in tests)."""
        return self._pool.waitForDone(msecs)

    @property
    def busy(self) -> bool:
        return bool(self._queue or self._running)

    def _pump(self) -> None:
        while self._queue and len(self._running) < self._pool.maxThreadCount():
            path = self._queue.pop()  # newest request first: that is what is on screen now
            key = str(path)
            self._queued.discard(key)
            self._running.add(key)
            self._pool.start(_LoadJob(self, self._generation, path))

    def _on_loaded(self, generation: int, path: str, image: QImage) -> None:
        if generation != self._generation:
            return
        self._running.discard(path)
        self._memory[path] = QPixmap.fromImage(image)
        while len(self._memory) > self._memory_items:
            self._memory.popitem(last=False)
        self._pump()
        self.ready.emit(path)

    def _on_failed(self, generation: int, path: str, reason: str) -> None:
        if generation != self._generation:
            return
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


class _MetaSignals(QObject):
    times = Signal(int, dict)


class _CaptureTimeJob(QRunnable):
    def __init__(self, scanner: CaptureTimeScanner, generation: int, paths: Sequence[Path]) -> None:
        super().__init__()
        self._signals = scanner._signals
        self._cancel = scanner._cancel
        self._generation = generation
        self._paths = list(paths)

    def run(self) -> None:
        chunk: dict[str, float] = {}
        for path in self._paths:
            if self._cancel.is_set():
                return
            chunk[str(path)] = capture_time(path)
            if len(chunk) >= 200:
                self._signals.times.emit(self._generation, chunk)
                chunk = {}
        if chunk:
            self._signals.times.emit(self._generation, chunk)


class CaptureTimeScanner(QObject):
    """Reads capture times of a whole folder in one background job (sorting by time needs all of them)."""

    times = Signal(dict)  # {path: unix seconds}

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._pool = QThreadPool(self)
        self._pool.setMaxThreadCount(1)
        self._signals = _MetaSignals()
        self._signals.times.connect(self._on_times)
        self._cancel = threading.Event()
        self._generation = 0

    def scan(self, paths: Sequence[Path]) -> None:
        self.cancel()
        self._cancel = threading.Event()
        self._pool.start(_CaptureTimeJob(self, self._generation, paths))

    def cancel(self) -> None:
        self._generation += 1
        self._cancel.set()

    def wait(self, msecs: int = 5000) -> bool:
        return self._pool.waitForDone(msecs)

    def _on_times(self, generation: int, times: dict) -> None:
        if generation == self._generation:
            self.times.emit(times)
