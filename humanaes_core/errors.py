"""Errors a user can act on: messages written for people, printed by the CLIs without a traceback."""

from __future__ import annotations


class HumanAesError(Exception):
    """Base class: a problem with a clear, user-facing message."""


class ImageLoadError(HumanAesError):
    """A file could not be read as a photo (corrupt, truncated, not an image, too large, unreadable)."""

    def __init__(self, source: str, reason: str) -> None:
        super().__init__(f"{source}: {reason}")
        self.source = source
        self.reason = reason


class ModelNotAvailableError(HumanAesError):
    """The requested model is neither a checkpoint directory nor downloadable right now."""


class CheckpointError(HumanAesError):
    """A checkpoint directory is missing files, malformed, or fails its integrity check."""


class DeviceError(HumanAesError):
    """The requested device or precision cannot be used on this machine."""


def shown(value: object, limit: int = 60) -> str:
    """`repr(value)` cut to `limit` characters, for messages: a hostile value (a 100 MB label, a
    billion-digit number) must not become a huge message."""
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 4 * limit:
        return f"<a number of about {int(value.bit_length() * 0.30103)} digits>"  # repr could refuse it
    text = repr(value)
    return text if len(text) <= limit else f"{text[: limit - 1]}…"
