"""Acting on a plan's keepers: copy (or move) them, with their XMP sidecars, into another folder.

Nothing is ever overwritten: copies are written under a temporary name and published with a hard link
(atomic, refuses to replace), or, where there are no hard links, into a name reserved exclusively
first. A photo already copied earlier is recognised by its content, so re-running copies nothing; a
link in the destination is never taken for a copy. Originals are only ever read, except by an explicit
move, which is journaled (``moves``): a photo and its sidecars move as one unit that the next run
completes or rolls back after a crash, and a photo moved earlier is recognised by the journal.

The destination is checked before anything is written (``check_destination``): not a file, writable,
not a folder the photos are in, and not inside a folder that is scanned (its copies would be culled
again on the next run).
"""

from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from humanaes_core.culling.moves import (
    MoveJournal,
    copy_published,
    folder_lock,
    journal_path,
    move_unit,
    recover_moves,
    same_content,
)
from humanaes_core.culling.plan import CullError, Decision
from humanaes_core.formats import existing_sidecars

__all__ = ["CopyReport", "check_destination", "copy_picks"]


@dataclass
class CopyReport:
    """What ``copy_picks`` did: (source, destination) pairs, photos already there, failures, and the
    interrupted moves of an earlier run it settled first (one line each)."""

    copied: list[tuple[Path, Path]] = field(default_factory=list)
    already_there: list[tuple[Path, Path]] = field(default_factory=list)
    failed: list[tuple[Path, str]] = field(default_factory=list)
    recovered: list[str] = field(default_factory=list)


def _lexists(path: Path) -> bool:
    return os.path.lexists(path)


# ------------------------------------------------------------------------------------- destination


def _nearest_existing(path: Path) -> Path:
    probe = path
    while not _lexists(probe) and probe.parent != probe:
        probe = probe.parent
    return probe


def _writable(folder: Path) -> str | None:
    """Why nothing can be written into `folder`, or None."""
    with contextlib.suppress(OSError, AttributeError):
        if os.statvfs(folder).f_flag & os.ST_RDONLY:
            return "the file system is read-only"
    if not os.access(folder, os.W_OK | os.X_OK):
        return "permission denied"
    return None


def _scanned_inside(dest: Path, source: str | os.PathLike[str], recursive: bool) -> str | None:
    """Why `dest` may not receive photos scanned from `source`, or None."""
    src = Path(source).expanduser().resolve()
    folder = src if src.is_dir() else src.parent
    if dest == folder:
        return f"{os.fsdecode(dest)} holds the photos being culled; choose another folder for the picks"
    if not (recursive and src.is_dir() and dest.is_relative_to(folder)):
        return None
    if any(part.startswith(".") for part in dest.relative_to(folder).parts):
        return None  # hidden folders are not scanned
    return (
        f"{os.fsdecode(dest)} is inside {os.fsdecode(folder)}, which is scanned: the copies would be culled "
        "again on the next run; choose a folder outside it"
    )


def check_destination(
    dest: str | os.PathLike[str], sources: Iterable[str | os.PathLike[str]] = (), *, recursive: bool = True
) -> Path:
    """Refuse a destination for the picks before anything is written (``CullError``, one line).

    It must be a folder (or creatable as one) that can be written, and neither a folder the photos of
    `sources` are in nor, when they are scanned `recursive`-ly, a folder inside them.
    """
    dest = Path(dest).expanduser()
    name = os.fsdecode(dest)
    if _lexists(dest) and not dest.is_dir():
        what = "a link to nothing" if not dest.exists() else "a file"
        raise CullError(f"{name} is {what}, not a folder; choose a folder for the picks")
    probe = _nearest_existing(dest.absolute())
    if not probe.is_dir():
        raise CullError(f"{name}: {os.fsdecode(probe)} is not a folder; choose a folder for the picks")
    why = _writable(probe)
    if why is not None:
        raise CullError(f"{name}: cannot write there ({why})")
    real = dest.resolve()
    for source in sources:
        why = _scanned_inside(real, source, recursive)
        if why is not None:
            raise CullError(why)
    return dest


# -------------------------------------------------------------------------------------------- names


def _sidecar_targets(photo: Path, dst: Path) -> list[tuple[Path, Path]]:
    """The photo's sidecars, their names beside ``dst``: name.xmp follows the stem, name.ext.xmp the name."""
    pairs = []
    for side in existing_sidecars(photo):
        if side.name.lower() == f"{photo.name}.xmp".lower():
            pairs.append((side, dst.with_name(dst.name + side.suffix)))
        else:
            pairs.append((side, dst.with_name(dst.stem + side.suffix)))
    return pairs


def _names(photo: Path, dest: Path) -> Iterable[Path]:
    for i in range(100_000):
        yield dest / f"{photo.stem if i == 0 else f'{photo.stem}-{i}'}{photo.suffix}"


