"""Two-stage training of HumanAesExpert (paper section 4, "Training"), on one device or many.

Stage 1 fine-tunes the language model with LoRA (peft) and trains the regression and expert heads:
cross-entropy on the answer tokens, plus λ·MSE of the regression head for overall-only samples or
μ·MSE over every expert-head node for 12-dimension samples (Eq. 7). The switch is a per-sample weight
of exactly 0 or 1, so a sample's gradient reaches only its own head while every parameter stays in
the graph (DDP needs that) — mixed batches just work.

Stage 2 freezes everything but the MetaVoter, computes the three head scores of the training set once
(the same forward pass scoring uses) and trains the MetaVoter on them with MAE (Eq. 6).

The loop is plain `accelerate`: `accelerate launch` (DDP, or DeepSpeed ZeRO-2 with the config in
`training/`) runs it unchanged. The module handed to `accelerator.prepare` holds only the trainable
parameters (LoRA factors, heads, optionally the projector) — the frozen backbone is outside it — so
DDP synchronises and the resumable state stores just what changes.

Output: a native checkpoint directory that `load_scorer` loads alone. The LoRA weights are kept as
``adapter/`` beside the unchanged base weights (merged at load time in full precision, applied on top
of a 4-bit base unmerged), so a QLoRA-trained adapter meets the weights it was trained against. The
training config, the data fingerprint and the final metrics go into ``humanaes.json`` (provenance).
"""

from __future__ import annotations

import copy
import json
import logging
import math
import os
import re
import shutil
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, get_args, get_type_hints

import numpy as np
import torch
from torch import nn

from humanaes_core import __version__
from humanaes_core.data import DataError, DataSet, Sample, build_qa, load_data, split_train_val
from humanaes_core.errors import HumanAesError
from humanaes_core.model import (
    CheckpointMeta,
    HumanAesModel,
    MetaVoter,
    Placement,
    TileConfig,
    bnb_4bit_config,
    fingerprint,
    is_checkpoint,
    lm_level_score,
    load_model,
    normalise_lm_score,
    preprocess,
    resolve_model,
    save_checkpoint,
)
from humanaes_core.schema import KEYS
from humanaes_core.scoring import Scorer, decode_stream, tile_config_for

log = logging.getLogger(__name__)

DEFAULT_LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
RESUME_DIR = "resume"
PROGRESS_FILE = "progress.json"

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


class TrainingInterrupted(HumanAesError):
    """Ctrl-C during training: a resumable state was saved (the message says where)."""


@dataclass
class TrainConfig:
    """Every training setting; flags, a YAML/JSON file and the recipes in `training/` all map onto it."""

    data: str = ""
    base: str = ""
    out: str = ""
    split: str = "train"  # which label file of a HumanBeauty root
    epochs: int = 1  # the paper trains stage 1 for one epoch
    max_steps: int = 0  # stop stage 1 after this many optimizer steps (0: no limit)
    lr: float = 1e-4  # LoRA (and projector) learning rate
    head_lr: float | None = None  # regression/expert heads; None: same as lr
    weight_decay: float = 0.0
    warmup_ratio: float = 0.03
    max_grad_norm: float = 1.0
    batch_size: int = 4  # per device
    grad_accum: int = 1
    lora_rank: int = 16  # 0: no LoRA, train the heads (and projector) only
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    lora_targets: list[str] = field(default_factory=lambda: list(DEFAULT_LORA_TARGETS))
    train_projector: bool = False
    reset_heads: bool = False  # fresh regression/expert/MetaVoter (the paper's from-scratch heads)
    max_tiles: int | None = None  # None: the base checkpoint's setting (12 for the released models)
    lambda_reg: float = 1.0
    mu_exp: float = 1.0
    seed: int = 42
    save_every: int = 500  # optimizer steps between resumable states (0: only on Ctrl-C)
    resume: bool = False
    overwrite: bool = False
    precision: str = "auto"  # auto, fp32, fp16, bf16
    quantize: str | None = None  # "4bit": QLoRA (CUDA + bitsandbytes)
    gradient_checkpointing: bool = False
    metavoter_epochs: int = 10
    metavoter_lr: float = 5e-3
    metavoter_batch_size: int = 64
    val_fraction: float = 0.05
    workers: int = 2
    cpu: bool = False
    allow_absolute_paths: bool = False
    allow_unknown_keys: bool = False
    check_images: bool = True
    name: str | None = None
    quiet: bool = False

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
        items = value.split(",") if isinstance(value, str) else value
        if not isinstance(items, list | tuple):
            raise HumanAesError(f"{where}: lora_targets must be a list of module names")
        return [str(t).strip() for t in items if str(t).strip()]
    hint = _HINTS[key]
    options = [t for t in get_args(hint) if t is not type(None)] or [hint]
    if value is None:
        if type(None) in get_args(hint):
            return None
        raise HumanAesError(f"{where}: {key} must be set")
    kind = options[0]
    try:
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
    except (TypeError, ValueError):
        raise HumanAesError(f"{where}: {key} = {value!r} is not a valid {kind.__name__}") from None


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


