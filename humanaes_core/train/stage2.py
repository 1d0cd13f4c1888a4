"""Stage 2 (paper Eq. 6): the MetaVoter, trained alone on fixed head scores with MAE.

Everything else is frozen; the inputs are the three head scores of the training set, computed once
(`dataset.head_scores`). Deterministic for a seed, so every process of a distributed run trains the
identical MetaVoter without communicating.
"""

from __future__ import annotations

import torch
from torch import nn

from humanaes_core.data import DataError
from humanaes_core.model import MetaVoter

__all__ = ["train_metavoter"]


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
