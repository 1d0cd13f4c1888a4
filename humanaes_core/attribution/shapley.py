"""Exact Shapley values of a small function's inputs, against one reference point or a reference set.

The functions HumanAes explains have at most five inputs (a parent's children, or the three scores the
final vote reads), so all 2ⁿ coalitions are evaluated in one batch: no sampling, no gradient
approximation, and the values add up exactly (efficiency) to the change being explained.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch

__all__ = ["coalition_shapley", "coalition_values", "shapley_over_set", "shapley_values"]

Function = Callable[[torch.Tensor], torch.Tensor]  # [m, n] → [m]


def _masks(n: int) -> torch.Tensor:
    """Row `mask` takes input j from the photo when bit j of `mask` is set, else from the reference."""
    return torch.tensor([[(mask >> j) & 1 for j in range(n)] for mask in range(1 << n)], dtype=torch.float64)


def coalition_shapley(values: Sequence[float], n: int) -> list[float]:
    """Shapley values from the value of every coalition (`values[mask]`, bit j = input j present).

    Efficiency holds for any `values`: the result sums to ``values[-1] − values[0]`` up to rounding.
    """
    if len(values) != 1 << n:
        raise ValueError(f"{n} inputs need {1 << n} coalition values, got {len(values)}")
    weights = [math.factorial(s) * math.factorial(n - s - 1) / math.factorial(n) for s in range(n)]
    out = []
    for i in range(n):
        bit = 1 << i
        out.append(
            sum(
                weights[mask.bit_count()] * (values[mask | bit] - values[mask])
                for mask in range(1 << n)
                if not mask & bit
            )
        )
    return out


def shapley_values(f: Function, x: Sequence[float], baseline: Sequence[float]) -> list[float]:
    """Exact Shapley values of `f`'s inputs at `x` against one `baseline` point.

    The value of a coalition S is f with the inputs in S taken from `x` and the rest from `baseline`;
    the result sums to f(x) − f(baseline).
    """
    n = len(x)
    if n != len(baseline):
        raise ValueError(f"x has {n} values but the baseline has {len(baseline)}")
    if n == 0:
        return []
    masks = _masks(n)
    xs = torch.tensor([float(v) for v in x], dtype=torch.float64)
    bs = torch.tensor([float(v) for v in baseline], dtype=torch.float64)
    values = f(masks * xs + (1.0 - masks) * bs).to(torch.float64).reshape(-1).tolist()
    return coalition_shapley(values, n)


def coalition_values(
    f: Function,
    x: Sequence[float],
    references: torch.Tensor,
    *,
    start: float | None = None,
    end: float | None = None,
) -> list[float]:
    """The value of every coalition of `f`'s inputs against a set of reference rows ([m, n]).

    The value of coalition S (bit j of the index: input j present) is the mean over the references r
    of f(x on S, r elsewhere): "compared with the photos of this folder" rather than with one synthetic
    average photo, so the empty coalition is the folder's mean score, not the score of the mean photo.
    By default the full coalition is f(x) and the empty one the mean f(r); passing the numbers the user
    sees as `end` and `start` (the card's stored score, the folder's mean stored score) makes an
    explanation add up to exactly those, while every mixed coalition is still the function's output.
    """
    n = len(x)
    refs = references.to(torch.float64).reshape(-1, n)
    if len(refs) == 0:
        raise ValueError("no reference rows")
    xs = torch.tensor([float(v) for v in x], dtype=torch.float64)
    values = []
    for masks in _masks(n).split(256):  # bounded memory for eleven inputs and a hundred references
        rows = masks[:, None, :] * xs + (1.0 - masks[:, None, :]) * refs[None]
        values.append(f(rows.reshape(-1, n)).to(torch.float64).reshape(len(masks), len(refs)).mean(dim=1))
    out = torch.cat(values).tolist()
    if start is not None:
        out[0] = float(start)
    if end is not None:
        out[-1] = float(end)
    return out


def shapley_over_set(
    f: Function,
    x: Sequence[float],
    references: torch.Tensor,
    *,
    start: float | None = None,
    end: float | None = None,
) -> list[float]:
    """Exact Shapley values of `f`'s inputs at `x` against a set of reference rows (`coalition_values`);
    they sum to ``end − start``."""
    if len(x) == 0:
        return []
    return coalition_shapley(coalition_values(f, x, references, start=start, end=end), len(x))
