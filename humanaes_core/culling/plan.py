"""Auto-cull plans: turn score cards into keep/reject decisions, and decisions into stars and labels.

``plan_cull`` ranks photos inside each partition (a folder, a burst, or everything) and keeps the top
P % and/or everything at or above a level. Keepers get a star rating from their level (bad 1 ...
excellent 5); rejects get ``xmp:Rating -1`` when written out. The plan is only data: the desktop app
shows it for review (and stores overrides in ``decisions``), ``humanaes-cull`` applies it directly.

The rules every culling path shares live here too, so that the app and ``humanaes-cull`` cannot
disagree: the stars a pick without stars is rated with (``keeper_stars``), the colour label a keeper
gets and a reject loses (``keeper_label_for``), and a photographer's own decision as a plan
``Decision`` (``rated_decision``). Acting on a plan: ``sidecars``, ``actions`` (copy or move the
picks), ``export``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from humanaes_core.culling.rules import CheckRules, check_rejects, frame_key
from humanaes_core.errors import HumanAesError
from humanaes_core.schema import LEVELS, level_to_index, score_to_level

if TYPE_CHECKING:
    from humanaes_core.store import PhotoDecision

__all__ = [
    "PARTITIONS",
    "CullError",
    "Decision",
    "card_dict",
    "describe_plan",
    "keeper_label_for",
    "keeper_stars",
    "level_stars",
    "plan_cull",
    "plan_warning",
    "rated_decision",
]

PARTITIONS = ("folder", "burst", "all")
#: A plan that rejects more than this share of the photos is shown with a warning before it is applied.
REJECT_WARNING_SHARE = 0.9


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


def keeper_stars(stars: int | None, level: str | None) -> int | None:
    """The stars a keeper is rated with: the photographer's own, else what its level is worth; None for
    an unscored photo without stars. A pick says "keep"; its score says how good."""
    return stars or (level_stars(level) if level else None)


def keeper_label_for(
    keep: bool | None, keeper_label: str | None, current: Callable[[], str | None]
) -> str | None:
    """The colour label to write for a photo culled with `keeper_label`, in ``write_decision``'s terms
    (None: leave it as it is, "": remove it, a name: set it).

    A keeper (`keep` True) gets it; a reject (False) loses it when it is the keeper label an earlier run
    gave it (`current()` reads the label it has now, only then), so that re-running a cull with another
    threshold leaves consistent labels. A photo neither kept nor rejected (None) keeps its label.
    """
    if not keeper_label or keep is None:
        return None
    if keep:
        return keeper_label
    now = current()
    return "" if now is not None and now.lower() == keeper_label.lower() else None


def rated_decision(
    rating: PhotoDecision | None, *, level: str | None, overall: float | None, who: str
) -> Decision | None:
    """A photographer's decision (a ``store.PhotoDecision`` set by `who`) as a plan ``Decision``, for
    copying picks and exporting; None when it says nothing (no flag, no stars). Rejects are not kept;
    picks and rated photos are, with their stars, else their level's (``keeper_stars``)."""
    if rating is None or not (rating.picked or rating.rejected or rating.stars):
        return None
    stars = keeper_stars(rating.stars, level) or 0
    what = "rejected" if rating.rejected else "picked" if rating.picked else f"{stars} stars"
    return Decision(
        keep=not rating.rejected,
        stars=stars,
        reason=f"{what} ({who})",
        overall=overall or 0.0,
        level=level or "",
    )


def card_dict(card: Any) -> dict:
    """A ScoreCard or its dict, as the dict."""
    return card if isinstance(card, Mapping) else card.to_dict()


def _overall_and_level(card: Any) -> tuple[float, str]:
    data = card_dict(card)
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


def describe_plan(
    keep_top_percent: float | None = None, min_level: str | None = None, per: str = "folder"
) -> str:
    """A plan in words ("keep top 30% per folder", "keep good and better per burst"): what the app's
    undo history says and what a sidecar HumanAes decided records as ``humanaes:Plan``."""
    keep = [f"top {keep_top_percent:g}%"] if keep_top_percent is not None else []
    if min_level is not None:
        keep.append(f"{min_level} and better")
    where = "across all photos" if per == "all" else f"per {per}"
    return f"keep {' and '.join(keep) or 'everything'} {where}"


