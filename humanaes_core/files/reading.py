"""`read_small_file` / `read_json_file`: the one way HumanAes reads a metadata file it did not write.

A checkpoint's JSON, an importer's source config, a tokenizer or a label file may be a link to
``/dev/zero``, a FIFO that never delivers a byte, or a regular file of gigabytes. Reading one of those
with ``Path.read_text`` hangs or fills memory before any validation runs. Here a file is opened without
blocking (a FIFO opens at once), checked to be a regular file on the open descriptor (no window between
check and read), and read only up to a limit; JSON nested too deeply to parse becomes a ``ValueError``
like any other malformed JSON, instead of a ``RecursionError``.
"""

from __future__ import annotations

import json
import os
import stat
from typing import Any

from humanaes_core.files.atomic import NotRegularFileError

__all__ = [
    "MAX_JSON_BYTES",
    "FileTooLargeError",
    "NotRegularFileError",
    "nonblocking_opener",
    "parse_json",
    "read_json_file",
    "read_small_file",
]

#: Default limit for a JSON metadata file (configs, manifests, shard indexes: kilobytes in practice).
MAX_JSON_BYTES = 16 << 20


def nonblocking_opener(path: str | os.PathLike[str], flags: int) -> int:
    """``open(..., opener=)`` / ``os.open`` that never blocks: opening a named pipe for reading otherwise
    waits forever for a writer."""
    return os.open(path, flags | getattr(os, "O_NONBLOCK", 0))


class FileTooLargeError(OSError):
    """The file is larger than what its kind may be; it was not read."""


def read_small_file(path: str | os.PathLike[str], limit: int) -> bytes:
    """The bytes of `path`, a regular file of at most `limit` bytes (links are followed).

    Raises ``NotRegularFileError`` for a device, FIFO, socket or folder, ``FileTooLargeError`` above
    `limit` (also when the file grows while it is read), and ``OSError`` when it cannot be opened.
    """
    fd = nonblocking_opener(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise NotRegularFileError(f"{os.fspath(path)} is not a regular file; not read")
        if st.st_size > limit:
            raise FileTooLargeError(_too_large(path, st.st_size, limit))
        chunks: list[bytes] = []
        size = 0
        while size <= limit:
            chunk = os.read(fd, min(1 << 20, limit + 1 - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        if size > limit:
            raise FileTooLargeError(_too_large(path, size, limit))
        return b"".join(chunks)
    finally:
        os.close(fd)


def _too_large(path: str | os.PathLike[str], size: int, limit: int) -> str:
    return f"{os.fspath(path)} is larger than the {limit:,} bytes such a file may have ({size:,}); not read"


def read_json_file(path: str | os.PathLike[str], limit: int = MAX_JSON_BYTES) -> Any:
    """The JSON value in `path` (UTF-8, a BOM allowed), read with `read_small_file`'s checks.

    Raises ``OSError`` (see `read_small_file`) or ``ValueError`` for text that is not UTF-8 or not
    JSON, including JSON nested too deeply to parse.
    """
    text = read_small_file(path, limit).decode("utf-8-sig")
    return parse_json(text)


def parse_json(text: str) -> Any:
    """``json.loads`` whose every failure is a ``ValueError`` (deep nesting included)."""
    try:
        return json.loads(text)
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None
