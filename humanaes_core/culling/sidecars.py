"""Writing culling decisions into XMP sidecars, where Lightroom Classic, darktable and digiKam read them.

One writer for both culling paths: ``humanaes-cull --write-xmp`` hands it a plan (``write_sidecars``),
the desktop app the decisions made there (``SidecarEntry.from_rating``). Each entry is merged into the
photo's sidecar(s) by ``formats.write_decision`` with who decided (a plan's decisions are HumanAes's,
recorded with the plan, so they are never read back as the photographer's); the keeper label follows
``plan.keeper_label_for``. A failure is reported per photo and the others are still written.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from humanaes_core.culling.plan import Decision, keeper_label_for, keeper_stars
from humanaes_core.formats import XmpError, existing_sidecars, read_rating, write_decision
from humanaes_core.origins import Origin

if TYPE_CHECKING:
    import os

    from humanaes_core.store import PhotoDecision

__all__ = ["SidecarEntry", "SidecarReport", "write_sidecar_entries", "write_sidecars"]


@dataclass(frozen=True)
class SidecarEntry:
    """What goes into one photo's sidecar: stars (None: unrated), reject, pick (digiKam's "accepted";
    None: not flagged), a label of its own (None: none given), who decided and HumanAes's plan."""

    path: Path
    stars: int | None
    rejected: bool
    pick: bool | None
    label: str | None = None
    origin: Origin = Origin.PHOTOGRAPHER
    plan: str | None = None

    @classmethod
    def from_decision(
        cls, path: str | os.PathLike[str], decision: Decision, plan: str | None = None
    ) -> SidecarEntry:
        """A plan's decision, HumanAes's: a keeper rated with its stars, or a reject (Rating -1)."""
        if decision.keep:
            return cls(Path(path), decision.stars, False, True, origin=Origin.HUMANAES, plan=plan)
        return cls(Path(path), None, True, False, origin=Origin.HUMANAES, plan=plan)

    @classmethod
    def from_rating(
        cls, path: str | os.PathLike[str], rating: PhotoDecision, level: str | None
    ) -> SidecarEntry:
        """A photographer's decision: stars as they were set, a pick without stars rated from its
        `level` (``keeper_stars``), rejects Rating -1, its own label."""
        stars = keeper_stars(rating.stars, level) if rating.picked else rating.stars or None
        pick = True if rating.picked else None
        return cls(Path(path), stars, rating.rejected, pick, rating.label, rating.origin, rating.plan)

    @property
    def empty(self) -> bool:
        """Says nothing: no stars, no flag, no label."""
        return self.stars is None and not self.rejected and not self.pick and self.label is None

    @property
    def keep(self) -> bool | None:
        """True for a pick, False for a reject, None for neither (rated or cleared)."""
        return False if self.rejected else True if self.pick else None


@dataclass
class SidecarReport:
    """What a sidecar run did: photos written, the sidecars they are in (a photo with both name.xmp and
    name.ext.xmp has two), photos skipped, photos whose sidecar could not be written and why."""

    photos: int = 0
    written: list[Path] = field(default_factory=list)
    skipped: int = 0  # nothing to say and no sidecar yet: no empty sidecar is made
    failed: list[tuple[Path, str]] = field(default_factory=list)


def _write_entry(entry: SidecarEntry, convention: str, keeper_label: str | None, digikam: bool) -> list[Path]:
    label = entry.label
    if label is None:
        label = keeper_label_for(entry.keep, keeper_label, lambda: read_rating(entry.path).label)
    return write_decision(
        entry.path,
        entry.stars,
        entry.rejected,
        label,
        pick=entry.pick,
        convention=convention,
        digikam=digikam,
        origin=entry.origin,
        plan=entry.plan,
    )


def write_sidecar_entries(
    entries: Sequence[SidecarEntry],
    convention: str = "auto",
    keeper_label: str | None = None,
    *,
    digikam: bool = True,
    progress: Callable[[int, int], None] | None = None,
) -> SidecarReport:
    """Merge each entry into its photo's sidecar(s) (``formats.write_decision``).

    `keeper_label` colours picks without a label of their own and is taken off rejects that carry it
    from an earlier run (``keeper_label_for``). An entry that says nothing is skipped unless the photo
    already has a sidecar. `progress(done, total)` is called after each photo.
    """
    report = SidecarReport()
    for n, entry in enumerate(entries, start=1):
        try:
            if entry.empty and not existing_sidecars(entry.path):
                report.skipped += 1
            else:
                report.written += _write_entry(entry, convention, keeper_label, digikam)
                report.photos += 1
        except (XmpError, OSError, ValueError) as exc:
            report.failed.append((entry.path, str(exc)))
        if progress is not None:
            progress(n, len(entries))
    return report


def write_sidecars(
    decisions: Mapping[Path, Decision],
    convention: str = "auto",
    *,
    label: str | None = None,
    digikam: bool = True,
    plan: str | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> SidecarReport:
    """Merge a plan into the photos' XMP sidecars: keepers get their stars (and `label`, if given),
    rejects get Rating -1 and lose `label` when a previous run gave it to them. Every entry is marked as
    HumanAes's decision with `plan` (the plan in words, ``describe_plan``)."""
    entries = [SidecarEntry.from_decision(photo, decision, plan) for photo, decision in decisions.items()]
    return write_sidecar_entries(entries, convention, label, digikam=digikam, progress=progress)
