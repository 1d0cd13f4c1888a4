"""Moving a photo with its sidecars as one unit that survives kill -9, and one run at a time per folder.

A move across file systems is a copy and a delete, and a photo with sidecars is several files: a run
killed in the middle could leave the photo moved and its sidecar behind, half-copied files, or the photo
in both places. So every move is journaled in the destination folder (``.humanaes-moves.jsonl``):

1. the unit (photo, sidecars and their new names) is appended to the journal and fsync'd;
2. the sidecars, then the photo, get their new names (a hard link on one file system, else a complete
   copy under a temporary name that is then linked): the photo's new name is the commit point;
3. the sources are removed and the unit is marked done.

``recover_moves`` (run under the folder's lock before anything else) settles what a killed run left: a unit
whose photo reached its new name is completed (missing sidecars published, sources removed), any other
is rolled back (the copies it published are removed), and leftover temporary files are deleted. Done
units remember where each photo came from (``MoveJournal.moved``), so that a re-run can plan over the
whole shoot, moved photos included, and move nothing new.

``folder_lock`` serialises the runs that work on a folder: an advisory ``flock`` on the folder itself,
so no lock file is left behind and no lock name can be too long.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import secrets
import shutil
import stat
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from humanaes_core.files import nonblocking_opener, read_small_file
from humanaes_core.store import content_hash_file

try:
    import fcntl
except ImportError:  # Windows: no advisory locks on folders; runs are not serialised there
    fcntl = None  # type: ignore[assignment]

__all__ = [
    "JOURNAL_NAME",
    "MoveJournal",
    "copy_published",
    "folder_lock",
    "journal_path",
    "move_unit",
    "moved_photos",
    "place",
    "recover_moves",
    "same_content",
]

#: The journal of moves into a folder (hidden: folder scans skip it).
JOURNAL_NAME = ".humanaes-moves.jsonl"
_TEMP_PREFIX, _TEMP_SUFFIX = ".humanaes-", ".partial"  # short: photo names of 250 bytes still fit
_JOURNAL_MAX_BYTES = 64 << 20


# ------------------------------------------------------------------------------------------- files


def _lexists(path: Path) -> bool:
    return os.path.lexists(path)


def same_content(a: Path, b: Path) -> bool:
    """Whether two regular files hold the same bytes (the same file counts)."""
    try:
        if os.path.samefile(a, b):
            return True
        return a.stat().st_size == b.stat().st_size and content_hash_file(a) == content_hash_file(b)
    except OSError:
        return False


def _temp_file(folder: Path) -> tuple[int, Path]:
    while True:
        tmp = folder / f"{_TEMP_PREFIX}{secrets.token_hex(8)}{_TEMP_SUFFIX}"
        try:
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
            return os.open(tmp, flags, 0o600), tmp
        except FileExistsError:
            continue


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


def copy_published(src: Path, dst: Path) -> None:
    """Copy to a temporary name beside `dst`, then publish it: never a half-copied file under `dst`."""
    fd, tmp = _temp_file(dst.parent)
    try:
        with os.fdopen(fd, "wb") as out, open(src, "rb", opener=nonblocking_opener) as inp:
            if not stat.S_ISREG(os.fstat(inp.fileno()).st_mode):
                raise OSError(errno.EINVAL, "not a regular file", str(src))
            shutil.copyfileobj(inp, out, 1 << 20)
            out.flush()
            os.fsync(out.fileno())
        shutil.copystat(src, tmp)  # photographers sort by file date: keep it
        if tmp.stat().st_size != src.stat().st_size:
            raise OSError(errno.EIO, "copy is incomplete", str(dst))
        _publish(tmp, dst)
    finally:
        tmp.unlink(missing_ok=True)


def place(src: Path, dst: Path) -> None:
    """`src` also under `dst` (a hard link on one file system, else a published copy); never replaces."""
    try:
        os.link(src, dst)
    except FileExistsError:
        raise
    except OSError:  # another file system, or no hard links
        copy_published(src, dst)


def _fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


# ----------------------------------------------------------------------------------------- journal


def journal_path(path: str | os.PathLike[str]) -> Path:
    """How the journal names a file: absolute, its folder with links resolved (the same photo reached
    through another spelling of its folder is still the same photo)."""
    folder, name = os.path.split(os.path.abspath(path))
    return Path(os.path.realpath(folder), name)


def _text(path: Path) -> str:
    return os.fsdecode(journal_path(path))


@dataclass(frozen=True)
class Unit:
    """One journaled move: a photo, its new name, and its sidecars with theirs (absolute paths)."""

    uid: str
    src: Path
    dst: Path
    sidecars: tuple[tuple[Path, Path], ...]


class MoveJournal:
    """The append-only record of moves into one folder: one JSON object per line, fsync'd."""

    def __init__(self, folder: str | os.PathLike[str]) -> None:
        self.path = Path(folder) / JOURNAL_NAME

    def _records(self) -> list[dict]:
        try:  # a regular file of sane size, or OSError
            lines = read_small_file(self.path, _JOURNAL_MAX_BYTES).splitlines()
        except FileNotFoundError:
            return []
        records = []
        for line in lines:
            with contextlib.suppress(ValueError):  # a line torn by a kill: that step never happened
                record = json.loads(line)
                if isinstance(record, dict) and isinstance(record.get("id"), str):
                    records.append(record)
        return records

    def _append(self, record: dict) -> None:
        data = json.dumps(record).encode("ascii") + b"\n"  # lone surrogates of odd names stay escaped
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND | getattr(os, "O_CLOEXEC", 0), 0o644)
        try:
            size = os.fstat(fd).st_size
            if size and os.pread(fd, 1, size - 1) != b"\n":
                data = b"\n" + data  # end a torn line first, so this record stays readable
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)

    def begin(self, src: Path, dst: Path, sidecars: Iterable[tuple[Path, Path]]) -> str:
        """Record a move before any file changes; returns its id."""
        uid = secrets.token_hex(8)
        pairs = [[_text(s), _text(t)] for s, t in sidecars]
        self._append({"id": uid, "src": _text(src), "dst": _text(dst), "sidecars": pairs})
        return uid

    def end(self, uid: str, state: str) -> None:
        """Mark a move "done" or "undone"."""
        self._append({"id": uid, "state": state})

    def _units(self) -> tuple[list[Unit], dict[str, str]]:
        units: list[Unit] = []
        states: dict[str, str] = {}
        for r in self._records():
            if "state" in r:
                states[r["id"]] = str(r["state"])
            elif isinstance(r.get("src"), str) and isinstance(r.get("dst"), str):
                sides = tuple((Path(s), Path(t)) for s, t in r.get("sidecars") or [])
                units.append(Unit(r["id"], Path(r["src"]), Path(r["dst"]), sides))
        return units, states

    def pending(self) -> list[Unit]:
        """Moves begun and neither finished nor rolled back (a run was killed)."""
        units, states = self._units()
        return [u for u in units if u.uid not in states]

    def moved(self) -> dict[Path, Path]:
        """Photos moved here that are still here and not back at their old name: old path -> new path."""
        units, states = self._units()
        found: dict[Path, Path] = {}
        for u in units:
            if states.get(u.uid) == "done":
                found[u.src] = u.dst
        return {s: d for s, d in found.items() if d.is_file() and not _lexists(s)}


