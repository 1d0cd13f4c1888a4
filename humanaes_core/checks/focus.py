"""Sharpness: focus on the eyes, and whole-frame blur told apart as camera shake or missed focus.

One measure serves both, chosen so that contrast and content do not decide it: along a direction, a
sharp edge changes as much over one pixel as over three (ratio about 1), while an edge blurred over w
pixels changes three times less over one pixel than over three (ratio about 1/3 for w >= 3). The mean
of that ratio over a region's strongest edges is its sharpness (``edge_sharpness``), in the same units
for an eye, a face and a patch of background. Camera shake smears edges along one direction only, so
the four directions' ratios disagree (``anisotropy``); missed focus softens them all alike.

Focus on the eyes is judged against the sharpest thing in the frame and the rest of the face, never
against a fixed whole-frame value, so a portrait at f/1.4 with the background melted away is "sharp"
when its eyes are, and a frame focused on the ear or the background is "missed" even when something in
it is crisp. Everything runs on small crops (eyes, face, the frame's most detailed patches), so it costs
a few milliseconds whatever the photo's size.
"""

from __future__ import annotations

import numpy as np

from humanaes_core.checks.results import FOCUS_MISSED_BELOW, FOCUS_SHARP_FROM

__all__ = [
    "FrameSharpness",
    "anisotropy",
    "edge_ratios",
    "edge_sharpness",
    "face_focus",
    "frame_sharpness",
    "photo_blur",
]

_DIRECTIONS = ((0, 1), (1, 0), (1, 1), (1, -1))  # (dy, dx): across columns, rows, both diagonals
_EDGE_SHARE = 0.1  # a region's sharpness is read on its strongest tenth of edge pixels
_MIN_EDGE = 6.0  # grey levels over 3 px: weaker changes are noise or flat, not edges
_PATCH = 64  # frame patches, pixels of the analysis image
_CANDIDATES = 16  # the frame's most detailed patches are measured ...
_TOP_PATCHES = 6  # ... and the sharpest few of them are its reference
#: Whole-frame verdicts: below this sharpness nothing in the frame is sharp ...
FRAME_SOFT_BELOW = 0.6
#: Eyes are never "sharp" in a frame where nothing reaches this: the reference the eyes are held
#: against is at least this sharp, so a photo soft all over has soft eyes too.
SHARP_ENOUGH = 0.62
#: ... and below this direction agreement the blur has a direction: the camera moved.
SHAKE_BELOW = 0.6


def edge_ratios(grey: np.ndarray) -> np.ndarray | None:
    """Per direction (4), the mean 1-pixel over 3-pixel change on the region's strongest edges; None
    when the region holds no edge at all."""
    g = np.asarray(grey, dtype=np.float32)
    if g.shape[0] < 8 or g.shape[1] < 8:
        return None
    out = np.empty(4, dtype=np.float32)
    for i, (dy, dx) in enumerate(_DIRECTIONS):
        h, w = g.shape
        y0, x0 = 3 * max(0, -dy) if dy < 0 else 0, 3 * max(0, -dx)
        y1, x1 = h - 3 * max(0, dy), w - 3 * max(0, dx)
        base = g[y0:y1, x0:x1]
        far = g[y0 + 3 * dy : y1 + 3 * dy, x0 + 3 * dx : x1 + 3 * dx]
        coarse = np.abs(far - base)
        # the largest 1-px step inside the 3-px span: a sharp edge puts its whole change in one step
        steps = [
            np.abs(
                g[y0 + (k + 1) * dy : y1 + (k + 1) * dy, x0 + (k + 1) * dx : x1 + (k + 1) * dx]
                - g[y0 + k * dy : y1 + k * dy, x0 + k * dx : x1 + k * dx]
            )
            for k in range(3)
        ]
        fine = np.maximum(np.maximum(steps[0], steps[1]), steps[2])
        flat = coarse.ravel()
        if flat.size == 0:
            return None
        k = int(flat.size * (1 - _EDGE_SHARE))
        cut = max(float(np.partition(flat, k)[k]), _MIN_EDGE)
        edges = coarse >= cut
        if edges.sum() < 4:
            out[i] = np.nan
            continue
        out[i] = float(np.mean(np.minimum(fine[edges] / coarse[edges], 1.0)))
    if np.isnan(out).all():
        return None
    return out


