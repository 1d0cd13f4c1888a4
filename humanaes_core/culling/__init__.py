"""Culling: auto-cull plans, bursts, sidecars, copying and moving picks, exports.

``plan`` decides (and holds the rules both culling paths share: keeper stars and labels), ``bursts``
groups near-identical frames, ``sidecars`` writes decisions where editors read them, ``actions``
copies or moves the picks (``moves``: the journal and folder locks that make a move survive kill -9),
``export`` writes the cards with their decisions, ``rules`` rejects closed eyes, missed focus and
misfires (``CheckRules``, ``SHOOT_PRESETS``) and orders the frames of a burst. ``humanaes-cull`` and
the desktop app both go through these.

Public names are imported lazily (``humanaes_core._lazy``): importing the package costs nothing until a
name is used.
"""

from humanaes_core._lazy import lazy_exports

__all__ = [
    "CHECK_RULE_NAMES",
    "DECISION_COLUMNS",
    "DEFAULT_MAX_GAP_S",
    "DEFAULT_MAX_HAMMING",
    "PARTITIONS",
    "SHOOT_PRESETS",
    "CheckRules",
    "CopyReport",
    "CullError",
    "Decision",
    "SidecarEntry",
    "SidecarReport",
    "best_of",
    "capture_time",
    "card_checks",
    "check_destination",
    "check_rejects",
    "copy_picks",
    "describe_plan",
    "export_cards",
    "folder_lock",
    "frame_key",
    "group_photos",
    "keeper_label_for",
    "keeper_stars",
    "level_stars",
    "moved_photos",
    "photo_fingerprint",
    "plan_cull",
    "plan_warning",
    "rated_decision",
    "recover_moves",
    "write_sidecar_entries",
    "write_sidecars",
]

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "DECISION_COLUMNS": "export",
        "CHECK_RULE_NAMES": "rules",
        "SHOOT_PRESETS": "rules",
        "CheckRules": "rules",
        "best_of": "bursts",
        "card_checks": "rules",
        "check_rejects": "rules",
        "frame_key": "rules",
        "DEFAULT_MAX_GAP_S": "bursts",
        "DEFAULT_MAX_HAMMING": "bursts",
        "PARTITIONS": "plan",
        "CopyReport": "actions",
        "CullError": "plan",
        "Decision": "plan",
        "SidecarEntry": "sidecars",
        "SidecarReport": "sidecars",
        "capture_time": "bursts",
        "check_destination": "actions",
        "copy_picks": "actions",
        "describe_plan": "plan",
        "export_cards": "export",
        "folder_lock": "moves",
        "moved_photos": "moves",
        "recover_moves": "moves",
        "photo_fingerprint": "bursts",
        "group_photos": "bursts",
        "keeper_label_for": "plan",
        "keeper_stars": "plan",
        "level_stars": "plan",
        "plan_cull": "plan",
        "plan_warning": "plan",
        "rated_decision": "plan",
        "write_sidecar_entries": "sidecars",
        "write_sidecars": "sidecars",
    },
)