def moved_photos(folder: str | os.PathLike[str]) -> dict[Path, Path]:
    """Photos earlier runs moved into `folder` that are still there: old path -> new path (absolute)."""
    if not Path(folder).is_dir():
        return {}
    return MoveJournal(folder).moved()


# ---------------------------------------------------------------------------------------- one unit


def move_unit(journal: MoveJournal, photo: Path, target: Path, sidecars: list[tuple[Path, Path]]) -> None:
    """Move the photo and its sidecars as one journaled unit; on any failure nothing has moved.

    A target that already holds the same bytes (an earlier copy) is taken as it is; any other existing
    target raises FileExistsError, and the caller picks another name.
    """
    uid = journal.begin(photo, target, sidecars)
    published: list[Path] = []
    try:
        for src, dst in [*sidecars, (photo, target)]:  # the photo last: its new name is the commit point
            if _lexists(dst) and not dst.is_symlink() and same_content(src, dst):
                continue
            place(src, dst)
            published.append(dst)
        _fsync_dir(target.parent)
        photo.unlink()
    except BaseException:
        for dst in published:
            dst.unlink(missing_ok=True)
        journal.end(uid, "undone")
        raise
    for src, _ in sidecars:
        src.unlink(missing_ok=True)  # should this fail, the unit stays pending: recover_moves retries
    journal.end(uid, "done")


