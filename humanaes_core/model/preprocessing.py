"""Image loading and InternVL dynamic-tiling preprocessing.

The released HumanAesExpert checkpoints were trained on InternVL's preprocessing: the photo is resized
(bicubic) to the grid of 448×448 tiles whose aspect ratio is closest to its own, cut into those tiles,
followed by a whole-image thumbnail tile, then scaled to [0, 1] and normalised with ImageNet mean/std.
The tiling here reproduces that rule bit for bit, including its tie-breaking, because a different grid
means different pixels reach the model and different scores come out.

Loading is stricter than InternVL's ``Image.open(...).convert("RGB")``: photographers' files carry EXIF
orientation, ICC profiles, alpha, 16-bit and CMYK data, and a culling tool has to show the photo the way
they see it and fail with a readable message (``ImageLoadError``) on a bad file instead of a traceback.
HEIC/HEIF and camera RAW files are read through ``formats`` (pillow-heif, rawpy).

Every file decode has a time limit (``decode_timeout``: 30 s unless configured). Python cannot kill a
thread, so the decode runs in a helper thread that the caller stops waiting for at the deadline (the
photo is reported as "decoding took too long" and the scan goes on); the helper's file reads fail from
then on, so Pillow's chunked decoders give up at their next read instead of finishing a useless decode.
A decoder stuck inside one C call (LibRaw, libheif) finishes in the background, abandoned. Animated
GIF/WebP/PNG files are scored by their first frame, which is what Pillow decodes when a file is opened.
"""

from __future__ import annotations

import io
import logging
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import TypeVar

import numpy as np
import torch
from PIL import Image, ImageCms, ImageOps, JpegImagePlugin, UnidentifiedImageError

from humanaes_core.errors import ImageLoadError
from humanaes_core.files import (
    DECODE_TIMEOUT_ENV,
    DEFAULT_DECODE_TIMEOUT_S,
    TOO_SLOW,
    Deadline,
    DeadlineFile,
    DecodeTimeout,
    abandoned_decodes,
    decode_timeout,
    nonblocking_opener,
    run_with_time_limit,
)
from humanaes_core.formats import decoders as formats
from humanaes_core.model.meta import IMAGENET_MEAN, IMAGENET_STD

__all__ = [
    "DECODE_TIMEOUT_ENV",
    "DEFAULT_CONFIG",
    "DEFAULT_DECODE_TIMEOUT_S",
    "TOO_SLOW",
    "ImageSource",
    "TileConfig",
    "abandoned_decodes",
    "candidate_grids",
    "closest_grid",
    "decode_timeout",
    "load_image",
    "preprocess",
    "tile_count",
    "tile_image",
]

log = logging.getLogger(__name__)


ImageSource = str | os.PathLike[str] | Image.Image

_ORIENTATION_TAG = 0x0112
#: EXIF orientations that turn the photo by 90°: displayed width and height are the stored height and width.
_EXIF_ORIENTATIONS_TURNED = frozenset({5, 6, 7, 8})
_WHITE = (255, 255, 255)
_ALPHA_MODES = frozenset({"RGBA", "RGBa", "LA", "La", "PA"})
_BICUBIC = Image.Resampling.BICUBIC


T = TypeVar("T")


@dataclass(frozen=True)
class TileConfig:
    """How a photo is cut into model tiles; the defaults are the ones HumanAesExpert was trained with."""

    image_size: int = 448
    max_tiles: int = 12
    min_tiles: int = 1
    use_thumbnail: bool = True
    fast_decode: bool = True  # JPEG draft mode (reduced-size DCT decoding) when the target is much smaller
    # decode as the release's load_image: Image.open(...).convert("RGB"), full decode, no EXIF rotation,
    # no ICC conversion, alpha dropped (not over white); fast_decode does not apply
    release_decode: bool = False
    decode_timeout: float | None = None  # seconds per file; None: $HUMANAES_DECODE_TIMEOUT or 30 s
    mean: tuple[float, float, float] = IMAGENET_MEAN  # per-channel normalisation, from the checkpoint
    std: tuple[float, float, float] = IMAGENET_STD

    def __post_init__(self) -> None:
        if self.image_size < 1:
            raise ValueError(f"image_size must be positive, got {self.image_size}")
        if not 1 <= self.min_tiles <= self.max_tiles:
            raise ValueError(f"need 1 <= min_tiles <= max_tiles, got {self.min_tiles}, {self.max_tiles}")


