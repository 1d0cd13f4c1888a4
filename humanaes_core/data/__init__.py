"""Labelled photos for training and evaluation (HumanBeauty, CSV, rated folders) and synthetic sets.

samples (the data set, its labels fingerprint, the hold-out split), loaders (the three formats, read and
validated), qa (the paper's question/answer text for a sample), synthetic (a generated HumanBeauty root).
Torch-free.

Public names are imported lazily (``humanaes_core._lazy``): importing the package costs nothing until a
name is used.
"""

from humanaes_core._lazy import lazy_exports

__all__ = [
    "REJECT_SCORE",
    "STAR_SCORES",
    "DataError",
    "DataSet",
    "QAPair",
    "Sample",
    "build_qa",
    "load_csv",
    "load_data",
    "load_label_jsonl",
    "load_rated_folder",
    "parent_scores",
    "rating_score",
    "render",
    "split_train_val",
    "write_humanbeauty",
]

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "DataError": "samples",
        "DataSet": "samples",
        "QAPair": "qa",
        "REJECT_SCORE": "loaders",
        "STAR_SCORES": "loaders",
        "Sample": "samples",
        "build_qa": "qa",
        "load_csv": "loaders",
        "load_data": "loaders",
        "load_label_jsonl": "loaders",
        "load_rated_folder": "loaders",
        "parent_scores": "synthetic",
        "rating_score": "loaders",
        "render": "synthetic",
        "split_train_val": "samples",
        "write_humanbeauty": "synthetic",
    },
)
