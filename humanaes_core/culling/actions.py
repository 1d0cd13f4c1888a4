"""Acting on a plan's keepers: copy (or move) them, with their XMP sidecars, into another folder.

Nothing is ever overwritten: copies are written under a temporary name and published with a hard link
(atomic, refuses to replace), or, where there are no hard links, into a name reserved exclusively
first. A photo already copied earlier is recognised by its content, so re-running copies nothing.
Originals are only ever read, except by an explicit move.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from humanaes_core.culling.plan import CullError, Decision
from humanaes_core.formats import existing_sidecars
from humanaes_core.store import content_hash_file

__all__ = ["CopyReport", "copy_picks"]


@dataclass
class CopyReport:
    """What ``copy_picks`` did: (source, destination) pairs, photos already there, failures."""

    copied: list[tuple[Path, Path]] = field(default_factory=list)
    already_there: list[tuple[Path, Path]] = field(default_factory=list)
    failed: list[tuple[Path, str]] = field(default_factory=list)


def _same_content(a: Path, b: Path) -> bool:
    try:
        return a.stat().st_size == b.stat().st_size and content_hash_file(a) == content_hash_file(b)
    except OSError:
        return False


def _publish(tmp: Path, dst: Path) -> None:
    """Give a finished temporary file its final name, never replacing an existing file."""
    try:
        os.link(tmp, dst)  # atomic and refuses to overwrite
    except FileExistsError:
        raise
    except OSError:  # no hard links here (FAT/exFAT cards, some network shares)
        # reserve the name exclusively first: checking exists() and then renaming would overwrite a file
        # another program created in between; now the rename can only replace our own empty placeholder
        os.close(os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
        try:
            os.replace(tmp, dst)
        except BaseException:
            dst.unlink(missing_ok=True)
            raise
        return
    tmp.unlink()


def _copy_atomic(src: Path, dst: Path) -> None:
    """Copy to a temporary name in the destination folder, then publish it: no half-copied photo."""
    fd, name = tempfile.mkstemp(prefix=f".{dst.name}.", suffix=".partial", dir=dst.parent)
    tmp = Path(name)
    try:
        with os.fdopen(fd, "wb") as out, src.open("rb") as inp:
            shutil.copyfileobj(inp, out, 1 << 20)
            out.flush()
            os.fsync(out.fileno())
        shutil.copystat(src, tmp)  # photographers sort by file date: keep it
        if tmp.stat().st_size != src.stat().st_size:
            raise OSError(errno.EIO, "copy is incomplete", str(dst))
        _publish(tmp, dst)
    finally:
        tmp.unlink(missing_ok=True)


def _move(src: Path, dst: Path) -> None:
    """Move without ever replacing a file: a hard link then unlink on one file system, else copy+delete."""
    try:
        os.link(src, dst)
    except FileExistsError:
        raise
    except OSError:  # another file system, or no hard links: copy, check, then remove the source
        _copy_atomic(src, dst)
    src.unlink()


def _sidecar_targets(photo: Path, dst: Path) -> list[tuple[Path, Path]]:
    """The photo's sidecars, their names beside ``dst``: name.xmp follows the stem, name.ext.xmp the name."""
    pairs = []
    for side in existing_sidecars(photo):
        if side.name.lower() == f"{photo.name}.xmp".lower():
            pairs.append((side, dst.with_name(dst.name + side.suffix)))
        else:
            pairs.append((side, dst.with_name(dst.stem + side.suffix)))
    return pairs


def _existing_copy(photo: Path, dest: Path) -> Path | None:
    """An earlier copy of the photo in ``dest`` (``name.ext``, ``name-1.ext``...): re-runs copy nothing."""
    for i in range(100_000):
        candidate = dest / f"{photo.stem if i == 0 else f'{photo.stem}-{i}'}{photo.suffix}"
        if not candidate.exists():
            return None
        if _same_content(photo, candidate):
            return candidate
    return None


def _free_name(photo: Path, dest: Path) -> Path:
    """``dest/name.ext``, or ``name-1.ext``, ``name-2.ext``... when that or one of its sidecars is taken."""
    for i in range(100_000):
        stem = photo.stem if i == 0 else f"{photo.stem}-{i}"
        candidate = dest / f"{stem}{photo.suffix}"
        taken = candidate.exists() or any(t.exists() for _, t in _sidecar_targets(photo, candidate))
        if not taken:
            return candidate
    raise FileExistsError(errno.EEXIST, "no free file name", str(dest / photo.name))


def _copy_one(photo: Path, dest: Path, move: bool, sidecars: bool, report: CopyReport) -> None:
    earlier = _existing_copy(photo, dest)
    if earlier is not None:
        report.already_there.append((photo, earlier))
        return
    transfer = _move if move else _copy_atomic
    for _attempt in range(5):  # another process may take the name between the check and the link
        target = _free_name(photo, dest)
        side_pairs = _sidecar_targets(photo, target) if sidecars else []
        try:
            transfer(photo, target)
            break
        except FileExistsError:
            continue
    else:
        raise FileExistsError(errno.EEXIST, "destination names keep being taken", str(dest))
    for side, side_target in side_pairs:
        with contextlib.suppress(FileExistsError):  # taken since the check: never overwrite
            transfer(side, side_target)
    report.copied.append((photo, target))


def copy_picks(
    decisions: Mapping[Path, Decision],
    dest: str | os.PathLike[str],
    *,
    move: bool = False,
    sidecars: bool = True,
    progress: Callable[[Path], None] | None = None,
) -> CopyReport:
    """Copy (or move) the keepers, with their XMP sidecars, into ``dest``.

    Nothing is overwritten: a photo already in ``dest`` with the same content (under its name or an
    earlier ``name-N.ext``) is left as it is and not moved; a different file of the same name makes
    the copy ``name-1.ext``. Copies are written under a temporary name and renamed when complete.
    ``dest`` may not be a folder the photos are in.
    """
    dest = Path(dest).expanduser()
    keepers = [Path(p) for p, d in decisions.items() if d.keep]
    dest_real = dest.resolve()
    for photo in keepers:
        if photo.parent.resolve() == dest_real:
            raise CullError(f"{dest} holds the photos being culled; choose another folder for the picks")
    report = CopyReport()
    if not keepers:
        return report
    dest.mkdir(parents=True, exist_ok=True)
    for photo in keepers:
        try:
            _copy_one(photo, dest, move, sidecars, report)
        except OSError as exc:
            report.failed.append((photo, exc.strerror or str(exc)))
        if progress is not None:
            progress(photo)
    return report
