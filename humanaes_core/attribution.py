"""Why a photo scored as it did: exact Shapley attribution of each parent score to its children.

The expert head computes every parent from its children only (F from A–E, J from G–I, L from F, J, K)
with a small FFN. So "how much did Facial Feature Clarity push Facial Aesthetic up or down?" has an
exact answer: the Shapley values of that FFN's inputs, with a reference card's children as the
baseline. With at most five children that is at most 2⁵ = 32 FFN evaluations per parent, so no
sampling or gradient approximation is needed, and the values add up exactly (efficiency) to
``FFN(children) − FFN(reference children)``.

Only ``heads.safetensors`` and ``humanaes.json`` are read: attribution never loads the backbone, so
the desktop app can explain cached cards without the model being in memory.

Inputs are the card's ``expert_raw`` values (unclamped, exactly what the FFNs saw at scoring time).
Note that the reference *parent* value is the FFN applied to the reference children, which for a
non-linear FFN differs slightly from the mean of the reference cards' parent scores.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file

from humanaes_core.errors import CheckpointError
from humanaes_core.model import HEADS_FILE, ExpertHead, read_meta
from humanaes_core.schema import BY_KEY, KEYS, PARENT_KEYS

__all__ = [
    "ExpertAttributor",
    "ParentAttribution",
    "explain",
    "mean_reference",
    "shapley_values",
]

_EXPERT_PREFIX = "expert."


def shapley_values(
    f: Callable[[torch.Tensor], torch.Tensor], x: Sequence[float], baseline: Sequence[float]
) -> list[float]:
    """Exact Shapley values of `f`'s inputs at `x` against `baseline` (f maps [m, n] → [m]).

    The value function of a coalition S is f with the inputs in S taken from `x` and the rest from
    `baseline`. All 2ⁿ coalitions are evaluated in one batch; the result sums to f(x) − f(baseline)
    up to floating-point rounding.
    """
    n = len(x)
    if n != len(baseline):
        raise ValueError(f"x has {n} values but the baseline has {len(baseline)}")
    if n == 0:
        return []
    # Row `mask` of the batch takes input j from x when bit j of `mask` is set, else from the baseline.
    masks = torch.tensor([[(mask >> j) & 1 for j in range(n)] for mask in range(1 << n)], dtype=torch.float64)
    xs = torch.tensor([float(v) for v in x], dtype=torch.float64)
    bs = torch.tensor([float(v) for v in baseline], dtype=torch.float64)
    values = f(masks * xs + (1.0 - masks) * bs).to(torch.float64).reshape(-1).tolist()
    weights = [math.factorial(s) * math.factorial(n - s - 1) / math.factorial(n) for s in range(n)]
    out = []
    for i in range(n):
        bit = 1 << i
        phi = 0.0
        for mask in range(1 << n):
            if not mask & bit:
                phi += weights[mask.bit_count()] * (values[mask | bit] - values[mask])
        out.append(phi)
    return out


@dataclass(frozen=True)
class ParentAttribution:
    """One parent's score explained by its children against a reference.

    `contributions[child]` is the child's signed Shapley value; they sum to `value − reference_value`.
    """

    parent: str
    value: float  # FFN(children of the photo) = the card's expert_raw[parent]
    reference_value: float  # FFN(children of the reference)
    children: dict[str, float]
    reference_children: dict[str, float]
    contributions: dict[str, float]

    @property
    def delta(self) -> float:
        return self.value - self.reference_value

    def main_driver(self) -> str:
        """The child that moved the parent most in the direction it actually moved."""
        sign = 1.0 if self.delta >= 0 else -1.0
        return max(self.contributions, key=lambda k: sign * self.contributions[k])


def mean_reference(cards: Iterable[object]) -> dict[str, float]:
    """Mean `expert_raw` over cards (ScoreCards or their dicts) that have one, e.g. an open folder.

    Raises ValueError when none has expert outputs (quick `heads="overall"` cards have none).
    """
    sums = dict.fromkeys(KEYS, 0.0)
    n = 0
    for card in cards:
        raw = card.get("expert_raw") if isinstance(card, Mapping) else getattr(card, "expert_raw", None)
        if not raw:
            continue
        for k in KEYS:
            sums[k] += float(raw[k])
        n += 1
    if n == 0:
        raise ValueError("no card with expert-head outputs to average (score with heads='all')")
    return {k: v / n for k, v in sums.items()}


def _raw(card: object) -> Mapping[str, float]:
    # A ScoreCard, a card dict, or already a {key: value} mapping such as `mean_reference`'s result.
    raw = card.get("expert_raw", card) if isinstance(card, Mapping) else getattr(card, "expert_raw", None)
    if not raw:
        raise ValueError("the card has no expert-head outputs (it was scored with heads='overall')")
    return raw


class ExpertAttributor:
    """The expert head's parent FFNs, loaded alone from a checkpoint, for attribution."""

    def __init__(self, expert: ExpertHead) -> None:
        self.expert = expert.to(torch.float64).eval()

    @classmethod
    def from_checkpoint(cls, directory: str | os.PathLike) -> ExpertAttributor:
        """Read humanaes.json and the expert weights in heads.safetensors; the backbone is not touched."""
        directory = Path(directory)
        meta = read_meta(directory)
        try:
            state = load_file(str(directory / HEADS_FILE))
        except OSError as e:
            raise CheckpointError(f"{directory}/{HEADS_FILE}: {e}") from None
        expert_state = {k[len(_EXPERT_PREFIX) :]: v for k, v in state.items() if k.startswith(_EXPERT_PREFIX)}
        h = meta.heads
        head = ExpertHead(h.hidden_size, h.expert_ffn_hidden, h.expert_activation, meta.open_fields)
        try:
            head.load_state_dict(expert_state, strict=True)
        except RuntimeError as e:
            raise CheckpointError(
                f"{directory}/{HEADS_FILE}: expert head does not match humanaes.json: {e}"
            ) from None
        return cls(head)

    @torch.no_grad()
    def parent_value(self, parent: str, children: Sequence[float]) -> float:
        """The parent score the expert head gives these children (in `BY_KEY[parent].children` order)."""
        x = torch.tensor([float(v) for v in children], dtype=torch.float64)
        return float(self.expert.parent_from_children(parent, x))

    @torch.no_grad()
    def attribute_parent(
        self, parent: str, card: object, reference: Mapping[str, float] | object
    ) -> ParentAttribution:
        """Exact Shapley contributions of `parent`'s children for `card` against `reference`."""
        if parent not in PARENT_KEYS:
            raise ValueError(f"{parent!r} is not a parent dimension; choose one of {', '.join(PARENT_KEYS)}")
        raw, ref = _raw(card), _raw(reference)
        keys = BY_KEY[parent].children
        x = [float(raw[k]) for k in keys]
        b = [float(ref[k]) for k in keys]

        def f(batch: torch.Tensor) -> torch.Tensor:
            return self.expert.parent_from_children(parent, batch)

        phis = shapley_values(f, x, b)
        return ParentAttribution(
            parent=parent,
            value=self.parent_value(parent, x),
            reference_value=self.parent_value(parent, b),
            children=dict(zip(keys, x, strict=True)),
            reference_children=dict(zip(keys, b, strict=True)),
            contributions=dict(zip(keys, phis, strict=True)),
        )

    def attribute(
        self, card: object, reference: Mapping[str, float] | object
    ) -> dict[str, ParentAttribution]:
        """All three parents (F, J, L) of `card` explained against `reference` (a card or a mean)."""
        return {p: self.attribute_parent(p, card, reference) for p in PARENT_KEYS}


def explain(attributions: Mapping[str, ParentAttribution], reference_name: str = "the folder average") -> str:
    """One sentence a photographer can act on, following the main driver down the hierarchy.

    E.g. "Overall is below the folder average mainly because of Facial Aesthetic (−0.081), pulled
    down most by Facial Feature Clarity (−0.052)."
    """
    root = attributions.get("overall")
    if root is None:
        return ""
    if abs(root.delta) < 1e-3:
        return f"Overall is about the same as {reference_name}."
    direction = "above" if root.delta > 0 else "below"
    driver = root.main_driver()
    text = (
        f"Overall is {direction} {reference_name} mainly because of {BY_KEY[driver].name} "
        f"({root.contributions[driver]:+.3f})"
    )
    sub = attributions.get(driver)
    if sub is not None:
        # Within the driving parent, name the child that pushed the same way as the root moved.
        sign = 1.0 if root.delta > 0 else -1.0
        leaf = max(sub.contributions, key=lambda k: sign * sub.contributions[k])
        if sign * sub.contributions[leaf] > 0:
            verb = "lifted most" if sign > 0 else "pulled down most"
            text += f", {verb} by {BY_KEY[leaf].name} ({sub.contributions[leaf]:+.3f})"
    return text + "."
