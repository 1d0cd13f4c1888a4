"""The photo library: content hashing, the SQLite and PostgreSQL bases, migrations, cached scores and
decisions.

One library, the file ``library.sqlite`` (``default_library_path``) or a shared PostgreSQL database
named by its URL, holds the score cache, the photo checks (``CheckStore``) and the photographer's
decisions with their undo history. Public names are imported lazily (``humanaes_core._lazy``):
importing the package costs nothing until a name is used.
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
    "Feed",
    "FileSignature",
    "Flag",
    "HashedFile",
    "LibraryOfflineError",
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
        "Feed": "decisions",
        "FileSignature": "hashing",
        "Flag": "decisions",
        "HashedFile": "hashing",
        "LibraryOfflineError": "errors",
        "PhotoDecision": "decisions",
        "ScoreCache": "scores",
        "content_hash_file": "hashing",
        "default_library_path": "location",
        "file_signature": "hashing",
    },
)