DEFAULT_CONFIG = TileConfig()


# --------------------------------------------------------------------------------------------- tiling


@lru_cache(maxsize=64)
def _candidate_grids(min_tiles: int, max_tiles: int) -> tuple[tuple[int, int], ...]:
    # InternVL collects the grids in a Python set and then sorts it (stably) by area, so grids of equal
    # area come out in the set's iteration order, which is what breaks ties in closest_grid. That order
    # depends on the insertion sequence, so the set is filled with exactly the same nested loops.
    grids = set()
    for n in range(min_tiles, max_tiles + 1):
        for i in range(1, n + 1):
            for j in range(1, n + 1):
                if min_tiles <= i * j <= max_tiles:
                    grids.add((i, j))
    return tuple(sorted(grids, key=lambda g: g[0] * g[1]))


def candidate_grids(min_tiles: int, max_tiles: int) -> list[tuple[int, int]]:
    """All (cols, rows) grids with min_tiles <= cols*rows <= max_tiles, in InternVL's order (by area)."""
    return list(_candidate_grids(min_tiles, max_tiles))


def closest_grid(width: int, height: int, cfg: TileConfig = DEFAULT_CONFIG) -> tuple[int, int]:
    """(cols, rows) InternVL picks for a width×height image (its ``find_closest_aspect_ratio``).

    Equal aspect-ratio distance goes to the later (larger) grid only if the image has more than half
    the pixels that grid's tiles hold, so small images are not blown up into many tiles.
    """
    aspect = width / height
    area = width * height
    half_tile = 0.5 * cfg.image_size * cfg.image_size
    best, best_diff = (1, 1), float("inf")
    for cols, rows in _candidate_grids(cfg.min_tiles, cfg.max_tiles):
        diff = abs(aspect - cols / rows)
        if diff < best_diff:
            best, best_diff = (cols, rows), diff
        elif diff == best_diff and area > half_tile * cols * rows:
            best = (cols, rows)
    return best


def tile_count(width: int, height: int, cfg: TileConfig = DEFAULT_CONFIG) -> int:
    """Number of tiles (thumbnail included) the model sees for a width×height image: 256 tokens each."""
    cols, rows = closest_grid(width, height, cfg)
    n = cols * rows
    return n + 1 if cfg.use_thumbnail and n > 1 else n


def tile_image(
    img: Image.Image, cfg: TileConfig = DEFAULT_CONFIG, *, grid: tuple[int, int] | None = None
) -> list[Image.Image]:
    """Cut an RGB image into S×S tiles, row-major, plus a thumbnail when there is more than one tile.

    ``grid`` overrides the grid choice; preprocess passes the grid of the full-size file so that a
    draft-decoded (slightly differently sized) image is tiled exactly like a full decode.
    """
    if img.mode != "RGB":
        img = img.convert("RGB")
    size = cfg.image_size
    cols, rows = grid if grid is not None else closest_grid(img.width, img.height, cfg)
    resized = img.resize((cols * size, rows * size), _BICUBIC)
    tiles = [
        resized.crop((c * size, r * size, (c + 1) * size, (r + 1) * size))
        for r in range(rows)
        for c in range(cols)
    ]
    if cfg.use_thumbnail and len(tiles) > 1:
        tiles.append(img.resize((size, size), _BICUBIC))
    return tiles


# -------------------------------------------------------------------------------------------- loading


def _source_name(source: ImageSource) -> str:
    if isinstance(source, Image.Image):
        return str(getattr(source, "filename", "") or "<image>")
    return os.fspath(source)


def _too_large(exc: BaseException) -> str:
    match = re.search(r"(\d+) pixels", str(exc))
    if match is None:
        return "too large"
    return f"too large ({int(match.group(1)) / 1e6:.0f} megapixels)"


