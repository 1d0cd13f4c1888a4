"""Eyes: open or closed, "unknown" when they cannot be read, and whether they look at the camera.

The Iris model traces each eyelid (9 points along the lower lid, corner to corner, 7 along the upper).
How far the lids are apart over how wide the eye is, the eye aspect ratio of Soukupová and Čech (2016)
measured on those contours, is large for an open eye (0.3-0.45 in our photos) and near zero for a
closed one. An eye is "unknown" rather than guessed when it is too small to trace (under
``MIN_EYE_WIDTH`` pixels at full resolution), foreshortened by a turned head (a profile) or hidden behind
a dark, flat lens (sunglasses).
"""

from __future__ import annotations

import math

import numpy as np

from humanaes_core.checks.detector import DetectedFace

__all__ = [
    "CLOSED_BELOW",
    "MIN_EYE_WIDTH",
    "eye_aspect_ratio",
    "eye_state",
    "gaze",
]

#: Eye aspect ratio below which an eye is closed. Open eyes measure 0.3-0.45, a squint about 0.2,
#: closed lids under 0.1.
CLOSED_BELOW = 0.15
#: Narrowest eye (corner to corner, pixels at full resolution) whose lids can be read.
MIN_EYE_WIDTH = 12.0
#: A head turned further than this (|yaw|, 0 = facing the camera, 1 = profile) shows no readable eyes.
PROFILE_YAW = 0.6
#: An eye narrower than this share of the other one is turned away (the far eye of a three-quarter view).
FORESHORTENED = 0.55
#: Sunglasses: the eye region darker than this share of the cheek below it, and nearly flat inside.
_LENS_DARKNESS = 0.45
_LENS_FLATNESS = 10.0
# pairs of (upper, lower) contour points facing each other across the eye
_LID_PAIRS = ((10, 2), (11, 3), (12, 4), (13, 5), (14, 6))
_GAZE_CENTRED = 0.22  # iris within this share of the eye's half width from its middle: looking ahead
_GAZE_YAW = 0.35


def _width(lids: np.ndarray) -> float:
    return float(math.dist(lids[0], lids[8]))


def eye_aspect_ratio(lids: np.ndarray) -> float:
    """Mean lid-to-lid distance over corner-to-corner width for a 16-point eyelid contour."""
    width = _width(lids)
    if width <= 0:
        return 0.0
    return float(np.mean([math.dist(lids[u], lids[d]) for u, d in _LID_PAIRS]) / width)


def _behind_lens(grey: np.ndarray, lids: np.ndarray) -> bool:
    """Whether the eye sits behind a dark, flat lens: its region much darker than the cheek under it."""
    width = _width(lids)
    cx, cy = lids[:, 0].mean(), lids[:, 1].mean()
    h, w = grey.shape

    def region(y: float) -> np.ndarray:
        x0, x1 = int(max(cx - width / 2, 0)), int(min(cx + width / 2, w))
        y0, y1 = int(max(y - width / 4, 0)), int(min(y + width / 4, h))
        return grey[y0:y1, x0:x1]

    eye, cheek = region(cy), region(cy + 1.2 * width)
    if eye.size < 16 or cheek.size < 16:
        return False
    return float(eye.mean()) < _LENS_DARKNESS * float(cheek.mean()) and float(eye.std()) < _LENS_FLATNESS


def eye_state(face: DetectedFace, name: str, grey: np.ndarray, scale: float) -> str:
    """ "open", "closed" or "unknown" for one eye ("left_eye" or "right_eye") of a detected face;
    `grey` is the analysis image, `scale` its size over the full-resolution photo's."""
    lids = face.eyelids.get(name)
    if lids is None or abs(face.yaw) > PROFILE_YAW:
        return "unknown"
    width = _width(lids)
    other = face.eyelids.get("left_eye" if name == "right_eye" else "right_eye")
    if width / scale < MIN_EYE_WIDTH or (other is not None and width < FORESHORTENED * _width(other)):
        return "unknown"
    if _behind_lens(grey, lids):
        return "unknown"
    return "closed" if eye_aspect_ratio(lids) < CLOSED_BELOW else "open"


def gaze(face: DetectedFace, states: dict[str, str]) -> str:
    """ "camera" when the head faces the camera and both irises sit in the middle of their eyes,
    "away" otherwise, "unknown" when no eye is open."""
    offsets = []
    for name, state in states.items():
        if state != "open" or name not in face.iris:
            continue
        lids = face.eyelids[name]
        a, b = lids[0], lids[8]
        axis = (b - a) / max(float(np.linalg.norm(b - a)), 1e-6)
        middle = (a + b) / 2
        iris = np.array(face.iris[name][:2])
        offsets.append(abs(float(np.dot(iris - middle, axis))) / (_width(lids) / 2))
    if not offsets:
        return "unknown"
    return "camera" if abs(face.yaw) < _GAZE_YAW and max(offsets) < _GAZE_CENTRED else "away"
