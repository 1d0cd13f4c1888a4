"""The native checkpoint: a self-describing directory that `load_scorer(dir)` loads alone.

Layout (everything safetensors or JSON; nothing is unpickled and no code from the directory runs):

    humanaes.json           format/version, heads sizes, prompt template, preprocessing, provenance
    config.json             transformers' native InternVLConfig of the backbone
    model*.safetensors      backbone weights in transformers' native InternVL naming (sharded if large)
    heads.safetensors       regression, expert and MetaVoter weights
    tokenizer.json, tokenizer_config.json, ...   the tokenizer (fast, tokenizers-backed)
    adapter/                optional peft LoRA adapter of the language model (merged at load
                            unless the language model is 4-bit)
    manifest.json           size and sha256 of every other file; the model fingerprint is its hash
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from .errors import CheckpointError
from .heads import Heads, HeadsConfig
from .model import HumanAesModel
from .preprocess import IMAGENET_MEAN, IMAGENET_STD
from .prompts import PromptConfig

FORMAT = "humanaes-checkpoint"
FORMAT_VERSION = 1
META_FILE = "humanaes.json"
MANIFEST_FILE = "manifest.json"
HEADS_FILE = "heads.safetensors"
ADAPTER_DIR = "adapter"


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
    return (Path(path) / META_FILE).is_file()


def read_meta(path: str | os.PathLike) -> CheckpointMeta:
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


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def write_manifest(directory: Path) -> None:
    files = sorted(p for p in directory.rglob("*") if p.is_file() and p.name != MANIFEST_FILE)
    entries = {
        p.relative_to(directory).as_posix(): {"size": p.stat().st_size, "sha256": _sha256(p)} for p in files
    }
    (directory / MANIFEST_FILE).write_text(json.dumps({"files": entries}, indent=1, sort_keys=True))


def check_manifest(directory: Path, full: bool = False) -> dict:
    """Refuse a checkpoint whose files are missing or changed size (or, with `full`, changed content)."""
    try:
        manifest = json.loads((directory / MANIFEST_FILE).read_text())["files"]
    except (OSError, ValueError, KeyError) as e:
        raise CheckpointError(f"{directory}: missing or unreadable {MANIFEST_FILE} ({e})") from None
    problems = []
    for name, entry in manifest.items():
        p = directory / name
        if not p.is_file():
            problems.append(f"{name}: missing")
        elif p.stat().st_size != entry["size"]:
            problems.append(f"{name}: size {p.stat().st_size}, manifest says {entry['size']}")
        elif full and _sha256(p) != entry["sha256"]:
            problems.append(f"{name}: content does not match the manifest's sha256")
    if problems:
        raise CheckpointError(
            f"{directory}: checkpoint is damaged or incomplete:\n  " + "\n  ".join(problems)
        )
    return manifest


def fingerprint(directory: str | os.PathLike) -> str:
    """Identity of a checkpoint's weights and settings, without loading it (hash of its manifest)."""
    try:
        data = (Path(directory) / MANIFEST_FILE).read_bytes()
    except OSError as e:
        raise CheckpointError(f"{directory}: cannot read {MANIFEST_FILE} ({e})") from None
    return hashlib.sha256(data).hexdigest()[:16]


def save_checkpoint(
    model: HumanAesModel,
    directory: str | os.PathLike,
    meta: CheckpointMeta,
    adapter: torch.nn.Module | None = None,
) -> Path:
    """Write a complete checkpoint atomically: into a temporary sibling, then renamed into place.

    `adapter`: the peft model whose LoRA layers are injected into `model.backbone`; its LoRA weights
    go to `adapter/` and the backbone's own weights are saved without them.
    """
    from transformers.utils import logging as hf_logging

    directory = Path(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    hf_logging.disable_progress_bar()
    tmp = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", dir=directory.parent))
    try:
        if adapter is not None:
            adapter.save_pretrained(tmp / ADAPTER_DIR, safe_serialization=True)
            model.backbone.save_pretrained(tmp, state_dict=_base_state_dict(model.backbone))
        else:
            model.backbone.save_pretrained(tmp)
        heads_state = {k: v.detach().cpu().float().contiguous() for k, v in model.heads.state_dict().items()}
        save_file(heads_state, str(tmp / HEADS_FILE), metadata={"format": "pt"})
        model.tokenizer.save_pretrained(tmp)
        (tmp / META_FILE).write_text(
            json.dumps(meta.to_json(), indent=2, ensure_ascii=False), encoding="utf-8"
        )
        write_manifest(tmp)
        if directory.exists():
            old = directory.with_name(f".{directory.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            directory.rename(old)
            tmp.rename(directory)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(directory)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return directory


def _base_state_dict(backbone: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The backbone's own weights from a model with LoRA layers injected (LoRA factors left out)."""
    return {k.replace(".base_layer.", "."): v for k, v in backbone.state_dict().items() if "lora_" not in k}


def load_model(
    directory: str | os.PathLike,
    *,
    device: torch.device,
    dtype: torch.dtype,
    quantization_config: object | None = None,
) -> tuple[HumanAesModel, CheckpointMeta]:
    """Build the model from a checkpoint directory (no pickle, no remote code)."""
    # transformers is imported here, not at module level: a fully cached rescan never needs it.
    from transformers import AutoTokenizer, InternVLForConditionalGeneration
    from transformers.utils import logging as hf_logging

    directory = Path(directory)
    meta = read_meta(directory)
    check_manifest(directory)
    hf_logging.disable_progress_bar()  # per-tensor bars mean nothing to a photographer
    tokenizer = AutoTokenizer.from_pretrained(directory, trust_remote_code=False)
    kwargs: dict = {"dtype": dtype, "use_safetensors": True, "trust_remote_code": False}
    kwargs["attn_implementation"] = "sdpa"
    if quantization_config is not None:
        kwargs["quantization_config"] = quantization_config
        kwargs["device_map"] = {"": device}
    try:
        backbone = InternVLForConditionalGeneration.from_pretrained(directory, **kwargs)
    except (OSError, ValueError) as e:
        raise CheckpointError(f"{directory}: cannot load the backbone weights: {e}") from None
    if quantization_config is None:
        backbone.to(device)
    if (directory / ADAPTER_DIR).is_dir():
        backbone = _apply_adapter(backbone, directory / ADAPTER_DIR, merge=quantization_config is None)
    backbone.eval()
    heads = Heads(meta.heads)
    try:
        state = load_file(str(directory / HEADS_FILE))
        heads.load_state_dict(state, strict=True)
    except (OSError, RuntimeError) as e:
        raise CheckpointError(f"{directory}/{HEADS_FILE}: {e}") from None
    heads.to(device).eval()
    num_image_token = int(
        (meta.image.image_size // backbone.config.vision_config.patch_size[0]) ** 2
        * backbone.config.downsample_ratio**2
    )
    model = HumanAesModel(backbone, heads, tokenizer, meta.prompt, num_image_token)
    return model.eval(), meta


def _apply_adapter(backbone: torch.nn.Module, adapter_dir: Path, merge: bool) -> torch.nn.Module:
    from peft import PeftModel

    peft_model = PeftModel.from_pretrained(backbone, adapter_dir, is_trainable=False)
    # Unmerged (4-bit), the LoRA layers stay injected in the base model, which is what we drive.
    return peft_model.merge_and_unload() if merge else peft_model.get_base_model()