def _load_error(exc: BaseException, name: str) -> ImageLoadError:
    """Turn whatever Pillow or the OS raised into a short reason a photographer can act on."""
    if isinstance(exc, ImageLoadError):
        return exc
    if isinstance(exc, DecodeTimeout):
        reason = TOO_SLOW
    elif isinstance(exc, Image.DecompressionBombError):
        reason = _too_large(exc)
    elif isinstance(exc, MemoryError):
        reason = "too large (out of memory)"
    elif isinstance(exc, FileNotFoundError):
        reason = "file not found"
    elif isinstance(exc, IsADirectoryError):
        reason = "is a directory"
    elif isinstance(exc, PermissionError):
        reason = "is a directory" if os.path.isdir(name) else "permission denied"  # Windows says EACCES
    elif isinstance(exc, UnidentifiedImageError):
        empty = os.path.isfile(name) and os.path.getsize(name) == 0
        reason = "not an image (empty file)" if empty else "not an image"
    else:
        reason = "truncated or corrupt image data"
    return ImageLoadError(name, reason)


def _orientation(img: Image.Image) -> int:
    try:
        value = img.getexif().get(_ORIENTATION_TAG, 1)
        return int(value)
    except Exception:  # a broken EXIF block must not make the photo unreadable
        return 1


def _upright(img: Image.Image) -> Image.Image:
    try:
        return ImageOps.exif_transpose(img)
    except Exception:  # same: show the stored pixels rather than fail on bad metadata
        return img


def _over_white(img: Image.Image) -> Image.Image:
    """Composite on white: transparent areas of a PNG look white in every viewer, so the model sees that."""
    rgba = img if img.mode == "RGBA" else img.convert("RGBA")
    out = Image.new("RGB", rgba.size, _WHITE)
    out.paste(rgba, mask=rgba.getchannel("A"))
    return out


def _high_bit_depth_to_rgb(img: Image.Image) -> Image.Image:
    """Map 16-bit/32-bit/float greyscale to 8 bits by its real range (Pillow's own convert clips at 255)."""
    arr = np.asarray(img)
    if img.mode == "F":
        data = np.nan_to_num(arr.astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0)
        lo, hi = float(data.min()), float(data.max())
        if lo >= 0 and hi <= 1:
            u8 = np.rint(data * 255)
        elif lo >= 0 and hi <= 255:
            u8 = np.rint(data)
        elif lo >= 0 and hi <= 65535:
            u8 = np.floor(data / 256)
        else:
            u8 = np.rint((data - lo) * (255 / ((hi - lo) or 1)))
    else:  # I;16, I;16B, I;16L, I;16N, I: treated as 16-bit samples, as produced by 16-bit PNG/TIFF
        data = arr.astype(np.int64)
        lo, hi = int(data.min()), int(data.max())
        in_16bit_range = lo >= 0 and hi <= 65535
        u8 = data >> 8 if in_16bit_range else np.rint((data - lo) * (255 / ((hi - lo) or 1)))
    return Image.fromarray(np.clip(u8, 0, 255).astype(np.uint8), "L").convert("RGB")


@lru_cache(maxsize=16)
def _icc_transform(icc: bytes, in_mode: str) -> ImageCms.ImageCmsTransform | None:
    """Cached transform from an embedded profile to sRGB; None when it is sRGB already or unusable."""
    try:
        profile = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        space = profile.profile.xcolor_space.strip()
        if space != {"RGB": "RGB", "CMYK": "CMYK"}.get(in_mode):
            return None
        if in_mode == "RGB" and "srgb" in ImageCms.getProfileDescription(profile).lower():
            return None
        return ImageCms.buildTransform(profile, ImageCms.createProfile("sRGB"), in_mode, "RGB")
    except Exception:  # malformed or exotic profile: keep the pixels as they are
        return None


@lru_cache(maxsize=1)
def _lab_transform() -> ImageCms.ImageCmsTransform:
    lab, srgb = ImageCms.createProfile("LAB"), ImageCms.createProfile("sRGB")
    return ImageCms.buildTransform(lab, srgb, "LAB", "RGB")


def _apply_icc(img: Image.Image, icc: bytes | None, fallback: Callable[[], Image.Image]) -> Image.Image:
    """Convert ``img`` to sRGB through its embedded profile, or return ``fallback()`` when there is none."""
    transform = _icc_transform(bytes(icc), img.mode) if icc else None
    if transform is None:
        return fallback()
    return ImageCms.applyTransform(img, transform)


