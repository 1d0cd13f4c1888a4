"""`TrainConfig`: every training setting, and the YAML/JSON config files that set them.

The dataclass is the one description of a setting: its type, its default and, in the field's metadata,
the help text of its `humanaes-train` flag (the CLI builds its parser from these fields with
transformers' `HfArgumentParser`). Flags, a config file and the recipes in `training/` all map onto it.

Torch-free, so that `humanaes-train --help`, the app's training dialog and config checks stay cheap.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, get_args, get_type_hints

from humanaes_core.errors import HumanAesError

__all__ = ["DEFAULT_LORA_TARGETS", "TrainConfig", "config_digest", "read_config_file"]

DEFAULT_LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")

# Settings that may differ between a run and its resumption (they do not change the result).
_OPERATIONAL = frozenset(
    {
        "resume",
        "save_every",
        "workers",
        "quiet",
        "overwrite",
        "check_images",
        "name",
        "allow_absolute_paths",
        "allow_unknown_keys",
    }
)


def _setting(default: Any, help: str, **argparse_kwargs: Any) -> Any:
    """A field whose flag help is `help`; ``{default}`` in it is replaced by the default value.

    A tuple default makes a list field (a fresh list per instance), shown as ``a,b,c`` as the flag takes
    it. The metadata goes to ``argparse.add_argument`` as it is (``help``, ``choices``).
    """
    shown = ",".join(default) if isinstance(default, tuple) else default
    metadata = {"help": help.format(default=shown) if "{default}" in help else help, **argparse_kwargs}
    if isinstance(default, tuple):
        return field(default_factory=lambda: list(default), metadata=metadata)
    return field(default=default, metadata=metadata)


@dataclass
class TrainConfig:
    """Every training setting; flags, a YAML/JSON file and the recipes in `training/` all map onto it."""

    data: str = _setting("", "HumanBeauty root, .jsonl, .csv or a rated photo folder")
    base: str = _setting("", "checkpoint directory or hub id to start from")
    out: str = _setting("", "output checkpoint directory")
    split: str = _setting("train", "label file of a HumanBeauty root (default {default})")

    # --- optimisation
    epochs: int = _setting(1, "stage 1 epochs (default {default}, as the paper)")
    max_steps: int = _setting(0, "stop stage 1 after N optimizer steps (0: no limit)")
    lr: float = _setting(1e-4, "LoRA/projector learning rate (default {default})")
    head_lr: float | None = _setting(None, "regression/expert head learning rate (default: --lr)")
    weight_decay: float = _setting(0.0, "(default {default})")
    warmup_ratio: float = _setting(0.03, "(default {default})")
    max_grad_norm: float = _setting(1.0, "0 disables clipping (default {default})")
    batch_size: int = _setting(4, "per device (default {default})")
    grad_accum: int = _setting(1, "gradient accumulation steps (default {default})")
    lambda_reg: float = _setting(1.0, "λ of Eq. 7, regression MSE (default {default})")
    mu_exp: float = _setting(1.0, "μ of Eq. 7, expert MSE (default {default})")
    seed: int = _setting(42, "(default {default})")
    val_fraction: float = _setting(0.05, "held out for metrics (default {default})")

    # --- model
    lora_rank: int = _setting(16, "0: heads only (default {default})")
    lora_alpha: int = _setting(32, "(default {default})")
    lora_dropout: float = _setting(0.05, "(default {default})")
    lora_targets: list[str] = _setting(  # noqa: RUF009 (a dataclasses.field with a default_factory)
        DEFAULT_LORA_TARGETS, "comma-separated language-model modules (default {default})"
    )
    train_projector: bool = _setting(False, "also train the vision projector")
    reset_heads: bool = _setting(False, "train new heads from scratch (the paper's setup)")
    max_tiles: int | None = _setting(None, "tiles per photo (default: the base model's, 12)")
    metavoter_epochs: int = _setting(10, "stage 2 epochs (default {default})")
    metavoter_lr: float = _setting(5e-3, "(default {default})")
    metavoter_batch_size: int = _setting(64, "(default {default})")
    taste: str = _setting(
        "auto",
        "fit how Overall weighs Face, Appearance and Environment to overall-only ratings "
        "(auto: when the data is a photographer's ratings, no 12-dimension labels)",
        choices=["auto", "on", "off"],
    )
    taste_steps: int = _setting(300, "steps of that fit (default {default})")
    taste_lr: float = _setting(1e-2, "(default {default})")

    # --- hardware and operation
    precision: str = _setting("auto", "auto: bf16 on GPU", choices=["auto", "fp32", "fp16", "bf16"])
    quantize: str | None = _setting(None, "QLoRA: 4-bit base (CUDA + bitsandbytes)", choices=["4bit"])
    gradient_checkpointing: bool = _setting(False, "less memory, ~30%% slower")
    cpu: bool = _setting(False, "train on the CPU even if a GPU is present")
    workers: int = _setting(2, "image decoding processes (default {default})")
    # 0: a resumable state only on Ctrl-C
    save_every: int = _setting(500, "steps between resumable states (default {default})")
    resume: bool = _setting(False, "continue the interrupted run in --out")
    overwrite: bool = _setting(False, "replace an existing checkpoint/run in --out")
    name: str | None = _setting(None, "model name stored in the checkpoint")
    allow_absolute_paths: bool = _setting(False, "labels may point outside the data")
    allow_unknown_keys: bool = _setting(False, "ignore extra keys in label lines")
    check_images: bool = _setting(True, "whether to open every image before training (default {default})")
    quiet: bool = _setting(False, "no progress bar")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any], where: str = "config") -> TrainConfig:
        """Build from a mapping with keys as in the dataclass (dashes allowed); unknown keys are errors."""
        known = {f.name: f for f in fields(cls)}
        kwargs: dict[str, Any] = {}
        for raw_key, value in values.items():
            key = str(raw_key).replace("-", "_")
            if key not in known:
                close = [k for k in known if k.startswith(key[:4])]
                hint = f" (did you mean {', '.join(close)}?)" if close else ""
                raise HumanAesError(f"{where}: unknown setting {raw_key!r}{hint}")
            kwargs[key] = _coerce(key, value, where)
        config = cls(**kwargs)
        config.validate(where)
        return config

    def validate(self, where: str = "config") -> None:
        """Reject impossible settings before any model is loaded."""
        problems = []
        for name in ("epochs", "batch_size", "grad_accum", "metavoter_epochs"):
            if getattr(self, name) < 1:
                problems.append(f"{name} must be at least 1")
        for name in ("max_steps", "save_every", "workers", "lora_rank"):
            if getattr(self, name) < 0:
                problems.append(f"{name} must not be negative")
        if self.metavoter_batch_size < 2:
            problems.append("metavoter_batch_size must be at least 2 (BatchNorm)")
        if not 0 <= self.val_fraction < 1:
            problems.append("val_fraction must be in [0, 1)")
        if self.precision not in ("auto", "fp32", "fp16", "bf16"):
            problems.append(f"precision must be auto, fp32, fp16 or bf16, not {self.precision!r}")
        if self.quantize not in (None, "4bit"):
            problems.append(f"quantize must be 4bit or unset, not {self.quantize!r}")
        if self.quantize and self.lora_rank == 0:
            problems.append("4-bit training needs LoRA (lora_rank > 0): the 4-bit weights cannot be trained")
        if self.max_tiles is not None and not 1 <= self.max_tiles <= 40:
            problems.append("max_tiles must be between 1 and 40")
        if self.lr <= 0 or (self.head_lr is not None and self.head_lr <= 0) or self.metavoter_lr <= 0:
            problems.append("learning rates must be positive")
        if problems:
            raise HumanAesError(f"{where}: " + "; ".join(problems))


_HINTS = get_type_hints(TrainConfig)


def _coerce(key: str, value: Any, where: str) -> Any:
    """A value from YAML/JSON or a flag, converted to the field's type ('a,b,c' works for lists)."""
    if key == "lora_targets":
        items = [value] if isinstance(value, str) else value
        if not isinstance(items, list | tuple):
            raise HumanAesError(f"{where}: lora_targets must be a list of module names")
        names = (part.strip() for item in items for part in str(item).split(","))
        return [name for name in names if name]
    hint = _HINTS[key]
    options = [t for t in get_args(hint) if t is not type(None)] or [hint]
    if value is None:
        if type(None) in get_args(hint):
            return None
        raise HumanAesError(f"{where}: {key} must be set")
    kind = options[0]
    try:
        return _convert(kind, value)
    except (TypeError, ValueError):
        raise HumanAesError(f"{where}: {key} = {value!r} is not a valid {kind.__name__}") from None