# ------------------------------------------------------------------------------------------ data


class TrainingSet(torch.utils.data.Dataset):
    """Samples → tiles, question, answer and loss targets. The paraphrase is drawn from (seed, epoch,
    index), not from a global RNG, so a resumed run sees exactly the questions an uninterrupted one would."""

    def __init__(self, samples: Sequence[Sample], tiles: TileConfig, prompt, seed: int) -> None:
        self.samples = list(samples)
        self.tiles = tiles
        self.prompt = prompt
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> dict:
        sample = self.samples[index]
        q = int(
            np.random.default_rng([self.seed, self.epoch, index]).integers(len(self.prompt.overall_questions))
        )
        qa = build_qa(sample, self.prompt, q)
        try:
            pixels = preprocess(sample.path, self.tiles)
        except HumanAesError as e:
            raise DataError(f"{sample.origin}: {e}") from None
        dims = torch.tensor([sample.labels.get(k, 0.0) for k in KEYS], dtype=torch.float32)
        dims_mask = torch.tensor([float(sample.is_dims and k in sample.labels) for k in KEYS])
        return {
            "pixel_values": pixels,
            "question": qa.question,
            "answer": qa.answer,
            "overall": torch.tensor(sample.overall if sample.overall is not None else 0.0),
            "is_overall": torch.tensor(0.0 if sample.is_dims else 1.0),
            "dims": dims,
            "dims_mask": dims_mask,
        }


def collate(items: list[dict]) -> dict:
    """Tiles of all images concatenated (tile counts may differ); texts as lists; targets stacked."""
    return {
        "pixel_values": torch.cat([it["pixel_values"] for it in items]),
        "tiles": [int(it["pixel_values"].shape[0]) for it in items],
        "questions": [it["question"] for it in items],
        "answers": [it["answer"] for it in items],
        "overall": torch.stack([it["overall"] for it in items]).float(),
        "is_overall": torch.stack([it["is_overall"] for it in items]),
        "dims": torch.stack([it["dims"] for it in items]),
        "dims_mask": torch.stack([it["dims_mask"] for it in items]),
    }


class EpochSampler(torch.utils.data.Sampler[int]):
    """A permutation that depends only on (seed, epoch): reproducible, and identical on every process
    (accelerate then gives each process its own share of every batch)."""

    def __init__(self, n: int, seed: int) -> None:
        self.n = n
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[int]:
        return iter(np.random.default_rng([self.seed, self.epoch, 7]).permutation(self.n).tolist())

    def __len__(self) -> int:
        return self.n


# ----------------------------------------------------------------------------------------- stage 1


class Stage1(nn.Module):
    """The module that trains in stage 1: registers only the trainable parameters, runs the full model.

    The HumanAesModel is kept as a plain attribute (not a submodule), so DDP/DeepSpeed, `.to()` and
    the resumable state see only the LoRA factors, the projector when trained, and the two heads.
    The parameters are the model's own objects, so training them trains the model.
    """

    def __init__(self, model: HumanAesModel, lambda_reg: float, mu_exp: float) -> None:
        super().__init__()
        object.__setattr__(self, "model", model)
        self.backbone_params = nn.ParameterList([p for p in model.backbone.parameters() if p.requires_grad])
        self.regression = model.heads.regression
        self.expert = model.heads.expert
        self.lambda_reg = lambda_reg
        self.mu_exp = mu_exp

    def forward(self, batch: dict) -> dict[str, torch.Tensor]:
        return stage1_loss(self.model, batch, self.lambda_reg, self.mu_exp)


