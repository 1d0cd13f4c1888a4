"""A checkpoint's description, readable without torch: humanaes.json and the checkpoint's file names.

`CheckpointMeta` is everything `load_scorer(dir)` needs besides the weights: the heads' sizes, the
prompt template, the preprocessing the backbone was trained with (tile size, thumbnail, mean/std) and
provenance. Reading it costs a JSON parse, so listing models, cached rescans and the app's model
picker never import torch.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

from humanaes_core.errors import CheckpointError
from humanaes_core.model.prompts import PromptConfig

FORMAT = "humanaes-checkpoint"
FORMAT_VERSION = 1
META_FILE = "humanaes.json"
MANIFEST_FILE = "manifest.json"
HEADS_FILE = "heads.safetensors"
ADAPTER_DIR = "adapter"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
#: ImageNet normalisation, what InternVL's vision tower was trained with (the checkpoint may say otherwise).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


#: Activations an expert-head FFN may use (humanaes.json's heads.expert_activation).
EXPERT_ACTIVATIONS: tuple[str, ...] = ("gelu", "relu", "silu", "tanh")


@dataclass
class HeadsConfig:
    """Sizes of the heads; stored in the checkpoint so it loads without guessing."""

    hidden_size: int
    expert_ffn_hidden: int = 64
    expert_activation: str = "gelu"
    metavoter_hidden: int = 16
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> HeadsConfig:
        return cls(**data)


@dataclass
class ImageConfig:
    """Preprocessing the backbone was trained with (DESIGN section 4)."""

    image_size: int = 448
    max_tiles: int = 12
    use_thumbnail: bool = True
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD


@dataclass
class CheckpointMeta:
    """Contents of humanaes.json."""

    heads: HeadsConfig
    prompt: PromptConfig = field(default_factory=PromptConfig)
    image: ImageConfig = field(default_factory=ImageConfig)
    name: str = "HumanAesExpert"
    provenance: dict = field(default_factory=dict)  # where the weights came from; training config etc.

    def to_json(self) -> dict:
        return {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "name": self.name,
            "heads": self.heads.to_dict(),
            "prompt": self.prompt.to_dict(),
            "image": asdict(self.image),
            "provenance": self.provenance,
        }

    @classmethod
    def from_json(cls, data: dict, where: Path) -> CheckpointMeta:
        if data.get("format") != FORMAT:
            raise CheckpointError(f"{where}: not a HumanAes checkpoint (format {data.get('format')!r})")
        if int(data.get("format_version", 0)) > FORMAT_VERSION:
            raise CheckpointError(
                f"{where}: checkpoint format version {data['format_version']} is newer than this HumanAes "
                f"supports ({FORMAT_VERSION}); update HumanAes"
            )
        image = dict(data.get("image", {}))
        for k in ("mean", "std"):
            if k in image:
                image[k] = tuple(image[k])
        return cls(
            heads=HeadsConfig.from_dict(data["heads"]),
            prompt=PromptConfig.from_dict(data.get("prompt", {})),
            image=ImageConfig(**image),
            name=data.get("name", "HumanAesExpert"),
            provenance=data.get("provenance", {}),
        )


def is_checkpoint(path: str | os.PathLike) -> bool:
    """Whether `path` is a native checkpoint directory (it has humanaes.json)."""
    return (Path(path) / META_FILE).is_file()


def read_meta(path: str | os.PathLike) -> CheckpointMeta:
    """The checkpoint's humanaes.json, validated (format and version)."""
    path = Path(path)
    try:
        data = json.loads((path / META_FILE).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CheckpointError(
            f"{path}: no {META_FILE}; this is not a HumanAes checkpoint directory"
        ) from None
    except (OSError, ValueError) as e:
        raise CheckpointError(f"{path}/{META_FILE} is unreadable: {e}") from None
    return CheckpointMeta.from_json(data, path)
