"""The culling decisions the app makes, without Qt: what a key, auto-cull or an export does to which photos.

`CullingController` holds the rules the main window follows — a key acts on each selected file once
(identical files share one decision), a photo still being hashed cannot be decided yet, auto-cull
leaves the photographer's own decisions alone unless told otherwise, only decisions made here go into
sidecars — and says what happened in words. It knows the window only through `CullingView` and the
decision writer only through `DecisionWriter`, so it is tested with plain objects and a real
`DecisionStore`, no Qt, no event loop.

The store operations (`decide_op`, `auto_cull_op`) are plain functions of a `DecisionStore`: the
window's `culling.DecisionKeeper` runs them on its database thread, tests run them directly.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from humanaes_core.errors import HumanAesError
from humanaes_core.origins import TRAINABLE_ORIGINS, Origin
from humanaes_core.store import Change, Flag, PhotoDecision
from humanaes_core.wording import count

if TYPE_CHECKING:
    from humanaes_core.culling import CheckRules, CopyReport, Decision, SidecarEntry, SidecarReport
    from humanaes_core.store import DecisionStore

    from .cull_dialogs import CullParams
    from .photos import Photo

#: Decisions auto-cull leaves alone unless told otherwise, and the only ones "decided yourself" counts:
#: people's (made here, or in an editor and read from its sidecar), the ones training learns from.
#: HumanAes's own earlier decisions (auto-cull, humanaes-cull's sidecars) are always replaced.
OWN_ORIGINS = TRAINABLE_ORIGINS
ORIGIN_NAMES = {Origin.PHOTOGRAPHER: "you", Origin.HUMANAES: "auto-cull", Origin.EDITOR: "an editor"}
FLAG_WORDS = {Flag.PICK: "pick", Flag.REJECT: "reject", Flag.NONE: "unflag"}

#: A store write: run on the decisions thread with the change-feed revision the window has seen (None:
#: unknown), returns what changed. The new decisions are made from the current ones inside the write
#: (`DecisionStore.amend`), so what another window or machine set a moment ago is kept.
StoreOp = Callable[["DecisionStore", "int | None"], Any]


class CullingView(Protocol):
    """What the controller needs from the window."""

    def folder_photos(self) -> Sequence[Photo]:
        """Every photo of the open folder, shown or not."""
        ...

    def selected_photos(self) -> list[Photo]:
        """What the culling keys act on."""
        ...

    def bursts(self) -> list[list[Path]]:
        """The folder's bursts (two or more photos each)."""
        ...

    def finding_bursts(self) -> bool:
        """Whether the burst search of the open folder is still running."""
        ...

    def notice(self, text: str, msecs: int = 10000) -> None:
        """A short message for the photographer (the status bar)."""
        ...


class DecisionWriter(Protocol):
    """Where decisions go (`culling.DecisionKeeper`: in order, off the UI thread)."""

    def update(
        self,
        items: Sequence[tuple[str, Path]],
        description: str,
        fallback: Mapping[str, PhotoDecision] | None = None,
        **fields: Any,
    ) -> None: ...

    def auto_cull(
        self,
        plan: Sequence[tuple[str, Path, bool]],
        description: str,
        *,
        overwrite_manual: bool = False,
        fallback: Mapping[str, PhotoDecision] | None = None,
    ) -> None: ...

    def undo(self) -> None: ...

    def redo(self) -> None: ...


# ------------------------------------------------------------------------------ store operations


def decide_op(
    items: Sequence[tuple[str, Path]],
    description: str,
    fallback: Mapping[str, PhotoDecision],
    fields: Mapping[str, Any],
) -> StoreOp:
    """Set `fields` (stars, flag, label) of the (content hash, path) items as one undo step.

    A photo without a stored decision starts from `fallback` (its imported sidecar rating), so
    pressing P on a photo an editor rated 4 stars keeps the 4 stars; what HumanAes decided is not
    carried over (`PhotoDecision.by_photographer`).
    """
    items, fallback, fields = list(items), dict(fallback), dict(fields)

    def plan(current: dict[str, PhotoDecision]) -> list[tuple[str, Path, PhotoDecision]]:
        changes = []
        for content_hash, path in items:
            base = current.get(content_hash) or fallback.get(content_hash) or PhotoDecision()
            changes.append((content_hash, path, base.by_photographer(**fields)))
        return changes

    def op(store: DecisionStore, seen: int | None = None) -> list[Change]:
        return store.amend((h for h, _ in items), plan, description, seen=seen)

    return op


