"""Auto-cull: turn score cards into keep/reject decisions, and act on them without touching originals.

``plan_cull`` ranks photos inside each partition (a folder, a burst, or everything) and keeps the top
P % and/or everything at or above a level. Keepers get a star rating from their level (bad 1 ...
excellent 5); rejects get ``xmp:Rating -1`` when written out. The plan is only data: the desktop app
shows it for review (and stores overrides in ``decisions``), ``humanaes-cull`` applies it directly.

Acting on a plan: ``write_sidecars`` merges the decisions into XMP sidecars (``xmp``), ``copy_picks``
copies (or moves) the keepers and their sidecars to another folder, ``export_cards`` writes every card
with its decision as CSV, JSON or JSON lines. Originals are only ever read, except by an explicit move.
"""

from __future__ import annotations

import contextlib
import csv
import errno
import json
import math
import os
import shutil
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from humanaes_core.cli.score import CSV_COLUMNS, card_row, write_rows
from humanaes_core.errors import HumanAesError
from humanaes_core.formats import XmpError, existing_sidecars, read_rating, write_decision
from humanaes_core.schema import LEVELS, level_to_index, score_to_level
from humanaes_core.store import content_hash_file

__all__ = [
    "DECISION_COLUMNS",
    "PARTITIONS",
    "CopyReport",
    "CullError",
    "Decision",
    "WriteReport",
    "copy_picks",
    "export_cards",
    "level_stars",
    "plan_cull",
    "write_sidecars",
]

PARTITIONS = ("folder", "burst", "all")
DECISION_COLUMNS = ["keep", "rating", "reason", "group", "group_size"]


class CullError(HumanAesError):
    """A cull request that cannot be carried out as asked (bad threshold, unsafe destination)."""


@dataclass(frozen=True)
class Decision:
    """Keep or reject one photo. ``stars`` is what its level is worth (kept photos are rated with it);
    ``rating`` is what goes into ``xmp:Rating``: the stars for a keeper, -1 for a reject."""

    keep: bool
    stars: int
    reason: str
    overall: float = 0.0
    level: str = ""
    group: str = ""
    group_size: int = 1

    @property
    def rating(self) -> int:
        return self.stars if self.keep else -1


def level_stars(level: str) -> int:
    """Stars for a level: bad 1, poor 2, fair 3, good 4, excellent 5."""
    return level_to_index(level)


def _card_dict(card: Any) -> dict:
    return card if isinstance(card, Mapping) else card.to_dict()


def _overall_and_level(card: Any) -> tuple[float, str]:
    data = _card_dict(card)
    overall = float(data["dims"]["overall"])
    level = data.get("level") or score_to_level(overall)
    return overall, level


def _partitions(
    paths: Sequence[Path], per: str, groups: Sequence[Sequence[str | os.PathLike[str]]] | None
) -> list[tuple[str, list[Path]]]:
    """(label, members) for each partition the ranking runs in."""
    if per == "all":
        return [("all photos", list(paths))]
    if per == "folder":
        by_folder: dict[Path, list[Path]] = {}
        for p in paths:
            by_folder.setdefault(p.parent, []).append(p)
        return [(str(folder), members) for folder, members in by_folder.items()]
    if groups is None:
        raise CullError("culling per burst needs the burst groups (grouping.group_photos)")
    wanted = set(paths)
    seen: set[Path] = set()
    parts: list[tuple[str, list[Path]]] = []
    for group in groups:
        members = [Path(p) for p in group if Path(p) in wanted and Path(p) not in seen]
        if not members:
            continue
        seen.update(members)
        label = f"burst of {len(members)} from {members[0].name}" if len(members) > 1 else members[0].name
        parts.append((label, members))
    parts += [(p.name, [p]) for p in paths if p not in seen]  # photos the grouping did not cover
    return parts


