"""What can go wrong with the library file, as errors whose messages tell the photographer what to do."""

from __future__ import annotations

from humanaes_core.errors import HumanAesError

__all__ = [
    "CacheBusyError",
    "CacheUnavailableError",
    "CacheVersionError",
    "DecisionsVersionError",
    "LibraryOfflineError",
]


class CacheVersionError(HumanAesError):
    """The score tables were written by a newer HumanAes whose schema this version cannot read safely."""


class DecisionsVersionError(HumanAesError):
    """The decision tables were written by a newer HumanAes."""


class CacheBusyError(HumanAesError):
    """Another program kept the database locked for longer than every wait and retry allowed."""


class CacheUnavailableError(HumanAesError):
    """The library file cannot be opened at all (a folder in its place, no permission, disk full)."""


class LibraryOfflineError(CacheUnavailableError):
    """The library server could not be reached for longer than the retries allow; the write did not happen
    and everything committed before is safe, so the caller may keep its change and try again later."""
