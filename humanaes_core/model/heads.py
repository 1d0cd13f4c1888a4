"""The scoring heads of HumanAesExpert (paper section 4): LM-level score, regression, expert, MetaVoter.

All heads read the VLM's final-layer hidden state. They are small, config-driven modules so a
checkpoint can describe them in JSON and the importer can map released weights onto them by shape.
"""

from __future__ import annotations

import torch
from torch import nn

from humanaes_core.model.meta import EXPERT_ACTIVATIONS, HeadsConfig
from humanaes_core.schema import BY_KEY, KEYS, LEAF_KEYS, PARENT_KEYS

_ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
    "tanh": nn.Tanh,
}
assert set(_ACTIVATIONS) == set(EXPERT_ACTIVATIONS)


def lm_level_score(level_logits: torch.Tensor) -> torch.Tensor:
    """Eq. 4: softmax over the logits of the five level words, expected level S_LM = Σ i·p_i in [1, 5].

    `level_logits` is [..., 5] in the order bad, poor, fair, good, excellent.
    """
    probs = torch.softmax(level_logits.float(), dim=-1)
    weights = torch.arange(1, 6, dtype=probs.dtype, device=probs.device)
    return (probs * weights).sum(dim=-1)


def normalise_lm_score(s_lm: torch.Tensor) -> torch.Tensor:
    """Min–max normalisation of S_LM from [1, 5] to [0, 1] (S'_LM of the MetaVoter)."""
    return (s_lm - 1.0) / 4.0


class RegressionHead(nn.Module):
    """A linear layer on the last prompt token's hidden state → overall score (MSE-trained)."""

    def __init__(self, hidden_size: int) -> None:
        super().__init__()
        self.linear = nn.Linear(hidden_size, 1)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.linear(hidden).squeeze(-1)


class _FFN(nn.Module):
    """Two-layer FFN that maps a parent's children scores to the parent's score."""

    def __init__(self, n_in: int, hidden: int, activation: str) -> None:
        super().__init__()
        self.fc1 = nn.Linear(n_in, hidden)
        self.act = _ACTIVATIONS[activation]()
        self.fc2 = nn.Linear(hidden, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x))).squeeze(-1)


class ExpertHead(nn.Module):
    """Sparsely connected MLP that mirrors the A–L hierarchy (paper Fig. 4b).

    A linear layer predicts the nine leaves; one FFN per parent reads only that parent's children,
    so a parent can never depend on anything but its children. Every node is supervised in training.
    """

    def __init__(self, hidden_size: int, ffn_hidden: int = 64, activation: str = "gelu") -> None:
        super().__init__()
        self.leaves = nn.Linear(hidden_size, len(LEAF_KEYS))
        self.parents = nn.ModuleDict(
            {key: _FFN(len(BY_KEY[key].children), ffn_hidden, activation) for key in PARENT_KEYS}
        )

    def parent_from_children(self, key: str, children: torch.Tensor) -> torch.Tensor:
        """One parent's score from its children's scores [..., n_children] (used for attribution too)."""
        return self.parents[key](children)

    def forward(self, hidden: torch.Tensor) -> dict[str, torch.Tensor]:
        leaves = self.leaves(hidden)
        scores: dict[str, torch.Tensor] = {k: leaves[..., i] for i, k in enumerate(LEAF_KEYS)}
        for key in PARENT_KEYS:
            children = torch.stack([scores[c] for c in BY_KEY[key].children], dim=-1)
            scores[key] = self.parent_from_children(key, children)
        return {k: scores[k] for k in KEYS}


class MetaVoter(nn.Module):
    """MLP with BatchNorm and ReLU over (S'_LM, S_reg, S_exp) → final overall score (MAE-trained)."""

    def __init__(self, hidden: int = 16) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(3, hidden), nn.BatchNorm1d(hidden), nn.ReLU(), nn.Linear(hidden, 1)
        )

    def forward(self, lm_norm: torch.Tensor, regression: torch.Tensor, expert: torch.Tensor) -> torch.Tensor:
        x = torch.stack([lm_norm, regression, expert], dim=-1).float()
        return self.net(x).squeeze(-1)


class Heads(nn.Module):
    """The three trained heads together, saved and loaded as one state dict (`heads.safetensors`)."""

    def __init__(self, config: HeadsConfig) -> None:
        super().__init__()
        self.config = config
        self.regression = RegressionHead(config.hidden_size)
        self.expert = ExpertHead(config.hidden_size, config.expert_ffn_hidden, config.expert_activation)
        self.metavoter = MetaVoter(config.metavoter_hidden)
