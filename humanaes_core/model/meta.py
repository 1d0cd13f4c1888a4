"""A checkpoint's description, readable without torch: humanaes.json and the checkpoint's file names.

`CheckpointMeta` is everything `load_scorer(dir)` needs besides the weights: the heads' sizes, the
prompt template, the preprocessing the backbone was trained with (tile size, thumbnail, mean/std) and
provenance. Reading it costs a JSON parse, so listing models, cached rescans and the app's model
picker never import torch.

Every size a checkpoint declares (here and in config.json, `check_backbone_config`) is checked against
the limits below before anything is allocated: a corrupt or hostile file asking for a million layers
or 100 000-pixel tiles fails in milliseconds with one line instead of minutes of swapping.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from humanaes_core.errors import CheckpointError, shown
from humanaes_core.files import read_json_file
from humanaes_core.model.prompts import ANSWER_TOKENISATIONS, RELEASE_QUESTION_INDEX, TEMPLATES, PromptConfig
from humanaes_core.model.release import OpenFields, open_fields_problems

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

# Limits on what a checkpoint may declare, far above any released InternVL (the 78B: 80 layers, hidden
# 8192, MLP 29 568, 64 heads, vocabulary 151 674; 448-pixel tiles of 14-pixel patches, at most 40 tiles).
MAX_LAYERS = 200
MAX_HIDDEN = 16384
MAX_INTERMEDIATE = 65536
MAX_ATTENTION_HEADS = 256
MAX_HEAD_DIM = 1024
MAX_VOCAB = 1_000_000
MAX_POSITIONS = 1 << 20
#: A tile's side in pixels, and in patches (the vision tower's tokens per tile are its square).
MAX_IMAGE_SIZE = 1024
MAX_PATCHES_PER_SIDE = 64
MAX_TILES = 40
#: Hidden widths of the expert FFN and the MetaVoter (the released heads use 64 and 16).
MAX_HEAD_HIDDEN = 4096
#: A JSON metadata file (humanaes.json, config.json, manifest.json, a shard index, tokenizer_config.json).
MAX_METADATA_BYTES = 16 << 20
#: A tokenizer file (tokenizer.json, vocab.json, merges.txt, tokenizer.model): Qwen2's is 7 MB.
MAX_TOKENIZER_BYTES = 64 << 20
TOKENIZER_FILES = ("tokenizer.json", "vocab.json", "vocab.txt", "merges.txt", "tokenizer.model", "*.tiktoken")

_TEXT_LIMITS = {
    "num_hidden_layers": MAX_LAYERS,
    "hidden_size": MAX_HIDDEN,
    "intermediate_size": MAX_INTERMEDIATE,
    "num_attention_heads": MAX_ATTENTION_HEADS,
    "vocab_size": MAX_VOCAB,
}
_TEXT_OPTIONAL = {
    "num_key_value_heads": MAX_ATTENTION_HEADS,
    "head_dim": MAX_HEAD_DIM,
    "max_position_embeddings": MAX_POSITIONS,
}
_VISION_LIMITS = {
    "num_hidden_layers": MAX_LAYERS,
    "hidden_size": MAX_HIDDEN,
    "intermediate_size": MAX_INTERMEDIATE,
    "num_attention_heads": MAX_ATTENTION_HEADS,
    "image_size": MAX_IMAGE_SIZE,
    "patch_size": MAX_IMAGE_SIZE,
}


def _whole(value: object, top: int, low: int = 1) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= top


def _sizes(
    section: Mapping, required: Mapping[str, int], optional: Mapping[str, int], where: str
) -> list[str]:
    """Problems of `section`'s sizes: each a whole number within its limit (a list: every element)."""
    problems = []
    for key, top in (*required.items(), *optional.items()):
        if key not in section or (key in optional and section[key] is None):
            if key in required:
                problems.append(f"{where}.{key} is missing")
            continue
        raw = section[key]
        values = raw if isinstance(raw, list) and raw else [raw]
        if not all(_whole(v, top) for v in values):
            problems.append(f"{where}.{key} is {shown(raw)}; it must be a whole number from 1 to {top}")
    return problems


def _as_int(value: object) -> int | None:
    value = value[0] if isinstance(value, list) and value else value
    return value if _whole(value, 1 << 62) else None  # type: ignore[return-value]


def _shape_problems(section: Mapping, where: str) -> list[str]:
    """Heads that divide the width evenly, and a head size within MAX_HEAD_DIM."""
    hidden, heads = _as_int(section.get("hidden_size")), _as_int(section.get("num_attention_heads"))
    if hidden is None or heads is None:
        return []
    if hidden % heads:
        return [f"{where}: hidden_size {hidden} is not a multiple of num_attention_heads {heads}"]
    if hidden // heads > MAX_HEAD_DIM:
        return [
            f"{where}: heads of {hidden // heads} (hidden_size / num_attention_heads) exceed {MAX_HEAD_DIM}"
        ]
    kv = _as_int(section.get("num_key_value_heads"))
    if kv is not None and heads % kv:
        return [f"{where}: num_attention_heads {heads} is not a multiple of num_key_value_heads {kv}"]
    return []


