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

``manifest`` verifies the directory before anything is read; ``meta`` reads humanaes.json without torch
and checks humanaes.json's and config.json's sizes against its limits before anything is allocated.
Pickles (``*.bin``, ``*.pt``...) and Python files are never opened or imported: weights load
with ``use_safetensors=True``, tokenizers and configs with ``trust_remote_code=False``, and an adapter
only from ``adapter_model.safetensors``. Whatever else is wrong with a verified file (a corrupt
safetensors header, a tokenizer that does not parse, a config transformers rejects) ends in one
``CheckpointError`` line naming the file.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from humanaes_core.errors import CheckpointError, shown
from humanaes_core.files import read_json_file
from humanaes_core.model.heads import Heads
from humanaes_core.model.manifest import verify, write_manifest
from humanaes_core.model.meta import (
    ADAPTER_DIR,
    ADAPTER_WEIGHTS,
    HEADS_FILE,
    MAX_METADATA_BYTES,
    META_FILE,
    CheckpointMeta,
    check_backbone_config,
    read_meta,
)
from humanaes_core.model.modeling import HumanAesModel

#: The largest LoRA rank an adapter may declare (trained adapters use 8 to 128).
MAX_LORA_RANK = 1024


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
    manifest = verify(directory)
    config = _json(directory, "config.json")
    check_backbone_config(config, meta, directory)
    _check_weights_cover(config, manifest, directory)  # type: ignore[arg-type]
    adapter = directory / ADAPTER_DIR
    if adapter.is_dir():
        _check_adapter(adapter)
    hf_logging.disable_progress_bar()  # per-tensor bars mean nothing to a photographer
    with _reading(directory, "the tokenizer"):
        tokenizer = AutoTokenizer.from_pretrained(directory, trust_remote_code=False)
    kwargs: dict = {"dtype": dtype, "use_safetensors": True, "trust_remote_code": False}
    kwargs["attn_implementation"] = "sdpa"
    if quantization_config is not None:
        kwargs["quantization_config"] = quantization_config
        kwargs["device_map"] = {"": device}
    with _reading(directory, "the backbone weights"):
        backbone = InternVLForConditionalGeneration.from_pretrained(directory, **kwargs)
    if quantization_config is None:
        backbone.to(device)
    if adapter.is_dir():
        with _reading(adapter, "the LoRA adapter"):
            backbone = _apply_adapter(backbone, adapter, merge=quantization_config is None)
    backbone.eval()
    heads = Heads(meta.heads, meta.open_fields)
    with _reading(directory / HEADS_FILE, "the heads"):
        heads.load_state_dict(load_file(str(directory / HEADS_FILE)), strict=True)
    heads.to(device).eval()
    num_image_token = int(
        (meta.image.image_size // backbone.config.vision_config.patch_size[0]) ** 2
        * backbone.config.downsample_ratio**2
    )
    model = HumanAesModel(backbone, heads, tokenizer, meta.prompt, num_image_token)
    return model.eval(), meta


def _json(directory: Path, name: str) -> object:
    try:
        return read_json_file(directory / name, MAX_METADATA_BYTES)
    except (OSError, ValueError) as e:
        raise CheckpointError(f"{directory}/{name} is unreadable: {e}") from None


def _parameters_at_least(config: dict) -> int:
    """A lower bound of the backbone's parameter count from its (already bounded) config.json."""
    text, vision = config["text_config"], config["vision_config"]
    th, ti = text["hidden_size"], text["intermediate_size"]
    vh, vi = vision["hidden_size"], vision["intermediate_size"]
    per_text_layer = 2 * th * th + 3 * th * ti  # q and o projections, the gated MLP
    per_vision_layer = 4 * vh * vh + 2 * vh * vi  # q, k, v, o and the MLP
    return (
        text["num_hidden_layers"] * per_text_layer
        + vision["num_hidden_layers"] * per_vision_layer
        + text["vocab_size"] * th
    )


def _check_weights_cover(config: dict, manifest: dict[str, dict], directory: Path) -> None:
    """Refuse a config.json that describes a model far larger than the weights beside it.

    transformers builds the whole model a config describes before it reads a weight; each size within
    its limit, a config can still ask for a model of terabytes on top of a file of kilobytes. Weights
    take at least half a byte a parameter (4-bit), so less than a quarter byte is impossible.
    """
    stored = sum(
        entry["size"]
        for name, entry in manifest.items()
        if name.startswith("model") and name.endswith(".safetensors") and "/" not in name
    )
    needed = _parameters_at_least(config)
    if stored * 4 < needed:
        raise CheckpointError(
            f"{directory}: the backbone weights (model*.safetensors) hold {stored:,} bytes, too few for "
            f"the {needed:,} parameters or more that config.json describes"
        )


def _check_adapter(adapter: Path) -> None:
    """A LoRA adapter of a sane rank, before peft builds it."""
    config = _json(adapter, "adapter_config.json")
    if not isinstance(config, dict) or config.get("peft_type") != "LORA":
        raise CheckpointError(f"{adapter}/adapter_config.json: not a LoRA adapter's config")
    rank = config.get("r")
    if isinstance(rank, bool) or not isinstance(rank, int) or not 1 <= rank <= MAX_LORA_RANK:
        raise CheckpointError(
            f"{adapter}/adapter_config.json: r is {shown(rank)}; it must be a whole number from 1 to "
            f"{MAX_LORA_RANK}"
        )


@contextlib.contextmanager
def _reading(where: Path, what: str) -> Iterator[None]:
    """Any failure of a third-party reader of a verified file as one CheckpointError line.

    tokenizers raises plain ``Exception``, safetensors its own ``SafetensorError``, transformers
    ``KeyError`` or ``AttributeError`` on odd configs: at this trust boundary every one of them means
    the checkpoint is broken. Only running out of memory is left as it is, because it is not.
    """
    try:
        yield
    except CheckpointError:
        raise
    except MemoryError:
        raise
    except Exception as e:
        first = next(iter(str(e).strip().splitlines()), "") or e.__class__.__name__
        raise CheckpointError(f"{where}: cannot load {what}: {first[:300]}") from None


def _apply_adapter(backbone: torch.nn.Module, adapter_dir: Path, merge: bool) -> torch.nn.Module:
    from peft import PeftModel

    # peft falls back to a pickled adapter_model.bin (or even the hub) when the safetensors file is
    # missing; only the verified safetensors file may be read.
    if not (adapter_dir / ADAPTER_WEIGHTS).is_file():
        raise CheckpointError(
            f"{adapter_dir}: no {ADAPTER_WEIGHTS}; adapters are loaded from safetensors only"
        )
    peft_model = PeftModel.from_pretrained(backbone, adapter_dir, is_trainable=False)
    # Unmerged (4-bit), the LoRA layers stay injected in the base model, which is what we drive.
    return peft_model.merge_and_unload() if merge else peft_model.get_base_model()
