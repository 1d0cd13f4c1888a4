"""Two-stage training of HumanAesExpert (paper section 4, "Training"), on one device or many.

`Trainer` sets a run up once (data, model, LoRA, optimizer), then runs stage 1 (`stage1`: LoRA +
regression/expert heads, Eq. 7), stage 2 (`stage2`: the MetaVoter, Eq. 6) and writes the checkpoint.
Ctrl-C or `request_stop` during stage 1 saves a resumable state in ``OUT/resume``; the same settings
plus `resume` continue from it, bit-identically.

The loop is plain `accelerate`: `accelerate launch` (DDP, or DeepSpeed ZeRO-2 with the config in
`training/`) runs it unchanged.

Output: a native checkpoint directory that `load_scorer` loads alone. The LoRA weights are kept as
``adapter/`` beside the unchanged base weights (merged at load time in full precision, applied on top
of a 4-bit base unmerged), so a QLoRA-trained adapter meets the weights it was trained against. The
training config, the data set's labels fingerprint and the final metrics go into ``humanaes.json``
(provenance).
"""

from __future__ import annotations

import copy
import json
import math
import shutil
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from humanaes_core import __version__
from humanaes_core.data import DataSet, load_data, split_train_val
from humanaes_core.errors import HumanAesError
from humanaes_core.model import (
    CheckpointMeta,
    HumanAesModel,
    Placement,
    bnb_4bit_config,
    checkpoint_fingerprint,
    is_checkpoint,
    load_model,
    save_checkpoint,
)
from humanaes_core.scoring import Scorer, tile_config_for
from humanaes_core.sources import resolve_model
from humanaes_core.train.config import TrainConfig, config_digest
from humanaes_core.train.dataset import ROOT_CHILDREN, EpochSampler, TrainingSet, collate, head_scores
from humanaes_core.train.stage1 import (
    Stage1,
    apply_lora,
    fresh_heads,
    lr_schedule,
    set_activation_checkpointing,
    stage1_optimizer,
)
from humanaes_core.train.stage2 import train_metavoter
from humanaes_core.train.taste import TasteReport, fit_overall_weighting, taste_applies

__all__ = [
    "TrainResult",
    "Trainer",
    "TrainingInterrupted",
    "export_checkpoint",
    "forget_accelerator_settings",
    "train",
    "training_dtype",
]

RESUME_DIR = "resume"
PROGRESS_FILE = "progress.json"


class TrainingInterrupted(HumanAesError):
    """Ctrl-C during training: a resumable state was saved (the message says where)."""


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


def _read_progress(out: Path, config: TrainConfig, labels_fingerprint: str) -> dict:
    """The saved position of an interrupted run, refused when its data or result-changing settings differ."""
    path = out / RESUME_DIR / PROGRESS_FILE
    try:
        progress = json.loads(path.read_text())
    except (OSError, ValueError):
        raise HumanAesError(f"{out}: nothing to resume (no readable {RESUME_DIR}/{PROGRESS_FILE})") from None
    if progress.get("data_fingerprint") != labels_fingerprint:
        raise HumanAesError(
            f"{out}: the saved run was trained on different data (fingerprint "
            f"{progress.get('data_fingerprint')}, now {labels_fingerprint}); resume with the same data or "
            "start again with --overwrite"
        )
    saved = progress.get("config", {})
    now = config_digest(config)
    changed = sorted(k for k in now if k in saved and saved[k] != now[k])
    if changed:
        detail = ", ".join(f"{k}: {saved[k]!r} → {now[k]!r}" for k in changed)
        raise HumanAesError(f"{out}: cannot resume with changed settings ({detail})")
    return progress