def stage1_loss(
    model: HumanAesModel, batch: dict, lambda_reg: float, mu_exp: float
) -> dict[str, torch.Tensor]:
    """Eq. 7 per sample, averaged over the batch.

    CE (Eq. 3) is the mean over each sample's answer tokens. Overall-only samples add λ·(y − S_reg)²;
    12-dimension samples add μ·mean over their labelled nodes of (y_k − S_k)². The switch multiplies
    the other head's term by exactly 0, so its gradient from that sample is exactly 0.
    """
    out = model.training_forward(batch["pixel_values"], batch["tiles"], batch["questions"], batch["answers"])
    device_type = out.head_hidden.device.type
    with torch.autocast(device_type=device_type, enabled=False):  # heads in fp32, as in scoring
        h = out.head_hidden.float()
        reg = model.heads.regression(h)
        expert = model.heads.expert(h)
        exp_pred = torch.stack([expert[k] for k in KEYS], dim=-1)
        is_overall = batch["is_overall"].float()
        reg_loss = is_overall * (reg - batch["overall"].float()).square()
        mask = batch["dims_mask"].float()
        exp_loss = (mask * (exp_pred - batch["dims"].float()).square()).sum(-1) / mask.sum(-1).clamp(min=1)
        ce = out.ce.float()
        per_sample = ce + lambda_reg * reg_loss + mu_exp * exp_loss
        has_answer = (out.answer_tokens > 0).float()
        n_dims = (mask.sum(-1) > 0).float()
    return {
        "loss": per_sample.mean(),
        "ce": (ce * has_answer).sum().detach() / has_answer.sum().clamp(min=1),
        "reg": reg_loss.sum().detach() / is_overall.sum().clamp(min=1),
        "exp": exp_loss.sum().detach() / n_dims.sum().clamp(min=1),
    }


def _lr_lambda(total: int, warmup: int) -> Callable[[int], float]:
    """Linear warm-up, then cosine decay to zero; the scheduler's saved state is just its step."""

    def f(step: int) -> float:
        if warmup and step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, total - warmup)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return f


class _StopRequest:
    """First Ctrl-C: finish the current step, save a resumable state, stop. Second: stop at once."""

    def __init__(self, announce: bool) -> None:
        self.requested = False
        self.announce = announce
        self._previous: Any = None

    def __enter__(self) -> _StopRequest:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)

    def _handle(self, signum: int, frame: object) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        if self.announce:
            print(
                "\nstopping after this step and saving a resumable state (Ctrl-C again: stop without saving)",
                file=sys.stderr,
            )


# ----------------------------------------------------------------------------------------- stage 2


@torch.inference_mode()
def head_scores(
    model: HumanAesModel, samples: Sequence[Sample], tiles: TileConfig, batch_size: int
) -> torch.Tensor:
    """[N, 3] MetaVoter inputs (S'_LM, S_reg, S_exp) per sample, unclamped, from the scoring pass itself."""
    out = torch.empty(len(samples), 3)
    buckets: dict[int, list[tuple[int, torch.Tensor]]] = {}

    def run(n_tiles: int) -> None:
        items = buckets.pop(n_tiles)
        o = model.score_batch(torch.cat([p for _, p in items]), n_tiles)
        assert o.expert is not None
        lm = normalise_lm_score(lm_level_score(o.level_logits))
        scores = torch.stack([lm, o.regression, o.expert["overall"]], dim=-1)
        for row, (index, _) in enumerate(items):
            out[index] = scores[row]

    for item in decode_stream([s.path for s in samples], tiles):
        if item.error is not None or item.pixels is None:
            raise DataError(f"{samples[item.index].origin}: {samples[item.index].path}: {item.error}")
        n = int(item.pixels.shape[0])
        buckets.setdefault(n, []).append((item.index, item.pixels))
        if len(buckets[n]) >= batch_size:
            run(n)
    for n in list(buckets):
        run(n)
    return out


def train_metavoter(
    metavoter: MetaVoter,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    *,
    epochs: int,
    lr: float,
    batch_size: int,
    seed: int,
) -> list[float]:
    """Eq. 6: MAE of the MetaVoter on fixed head scores; BatchNorm in train mode, eval afterwards.

    Returns the mean loss of each epoch. Deterministic for a seed, so every process of a distributed
    run trains the identical MetaVoter without communicating.
    """
    if len(inputs) < 2:
        raise DataError("stage 2 needs at least two training samples with an overall score")
    device = next(metavoter.parameters()).device
    x, y = inputs.to(device).float(), targets.to(device).float()
    generator = torch.Generator().manual_seed(seed)
    for p in metavoter.parameters():
        p.requires_grad_(True)
    optimizer = torch.optim.Adam(metavoter.parameters(), lr=lr)
    batch_size = min(batch_size, len(x))
    history = []
    metavoter.train()
    with torch.enable_grad():
        for _ in range(epochs):
            order = torch.randperm(len(x), generator=generator).to(device)
            total, count = 0.0, 0
            for start in range(0, len(x), batch_size):
                idx = order[start : start + batch_size]
                if len(idx) < 2:  # BatchNorm cannot train on one sample
                    continue
                pred = metavoter(x[idx, 0], x[idx, 1], x[idx, 2])
                loss = (pred - y[idx]).abs().mean()
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                total += loss.item() * len(idx)
                count += len(idx)
            history.append(total / max(count, 1))
        _recalibrate_batchnorm(metavoter, x)
    metavoter.eval().requires_grad_(False)
    return history


