"""What identifies a photo: the hash of its bytes, the ``stat`` signature of the file, its storable path.

Scores and decisions are keyed by content (a BLAKE2b-160 hash of the bytes), so renaming or copying a
photo keeps them. A file's signature says whether it may have been replaced since it was hashed.
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat as stat_mod
from pathlib import Path
from typing import NamedTuple

from humanaes_core.files import NotRegularFileError, nonblocking_opener

__all__ = [
    "DIGEST_SIZE",
    "FileSignature",
    "HashedFile",
    "NotRegularFileError",
    "content_hash_file",
    "decode_path",
    "encode_path",
    "file_signature",
    "signature_of",
    "stat_regular",
]

DIGEST_SIZE = 20  # 160 bits: collisions are not a practical concern for a personal photo library
_CHUNK_BYTES = 1 << 20  # 1 MiB: large enough that syscall overhead vanishes, small enough to stay in cache
_RAW_PATH_PREFIX = "fsbytes:"  # never the start of an absolute path on POSIX or Windows


def _not_regular(path: str | os.PathLike[str]) -> NotRegularFileError:
    """A pipe, device or socket: reading it could block forever or never end."""
    return NotRegularFileError(errno.EINVAL, "not a regular file (a pipe, device or socket)", os.fspath(path))


def content_hash_file(path: str | Path) -> str:
    """BLAKE2b-160 hex digest of the file's bytes, streamed so multi-GB files never sit in memory.

    Only regular files are read (``NotRegularFileError`` otherwise): ``/dev/zero`` or a pipe behind a
    symlink named ``IMG_0001.jpg`` must not turn a folder scan into an endless read.
    """
    digest = hashlib.blake2b(digest_size=DIGEST_SIZE)
    buf = bytearray(_CHUNK_BYTES)
    view = memoryview(buf)
    with open(path, "rb", opener=nonblocking_opener) as fh:
        mode = os.fstat(fh.fileno()).st_mode
        if stat_mod.S_ISDIR(mode):
            raise IsADirectoryError(errno.EISDIR, "Is a directory", os.fspath(path))
        if not stat_mod.S_ISREG(mode):
            raise _not_regular(path)
        while n := fh.readinto(buf):
            digest.update(view[:n])
    return digest.hexdigest()


def stat_regular(path: str) -> os.stat_result:
    """``os.stat`` that refuses what cannot be hashed: folders and pipes, devices, sockets."""
    st = os.stat(path)
    if stat_mod.S_ISDIR(st.st_mode):
        raise IsADirectoryError(errno.EISDIR, "Is a directory", path)
    if not stat_mod.S_ISREG(st.st_mode):
        raise _not_regular(path)
    return st


class FileSignature(NamedTuple):
    """What ``stat`` says about a file's identity and version: if any of it changes, so may the bytes."""

    size: int
    mtime_ns: int
    ctime_ns: int
    ino: int
    dev: int


def signature_of(st: os.stat_result) -> FileSignature:
    """The signature in a ``stat`` result already taken."""
    return FileSignature(st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev)


def file_signature(path: str | os.PathLike[str]) -> FileSignature:
    """The file's current signature (raises ``OSError``); compare two to see whether it was replaced."""
    return signature_of(os.stat(path))


class HashedFile(NamedTuple):
    """A file's content hash and the signature it had just before its bytes were read (or looked up)."""

    content_hash: str
    signature: FileSignature


def encode_path(path: str) -> str:
    """``path`` as text SQLite can store: itself, or ``fsbytes:<hex of its bytes>`` when it is not UTF-8.

    Python represents undecodable bytes in file names as lone surrogates, which no UTF-8 encoder
    accepts; without this a photo named in Latin-1 on a Linux disk would crash every write.
    """
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        return _RAW_PATH_PREFIX + os.fsencode(path).hex()
    return path


def decode_path(text: str) -> str:
    """Reverse of ``encode_path``."""
    if text.startswith(_RAW_PATH_PREFIX):
        try:
            return os.fsdecode(bytes.fromhex(text[len(_RAW_PATH_PREFIX) :]))
        except ValueError:
            return text
    return text
