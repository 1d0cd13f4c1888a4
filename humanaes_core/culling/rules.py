"""Check rules: reject closed eyes, missed focus and misfires, and prefer open, sharp eyes in a burst.

The aesthetic score cannot tell that the bride blinked or that focus landed on the ear; the checks
(``humanaes_core.checks``: ``card.faces`` and ``card.checks``) can. ``CheckRules`` says which of them
reject a photo and how strictly (a sensitivity from 0, lenient, to 1, strict; None turns a rule off);
``SHOOT_PRESETS`` sets them per kind of shoot. ``check_rejects`` gives a card's reasons in a
photographer's words; ``frame_key`` orders the frames of a burst: fewest closed eyes first (a group
shot), then the sharpest eyes, then the aesthetic score. ``plan_cull``, ``best_of``, ``humanaes-cull``
and the app's auto-cull all go through these.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from humanaes_core.checks import FOCUS_MISSED_BELOW, FOCUS_SHARP_FROM, Face, PhotoChecks

__all__ = [
    "CHECK_RULE_NAMES",
    "SHOOT_PRESETS",
    "CheckRules",
    "card_checks",
    "check_rejects",
    "frame_key",
]

#: The names ``humanaes-cull --reject`` takes, in ``CheckRules`` order.
CHECK_RULE_NAMES = ("closed-eyes", "missed-focus", "misfire")

_MISFIRE_WORDS = {"black": "black frame", "white": "white frame", "uniform": "blank frame"}
_FOCUS_RANK = {"sharp": 0, "unknown": 1, "soft": 2, "missed": 3}


@dataclass(frozen=True)
class CheckRules:
    """Which checks reject a photo. ``closed_eyes`` and ``missed_focus`` are sensitivities in [0, 1]
    (None = the rule is off); ``misfire`` rejects black, white and blank frames.

    Closed eyes: a photo is rejected when its main face has both eyes closed, or when at least
    ``1 - closed_eyes`` of its faces whose eyes could be read have both closed (at 1, any one face;
    at 0.5, half of a group). Missed focus: the main face is rejected when its ``focus_score`` is
    below ``missed_focus`` x ``FOCUS_SHARP_FROM`` (at 0.5 only "missed" faces, at 1 "soft" ones too);
    a photo without a readable face is rejected when the whole frame is soft or shaken and the
    sensitivity is at least 0.5.
    """

    closed_eyes: float | None = None
    missed_focus: float | None = None
    misfire: bool = False

    def __post_init__(self) -> None:
        for name in ("closed_eyes", "missed_focus"):
            value = getattr(self, name)
            if value is not None and not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} sensitivity must be in [0, 1], got {value}")

    @property
    def active(self) -> bool:
        """Whether any rule is on."""
        return self.closed_eyes is not None or self.missed_focus is not None or self.misfire

    def to_dict(self) -> dict:
        return {"closed_eyes": self.closed_eyes, "missed_focus": self.missed_focus, "misfire": self.misfire}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CheckRules:
        def sens(key: str) -> float | None:
            value = data.get(key)
            return None if value is None else float(value)

        return cls(sens("closed_eyes"), sens("missed_focus"), bool(data.get("misfire", False)))


#: Per kind of shoot. A ceremony (wedding) cannot be repeated: reject blinks of the main subjects and
#: clearly missed focus. A portrait session has many frames of one face: be strict on both. An event
#: or group: reject only when the main face or half of the group blinked. Sports: blinks do not
#: matter, focus does.
SHOOT_PRESETS: dict[str, CheckRules] = {
    "ceremony": CheckRules(closed_eyes=0.7, missed_focus=0.5, misfire=True),
    "portrait": CheckRules(closed_eyes=1.0, missed_focus=0.8, misfire=True),
    "event": CheckRules(closed_eyes=0.5, missed_focus=0.5, misfire=True),
    "sports": CheckRules(closed_eyes=None, missed_focus=0.6, misfire=True),
}
SHOOT_PRESETS["wedding"] = SHOOT_PRESETS["ceremony"]


def card_checks(card: Any) -> tuple[list[Face] | None, PhotoChecks | None]:
    """(faces, checks) of a ScoreCard or its dict; None for what was not checked."""
    if isinstance(card, Mapping):
        faces = card.get("faces")
        checks = card.get("checks")
        return (
            None if faces is None else [f if isinstance(f, Face) else Face.from_dict(f) for f in faces],
            None
            if checks is None
            else checks
            if isinstance(checks, PhotoChecks)
            else PhotoChecks.from_dict(checks),
        )
    return getattr(card, "faces", None), getattr(card, "checks", None)


def _main_face(faces: list[Face], checks: PhotoChecks | None) -> Face | None:
    if checks is not None and checks.main_face is not None and 0 <= checks.main_face < len(faces):
        return faces[checks.main_face]
    return max(faces, key=lambda f: f.size) if faces else None


def check_rejects(card: Any, rules: CheckRules) -> list[str]:
    """Why `rules` reject this card (a ScoreCard or its dict), in a photographer's words; [] when
    nothing rejects it or it was never checked."""
    faces, checks = card_checks(card)
    reasons: list[str] = []
    if rules.misfire and checks is not None and checks.misfire:
        reasons.append(f"misfire: {_MISFIRE_WORDS.get(checks.misfire, checks.misfire)}")
    faces = faces or []
    main = _main_face(faces, checks)
    if rules.closed_eyes is not None and faces:
        readable = [f for f in faces if "unknown" not in (f.left_eye, f.right_eye)]
        closed = sum(f.eyes_closed for f in readable)
        share_needed = 1.0 - rules.closed_eyes
        if main is not None and main.eyes_closed:
            reasons.append("eyes closed")
        elif readable and closed and closed >= share_needed * len(readable):
            reasons.append(f"eyes closed ({closed} of {len(readable)} faces)")
    if rules.missed_focus is not None:
        if main is not None and main.focus != "unknown":
            if main.focus_score < rules.missed_focus * FOCUS_SHARP_FROM:
                reasons.append("missed focus" if main.focus_score < FOCUS_MISSED_BELOW else "soft focus")
        elif checks is not None and rules.missed_focus >= 0.5 and checks.blur != "sharp":
            reasons.append("camera shake" if checks.blur == "shake" else "missed focus")
    return reasons


def frame_key(card: Any) -> tuple[int, int, float]:
    """Sort key for the frames of one burst, best first: fewest faces with closed eyes, then the main
    face's focus (sharp, unknown, soft, missed), then the highest overall score. Unchecked cards
    count as nothing closed and focus unknown, so they rank by score alone among themselves."""
    faces, checks = card_checks(card)
    faces = faces or []
    main = _main_face(faces, checks)
    closed = sum(f.eyes_closed for f in faces)
    focus = _FOCUS_RANK.get(main.focus, 1) if main is not None else 1
    dims = (card.get("dims") if isinstance(card, Mapping) else getattr(card, "dims", None)) or {}
    overall = dims.get("overall")
    return closed, focus, -(float(overall) if isinstance(overall, (int, float)) else float("-inf"))