def language_size_problems(section: Mapping, where: str) -> list[str]:
    """Why a language model's config (InternVL's llm_config or text_config) is beyond the limits."""
    if not isinstance(section, Mapping):
        return [f"{where} is not a JSON object"]
    problems = _sizes(section, _TEXT_LIMITS, _TEXT_OPTIONAL, where) or _shape_problems(section, where)
    layer_types = section.get("layer_types")
    layers = section.get("num_hidden_layers")
    if not problems and isinstance(layer_types, list) and len(layer_types) != layers:
        problems.append(f"{where}.layer_types has {len(layer_types)} entries for {layers} layers")
    return problems


def vision_size_problems(section: Mapping, where: str) -> list[str]:
    """Why a vision tower's config is beyond the limits (sizes, and patches per tile side)."""
    if not isinstance(section, Mapping):
        return [f"{where} is not a JSON object"]
    problems = _sizes(section, _VISION_LIMITS, {}, where) or _shape_problems(section, where)
    if problems:
        return problems
    for key in ("image_size", "patch_size"):
        if isinstance(section[key], list) and len(set(section[key])) != 1:
            problems.append(
                f"{where}.{key} is {shown(section[key])}; only square tiles and patches are supported"
            )
    image, patch = _as_int(section["image_size"]), _as_int(section["patch_size"])
    if image is None or patch is None or image % patch or image // patch > MAX_PATCHES_PER_SIDE:
        problems.append(
            f"{where}: image_size {shown(section['image_size'])} must be a multiple of patch_size "
            f"{shown(section['patch_size'])} with at most {MAX_PATCHES_PER_SIDE} patches per side"
        )
    return problems


def check_backbone_config(config: object, meta: CheckpointMeta, where: Path) -> None:
    """Refuse a config.json whose sizes are beyond the limits or disagree with humanaes.json.

    Checked before transformers sees it: transformers allocates whatever a config asks for.
    """
    if not isinstance(config, Mapping):
        raise CheckpointError(f"{where}: config.json does not hold a JSON object")
    if config.get("model_type") != "internvl":
        raise CheckpointError(
            f"{where}: config.json is not an InternVL config ({shown(config.get('model_type'))})"
        )
    text, vision = config.get("text_config"), config.get("vision_config")
    problems = language_size_problems(text, "text_config") + vision_size_problems(vision, "vision_config")
    ratio = config.get("downsample_ratio", 0.5)
    if not isinstance(ratio, int | float) or isinstance(ratio, bool) or not 0 < ratio <= 1:
        problems.append(f"downsample_ratio is {shown(ratio)}; it must be in (0, 1]")
    if not problems:
        if text.get("hidden_size") != meta.heads.hidden_size:  # type: ignore[union-attr]
            problems.append(
                f"the heads read hidden states of {meta.heads.hidden_size} (humanaes.json) but the language "
                f"model's are {text.get('hidden_size')}"  # type: ignore[union-attr]
            )
        if _as_int(vision.get("image_size")) != meta.image.image_size:  # type: ignore[union-attr]
            problems.append(
                f"humanaes.json cuts {meta.image.image_size}-pixel tiles but the vision tower takes "
                f"{shown(vision.get('image_size'))}"  # type: ignore[union-attr]
            )
    if problems:
        raise CheckpointError(f"{where}/config.json: " + "; ".join(problems[:5]))


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
    open_fields: OpenFields = field(default_factory=OpenFields)  # the release's open choices (release.py)

    def to_json(self) -> dict:
        return {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "name": self.name,
            "heads": self.heads.to_dict(),
            "prompt": self.prompt.to_dict(),
            "image": asdict(self.image),
            "open_fields": self.open_fields.to_dict(),
            "provenance": self.provenance,
        }

    @classmethod
    def from_json(cls, data: object, where: Path) -> CheckpointMeta:
        """The validated contents of humanaes.json; every problem is a one-line ``CheckpointError``."""
        if not isinstance(data, Mapping) or data.get("format") != FORMAT:
            found = shown(data.get("format")) if isinstance(data, Mapping) else "not a JSON object"
            raise CheckpointError(f"{where}: not a HumanAes checkpoint (format {found})")
        version = data.get("format_version", 0)
        if not _whole(version, 1 << 31, low=0):
            raise CheckpointError(f"{where}/{META_FILE}: format_version is {shown(version)}, not a number")
        if version > FORMAT_VERSION:
            raise CheckpointError(
                f"{where}: checkpoint format version {version} is newer than this HumanAes "
                f"supports ({FORMAT_VERSION}); update HumanAes"
            )
        problems = _meta_problems(data) + open_fields_problems(data.get("open_fields", {}))
        if problems:
            raise CheckpointError(f"{where}/{META_FILE}: " + "; ".join(problems[:5]))
        image = dict(data.get("image", {}))
        for k in ("mean", "std"):
            if k in image:
                image[k] = tuple(float(x) for x in image[k])
        try:
            return cls(
                heads=HeadsConfig.from_dict(data["heads"]),
                prompt=PromptConfig.from_dict(data.get("prompt", {})),
                image=ImageConfig(**image),
                name=data.get("name", "HumanAesExpert"),
                provenance=data.get("provenance", {}),
                open_fields=OpenFields.from_dict(data.get("open_fields", {})),  # absent: the defaults
            )
        except (TypeError, ValueError) as e:  # a check above missed it: still one line, not a traceback
            raise CheckpointError(f"{where}/{META_FILE}: {str(e)[:300]}") from None


