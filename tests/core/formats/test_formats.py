"""HEIC/HEIF and camera RAW: decoding, the embedded-preview shortcut, orientation, errors, scoring.

The RAW files are real DNGs made here: a Bayer (RGGB) mosaic of a known picture written with tifffile,
with the DNG tags LibRaw needs, optionally an embedded preview (uncompressed, or a JPEG stream) and an
EXIF orientation. LibRaw decodes them exactly like a camera's DNG.
"""

from __future__ import annotations

import io
import os
import struct
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from humanaes_core.errors import ImageLoadError
from humanaes_core.formats import decoders as formats
from humanaes_core.formats.photos import collect_photos
from humanaes_core.model.preprocessing import TileConfig, load_image, preprocess, tile_count
from tests.conftest import synthetic_photo

tifffile = pytest.importorskip("tifffile", reason="tifffile writes the test DNGs")
pytest.importorskip("rawpy", reason="rawpy reads camera RAW files")

# XYZ -> linear sRGB (D65): as ColorMatrix1 it makes the "camera" space linear sRGB, so LibRaw's
# output has the colours of the picture that was mosaiced.
_XYZ_TO_SRGB = (3.2406, -1.5372, -0.4986, -0.9689, 1.8758, 0.0415, 0.0557, -0.2040, 1.0570)
_BLACK, _WHITE = 64, 4095


def _mosaic(rgb: np.ndarray) -> np.ndarray:
    lin = (rgb.astype(np.float64) / 255.0) ** 2.2
    cfa = np.empty(rgb.shape[:2], np.float64)
    cfa[0::2, 0::2] = lin[0::2, 0::2, 0]
    cfa[0::2, 1::2] = lin[0::2, 1::2, 1]
    cfa[1::2, 0::2] = lin[1::2, 0::2, 1]
    cfa[1::2, 1::2] = lin[1::2, 1::2, 2]
    return np.rint(_BLACK + cfa * (_WHITE - _BLACK)).astype(np.uint16)


def make_dng(
    path: Path,
    picture: Image.Image,
    *,
    orientation: int = 1,
    preview: Image.Image | None = None,
    preview_jpeg: bool = True,
    extra_tags: list | None = None,
) -> Path:
    """Write a DNG whose sensor data is ``picture`` (stored as-is, i.e. in sensor orientation).

    With a preview, IFD0 holds it (NewSubFileType 1) and a SubIFD the raw data, as cameras do. A JPEG
    preview is written as an uncompressed strip first and then turned into a JPEG strip in place
    (compression 7, YCbCr, strip pointing at the JPEG bytes appended to the file): tifffile can only
    encode JPEG with imagecodecs, and patching three tag values is all that differs.
    """
    rgb = np.asarray(picture.convert("RGB"))
    dng_tags = [
        (50706, "B", 4, (1, 4, 0, 0), True),  # DNGVersion
        (50707, "B", 4, (1, 1, 0, 0), True),  # DNGBackwardVersion
        (271, "s", 0, "HumanAes", True),  # Make
        (272, "s", 0, "Test Camera", True),  # Model
        (50708, "s", 0, "HumanAes Test Camera", True),  # UniqueCameraModel
        (274, "H", 1, orientation, True),  # Orientation
        (50721, "2i", 9, [x for v in _XYZ_TO_SRGB for x in (round(v * 10000), 10000)], True),  # ColorMatrix1
        (50778, "H", 1, 21, True),  # CalibrationIlluminant1 = D65
        (50728, "2I", 3, (1, 1, 1, 1, 1, 1), True),  # AsShotNeutral
        *(extra_tags or []),
    ]
    raw_tags = [
        (33421, "H", 2, (2, 2), True),  # CFARepeatPatternDim
        (33422, "B", 4, (0, 1, 1, 2), True),  # CFAPattern RGGB
        (50710, "B", 3, (0, 1, 2), True),  # CFAPlaneColor
        (50711, "H", 1, 1, True),  # CFALayout
        (50714, "H", 1, _BLACK, True),  # BlackLevel
        (50717, "H", 1, _WHITE, True),  # WhiteLevel
    ]
    cfa = _mosaic(rgb)
    with tifffile.TiffWriter(path) as tif:
        if preview is None:
            tif.write(cfa, photometric=32803, subfiletype=0, extratags=dng_tags + raw_tags)
        else:
            pv = np.asarray(preview.convert("RGB"))
            tif.write(
                pv, photometric="rgb", subfiletype=1, subifds=1, rowsperstrip=pv.shape[0], extratags=dng_tags
            )
            tif.write(cfa, photometric=32803, subfiletype=0, extratags=raw_tags)
    if preview is not None and preview_jpeg:
        buf = io.BytesIO()
        preview.convert("RGB").save(buf, "JPEG", quality=92)
        jpeg = buf.getvalue()
        end = path.stat().st_size
        with tifffile.TiffFile(path) as tif:
            tags = tif.pages[0].tags
            offsets, counts = tags[273], tags[279]
            assert offsets.count == 1 and counts.count == 1  # one strip: its values sit in the IFD entry
            patches = [
                (tags[259].valueoffset, "<H", 7),  # Compression: JPEG
                (tags[262].valueoffset, "<H", 6),  # PhotometricInterpretation: YCbCr
                (offsets.valueoffset, "<I" if offsets.dtype == 4 else "<H", end),
                (counts.valueoffset, "<I" if counts.dtype == 4 else "<H", len(jpeg)),
            ]
        with path.open("r+b") as fh:
            for offset, fmt, value in patches:
                fh.seek(offset)
                fh.write(struct.pack(fmt, value))
            fh.seek(0, os.SEEK_END)
            fh.write(jpeg)
    return path


