"""The scoring heads of HumanAesExpert (paper section 4): LM-level score, regression, expert, MetaVoter.

All heads read one hidden state of the VLM (which one: `OpenFields.head_position`/`head_hidden`). They
are small, config-driven modules so a checkpoint can describe them in JSON and the importer can map
released weights onto them by shape. What the released weights cannot show (activations, widths, input
and leaf orders, the LM score's normalisation) comes from the checkpoint's `OpenFields`, never from a
constant here.
"""

from __future__ import annotations

import torch
from torch import nn

from humanaes_core.model.meta import EXPERT_ACTIVATIONS, HeadsConfig
from humanaes_core.model.release import METAVOTER_INPUTS, OpenFields
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


def normalise_lm_score(s_lm: torch.Tensor, mode: str = "linear") -> torch.Tensor:
    """S'_LM: min–max normalisation of S_LM from [1, 5] to [0, 1] ("linear"), or S_LM itself ("none")."""
    if mode == "none":
        return s_lm
    if mode != "linear":
        raise ValueError(f"unknown LM normalisation {mode!r}")
    return (s_lm - 1.0) / 4.0


def _activate(x: torch.Tensor, activation: str) -> torch.Tensor:
    """A head's output activation (OpenFields: "none" or "sigmoid")."""
    return torch.sigmoid(x) if activation == "sigmoid" else x


class RegressionHead(nn.Module):
    """A linear layer on one token's hidden state → overall score (MSE-trained).

    `width` 12 is the release's other possible shape: 12 outputs in the official label order, of which
    the overall score is the last.
    """

    def __init__(self, hidden_size: int, width: int = 1, activation: str = "none") -> None:
        super().__init__()
        self.linear = nn.Linear(hidden_size, width)
        self.activation = activation

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return _activate(self.linear(hidden)[..., -1], self.activation)


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
    `fields` says the leaf Linear's output order, the order the root FFN reads F, J, K in, and whether
    every node's output passes a sigmoid.
    """

    def __init__(
        self,
        hidden_size: int,
        ffn_hidden: int = 64,
        activation: str = "gelu",
        fields: OpenFields | None = None,
    ) -> None:
        super().__init__()
        fields = fields or OpenFields()
        self.leaf_order = tuple(fields.expert_leaf_order)
        self.l_inputs = tuple(fields.expert_l_inputs)
        self.output_activation = fields.expert_activation
        self.leaves = nn.Linear(hidden_size, len(LEAF_KEYS))
        self.parents = nn.ModuleDict(
            {key: _FFN(len(BY_KEY[key].children), ffn_hidden, activation) for key in PARENT_KEYS}
        )

    def _inputs(self, key: str) -> tuple[str, ...]:
        return self.l_inputs if key == "overall" else BY_KEY[key].children

    def parent_from_children(self, key: str, children: torch.Tensor) -> torch.Tensor:
        """One parent's score from its children's scores [..., n_children] in `BY_KEY[key].children`
        order (used for attribution too); reordered here to the order the FFN reads them in."""
        order = [BY_KEY[key].children.index(c) for c in self._inputs(key)]
        return _activate(self.parents[key](children[..., order]), self.output_activation)

    def forward(self, hidden: torch.Tensor) -> dict[str, torch.Tensor]:
        leaves = _activate(self.leaves(hidden), self.output_activation)
        scores: dict[str, torch.Tensor] = {k: leaves[..., i] for i, k in enumerate(self.leaf_order)}
        for key in PARENT_KEYS:
            children = torch.stack([scores[c] for c in BY_KEY[key].children], dim=-1)
            scores[key] = self.parent_from_children(key, children)
        return {k: scores[k] for k in KEYS}


class MetaVoter(nn.Module):
    """MLP with BatchNorm and ReLU over (S'_LM, S_reg, S_exp) → final overall score (MAE-trained).

    Callers always pass the three scores by name; `inputs` (OpenFields.metavoter_inputs) is the order
    the first Linear reads them in.
    """

    def __init__(self, hidden: int = 16, inputs: tuple[str, ...] | list[str] = METAVOTER_INPUTS) -> None:
        super().__init__()
        self.inputs = tuple(inputs)
        self.net = nn.Sequential(
            nn.Linear(3, hidden), nn.BatchNorm1d(hidden), nn.ReLU(), nn.Linear(hidden, 1)
        )

    def forward(self, lm_norm: torch.Tensor, regression: torch.Tensor, expert: torch.Tensor) -> torch.Tensor:
        by_name = {"lm": lm_norm, "regression": regression, "expert": expert}
        x = torch.stack([by_name[name] for name in self.inputs], dim=-1).float()
        return self.net(x).squeeze(-1)


class Heads(nn.Module):
    """The three trained heads together, saved and loaded as one state dict (`heads.safetensors`).

    `fields` (humanaes.json's open_fields) shapes them; the model reads its position, hidden state
    and level-token choices from `heads.fields` too, so one object carries every open choice.
    """

    def __init__(self, config: HeadsConfig, fields: OpenFields | None = None) -> None:
        super().__init__()
        self.config = config
        self.fields = fields or OpenFields()
        f = self.fields
        self.regression = RegressionHead(config.hidden_size, f.regression_width, f.regression_activation)
        self.expert = ExpertHead(config.hidden_size, config.expert_ffn_hidden, config.expert_activation, f)
        self.metavoter = MetaVoter(config.metavoter_hidden, f.metavoter_inputs)

    def lm_input(self, level_logits: torch.Tensor) -> torch.Tensor:
        """S'_LM as the MetaVoter reads it: Eq. 4, then the checkpoint's normalisation."""
        return normalise_lm_score(lm_level_score(level_logits), self.fields.lm_normalisation)
