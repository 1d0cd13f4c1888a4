"""Who made a decision: the photographer, an editor, or HumanAes itself; and which ones training may use.

Training learns the photographer's taste, so it must never learn from HumanAes's own output: an
auto-cull's picks and rejects are the model's opinion, and feeding them back would only teach the
model what it already thinks. Every decision therefore carries its origin, in the library database
(``store.PhotoDecision.origin``) and, when HumanAes writes it into a sidecar, inside the sidecar
(``formats.xmp``), so it is recognised again after a restart, on another machine or with the library
file lost:

- ``photographer``: set in HumanAes by the photographer (keys, menus);
- ``editor``: a rating found in XMP that HumanAes did not write (Lightroom, darktable, digiKam, Capture
  One, a camera), or one an editor changed after HumanAes wrote it;
- ``humanaes``: HumanAes decided (the app's auto-cull, ``humanaes-cull``).
"""

from __future__ import annotations

import enum

__all__ = ["LEGACY_ORIGINS", "TRAINABLE_ORIGINS", "Origin", "origin_of", "untrainable_reason"]


class Origin(enum.StrEnum):
    """Who made a decision (stored and written as its value)."""

    PHOTOGRAPHER = "photographer"
    EDITOR = "editor"
    HUMANAES = "humanaes"


#: The decisions a personal fine-tune learns from: people's, never HumanAes's own.
TRAINABLE_ORIGINS = frozenset({Origin.PHOTOGRAPHER, Origin.EDITOR})

#: What decisions schema 1 stored instead (``source``): "user" keys, "auto" auto-cull, "xmp" imported.
LEGACY_ORIGINS = {"user": Origin.PHOTOGRAPHER, "auto": Origin.HUMANAES, "xmp": Origin.EDITOR}


def origin_of(value: str | None, default: Origin = Origin.PHOTOGRAPHER) -> Origin:
    """An origin from what a database row, an undo step or a sidecar holds; schema-1 names are mapped
    (rows salvaged from an old damaged file keep them), anything unknown is `default`."""
    if value in LEGACY_ORIGINS:
        return LEGACY_ORIGINS[value]
    try:
        return Origin(value)
    except ValueError:
        return default


def untrainable_reason(origin: str, plan: str | None = None) -> str | None:
    """Why a decision of this origin is not trained on (None: it is): the words training reports."""
    if origin in TRAINABLE_ORIGINS:
        return None
    made = f" ({plan})" if plan else ""
    return f"decided by HumanAes{made}, not by you or an editor"