def _prepare_out(config: TrainConfig) -> Path:
    """The output folder, checked before anything loads: never someone else's files, never a finished
    checkpoint or an unfinished run without --overwrite."""
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
    taste: TasteReport | None = None  # before/after of a personal fine-tune (`TrainConfig.taste`)


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
        self.accelerator = Accelerator(
            cpu=config.cpu,
            mixed_precision=_MIXED_PRECISION[dtype],
            gradient_accumulation_steps=config.grad_accum,
            step_scheduler_with_optimizer=False,
        )
        self.show = self.accelerator.is_main_process and not config.quiet
        set_seed(config.seed)

        self.data = load_data(
            config.data,
            split=config.split,
            allow_outside_root=config.allow_absolute_paths,
            allow_unknown_keys=config.allow_unknown_keys,
            check_images=config.check_images,
        )
        if self.show and self.data.skipped:  # e.g. ratings HumanAes wrote itself: never trained on
            print(self.data.skipped_text(), file=sys.stderr)
        self.labels_fingerprint = self.data.labels_fingerprint()
        self.train_samples, self.val_samples = split_train_val(
            self.data.samples, config.val_fraction, config.seed
        )
        progress = _read_progress(self.out, config, self.labels_fingerprint) if config.resume else None
        self.taste = taste_applies(config.taste, self.data.counts())
        self.held_out_before: dict[str, float] | None = None
        self.weights: tuple[dict[str, float], dict[str, float]] | None = None  # F, J, K shares before/after
        self._labelled_count = 0
        self._load_model(dtype)
        self._prepare_stage1()
        self.epoch, self.batches_done, self.step, self.stage = 0, 0, 0, "stage1"
        self.last_loss: float | None = None
        if progress is not None:
            self._restore(progress)
        elif self.accelerator.is_main_process:
            shutil.rmtree(self.out / RESUME_DIR, ignore_errors=True)

    def _load_model(self, dtype: torch.dtype) -> None:
        """The base model on this process's device, with fresh heads if asked and LoRA injected."""
        config = self.config
        self.placement = Placement(self.accelerator.device, dtype, config.quantize)
        qconfig = bnb_4bit_config(self.placement) if config.quantize else None
        self.model, self.base_meta = load_model(
            self.base_path,
            device=self.accelerator.device,
            dtype=self.placement.dtype,
            quantization_config=qconfig,
        )
        self.max_tiles = config.max_tiles or self.base_meta.image.max_tiles
        if self.taste and self.val_samples and self.accelerator.is_main_process:
            self.held_out_before = self._held_out_figures()  # the base model, before anything trains
        if config.reset_heads:
            fresh_heads(self.model, config.seed)
        self.peft_model = apply_lora(self.model, config)
        if config.train_projector and self.placement.dtype != torch.float32:
            self._projector.float()  # optimizer updates in fp32; back to the base dtype after stage 1
        self.tiles = tile_config_for(self.base_meta, self.max_tiles, fast_decode=True)

    def _prepare_stage1(self) -> None:
        """Stage 1's module, optimizer, batches and learning-rate schedule, prepared by accelerate."""
        acc, config = self.accelerator, self.config
        stage1 = Stage1(self.model, config.lambda_reg, config.mu_exp)
        dataset = TrainingSet(self.train_samples, self.tiles, self.model.prompt, config.seed)
        loader = torch.utils.data.DataLoader(
            dataset,
            batch_size=config.batch_size,
            sampler=EpochSampler(len(dataset), config.seed),
            collate_fn=collate,
            num_workers=config.workers,
            generator=torch.Generator().manual_seed(config.seed),  # keeps the global RNG out of batching
        )
        self.stage1, self.optimizer, self.loader = acc.prepare(
            stage1, stage1_optimizer(stage1, config), loader
        )
        total = math.ceil(len(self.loader) / config.grad_accum) * config.epochs
        self.total_steps = min(total, config.max_steps) if config.max_steps else total
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lr_schedule(self.total_steps, round(config.warmup_ratio * self.total_steps))
        )
        acc.register_for_checkpointing(self.scheduler)

    def _restore(self, progress: dict) -> None:
        """Continue where the saved state in OUT/resume stopped: weights, optimizer, schedule, position."""
        self.accelerator.load_state(str(self.out / RESUME_DIR))
        self.epoch, self.batches_done = progress["epoch"], progress["batches_done"]
        self.step, self.stage = progress["global_step"], progress["stage"]
        if self.show:
            print(
                f"resuming: {self.stage}, epoch {self.epoch + 1}, step {self.step}/{self.total_steps}",
                file=sys.stderr,
            )

    @property
    def _projector(self) -> nn.Module:
        return self.model.backbone.model.multi_modal_projector

    def _snapshot(self, stage: str) -> dict:
        return {
            "stage": stage,
            "epoch": self.epoch,
            "batches_done": self.batches_done,
            "global_step": self.step,
            "config": config_digest(self.config),
            "data_fingerprint": self.labels_fingerprint,
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
            self._taste_report(metrics),
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
        rows = torch.tensor([f for _, f in pairs])
        targets = torch.tensor([labelled[i].overall for i, _ in pairs], dtype=torch.float32)
        self._labelled_count = len(labelled)
        if self.taste:
            rows[:, 2] = self._fit_taste(rows[:, 3:], targets)
        return train_metavoter(
            model.heads.metavoter,
            rows[:, :3],
            targets,
            epochs=self.config.metavoter_epochs,
            lr=self.config.metavoter_lr,
            batch_size=self.config.metavoter_batch_size,
            seed=self.config.seed,
        )

    def _fit_taste(self, children: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Refit Overall's weighting of F, J, K to the ratings (`taste`); the new S_exp of every photo.

        Deterministic on the gathered scores, so every process fits the identical FFN."""
        from humanaes_core.attribution import HeadsAttributor, dimension_weights

        expert = self.model.heads.expert
        rows = [dict(zip(ROOT_CHILDREN, r, strict=True)) for r in children.tolist()]
        before = dimension_weights(HeadsAttributor(self.model.heads), rows)
        if self.show:
            print(f"fitting how Overall weighs its parts to {len(rows)} ratings", file=sys.stderr)
        fit_overall_weighting(
            expert,
            children,
            targets,
            steps=self.config.taste_steps,
            lr=self.config.taste_lr,
            seed=self.config.seed,
        )
        self.weights = (before, dimension_weights(HeadsAttributor(self.model.heads), rows))
        with torch.no_grad():
            device = next(expert.parameters()).device
            return expert.parent_from_children("overall", children.to(device).float()).cpu()

    def _held_out_figures(self, summary: bool = False) -> dict:
        """The model as it is now, evaluated on the held-out samples: the whole summary, or just SRCC
        and MAE (the taste report's before)."""
        from humanaes_core.evaluation import evaluate_samples, json_safe

        scorer = Scorer(
            self.model,
            self.base_meta,
            self.placement,
            self.out,
            "in-memory",
            max_tiles=self.max_tiles,
            batch_size=2 * self.config.batch_size,
        )
        report = json_safe(evaluate_samples(scorer, self.val_samples, progress=False)["summary"])
        return report if summary else {k: report[k] for k in ("srcc", "mae")}

    def _taste_report(self, metrics: dict | None) -> TasteReport | None:
        if self.weights is None:
            return None
        after = None if metrics is None else {k: metrics[k] for k in ("srcc", "mae")}
        return TasteReport(
            self._labelled_count, len(self.val_samples), self.held_out_before, after, *self.weights
        )

    def finish(self, metavoter_history: list[float]) -> dict | None:
        """Validation metrics (main process) and the checkpoint with its provenance."""
        acc, config = self.accelerator, self.config
        metrics = None
        if acc.is_main_process:
            if self.val_samples:
                metrics = self._held_out_figures(summary=True)
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
                "fingerprint": checkpoint_fingerprint(self.base_path),
                "name": base.name,
            },
            "training": config_digest(config),
            "processes": self.accelerator.num_processes,
            "data": {
                "path": str(config.data),
                "format": self.data.format,
                "fingerprint": self.labels_fingerprint,
                "train_samples": len(self.train_samples),
                "val_samples": len(self.val_samples),
                **{k: v for k, v in self.data.counts().items() if k != "samples"},
            },
            "stage1": {"optimizer_steps": self.step, "final_loss": self.last_loss},
            "stage2": {"metavoter_epochs": len(metavoter_history), "mae_per_epoch": metavoter_history},
            "taste": None if (taste := self._taste_report(metrics)) is None else taste.to_dict(),
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
            open_fields=base.open_fields,
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


def _stop_everywhere(accelerator, requested: bool) -> bool:
    """Whether any process got Ctrl-C: all must stop at the same step to save a consistent state."""
    if accelerator.num_processes == 1:
        return requested
    flag = torch.tensor([1.0 if requested else 0.0], device=accelerator.device)
    return bool(accelerator.gather(flag).max() > 0)
