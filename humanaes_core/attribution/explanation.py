"""Why a photo scored what it shows: the displayed overall explained down the whole chain.

The number a photographer sees is the MetaVoter's vote over three scores: the level-word score, the
regression score and the expert head's Overall (L). L comes from Facial Aesthetic (F), General
Appearance (J) and Environment (K); F and J come from their leaves. `explain_card` splits
``shown overall − reference overall`` over that tree with the Owen value, the Shapley value for
players in nested groups: the three vote inputs get exactly their Shapley values in the vote; inside
the expert group F, J and K share exactly what the group got, and inside F and J the leaves share
exactly what their parent got. Every level therefore adds up to the number above it, without rescaling
and without approximation (all 2¹¹ coalitions of the eleven inputs are evaluated).

The reference is a set of cards (the open folder): a coalition's value is the mean over the reference
cards of the score with the coalition's inputs taken from this photo and the rest from that card, so
"below the folder average" means below the folder's mean shown score. The two end values are the
numbers shown (this card's overall, the reference cards' mean overall); every other coalition is the
heads' own output.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from functools import lru_cache
from math import factorial
from pathlib import Path

import torch

from humanaes_core.attribution.heads import VOTER_INPUTS, HeadsAttributor, card_field
from humanaes_core.model import HEADS_FILE
from humanaes_core.schema import BY_KEY, LEAF_KEYS

__all__ = [
    "ABOUT_THE_SAME",
    "NODE_NAMES",
    "NODE_TOOLTIPS",
    "Explanation",
    "attributor_for",
    "coalition_table",
    "explain_card",
]

#: Differences smaller than this (half of the last digit the app shows) read "about the same".
ABOUT_THE_SAME = 0.005
#: Reference cards that enter the coalition values (evenly spread over the folder sorted by score);
#: the mean reference score always uses every card.
MAX_REFERENCES = 64

#: What a photographer reads for the three vote inputs (the dimensions use their own names).
NODE_NAMES = {
    "overall": "Overall",
    "lm": "Rating in words",
    "regression": "Direct rating",
    "expert": "Detailed assessment",
}
#: The technical name of each vote input, for tooltips and advanced views.
NODE_TOOLTIPS = {
    "overall": "The final score: the MetaVoter's vote over the three heads below.",
    "lm": "The language model's rating word (bad … excellent) as an expected level, Eq. 4 (LM head).",
    "regression": "A linear head on the model's hidden state that rates the photo directly "
    "(regression head).",
    "expert": "The expert head's Overall (L), computed from Face, Appearance and Environment "
    "(the A–L hierarchy).",
}

# The tree the overall is split over: group → members. Leaves are the eleven inputs.
_TREE: dict[str, tuple[str, ...]] = {
    "overall": VOTER_INPUTS,
    "expert": BY_KEY["overall"].children,
    **{k: BY_KEY[k].children for k in ("facial_aesthetic", "general_appearance_aesthetic")},
}
_PLAYERS: tuple[str, ...] = ("lm", "regression", *LEAF_KEYS)
_BIT = {p: 1 << i for i, p in enumerate(_PLAYERS)}


@dataclass(frozen=True)
class Explanation:
    """One node of the explanation tree.

    `total` is what this node adds to ``shown overall − reference overall``; the `children`'s totals
    add up to it. `value` and `reference` are the node's own scores (this photo, the reference mean) as
    the app shows them. `sentence` says it in words: for the root, the whole "why".
    """

    key: str
    name: str
    value: float
    reference: float
    total: float
    sentence: str = ""
    children: dict[str, Explanation] = field(default_factory=dict)

    def walk(self) -> Iterator[Explanation]:
        """This node and every node below it, parents before children."""
        yield self
        for child in self.children.values():
            yield from child.walk()

    def find(self, key: str) -> Explanation | None:
        return next((node for node in self.walk() if node.key == key), None)

    def driver(self) -> Explanation | None:
        """The child that moved this node most in the direction the overall moved (None if none did)."""
        sign = 1.0 if self.total >= 0 else -1.0
        best = max(self.children.values(), key=lambda c: sign * c.total, default=None)
        return best if best is not None and sign * best.total > 0 else None


def _members(node: str) -> int:
    if node not in _TREE:
        return _BIT[node]
    mask = 0
    for child in _TREE[node]:
        mask |= _members(child)
    return mask


def _subset_weights(n: int) -> list[float]:
    """Shapley weight of a coalition of s of the other n − 1 members: s!(n−s−1)!/n!."""
    return [factorial(s) * factorial(n - s - 1) / factorial(n) for s in range(n)]


def _owen(values: Sequence[float]) -> dict[str, float]:
    """Owen value of every node of `_TREE` from the value of every coalition of the eleven inputs.

    A node's value sums, over the coalitions its siblings at every level above can form (each with its
    Shapley weight), what the node adds when it joins whole. Siblings' values add up to their parent's.
    """
    out: dict[str, float] = {}

    def visit(node: str, contexts: list[tuple[int, float]]) -> None:
        mask = _members(node)
        out[node] = sum(w * (values[u | mask] - values[u]) for u, w in contexts)
        children = _TREE.get(node, ())
        weights = _subset_weights(len(children))
        for child in children:
            others = [_members(c) for c in children if c != child]
            nested = []
            for pick in range(1 << len(others)):
                joined = 0
                for j, m in enumerate(others):
                    if pick >> j & 1:
                        joined |= m
                w = weights[pick.bit_count()]
                nested.extend((u | joined, cw * w) for u, cw in contexts)
            visit(child, nested)

    visit("overall", [(0, 1.0)])
    return out


def _player_rows(card: object, attributor: HeadsAttributor) -> list[float]:
    lm, reg, _ = attributor.voter_inputs(card)
    raw = card_field(card, "expert_raw")
    return [lm, reg, *(float(raw[k]) for k in LEAF_KEYS)]  # type: ignore[index]


def _chain(attributor: HeadsAttributor, rows: torch.Tensor) -> torch.Tensor:
    """The shown overall from the eleven inputs [m, 11]: leaves → F, J → L → vote."""
    col = {p: rows[:, i] for i, p in enumerate(_PLAYERS)}
    for parent in ("facial_aesthetic", "general_appearance_aesthetic", "overall"):
        children = torch.stack([col[c] for c in BY_KEY[parent].children], dim=-1)
        col[parent] = attributor.parent_score(parent, children)
    vote = torch.stack([col["lm"], col["regression"], col["overall"]], dim=-1)
    return attributor.final_score(vote)


def _mixes(x: torch.Tensor, refs: torch.Tensor, players: Sequence[str]) -> torch.Tensor:
    """[2ᵏ, m, k]: every mix of these k players taken from the photo (bit j of the first index: player
    j) or from each reference."""
    cols = [_PLAYERS.index(p) for p in players]
    k = len(cols)
    bits = torch.tensor([[(m >> j) & 1 for j in range(k)] for m in range(1 << k)], dtype=torch.float64)
    return bits[:, None, :] * x[cols] + (1.0 - bits[:, None, :]) * refs[:, cols][None]


def coalition_table(attributor: HeadsAttributor, x: Sequence[float], references: torch.Tensor) -> list[float]:
    """The mean shown score over the references of every coalition of the eleven inputs, indexed by
    bitmask in `_PLAYERS` order: the same numbers as `shapley.coalition_values` with `_chain`, computed
    group by group. Face has 32 mixes, Appearance 8, Overall 512 (32 × 8 × 2), and only the vote sees
    all 2,048, so the explanation costs a few milliseconds and can run on the app's UI thread."""
    xs = torch.tensor([float(v) for v in x], dtype=torch.float64)
    refs = references.to(torch.float64)
    m = len(refs)
    face = attributor.parent_score("facial_aesthetic", _mixes(xs, refs, BY_KEY["facial_aesthetic"].children))
    looks = attributor.parent_score(
        "general_appearance_aesthetic", _mixes(xs, refs, BY_KEY["general_appearance_aesthetic"].children)
    )
    env = _mixes(xs, refs, ("environment",))[..., 0]
    children = torch.stack(
        torch.broadcast_tensors(face[:, None, None], looks[None, :, None], env[None, None]), -1
    )
    overall = attributor.parent_score("overall", children)  # [32, 8, 2, m]
    lm, reg = _mixes(xs, refs, ("lm",))[..., 0], _mixes(xs, refs, ("regression",))[..., 0]
    vote = torch.stack(
        torch.broadcast_tensors(
            lm[:, None, None, None, None], reg[None, :, None, None, None], overall[None, None]
        ),
        -1,
    )  # [lm, reg, face, looks, env, m, 3]
    shown = attributor.final_score(vote.reshape(-1, 3)).reshape(2, 2, 32, 8, 2, m).mean(-1)
    # Bitmask = lm | reg << 1 | face << 2 | looks << 7 | env << 10: the most significant dimension first.
    return shown.permute(4, 3, 2, 1, 0).reshape(-1).tolist()


