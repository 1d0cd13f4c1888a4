"""Scoring photos into score cards, with the cache: `load_scorer`, `Scorer`, `CachedScoring`, and
`RayScoring` on a Ray cluster.

Public names are imported lazily (``humanaes_core._lazy``): importing the package costs nothing until a
name is used.
"""

from humanaes_core._lazy import lazy_exports

__all__ = [
    "ALL_PRESETS",
    "DEFAULT_PRESET",
    "PRESETS",
    "RELEASE_PRESET",
    "CachedScoring",
    "DecodedPhoto",
    "Preset",
    "RayScoring",
    "ScoreCard",
    "ScoreResult",
    "Scorer",
    "decode_stream",
    "load_scorer",
    "resolve_max_tiles",
    "tile_config_for",
]

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "ALL_PRESETS": "presets",
        "RELEASE_PRESET": "presets",
        "CachedScoring": "scan",
        "DecodedPhoto": "scorer",
        "PRESETS": "presets",
        "Preset": "presets",
        "RayScoring": "distributed",
        "DEFAULT_PRESET": "presets",
        "ScoreCard": "scorer",
        "ScoreResult": "scorer",
        "Scorer": "scorer",
        "decode_stream": "scorer",
        "load_scorer": "scorer",
        "resolve_max_tiles": "presets",
        "tile_config_for": "scorer",
    },
)
