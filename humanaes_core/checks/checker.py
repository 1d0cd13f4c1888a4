"""Run every check on one photo: ``check_photo`` (a file) and ``check_image`` (a decoded image).

The photo is decoded once, draft-decoded to a long side of at least ``ANALYSIS_SIDE`` pixels (a 24 MP
JPEG decodes at half size, 3000 x 2000, in a fraction of a full decode), upright. Faces are found on a
pyramid of that image (``detector``), eyes and focus are read on crops of it, exposure and misfires on
a 256 px thumbnail. Coordinates are reported in pixels of the full-resolution photo.
"""

from __future__ import annotations

import os
import threading

import numpy as np
from PIL import Image, JpegImagePlugin

from humanaes_core.checks.detector import DetectedFace, FaceDetector, MediaPipeFaces
from humanaes_core.checks.exposure import exposure, misfire
from humanaes_core.checks.eyes import eye_state, gaze
from humanaes_core.checks.focus import edge_sharpness, face_focus, frame_sharpness, photo_blur
from humanaes_core.checks.results import CHECKS_VERSION, Face, PhotoChecks
from humanaes_core.errors import ImageLoadError
from humanaes_core.files import nonblocking_opener
from humanaes_core.formats import decoders

__all__ = ["ANALYSIS_SIDE", "check_image", "check_photo", "decode_for_checks", "default_detector"]

#: The analysis image's long side is at least this (or the photo's own, if smaller).
ANALYSIS_SIDE = 1600
_THUMB = 256
_MIN_EYE_CROP = 12  # eye crops narrower than this (pixels of the analysis image) cannot show focus
_MIN_FACE_CROP = 24
_TURNED = frozenset({5, 6, 7, 8})  # EXIF orientations that swap width and height
_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}

_detector: FaceDetector | None = None
_detector_lock = threading.Lock()


def default_detector() -> FaceDetector:
    """The process's ``MediaPipeFaces``, built on first use (it reads three model files)."""
    global _detector
    with _detector_lock:
        if _detector is None:
            _detector = MediaPipeFaces()
        return _detector


def _orientation(img: Image.Image) -> int:
    """The EXIF orientation (1 when absent or unreadable: a broken EXIF block costs the upright view,
    never the checks)."""
    try:
        return int(img.getexif().get(0x0112, 1))
    except Exception:
        return 1


def _target(full: tuple[int, int]) -> tuple[int, int]:
    """The upright size a draft decode must cover: long side ``ANALYSIS_SIDE``."""
    factor = min(1.0, ANALYSIS_SIDE / max(full))
    return max(1, round(full[0] * factor)), max(1, round(full[1] * factor))


def decode_for_checks(path: str | os.PathLike[str]) -> tuple[Image.Image, tuple[int, int]]:
    """(upright RGB analysis image, upright full-resolution size): RAW files through the formats
    decoders (the embedded preview when large enough), others through Pillow's draft mode."""
    name = os.fspath(path)
    if decoders.is_raw(name):
        try:
            img, full = decoders.decode_raw(name, True, _target)
            return img.convert("RGB"), full
        except ImageLoadError as e:
            if e.reason != decoders.NOT_RAW:
                raise
    try:
        with open(name, "rb", buffering=0, opener=nonblocking_opener) as fp:
            decoders.check_regular(fp.fileno(), name)
            img = Image.open(fp)
            orientation = _orientation(img)
            full = (img.height, img.width) if orientation in _TURNED else img.size
            if isinstance(img, JpegImagePlugin.JpegImageFile):
                tw, th = _target(full)
                img.draft("RGB", (th, tw) if orientation in _TURNED else (tw, th))
            img.load()
            if orientation in _TRANSPOSE:
                img = img.transpose(_TRANSPOSE[orientation])
            factor = max(img.size) // ANALYSIS_SIDE
            if factor >= 2:  # not drafted (PNG, TIFF, HEIC): the same analysis scale as a drafted JPEG
                img = img.reduce(factor)
            return img.convert("RGB"), full
    except ImageLoadError:
        raise
    except Exception as exc:
        raise ImageLoadError(name, f"cannot be read as a photo ({type(exc).__name__}: {exc})") from exc