def _similarity(a: Image.Image, b: Image.Image) -> float:
    """Correlation of two pictures at 64x64 greyscale: ~1 for the same picture, low otherwise."""
    x = np.asarray(a.convert("L").resize((64, 64)), np.float64).ravel()
    y = np.asarray(b.convert("L").resize((64, 64)), np.float64).ravel()
    return float(np.corrcoef(x, y)[0, 1])


@pytest.fixture(scope="module")
def picture() -> Image.Image:
    return synthetic_photo(7, (600, 400))


@pytest.fixture(scope="module")
def other() -> Image.Image:
    return synthetic_photo(8, (600, 400))


def test_dng_full_decode_matches_the_mosaiced_picture(tmp_path, picture, other):
    path = make_dng(tmp_path / "plain.dng", picture)
    img = load_image(path)
    assert img.mode == "RGB" and img.size == (600, 400)
    assert _similarity(img, picture) > 0.95
    assert _similarity(img, other) < 0.8
    # colours survive demosaicing and the colour matrix (LibRaw's auto-brightness shifts levels a bit)
    mean = np.asarray(img, np.float64).mean(axis=(0, 1))
    assert np.abs(mean - np.asarray(picture, np.float64).mean(axis=(0, 1))).max() < 40
    assert formats.raw_size(path) == (600, 400)


_ROTATIONS = {
    1: None,
    3: Image.Transpose.ROTATE_180,
    6: Image.Transpose.ROTATE_270,  # EXIF 6: turn 90° clockwise to view
    8: Image.Transpose.ROTATE_90,  # EXIF 8: turn 90° counter-clockwise to view
}


@pytest.mark.parametrize("orientation", [3, 6, 8])
def test_dng_orientation_is_applied_once(tmp_path, picture, orientation):
    path = make_dng(tmp_path / "rotated.dng", picture, orientation=orientation)
    img = load_image(path)
    for other_orientation, transpose in _ROTATIONS.items():
        candidate = picture if transpose is None else picture.transpose(transpose)
        if other_orientation == orientation:
            assert img.size == candidate.size
            assert _similarity(img, candidate) > 0.95
        elif candidate.size == img.size:
            assert _similarity(img, candidate) < 0.8


@pytest.mark.parametrize("jpeg", [True, False], ids=["jpeg-preview", "bitmap-preview"])
def test_embedded_preview_is_used_when_large_enough(tmp_path, picture, other, jpeg):
    # The preview shows a different picture than the sensor data, so the output tells which was used.
    path = make_dng(tmp_path / "pv.dng", picture, preview=other.resize((480, 320)), preview_jpeg=jpeg)
    small = load_image(path, target=(240, 160))
    assert _similarity(small, other) > 0.95 and _similarity(small, picture) < 0.8
    big = load_image(path, target=(600, 400))  # larger than the 480x320 preview: demosaic the sensor
    assert big.size == (600, 400) and _similarity(big, picture) > 0.95
    full = load_image(path, fast_decode=False, target=(240, 160))  # no shortcuts at all
    assert full.size == (600, 400) and _similarity(full, picture) > 0.95


