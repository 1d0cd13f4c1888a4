"""Photo formats beyond what Pillow reads natively: HEIC/HEIF (phones) and camera RAW files.

HEIC/HEIF: pillow-heif registers a Pillow opener, so these files go through the ordinary loading path
in ``preprocess`` (libheif applies the container's rotation and pillow-heif resets the EXIF orientation
to 1, so nothing is rotated twice). AVIF is read by Pillow itself.

Camera RAW (CR2, CR3, NEF, ARW, DNG, RAF, ORF, RW2) is read with rawpy (LibRaw). Demosaicing a 24 MP
sensor takes seconds, while nearly every camera embeds a JPEG preview of the whole frame; a culling
tool that shows and scores hundreds of photos uses that preview whenever it is at least as large as
what the caller will resize to, and falls back to a full decode (camera white balance, 8-bit sRGB)
only when it is too small, missing or unreadable.

Files are opened without blocking and checked to be regular files first (``check_regular``): a named
pipe or a link to ``/dev/zero`` with a photo's name must be reported, not read forever. A file with a
RAW suffix that LibRaw does not recognise is handed to Pillow by ``preprocess`` (a JPEG saved as
``.CR2`` is still a photo).

Orientation: LibRaw reports the camera's orientation as ``sizes.flip`` and a full decode applies it.
Embedded previews are normally stored in sensor orientation, but LibRaw adds its own EXIF block to the
preview it hands out and a few converters store previews already upright, so the preview's own EXIF is
not trusted: ``flip`` is applied exactly once, unless the preview's shape shows it is already rotated.
"""

from __future__ import annotations

import errno
import io
import os
import stat
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

from humanaes_core.errors import ImageLoadError
from humanaes_core.files import nonblocking_opener
from humanaes_core.formats.photos import HEIF_SUFFIXES, RAW_SUFFIXES

__all__ = [
    "HEIF_SUFFIXES",
    "NOT_RAW",
    "NOT_REGULAR",
    "RAW_SUFFIXES",
    "check_regular",
    "decode_raw",
    "heif_supported",
    "is_raw",
    "open_raw",
    "raw_size",
]


#: Reason for a file with a RAW suffix that LibRaw does not recognise.
NOT_RAW = "not a supported camera RAW file"
#: Reason for a named pipe, device or socket with a photo's name.
NOT_REGULAR = "not a regular file (a pipe, device or socket)"


def check_regular(fd: int, name: str) -> None:
    """Raise unless ``fd`` is a regular file: folders as ``IsADirectoryError``, pipes and devices as
    ``ImageLoadError`` (reading ``/dev/zero`` would never end, a pipe may never deliver a byte)."""
    mode = os.fstat(fd).st_mode
    if stat.S_ISDIR(mode):
        raise IsADirectoryError(errno.EISDIR, "Is a directory", name)
    if not stat.S_ISREG(mode):
        raise ImageLoadError(name, NOT_REGULAR)


# LibRaw's documented flip values -> the Pillow transpose that makes sensor-oriented pixels upright.
_FLIP_TRANSPOSE = {
    3: Image.Transpose.ROTATE_180,
    5: Image.Transpose.ROTATE_90,  # 90° counter-clockwise
    6: Image.Transpose.ROTATE_270,  # 90° clockwise
}
#: LibRaw flip codes (not EXIF orientations) that turn the photo by 90°.
_LIBRAW_FLIPS_TURNED = frozenset({5, 6})
# A preview this much smaller than the target is still used: the model input is a resize anyway, and
# cameras' "full-size" previews are often a few pixels short of the sensor's active area.
_PREVIEW_SLACK = 0.95


def _register_heif() -> bool:
    try:
        import pillow_heif
    except ImportError:  # declared as a dependency; without it HEIC files are reported as unreadable
        return False
    pillow_heif.register_heif_opener()
    return True


_HEIF_OK = _register_heif()


def heif_supported() -> bool:
    """Whether HEIC/HEIF files can be opened (pillow-heif is installed and registered with Pillow)."""
    return _HEIF_OK


def is_raw(path: str | os.PathLike[str]) -> bool:
    """True for files whose suffix is a camera RAW format this module decodes."""
    return Path(path).suffix.lower() in RAW_SUFFIXES


def _rawpy():  # imported on first use: scanning JPEG folders never pays for LibRaw
    try:
        import rawpy
    except ImportError as exc:
        raise ImportError("reading camera RAW files needs the rawpy package (pip install rawpy)") from exc
    return rawpy


def _open(path: str | os.PathLike[str]):
    """A LibRaw handle; by path where that is safe (LibRaw streams the file), else from memory."""
    rawpy = _rawpy()
    name = os.fspath(path)
    # LibRaw reports a missing or unreadable file as an I/O error; the OS says which. And LibRaw would
    # block on a named pipe: only regular files go on.
    with open(name, "rb", opener=nonblocking_opener) as fh:
        check_regular(fh.fileno(), name)
    if os.name == "nt" and not name.isascii():
        # LibRaw's narrow-character file API cannot open every Unicode path on Windows
        with open(name, "rb") as fh:
            return rawpy.imread(fh)
    return rawpy.imread(name)


def _upright_size(raw) -> tuple[int, int]:
    sizes = raw.sizes
    width, height = int(sizes.width), int(sizes.height)
    return (height, width) if sizes.flip in _LIBRAW_FLIPS_TURNED else (width, height)


def raw_size(path: str | os.PathLike[str]) -> tuple[int, int]:
    """Upright (width, height) of a full decode, from the header only (no pixels are decoded)."""
    name = os.fspath(path)
    try:
        with _open(name) as raw:
            return _upright_size(raw)
    except Exception as exc:
        raise _raw_error(exc, name) from exc