def _sharpness(ratios: np.ndarray) -> float:
    """The mean of the two softest directions: blur in any one direction (shake) lowers it too."""
    r = np.sort(ratios[~np.isnan(ratios)])
    return float(r[:2].mean())


def edge_sharpness(grey: np.ndarray) -> float | None:
    """A region's sharpness in [1/3, 1] (see the module docstring): the 1-over-3-pixel ratio of its
    two softest directions; None without edges."""
    ratios = edge_ratios(grey)
    return None if ratios is None else _sharpness(ratios)


def anisotropy(ratios: np.ndarray) -> float:
    """How much the four directions agree: min over max of their ratios mapped from [1/3, 1] to
    [0, 1] (1 = the same in every direction)."""
    r = (np.clip(ratios[~np.isnan(ratios)], 1 / 3, 1) - 1 / 3) * 1.5
    return float(r.min() / r.max()) if r.size and r.max() > 0 else 1.0


class FrameSharpness:
    """The frame's most detailed patches, measured once per photo: the reference the eyes are held
    against (``reference``) and the whole-frame blur (``ratios``, per direction)."""

    def __init__(self, reference: float, ratios: np.ndarray) -> None:
        self.reference = reference
        self.ratios = ratios


def frame_sharpness(grey: np.ndarray) -> FrameSharpness | None:
    """Measure the frame's most detailed 64 px patches (found on an 8x subsampled grid) and average
    the sharpest few; None for a frame without edges (a misfire, fog)."""
    g = np.asarray(grey)
    h, w = g.shape
    rows, cols = h // _PATCH, w // _PATCH
    if rows == 0 or cols == 0:
        ratios = edge_ratios(g)
        return None if ratios is None else FrameSharpness(_sharpness(ratios), ratios)
    step = _PATCH // 8
    coarse = g[: rows * _PATCH : step, : cols * _PATCH : step].astype(np.float32).reshape(rows, 8, cols, 8)
    detail = np.abs(np.diff(coarse, axis=3)).mean(axis=(1, 3)) + np.abs(np.diff(coarse, axis=1)).mean(
        axis=(1, 3)
    )
    measured = []
    for idx in np.argsort(-detail.ravel())[:_CANDIDATES]:
        r, c = divmod(int(idx), cols)
        ratios = edge_ratios(g[r * _PATCH : (r + 1) * _PATCH, c * _PATCH : (c + 1) * _PATCH])
        if ratios is not None:
            measured.append(ratios)
    if not measured:
        return None
    measured.sort(key=lambda r: -_sharpness(r))
    top = np.array(measured[:_TOP_PATCHES])
    seen = ~np.isnan(top)
    # per direction, the mean over the patches that had edges that way (a direction none had stays nan)
    ratios = np.where(seen.any(0), np.where(seen, top, 0).sum(0) / np.maximum(seen.sum(0), 1), np.nan)
    return FrameSharpness(_sharpness(ratios), ratios)


def photo_blur(frame: FrameSharpness | None) -> tuple[str, float]:
    """("sharp" | "shake" | "soft", sharpness): soft or shaken when even the frame's sharpest patches
    are soft; shaken when their blur has a direction."""
    if frame is None:
        return "sharp", 0.0
    score = frame.reference
    if score >= FRAME_SOFT_BELOW:
        return "sharp", score
    return ("shake" if anisotropy(frame.ratios) < SHAKE_BELOW else "soft"), score


def face_focus(eyes: float | None, face: float | None, frame: float | None) -> tuple[str, float]:
    """(verdict, score) for one face from the sharpness of its eyes, of the rest of the face and of
    the frame's sharpest patches. The score is the eyes' sharpness above blur (1/3) over the
    reference's (the sharpest of face, frame and ``SHARP_ENOUGH``): 1 when the eyes are the sharpest
    thing in a sharp frame."""
    if eyes is None:
        return "unknown", 0.0
    reference = max(v for v in (face, frame, eyes, SHARP_ENOUGH) if v is not None)
    score = float(np.clip((eyes - 1 / 3) / max(reference - 1 / 3, 1e-3), 0.0, 1.0))
    verdict = "sharp" if score >= FOCUS_SHARP_FROM else "missed" if score < FOCUS_MISSED_BELOW else "soft"
    return verdict, score
