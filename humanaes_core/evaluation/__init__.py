"""The paper's evaluation metrics (Tables 2 and 3), standard and paper-compatible.

Public names are imported lazily (``humanaes_core._lazy``): importing the package costs nothing until a
name is used.
"""

from humanaes_core._lazy import lazy_exports

__all__ = [
    "evaluate",
    "evaluate_samples",
    "json_safe",
    "table2",
    "table3",
    "write_csv",
]

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "evaluate": "metrics",
        "evaluate_samples": "metrics",
        "json_safe": "metrics",
        "table2": "metrics",
        "table3": "metrics",
        "write_csv": "metrics",
    },
)
