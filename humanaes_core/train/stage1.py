"""Stage 1 (paper Eq. 7): LoRA on the language model, and the regression and expert heads.

Cross-entropy on the answer tokens, plus λ·MSE of the regression head for overall-only samples or
μ·MSE over every expert-head node for 12-dimension samples. The switch is a per-sample weight of
exactly 0 or 1, so a sample's gradient reaches only its own head while every parameter stays in the
graph (DDP needs that) — mixed batches just work.

`Stage1` is the module handed to `accelerator.prepare`: it holds only the trainable parameters (LoRA
factors, heads, optionally the projector), the frozen backbone stays outside it, so DDP synchronises
and the resumable state stores just what changes.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable

import torch
from torch import nn

from humanaes_core.model import Heads, HumanAesModel
from humanaes_core.schema import KEYS
from humanaes_core.train.config import TrainConfig

__all__ = [
    "Stage1",
    "apply_lora",
    "fresh_heads",
    "lr_schedule",
    "set_activation_checkpointing",
    "stage1_loss",
    "stage1_optimizer",
]


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


def stage1_optimizer(stage1: Stage1, config: TrainConfig) -> torch.optim.AdamW:
    """AdamW with the heads in their own group, so `head_lr` can differ from the LoRA/projector `lr`."""
    heads = [*stage1.regression.parameters(), *stage1.expert.parameters()]
    head_ids = {id(p) for p in heads}
    body = [p for p in stage1.backbone_params if id(p) not in head_ids]
    groups = [{"params": body, "lr": config.lr}] if body else []
    groups.append({"params": heads, "lr": config.head_lr or config.lr})
    return torch.optim.AdamW(groups, lr=config.lr, weight_decay=config.weight_decay)


def lr_schedule(total: int, warmup: int) -> Callable[[int], float]:
    """Linear warm-up, then cosine decay to zero; the scheduler's saved state is just its step."""

    def f(step: int) -> float:
        if warmup and step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, total - warmup)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return f


def fresh_heads(model: HumanAesModel, seed: int) -> None:
    """Re-initialise the heads (paper: new modules trained from scratch), with outputs starting at 0.5,
    the middle of the score range, so the first steps need not learn the mean."""
    torch.manual_seed(seed)
    heads = Heads(model.heads.config, model.heads.fields)
    with torch.no_grad():
        heads.regression.linear.bias.fill_(0.5)
        heads.expert.leaves.bias.fill_(0.5)
    model.heads.load_state_dict(heads.state_dict())


def apply_lora(model: HumanAesModel, config: TrainConfig) -> nn.Module | None:
    """Freeze the model, inject LoRA into the language model's projections (`config.lora_targets`) and
    unfreeze what stage 1 trains: the LoRA factors, the regression and expert heads, the projector when
    asked. Returns the peft model (None without LoRA); the MetaVoter stays frozen until stage 2."""
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
