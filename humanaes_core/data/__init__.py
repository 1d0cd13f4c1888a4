"""Labelled photos for training and evaluation (HumanBeauty, CSV, rated folders) and synthetic sets.

Public names are imported lazily (``humanaes_core._lazy``): importing the package costs nothing until a
name is used.
"""

from humanaes_core._lazy import lazy_exports

__all__ = [
    "REJECT_SCORE",
    "STAR_SCORES",
    "DataError",
    "DataSet",
    "Sample",
    "build_qa",
    "load_data",
    "parent_scores",
    "render",
    "split_train_val",
    "write_humanbeauty",
]

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "DataError": "loaders",
        "DataSet": "loaders",
        "REJECT_SCORE": "loaders",
        "STAR_SCORES": "loaders",
        "Sample": "loaders",
        "build_qa": "loaders",
        "load_data": "loaders",
        "parent_scores": "synthetic",
        "render": "synthetic",
        "split_train_val": "loaders",
        "write_humanbeauty": "synthetic",
    },
)
