"""`humanaes-cull FOLDER --model M [--keep-top P% | --min-level L] [--reject RULES] [--preset KIND] ...`.

Headless culling for batch users: score the folder (through the cache, so a second run is instant),
keep the top P % or everything at or above a level per folder or per burst, reject what the photo
checks flag (closed eyes, missed focus, misfires: ``--reject``, ``--preset wedding`` ...), then write the
decisions where editors read them. Keepers get their level as a star rating, every other photo
Rating -1.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from humanaes_core.cli import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    add_library_args,
    add_model_args,
    cached_scoring,
    check_outputs,
    echo,
    elapsed,
    float_in,
    guard,
    int_in,
    non_negative_float,
)
from humanaes_core.errors import HumanAesError
from humanaes_core.schema import LEVELS
from humanaes_core.wording import count

if TYPE_CHECKING:
    from humanaes_core.culling import CheckRules

#: Shoot kinds --preset takes beside the scoring presets (``culling.SHOOT_PRESETS``' keys).
SHOOTS = ("wedding", "ceremony", "portrait", "event", "sports")


def _percent(text: str) -> float:
    """'20%', '20' or '12.5%' -> 20.0 / 12.5, for --keep-top."""
    raw = text.strip().rstrip("%").strip()
    try:
        value = float(raw)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a percentage: {text!r} (e.g. 20%)") from None
    if not 0 < value <= 100:
        raise argparse.ArgumentTypeError(f"the percentage must be above 0 and at most 100, got {text!r}")
    return value


#: Kept photos listed by name; the rest are counted.
SHOW_KEPT = 20


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="humanaes-cull",
        description="Cull photos with HumanAesExpert scores: keep the best, reject the rest, and write the "
        "decisions as XMP sidecars that Lightroom Classic, darktable and digiKam read. Keepers are rated "
        "1-5 stars from their level (bad 1 ... excellent 5); every other photo gets Rating -1 (reject). "
        "Each sidecar records that HumanAes decided, with the plan (humanaes:Origin, humanaes:Plan), so "
        "training never reads these decisions back as yours. Originals are never modified.",
    )
    parser.add_argument("paths", nargs="+", metavar="FOLDER", help="folders (scanned recursively) or photos")
    add_model_args(parser)
    keep = parser.add_mutually_exclusive_group()
    keep.add_argument(
        "--keep-top", type=_percent, metavar="P%", help="keep the best P percent of each folder/burst"
    )
    keep.add_argument("--min-level", choices=LEVELS, help="keep every photo at or above this level")
    parser.add_argument(
        "--per",
        default="folder",
        choices=["folder", "burst", "all"],
        help="where photos compete: each folder (default), each burst of near-identical frames, or all",
    )
    parser.add_argument("--write-xmp", action="store_true", help="write the decisions to XMP sidecars")
    parser.add_argument(
        "--sidecar",
        default="auto",
        choices=["auto", "name.xmp", "name.ext.xmp"],
        help="sidecar name for photos without one: auto (default) = name.xmp for camera RAW (Lightroom), "
        "name.ext.xmp otherwise (darktable, digiKam); an existing sidecar is always updated in place",
    )
    parser.add_argument("--label", default=None, help="colour label for keepers, e.g. Green")
    parser.add_argument(
        "--no-digikam", action="store_true", help="do not write digiKam's pick and colour labels"
    )
    dest = parser.add_mutually_exclusive_group()
    dest.add_argument("--copy-picks", metavar="DIR", help="copy the keepers (and their sidecars) into DIR")
    dest.add_argument("--move-picks", metavar="DIR", help="move the keepers (and their sidecars) into DIR")
    parser.add_argument("--export", metavar="FILE", help="all cards with decisions: .csv, .json or .jsonl")
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="show the plan only: no sidecars, nothing copied or moved (--export is still written)",
    )
    parser.add_argument(
        "--yes",
        action="store_true",
        help="apply the plan even when it rejects (nearly) every photo; without it such a plan is refused",
    )
    parser.add_argument(
        "--heads", default="all", choices=["all", "overall"], help="overall: quick LM+regression only"
    )
    _add_presets(parser)
    parser.add_argument(
        "--reject",
        type=_rules,
        metavar="RULES",
        help="reject what the photo checks flag, comma-separated: closed-eyes, missed-focus, misfire "
        "(with the --preset shoot's sensitivities, else 0.5)",
    )
    parser.add_argument(
        "--closed-eyes",
        type=float_in(0, 1),
        metavar="S",
        help="closed-eyes sensitivity 0-1: 1 rejects a frame where any face blinked, 0.5 half of a group "
        "(the main face always counts); turns the rule on",
    )
    parser.add_argument(
        "--missed-focus",
        type=float_in(0, 1),
        metavar="S",
        help="missed-focus sensitivity 0-1: 0.5 rejects missed focus on the main face, 1 soft focus too; "
        "turns the rule on",
    )
    parser.add_argument(
        "--max-gap", type=non_negative_float, default=None, help="bursts: seconds between frames (2)"
    )
    parser.add_argument(
        "--max-hamming", type=int_in(0, 64), default=None, help="bursts: hash distance in bits, 0-64 (10)"
    )
    parser.add_argument("--no-recursive", action="store_true", help="do not descend into sub-folders")
    parser.add_argument("--no-cache", action="store_true", help="neither read nor write the score cache")
    add_library_args(parser)
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    return parser


def _add_presets(parser: argparse.ArgumentParser) -> None:
    """--preset, repeatable: a scoring preset (sets --max-tiles) and/or a kind of shoot (sets the check
    rules), e.g. ``--preset wedding --preset fast``."""
    from humanaes_core.scoring import ALL_PRESETS  # torch-free: --help stays fast

    parser.add_argument(
        "--preset",
        action="append",
        choices=[*ALL_PRESETS, *SHOOTS],
        default=None,
        help="scoring speed (accurate, balanced, fast, release: see humanaes-score --help) and/or the kind "
        "of shoot, which sets the check rules: wedding (= ceremony: blinks of the main faces, missed "
        "focus), portrait (strict on both), event (the main face or half of a group blinked), sports "
        "(focus only); every kind also rejects misfires. Repeat to give both",
    )
    parser.set_defaults(max_tiles=None)


def _rules(text: str) -> tuple[str, ...]:
    """'closed-eyes,misfire' -> the rule names, checked against ``culling.CHECK_RULE_NAMES``."""
    from humanaes_core.culling import CHECK_RULE_NAMES

    names = tuple(n.strip().lower() for n in text.split(",") if n.strip())
    unknown = [n for n in names if n not in CHECK_RULE_NAMES]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"unknown rule {', '.join(unknown) or text!r}; choose from {', '.join(CHECK_RULE_NAMES)}"
        )
    return names


def _split_presets(args: argparse.Namespace) -> None:
    """--preset's values into ``args.preset`` (scoring) and ``args.shoot`` (kind of shoot); the last of
    each kind wins."""
    given = args.preset or []
    args.shoot = next((p for p in reversed(given) if p in SHOOTS), None)
    args.preset = next((p for p in reversed(given) if p not in SHOOTS), None)


def check_rules(args: argparse.Namespace) -> CheckRules:
    """The check rules asked for: the shoot's preset, narrowed to --reject's rules when given (a rule
    the preset leaves off gets sensitivity 0.5), with --closed-eyes/--missed-focus on top."""
    from humanaes_core.culling import SHOOT_PRESETS, CheckRules

    base = SHOOT_PRESETS[args.shoot] if args.shoot else CheckRules()
    closed, focus, misfire = base.closed_eyes, base.missed_focus, base.misfire
    if args.reject is not None:
        closed = (0.5 if closed is None else closed) if "closed-eyes" in args.reject else None
        focus = (0.5 if focus is None else focus) if "missed-focus" in args.reject else None
        misfire = "misfire" in args.reject
    if args.closed_eyes is not None:
        closed = args.closed_eyes
    if args.missed_focus is not None:
        focus = args.missed_focus
    return CheckRules(closed_eyes=closed, missed_focus=focus, misfire=misfire)


def _score(args: argparse.Namespace, files: list[Path], errors: dict[str, str]) -> dict[Path, object]:
    """Cards of `files` in their order, through the cache; photos that fail go into `errors`."""
    from tqdm import tqdm
    from tqdm.contrib.logging import logging_redirect_tqdm

    from humanaes_core.scoring import resolve_max_tiles
    from humanaes_core.store import ScoreCache

    max_tiles = resolve_max_tiles(args.preset, args.max_tiles)
    cache = None if args.no_cache else ScoreCache(args.cache)
    cards: dict[Path, object] = {}
    try:
        runner = cached_scoring(args, cache, max_tiles)
        bar = tqdm(total=len(files), unit="photo", disable=args.quiet, file=sys.stderr, desc="scoring")
        # a warning as the model loads: a line of its own above the bar
        with contextlib.nullcontext() if args.quiet else logging_redirect_tqdm(), bar:
            for result in runner.run(files):
                if result.card is not None:
                    cards[Path(result.source or "")] = result.card
                else:
                    errors[result.source or ""] = result.error or "unknown error"
                bar.update(1)
    finally:
        if cache is not None:
            cache.close()
    order = {p: i for i, p in enumerate(files)}
    return dict(sorted(cards.items(), key=lambda kv: order.get(kv[0], len(order))))


def _bursts(args: argparse.Namespace, paths: list[Path]) -> list[list[Path]]:
    """Bursts of near-identical frames among the scored photos (for --per burst)."""
    from tqdm import tqdm

    from humanaes_core.culling import DEFAULT_MAX_GAP_S, DEFAULT_MAX_HAMMING, group_photos, photo_fingerprint

    items = []
    for path in tqdm(paths, unit="photo", disable=args.quiet, file=sys.stderr, desc="grouping"):
        try:
            items.append(photo_fingerprint(path).item())
        except HumanAesError:  # scored a moment ago, unreadable now: it stays a group of its own
            continue
    return group_photos(
        items,
        max_hamming=DEFAULT_MAX_HAMMING if args.max_hamming is None else args.max_hamming,
        max_gap_s=DEFAULT_MAX_GAP_S if args.max_gap is None else args.max_gap,
    )


def _print_plan(per: str, decisions: dict) -> int:
    """The plan's counts, overall and per folder or burst; returns how many photos are kept."""
    n_keep = sum(d.keep for d in decisions.values())
    by_group: dict[str, list[int]] = {}
    for d in decisions.values():
        counts = by_group.setdefault(d.group, [0, 0])
        counts[0 if d.keep else 1] += 1
    if per == "burst":
        bursts = sum(1 for k, r in by_group.values() if k + r > 1)
        where = f"{bursts} burst{'s' if bursts != 1 else ''}, {len(by_group) - bursts} single"
    elif per == "folder":
        where = f"{len(by_group)} folder{'s' if len(by_group) != 1 else ''}"
    else:
        where = "ranked together"
    culled = count(len(decisions), "photo")
    echo(f"{culled} culled: {n_keep} kept, {len(decisions) - n_keep} rejected ({where})")
    for label, (k, r) in by_group.items():
        if per != "all" and (per != "burst" or k + r > 1):
            echo(f"  {label}: kept {k}, rejected {r}")
    kept = [p for p, d in decisions.items() if d.keep]
    if kept:
        echo("kept:")
        for path in kept[:SHOW_KEPT]:
            d = decisions[path]
            echo(f"  {path}  {d.overall:.2f} {d.level}")
        if len(kept) > SHOW_KEPT:
            echo(f"  ... and {len(kept) - SHOW_KEPT} more (--export FILE lists them all)")
    return n_keep