def _spread(cards: Sequence[object], limit: int) -> list[object]:
    """At most `limit` cards evenly spread over the set sorted by shown score (deterministic)."""
    if len(cards) <= limit:
        return list(cards)
    ordered = sorted(cards, key=lambda c: float(card_field(c, "dims")["overall"]))  # type: ignore[index]
    return [ordered[round(i * (len(ordered) - 1) / (limit - 1))] for i in range(limit)]


def _shown(card: object, node: str) -> float:
    """The node's own score as the app shows it."""
    if node in VOTER_INPUTS:
        return float(card_field(card, "heads")[node])  # type: ignore[index]
    return float(card_field(card, "dims")[node])  # type: ignore[index]


@lru_cache(maxsize=4)
def _cached_attributor(path: str, stamp: tuple[int, int]) -> HeadsAttributor:
    return HeadsAttributor.from_checkpoint(path)


def attributor_for(model_dir: str | os.PathLike | HeadsAttributor) -> HeadsAttributor:
    """The heads of `model_dir`, read once per version of its heads file."""
    if isinstance(model_dir, HeadsAttributor):
        return model_dir
    path = Path(model_dir).resolve()
    try:
        st = (path / HEADS_FILE).stat()
        stamp = (st.st_mtime_ns, st.st_size)
    except OSError:
        stamp = (0, 0)  # from_checkpoint says what is wrong
    return _cached_attributor(str(path), stamp)


