"""A time limit for reading a photo: a decode that hangs (a stalled network drive, a hostile file) is
abandoned, never waited for.

Scoring's decode and the photo checks' decode both run here, so one environment variable sets the limit
for both and a stuck file costs the same bounded wait wherever it is read. The work runs in a daemon
helper thread; at the limit the caller gets ``ImageLoadError(name, TOO_SLOW)`` and moves on, and the
helper's later reads through a `DeadlineFile` fail so its thread and memory are freed.
"""

from __future__ import annotations

import io
import logging
import os
import threading
import time
from collections.abc import Callable
from typing import TypeVar

from humanaes_core.errors import ImageLoadError

__all__ = [
    "DECODE_TIMEOUT_ENV",
    "DEFAULT_DECODE_TIMEOUT_S",
    "TOO_SLOW",
    "Deadline",
    "DeadlineFile",
    "DecodeTimeout",
    "abandoned_decodes",
    "decode_timeout",
    "run_with_time_limit",
]

log = logging.getLogger(__name__)
T = TypeVar("T")

#: Environment variable with the per-file decode limit in seconds (0 or "none": no limit).
DECODE_TIMEOUT_ENV = "HUMANAES_DECODE_TIMEOUT"
DEFAULT_DECODE_TIMEOUT_S = 30.0
#: Reason for a photo whose decoding was abandoned at the time limit.
TOO_SLOW = "decoding took too long"


def decode_timeout(seconds: float | None = None) -> float | None:
    """The per-file decode limit: ``seconds`` if given, else ``$HUMANAES_DECODE_TIMEOUT``, else 30 s.

    Zero, a negative value or "none" means no limit (a decode may then take as long as it takes).
    """
    if seconds is None:
        raw = os.environ.get(DECODE_TIMEOUT_ENV, "").strip().lower()
        if not raw:
            return DEFAULT_DECODE_TIMEOUT_S
        if raw in ("none", "off", "inf"):
            return None
        try:
            seconds = float(raw)
        except ValueError:
            log.warning("ignoring %s=%r (not a number of seconds)", DECODE_TIMEOUT_ENV, raw)
            return DEFAULT_DECODE_TIMEOUT_S
    return seconds if seconds > 0 else None


class DecodeTimeout(Exception):
    """Raised inside an abandoned decode at its next file read."""


class Deadline:
    """A point in time after which the decode's reads fail; ``expire`` ends it at once."""

    __slots__ = ("_at", "expired")

    def __init__(self, seconds: float) -> None:
        self._at = time.monotonic() + seconds
        self.expired = False

    def expire(self) -> None:
        self.expired = True

    def check(self) -> None:
        if self.expired or time.monotonic() > self._at:
            self.expired = True
            raise DecodeTimeout


class DeadlineFile(io.BufferedReader):
    """A buffered file whose reads fail once its deadline has passed: Pillow's decoders read in chunks
    (64 KiB), so an over-long decode stops at its next chunk and its thread and memory are freed."""

    def __init__(self, raw: io.RawIOBase, deadline: Deadline | None) -> None:
        super().__init__(raw)
        self._deadline = deadline

    def _check(self) -> None:
        if self._deadline is not None:
            self._deadline.check()

    def read(self, size: int | None = -1) -> bytes:
        self._check()
        return super().read(size)

    def read1(self, size: int = -1) -> bytes:
        self._check()
        return super().read1(size)

    def readinto(self, buffer) -> int:  # type: ignore[no-untyped-def, override]
        self._check()
        return super().readinto(buffer)

    def readline(self, size: int | None = -1) -> bytes:
        self._check()
        return super().readline(size)


#: Helper threads whose callers gave up on them at the time limit (pruned when they have finished).
_abandoned: set[threading.Thread] = set()
_abandoned_lock = threading.Lock()


def abandoned_decodes() -> int:
    """How many decodes passed their time limit and are still running in the background."""
    with _abandoned_lock:
        _abandoned.difference_update([t for t in _abandoned if not t.is_alive()])
        return len(_abandoned)


def run_with_time_limit(work: Callable[[Deadline | None], T], seconds: float | None, name: str) -> T:
    """``work(deadline)`` in a helper thread; at ``seconds`` stop waiting and raise ImageLoadError."""
    if seconds is None:
        return work(None)
    deadline = Deadline(seconds)
    outcome: list[tuple[bool, object]] = []
    done = threading.Event()

    def run() -> None:
        try:
            outcome.append((True, work(deadline)))
        except BaseException as e:  # handed to the waiting caller, or dropped if it gave up
            outcome.append((False, e))
        finally:
            done.set()

    helper = threading.Thread(target=run, name="humanaes-decode", daemon=True)
    helper.start()
    if not done.wait(seconds):
        deadline.expire()
        with _abandoned_lock:
            _abandoned.add(helper)
        log.warning("%s: decoding took longer than %g s; skipping this photo", name, seconds)
        raise ImageLoadError(name, TOO_SLOW)
    ok, value = outcome[0]
    if ok:
        return value  # type: ignore[return-value]
    raise value  # type: ignore[misc]