def _print_rejects(args: argparse.Namespace, cards: dict) -> None:
    """How many photos each check rule rejected, in one line; a note when no photo was checked."""
    from collections import Counter

    from humanaes_core.culling import check_rejects

    if not args.rules.active:
        return
    if all(getattr(card, "checks", None) is None for card in cards.values()):
        echo("warning: no photo carries photo checks, so no check rule rejected anything", err=True)
        return
    counts = Counter(
        reason.split(" (")[0] for card in cards.values() for reason in check_rejects(card, args.rules)
    )
    if counts:
        echo("rejected by the checks: " + ", ".join(f"{why} {n}" for why, n in counts.most_common()))


def _refuse(args: argparse.Namespace, decisions: dict) -> bool:
    """A plan that rejects (nearly) everything (`plan_warning`): refused, in one line, when it would be
    written to sidecars or act on the photos and --yes was not given; otherwise shown as a warning."""
    from humanaes_core.culling import plan_warning

    warning = plan_warning(decisions)
    if warning is None:
        return False
    acts = not args.dry_run and (args.write_xmp or args.copy_picks or args.move_picks)
    if acts and not args.yes:
        echo(f"error: {warning}; nothing written (add --yes to apply it anyway)", err=True)
        return True
    echo(f"warning: {warning}", err=True)
    return False


