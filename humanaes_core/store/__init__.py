"""The photo library on disk: content hashing, the SQLite base, migrations, cached scores and decisions.

One file, ``library.sqlite`` (``default_library_path``), holds the score cache, the photo checks
(``CheckStore``) and the photographer's decisions with their undo history. Public names are imported
lazily (``humanaes_core._lazy``): importing the package costs nothing until a name is used.
"""

from humanaes_core._lazy import lazy_exports

__all__ = [
    "CacheBusyError",
    "CacheUnavailableError",
    "CacheVersionError",
    "Change",
    "CheckStore",
    "DecisionStore",
    "DecisionsVersionError",
    "FileSignature",
    "Flag",
    "HashedFile",
    "PhotoDecision",
    "ScoreCache",
    "content_hash_file",
    "default_library_path",
    "file_signature",
]

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "CacheBusyError": "errors",
        "CacheUnavailableError": "errors",
        "CacheVersionError": "errors",
        "Change": "decisions",
        "CheckStore": "checks",
        "DecisionStore": "decisions",
        "DecisionsVersionError": "errors",
        "FileSignature": "hashing",
        "Flag": "decisions",
        "HashedFile": "hashing",
        "PhotoDecision": "decisions",
        "ScoreCache": "scores",
        "content_hash_file": "hashing",
        "default_library_path": "location",
        "file_signature": "hashing",
    },
)