def auto_cull_op(
    plan: Sequence[tuple[str, Path, bool]],
    description: str,
    fallback: Mapping[str, PhotoDecision],
    *,
    overwrite_manual: bool,
) -> StoreOp:
    """Pick the keepers and reject the rest of (content hash, path, keep), as ONE undo step.

    Stars are kept; the flag is set as HumanAes's, with the plan `description`. The photographer's own
    decisions (`OWN_ORIGINS`) are left as they are unless `overwrite_manual`.
    """
    plan, fallback = list(plan), dict(fallback)

    def decide(current: dict[str, PhotoDecision]) -> list[tuple[str, Path, PhotoDecision]]:
        changes = []
        for content_hash, path, keep in plan:
            base = current.get(content_hash) or fallback.get(content_hash)
            if base is not None and base.origin in OWN_ORIGINS and not overwrite_manual:
                continue
            flag = Flag.PICK if keep else Flag.REJECT
            new = replace(base or PhotoDecision(), flag=flag, origin=Origin.HUMANAES, plan=description)
            changes.append((content_hash, path, new))
        return changes

    def op(store: DecisionStore, seen: int | None = None) -> list[Change]:
        return store.amend((h for h, _, _ in plan), decide, description, seen=seen)

    return op


# ------------------------------------------------------------------------------------- planning


def _level(photo: Photo) -> str | None:
    return None if photo.card is None else photo.card.level


def sidecar_entries(photos: Iterable[Photo]) -> list[SidecarEntry]:
    """The app's decisions as sidecar contents (`SidecarEntry.from_rating`). Photos without a decision
    made here are left out: their sidecar, if any, already says what the editor decided."""
    from humanaes_core.culling import SidecarEntry

    return [SidecarEntry.from_rating(p.path, p.decision, _level(p)) for p in photos if p.decision is not None]


def _decision_for_export(photo: Photo) -> Decision | None:
    from humanaes_core.culling import rated_decision

    rating = photo.rating
    who = "" if rating is None else ORIGIN_NAMES[rating.origin]
    return rated_decision(rating, level=_level(photo), overall=photo.overall, who=who)


def picks_plan(photos: Iterable[Photo]) -> dict[Path, Decision]:
    """The picked photos as keepers for `humanaes_core.culling.copy_picks`."""
    plan = {}
    for photo in photos:
        if photo.flag == Flag.PICK:
            decision = _decision_for_export(photo)
            if decision is not None:
                plan[photo.path] = decision
    return plan


def export_plan(
    photos: Iterable[Photo],
) -> tuple[dict[Path, Any], dict[Path, Decision], dict[str, str]]:
    """(cards, decisions, errors) for `humanaes_core.culling.export_cards`: every scored photo's card, the
    decision of each photo that has a flag or stars, and why skipped photos were skipped."""
    cards: dict[Path, Any] = {}
    decisions: dict[Path, Decision] = {}
    errors: dict[str, str] = {}
    for photo in photos:
        if photo.card is not None:
            cards[photo.path] = photo.card
            decision = _decision_for_export(photo)
            if decision is not None:
                decisions[photo.path] = decision
        elif photo.error is not None:
            errors[str(photo.path)] = photo.error
    return cards, decisions, errors


def cull_plan(
    photos: Iterable[Photo],
    *,
    keep_top_percent: float | None = None,
    min_level: str | None = None,
    per: str = "folder",
    groups: Sequence[Sequence[Path]] | None = None,
    rules: CheckRules | None = None,
) -> dict[Path, Decision]:
    """`humanaes_core.culling.plan_cull` over the scored photos (only their overall score, level, faces
    and checks are passed: converting 10,000 full cards to dicts would cost more than the ranking
    itself). `rules` reject closed eyes, missed focus and misfires whatever the score."""
    from humanaes_core.culling import plan_cull

    cards = {
        p.path: {
            "dims": {"overall": p.card.dims["overall"]},
            "level": p.card.level,
            "faces": p.card.faces,
            "checks": p.card.checks,
        }
        for p in photos
        if p.card is not None
    }
    if not cards:
        return {}
    return plan_cull(
        cards, keep_top_percent=keep_top_percent, min_level=min_level, per=per, groups=groups, rules=rules
    )


def check_rejected(photos: Iterable[Photo], rules: CheckRules) -> int:
    """How many scored photos the check rules reject (closed eyes, missed focus, misfire)."""
    from humanaes_core.culling import check_rejects

    if not rules.active:
        return 0
    return sum(1 for p in photos if p.card is not None and check_rejects(p.card, rules))