def check_photo(
    path: str | os.PathLike[str], detector: FaceDetector | None = None
) -> tuple[list[Face], PhotoChecks]:
    """Faces and whole-photo checks of a photo file (see ``check_image``); raises ``ImageLoadError``
    when it cannot be decoded."""
    img, full = decode_for_checks(path)
    return check_image(img, full_size=full, detector=detector)


def _crop_sharpness(grey: np.ndarray, box: tuple[float, float, float, float], minimum: int) -> float | None:
    x, y, w, h = box
    if w < minimum:
        return None
    x0, y0 = max(int(x), 0), max(int(y), 0)
    region = grey[y0 : int(y + h) + 1, x0 : int(x + w) + 1]
    return edge_sharpness(region) if region.size else None


def _eye_box(lids: np.ndarray) -> tuple[float, float, float, float]:
    """The eye and its lashes: the contour's box, widened by a third and at least half as tall as wide."""
    x0, y0 = lids.min(0)
    x1, y1 = lids.max(0)
    w = (x1 - x0) * 1.33
    h = max((y1 - y0) * 1.6, w / 2)
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    return cx - w / 2, cy - h / 2, w, h


def _face(found: DetectedFace, grey: np.ndarray, scale: float, frame_ref: float | None) -> Face:
    states = {name: eye_state(found, name, grey, scale) for name in ("left_eye", "right_eye")}
    eyes = [
        _crop_sharpness(grey, _eye_box(found.eyelids[n]), _MIN_EYE_CROP)
        for n, state in states.items()
        if state != "unknown" and n in found.eyelids
    ]
    eyes_sharp = max((e for e in eyes if e is not None), default=None)
    face_sharp = _crop_sharpness(grey, found.box, _MIN_FACE_CROP)
    if eyes_sharp is None and min(found.box[2], found.box[3]) >= _MIN_FACE_CROP and abs(found.yaw) < 0.9:
        eyes_sharp, face_sharp = face_sharp, None  # eyes too small or unreadable: the face stands in
    focus, score = face_focus(eyes_sharp, face_sharp, frame_ref)
    x, y, w, h = (v / scale for v in found.box)
    return Face(
        box=(round(x), round(y), round(w), round(h)),
        landmarks={k: (round(px / scale, 1), round(py / scale, 1)) for k, (px, py) in found.points.items()},
        size=round(w),
        left_eye=states["left_eye"],
        right_eye=states["right_eye"],
        eyes_closed=states["left_eye"] == "closed" and states["right_eye"] == "closed",
        focus=focus,
        focus_score=round(score, 3),
        gaze=gaze(found, states),
        confidence=round(min(found.confidence, found.presence), 3),
    )


def check_image(
    image: Image.Image,
    *,
    full_size: tuple[int, int] | None = None,
    detector: FaceDetector | None = None,
) -> tuple[list[Face], PhotoChecks]:
    """Faces (largest first) and whole-photo checks of an upright decoded photo.

    `full_size` is the upright size of the full-resolution photo when `image` is a reduced decode, so
    that boxes and landmarks come back in full-resolution pixels and small faces are searched for at
    their true size. A misfire is not searched for faces.
    """
    img = image if image.mode == "RGB" else image.convert("RGB")
    scale = img.width / full_size[0] if full_size else 1.0
    grey_img = img.convert("L")
    grey = np.asarray(grey_img)  # uint8: crops are turned into floats where measured
    thumb = grey_img.copy()
    thumb.thumbnail((_THUMB, _THUMB), Image.Resampling.BILINEAR, reducing_gap=2.0)
    luma = np.asarray(thumb, dtype=np.float32)
    fired = misfire(luma)
    verdict, ev, high, low = exposure(luma)
    frame = frame_sharpness(grey) if fired is None else None
    blur, blur_score = photo_blur(frame)
    faces: list[Face] = []
    if fired is None:
        found = (detector or default_detector()).detect(img, scale)
        ref = frame.reference if frame is not None else None
        faces = sorted((_face(f, grey, scale, ref) for f in found), key=lambda f: -f.size)
        if any(f.focus == "sharp" for f in faces):
            blur = "sharp"  # the subject is sharp: a background melted by a wide aperture is no blur
    checks = PhotoChecks(
        blur=blur,
        blur_score=round(blur_score, 3),
        exposure=verdict,
        exposure_ev=ev,
        highlights_clipped=high,
        shadows_clipped=low,
        misfire=fired,
        main_face=0 if faces else None,
        version=CHECKS_VERSION,
    )
    return faces, checks
