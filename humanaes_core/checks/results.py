"""What the photographer's first-pass checks found: one ``Face`` per face, one ``PhotoChecks`` per photo.

Plain frozen data with ``to_dict``/``from_dict``, so the store, the card tables, culling and the app
share it without importing the detectors (which need LiteRT). ``CHECKS_VERSION`` goes up whenever a
detector or a threshold changes what a verdict would be: the store keys cached results by it, so a
new version is computed afresh and an old one is never mixed in.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = [
    "BLUR_VERDICTS",
    "CHECKS_VERSION",
    "EXPOSURE_VERDICTS",
    "EYE_STATES",
    "FOCUS_MISSED_BELOW",
    "FOCUS_SHARP_FROM",
    "FOCUS_VERDICTS",
    "GAZE_VERDICTS",
    "MISFIRES",
    "Face",
    "PhotoChecks",
]

#: What the checks compute; stored results of another version are computed again (``store.CheckStore``).
#: 2: the head turn is measured along the eye line, so a tilted head no longer reads as turned away.
CHECKS_VERSION = 2

EYE_STATES = ("open", "closed", "unknown")
FOCUS_VERDICTS = ("sharp", "soft", "missed", "unknown")
GAZE_VERDICTS = ("camera", "away", "unknown")
BLUR_VERDICTS = ("sharp", "shake", "soft")
EXPOSURE_VERDICTS = ("ok", "under", "over")
MISFIRES = ("black", "white", "uniform")

#: ``Face.focus_score`` is the eyes' sharpness over the sharper of the rest of the face and the frame's
#: sharpest region: "sharp" from this value up ...
FOCUS_SHARP_FROM = 0.5
#: ... "missed" below this one, "soft" between.
FOCUS_MISSED_BELOW = 0.25


@dataclass(frozen=True)
class Face:
    """One face, in pixels of the upright full-resolution photo.

    ``box`` is (x, y, w, h); ``landmarks`` names points (at least "left_eye" and "right_eye", the
    subject's own left and right); ``size`` is the face width. Each eye is "open", "closed" or
    "unknown" (too small, profile, sunglasses); ``eyes_closed`` is True only when both are closed.
    ``focus`` says whether the eyes are sharp against the rest of the face and the sharpest part of
    the frame ("sharp" | "soft" | "missed" | "unknown"), ``focus_score`` the measure behind it (1 = as
    sharp as the sharpest region). ``gaze`` is "camera", "away" or "unknown".
    """

    box: tuple[int, int, int, int]
    landmarks: dict[str, tuple[float, float]] = field(default_factory=dict)
    size: int = 0
    left_eye: str = "unknown"
    right_eye: str = "unknown"
    eyes_closed: bool = False
    focus: str = "unknown"
    focus_score: float = 0.0
    gaze: str = "unknown"
    confidence: float = 0.0

    @property
    def closed_eyes(self) -> int:
        """How many of the two eyes are seen closed (0, 1 or 2)."""
        return (self.left_eye == "closed") + (self.right_eye == "closed")

    def to_dict(self) -> dict:
        """JSON-ready; ``Face.from_dict`` reverses it."""
        return {
            "box": list(self.box),
            "landmarks": {k: [float(x), float(y)] for k, (x, y) in self.landmarks.items()},
            "size": self.size,
            "left_eye": self.left_eye,
            "right_eye": self.right_eye,
            "eyes_closed": self.eyes_closed,
            "focus": self.focus,
            "focus_score": self.focus_score,
            "gaze": self.gaze,
            "confidence": self.confidence,
        }

    @classmethod
    def from_dict(cls, data: dict) -> Face:
        x, y, w, h = (int(v) for v in data["box"])
        return cls(
            box=(x, y, w, h),
            landmarks={k: (float(p[0]), float(p[1])) for k, p in data.get("landmarks", {}).items()},
            size=int(data.get("size", w)),
            left_eye=str(data.get("left_eye", "unknown")),
            right_eye=str(data.get("right_eye", "unknown")),
            eyes_closed=bool(data.get("eyes_closed", False)),
            focus=str(data.get("focus", "unknown")),
            focus_score=float(data.get("focus_score", 0.0)),
            gaze=str(data.get("gaze", "unknown")),
            confidence=float(data.get("confidence", 0.0)),
        )


@dataclass(frozen=True)
class PhotoChecks:
    """Whole-photo checks. ``blur``: "sharp", "shake" (directional: the camera moved) or "soft" (no
    direction: focus missed everything); ``exposure``: "ok", "under" or "over", with ``exposure_ev``
    the estimated error in stops (negative = under) and the fractions of clipped pixels; ``misfire``:
    None, or "black" / "white" / "uniform" for a frame with nothing in it. ``main_face`` indexes the
    faces list it was computed with (the largest face), None without faces."""

    blur: str = "sharp"
    blur_score: float = 0.0
    exposure: str = "ok"
    exposure_ev: float = 0.0
    highlights_clipped: float = 0.0
    shadows_clipped: float = 0.0
    misfire: str | None = None
    main_face: int | None = None
    version: int = CHECKS_VERSION

    def to_dict(self) -> dict:
        """JSON-ready; ``PhotoChecks.from_dict`` reverses it."""
        return {
            "blur": self.blur,
            "blur_score": self.blur_score,
            "exposure": self.exposure,
            "exposure_ev": self.exposure_ev,
            "highlights_clipped": self.highlights_clipped,
            "shadows_clipped": self.shadows_clipped,
            "misfire": self.misfire,
            "main_face": self.main_face,
            "version": self.version,
        }

    @classmethod
    def from_dict(cls, data: dict) -> PhotoChecks:
        main = data.get("main_face")
        return cls(
            blur=str(data.get("blur", "sharp")),
            blur_score=float(data.get("blur_score", 0.0)),
            exposure=str(data.get("exposure", "ok")),
            exposure_ev=float(data.get("exposure_ev", 0.0)),
            highlights_clipped=float(data.get("highlights_clipped", 0.0)),
            shadows_clipped=float(data.get("shadows_clipped", 0.0)),
            misfire=data.get("misfire"),
            main_face=None if main is None else int(main),
            version=int(data.get("version", CHECKS_VERSION)),
        )
