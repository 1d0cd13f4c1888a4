"""Folder roots per machine: one shared drive, mounted at different paths on different machines.

Cards and decisions are keyed by content hash, so they follow a photo wherever it is mounted. What a
library also keeps is the path a decision's photo was last seen at (for sidecars and exports). On a
shared library that path must make sense on every machine, so each machine names its mounts of shared
folders: ``$HUMANAES_ROOTS`` holds ``name=folder`` entries separated by the platform's path separator
(``studio=/Volumes/Studio`` on one Mac, ``studio=/mnt/studio`` on a Linux box, ``studio=S:\\`` on
Windows). A path under a named root is stored as ``root:studio/wedding/IMG_1.CR3`` and read back under
this machine's mount of ``studio``; a root this machine does not name comes back as stored.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import PurePath

__all__ = ["ROOTS_ENV_VAR", "FolderRoots"]

#: ``name=folder`` entries separated by ``os.pathsep``: this machine's mounts of shared folders.
ROOTS_ENV_VAR = "HUMANAES_ROOTS"
_PREFIX = "root:"


@dataclass(frozen=True)
class FolderRoots:
    """This machine's named roots: name -> absolute local folder."""

    roots: dict[str, str] = field(default_factory=dict)

    @classmethod
    def parse(cls, text: str) -> FolderRoots:
        """Roots from ``name=folder`` entries separated by ``os.pathsep``; malformed entries are refused."""
        roots: dict[str, str] = {}
        for entry in filter(None, (e.strip() for e in text.split(os.pathsep))):
            name, sep, folder = entry.partition("=")
            name, folder = name.strip(), folder.strip()
            if not sep or not name or "/" in name or not folder:
                raise ValueError(f"{ROOTS_ENV_VAR}: {entry!r} is not name=folder")
            roots[name] = os.path.abspath(os.path.expanduser(folder))
        return cls(roots)

    @classmethod
    def from_environment(cls) -> FolderRoots:
        return cls.parse(os.environ.get(ROOTS_ENV_VAR, ""))

    def to_stored(self, path: str) -> str:
        """``path`` as the library keeps it: relative to the deepest named root it is under, else as is."""
        best: tuple[int, str, str] | None = None
        for name, folder in self.roots.items():
            try:
                relative = PurePath(path).relative_to(folder)
            except ValueError:
                continue
            if best is None or len(folder) > best[0]:
                best = (len(folder), name, relative.as_posix())
        if best is None:
            return path
        _, name, relative = best
        return f"{_PREFIX}{name}/{'' if relative == '.' else relative}"

    def to_local(self, stored: str) -> str:
        """A stored path on this machine: under its mount of the named root, or as stored when it has none."""
        if not stored.startswith(_PREFIX):
            return stored
        name, _, relative = stored[len(_PREFIX) :].partition("/")
        folder = self.roots.get(name)
        if folder is None:
            return stored
        return os.path.join(folder, *relative.split("/")) if relative else folder