def _roll_forward(unit: Unit) -> None:
    for side, target in unit.sidecars:
        if not _lexists(side):
            continue
        if not _lexists(target):
            place(side, target)
        if not target.is_symlink() and same_content(side, target):
            side.unlink()
    if _lexists(unit.src):
        unit.src.unlink()


def _roll_back(unit: Unit) -> None:
    if unit.dst.is_file() and unit.dst.stat().st_size == 0 and _lexists(unit.src):
        unit.dst.unlink()  # the empty placeholder of a publish without hard links, never filled
    for side, target in unit.sidecars:
        if _lexists(side) and _lexists(target) and same_content(side, target):
            target.unlink()  # our copy (or hard link) of a sidecar the source still has


def _settle(journal: MoveJournal, unit: Unit) -> str:
    """Complete a unit whose photo reached its new name, roll back any other; a one-line account."""
    arrived = unit.dst.is_file() and not unit.dst.is_symlink()
    if arrived and _lexists(unit.src):
        arrived = same_content(unit.src, unit.dst)
    if arrived:
        _roll_forward(unit)
        journal.end(unit.uid, "done")
        return f"finished moving {unit.src} to {unit.dst} (a run was interrupted)"
    _roll_back(unit)
    journal.end(unit.uid, "undone")
    return f"undid the interrupted move of {unit.src}; it stays where it was"


def recover_moves(folder: str | os.PathLike[str]) -> list[str]:
    """Settle the moves into `folder` that a killed run left half done; remove its temporary files.

    Call it holding ``folder_lock`` on the folder. Returns one line per unit settled or left pending.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return []
    journal = MoveJournal(folder)
    lines = []
    for unit in journal.pending():
        try:
            lines.append(_settle(journal, unit))
        except OSError as exc:
            lines.append(f"could not settle the interrupted move of {unit.src}: {exc.strerror or exc}")
    with os.scandir(folder) as it:
        for entry in it:
            if entry.name.startswith(_TEMP_PREFIX) and entry.name.endswith(_TEMP_SUFFIX):
                with contextlib.suppress(OSError):
                    os.unlink(entry.path)
    return lines


# ------------------------------------------------------------------------------------------- locks


class _Held:
    """This process's hold on one folder's lock: threads wait on `rlock`, other processes on `fd`."""

    def __init__(self) -> None:
        self.rlock = threading.RLock()
        self.fd: int | None = None
        self.depth = 0


_HELD: dict[tuple[int, int], _Held] = {}
_HELD_GUARD = threading.Lock()


def _flock(folder: Path, on_wait: Callable[[Path], None] | None) -> int | None:
    if fcntl is None:
        return None
    fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_CLOEXEC", 0))
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        if on_wait is not None:
            on_wait(folder)
        fcntl.flock(fd, fcntl.LOCK_EX)
    except OSError:  # a file system without flock (some network shares): not serialised there
        pass
    return fd


@contextlib.contextmanager
def _lock_one(key: tuple[int, int], folder: Path, on_wait: Callable[[Path], None] | None) -> Iterator[None]:
    with _HELD_GUARD:
        held = _HELD.setdefault(key, _Held())
    if not held.rlock.acquire(blocking=False):
        if on_wait is not None:
            on_wait(folder)
        held.rlock.acquire()
    try:
        if held.depth == 0:
            held.fd = _flock(folder, on_wait)
        held.depth += 1
        try:
            yield
        finally:
            held.depth -= 1
            if held.depth == 0 and held.fd is not None:
                os.close(held.fd)  # releases the flock
                held.fd = None
    finally:
        held.rlock.release()


@contextlib.contextmanager
def folder_lock(
    folders: Iterable[str | os.PathLike[str]], on_wait: Callable[[Path], None] | None = None
) -> Iterator[None]:
    """Hold the lock of every existing folder in `folders`; waits for other runs (`on_wait` is told).

    Re-entrant within a process; folders are locked in one global order, so two runs that lock
    overlapping sets cannot deadlock.
    """
    keyed: dict[tuple[int, int], Path] = {}
    for folder in folders:
        try:
            st = os.stat(folder)
        except OSError:
            continue
        if stat.S_ISDIR(st.st_mode):
            keyed.setdefault((st.st_dev, st.st_ino), Path(folder))
    with contextlib.ExitStack() as stack:
        for key in sorted(keyed):
            stack.enter_context(_lock_one(key, keyed[key], on_wait))
        yield
