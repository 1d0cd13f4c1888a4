"""The photo library on disk: content hashing, the SQLite base, migrations, cached scores and decisions.

Public names are imported lazily (``humanaes_core._lazy``): importing the package costs nothing until a
name is used.
"""

from humanaes_core._lazy import lazy_exports

__all__ = [
    "Change",
    "DecisionStore",
    "FileSignature",
    "Flag",
    "HashedFile",
    "PhotoDecision",
    "ScoreCache",
    "content_hash_file",
    "default_cache_path",
    "file_signature",
]

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "Change": "decisions",
        "DecisionStore": "decisions",
        "FileSignature": "cache",
        "Flag": "decisions",
        "HashedFile": "cache",
        "PhotoDecision": "decisions",
        "ScoreCache": "cache",
        "content_hash_file": "cache",
        "default_cache_path": "cache",
        "file_signature": "cache",
    },
)
