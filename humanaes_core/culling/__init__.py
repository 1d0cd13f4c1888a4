"""Culling: auto-cull plans, bursts, sidecars, copying and moving picks, exports.

Public names are imported lazily (``humanaes_core._lazy``): importing the package costs nothing until a
name is used.
"""

from humanaes_core._lazy import lazy_exports

__all__ = [
    "DEFAULT_MAX_GAP_S",
    "DEFAULT_MAX_HAMMING",
    "Decision",
    "capture_time",
    "copy_picks",
    "export_cards",
    "fingerprint",
    "group_photos",
    "level_stars",
    "plan_cull",
    "write_sidecars",
]

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "DEFAULT_MAX_GAP_S": "bursts",
        "DEFAULT_MAX_HAMMING": "bursts",
        "Decision": "plan",
        "capture_time": "bursts",
        "copy_picks": "plan",
        "export_cards": "plan",
        "fingerprint": "bursts",
        "group_photos": "bursts",
        "level_stars": "plan",
        "plan_cull": "plan",
        "write_sidecars": "plan",
    },
)