def test_preview_of_a_rotated_raw_is_rotated_exactly_once(tmp_path, picture, other):
    # Sensor-oriented preview + Orientation 6: LibRaw even writes orientation 6 into the preview's EXIF;
    # rotating by both would turn the photo upside down.
    path = make_dng(tmp_path / "pv6.dng", picture, orientation=6, preview=other.resize((480, 320)))
    img = load_image(path, target=(160, 240))
    assert img.width < img.height
    assert _similarity(img, other.transpose(Image.Transpose.ROTATE_270)) > 0.95
    # A converter that stored the preview upright already: it must not be rotated again.
    upright = other.resize((480, 320)).transpose(Image.Transpose.ROTATE_270)
    path2 = make_dng(tmp_path / "pv6u.dng", picture, orientation=6, preview=upright)
    img2 = load_image(path2, target=(160, 240))
    assert img2.width < img2.height and _similarity(img2, upright) > 0.95


def test_small_jpeg_preview_is_draft_decoded(tmp_path, picture, other):
    path = make_dng(tmp_path / "pv.dng", picture, preview=other.resize((480, 320)))
    assert load_image(path, target=(100, 60)).size == (120, 80)  # 1/4 scale DCT decode, not 480x320


def test_raw_grid_comes_from_the_sensor_size_not_the_preview(tmp_path, picture, other):
    cfg = TileConfig(max_tiles=6)
    # the preview is large enough to be used but has another aspect ratio (2:1 against the sensor's 3:1)
    path = make_dng(tmp_path / "pv.dng", picture.resize((1200, 400)), preview=other.resize((1400, 700)))
    assert tile_count(1200, 400, cfg) != tile_count(1400, 700, cfg)
    tensor = preprocess(path, cfg)
    assert tensor.shape[0] == tile_count(1200, 400, cfg)


def test_raw_errors_are_readable(tmp_path):
    (tmp_path / "text.cr2").write_bytes(b"not a raw file at all" * 100)
    (tmp_path / "empty.nef").write_bytes(b"")
    for name in ("text.cr2", "empty.nef"):
        with pytest.raises(ImageLoadError) as err:
            load_image(tmp_path / name)
        assert err.value.reason in {"not a supported camera RAW file", "truncated or corrupt RAW data"}
    with pytest.raises(ImageLoadError, match="file not found"):
        load_image(tmp_path / "missing.ARW")


def test_truncated_dng_fails_cleanly(tmp_path, picture):
    good = make_dng(tmp_path / "good.dng", picture).read_bytes()
    bad = tmp_path / "cut.dng"
    bad.write_bytes(good[:4000])
    with pytest.raises(ImageLoadError):
        load_image(bad)


def test_heic_loads_upright(tmp_path, picture):
    pytest.importorskip("pillow_heif", reason="pillow-heif reads and writes HEIC")
    assert formats.heif_supported()
    exif = Image.Exif()
    exif[0x0112] = 6
    path = tmp_path / "phone.HEIC"
    picture.save(path, format="HEIF", quality=90, exif=exif.tobytes())
    img = load_image(path)
    assert img.mode == "RGB" and img.size == (400, 600)
    assert _similarity(img, picture.transpose(Image.Transpose.ROTATE_270)) > 0.95
    plain = tmp_path / "plain.heif"
    picture.save(plain, format="HEIF", quality=90)
    assert load_image(plain, target=(300, 200)).size == (600, 400)


def test_scan_finds_raw_heic_and_avif(tmp_path):
    names = [
        "a.CR2",
        "b.cr3",
        "c.NEF",
        "d.arw",
        "e.dng",
        "f.RAF",
        "g.orf",
        "h.rw2",
        "i.heic",
        "j.HEIF",
        "k.avif",
    ]
    for name in [*names, "l.xmp", "m.txt"]:
        (tmp_path / name).write_bytes(b"x")
    files, _ = collect_photos([tmp_path])
    assert sorted(p.name for p in files) == sorted(names)


def test_heic_and_dng_are_scored_end_to_end(tmp_path, scorer, picture, other):
    pytest.importorskip("pillow_heif", reason="pillow-heif writes the HEIC")
    heic = tmp_path / "phone.heic"
    picture.save(heic, format="HEIF", quality=90)
    dng = make_dng(tmp_path / "camera.dng", other, orientation=6, preview=other.resize((300, 200)))
    cards = scorer.score([heic, dng])
    for card in cards:
        assert set(card.dims) >= {"overall", "facial_brightness", "environment"}
        assert all(0.0 <= v <= 1.0 for v in card.dims.values())
        assert card.tiles >= 1