def _by_content(
    photos: Iterable[Photo],
) -> tuple[list[Photo], dict[str, PhotoDecision], int]:
    """Each file once (identical files share a decision), their editors' ratings by content hash, and
    how many photos are still being hashed (they cannot be decided yet)."""
    unique: list[Photo] = []
    fallback: dict[str, PhotoDecision] = {}
    seen: set[str] = set()
    waiting = 0
    for photo in photos:
        h = photo.content_hash
        if h is None:
            waiting += 1
            continue
        if h in seen:
            continue
        seen.add(h)
        unique.append(photo)
        if photo.xmp is not None:
            fallback[h] = photo.xmp
    return unique, fallback, waiting


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'s' if n != 1 else ''}"


def _cull_outcome(plan: Mapping[Path, Decision], manual: Sequence[Path], overwrite: bool) -> str:
    """What auto-cull would do, said once: the photos it changes, and the photographer's own that stay."""
    kept = sum(d.keep for d in plan.values())
    if not manual or overwrite:
        text = f"Of {len(plan)} scored photos, {kept} would be picked and {len(plan) - kept} rejected."
        if manual:
            text += f" This replaces {_plural(len(manual), 'decision')} of your own."
        return text
    own = set(manual)
    changed = [d for path, d in plan.items() if path not in own]
    if not changed:
        return f"All {len(plan)} scored photos have a decision of your own, which stays: nothing changes."
    picked = sum(d.keep for d in changed)
    stay = "stays as it is" if len(manual) == 1 else "stay as they are"
    return (
        f"Of {len(plan)} scored photos, {picked} would be picked and {len(changed) - picked} rejected; "
        f"{len(manual)} you decided yourself {stay}."
    )


