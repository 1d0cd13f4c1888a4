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