def _convert(kind: type, value: Any) -> Any:
    """`value` as a `kind` (bool, int, float or str), strictly: no silent rounding, no bools as numbers."""
    if kind is bool:
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in ("true", "yes", "1", "on"):
            return True
        if text in ("false", "no", "0", "off"):
            return False
        raise ValueError(value)
    if kind is int:
        if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
            raise ValueError(value)
        return int(value)
    if kind is float:
        if isinstance(value, bool):
            raise ValueError(value)
        return float(value)
    return str(value)


def config_digest(config: TrainConfig) -> dict:
    """The settings that determine the result (all but the operational ones): what a resumed run must
    share with the interrupted one, and what the checkpoint's provenance records."""
    return {k: v for k, v in config.to_dict().items() if k not in _OPERATIONAL}


def read_config_file(path: str | os.PathLike) -> dict:
    """A YAML (.yaml/.yml) or JSON config file as a flat mapping of settings."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise HumanAesError(f"{path}: cannot read the config file ({e})") from None
    if path.suffix.lower() in (".yaml", ".yml"):
        try:
            import yaml
        except ImportError:
            raise HumanAesError("YAML config files need PyYAML: pip install pyyaml (or use JSON)") from None
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as e:
            raise HumanAesError(f"{path}: not valid YAML ({e})") from None
    else:
        try:
            data = json.loads(text)
        except ValueError as e:
            raise HumanAesError(f"{path}: not valid JSON ({e})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise HumanAesError(f"{path}: the config must be a mapping of settings")
    return data