def plan_cull(
    cards_by_path: Mapping[str | os.PathLike[str], Any],
    *,
    keep_top_percent: float | None = None,
    min_level: str | None = None,
    per: str = "folder",
    groups: Sequence[Sequence[str | os.PathLike[str]]] | None = None,
    rules: CheckRules | None = None,
) -> dict[Path, Decision]:
    """Decide keep/reject for every scored photo (ScoreCards or their dicts, keyed by path).

    Within each partition (``per``: "folder", "burst" with ``groups`` from ``grouping.group_photos``,
    or "all") photos are ranked by overall score (ties by path). ``keep_top_percent`` keeps the best
    P % rounded up, so every partition keeps at least one photo (a burst of 5 at 20 % keeps its best
    frame); ``min_level`` keeps photos at or above that level. Given both, a photo must pass both.

    ``rules`` (``CheckRules``) also reject photos the checks flag (closed eyes, missed focus, misfires),
    whatever their score; they are ranked after the photos no rule rejects, so that the top P % goes
    to usable frames. Inside a burst, frames rank by ``rules.frame_key`` (open, sharp eyes before the
    aesthetic score) instead of the score alone. Rules alone, without a percentage or level, are a
    valid plan: it keeps everything they do not reject.
    """
    active = rules is not None and rules.active
    if keep_top_percent is None and min_level is None and not active:
        raise CullError("say what to keep: a top percentage, a minimum level, check rules, or a mix")
    if keep_top_percent is not None and not 0 < keep_top_percent <= 100:
        raise CullError(f"the top percentage must be in (0, 100], got {keep_top_percent}")
    if min_level is not None and min_level not in LEVELS:
        raise CullError(f"unknown level {min_level!r}; levels are {', '.join(LEVELS)}")
    if per not in PARTITIONS:
        raise CullError(f"cannot cull per {per!r}; choose one of {', '.join(PARTITIONS)}")

    cards = {Path(p): card for p, card in cards_by_path.items()}
    scores = {p: _overall_and_level(card) for p, card in cards.items()}
    rejects = {p: check_rejects(card, rules) if active else [] for p, card in cards.items()}
    floor = level_to_index(min_level) if min_level is not None else None
    decisions: dict[Path, Decision] = {}
    for label, members in _partitions(list(scores), per, groups):
        if per == "burst" and len(members) > 1:
            ranked = sorted(members, key=lambda p: (bool(rejects[p]), frame_key(cards[p]), str(p)))
        else:
            ranked = sorted(members, key=lambda p: (bool(rejects[p]), -scores[p][0], str(p)))
        n = len(ranked)
        n_top = math.ceil(n * keep_top_percent / 100 - 1e-9) if keep_top_percent is not None else n
        for rank, path in enumerate(ranked, start=1):
            overall, level = scores[path]
            in_top = rank <= n_top
            high_enough = floor is None or level_to_index(level) >= floor
            why: list[str] = list(rejects[path])
            if keep_top_percent is not None:
                share = f"top {keep_top_percent:g}%"
                why.append(f"#{rank} of {n}, {'in' if in_top else 'outside'} the {share}")
            if floor is not None:
                why.append(f"{level}, {'at or above' if high_enough else 'below'} {min_level}")
            decisions[path] = Decision(
                keep=in_top and high_enough and not rejects[path],
                stars=level_stars(level),
                reason="; ".join(why),
                overall=overall,
                level=level,
                group=label,
                group_size=n,
            )
    return decisions


def plan_warning(decisions: Mapping[Any, Decision]) -> str | None:
    """One sentence when a plan rejects everything or nearly everything (more than
    `REJECT_WARNING_SHARE`), else None: usually a threshold above what the model gives these photos
    (``--min-level good`` on a shoot it scores fair), and applied it would mark every photo a reject.
    ``humanaes-cull`` refuses such a plan without --yes; the app's auto-cull dialog shows the sentence."""
    total = len(decisions)
    rejected = sum(not d.keep for d in decisions.values())
    if not total or rejected <= REJECT_WARNING_SHARE * total:
        return None
    share = f"all {total}" if rejected == total else f"{rejected} of {total}"
    best = max(decisions.values(), key=lambda d: d.overall)
    return (
        f"this plan rejects {share} {'photo' if total == 1 else 'photos'} (the best scores "
        f"{best.overall:.2f}, {best.level or 'unrated'}): check the threshold"
    )
