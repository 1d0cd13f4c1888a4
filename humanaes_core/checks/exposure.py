"""Exposure and misfires, from a small luminance thumbnail of the photo.

Exposure: the share of clipped highlights and crushed shadows, and an estimate in stops of how far the
frame sits from a normal exposure: the log-average of its linear luminance (Reinhard et al.'s "key")
against 18 % grey, the midpoint meters aim for. Low-key and high-key photos are legitimate, so the
verdict needs both a large error and the clipping to match it. Misfires: frames with nothing in them:
nearly all black (lens cap, flash did not fire), nearly all white (blown flash), or one flat tone.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["exposure", "misfire"]

_CLIP_HIGH = 250  # 8-bit sRGB levels counted as clipped highlights ...
_CLIP_LOW = 5  # ... and crushed shadows
_MID_GREY = 0.18
#: Stops under (negative) or over normal beyond which a frame is called under- or overexposed ...
UNDER_EV = -1.5
OVER_EV = 1.0
#: ... when at least this share of it is crushed (under) or clipped (over).
UNDER_CLIPPED = 0.15
OVER_CLIPPED = 0.05
#: Or, whatever the clipping, this far off (no low-key photo sits three stops under 18 % grey) ...
EXTREME_EV = 3.0
#: ... or, whatever the average, when this much of the frame is blown out or crushed (dark frames hold
#: more legitimate black than bright ones hold white).
HIGHLIGHTS_LOST = 0.25
SHADOWS_LOST = 0.5


def _linear(levels: np.ndarray) -> np.ndarray:
    """sRGB levels 0-255 to linear light 0-1."""
    v = levels / 255.0
    return np.where(v <= 0.04045, v / 12.92, ((v + 0.055) / 1.055) ** 2.4)


def exposure(luma: np.ndarray) -> tuple[str, float, float, float]:
    """("ok" | "under" | "over", EV estimate, highlights clipped, shadows clipped) of an 8-bit
    luminance thumbnail."""
    y = np.asarray(luma, dtype=np.float32)
    n = max(y.size, 1)
    high = float((y >= _CLIP_HIGH).sum()) / n
    low = float((y <= _CLIP_LOW).sum()) / n
    key = math.exp(float(np.mean(np.log(_linear(y) + 1e-4))))
    ev = math.log2(max(key, 1e-4) / _MID_GREY)
    if low >= SHADOWS_LOST or ev <= -EXTREME_EV or (ev <= UNDER_EV and low >= UNDER_CLIPPED):
        verdict = "under"
    elif high >= HIGHLIGHTS_LOST or ev >= EXTREME_EV or (ev >= OVER_EV and high >= OVER_CLIPPED):
        verdict = "over"
    else:
        verdict = "ok"
    return verdict, round(ev, 2), round(high, 4), round(low, 4)


def misfire(luma: np.ndarray) -> str | None:
    """ "black", "white" or "uniform" for a frame with nothing in it, else None."""
    y = np.asarray(luma, dtype=np.float32)
    lo, hi = np.percentile(y, (1, 99))
    if hi <= 24:
        return "black"
    if lo >= 240:
        return "white"
    if hi - lo <= 6:
        return "uniform"
    return None