@torch.no_grad()
def _recalibrate_batchnorm(metavoter: MetaVoter, x: torch.Tensor) -> None:
    """Set the BatchNorm statistics to those of all training inputs under the *final* weights.

    The head scores are far from zero-mean and vary little (S'_LM often by less than 0.01), so a small
    change of the first layer's weights moves the pre-BatchNorm mean by many standard deviations; the
    running averages, which trail the weights by about ten steps, then normalise wrongly in eval mode.
    One pass over the whole set with cumulative statistics gives eval mode exactly what training saw.
    """
    norms = [m for m in metavoter.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average: one batch gives exactly its statistics
    metavoter.train()
    metavoter(x[:, 0], x[:, 1], x[:, 2])
    for m, momentum in zip(norms, saved, strict=True):
        m.momentum = momentum


# ----------------------------------------------------------------------------------------- output


def export_checkpoint(
    model: HumanAesModel,
    out: Path,
    meta: CheckpointMeta,
    peft_model: nn.Module | None,
    *,
    rebuild_from: Path | None = None,
    dtype: torch.dtype = torch.float32,
) -> Path:
    """Write the trained model as a native checkpoint (LoRA as ``adapter/``, base weights unchanged).

    `rebuild_from`: for a 4-bit run, whose in-memory base weights are quantised, the base is loaded
    again unquantised from that checkpoint on the CPU and the trained LoRA factors, projector and heads
    are copied onto it, so the checkpoint holds the original 16-bit weights plus the adapter.
    """
    if rebuild_from is None:
        return save_checkpoint(model, out, meta, adapter=peft_model)
    from peft import get_peft_model, get_peft_model_state_dict, set_peft_model_state_dict

    clean, _ = load_model(rebuild_from, device=torch.device("cpu"), dtype=dtype)
    clean_peft = None
    if peft_model is not None:
        clean_peft = get_peft_model(clean.backbone, copy.deepcopy(peft_model.peft_config["default"]))
        set_peft_model_state_dict(clean_peft, get_peft_model_state_dict(peft_model))
    trained = {
        n: p.detach().to("cpu", dtype)
        for n, p in model.backbone.named_parameters()
        if p.requires_grad and "lora_" not in n
    }
    if trained:
        missing = set(trained) - {n for n, _ in clean.backbone.named_parameters()}
        if missing:
            raise HumanAesError(f"cannot map trained weights onto the base: {sorted(missing)[:3]}")
        clean.backbone.load_state_dict(trained, strict=False)
    clean.heads.load_state_dict({k: v.detach().cpu() for k, v in model.heads.state_dict().items()})
    return save_checkpoint(clean, out, meta, adapter=clean_peft)


# ------------------------------------------------------------------------------------------ resume


def _config_digest(config: TrainConfig) -> dict:
    return {k: v for k, v in config.to_dict().items() if k not in _OPERATIONAL}


def _save_state(accelerator, out: Path, progress: dict) -> Path:
    """A resumable state in OUT/resume, replaced atomically (a crash while saving keeps the previous one)."""
    final, tmp, old = out / RESUME_DIR, out / ".resume.partial", out / ".resume.old"
    if accelerator.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(tmp), safe_serialization=True)
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        (tmp / PROGRESS_FILE).write_text(json.dumps(progress, indent=1))
        shutil.rmtree(old, ignore_errors=True)
        if final.exists():
            final.rename(old)
        tmp.rename(final)
        shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()
    return final


def _read_progress(out: Path, config: TrainConfig, data_fp: str) -> dict:
    path = out / RESUME_DIR / PROGRESS_FILE
    try:
        progress = json.loads(path.read_text())
    except (OSError, ValueError):
        raise HumanAesError(f"{out}: nothing to resume (no readable {RESUME_DIR}/{PROGRESS_FILE})") from None
    if progress.get("data_fingerprint") != data_fp:
        raise HumanAesError(
            f"{out}: the saved run was trained on different data (fingerprint "
            f"{progress.get('data_fingerprint')}, now {data_fp}); resume with the same data or start again "
            "with --overwrite"
        )
    saved = progress.get("config", {})
    now = _config_digest(config)
    changed = sorted(k for k in now if k in saved and saved[k] != now[k])
    if changed:
        detail = ", ".join(f"{k}: {saved[k]!r} → {now[k]!r}" for k in changed)
        raise HumanAesError(f"{out}: cannot resume with changed settings ({detail})")
    return progress


