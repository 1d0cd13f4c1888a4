"""Scoring photos into score cards, with the cache: `load_scorer`, `Scorer`, `CachedScoring`.

Public names are imported lazily (``humanaes_core._lazy``): importing the package costs nothing until a
name is used.
"""

from humanaes_core._lazy import lazy_exports

__all__ = [
    "PRESETS",
    "CachedScoring",
    "DecodedPhoto",
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
        "CachedScoring": "scan",
        "DecodedPhoto": "scorer",
        "PRESETS": "scorer",
        "ScoreCard": "scorer",
        "ScoreResult": "scorer",
        "Scorer": "scorer",
        "decode_stream": "scorer",
        "load_scorer": "scorer",
        "resolve_max_tiles": "scorer",
        "tile_config_for": "scorer",
    },
)