def _raw_error(exc: BaseException, name: str) -> BaseException:
    """LibRaw's exceptions as ImageLoadError with a photographer-readable reason; OS errors pass through."""
    if isinstance(exc, (ImageLoadError, OSError, MemoryError)):
        return exc
    if isinstance(exc, ImportError):
        return ImageLoadError(name, str(exc))
    kind = type(exc).__name__
    if kind in ("LibRawFileUnsupportedError", "NotSupportedError"):
        return ImageLoadError(name, NOT_RAW)
    if kind in ("LibRawIOError", "LibRawDataError", "LibRawUnspecifiedError"):
        return ImageLoadError(name, "truncated or corrupt RAW data")
    if kind == "LibRawTooBigError":
        return ImageLoadError(name, "too large")
    if kind in ("LibRawUnsufficientMemoryError", "LibRawMemPoolOverflowError"):
        return ImageLoadError(name, "too large (out of memory)")
    return ImageLoadError(name, f"cannot decode RAW data ({kind})")


def _preview(raw) -> Image.Image | None:
    """The largest embedded preview as stored (sensor orientation, usually), or None when there is none."""
    rawpy = _rawpy()
    try:
        thumb = raw.extract_thumb()
    except Exception:  # no thumbnail, or one LibRaw cannot unpack: the full decode still works
        return None
    try:
        if thumb.format == rawpy.ThumbFormat.JPEG:
            img = Image.open(io.BytesIO(thumb.data))
            # LibRaw writes its own EXIF (with the orientation) into the preview; see the module docstring
            img.info.pop("exif", None)
            return img
        if thumb.format == rawpy.ThumbFormat.BITMAP:
            data = np.asarray(thumb.data)
            if data.ndim == 3 and data.shape[2] == 3 and data.dtype == np.uint8:
                return Image.fromarray(data, "RGB")
    except Exception:  # a damaged preview is no reason to fail: decode the sensor data instead
        return None
    return None


def _covers(size: tuple[int, int], need: tuple[int, int]) -> bool:
    return size[0] >= _PREVIEW_SLACK * need[0] and size[1] >= _PREVIEW_SLACK * need[1]


def _preview_transpose(raw, stored: tuple[int, int]) -> Image.Transpose | None:
    """The rotation that makes a preview of this stored (w, h) upright: the RAW's flip, unless the
    preview's shape shows that it was stored upright already (then rotating would turn it sideways)."""
    flip = int(raw.sizes.flip)
    transpose = _FLIP_TRANSPOSE.get(flip)
    if transpose is not None and flip in _LIBRAW_FLIPS_TURNED:
        sensor_landscape = raw.sizes.width >= raw.sizes.height
        if (stored[0] >= stored[1]) != sensor_landscape:
            return None
    return transpose


def _use_preview(raw, preview: Image.Image, need: tuple[int, int], fast_decode: bool) -> Image.Image | None:
    """The upright, decoded preview when it is large enough for ``need`` (upright w, h), else None."""
    transpose = _preview_transpose(raw, preview.size)
    swaps = transpose in (Image.Transpose.ROTATE_90, Image.Transpose.ROTATE_270)
    upright = (preview.height, preview.width) if swaps else preview.size
    if not _covers(upright, need):
        return None
    if fast_decode and preview.format == "JPEG":
        stored_need = (need[1], need[0]) if swaps else need
        if 0 < 2 * stored_need[0] <= preview.width and 0 < 2 * stored_need[1] <= preview.height:
            preview.draft("RGB", (int(stored_need[0]), int(stored_need[1])))
    try:
        preview.load()
    except Exception:  # a preview that fails to decode: demosaic the sensor data instead
        return None
    return preview if transpose is None else preview.transpose(transpose)


def decode_raw(
    path: str | os.PathLike[str],
    fast_decode: bool,
    target_for: Callable[[tuple[int, int]], tuple[int, int] | None],
) -> tuple[Image.Image, tuple[int, int]]:
    """Decode a RAW file: (upright image, upright size of a full decode); the loader's RAW branch.

    ``target_for`` receives the full upright size before any pixel is decoded and returns the upright
    size the caller will resize to (None: full resolution). The embedded preview is used when it covers
    that size (and, with ``fast_decode``, is itself draft-decoded); otherwise the sensor data is
    demosaiced with the camera's white balance, at half size when that still covers the target.
    ``fast_decode=False`` always demosaics the sensor data at full size.
    """
    name = os.fspath(path)
    try:
        with _open(name) as raw:
            full = _upright_size(raw)
            target = target_for(full)
            need = target if target is not None else full
            if fast_decode:
                preview = _preview(raw)
                if preview is not None:
                    img = _use_preview(raw, preview, need, fast_decode)
                    if img is not None:
                        return img, full
            half = fast_decode and target is not None and 2 * need[0] <= full[0] and 2 * need[1] <= full[1]
            rgb = raw.postprocess(use_camera_wb=True, output_bps=8, half_size=half)
            return Image.fromarray(np.ascontiguousarray(rgb), "RGB"), full
    except Exception as exc:
        raise _raw_error(exc, name) from exc


def open_raw(
    path: str | os.PathLike[str], target: tuple[int, int] | None = None, fast_decode: bool = True
) -> Image.Image:
    """A RAW file as an upright PIL image, covering ``target`` (upright w, h) when one is given."""
    img, _ = decode_raw(path, fast_decode, lambda _full: target)
    return img