def _prepare_out(config: TrainConfig) -> Path:
    out = Path(config.out).expanduser()
    if not config.out:
        raise HumanAesError("--out is required")
    if out.exists() and not out.is_dir():
        raise HumanAesError(f"{out} is a file; --out takes a directory")
    if config.resume:
        if not (out / RESUME_DIR / PROGRESS_FILE).is_file():
            raise HumanAesError(f"{out}: nothing to resume (no {RESUME_DIR}/ from an interrupted run)")
        return out
    if out.exists() and any(out.iterdir()):
        ours = is_checkpoint(out) or (out / RESUME_DIR).exists()
        if not ours:
            raise HumanAesError(f"{out} exists and is not empty; choose a new directory")
        if not config.overwrite:
            what = "a checkpoint" if is_checkpoint(out) else "an unfinished run (continue it with --resume)"
            raise HumanAesError(f"{out} already holds {what}; pass --overwrite to replace it")
    return out


# ------------------------------------------------------------------------------------------- train


@dataclass
class TrainResult:
    """What `train` leaves: the trained model in memory, the checkpoint written and the metrics."""

    model: HumanAesModel
    output: Path
    metrics: dict | None
    steps: int
    stage1_loss: float | None
    metavoter_loss: list[float]
    data: DataSet
    main_process: bool = True  # False on the other processes of a distributed run
    adapter: nn.Module | None = None  # the peft model whose LoRA layers are in `model` (None: no LoRA)


def training_dtype(config: TrainConfig) -> torch.dtype:
    """The dtype of the frozen base weights and of the autocast compute; trainable weights stay fp32.

    auto: bf16 on a GPU that has it, else fp16; fp32 on the CPU. Checked before anything is loaded.
    """
    on_gpu = torch.cuda.is_available() and not config.cpu
    if config.quantize and not on_gpu:
        raise HumanAesError("4-bit (QLoRA) training needs a CUDA GPU with bitsandbytes")
    if config.precision == "auto":
        if not on_gpu:
            return torch.float32
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if config.precision == "fp16" and not on_gpu:
        raise HumanAesError("fp16 training needs a GPU; on the CPU use --precision bf16 or fp32")
    dtype = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[config.precision]
    return torch.bfloat16 if config.quantize and dtype == torch.float32 else dtype


_MIXED_PRECISION = {torch.float32: "no", torch.float16: "fp16", torch.bfloat16: "bf16"}


def _fresh_heads(model: HumanAesModel, seed: int) -> None:
    """Re-initialise the heads (paper: new modules trained from scratch), with outputs starting at 0.5,
    the middle of the score range, so the first steps need not learn the mean."""
    from humanaes_core.model import Heads

    torch.manual_seed(seed)
    heads = Heads(model.heads.config)
    with torch.no_grad():
        heads.regression.linear.bias.fill_(0.5)
        heads.expert.leaves.bias.fill_(0.5)
    model.heads.load_state_dict(heads.state_dict())


def _apply_lora(model: HumanAesModel, config: TrainConfig) -> nn.Module | None:
    for p in model.backbone.parameters():
        p.requires_grad_(False)
    peft_model = None
    if config.lora_rank > 0:
        from peft import LoraConfig, get_peft_model

        names = "|".join(re.escape(t) for t in config.lora_targets)
        lora = LoraConfig(
            r=config.lora_rank,
            lora_alpha=config.lora_alpha,
            lora_dropout=config.lora_dropout,
            target_modules=rf"model\.language_model\..*\.({names})",
            bias="none",
        )
        peft_model = get_peft_model(model.backbone, lora)
    if config.train_projector:
        for p in model.backbone.model.multi_modal_projector.parameters():
            p.requires_grad_(True)
    for p in model.heads.parameters():
        p.requires_grad_(False)
    for head in (model.heads.regression, model.heads.expert):
        for p in head.parameters():
            p.requires_grad_(True)
    return peft_model