def plan_cull(
    cards_by_path: Mapping[str | os.PathLike[str], Any],
    *,
    keep_top_percent: float | None = None,
    min_level: str | None = None,
    per: str = "folder",
    groups: Sequence[Sequence[str | os.PathLike[str]]] | None = None,
) -> dict[Path, Decision]:
    """Decide keep/reject for every scored photo (ScoreCards or their dicts, keyed by path).

    Within each partition (``per``: "folder", "burst" with ``groups`` from ``grouping.group_photos``,
    or "all") photos are ranked by overall score (ties by path). ``keep_top_percent`` keeps the best
    P % rounded up, so every partition keeps at least one photo (a burst of 5 at 20 % keeps its best
    frame); ``min_level`` keeps photos at or above that level. Given both, a photo must pass both.
    """
    if keep_top_percent is None and min_level is None:
        raise CullError("say what to keep: a top percentage, a minimum level, or both")
    if keep_top_percent is not None and not 0 < keep_top_percent <= 100:
        raise CullError(f"the top percentage must be in (0, 100], got {keep_top_percent}")
    if min_level is not None and min_level not in LEVELS:
        raise CullError(f"unknown level {min_level!r}; levels are {', '.join(LEVELS)}")
    if per not in PARTITIONS:
        raise CullError(f"cannot cull per {per!r}; choose one of {', '.join(PARTITIONS)}")

    scores = {Path(p): _overall_and_level(card) for p, card in cards_by_path.items()}
    floor = level_to_index(min_level) if min_level is not None else None
    decisions: dict[Path, Decision] = {}
    for label, members in _partitions(list(scores), per, groups):
        ranked = sorted(members, key=lambda p: (-scores[p][0], str(p)))
        n = len(ranked)
        n_top = math.ceil(n * keep_top_percent / 100 - 1e-9) if keep_top_percent is not None else n
        for rank, path in enumerate(ranked, start=1):
            overall, level = scores[path]
            in_top = rank <= n_top
            high_enough = floor is None or level_to_index(level) >= floor
            why: list[str] = []
            if keep_top_percent is not None:
                share = f"top {keep_top_percent:g}%"
                why.append(f"#{rank} of {n}, {'in' if in_top else 'outside'} the {share}")
            if floor is not None:
                why.append(f"{level}, {'at or above' if high_enough else 'below'} {min_level}")
            decisions[path] = Decision(
                keep=in_top and high_enough,
                stars=level_stars(level),
                reason="; ".join(why),
                overall=overall,
                level=level,
                group=label,
                group_size=n,
            )
    return decisions


# ------------------------------------------------------------------------------------- sidecars


@dataclass
class WriteReport:
    """What ``write_sidecars`` did: sidecars written, photos whose sidecar could not be written."""

    written: list[Path] = field(default_factory=list)
    failed: list[tuple[Path, str]] = field(default_factory=list)


def write_sidecars(
    decisions: Mapping[Path, Decision],
    convention: str = "auto",
    *,
    label: str | None = None,
    digikam: bool = True,
    progress: Callable[[Path], None] | None = None,
) -> WriteReport:
    """Merge each decision into the photo's XMP sidecar: keepers get their stars (and ``label``, if
    given), rejects get Rating -1 and lose ``label`` when it is the keeper label a previous run gave
    them, so re-running a cull with another threshold leaves consistent labels. Per-photo failures
    are reported, not raised."""
    report = WriteReport()
    for photo, decision in decisions.items():
        try:
            if decision.keep:
                report.written += write_decision(
                    photo, decision.stars, False, label, pick=True, convention=convention, digikam=digikam
                )
            else:
                clear = None
                if label:
                    current = read_rating(photo).label
                    clear = "" if current is not None and current.lower() == label.lower() else None
                report.written += write_decision(
                    photo, None, True, clear, pick=False, convention=convention, digikam=digikam
                )
        except (XmpError, OSError) as exc:
            report.failed.append((Path(photo), str(exc)))
        if progress is not None:
            progress(Path(photo))
    return report


# ------------------------------------------------------------------------------------------ copy


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


# ---------------------------------------------------------------------------------------- export


def _atomic_text(target: Path, write: Callable[[Any], None]) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
            write(fh)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def export_cards(
    cards: Mapping[str | os.PathLike[str], Any],
    out: str | os.PathLike[str],
    *,
    decisions: Mapping[Path, Decision] | None = None,
    groups: Sequence[Sequence[str | os.PathLike[str]]] | None = None,
    errors: Mapping[str | os.PathLike[str], str] | None = None,
) -> Path:
    """Every card as one row (the ``humanaes-score`` columns), plus keep/rating/reason/group columns
    when ``decisions`` are given. ``.csv``: CSV; ``.json``: one JSON array; anything else: JSON lines.
    Photos in ``errors`` get a row with only their error. The file is replaced atomically."""
    target = Path(out)
    group_of: dict[Path, tuple[int, int]] = {}
    for i, group in enumerate(groups or (), start=1):
        for member in group:
            group_of[Path(member)] = (i, len(group))
    rows: list[dict] = []
    for path, card in cards.items():
        row = card_row(str(path), _card_dict(card) if card is not None else None, None)
        if decisions is not None:
            d = decisions.get(Path(path))
            gid, gsize = group_of.get(Path(path), (None, None))
            row.update(
                keep=None if d is None else d.keep,
                rating=None if d is None else d.rating,
                reason=None if d is None else d.reason,
                group=gid if groups is not None else (None if d is None else d.group),
                group_size=gsize if groups is not None else (None if d is None else d.group_size),
            )
        rows.append(row)
    for path, reason in (errors or {}).items():
        rows.append(card_row(str(path), None, reason))

    suffix = target.suffix.lower()
    if decisions is None and suffix != ".json":
        write_rows(rows, str(target))  # the exact humanaes-score format
        return target
    if suffix == ".json":
        _atomic_text(target, lambda fh: json.dump(rows, fh, ensure_ascii=False, indent=1))
    elif suffix == ".csv":
        columns = CSV_COLUMNS + (DECISION_COLUMNS if decisions is not None else [])

        def write_csv(fh: Any) -> None:
            writer = csv.DictWriter(fh, fieldnames=columns, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(rows)

        _atomic_text(target, write_csv)
    else:
        _atomic_text(target, lambda fh: fh.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    return target
