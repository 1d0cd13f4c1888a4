"""The scoring heads an explanation needs, read alone from a checkpoint (the backbone is never loaded).

The final score is the MetaVoter's vote over three scores (the level-word score, the regression score
and the expert head's Overall); the expert head computes every parent from its children. Both are
tiny, so the desktop app explains cached cards without the model in memory.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Mapping
from pathlib import Path

import torch
from safetensors.torch import load_file

from humanaes_core.errors import CheckpointError
from humanaes_core.model import HEADS_FILE, Heads, lm_level_score, normalise_lm_score, read_meta

__all__ = ["VOTER_INPUTS", "HeadsAttributor", "card_field", "voter_inputs"]

#: The three scores the final vote reads, in the order explanations list them.
VOTER_INPUTS: tuple[str, str, str] = ("lm", "regression", "expert")


def card_field(card: object, name: str) -> object:
    """`name` of a ScoreCard or of its dict (the app and the CLI hold either)."""
    return card.get(name) if isinstance(card, Mapping) else getattr(card, name, None)


def voter_inputs(card: object, lm_normalisation: str = "linear") -> tuple[float, float, float]:
    """The MetaVoter's three inputs for `card`, exactly as it read them at scoring time.

    Cards scored before `voter_inputs` was recorded fall back to what they hold: the level-word score
    from `lm_probs` (exact), the expert Overall from `expert_raw` (exact) and the regression score from
    `heads` (clamped to [0, 1], so exact unless the head's output left that range).
    """
    recorded = card_field(card, "voter_inputs")
    if recorded:
        return tuple(float(recorded[k]) for k in VOTER_INPUTS)  # type: ignore[index, return-value]
    raw = card_field(card, "expert_raw")
    heads = card_field(card, "heads")
    probs = card_field(card, "lm_probs")
    if not raw or not heads or not probs:
        raise ValueError("the card has no expert-head outputs (it was scored with heads='overall')")
    s_lm = lm_level_score(torch.log(torch.tensor([float(p) for p in probs], dtype=torch.float64)))
    lm = float(normalise_lm_score(s_lm, lm_normalisation))
    return lm, float(heads["regression"]), float(raw["overall"])  # type: ignore[index]


class HeadsAttributor:
    """The expert head's parent FFNs and the MetaVoter of one checkpoint, in float64, for explanations."""

    def __init__(self, heads: Heads) -> None:
        # A copy: the heads may belong to a model in use (training reports on its live heads).
        self.heads = copy.deepcopy(heads).to(torch.float64).eval()
        self.lm_normalisation = heads.fields.lm_normalisation

    @classmethod
    def from_checkpoint(cls, directory: str | os.PathLike) -> HeadsAttributor:
        """Read humanaes.json and heads.safetensors; the backbone is not touched."""
        directory = Path(directory)
        meta = read_meta(directory)
        try:
            state = load_file(str(directory / HEADS_FILE))
        except OSError as e:
            raise CheckpointError(f"{directory}/{HEADS_FILE}: {e}") from None
        heads = Heads(meta.heads, meta.open_fields)
        try:
            heads.load_state_dict(state, strict=True)
        except RuntimeError as e:
            raise CheckpointError(f"{directory}/{HEADS_FILE}: heads differ from humanaes.json: {e}") from None
        return cls(heads)

    @torch.no_grad()
    def final_score(self, rows: torch.Tensor) -> torch.Tensor:
        """The shown overall for rows of (lm, regression, expert) [m, 3]: the vote, clamped to [0, 1]."""
        voter = self.heads.metavoter
        by_name = dict(zip(VOTER_INPUTS, rows.to(torch.float64).unbind(-1), strict=True))
        x = torch.stack([by_name[name] for name in voter.inputs], dim=-1)
        return voter.net(x).squeeze(-1).clamp(0.0, 1.0)

    @torch.no_grad()
    def parent_score(self, parent: str, children: torch.Tensor) -> torch.Tensor:
        """The expert head's score of `parent` from its children's scores ([m, n], schema order)."""
        return self.heads.expert.parent_from_children(parent, children.to(torch.float64))

    def voter_inputs(self, card: object) -> tuple[float, float, float]:
        return voter_inputs(card, self.lm_normalisation)