class Trainer:
    """One training run: set up once, then stage 1, stage 2 and the checkpoint (`run`)."""

    def __init__(self, config: TrainConfig, on_step: Callable[[int, dict], None] | None = None) -> None:
        from accelerate import Accelerator
        from accelerate.utils import set_seed

        self._stop_requested = threading.Event()
        config.validate()
        if not config.data or not config.base:
            raise HumanAesError("--data and --base are required")
        self.config = config
        self.on_step = on_step
        self.out = _prepare_out(config)
        self.base_path = resolve_model(config.base)
        if self.out.resolve() == self.base_path.resolve():
            raise HumanAesError("--out must not be the base checkpoint's directory")
        dtype = training_dtype(config)
        self.accelerator = acc = Accelerator(
            cpu=config.cpu,
            mixed_precision=_MIXED_PRECISION[dtype],
            gradient_accumulation_steps=config.grad_accum,
            step_scheduler_with_optimizer=False,
        )
        self.show = acc.is_main_process and not config.quiet
        set_seed(config.seed)

        self.data = load_data(
            config.data,
            split=config.split,
            allow_outside_root=config.allow_absolute_paths,
            allow_unknown_keys=config.allow_unknown_keys,
            check_images=config.check_images,
        )
        self.data_fp = self.data.fingerprint()
        self.train_samples, self.val_samples = split_train_val(
            self.data.samples, config.val_fraction, config.seed
        )
        progress = _read_progress(self.out, config, self.data_fp) if config.resume else None

        self.placement = Placement(acc.device, dtype, config.quantize)
        qconfig = bnb_4bit_config(self.placement) if config.quantize else None
        self.model, self.base_meta = load_model(
            self.base_path, device=acc.device, dtype=self.placement.dtype, quantization_config=qconfig
        )
        if config.reset_heads:
            _fresh_heads(self.model, config.seed)
        self.peft_model = _apply_lora(self.model, config)
        if config.train_projector and self.placement.dtype != torch.float32:
            self._projector.float()  # optimizer updates in fp32; back to the base dtype after stage 1
        self.max_tiles = config.max_tiles or self.base_meta.image.max_tiles
        self.tiles = tile_config_for(self.base_meta, self.max_tiles, fast_decode=True)

        stage1 = Stage1(self.model, config.lambda_reg, config.mu_exp)
        heads = [*stage1.regression.parameters(), *stage1.expert.parameters()]
        head_ids = {id(p) for p in heads}
        body = [p for p in stage1.backbone_params if id(p) not in head_ids]
        groups = [{"params": body, "lr": config.lr}] if body else []
        groups.append({"params": heads, "lr": config.head_lr or config.lr})
        optimizer = torch.optim.AdamW(groups, lr=config.lr, weight_decay=config.weight_decay)
        dataset = TrainingSet(self.train_samples, self.tiles, self.model.prompt, config.seed)
        loader = torch.utils.data.DataLoader(
            dataset,
            batch_size=config.batch_size,
            sampler=EpochSampler(len(dataset), config.seed),
            collate_fn=collate,
            num_workers=config.workers,
            generator=torch.Generator().manual_seed(config.seed),  # keeps the global RNG out of batching
        )
        self.stage1, self.optimizer, self.loader = acc.prepare(stage1, optimizer, loader)
        total = math.ceil(len(self.loader) / config.grad_accum) * config.epochs
        self.total_steps = min(total, config.max_steps) if config.max_steps else total
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, _lr_lambda(self.total_steps, round(config.warmup_ratio * self.total_steps))
        )
        acc.register_for_checkpointing(self.scheduler)

        self.epoch, self.batches_done, self.step, self.stage = 0, 0, 0, "stage1"
        self.last_loss: float | None = None
        if progress is not None:
            acc.load_state(str(self.out / RESUME_DIR))
            self.epoch, self.batches_done = progress["epoch"], progress["batches_done"]
            self.step, self.stage = progress["global_step"], progress["stage"]
            if self.show:
                print(
                    f"resuming: {self.stage}, epoch {self.epoch + 1}, step {self.step}/{self.total_steps}",
                    file=sys.stderr,
                )
        elif acc.is_main_process:
            shutil.rmtree(self.out / RESUME_DIR, ignore_errors=True)

    @property
    def _projector(self) -> nn.Module:
        return self.model.backbone.model.multi_modal_projector

    def _snapshot(self, stage: str) -> dict:
        return {
            "stage": stage,
            "epoch": self.epoch,
            "batches_done": self.batches_done,
            "global_step": self.step,
            "config": _config_digest(self.config),
            "data_fingerprint": self.data_fp,
            "version": __version__,
        }

    def request_stop(self) -> None:
        """Ask a running stage 1 to stop after the current step, saving a resumable state (as Ctrl-C
        does); safe to call from another thread, e.g. an app's cancel button."""
        self._stop_requested.set()

    def close(self) -> None:
        """Forget accelerate's process-wide settings so the same process can train again."""
        forget_accelerator_settings()

    def __enter__(self) -> Trainer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def run(self) -> TrainResult:
        if self.stage == "stage1":
            self.run_stage1()
            # Stage 1 is the expensive part: keep it until the checkpoint exists.
            _save_state(self.accelerator, self.out, self._snapshot("stage2"))
        try:
            history = self.run_stage2()
        except KeyboardInterrupt:
            raise TrainingInterrupted(
                f"interrupted in stage 2; stage 1 is saved in {self.out / RESUME_DIR}. "
                "Continue with the same command plus --resume (re-runs stage 2 only)."
            ) from None
        metrics = self.finish(history)
        return TrainResult(
            self.model,
            self.out,
            metrics,
            self.step,
            self.last_loss,
            history,
            self.data,
            self.accelerator.is_main_process,
            self.peft_model,
        )

    def run_stage1(self) -> None:
        """LoRA + regression/expert heads with Eq. 7; Ctrl-C saves a resumable state and stops."""
        from tqdm import tqdm

        acc, config, model = self.accelerator, self.config, self.model
        if config.gradient_checkpointing:
            set_activation_checkpointing(model, True)
        model.train()
        model.backbone.model.vision_tower.eval()
        model.heads.metavoter.eval()
        seen, started = 0, time.perf_counter()
        bar = tqdm(
            total=self.total_steps, initial=self.step, disable=not self.show, unit="step", desc="stage 1"
        )
        with _StopRequest(announce=self.show) as stop, bar:
            while self.epoch < config.epochs and self.step < self.total_steps:
                self.loader.set_epoch(self.epoch)
                batches = self.loader
                if self.batches_done:
                    batches = acc.skip_first_batches(self.loader, self.batches_done)
                for batch in batches:
                    with acc.accumulate(self.stage1):
                        losses = self.stage1(batch)
                        acc.backward(losses["loss"])
                        if acc.sync_gradients and config.max_grad_norm > 0:
                            acc.clip_grad_norm_(self.stage1.parameters(), config.max_grad_norm)
                        self.optimizer.step()
                        self.optimizer.zero_grad(set_to_none=True)
                    self.batches_done += 1
                    seen += len(batch["tiles"]) * acc.num_processes
                    if not acc.sync_gradients:
                        continue
                    if not acc.optimizer_step_was_skipped:
                        self.scheduler.step()
                    self.step += 1
                    logs = {k: v.item() for k, v in losses.items()} | {"lr": self.scheduler.get_last_lr()[0]}
                    self.last_loss = logs["loss"]
                    bar.update(1)
                    rate = seen / (time.perf_counter() - started)
                    bar.set_postfix(
                        loss=f"{logs['loss']:.4f}", lr=f"{logs['lr']:.2e}", samples_s=f"{rate:.1f}"
                    )
                    if self.on_step is not None:
                        self.on_step(self.step, logs)
                    if _stop_everywhere(acc, stop.requested or self._stop_requested.is_set()):
                        where = _save_state(acc, self.out, self._snapshot("stage1"))
                        raise TrainingInterrupted(
                            f"interrupted at step {self.step}/{self.total_steps}; resumable state saved in "
                            f"{where}. Continue with the same command plus --resume."
                        )
                    if self.step >= self.total_steps:
                        break
                    if config.save_every and self.step % config.save_every == 0:
                        _save_state(acc, self.out, self._snapshot("stage1"))
                else:
                    self.epoch, self.batches_done = self.epoch + 1, 0
        if config.gradient_checkpointing:
            set_activation_checkpointing(model, False)

    def run_stage2(self) -> list[float]:
        """Head scores of the training set (split across processes, then shared), MetaVoter on them."""
        from accelerate.utils import gather_object

        acc, model = self.accelerator, self.model
        model.eval()
        if self.config.train_projector:
            self._projector.to(self.placement.dtype)
        labelled = [s for s in self.train_samples if s.overall is not None]
        mine = range(acc.process_index, len(labelled), acc.num_processes)
        if self.show:
            print(f"stage 2: scoring {len(labelled)} training photos for the MetaVoter", file=sys.stderr)
        scores = head_scores(model, [labelled[i] for i in mine], self.tiles, 2 * self.config.batch_size)
        pairs = list(zip(mine, scores.tolist(), strict=True))
        if acc.num_processes > 1:
            pairs = sorted(gather_object(pairs))
        return train_metavoter(
            model.heads.metavoter,
            torch.tensor([f for _, f in pairs]),
            torch.tensor([labelled[i].overall for i, _ in pairs], dtype=torch.float32),
            epochs=self.config.metavoter_epochs,
            lr=self.config.metavoter_lr,
            batch_size=self.config.metavoter_batch_size,
            seed=self.config.seed,
        )

    def finish(self, metavoter_history: list[float]) -> dict | None:
        """Validation metrics (main process) and the checkpoint with its provenance."""
        from humanaes_core.evaluation import evaluate_samples, json_safe

        acc, config = self.accelerator, self.config
        metrics = None
        if acc.is_main_process:
            if self.val_samples:
                scorer = Scorer(
                    self.model,
                    self.base_meta,
                    self.placement,
                    self.out,
                    "in-memory",
                    max_tiles=self.max_tiles,
                    batch_size=2 * config.batch_size,
                )
                metrics = json_safe(evaluate_samples(scorer, self.val_samples, progress=False)["summary"])
            export_checkpoint(
                self.model,
                self.out,
                self._output_meta(metavoter_history, metrics),
                self.peft_model,
                rebuild_from=self.base_path if config.quantize else None,
                dtype=self.placement.dtype,
            )
        acc.wait_for_everyone()
        acc.end_training()
        return metrics

    def _output_meta(self, metavoter_history: list[float], metrics: dict | None) -> CheckpointMeta:
        import peft
        import transformers

        config, base = self.config, self.base_meta
        provenance = {
            "source": "humanaes-train",
            "base": {
                "model": str(config.base),
                "fingerprint": fingerprint(self.base_path),
                "name": base.name,
            },
            "training": _config_digest(config),
            "processes": self.accelerator.num_processes,
            "data": {
                "path": str(config.data),
                "format": self.data.format,
                "fingerprint": self.data_fp,
                "train_samples": len(self.train_samples),
                "val_samples": len(self.val_samples),
                **{k: v for k, v in self.data.counts().items() if k != "samples"},
            },
            "stage1": {"optimizer_steps": self.step, "final_loss": self.last_loss},
            "stage2": {"metavoter_epochs": len(metavoter_history), "mae_per_epoch": metavoter_history},
            "metrics": {"validation": metrics} if metrics else None,
            "lora": "adapter/: merged at load time; kept unmerged on a 4-bit base"
            if config.lora_rank
            else None,
            "versions": {
                "humanaes": __version__,
                "torch": torch.__version__,
                "transformers": transformers.__version__,
                "peft": peft.__version__,
            },
        }
        return CheckpointMeta(
            heads=base.heads,
            prompt=base.prompt,
            image=base.image,
            name=config.name or f"{base.name}-finetuned",
            provenance=provenance,
        )


