"""`humanaes-train`: two-stage fine-tuning (LoRA + heads, then the MetaVoter).

Public names are imported lazily (``humanaes_core._lazy``): importing the package costs nothing until a
name is used.
"""

from humanaes_core._lazy import lazy_exports

__all__ = [
    "TrainConfig",
    "Trainer",
    "TrainingInterrupted",
    "forget_accelerator_settings",
    "read_config_file",
    "train",
]

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "TrainConfig": "trainer",
        "Trainer": "trainer",
        "TrainingInterrupted": "trainer",
        "forget_accelerator_settings": "trainer",
        "read_config_file": "trainer",
        "train": "trainer",
    },
)