def _to_rgb(img: Image.Image) -> Image.Image:
    """8-bit sRGB from any Pillow mode, the way the photo looks in a colour-managed viewer."""
    mode = img.mode
    icc = img.info.get("icc_profile")
    if mode in _ALPHA_MODES or (mode in ("P", "L", "RGB") and "transparency" in img.info):
        out = _over_white(img)
    elif mode == "CMYK":
        return _apply_icc(img, icc, lambda: img.convert("RGB"))
    elif mode == "LAB":
        return ImageCms.applyTransform(img, _lab_transform())
    elif mode in ("I", "F") or mode.startswith("I;16"):
        return _high_bit_depth_to_rgb(img)
    elif mode == "RGB":
        out = img
    else:  # 1, L, P, RGBX, YCbCr, HSV, ...: Pillow's conversions are right for these
        out = img.convert("RGB")
    if mode in ("RGB", "RGBA", "RGBa", "RGBX", "P"):
        return _apply_icc(out, icc, lambda: out)
    return out


def _decode(
    source: ImageSource,
    fast_decode: bool,
    target_for: Callable[[tuple[int, int]], tuple[int, int] | None],
    timeout: float | None = None,
) -> tuple[Image.Image, tuple[int, int]]:
    """Open, draft, fully decode, orient and convert; returns (RGB image, upright size of the full file).

    ``target_for`` gets the upright full-resolution size from the header (before any pixel is decoded)
    and returns the upright size the pixels will be resized to, so JPEG draft mode can decode at the
    smallest DCT scale that still covers it. Files are decoded under ``decode_timeout(timeout)``.
    """
    name = _source_name(source)
    if isinstance(source, Image.Image):
        try:
            source.load()
            img = _upright(source)
            return _to_rgb(img), img.size
        except Exception as exc:
            raise _load_error(exc, name) from exc
    return run_with_time_limit(
        lambda deadline: _decode_file(source, name, fast_decode, target_for, deadline),
        decode_timeout(timeout),
        name,
    )


def _decode_file(
    source: str | os.PathLike[str],
    name: str,
    fast_decode: bool,
    target_for: Callable[[tuple[int, int]], tuple[int, int] | None],
    deadline: Deadline | None,
) -> tuple[Image.Image, tuple[int, int]]:
    if not formats.is_raw(source):
        return _decode_pillow(source, name, fast_decode, target_for, deadline)
    # camera RAW: LibRaw decodes it (embedded preview when large enough) and applies the orientation
    try:
        img, full = formats.decode_raw(source, fast_decode, target_for)
        return _to_rgb(img), full
    except Exception as exc:
        err = _load_error(exc, name)
        if err.reason != formats.NOT_RAW:
            raise err from exc
    # LibRaw does not know it: a JPEG or TIFF that was given a RAW suffix is still a photo
    try:
        return _decode_pillow(source, name, fast_decode, target_for, deadline)
    except ImageLoadError:
        raise err from None


def _decode_pillow(
    source: str | os.PathLike[str],
    name: str,
    fast_decode: bool,
    target_for: Callable[[tuple[int, int]], tuple[int, int] | None],
    deadline: Deadline | None,
) -> tuple[Image.Image, tuple[int, int]]:
    try:
        with (
            open(source, "rb", buffering=0, opener=nonblocking_opener) as raw,
            DeadlineFile(raw, deadline) as fp,
        ):
            formats.check_regular(fp.fileno(), name)
            img = Image.open(fp)
            jpeg = isinstance(img, JpegImagePlugin.JpegImageFile)
            if not jpeg:
                # other formats may keep EXIF after the pixels (PNG eXIf), and reading it would decode
                # them anyway; decode first so a decoding error is not mistaken for bad metadata
                img.load()
            orientation = _orientation(img)
            width, height = img.size
            full = (height, width) if orientation in _EXIF_ORIENTATIONS_TURNED else (width, height)
            target = target_for(full)
            if jpeg and fast_decode and target is not None:
                tw, th = (target[1], target[0]) if orientation in _EXIF_ORIENTATIONS_TURNED else target
                if 0 < 2 * tw <= width and 0 < 2 * th <= height:
                    img.draft("RGB", (tw, th))
            img.load()  # decode everything now, while the file is open and errors can be attributed
            return _to_rgb(_upright(img)), full
    except Exception as exc:
        raise _load_error(exc, name) from exc


