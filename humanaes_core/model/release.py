"""What the released checkpoints leave open, as data: `OpenFields`, stored in humanaes.json.

The released HumanAesExpert weights do not say which token and layer their heads read, whether an
activation follows a head (a sigmoid has no weights), the order of the expert head's leaves and of
its root's inputs, the MetaVoter's input order or how the LM level score is read. Only the hub
repository's modeling file (and the real weights) settle them. Each choice is therefore a named field
of the checkpoint with today's behaviour as its default; scoring and training read them from here,
never from a constant, and `evidence` says per field whether it was assumed or where it was read.

Torch-free, so `read_meta` stays cheap. The chat template is the one open field that lives elsewhere:
`PromptConfig.template`, read and written through the prompt, never a second copy.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from humanaes_core.errors import shown
from humanaes_core.model.prompts import TEMPLATES
from humanaes_core.schema import BY_KEY, LEAF_KEYS

#: Where the regression and expert heads read the sequence.
#: last_prompt_token: the last token of the prompt (the newline after ``assistant``);
#: answer_start: where the answer's level word is predicted, the last token of the answer prefix (the
#: LM head's own position; the 12-dimension question has no answer prefix: its last prompt token);
#: im_end: the ``<|im_end|>`` that closes the user's question.
HEAD_POSITIONS: tuple[str, ...] = ("last_prompt_token", "answer_start", "im_end")
#: final_norm: the language model's output (after its final norm); last_layer: the last decoder
#: layer's output before that norm.
HEAD_HIDDENS: tuple[str, ...] = ("final_norm", "last_layer")
HEAD_ACTIVATIONS: tuple[str, ...] = ("none", "sigmoid")
REGRESSION_WIDTHS: tuple[int, ...] = (1, 12)
LM_NORMALISATIONS: tuple[str, ...] = ("linear", "none")
METAVOTER_INPUTS: tuple[str, ...] = ("lm", "regression", "expert")
#: The overall score's children in the order the expert head's root FFN reads them by default (F, J, K).
L_INPUTS: tuple[str, ...] = BY_KEY["overall"].children
#: Leaf orders worth trying: the official label order without the parents (A B C D E G H I K), and the
#: environment before the general-appearance leaves (A B C D E K G H I).
LEAF_ORDERS: tuple[tuple[str, ...], ...] = (
    LEAF_KEYS,
    (*LEAF_KEYS[:5], LEAF_KEYS[8], *LEAF_KEYS[5:8]),
)
ASSUMED = "assumed"


@dataclass
class OpenFields:
    """The released model's open choices; defaults are what HumanAes did before they were fields."""

    head_position: str = "last_prompt_token"
    head_hidden: str = "final_norm"
    regression_activation: str = "none"
    expert_activation: str = "none"  # applied to every expert node's output
    regression_width: int = 1  # 12: the overall score is the last of 12 outputs (official order)
    expert_leaf_order: list[str] = field(default_factory=lambda: list(LEAF_KEYS))
    expert_l_inputs: list[str] = field(default_factory=lambda: list(L_INPUTS))
    metavoter_inputs: list[str] = field(default_factory=lambda: list(METAVOTER_INPUTS))
    lm_level_space: bool = True  # level word token with its leading space
    lm_normalisation: str = "linear"  # S'_LM = (S_LM - 1) / 4 (Eq. 4), or "none": S_LM in [1, 5]
    evidence: dict[str, str] = field(default_factory=dict)  # field -> "assumed" or where it was read

    @staticmethod
    def names() -> tuple[str, ...]:
        """The open fields (evidence excluded; the template is `PromptConfig.template`)."""
        return tuple(f.name for f in fields(OpenFields) if f.name != "evidence")

    @staticmethod
    def alternatives(name: str) -> list[Any]:
        """The candidate values of one open field, the default first (what a verify search tries)."""
        choices: dict[str, list[Any]] = {
            "head_position": list(HEAD_POSITIONS),
            "head_hidden": list(HEAD_HIDDENS),
            "regression_activation": list(HEAD_ACTIVATIONS),
            "expert_activation": list(HEAD_ACTIVATIONS),
            "regression_width": list(REGRESSION_WIDTHS),
            "expert_leaf_order": [list(o) for o in LEAF_ORDERS],
            "expert_l_inputs": [list(p) for p in itertools.permutations(L_INPUTS)],
            "metavoter_inputs": [list(p) for p in itertools.permutations(METAVOTER_INPUTS)],
            "lm_level_space": [True, False],
            "lm_normalisation": list(LM_NORMALISATIONS),
            "template": list(TEMPLATES),  # PromptConfig.template's choices
        }
        if name not in choices:
            raise KeyError(f"{name!r} is not an open field; choose one of {', '.join(choices)}")
        return choices[name]

    def source_of(self, name: str) -> str:
        """Where a field's value came from ("assumed" unless evidence was recorded)."""
        return self.evidence.get(name, ASSUMED)

    def read(self) -> list[str]:
        """Fields whose value came from evidence."""
        return [n for n, src in self.evidence.items() if src != ASSUMED]

    def assumed(self) -> list[str]:
        """Fields (and the template) still at an assumed value."""
        return [n for n in (*self.names(), "template") if self.source_of(n) == ASSUMED]

    def to_dict(self) -> dict:
        return {f.name: _copy(getattr(self, f.name)) for f in fields(self)}

    @classmethod
    def from_dict(cls, data: object) -> OpenFields:
        """Validated fields; missing keys keep their defaults (a checkpoint from before the field)."""
        problems = open_fields_problems(data)
        if problems:
            raise ValueError("; ".join(problems))
        assert isinstance(data, Mapping)
        return cls(**{k: _copy(v) for k, v in data.items()})


def _copy(value: Any) -> Any:
    return dict(value) if isinstance(value, dict) else list(value) if isinstance(value, list) else value


def open_fields_problems(data: object, where: str = "open_fields") -> list[str]:
    """Why `data` is not a valid open_fields section (empty when it is)."""
    if not isinstance(data, Mapping):
        return [f"{where} must be a JSON object"]
    known = {f.name for f in fields(OpenFields)}
    problems = []
    unknown = sorted(str(k) for k in data if k not in known)
    if unknown:
        problems.append(f"{where} has unknown setting(s) {shown(unknown)}")
    for name in OpenFields.names():
        if name not in data:
            continue
        value, choices = data[name], OpenFields.alternatives(name)
        if name in ("expert_leaf_order", "expert_l_inputs", "metavoter_inputs"):
            base = choices[0]
            ok = isinstance(value, list) and len(value) == len(base) and sorted(value) == sorted(base)
            if not ok:
                problems.append(f"{where}.{name} must be an ordering of {', '.join(base)}")
        elif type(value) is not type(choices[0]) or value not in choices:
            problems.append(f"{where}.{name} is {shown(value)}; choose one of {shown(choices)}")
    evidence = data.get("evidence", {})
    if not isinstance(evidence, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in evidence.items()
    ):
        problems.append(f"{where}.evidence must map field names to strings")
    return problems
