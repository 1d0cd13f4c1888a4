"""The 12 aesthetic dimensions (A–L), their hierarchy, the rating levels and the official label order.

Everything that names a dimension goes through this module, so a key, a letter, a display name and
a position in the official label list can never drift apart.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Dimension:
    letter: str
    key: str
    name: str
    kind: str  # "leaf", "parent" or "root"
    children: tuple[str, ...] = ()  # keys of the children, empty for leaves


DIMENSIONS: tuple[Dimension, ...] = (
    Dimension("A", "facial_brightness", "Facial Brightness", "leaf"),
    Dimension("B", "facial_feature_clarity", "Facial Feature Clarity", "leaf"),
    Dimension("C", "facial_skin_tone", "Facial Skin Tone", "leaf"),
    Dimension("D", "facial_structure", "Facial Structure", "leaf"),
    Dimension("E", "facial_contour_clarity", "Facial Contour Clarity", "leaf"),
    Dimension(
        "F",
        "facial_aesthetic",
        "Facial Aesthetic",
        "parent",
        (
            "facial_brightness",
            "facial_feature_clarity",
            "facial_skin_tone",
            "facial_structure",
            "facial_contour_clarity",
        ),
    ),
    Dimension("G", "outfit", "Outfit", "leaf"),
    Dimension("H", "body_shape", "Body Shape", "leaf"),
    Dimension("I", "looks", "Looks", "leaf"),
    Dimension(
        "J",
        "general_appearance_aesthetic",
        "General Appearance Aesthetic",
        "parent",
        ("outfit", "body_shape", "looks"),
    ),
    Dimension("K", "environment", "Environment", "leaf"),
    Dimension(
        "L",
        "overall",
        "Overall Aesthetic",
        "root",
        ("facial_aesthetic", "general_appearance_aesthetic", "environment"),
    ),
)

#: Keys in display order A–L.
KEYS: tuple[str, ...] = tuple(d.key for d in DIMENSIONS)
BY_KEY: Mapping[str, Dimension] = {d.key: d for d in DIMENSIONS}
BY_LETTER: Mapping[str, Dimension] = {d.letter: d for d in DIMENSIONS}
#: The nine leaves the expert head predicts directly (A B C D E G H I K).
LEAF_KEYS: tuple[str, ...] = tuple(d.key for d in DIMENSIONS if d.kind == "leaf")
#: Parents in the order they must be computed (children first).
PARENT_KEYS: tuple[str, ...] = ("facial_aesthetic", "general_appearance_aesthetic", "overall")

# --- The official label order -------------------------------------------------------------------
# HumanBeauty's label.jsonl and the official 12-line answer put Environment at index 9 and General
# Appearance at index 10 ([A,B,C,D,E,F,G,H,I,K,J,L]). These are the names the official answer text
# uses, in that order; positions are derived from names, never typed in by hand.
OFFICIAL_ANSWER_NAMES: tuple[str, ...] = (
    "Facial Brightness",
    "Facial Feature Clarity",
    "Facial Skin Tone",
    "Facial Structure",
    "Facial Contour Clarity",
    "Facial Aesthetic Score",
    "Outfit",
    "Body Shape",
    "Looks",
    "Environment",
    "General Appearance Aesthetic Score",
    "Comprehensive Aesthetic Score",
)
_OFFICIAL_NAME_TO_KEY: Mapping[str, str] = {
    "Facial Brightness": "facial_brightness",
    "Facial Feature Clarity": "facial_feature_clarity",
    "Facial Skin Tone": "facial_skin_tone",
    "Facial Structure": "facial_structure",
    "Facial Contour Clarity": "facial_contour_clarity",
    "Facial Aesthetic Score": "facial_aesthetic",
    "Outfit": "outfit",
    "Body Shape": "body_shape",
    "Looks": "looks",
    "Environment": "environment",
    "General Appearance Aesthetic Score": "general_appearance_aesthetic",
    "Comprehensive Aesthetic Score": "overall",
}
#: Our keys in the official label order.
OFFICIAL_ORDER: tuple[str, ...] = tuple(_OFFICIAL_NAME_TO_KEY[n] for n in OFFICIAL_ANSWER_NAMES)


def key_for_official_name(name: str) -> str:
    """Map a name from the official answer text (case and spacing tolerant) to our key."""
    normalised = " ".join(name.split()).lower()
    for official, key in _OFFICIAL_NAME_TO_KEY.items():
        if official.lower() == normalised:
            return key
    raise KeyError(f"unknown dimension name in official answer text: {name!r}")


def from_official(scores: Sequence[float]) -> dict[str, float]:
    """A 12-float list in the official label order → {key: score} (keys in A–L order)."""
    if len(scores) != len(OFFICIAL_ORDER):
        raise ValueError(f"expected {len(OFFICIAL_ORDER)} scores in the official order, got {len(scores)}")
    by_key = dict(zip(OFFICIAL_ORDER, (float(s) for s in scores), strict=True))
    return {k: by_key[k] for k in KEYS}


def to_official(dims: Mapping[str, float]) -> list[float]:
    """{key: score} with all 12 keys → a list in the official label order."""
    missing = [k for k in KEYS if k not in dims]
    if missing:
        raise KeyError(f"missing dimensions: {', '.join(missing)}")
    return [float(dims[k]) for k in OFFICIAL_ORDER]


# --- Heads ---------------------------------------------------------------------------------------
#: The scores of a score card's ``heads``, in the order of the model: the three heads, then the
#: MetaVoter that combines them (its score is the card's overall score).
HEAD_NAMES: tuple[str, ...] = ("lm", "regression", "expert", "metavoter")

# --- Rating levels --------------------------------------------------------------------------------
LEVELS: tuple[str, ...] = ("bad", "poor", "fair", "good", "excellent")


def score_to_level(score: float) -> str:
    """The ITU five-level word for a score in [0, 1].

    Boundaries follow the official code: bad < 0.2 ≤ poor < 0.4 ≤ fair < 0.6 ≤ good < 0.8 ≤ excellent,
    i.e. intervals closed on the left. The paper's Eq. 2 closes them on the right instead; the
    released models were trained with the code's version, so that is the one we use.
    """
    if score != score:  # NaN
        raise ValueError("score is NaN")
    # Compare with the exact boundaries rather than int(score * 5), which rounds 0.6 * 5 down to 2.
    for i, upper in enumerate((0.2, 0.4, 0.6, 0.8)):
        if score < upper:
            return LEVELS[i]
    return LEVELS[4]


def level_to_index(level: str) -> int:
    """'bad' → 1 … 'excellent' → 5 (the i of Eq. 4)."""
    try:
        return LEVELS.index(level.strip().lower()) + 1
    except ValueError:
        raise ValueError(f"unknown rating level {level!r}; expected one of {', '.join(LEVELS)}") from None