def _decode_release(source: ImageSource, timeout: float | None) -> Image.Image:
    """The release's load_image: ``Image.open(path).convert("RGB")``, nothing else (the pixels the
    release scores), under the same file checks and time limit as every other decode."""
    name = _source_name(source)
    if isinstance(source, Image.Image):
        try:
            return source.convert("RGB")
        except Exception as exc:
            raise _load_error(exc, name) from exc

    def work(deadline: Deadline | None) -> Image.Image:
        try:
            with (
                open(source, "rb", buffering=0, opener=nonblocking_opener) as raw,
                DeadlineFile(raw, deadline) as fp,
            ):
                formats.check_regular(fp.fileno(), name)
                return Image.open(fp).convert("RGB")
        except Exception as exc:
            raise _load_error(exc, name) from exc

    return run_with_time_limit(work, decode_timeout(timeout), name)


def load_image(
    source: ImageSource,
    *,
    target: tuple[int, int] | None = None,
    fast_decode: bool = True,
    timeout: float | None = None,
) -> Image.Image:
    """Read a photo as upright 8-bit sRGB, or raise ImageLoadError with a short human reason.

    ``target`` is the upright (w, h) the caller will resize to; with ``fast_decode`` a JPEG is then
    decoded at a reduced DCT scale that is still at least that large (several times faster on camera
    files). A PIL image is converted and oriented without re-reading. Files up to Pillow's hard
    decompression-bomb limit (2 × ``Image.MAX_IMAGE_PIXELS``, ~179 MP) load, so 100–150 MP
    medium-format photos work; beyond it the file is reported as too large. ``timeout``: seconds the
    decode may take (see ``decode_timeout``) before the photo is reported as "decoding took too long".
    """
    img, _ = _decode(source, fast_decode, lambda _full: target, timeout)
    return img


def _to_tensor(img: Image.Image, grid: tuple[int, int], cfg: TileConfig) -> torch.Tensor:
    """Tiles as a normalised float tensor, with one uint8 copy and one float copy of the pixels.

    Same arithmetic as torchvision's ToTensor + Normalize (x / 255, then in-place - mean, / std), so
    the values are bit-identical to InternVL's pipeline for the same tiles.
    """
    size = cfg.image_size
    cols, rows = grid
    n_grid = cols * rows
    n = n_grid + 1 if cfg.use_thumbnail and n_grid > 1 else n_grid
    buf = np.empty((n, size, size, 3), dtype=np.uint8)
    resized = np.asarray(img.resize((cols * size, rows * size), _BICUBIC))
    # (rows*S, cols*S, 3) viewed as (rows, S, cols, S, 3) → row-major tiles, copied once into the buffer
    grid_tiles = resized.reshape(rows, size, cols, size, 3).swapaxes(1, 2)
    buf[:n_grid].reshape(rows, cols, size, size, 3)[...] = grid_tiles
    if n > n_grid:
        buf[n_grid] = np.asarray(img.resize((size, size), _BICUBIC))
    out = torch.empty((n, 3, size, size), dtype=torch.float32)
    out.copy_(torch.from_numpy(buf).permute(0, 3, 1, 2))
    out.div_(255.0)
    out.sub_(torch.tensor(cfg.mean, dtype=torch.float32).view(1, 3, 1, 1))
    out.div_(torch.tensor(cfg.std, dtype=torch.float32).view(1, 3, 1, 1))
    return out


def preprocess(source: ImageSource, cfg: TileConfig = DEFAULT_CONFIG) -> torch.Tensor:
    """Photo → float32 tensor [n_tiles, 3, S, S] exactly as the HumanAesExpert vision tower expects.

    The grid is chosen from the full-resolution upright size in the file header, before decoding, so a
    draft-decoded JPEG is cut into the same tiles as a full decode would be. With
    ``cfg.release_decode`` the photo is decoded as the release decodes it (see TileConfig).
    """
    if cfg.release_decode:
        img = _decode_release(source, cfg.decode_timeout)
        return _to_tensor(img, closest_grid(img.width, img.height, cfg), cfg)
    size = cfg.image_size

    def target_for(full: tuple[int, int]) -> tuple[int, int]:
        cols, rows = closest_grid(full[0], full[1], cfg)
        # the thumbnail is S×S, never larger than the grid, so the grid size is what must be covered
        return cols * size, rows * size

    img, full = _decode(source, cfg.fast_decode, target_for, cfg.decode_timeout)
    return _to_tensor(img, closest_grid(full[0], full[1], cfg), cfg)