def _existing_copy(photo: Path, dest: Path) -> Path | None:
    """An earlier copy of the photo in ``dest`` (``name.ext``, ``name-1.ext``...): re-runs copy nothing.
    A link (even to the photo itself) is not a copy: it holds nothing of its own."""
    for candidate in _names(photo, dest):
        if not _lexists(candidate):
            return None
        if not candidate.is_symlink() and same_content(photo, candidate):
            return candidate
    return None


def _free_name(photo: Path, dest: Path) -> Path:
    """``dest/name.ext``, or ``name-1.ext``, ``name-2.ext``... when that or one of its sidecars is taken
    (by anything, a link to nothing included)."""
    for candidate in _names(photo, dest):
        if not _lexists(candidate) and not any(_lexists(t) for _, t in _sidecar_targets(photo, candidate)):
            return candidate
    raise FileExistsError(errno.EEXIST, "no free file name", str(dest / photo.name))


# -------------------------------------------------------------------------------------------- units


def _copy_unit(photo: Path, target: Path, sidecars: list[tuple[Path, Path]]) -> None:
    """Copy the photo, then its sidecars (a crash in between: the re-run adds the missing sidecars)."""
    copy_published(photo, target)
    for side, side_target in sidecars:
        with contextlib.suppress(FileExistsError):  # taken since the check: never overwrite
            copy_published(side, side_target)


def _complete_sidecars(photo: Path, earlier: Path) -> None:
    """Sidecars a copy interrupted before them did not get."""
    for side, target in _sidecar_targets(photo, earlier):
        if not _lexists(target):
            with contextlib.suppress(FileExistsError):
                copy_published(side, target)


def _adoptable(photo: Path, earlier: Path) -> bool:
    """Whether a move can finish on an earlier copy: its sidecars are missing there or the same."""
    pairs = _sidecar_targets(photo, earlier)
    return all(not _lexists(t) or (not t.is_symlink() and same_content(s, t)) for s, t in pairs)


def _copy_one(
    photo: Path, dest: Path, journal: MoveJournal | None, sidecars: bool, moved: Mapping[Path, Path]
) -> tuple[Path, bool]:
    """Deliver one keeper; returns where it is and whether it was there already."""
    if journal is not None and not _lexists(photo):
        earlier = moved.get(journal_path(photo))
        if earlier is not None:
            return earlier, True  # moved by an earlier run
        raise FileNotFoundError(errno.ENOENT, "photo not found", str(photo))
    earlier = _existing_copy(photo, dest)
    if earlier is not None and journal is None:
        if sidecars:
            _complete_sidecars(photo, earlier)
        return earlier, True
    if earlier is not None and journal is not None and (not sidecars or _adoptable(photo, earlier)):
        move_unit(journal, photo, earlier, _sidecar_targets(photo, earlier) if sidecars else [])
        return earlier, False
    for _attempt in range(5):  # another process may take the name between the check and the link
        target = _free_name(photo, dest)
        pairs = _sidecar_targets(photo, target) if sidecars else []
        try:
            if journal is not None:
                move_unit(journal, photo, target, pairs)
            else:
                _copy_unit(photo, target, pairs)
            return target, False
        except FileExistsError:
            continue
    raise FileExistsError(errno.EEXIST, "destination names keep being taken", str(dest))


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
    earlier ``name-N.ext``) is left as it is (a move then only removes the original and its sidecars);
    a different file of the same name makes the copy ``name-1.ext``. Copies are written under a
    temporary name and renamed when complete; moves are journaled, and a move an earlier run left
    half done is settled first. ``dest`` is checked first (``check_destination``) and locked while
    in use (``moves.folder_lock``), with the photos' folders when moving.
    """
    dest = Path(dest).expanduser()
    keepers = [Path(p) for p, d in decisions.items() if d.keep]
    check_destination(dest, {p.parent for p in keepers}, recursive=False)
    report = CopyReport()
    if not keepers:
        return report
    try:
        dest.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CullError(f"{os.fsdecode(dest)}: cannot create the folder ({exc.strerror or exc})") from None
    folders = [dest, *{p.parent for p in keepers}] if move else [dest]
    with folder_lock(folders):
        try:
            report.recovered = recover_moves(dest)
            journal = MoveJournal(dest) if move else None
            moved = journal.moved() if journal else {}
        except OSError as exc:
            why = exc.strerror or exc
            raise CullError(f"{os.fsdecode(dest)}: cannot read its move journal ({why})") from None
        for photo in keepers:
            try:
                where, there = _copy_one(photo, dest, journal, sidecars, moved)
                (report.already_there if there else report.copied).append((photo, where))
            except OSError as exc:
                report.failed.append((photo, exc.strerror or str(exc)))
            if progress is not None:
                progress(photo)
    return report
