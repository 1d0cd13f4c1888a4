"""Which files are photos: folder walking and the suffixes HumanAes reads.

Kept apart from scoring so that everything that only needs a list of photos (training data from a rated
folder, culling, the app's folder view) gets it without importing torch.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

#: Camera RAW suffixes read with rawpy (compared lower-case).
RAW_SUFFIXES = frozenset({".cr2", ".cr3", ".nef", ".arw", ".dng", ".raf", ".orf", ".rw2"})
#: HEIF containers read through pillow-heif (.hif is Fujifilm's name for HEIF).
HEIF_SUFFIXES = frozenset({".heic", ".heif", ".hif"})
#: Suffixes scanned in folders (files named explicitly are always tried): Pillow's formats (AVIF included),
#: HEIC/HEIF through pillow-heif and camera RAW through rawpy (see ``formats``).
PHOTO_SUFFIXES = (
    frozenset({".jpg", ".jpeg", ".jpe", ".png", ".tif", ".tiff", ".webp", ".bmp", ".gif", ".avif"})
    | HEIF_SUFFIXES
    | RAW_SUFFIXES
)


@dataclass
class Skipped:
    """A file or folder that was not scored, and why, in words for the photographer."""

    path: str
    reason: str


def os_reason(e: OSError, path: str | os.PathLike | None = None) -> str:
    """An OSError in words a photographer understands ("permission denied", "broken symbolic link")."""
    if e.errno == errno.ENOENT and path is not None and os.path.islink(path):
        return "broken symbolic link"
    reasons = {
        errno.ENOENT: "file not found",
        errno.EACCES: "permission denied",
        errno.EPERM: "permission denied",
        errno.EISDIR: "is a directory",
        errno.ELOOP: "symbolic link loop",
        errno.ENAMETOOLONG: "file name too long",
        errno.ENOTDIR: "a folder in its path is a file",
    }
    return reasons.get(e.errno or 0, e.strerror or e.__class__.__name__)


def collect_photos(
    paths: Iterable[str | os.PathLike], recursive: bool = True
) -> tuple[list[Path], list[Skipped]]:
    """Expand files and folders into photo files (sorted, no duplicates) and the arguments that failed.

    Folders are walked without following symlinked folders (no loops) and without recursion (any
    depth); hidden entries are skipped. A folder whose name looks like a photo's is walked as a folder.
    """
    found: dict[Path, None] = {}
    problems: list[Skipped] = []

    def walk(top: Path) -> None:
        pending = [top]
        while pending:
            folder = pending.pop()
            try:
                with os.scandir(folder) as it:
                    entries = sorted(it, key=lambda e: e.name)
            except OSError as e:
                problems.append(Skipped(str(folder), os_reason(e, folder)))
                continue
            subfolders: list[Path] = []
            for entry in entries:
                if entry.name.startswith("."):
                    continue
                try:
                    if entry.is_dir(follow_symlinks=False):
                        if recursive:
                            subfolders.append(Path(entry.path))
                    elif Path(entry.name).suffix.lower() in PHOTO_SUFFIXES:
                        found[Path(entry.path)] = None
                except OSError as e:
                    problems.append(Skipped(entry.path, os_reason(e, entry.path)))
            pending.extend(reversed(subfolders))  # depth first, in name order

    for raw in paths:
        path = Path(raw).expanduser()
        if path.is_dir():
            walk(path)
        elif path.exists() or path.is_symlink():
            found[path] = None
        else:
            problems.append(Skipped(str(path), "file not found"))
    return list(found), problems