def _unknown(section: Mapping, cls: type, where: str) -> list[str]:
    unknown = sorted(str(k) for k in set(section) - {f.name for f in fields(cls)})
    return [f"{where} has unknown setting(s) {shown(unknown)}"] if unknown else []


def _meta_problems(data: Mapping) -> list[str]:
    """Every reason humanaes.json's heads, image and prompt sections are malformed or beyond the limits."""
    heads, image, prompt = data.get("heads"), data.get("image", {}), data.get("prompt", {})
    if not isinstance(heads, Mapping) or not isinstance(image, Mapping) or not isinstance(prompt, Mapping):
        return ["heads, image and prompt must be JSON objects (heads is required)"]
    problems = _unknown(heads, HeadsConfig, "heads") + _unknown(image, ImageConfig, "image")
    problems += _unknown(prompt, PromptConfig, "prompt")
    problems += _sizes(heads, {"hidden_size": MAX_HIDDEN}, {}, "heads")
    limits = {"expert_ffn_hidden": MAX_HEAD_HIDDEN, "metavoter_hidden": MAX_HEAD_HIDDEN}
    problems += _sizes(heads, {}, limits, "heads")
    problems += _sizes(image, {}, {"image_size": MAX_IMAGE_SIZE, "max_tiles": MAX_TILES}, "image")
    if heads.get("expert_activation", "gelu") not in EXPERT_ACTIVATIONS:
        problems.append(f"heads.expert_activation must be one of {', '.join(EXPERT_ACTIVATIONS)}")
    if not isinstance(heads.get("extra", {}), Mapping) or not isinstance(data.get("provenance", {}), Mapping):
        problems.append("heads.extra and provenance must be JSON objects")
    if not isinstance(image.get("use_thumbnail", True), bool):
        problems.append("image.use_thumbnail must be true or false")
    for key, low in (("mean", -math.inf), ("std", 0.0)):
        values = image.get(key, (0.5, 0.5, 0.5))
        if not (
            isinstance(values, list | tuple) and len(values) == 3 and all(_finite(v, low) for v in values)
        ):
            problems.append(f"image.{key} must be 3 finite numbers{' above 0' if key == 'std' else ''}")
    if not isinstance(data.get("name", ""), str):
        problems.append("name must be a string")
    return problems + _prompt_problems(prompt)


def _finite(value: Any, above: float) -> bool:
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and value > above
    )


def _prompt_problems(prompt: Mapping) -> list[str]:
    problems = []
    for key, value in prompt.items():
        default = getattr(PromptConfig(), str(key), None)
        if isinstance(default, str) and not isinstance(value, str):
            problems.append(f"prompt.{key} must be a string")
        elif isinstance(default, list) and not (
            isinstance(value, list) and value and all(isinstance(q, str) for q in value)
        ):
            problems.append(f"prompt.{key} must be a non-empty list of strings")
    index = prompt.get("question_index", RELEASE_QUESTION_INDEX)
    questions = prompt.get("overall_questions", PromptConfig().overall_questions)
    if not _whole(index, len(questions) - 1 if isinstance(questions, list) else 0, low=0):
        problems.append(f"prompt.question_index {shown(index)} does not pick one of the questions")
    if prompt.get("template", "internvl_chat") not in TEMPLATES:
        template = shown(prompt.get("template"))
        problems.append(f"prompt.template {template} is not one of {', '.join(TEMPLATES)}")
    if prompt.get("answer_tokenisation", "in_context") not in ANSWER_TOKENISATIONS:
        problems.append(f"prompt.answer_tokenisation must be one of {', '.join(ANSWER_TOKENISATIONS)}")
    if not _whole(prompt.get("query_newlines", 1), 4):
        problems.append("prompt.query_newlines must be a whole number from 1 to 4")
    return problems


def is_checkpoint(path: str | os.PathLike) -> bool:
    """Whether `path` is a native checkpoint directory (it has humanaes.json, readable or not)."""
    meta = Path(path) / META_FILE
    return meta.exists() or meta.is_symlink()


def read_meta(path: str | os.PathLike) -> CheckpointMeta:
    """The checkpoint's humanaes.json, validated (format, version, sizes within the limits)."""
    path = Path(path)
    try:
        data = read_json_file(path / META_FILE, MAX_METADATA_BYTES)
    except FileNotFoundError:
        raise CheckpointError(
            f"{path}: no {META_FILE}; this is not a HumanAes checkpoint directory"
        ) from None
    except (OSError, ValueError) as e:
        raise CheckpointError(f"{path}/{META_FILE} is unreadable: {e}") from None
    return CheckpointMeta.from_json(data, path)
