"""How much each dimension weighs in its parent, measured over a set of photos.

A parent dimension is a small non-linear FFN of its children, so it has no single "weight" per child.
What a photographer means by "my Overall leans on Environment" is how far Environment moves Overall
across their photos: the mean absolute Shapley value of each child, each photo against the set itself,
as shares that add up to 1. Training reports it before and after a personal fine-tune.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch

from humanaes_core.attribution.heads import HeadsAttributor
from humanaes_core.attribution.shapley import shapley_over_set
from humanaes_core.schema import BY_KEY, PARENT_KEYS

__all__ = ["dimension_weights"]

#: Photos (and references) the weights are measured on; evenly spread when a set is larger.
MAX_ROWS = 128


def dimension_weights(
    attributor: HeadsAttributor, expert_scores: Sequence[Mapping[str, float]], parent: str = "overall"
) -> dict[str, float]:
    """Each child's share of how far `parent` moves across `expert_scores` (expert-head outputs per
    photo, e.g. cards' `expert_raw`); the shares add up to 1 (all equal when nothing moves)."""
    if parent not in PARENT_KEYS:
        raise ValueError(f"{parent!r} is not a parent dimension; choose one of {', '.join(PARENT_KEYS)}")
    keys = BY_KEY[parent].children
    if not expert_scores:
        raise ValueError("no photos to measure the weights on")
    rows = torch.tensor([[float(s[k]) for k in keys] for s in expert_scores], dtype=torch.float64)
    if len(rows) > MAX_ROWS:
        rows = rows[torch.linspace(0, len(rows) - 1, MAX_ROWS).round().long()]
    totals = torch.zeros(len(keys), dtype=torch.float64)
    for x in rows:
        phis = shapley_over_set(lambda z: attributor.parent_score(parent, z), x.tolist(), rows)
        totals += torch.tensor(phis, dtype=torch.float64).abs()
    total = float(totals.sum())
    if total <= 0.0:
        return dict.fromkeys(keys, 1.0 / len(keys))
    return {k: float(v) / total for k, v in zip(keys, totals, strict=True)}
