"""`humanaes-train`: two-stage fine-tuning (LoRA + heads, then the MetaVoter).

config (settings and config files, torch-free), dataset (what the model is fed), stage1 (LoRA + heads,
Eq. 7), stage2 (the MetaVoter, Eq. 6), trainer (the run: loop, resume, stop, checkpoint).

Public names are imported lazily (``humanaes_core._lazy``): importing the package costs nothing until a
name is used, and `TrainConfig` comes without torch.
"""

from humanaes_core._lazy import lazy_exports

__all__ = [
    "TrainConfig",
    "TrainResult",
    "Trainer",
    "TrainingInterrupted",
    "forget_accelerator_settings",
    "read_config_file",
    "train",
]

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "TrainConfig": "config",
        "TrainResult": "trainer",
        "Trainer": "trainer",
        "TrainingInterrupted": "trainer",
        "forget_accelerator_settings": "trainer",
        "read_config_file": "config",
        "train": "trainer",
    },
)