class CullingController:
    """Pick, reject, stars, undo and redo on the selection; auto-cull; what to write, copy and export."""

    def __init__(self, view: CullingView, decisions: DecisionWriter) -> None:
        self.view = view
        self.decisions = decisions

    # -------------------------------------------------------------- decisions

    def decide(self, description: str, **fields: Any) -> None:
        """Set `fields` on the selected photos as one undo step."""
        unique, fallback, waiting = _by_content(self.view.selected_photos())
        if waiting:
            self.view.notice("This photo is still being read; try again in a moment.")
        if unique:
            items = [(p.content_hash, p.path) for p in unique if p.content_hash is not None]
            self.decisions.update(items, description, fallback, **fields)

    def set_flag(self, flag: Flag) -> None:
        """P / X / U."""
        self.decide(FLAG_WORDS[Flag(flag)], flag=Flag(flag))

    def set_stars(self, stars: int) -> None:
        """0–5; 0 clears the stars."""
        self.decide(_plural(stars, "star") if stars else "clear stars", stars=stars or None)

    def undo(self) -> None:
        self.decisions.undo()

    def redo(self) -> None:
        self.decisions.redo()

    @staticmethod
    def changes_text(changes: Sequence[Change], what: str, shown: bool) -> str | None:
        """The notice for decisions the store reports changed (`shown`: some are in the open folder)."""
        if not changes:
            return f"Nothing to {what}." if what in ("undo", "redo") else None
        n = len({c.content_hash for c in changes})
        text = f"{what[:1].upper()}{what[1:]}: {_plural(n, 'photo')}"
        return text if shown else text + " (in another folder)"

    # -------------------------------------------------------------- auto-cull

    def cull_groups(self, params: CullParams) -> list[list[Path]] | None:
        """The partitions of a per-burst cull (None: not per burst)."""
        if params.per != "burst":
            return None
        if self.view.finding_bursts():
            raise HumanAesError("bursts are still being found; try again in a moment, or rank per folder")
        return self.view.bursts()

    def _plan(self, params: CullParams, photos: Sequence[Photo]) -> dict[Path, Decision]:
        return cull_plan(
            photos,
            keep_top_percent=params.keep_top_percent,
            min_level=params.min_level,
            per=params.per,
            groups=self.cull_groups(params),
            rules=params.rules,
        )

    def preview_cull(self, params: CullParams, photos: Sequence[Photo] | None = None) -> tuple[str, bool]:
        """What auto-cull with these settings would do, in words; and whether it can be applied.

        `photos`: a snapshot to plan on (the dialog computes previews on a worker thread from one);
        default: the folder as it is now.
        """
        photos = list(self.view.folder_photos() if photos is None else photos)
        try:
            plan = self._plan(params, photos)
        except HumanAesError as e:
            return f"Cannot cull: {e}", False
        if not plan:
            return "No photo is scored yet: nothing to cull.", False
        by_path = {p.path: p for p in photos}
        manual = [
            path
            for path in plan
            if (rating := by_path[path].rating) is not None and rating.origin in OWN_ORIGINS
        ]
        text = _cull_outcome(plan, manual, params.overwrite_manual)
        flagged = check_rejected(photos, params.rules)
        if params.rules.active:
            text += (
                f" The checks reject {_plural(flagged, 'photo')} (closed eyes, missed focus or misfire)."
                if flagged
                else " The checks reject no photo."
            )
        unchecked = sum(1 for p in photos if p.card is not None and p.card.checks is None)
        if params.rules.active and unchecked:
            text += f" {_plural(unchecked, 'photo')} not checked yet: only the score decides for them."
        unscored = sum(1 for p in photos if p.card is None and p.error is None)
        if unscored:
            text += (
                f" {count(unscored, 'photo')} not scored yet {'is' if unscored == 1 else 'are'} left alone."
            )
        return text, True

    def cull_warning(self, params: CullParams, photos: Sequence[Photo] | None = None) -> str | None:
        """The sentence humanaes-cull refuses without --yes (`humanaes_core.culling.plan_warning`): the
        plan rejects everything or nearly everything. None when it does not (or cannot be planned)."""
        from humanaes_core.culling import plan_warning

        try:
            plan = self._plan(params, list(self.view.folder_photos() if photos is None else photos))
        except HumanAesError:
            return None
        warning = plan_warning(plan)
        return None if warning is None else warning[0].upper() + warning[1:] + "."

    def apply_auto_cull(self, params: CullParams) -> None:
        """Pick the keepers, reject the rest: one undo step; the photographer's own decisions stay unless
        `params.overwrite_manual`."""
        photos = self.view.folder_photos()
        try:
            plan = self._plan(params, photos)
        except HumanAesError as e:
            self.view.notice(f"Auto-cull: {e}")
            return
        by_path = {p.path: p for p in photos}
        unique, fallback, _ = _by_content(by_path[path] for path in plan)
        items = [(p.content_hash, p.path, plan[p.path].keep) for p in unique if p.content_hash is not None]
        if items:
            self.decisions.auto_cull(
                items, params.describe(), overwrite_manual=params.overwrite_manual, fallback=fallback
            )

    # -------------------------------------------------------------- what to write, copy and export

    def sidecar_entries(self) -> list[SidecarEntry]:
        return sidecar_entries(self.view.folder_photos())

    @staticmethod
    def sidecar_summary(entries: Sequence[SidecarEntry]) -> str:
        """What Write XMP sidecars would write, for its dialog."""
        picks = sum(1 for e in entries if e.pick)
        rejects = sum(1 for e in entries if e.rejected)
        return (
            f"{count(len(entries), 'photo')} with decisions made in HumanAes: {picks} picked, "
            f"{rejects} rejected, "
            f"{len(entries) - picks - rejects} rated or cleared. "
            "Photos you have not decided here are left alone."
        )

    @staticmethod
    def sidecars_written(report: SidecarReport) -> tuple[str, list[tuple[str, str]]]:
        """The notice after writing sidecars, and the (path, reason) of each failure for Skipped files."""
        n = len(set(report.written))
        text = f"Wrote {_plural(n, 'XMP sidecar')} for {report.photos} photos"
        failures = [(str(path), f"sidecar not written: {reason}") for path, reason in report.failed]
        if report.failed:
            text += f"; {len(report.failed)} could not be written (see Skipped files)"
        return text + ".", failures

    def picks(self) -> dict[Path, Decision]:
        return picks_plan(self.view.folder_photos())

    @staticmethod
    def picks_copied(report: CopyReport, dest: Path, move: bool) -> tuple[str, list[tuple[str, str]]]:
        """The notice after copying or moving picks, and the failures for Skipped files."""
        text = f"{'Moved' if move else 'Copied'} {count(len(report.copied), 'pick')} to {dest}"
        if report.already_there:
            text += f" ({len(report.already_there)} already there)"
        failures = [
            (str(path), f"not {'moved' if move else 'copied'}: {reason}") for path, reason in report.failed
        ]
        if report.failed:
            text += f"; {len(report.failed)} failed (see Skipped files)"
        return text + ".", failures

    def export_plan(self) -> tuple[dict[Path, Any], dict[Path, Decision], dict[str, str]]:
        return export_plan(self.view.folder_photos())
