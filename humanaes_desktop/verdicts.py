"""What the first-pass checks found, in a photographer's words: one verdict per face, the badges of a
photo, and the check filters of the grid. Qt-free, so the wording and the filter rules are tested
without a window.

The checks themselves (`card.faces`, `card.checks`) come from `humanaes_core.checks`; this module only
decides what the app says about them. Words on screen are the ones photographers use ("Eyes closed",
"Soft focus", "Missed focus", "Misfire"); the measures behind them go into tooltips.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from humanaes_core.checks import FOCUS_MISSED_BELOW, FOCUS_SHARP_FROM

if TYPE_CHECKING:
    from humanaes_core.checks import Face, PhotoChecks
    from humanaes_core.scoring import ScoreCard

#: How bad a verdict is: drives its colour (fine: green, caution: amber, problem: red, unknown: grey).
FINE, CAUTION, PROBLEM, UNKNOWN = "fine", "caution", "problem", "unknown"

#: (key, chip text, tooltip) of the grid's check filters, in toolbar order.
CHECK_FILTERS: tuple[tuple[str, str, str], ...] = (
    ("eyes_closed", "Eyes closed", "Only photos where someone's eyes are closed"),
    ("soft_focus", "Soft focus", "Only photos whose main face's eyes are a little soft"),
    ("missed_focus", "Missed focus", "Only photos whose main face's eyes are clearly out of focus"),
    ("misfire", "Misfire", "Only black, white or blank frames"),
    ("faces", "Faces", "Only photos with at least one face"),
)
CHECK_FILTER_KEYS = tuple(key for key, _, _ in CHECK_FILTERS)

_MISFIRE_WORDS = {"black": "black frame", "white": "white frame", "uniform": "blank frame"}


@dataclass(frozen=True)
class Verdict:
    """One thing said about a face or a photo: `text` on screen, `tip` behind it, `severity` its colour."""

    text: str
    severity: str
    tip: str = ""


def main_face(faces: list[Face], checks: PhotoChecks | None) -> Face | None:
    """The face the photo is about: the checks' choice, else the largest."""
    if checks is not None and checks.main_face is not None and 0 <= checks.main_face < len(faces):
        return faces[checks.main_face]
    return max(faces, key=lambda f: f.size) if faces else None


def eyes_verdict(face: Face) -> Verdict:
    """Both eyes closed, one closed, open, or cannot tell (too small, profile, sunglasses)."""
    states = f"left eye {face.left_eye}, right eye {face.right_eye}"
    if face.eyes_closed:
        return Verdict("Eyes closed", PROBLEM, states)
    if face.closed_eyes == 1 and "unknown" not in (face.left_eye, face.right_eye):
        return Verdict("One eye closed", CAUTION, states)
    if face.left_eye == "open" or face.right_eye == "open":
        return Verdict("Eyes open", FINE, states)
    return Verdict("Eyes: can't tell", UNKNOWN, f"{states} (face too small, in profile or eyes hidden)")


def focus_verdict(face: Face) -> Verdict:
    """Whether focus landed on the eyes: sharp, soft, missed, or cannot tell."""
    tip = (
        f"Eye sharpness {face.focus_score:.2f} of the sharpest part of the face and frame "
        f"(sharp from {FOCUS_SHARP_FROM:.2f}, missed below {FOCUS_MISSED_BELOW:.2f})"
    )
    words = {
        "sharp": ("Sharp", FINE),
        "soft": ("Soft focus", CAUTION),
        "missed": ("Missed focus", PROBLEM),
    }
    if face.focus in words:
        text, severity = words[face.focus]
        return Verdict(text, severity, tip)
    return Verdict("Focus: can't tell", UNKNOWN, "The eyes are too small or hidden to judge focus")


def face_verdicts(face: Face) -> list[Verdict]:
    """What the face strip says under one face: eyes, focus, and a look away when seen."""
    out = [eyes_verdict(face), focus_verdict(face)]
    if face.gaze == "away":
        out.append(Verdict("Looking away", CAUTION, "The eyes do not look into the camera"))
    return out


def face_tip(face: Face) -> str:
    """The technical line of a face (its tooltip): size, where it is, how sure the detector is."""
    x, y, w, h = face.box
    return f"Face {w}×{h} px at ({x}, {y}) · detector confidence {face.confidence:.2f}"


def photo_badges(card: ScoreCard | None) -> list[Verdict]:
    """The problems a tile shows as badges, worst first: misfire, closed eyes, soft or missed focus of
    the main face, or a blurred frame without a face. [] when unchecked or nothing is wrong."""
    if card is None or card.checks is None:
        return []
    faces, checks = card.faces or [], card.checks
    out: list[Verdict] = []
    if checks.misfire:
        out.append(Verdict("Misfire", PROBLEM, _MISFIRE_WORDS.get(checks.misfire, checks.misfire)))
    closed = sum(f.eyes_closed for f in faces)
    if closed:
        text = "Eyes closed" if closed == 1 or len(faces) == 1 else f"Eyes closed ×{closed}"
        out.append(Verdict(text, PROBLEM, f"{closed} of {len(faces)} faces with both eyes closed"))
    main = main_face(faces, checks)
    if main is not None and main.focus in ("soft", "missed"):
        out.append(focus_verdict(main))
    elif main is None and checks.blur != "sharp" and not checks.misfire:
        text = "Camera shake" if checks.blur == "shake" else "Blurred"
        out.append(Verdict(text, CAUTION, f"Whole-frame blur ({checks.blur}, score {checks.blur_score:.2f})"))
    return out


def has_any(card: ScoreCard | None, wanted: Iterable[str]) -> bool:
    """Whether the card shows any of the `CHECK_FILTER_KEYS` in `wanted` (an unchecked card shows none)."""
    if card is None or card.checks is None:
        return False
    faces, checks = card.faces or [], card.checks
    main = main_face(faces, checks)
    found = {
        "eyes_closed": any(f.eyes_closed for f in faces),
        "soft_focus": main is not None and main.focus == "soft",
        "missed_focus": main is not None and main.focus == "missed",
        "misfire": bool(checks.misfire),
        "faces": bool(faces),
    }
    return any(found.get(key, False) for key in wanted)
