"""Personal taste in the hierarchy: fit how Overall weighs Face, Appearance and Environment to ratings.

A photographer's stars are overall-only labels. Stage 1 trains the regression head on them and the
MetaVoter learns from them in stage 2, but the expert head's nodes never see them, so without this step
the A–L breakdown and its "why" would keep the base model's weighting after a personal fine-tune. Here
the expert head's root FFN (F, J, K → L) is fitted to the overall labels with its children frozen: the
photographer's ratings change how the three groups add up, never what Face or Environment measure.
Stage 2 then trains the MetaVoter on the refitted L.

`TasteReport` is what training tells the photographer at the end: held-out agreement with their ratings
before and after (SRCC, mean absolute error), and how the weight of F, J and K moved.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass

import torch

from humanaes_core.model import ExpertHead
from humanaes_core.schema import BY_KEY

__all__ = ["TASTE_MODES", "TasteReport", "fit_overall_weighting", "taste_applies"]

TASTE_MODES = ("auto", "on", "off")
_ROOT = "overall"
#: How far the refit may wander from the base weights (an L2 pull toward them): with a few dozen
#: ratings the FFN could otherwise memorise them.
_ANCHOR = 1e-3


def taste_applies(mode: str, counts: Mapping[str, int]) -> bool:
    """`auto`: when the data has overall-only labels and no 12-dimension ones (a photographer's ratings;
    HumanBeauty's 12-dimension labels supervise L directly in stage 1)."""
    if mode not in TASTE_MODES:
        raise ValueError(f"taste must be one of {', '.join(TASTE_MODES)}, not {mode!r}")
    if mode != "auto":
        return mode == "on"
    return (
        counts.get("overall_only", 0) > 0 and counts.get("twelve_dim", 0) + counts.get("partial_dims", 0) == 0
    )


def fit_overall_weighting(
    expert: ExpertHead, children: torch.Tensor, targets: torch.Tensor, *, steps: int, lr: float, seed: int
) -> list[float]:
    """Fit the root FFN (F, J, K → L) to `targets` by MSE; every other expert weight stays as it is.

    `children` [N, 3] are the photos' F, J, K scores (schema order) from the trained model. Full-batch
    Adam for `steps` steps, deterministic for a seed; returns the loss every 10 steps.
    """
    if len(children) < 2:
        raise ValueError("fitting the overall weighting needs at least two rated photos")
    torch.manual_seed(seed)
    ffn = expert.parents[_ROOT]
    device = next(ffn.parameters()).device
    x, y = children.to(device).float(), targets.to(device).float()
    start = [p.detach().clone() for p in ffn.parameters()]
    for p in expert.parameters():
        p.requires_grad_(False)
    for p in ffn.parameters():
        p.requires_grad_(True)
    optimizer = torch.optim.Adam(ffn.parameters(), lr=lr)
    history = []
    with torch.enable_grad():
        for step in range(steps):
            pred = expert.parent_from_children(_ROOT, x)
            anchor = sum(((p - p0) ** 2).sum() for p, p0 in zip(ffn.parameters(), start, strict=True))
            loss = (pred - y).square().mean() + _ANCHOR * anchor
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if step % 10 == 0 or step == steps - 1:
                history.append(loss.item())
    for p in ffn.parameters():
        p.requires_grad_(False)
    return history


@dataclass(frozen=True)
class TasteReport:
    """Before/after of a personal fine-tune, as training reports it."""

    rated: int  # training photos the weighting was fitted on
    held_out: int  # photos kept aside for `before` and `after`
    before: dict[str, float] | None  # {"srcc", "mae"} of the base model on the held-out ratings
    after: dict[str, float] | None  # the same for the trained model
    weights_before: dict[str, float]  # share of F, J, K in Overall, base model
    weights_after: dict[str, float]  # the same after training

    def to_dict(self) -> dict:
        return asdict(self)

    def lines(self) -> list[str]:
        """What a photographer reads: agreement with their ratings, then how the weighting moved."""
        out = []
        if self.before and self.after:
            out.append(
                f"On {self.held_out} rated photo{'' if self.held_out == 1 else 's'} kept aside, agreement "
                "with "
                f"your ratings went from {self.before['srcc']:+.2f} to {self.after['srcc']:+.2f} (rank "
                f"correlation), the average miss from {self.before['mae']:.3f} to {self.after['mae']:.3f}."
            )
        moves = ", ".join(
            f"{BY_KEY[k].name} {100 * self.weights_before[k]:.0f} % → {100 * self.weights_after[k]:.0f} %"
            for k in self.weights_before
        )
        out.append(f"How Overall weighs its parts now: {moves}.")
        gained = max(self.weights_after, key=lambda k: self.weights_after[k] - self.weights_before[k])
        if self.weights_after[gained] - self.weights_before[gained] >= 0.01:
            out.append(f"Your ratings lean more on {BY_KEY[gained].name} than the base model did.")
        return out
