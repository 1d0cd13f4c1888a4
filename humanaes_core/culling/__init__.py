"""Culling: auto-cull plans, bursts, sidecars, copying and moving picks, exports.

``plan`` decides (and holds the rules both culling paths share: keeper stars and labels), ``bursts``
groups near-identical frames, ``sidecars`` writes decisions where editors read them, ``actions``
copies or moves the picks, ``export`` writes the cards with their decisions. ``humanaes-cull`` and the
desktop app both go through these.

Public names are imported lazily (``humanaes_core._lazy``): importing the package costs nothing until a
name is used.
"""

from humanaes_core._lazy import lazy_exports

__all__ = [
    "DECISION_COLUMNS",
    "DEFAULT_MAX_GAP_S",
    "DEFAULT_MAX_HAMMING",
    "PARTITIONS",
    "CopyReport",
    "CullError",
    "Decision",
    "SidecarEntry",
    "SidecarReport",
    "capture_time",
    "copy_picks",
    "export_cards",
    "group_photos",
    "keeper_label_for",
    "keeper_stars",
    "level_stars",
    "photo_fingerprint",
    "plan_cull",
    "rated_decision",
    "write_sidecar_entries",
    "write_sidecars",
]

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "DECISION_COLUMNS": "export",
        "DEFAULT_MAX_GAP_S": "bursts",
        "DEFAULT_MAX_HAMMING": "bursts",
        "PARTITIONS": "plan",
        "CopyReport": "actions",
        "CullError": "plan",
        "Decision": "plan",
        "SidecarEntry": "sidecars",
        "SidecarReport": "sidecars",
        "capture_time": "bursts",
        "copy_picks": "actions",
        "export_cards": "export",
        "photo_fingerprint": "bursts",
        "group_photos": "bursts",
        "keeper_label_for": "plan",
        "keeper_stars": "plan",
        "level_stars": "plan",
        "plan_cull": "plan",
        "rated_decision": "plan",
        "write_sidecar_entries": "sidecars",
        "write_sidecars": "sidecars",
    },
)
