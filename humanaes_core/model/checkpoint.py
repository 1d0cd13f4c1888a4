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

``manifest`` verifies the directory before anything is read; ``meta`` reads humanaes.json without torch.
Pickles (``*.bin``, ``*.pt``...) and Python files are never opened or imported: weights load
with ``use_safetensors=True``, tokenizers and configs with ``trust_remote_code=False``, and an adapter
only from ``adapter_model.safetensors``.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from humanaes_core.errors import CheckpointError
from humanaes_core.model.heads import Heads
from humanaes_core.model.manifest import verify, write_manifest
from humanaes_core.model.meta import (
    ADAPTER_DIR,
    ADAPTER_WEIGHTS,
    HEADS_FILE,
    META_FILE,
    CheckpointMeta,
    read_meta,
)
from humanaes_core.model.modeling import HumanAesModel


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
    verify(directory)
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

    # peft falls back to a pickled adapter_model.bin (or even the hub) when the safetensors file is
    # missing; only the verified safetensors file may be read.
    if not (adapter_dir / ADAPTER_WEIGHTS).is_file():
        raise CheckpointError(
            f"{adapter_dir}: no {ADAPTER_WEIGHTS}; adapters are loaded from safetensors only"
        )
    peft_model = PeftModel.from_pretrained(backbone, adapter_dir, is_trainable=False)
    # Unmerged (4-bit), the LoRA layers stay injected in the base model, which is what we drive.
    return peft_model.merge_and_unload() if merge else peft_model.get_base_model()
