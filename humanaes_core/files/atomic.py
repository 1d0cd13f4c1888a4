"""`atomic_write`: a file is replaced completely or not at all — the one way HumanAes writes a file.

Results, sidecars, settings, reports and thumbnails are all written through here, so a crash, a full
disk or a killed process never leaves half a file where a whole one was, and every writer agrees on the
details that the copies used to disagree on:

- the temporary file lives in the target's folder (``os.replace`` is atomic only within one file
  system), is flushed and fsync'd before the rename, and the folder is fsync'd after it, so the new
  name survives a power cut;
- it is removed on any failure, including KeyboardInterrupt;
- any file name works: ``str`` with undecodable bytes (lone surrogates), ``bytes`` or ``PathLike``, and
  the temporary name stays within the 255-byte limit even for very long names;
- an existing file keeps its permission bits; a new one gets the usual ``0o666 & ~umask`` instead of
  ``mkstemp``'s private 0600;
- a target that exists and is not a regular file (``/dev/null``, a FIFO, a folder) is never renamed
  over: ``NotRegularFileError``.
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from collections.abc import Iterator
from typing import IO, Any

__all__ = ["NotRegularFileError", "atomic_write"]

_NAME_MAX = 255  # bytes per path component on ext4, XFS, Btrfs, APFS and NTFS
_TEMP_AFFIX = len(b"." + b".tmp") + 8 + 1  # "." + stem + "." + mkstemp's 8 random characters + ".tmp"


class NotRegularFileError(OSError):
    """The target exists and is not a regular file; replacing it would destroy something else."""


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _temp_prefix(name: bytes) -> bytes:
    """``.<name>.``, cut so that the whole temporary name fits in one path component."""
    room = _NAME_MAX - _TEMP_AFFIX
    return b"." + name[:room] + b"."


def _fsync_dir(folder: bytes) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return  # e.g. Windows: folders cannot be opened; the rename is still atomic
    try:
        os.fsync(fd)
    except OSError:
        pass  # some file systems (network, FUSE) refuse fsync on folders; nothing more can be done
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_write(
    target: str | bytes | os.PathLike[Any],
    mode: str = "w",
    *,
    encoding: str | None = "utf-8",
    newline: str | None = None,
    errors: str | None = None,
) -> Iterator[IO[Any]]:
    """Open a temporary file beside `target`; on a clean exit it replaces `target` in one step.

    `mode` is "w" (text, `encoding`/`newline`/`errors` as for ``open``) or "wb". Raises
    ``NotRegularFileError`` before writing anything when `target` exists and is not a regular file.
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_write mode must be 'w' or 'wb', not {mode!r}")
    path = os.fsencode(target)
    folder, name = os.path.split(path)
    folder = folder or b"."
    try:
        st: os.stat_result | None = os.stat(path)
    except FileNotFoundError:
        st = None
    if st is not None and not stat.S_ISREG(st.st_mode):
        raise NotRegularFileError(f"{os.fsdecode(path)} exists and is not a regular file; not replaced")
    permissions = stat.S_IMODE(st.st_mode) if st is not None else 0o666 & ~_umask()

    fd, tmp = tempfile.mkstemp(prefix=_temp_prefix(name), suffix=b".tmp", dir=folder)
    try:
        os.fchmod(fd, permissions)
        text = "b" not in mode
        with os.fdopen(
            fd,
            mode,
            encoding=encoding if text else None,
            newline=newline if text else None,
            errors=errors if text else None,
        ) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_dir(folder)
