"""The measures behind the verdicts, on a real portrait and controlled variants of it."""

from __future__ import annotations

import numpy as np
from PIL import Image

from humanaes_core.checks.exposure import exposure, misfire
from humanaes_core.checks.focus import edge_sharpness, face_focus, frame_sharpness, photo_blur

from .conftest import gaussian_blur, motion_blur


def _grey(img: Image.Image) -> np.ndarray:
    return np.asarray(img.convert("L"), dtype=np.float32)


def test_edge_sharpness_falls_with_blur_whatever_the_contrast(portrait):
    sharp = edge_sharpness(_grey(portrait))
    soft = edge_sharpness(_grey(gaussian_blur(portrait, 2)))
    faint = edge_sharpness(_grey(portrait) * 0.3 + 90)  # a third of the contrast, same sharpness
    assert soft < sharp - 0.15
    assert abs(faint - sharp) < 0.05


def test_photo_blur_tells_shake_from_soft_and_passes_the_sharp_original(portrait):
    assert photo_blur(frame_sharpness(_grey(portrait)))[0] == "sharp"
    assert photo_blur(frame_sharpness(_grey(gaussian_blur(portrait, 2))))[0] == "soft"
    assert photo_blur(frame_sharpness(_grey(motion_blur(portrait, 9))))[0] == "shake"


def test_face_focus_is_relative_so_a_soft_background_is_not_punished():
    # eyes as sharp as the sharpest patch: sharp, whatever the (blurred) background measures
    assert face_focus(0.7, 0.68, 0.7)[0] == "sharp"
    # eyes far softer than the face and the frame (focus on the ear or the background): missed
    assert face_focus(0.4, 0.7, 0.72)[0] == "missed"
    # everything soft: the eyes are held against an absolute floor, not against the soft frame
    assert face_focus(0.45, 0.45, 0.46)[0] in ("soft", "missed")
    assert face_focus(None, 0.7, 0.7) == ("unknown", 0.0)


def test_exposure_and_misfires():
    rng = np.random.default_rng(0)
    normal = rng.normal(120, 40, (128, 128)).clip(0, 255)
    assert exposure(normal)[0] == "ok"
    assert exposure(normal * 0.08)[0] == "under" and exposure(normal * 0.08)[1] < -2
    assert exposure(np.clip(normal * 3, 0, 255))[0] == "over"
    assert misfire(np.zeros((64, 64))) == "black"
    assert misfire(np.full((64, 64), 253.0)) == "white"
    assert misfire(np.full((64, 64), 128.0) + rng.normal(0, 0.5, (64, 64))) == "uniform"
    assert misfire(normal) is None