def explain_card(
    card: object,
    reference_cards: Iterable[object],
    model_dir: str | os.PathLike | HeadsAttributor,
    *,
    reference_name: str = "the folder average",
) -> Explanation:
    """Explain `card`'s shown overall against the mean of `reference_cards` (ScoreCards or dicts).

    `model_dir` is the checkpoint that scored the cards (or its loaded `HeadsAttributor`); only its
    heads are read. Raises ValueError for a quick card (no expert outputs) or when no reference card
    has them.
    """
    attributor = attributor_for(model_dir)
    refs = [c for c in reference_cards if card_field(c, "expert_raw")]
    if not refs:
        raise ValueError("no reference card with expert-head outputs (score with heads='all')")
    x = _player_rows(card, attributor)
    background = torch.tensor([_player_rows(c, attributor) for c in _spread(refs, MAX_REFERENCES)])
    shown = float(card_field(card, "dims")["overall"])  # type: ignore[index]
    reference = sum(float(card_field(c, "dims")["overall"]) for c in refs) / len(refs)  # type: ignore[index]
    values = coalition_table(attributor, x, background)
    values[0], values[-1] = reference, shown  # the numbers on screen (see the module docstring)
    totals = _owen(values)
    means = {k: sum(_shown(c, k) for c in refs) / len(refs) for k in totals if k != "overall"}

    def node(key: str) -> Explanation:
        kids = {c: node(c) for c in _TREE.get(key, ())}
        name = NODE_NAMES.get(key) or BY_KEY[key].name
        built = Explanation(key, name, _shown(card, key), means[key], totals[key], children=kids)
        return replace(built, sentence=_node_sentence(built))

    root = Explanation(
        "overall",
        NODE_NAMES["overall"],
        shown,
        reference,
        totals["overall"],
        children={k: node(k) for k in VOTER_INPUTS},
    )
    return replace(root, sentence=_root_sentence(root, reference_name))


def _node_sentence(node: Explanation) -> str:
    """E.g. "Environment 0.71 (average 0.52): +0.031 to the overall"."""
    return f"{node.name} {node.value:.2f} (average {node.reference:.2f}): {node.total:+.3f} to the overall"


def _root_sentence(root: Explanation, reference_name: str) -> str:
    """The "why" in one sentence, its direction always the sign of `root.total`.

    It follows the driver down the tree (the child that moved the score most the way it moved): to a
    dimension, and within a parent dimension to the leaf that pushed hardest. When the driver is the
    rating in words or the direct rating, the dimension that helped (or hurt) most is named after it.
    """
    if abs(root.total) < ABOUT_THE_SAME:
        return f"About the same as {reference_name} ({root.value:.3f} against {root.reference:.3f})."
    up = root.total > 0
    sign = 1.0 if up else -1.0
    head = f"{'Above' if up else 'Below'} {reference_name} ({root.value:.3f} against {root.reference:.3f})"
    driver = root.driver()
    if driver is None:  # cannot happen for a non-zero total (the children add up to it); stay truthful
        return head + "."
    expert = root.children["expert"]
    if driver.key == "expert":
        path = _path(expert, sign)
        if not path:
            return f"{head}, mainly because of the detailed assessment ({expert.total:+.3f})."
        return f"{head}, mainly because of {_describe(path, up)}."
    text = f"{head}, mainly because of the {driver.name.lower()} ({driver.total:+.3f})"
    path = _path(expert, sign)
    if path:
        text += (
            f"; of the dimensions, {path[0].name} {'helped' if up else 'hurt'} most ({path[0].total:+.3f})"
        )
    return text + "."


def _path(node: Explanation, sign: float) -> list[Explanation]:
    """Drivers from `node` down: each the child that moved the score most in direction `sign`."""
    path = []
    while node.children:
        best = max(node.children.values(), key=lambda c: sign * c.total)
        if sign * best.total <= 0:
            break
        path.append(best)
        node = best
    return path


def _describe(path: list[Explanation], up: bool) -> str:
    """ "Facial Aesthetic (+0.081), lifted most by Facial Feature Clarity (+0.052)"."""
    text = f"{path[0].name} ({path[0].total:+.3f})"
    if len(path) > 1:
        text += f", {'lifted' if up else 'pulled down'} most by {path[1].name} ({path[1].total:+.3f})"
    return text
