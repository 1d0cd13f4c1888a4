"""Camera-like JPEGs for the benchmarks, generated once into the bench cache folder.

A 24-megapixel camera JPEG is 6000×4000 (or 4000×6000), 8–12 MB, with an EXIF block. Decoding cost is
dominated by the entropy-coded data, so the files must be as large as real ones: each is a photo from
scikit-image (and one synthetic portrait) cropped to 3:2, upscaled, with sensor-like luminance noise,
saved at quality 92 with 4:2:0 chroma subsampling like in-camera JPEGs. Six such images are encoded
once; every file in the folder is one of them with its own EXIF block (capture time, serial number),
so all files have different content (and content hashes) without re-encoding 1,000 large images.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

_VERSION = 1  # bump when the files change, so an old bench cache is not reused
_EXIF_IFD = 0x8769


@dataclass(frozen=True)
class PhotoSpec:
    """Size of the long and short side, JPEG quality, and how many files the folder holds."""

    long_side: int = 6000
    short_side: int = 4000
    quality: int = 92

    @property
    def megapixels(self) -> float:
        return self.long_side * self.short_side / 1e6

    @property
    def label(self) -> str:
        return f"{self.long_side}x{self.short_side}-q{self.quality}"


def _bases() -> list[tuple[str, np.ndarray, bool]]:
    """(name, RGB pixels, portrait?) of the scenes; all ship with scikit-image or are drawn here."""
    from skimage import data

    from humanaes_core.data import parent_scores, render
    from humanaes_core.schema import LEAF_KEYS

    figure = render(parent_scores(dict.fromkeys(LEAF_KEYS, 0.7)), size=1024, seed=1)
    return [
        ("astronaut", data.astronaut(), True),
        ("coffee", data.coffee(), False),
        ("chelsea", data.chelsea(), False),
        ("rocket", data.rocket(), True),
        ("hubble", data.hubble_deep_field(), False),
        ("figure", np.asarray(figure), True),
    ]


def _crop_to(arr: np.ndarray, aspect: float) -> np.ndarray:
    """Centre crop to width/height = aspect."""
    h, w = arr.shape[:2]
    if w / h > aspect:
        nw = round(h * aspect)
        x = (w - nw) // 2
        return arr[:, x : x + nw]
    nh = round(w / aspect)
    y = (h - nh) // 2
    return arr[y : y + nh]


def _encode_base(arr: np.ndarray, portrait: bool, spec: PhotoSpec, seed: int) -> bytes:
    """Upscale, add luminance noise (a repeated 512² patch: cheap, and JPEG cannot exploit the repeat)."""
    w, h = (spec.short_side, spec.long_side) if portrait else (spec.long_side, spec.short_side)
    img = Image.fromarray(_crop_to(arr, w / h)).convert("RGB").resize((w, h), Image.Resampling.BICUBIC)
    rng = np.random.default_rng(seed)
    patch = rng.normal(0.0, 7.0, (512, 512, 1)).round().astype(np.int16)
    noise = np.tile(patch, (h // 512 + 1, w // 512 + 1, 1))[:h, :w]
    pixels = np.clip(np.asarray(img, dtype=np.int16) + noise, 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, "JPEG", quality=spec.quality, subsampling="4:2:0")
    return buf.getvalue()


def _exif_segment(index: int, size: tuple[int, int]) -> bytes:
    """An APP1 EXIF segment like a camera's: maker, model, orientation, exposure, capture time, serial."""
    exif = Image.Exif()
    exif[0x010F] = "HumanAes bench"  # Make
    exif[0x0110] = "Synthetic 24MP"  # Model
    exif[0x0112] = 1  # Orientation: stored upright, so the released recipe (no EXIF rotation) agrees
    exif[0x0131] = "bench/photos.py"  # Software
    sub = exif.get_ifd(_EXIF_IFD)
    minute, second = divmod(index, 60)
    hour, minute = divmod(minute, 60)
    sub[0x9003] = f"2024:06:01 {10 + hour % 12:02d}:{minute:02d}:{second:02d}"  # DateTimeOriginal
    sub[0x829A] = 1 / 250  # ExposureTime
    sub[0x829D] = 2.8  # FNumber
    sub[0x8827] = 400  # ISOSpeedRatings
    sub[0x920A] = 85.0  # FocalLength
    sub[0xA002], sub[0xA003] = size  # PixelXDimension, PixelYDimension
    sub[0xA420] = f"{index:032x}"  # ImageUniqueID: every file's bytes differ
    payload = exif.tobytes()
    return b"\xff\xe1" + (len(payload) + 2).to_bytes(2, "big") + payload


def photo_folder(cache_dir: Path, count: int, spec: PhotoSpec = PhotoSpec()) -> list[Path]:
    """`count` distinct camera JPEGs (IMG_0000.JPG ...), made on first use and reused afterwards."""
    folder = cache_dir / f"photos-v{_VERSION}-{spec.label}"
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"IMG_{i:04d}.JPG" for i in range(count)]
    missing = [i for i, p in enumerate(paths) if not p.is_file()]
    if not missing:
        return paths
    encoded: dict[int, tuple[bytes, tuple[int, int]]] = {}
    bases = _bases()
    for i in missing:
        b = i % len(bases)
        if b not in encoded:
            _, arr, portrait = bases[b]
            size = (spec.short_side, spec.long_side) if portrait else (spec.long_side, spec.short_side)
            encoded[b] = (_encode_base(arr, portrait, spec, seed=b), size)
        data, size = encoded[b]
        tmp = paths[i].with_suffix(".tmp")
        tmp.write_bytes(data[:2] + _exif_segment(i, size) + data[2:])
        os.replace(tmp, paths[i])
    return paths