def train(config: TrainConfig, *, on_step: Callable[[int, dict], None] | None = None) -> TrainResult:
    """Run both stages and write the checkpoint to `config.out` (see the module docstring).

    `on_step(step, logs)` is called after every optimizer step with the losses and learning rate.
    """
    try:
        return Trainer(config, on_step).run()
    finally:  # also when the constructor fails half-way through setting accelerate up
        forget_accelerator_settings()


def forget_accelerator_settings() -> None:
    """accelerate keeps one process-wide AcceleratorState and refuses a second Accelerator with other
    settings (precision, CPU); a program that trains twice (an app, the tests) must start afresh. The
    process group (PartialState) is kept, so this is harmless in a distributed run too."""
    from accelerate.state import AcceleratorState

    reset = getattr(AcceleratorState, "_reset_state", None)
    if reset is not None:
        reset(reset_partial_state=False)


def set_activation_checkpointing(model: HumanAesModel, on: bool) -> None:
    """Recompute the language model's activations in the backward pass (non-reentrant, so LoRA needs
    no input gradients); transformers renamed gradient_* to activation_checkpointing_* in 5.x."""
    lm = model.backbone.model.language_model
    if on:
        enable = getattr(lm, "activation_checkpointing_enable", None)
        if enable is not None:
            enable({"use_reentrant": False})
        else:
            lm.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    else:
        disable = getattr(lm, "activation_checkpointing_disable", None) or lm.gradient_checkpointing_disable
        disable()


def _stop_everywhere(accelerator, requested: bool) -> bool:
    """Whether any process got Ctrl-C: all must stop at the same step to save a consistent state."""
    if accelerator.num_processes == 1:
        return requested
    flag = torch.tensor([1.0 if requested else 0.0], device=accelerator.device)
    return bool(accelerator.gather(flag).max() > 0)
