"""Where results may be written: one guard for every output path a user types or the app picks.

`--out`, `--export`, `--report` and the app's exports replace their target in one step, which is exactly
what makes a slip of the keyboard dangerous: ``--export shoot/IMG_1.jpg`` would turn a photo into a
JSON file, ``--out library.sqlite`` would replace the photographer's decisions, and ``--out /dev/null``
(as root) would swap the device for a regular file. `check_output` refuses, before anything is
computed or written, every target that is not one of ours to replace:

- a photo or a sidecar, by name (any suffix HumanAes reads, ``.xmp``) or by content (image magic bytes);
- a SQLite database (the library, or any other);
- a folder, a block device or a socket;
- an existing file that is not a text output (binary content);
- a path whose folder cannot be created or written.

Character devices (``/dev/null``, ``/dev/stdout``) and FIFOs are written directly, never renamed over.
`open_output` applies the guard and opens the target: atomically for files, directly for streams.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from humanaes_core.errors import HumanAesError
from humanaes_core.files import atomic_write
from humanaes_core.formats import PHOTO_SUFFIXES

__all__ = ["OUTPUT_SUFFIXES", "UnsafeOutputError", "check_output", "open_output", "output_error"]

#: Suffixes of the result files HumanAes writes (CSV, JSON, JSON lines, plain text reports).
OUTPUT_SUFFIXES = frozenset({".csv", ".json", ".jsonl", ".txt", ".tsv"})

_PROTECTED_SUFFIXES = PHOTO_SUFFIXES | {".xmp"}
_SNIFF_BYTES = 4096
_SQLITE_MAGIC = b"SQLite format 3\x00"
#: Leading bytes of the image and RAW containers a photographer keeps (JPEG, PNG, TIFF/most RAW, GIF,
#: BMP, WebP/RIFF, ISO BMFF (HEIC, AVIF, CR3), Fujifilm RAF, Olympus ORF, Panasonic RW2).
_IMAGE_MAGIC = (
    b"\xff\xd8\xff",
    b"\x89PNG\r\n\x1a\n",
    b"II*\x00",
    b"MM\x00*",
    b"GIF8",
    b"BM",
    b"RIFF",
    b"FUJIFILMCCD-RAW",
    b"IIRO",
    b"IIU\x00",
)


class UnsafeOutputError(HumanAesError):
    """An output path that would destroy something that is not ours to replace."""


def _looks_like_photo_or_database(head: bytes) -> str | None:
    if head.startswith(_SQLITE_MAGIC):
        return "a SQLite database (a HumanAes library?)"
    if any(head.startswith(m) for m in _IMAGE_MAGIC) or head[4:8] == b"ftyp":
        return "a photo"
    if b"\x00" in head:
        return "a binary file"
    return None


def check_output(target: str | os.PathLike[str], flag: str = "output") -> Path:
    """Refuse `target` (with `flag`, e.g. "--export", in the message) unless it is safe to replace.

    Returns the path. Creates nothing; an output that passes may still fail later for reasons of the
    file system (disk full), which `output_error` words.
    """
    path = Path(target)
    name = os.fsdecode(os.fspath(path))
    try:
        linked = stat.S_ISLNK(path.lstat().st_mode)
    except FileNotFoundError:
        linked = False
    except OSError as e:  # a name too long, a path through a file, no permission on a folder
        raise UnsafeOutputError(f"{flag} {name}: {e.strerror or e}") from None
    # a link is judged by what it points at too (a link to a photo is still a photo); the checks of the
    # file itself below follow the link
    names = [path, path.resolve()] if linked else [path]
    if any(p.suffix.lower() in _PROTECTED_SUFFIXES for p in names):
        raise UnsafeOutputError(
            f"{flag} {name}: that is a photo's or sidecar's name; write results to .csv, .json or .jsonl"
        )
    try:
        st = path.stat()
    except FileNotFoundError:
        st = None
    except OSError as e:
        raise UnsafeOutputError(f"{flag} {name}: {e.strerror or e}") from None
    if st is not None:
        if stat.S_ISDIR(st.st_mode):
            raise UnsafeOutputError(f"{flag} {name}: that is a folder; name a file inside it")
        if stat.S_ISCHR(st.st_mode) or stat.S_ISFIFO(st.st_mode):
            return path  # a stream: written directly, never replaced
        if not stat.S_ISREG(st.st_mode):
            raise UnsafeOutputError(f"{flag} {name}: not a regular file (a device or socket); not replaced")
        try:
            with open(path, "rb") as f:
                what = _looks_like_photo_or_database(f.read(_SNIFF_BYTES))
        except OSError as e:
            raise UnsafeOutputError(
                f"{flag} {name}: cannot read it to check it ({e.strerror or e})"
            ) from None
        if what is not None:
            raise UnsafeOutputError(f"{flag} {name}: that file is {what}; it was not replaced")
    for folder in (p.parent for p in names):
        if folder.exists() and not folder.is_dir():
            raise UnsafeOutputError(f"{flag} {name}: {folder} is not a folder")
    return path


def output_error(exc: OSError, target: str | os.PathLike[str], flag: str = "output") -> UnsafeOutputError:
    """An OSError while writing an output, as one line a user can act on."""
    name = os.fsdecode(os.fspath(target))
    reasons = {
        errno.ENOSPC: "the disk is full",
        errno.EDQUOT: "the disk quota is exhausted",
        errno.EROFS: "the file system is read-only",
        errno.EACCES: "permission denied",
        errno.EPERM: "permission denied",
        errno.ENAMETOOLONG: "the file name is too long",
        errno.ENOENT: "its folder does not exist",
    }
    reason = reasons.get(exc.errno or 0, exc.strerror or str(exc))
    return UnsafeOutputError(f"{flag} {name}: not written: {reason}")


@contextlib.contextmanager
def open_output(
    target: str | os.PathLike[str], flag: str = "output", mode: str = "w", **text: Any
) -> Iterator[IO[Any]]:
    """`check_output`, then the target opened for writing: replaced atomically, or written directly
    when it is a character device or FIFO. OSErrors become one-line `UnsafeOutputError`s."""
    path = check_output(target, flag)
    try:
        if path.is_symlink() or (path.exists() and not path.is_file()):
            # a stream, or a link the user keeps (``/dev/stdout``, ``latest.csv -> runs/...``): written
            # through, never renamed over
            with open(path, mode, **text) as f:
                yield f
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_write(path, mode, **text) as f:
            yield f
    except OSError as e:
        raise output_error(e, path, flag) from None
