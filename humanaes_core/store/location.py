"""Where the library lives (a SQLite file or a PostgreSQL server), the lock that serialises moving a file,
and the one-time rename of cache.sqlite.

A library is named by a path, ``sqlite:///path``, or a PostgreSQL URL (``postgresql+psycopg://...``,
``postgresql://...`` meaning the same): the file is the embedded default, the server the shared one.

The file holds the photographer's decisions and undo history as well as cached scores, so it is called
``library.sqlite``. HumanAes 0.1 called it ``cache.sqlite``; the first time a newer version opens the
default location and finds only the old name, it moves the old file (with its WAL and shared-memory
files) to the new name, under the file lock, and never over an existing ``library.sqlite``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import time
from collections.abc import Iterator
from pathlib import Path

import platformdirs

from humanaes_core.store.errors import CacheBusyError, CacheUnavailableError

__all__ = [
    "CACHE_ENV_VAR",
    "LEGACY_NAME",
    "LIBRARY_ENV_VAR",
    "LIBRARY_NAME",
    "adopt_legacy_file",
    "default_folder",
    "default_library_path",
    "file_lock",
    "library_path",
    "library_target",
    "server_url",
]

log = logging.getLogger(__name__)

#: Preferred override of the library file's location (tests, CI, portable installs).
LIBRARY_ENV_VAR = "HUMANAES_LIBRARY"
#: The override's older name, still honoured when ``HUMANAES_LIBRARY`` is not set.
CACHE_ENV_VAR = "HUMANAES_CACHE"
LIBRARY_NAME = "library.sqlite"
LEGACY_NAME = "cache.sqlite"
#: WAL and shared memory travel with the main file: the WAL may hold its latest commits.
_COMPANIONS = ("-wal", "-shm")
_LOCK_WAIT_S = 60.0
#: ``scheme://`` (or ``scheme:/`` once ``Path`` has folded the slashes): a database URL, not a file name.
#: Two letters at least, so a Windows drive (``C:/``) is a path.
_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]+:/")
#: The SQLAlchemy spelling of a SQLite file: ``sqlite:///relative`` or ``sqlite:////absolute``.
_SQLITE_URL = re.compile(r"sqlite(\+pysqlite)?:///(?P<path>[^?#]+)")
#: A PostgreSQL server (psycopg 3 is the driver; a bare ``postgresql://`` or ``postgres://`` means it too).
_SERVER_URL = re.compile(r"(postgresql|postgres)(\+psycopg)?://(?P<rest>.*)", re.DOTALL)


def server_url(value: str | os.PathLike[str]) -> str | None:
    """The SQLAlchemy URL of the PostgreSQL library ``value`` names (driver psycopg 3), else None."""
    match = _SERVER_URL.fullmatch(os.fspath(value).strip())
    return None if match is None else f"postgresql+psycopg://{match['rest']}"


def library_target(value: str | os.PathLike[str]) -> Path | str:
    """What ``value`` (``--library``/``--cache``, ``$HUMANAES_LIBRARY``) names: a SQLite file's path, or
    the URL of a PostgreSQL library. Any other URL is refused (``library_path``)."""
    url = server_url(value)
    return url if url is not None else library_path(value)


def library_path(value: str | os.PathLike[str]) -> Path:
    """The library file that ``value`` (a --cache value, ``$HUMANAES_LIBRARY``) names.

    A ``sqlite:///path`` URL names its path. Any other URL is refused here (``library_target`` accepts
    PostgreSQL's): taken as a path it would silently become a folder named ``mysql:``.
    """
    text = os.fspath(value)
    if not _URL.match(text):
        return Path(text).expanduser()
    sqlite_url = _SQLITE_URL.fullmatch(text)
    if sqlite_url is not None:
        return Path(sqlite_url["path"]).expanduser()
    raise CacheUnavailableError(
        f"{text}: not a library HumanAes can use; give the path of a SQLite file (or sqlite:///path) "
        "or a PostgreSQL URL (postgresql+psycopg://user@host/database)"
    )


def default_folder() -> Path:
    """The per-user data folder the library lives in when no environment variable says otherwise."""
    return Path(platformdirs.user_data_dir("humanaes", appauthor=False))


def default_library_path() -> Path | str:
    """``$HUMANAES_LIBRARY``, else ``$HUMANAES_CACHE``, else ``library.sqlite`` in the user data folder;
    a PostgreSQL URL in either variable is returned as that URL (``library_target``)."""
    for name in (LIBRARY_ENV_VAR, CACHE_ENV_VAR):
        override = os.environ.get(name, "").strip()
        if override:
            try:
                return library_target(override)
            except CacheUnavailableError:  # opening it says why; finding where it is must not fail
                return Path(override)
    return default_folder() / LIBRARY_NAME


@contextlib.contextmanager
def file_lock(db: Path) -> Iterator[None]:
    """Exclusive lock on ``<db>.lock`` between processes, for moving the database file exactly once."""
    lock_path = db.with_name(db.name + ".lock")
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline = time.monotonic() + _LOCK_WAIT_S
        while not _try_lock(fd):
            if time.monotonic() > deadline:
                raise CacheBusyError(f"{db}: another HumanAes is repairing or moving this file; try again")
            time.sleep(0.05)
        yield
    finally:
        os.close(fd)  # closing releases the lock on both platforms


def _try_lock(fd: int) -> bool:
    try:
        if os.name == "nt":
            import msvcrt

            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        else:
            import fcntl

            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return False
    return True


def adopt_legacy_file(library: Path) -> bool:
    """Move ``cache.sqlite`` beside ``library`` to ``library``'s name if only the old file exists.

    Only for the default location (an explicit path or environment variable is taken as given). Runs
    under the library's lock and the old file's, so concurrent openers move it once, and an HumanAes 0.1
    repairing the old file at that moment is waited for. The WAL moves first, then the shared memory, then
    the main file: an interrupted move is finished by the next opener. Returns whether it moved anything.
    """
    legacy = library.with_name(LEGACY_NAME)
    if library.exists() or not legacy.exists():
        return False
    with file_lock(library), file_lock(legacy):
        if library.exists() or not legacy.exists():
            return False  # another process moved it, or a library was created meanwhile: never clobber
        for suffix in _COMPANIONS:
            with contextlib.suppress(FileNotFoundError):
                os.replace(f"{legacy}{suffix}", f"{library}{suffix}")
        os.replace(legacy, library)
    log.info("Moved the HumanAes database %s to %s (it holds decisions, not only a cache).", legacy, library)
    return True