def _write_xmp(args: argparse.Namespace, decisions: dict) -> bool:
    """Sidecars for every decision (or what would be written); True when some failed."""
    from humanaes_core.culling import describe_plan, write_sidecars

    if args.dry_run:
        echo(f"would write XMP sidecars for {count(len(decisions), 'photo')}")
        return False
    plan = f"humanaes-cull: {describe_plan(args.keep_top, args.min_level, args.per)}"
    report = write_sidecars(decisions, args.sidecar, label=args.label, digikam=not args.no_digikam, plan=plan)
    echo(f"wrote {len(set(report.written))} XMP sidecars")
    for photo, reason in report.failed:
        echo(f"  sidecar not written for {photo}: {reason}", err=True)
    return bool(report.failed)


def _deliver(args: argparse.Namespace, decisions: dict, n_keep: int) -> bool:
    """Copy or move the keepers to --copy-picks/--move-picks; True when some failed."""
    from humanaes_core.culling import copy_picks

    dest = args.copy_picks or args.move_picks
    action = "move" if args.move_picks else "copy"
    if args.dry_run:
        echo(f"would {action} {count(n_keep, 'photo')} to {dest}")
        return False
    copied = copy_picks(decisions, dest, move=bool(args.move_picks))
    for line in copied.recovered:
        echo(line, err=True)
    done = "moved" if args.move_picks else "copied"
    echo(
        f"{done} {count(len(copied.copied), 'photo')} to {dest}"
        + (f" ({len(copied.already_there)} already there)" if copied.already_there else "")
    )
    for photo, reason in copied.failed:
        echo(f"  not {done}: {photo}: {reason}", err=True)
    return bool(copied.failed)


