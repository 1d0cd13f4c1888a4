"""`humanaes-import`: released InternVL-layout HumanAesExpert checkpoints into the native format.

Public names are imported lazily (``humanaes_core._lazy``): importing the package costs nothing until a
name is used.
"""

from humanaes_core._lazy import lazy_exports

__all__ = [
    "ImportFailure",
    "ImportReport",
    "import_checkpoint",
    "looks_like_original",
    "plan_import",
]

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "ImportFailure": "convert",
        "ImportReport": "convert",
        "import_checkpoint": "convert",
        "looks_like_original": "convert",
        "plan_import": "convert",
    },
)