def _check_picks(args: argparse.Namespace) -> None:
    """Refuse a --copy-picks/--move-picks folder before anything is scored or written."""
    dest = args.copy_picks or args.move_picks
    if dest:
        from humanaes_core.culling import check_destination

        check_destination(dest, args.paths, recursive=not args.no_recursive)


@contextlib.contextmanager
def _picks_lock(args: argparse.Namespace) -> Iterator[None]:
    """--move-picks: one run at a time on the photos' folders and the destination, the plan made under
    the lock, and what an interrupted run left half moved settled first."""
    if not args.move_picks or args.dry_run:
        yield
        return
    from humanaes_core.culling import CullError, folder_lock, recover_moves

    dest = Path(args.move_picks).expanduser()
    try:
        dest.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise CullError(f"{args.move_picks}: cannot create the folder ({exc.strerror or exc})") from None
    told: list[Path] = []

    def waiting(folder: Path) -> None:
        if not told:
            echo(f"waiting for another humanaes-cull that is moving photos in {folder}", err=True)
        told.append(folder)

    folders = [dest, *(p if p.is_dir() else p.parent for p in map(Path, args.paths))]
    with folder_lock(folders, on_wait=waiting):
        try:
            settled = recover_moves(dest)
        except OSError as exc:
            why = exc.strerror or exc
            raise CullError(f"{args.move_picks}: cannot settle earlier moves ({why})") from None
        for line in settled:
            echo(line, err=True)
        yield


def _moved_earlier(args: argparse.Namespace) -> dict[Path, Path]:
    """--move-picks: the photos earlier runs moved out of the paths scanned now, by the path they were
    scanned under, -> where they are now; they stay in the plan, so a re-run moves nothing new."""
    if not args.move_picks:
        return {}
    from humanaes_core.culling import CullError, moved_photos

    try:
        moved = moved_photos(Path(args.move_picks).expanduser())
    except OSError as exc:
        raise CullError(f"{args.move_picks}: cannot read its move journal ({exc.strerror or exc})") from None
    found: dict[Path, Path] = {}
    for raw in args.paths:
        top = Path(raw).expanduser()
        base = Path(os.path.realpath(top))
        for then, now in moved.items():
            if then == base:
                found[top] = now
            elif then.is_relative_to(base) and (not args.no_recursive or then.parent == base):
                found[top / then.relative_to(base)] = now
    return found


@guard
def main(argv: list[str] | None = None) -> int:
    """humanaes-cull: keep the best photos, reject the rest, write XMP sidecars and copy the picks."""
    parser = _parser()
    args = parser.parse_args(argv)
    _split_presets(args)
    args.rules = check_rules(args)
    if args.keep_top is None and args.min_level is None and not args.rules.active:
        parser.error(
            "say what to keep: --keep-top, --min-level, and/or check rules (--reject, --preset KIND)"
        )
    check_outputs((args.export, "--export"))  # before scoring, sidecars, copies or moves
    _check_picks(args)
    with _picks_lock(args):
        return _cull(args)


def _cull(args: argparse.Namespace) -> int:
    """Scan, score, plan, then act on the plan (under --move-picks' lock)."""
    from humanaes_core.culling import export_cards, plan_cull
    from humanaes_core.formats import collect_photos

    files, skipped = collect_photos(args.paths, recursive=not args.no_recursive)
    moved = _moved_earlier(args)
    if not files and not moved:
        raise HumanAesError(f"no photos found in {', '.join(args.paths)}")
    errors: dict[str, str] = {s.path: s.reason for s in skipped}
    cards = _score(args, files + list(moved.values()), errors)
    if not cards:
        echo(f"none of the {count(len(files), 'photo')} could be scored:", err=True)
        for path, reason in errors.items():
            echo(f"  {path}: {reason}", err=True)
        return EXIT_FAILED

    groups = _bursts(args, list(cards)) if args.per == "burst" else None
    # the plan is over the whole shoot: photos moved by an earlier run compete where they were
    was = {now: then for then, now in moved.items()}
    plan = plan_cull(
        {was.get(p, p): card for p, card in cards.items()},
        keep_top_percent=args.keep_top,
        min_level=args.min_level,
        per=args.per,
        groups=[[was.get(p, p) for p in g] for g in groups] if groups is not None else None,
        rules=args.rules,
    )
    decisions = {moved.get(p, p): d for p, d in plan.items()}  # by where each photo is now
    n_keep = _print_plan(args.per, plan)
    _print_rejects(args, cards)
    if _refuse(args, plan):
        return EXIT_USAGE
    here = {p: d for p, d in plan.items() if p not in moved}  # moved ones took their sidecars along
    failed = _write_xmp(args, here) if args.write_xmp else False
    if args.copy_picks or args.move_picks:
        failed |= _deliver(args, plan, n_keep)
    if args.export:
        export_cards(cards, args.export, decisions=decisions, groups=groups, errors=errors, flag="--export")
        echo(f"wrote {args.export}")
    for path, reason in errors.items():
        echo(f"  skipped {path}: {reason}", err=True)
    if args.dry_run:
        echo("dry run: nothing written" + (f" but {args.export}" if args.export else ""))
    elif not (args.write_xmp or args.copy_picks or args.move_picks or args.export):
        echo("nothing saved (add --write-xmp, --export or --copy-picks)")
    echo(f"done in {elapsed():.1f}s", err=True)
    return EXIT_FAILED if failed else EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
