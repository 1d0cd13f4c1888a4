"""Tests for humanaes_core.model.preprocessing: InternVL tiling, tensor layout, robust loading."""

from __future__ import annotations

import io
import random
import struct
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageCms

import humanaes_core.model.preprocessing as pp
from humanaes_core.errors import HumanAesError, ImageLoadError
from humanaes_core.model.meta import IMAGENET_MEAN, IMAGENET_STD
from humanaes_core.model.preprocessing import (
    TileConfig,
    candidate_grids,
    closest_grid,
    load_image,
    preprocess,
    tile_count,
    tile_image,
)

S = 448

# ------------------------------------------------------------------------------------------ helpers


def reference_grid(
    width: int, height: int, image_size: int, min_tiles: int, max_tiles: int
) -> tuple[int, int]:
    """Straight from the algorithm description: set of grids, stable sort by area, scan with tie rule."""
    grids = set()
    for n in range(min_tiles, max_tiles + 1):
        for i in range(1, n + 1):
            for j in range(1, n + 1):
                if min_tiles <= i * j <= max_tiles:
                    grids.add((i, j))
    ordered = sorted(grids, key=lambda g: g[0] * g[1])
    aspect = width / height
    best = (1, 1)
    best_diff = float("inf")
    for i, j in ordered:
        d = abs(aspect - i / j)
        if d < best_diff:
            best_diff = d
            best = (i, j)
        elif d == best_diff and width * height > 0.5 * image_size * image_size * i * j:
            best = (i, j)
    return best


def reference_count(width: int, height: int, image_size: int, max_tiles: int, thumb: bool = True) -> int:
    i, j = reference_grid(width, height, image_size, 1, max_tiles)
    return i * j + (1 if thumb and i * j > 1 else 0)


def photo_like(width: int, height: int, seed: int = 0) -> Image.Image:
    """A smooth, photo-like RGB image (upscaled astronaut would need skimage; this is cheaper)."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, size=(12, 16, 3), dtype=np.uint8)
    return Image.fromarray(small).resize((width, height), Image.Resampling.BICUBIC)


def noise(width: int, height: int, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8))


def jpeg_bytes(img: Image.Image, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=92, **kw)
    return buf.getvalue()


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def normalised(tiles: list[Image.Image]) -> torch.Tensor:
    """torchvision ToTensor + Normalize, spelled out independently of the module."""
    mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
    out = []
    for t in tiles:
        x = torch.from_numpy(np.array(t)).permute(2, 0, 1).contiguous().to(torch.float32).div(255)
        out.append((x - mean) / std)
    return torch.stack(out)


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def rgb_icc(description: str, primaries: tuple[tuple[float, float, float], ...], gamma: float = 1.0) -> bytes:
    """A minimal ICC v2 RGB display profile: the D50 white point, `primaries` (red, green, blue XYZ)
    and one tone curve of `gamma` for all three channels."""

    def s15(v: float) -> bytes:
        return struct.pack(">i", round(v * 65536))

    def xyz(x: float, y: float, z: float) -> bytes:
        return b"XYZ " + b"\0" * 4 + s15(x) + s15(y) + s15(z)

    text = description.encode("ascii") + b"\0"
    desc = b"desc" + b"\0" * 4 + struct.pack(">I", len(text)) + text + b"\0" * 8 + b"\0" * 3 + b"\0" * 67
    curve = b"curv" + b"\0" * 4 + struct.pack(">I", 1) + struct.pack(">H", round(gamma * 256)) + b"\0\0"
    red, green, blue = primaries
    tags = [
        (b"desc", desc),
        (b"wtpt", xyz(0.9642, 1.0, 0.8249)),
        (b"rXYZ", xyz(*red)),
        (b"gXYZ", xyz(*green)),
        (b"bXYZ", xyz(*blue)),
        (b"rTRC", curve),
        (b"gTRC", curve),
        (b"bTRC", curve),
    ]
    offset = 128 + 4 + 12 * len(tags)
    table, blob = b"", b""
    for sig, data in tags:
        data += b"\0" * (-len(data) % 4)
        table += sig + struct.pack(">II", offset + len(blob), len(data))
        blob += data
    header = (
        struct.pack(">I", offset + len(blob))
        + b"\0" * 4
        + struct.pack(">I", 0x02100000)
        + b"mntrRGB XYZ "
        + b"\0" * 12
        + b"acsp"
        + b"\0" * 28  # platform, flags, manufacturer, model, attributes, rendering intent
        + s15(0.9642)
        + s15(1.0)
        + s15(0.8249)
    )
    header += b"\0" * (128 - len(header))
    return header + struct.pack(">I", len(tags)) + table + blob


def linear_rgb_icc() -> bytes:
    """sRGB primaries with a linear (gamma 1.0) tone curve."""
    return rgb_icc(
        "Linear RGB test", ((0.4361, 0.2225, 0.0139), (0.3851, 0.7169, 0.0971), (0.1431, 0.0606, 0.7141))
    )


# ------------------------------------------------------------------------------------------- tiling

# (width, height, max_tiles, expected (cols, rows), expected tile count incl. thumbnail), worked by hand
# with S=448: S² = 200704, so a tie moves to grid (i, j) only if w*h > 100352 * i * j.
HAND_GRIDS = [
    # aspect 1: (1,1) first with diff 0; (2,2) ties and 1e6 > 401408; (3,3) ties and 1e6 > 903168
    (1000, 1000, 12, (3, 3), 10),
    # same shape, 810000 < 903168, so the tie stays at (2,2)
    (900, 900, 12, (2, 2), 5),
    # exactly one tile's pixels: 200704 is not > 401408, stays (1,1); a single tile has no thumbnail
    (448, 448, 12, (1, 1), 1),
    (1000, 1000, 4, (2, 2), 5),
    # aspect 8/9: ratio 1 is closest (diff 1/9 < 5/36 for 3/4); 896*1008 = 903168 = 0.5*S²*9 exactly,
    # which is not *more* than half of (3,3), so the tie stops at (2,2) — the strict ">" matters
    (896, 1008, 12, (2, 2), 5),
    (1008, 896, 12, (2, 2), 5),
    # aspect 0.75: (3,4) matches exactly and has area 12
    (3000, 4000, 12, (3, 4), 13),
    # max 6: (1,1) .25, (1,2) ties .25 → (1,2), (2,2) ties → (2,2), (2,3) diff 1/12 wins
    (3000, 4000, 6, (2, 3), 7),
    # aspect 1.5: (3,2) exact
    (6000, 4000, 12, (3, 2), 7),
    # max 4: (1,1) diff .5, (2,1) ties and 24e6 > 200704, (2,2) ties and 24e6 > 401408 → (2,2)
    (6000, 4000, 4, (2, 2), 5),
    # the same ties for a small image: 60000 px beats neither half-area, stays (1,1)
    (300, 200, 4, (1, 1), 1),
    # 240000 > 200704 takes (2,1) but not > 401408, so not (2,2)
    (600, 400, 4, (2, 1), 3),
    # panorama aspect 8: (8,1) exact; with max 6 the widest grid (6,1) is closest
    (8000, 1000, 12, (8, 1), 9),
    (8000, 1000, 6, (6, 1), 7),
    # aspect 0.0075: the tallest grid (1,12) is strictly closest
    (150, 20000, 12, (1, 12), 13),
    # tiny square: no tie beats 0.5*S²*4, one tile, no thumbnail
    (20, 20, 12, (1, 1), 1),
    # max_tiles=1: only (1,1) exists
    (6000, 4000, 1, (1, 1), 1),
    (150, 20000, 1, (1, 1), 1),
    (20, 20, 1, (1, 1), 1),
]


@pytest.mark.parametrize(("w", "h", "max_tiles", "grid", "count"), HAND_GRIDS)
def test_closest_grid_hand_computed(
    w: int, h: int, max_tiles: int, grid: tuple[int, int], count: int
) -> None:
    cfg = TileConfig(max_tiles=max_tiles)
    assert closest_grid(w, h, cfg) == grid
    assert tile_count(w, h, cfg) == count
    assert reference_grid(w, h, S, 1, max_tiles) == grid
    assert reference_count(w, h, S, max_tiles) == count


def test_closest_grid_matches_reference_on_many_sizes() -> None:
    rnd = random.Random(1234)
    sizes = [(rnd.randint(1, 9000), rnd.randint(1, 9000)) for _ in range(300)]
    sizes += [(k * 224, 448) for k in range(1, 30)] + [(448, k * 224) for k in range(1, 30)]  # exact ratios
    for max_tiles in (1, 2, 4, 6, 9, 12, 16):
        for min_tiles in (1, 2):
            if min_tiles > max_tiles:
                continue
            cfg = TileConfig(max_tiles=max_tiles, min_tiles=min_tiles)
            for w, h in sizes:
                assert closest_grid(w, h, cfg) == reference_grid(w, h, S, min_tiles, max_tiles), (w, h, cfg)
    small = TileConfig(image_size=32, max_tiles=12)
    for w, h in sizes:
        assert closest_grid(w, h, small) == reference_grid(w, h, 32, 1, 12)


def test_candidate_grids_order_and_content() -> None:
    grids = candidate_grids(1, 12)
    expected_set = {(i, j) for i in range(1, 13) for j in range(1, 13) if i * j <= 12}
    assert set(grids) == expected_set
    assert len(grids) == len(expected_set)
    areas = [i * j for i, j in grids]
    assert areas == sorted(areas)
    assert grids[0] == (1, 1)
    # ties inside an area keep the set's iteration order, as InternVL's sorted(set) does
    seen = set()
    for n in range(1, 13):
        for i in range(1, n + 1):
            for j in range(1, n + 1):
                if i * j <= 12:
                    seen.add((i, j))
    assert grids == sorted(seen, key=lambda g: g[0] * g[1])
    assert all(2 <= i * j <= 6 for i, j in candidate_grids(2, 6))
    assert (1, 1) not in candidate_grids(2, 6)
    assert candidate_grids(1, 1) == [(1, 1)]


def test_tile_count_without_thumbnail() -> None:
    cfg = TileConfig(use_thumbnail=False)
    assert tile_count(1000, 1000, cfg) == 9
    assert tile_count(20, 20, cfg) == 1


def test_tile_config_validation() -> None:
    with pytest.raises(ValueError):
        TileConfig(max_tiles=0)
    with pytest.raises(ValueError):
        TileConfig(min_tiles=5, max_tiles=4)
    with pytest.raises(ValueError):
        TileConfig(image_size=0)


def test_tile_image_tiles_are_crops_of_the_resized_image() -> None:
    cfg = TileConfig(image_size=64, max_tiles=12)
    img = noise(300, 180)  # aspect 5/3 → (3, 2) with 64-px tiles (area 54000 > 0.5*64²*6)
    cols, rows = closest_grid(300, 180, cfg)
    assert (cols, rows) == (3, 2)
    tiles = tile_image(img, cfg)
    assert len(tiles) == cols * rows + 1
    assert all(t.size == (64, 64) and t.mode == "RGB" for t in tiles)
    resized = np.asarray(img.resize((cols * 64, rows * 64), Image.Resampling.BICUBIC))
    for k in range(cols * rows):
        r, c = divmod(k, cols)
        crop = resized[r * 64 : (r + 1) * 64, c * 64 : (c + 1) * 64]
        np.testing.assert_array_equal(np.asarray(tiles[k]), crop)
    thumb = np.asarray(img.resize((64, 64), Image.Resampling.BICUBIC))
    np.testing.assert_array_equal(np.asarray(tiles[-1]), thumb)


def test_tile_image_single_tile_has_no_thumbnail() -> None:
    cfg = TileConfig(image_size=64)
    img = noise(40, 40)
    tiles = tile_image(img, cfg)
    assert len(tiles) == 1
    np.testing.assert_array_equal(
        np.asarray(tiles[0]), np.asarray(img.resize((64, 64), Image.Resampling.BICUBIC))
    )
    assert len(tile_image(noise(300, 180), TileConfig(image_size=64, use_thumbnail=False))) == 6


def test_tile_image_grid_override() -> None:
    tiles = tile_image(noise(100, 100), TileConfig(image_size=32), grid=(2, 1))
    assert len(tiles) == 3
    assert all(t.size == (32, 32) for t in tiles)


# ---------------------------------------------------------------------------------------- preprocess


def test_preprocess_shape_dtype_and_values_match_tile_pipeline() -> None:
    cfg = TileConfig(image_size=64)
    img = noise(300, 180, seed=3)
    x = preprocess(img, cfg)
    assert x.shape == (7, 3, 64, 64)
    assert x.dtype == torch.float32
    assert x.is_contiguous()
    assert torch.equal(x, normalised(tile_image(img, cfg)))


def test_preprocess_white_image_normalisation() -> None:
    x = preprocess(Image.new("RGB", (500, 300), (255, 255, 255)))
    expected = torch.tensor([(1 - m) / s for m, s in zip(IMAGENET_MEAN, IMAGENET_STD, strict=True)])
    assert x.shape[1:] == (3, S, S)
    for c in range(3):
        assert torch.allclose(x[:, c], torch.full_like(x[:, c], float(expected[c])), atol=1e-6, rtol=0)
    black = preprocess(Image.new("RGB", (20, 20)))
    assert black.shape == (1, 3, S, S)
    assert abs(float(black[0, 0, 0, 0]) - (-IMAGENET_MEAN[0] / IMAGENET_STD[0])) < 1e-6


@pytest.fixture(scope="module")
def big_jpeg(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("big") / "camera.jpg"
    photo_like(6000, 4000).save(path, quality=90)
    return path


def test_fast_decode_same_grid_close_values_and_faster(big_jpeg: Path) -> None:
    fast_cfg, slow_cfg = TileConfig(fast_decode=True), TileConfig(fast_decode=False)
    fast = preprocess(big_jpeg, fast_cfg)
    slow = preprocess(big_jpeg, slow_cfg)
    assert fast.shape == slow.shape == (7, 3, S, S)  # 6000×4000 → (3, 2) + thumbnail
    assert float((fast - slow).abs().mean()) < 0.05

    def best_of(cfg: TileConfig, runs: int = 2) -> float:
        times = []
        for _ in range(runs):
            t0 = time.perf_counter()
            preprocess(big_jpeg, cfg)
            times.append(time.perf_counter() - t0)
        return min(times)

    assert best_of(fast_cfg) < best_of(slow_cfg)


def test_load_image_draft_target(big_jpeg: Path) -> None:
    full = load_image(big_jpeg, fast_decode=False)
    assert full.size == (6000, 4000)
    drafted = load_image(big_jpeg, target=(1344, 896))
    assert drafted.size == (1500, 1000)  # 1/4 DCT scale: the smallest still >= target
    assert load_image(big_jpeg, target=(1344, 896), fast_decode=False).size == (6000, 4000)
    assert load_image(big_jpeg, target=(4000, 3000)).size == (6000, 4000)  # no scale fits


def test_draft_target_follows_exif_rotation(tmp_path: Path) -> None:
    exif = Image.Exif()
    exif[0x0112] = 6
    path = write(tmp_path / "rot.jpg", jpeg_bytes(photo_like(4000, 1000), exif=exif))
    img = load_image(path, target=(500, 2000))  # upright target; stored frame is 4000×1000
    assert img.size == (500, 2000)
    x = preprocess(path)
    assert x.shape[0] == tile_count(1000, 4000, TileConfig())
    assert torch.allclose(x, preprocess(path, TileConfig(fast_decode=False)), atol=1.0)


def test_fast_decode_keeps_the_full_size_grid(tmp_path: Path) -> None:
    # 914×5905 → (1, 6); at 1/2 DCT scale the file decodes to 457×2953, whose own closest grid would
    # be (1, 7). The tiles must still follow the full-resolution grid.
    assert closest_grid(914, 5905, TileConfig()) == (1, 6)
    assert closest_grid(457, 2953, TileConfig()) == (1, 7)
    path = write(tmp_path / "tall.jpg", jpeg_bytes(photo_like(914, 5905)))
    assert load_image(path, target=(448, 6 * 448)).size == (457, 2953)
    fast = preprocess(path)
    slow = preprocess(path, TileConfig(fast_decode=False))
    assert fast.shape == slow.shape == (7, 3, S, S)
    assert float((fast - slow).abs().mean()) < 0.05


# ------------------------------------------------------------------------------------------- loading


def test_exif_orientation_6_rotates_to_portrait(tmp_path: Path) -> None:
    stored = np.zeros((32, 64, 3), dtype=np.uint8)
    stored[:, :] = (0, 0, 255)
    stored[:16, :16] = (255, 0, 0)  # red top-left of the stored (landscape) pixels
    exif = Image.Exif()
    exif[0x0112] = 6
    path = write(tmp_path / "o6.jpg", jpeg_bytes(Image.fromarray(stored), exif=exif))
    for src in (path, Image.open(path)):
        img = load_image(src)
        assert img.size == (32, 64)  # portrait
        px = np.asarray(img).astype(int)
        # orientation 6 = rotate 90° clockwise for display: stored top-left lands at the top-right
        assert px[8, 24, 0] > 200 and px[8, 24, 2] < 60
        assert px[8, 8, 0] < 60 and px[8, 8, 2] > 200
        assert px[56, 8, 2] > 200


def px(img: Image.Image, xy: tuple[int, int] = (0, 0)) -> tuple[int, ...]:
    out = load_image(img)
    assert out.mode == "RGB"
    assert np.asarray(out).dtype == np.uint8
    return tuple(int(v) for v in out.getpixel(xy))


def test_modes_l_la_1() -> None:
    assert px(Image.new("L", (4, 4), 100)) == (100, 100, 100)
    la = Image.new("LA", (2, 1))
    la.putpixel((0, 0), (100, 255))
    la.putpixel((1, 0), (100, 0))
    assert px(la, (0, 0)) == (100, 100, 100)
    assert px(la, (1, 0)) == (255, 255, 255)
    one = Image.new("1", (2, 1))
    one.putpixel((1, 0), 1)
    assert px(one, (0, 0)) == (0, 0, 0)
    assert px(one, (1, 0)) == (255, 255, 255)


def test_modes_palette_with_and_without_transparency(tmp_path: Path) -> None:
    p = Image.new("P", (2, 1))
    p.putpalette([0, 0, 0, 10, 200, 30] + [0] * (254 * 3))
    p.putpixel((0, 0), 1)
    p.putpixel((1, 0), 0)
    assert px(p, (0, 0)) == (10, 200, 30)
    assert px(p, (1, 0)) == (0, 0, 0)
    p.info["transparency"] = 0
    assert px(p, (0, 0)) == (10, 200, 30)
    assert px(p, (1, 0)) == (255, 255, 255)  # transparent index shows as white, not black
    path = tmp_path / "t.gif"
    p.save(path, transparency=0)
    img = load_image(path)
    assert img.getpixel((1, 0)) == (255, 255, 255)
    assert img.getpixel((0, 0)) == (10, 200, 30)


def test_mode_rgba_composites_over_white(tmp_path: Path) -> None:
    rgba = Image.new("RGBA", (3, 1))
    rgba.putpixel((0, 0), (10, 20, 30, 0))
    rgba.putpixel((1, 0), (10, 20, 30, 255))
    rgba.putpixel((2, 0), (0, 0, 0, 128))
    assert px(rgba, (0, 0)) == (255, 255, 255)
    assert px(rgba, (1, 0)) == (10, 20, 30)
    assert all(abs(v - 127) <= 1 for v in px(rgba, (2, 0)))
    path = tmp_path / "a.png"
    rgba.save(path)
    assert load_image(path).getpixel((0, 0)) == (255, 255, 255)


def test_mode_cmyk() -> None:
    cmyk = Image.new("CMYK", (3, 1))
    cmyk.putpixel((0, 0), (0, 0, 0, 0))
    cmyk.putpixel((1, 0), (255, 0, 0, 0))
    cmyk.putpixel((2, 0), (0, 0, 0, 255))
    assert px(cmyk, (0, 0)) == (255, 255, 255)
    assert px(cmyk, (1, 0)) == (0, 255, 255)
    assert px(cmyk, (2, 0)) == (0, 0, 0)


def test_sixteen_bit_scaled_by_range_not_clipped(tmp_path: Path) -> None:
    values = np.array([[0, 256, 32768, 65535]], dtype=np.uint16)
    expected = [0, 1, 128, 255]
    i16 = Image.fromarray(values)
    assert i16.mode == "I;16"
    for k, e in enumerate(expected):
        assert px(i16, (k, 0)) == (e, e, e)
    i16b = Image.frombytes("I;16B", (4, 1), values.astype(">u2").tobytes())
    assert [px(i16b, (k, 0))[0] for k in range(4)] == expected
    i32 = Image.fromarray(values.astype(np.int32))
    assert i32.mode == "I"
    assert [px(i32, (k, 0))[0] for k in range(4)] == expected
    path = tmp_path / "16.png"
    i16.save(path)
    assert [load_image(path).getpixel((k, 0))[0] for k in range(4)] == expected
    f = Image.fromarray(np.array([[0.0, 0.5, 1.0]], dtype=np.float32))
    assert [px(f, (k, 0))[0] for k in range(3)] == [0, 128, 255]


def test_other_modes_as_pil_or_colour_managed() -> None:
    ycc = Image.new("RGB", (2, 2), (200, 50, 20)).convert("YCbCr")
    assert px(ycc) == ycc.convert("RGB").getpixel((0, 0))
    assert px(Image.new("HSV", (2, 2), (0, 255, 255))) == (255, 0, 0)
    grey = px(Image.new("LAB", (2, 2), (128, 128, 128)))  # L*=50, a*=b*=0: neutral mid grey
    assert all(abs(v - 119) <= 2 for v in grey)


def test_icc_profiles(tmp_path: Path) -> None:
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    img = Image.new("RGB", (2, 2), (128, 64, 200))
    path = tmp_path / "srgb.png"
    img.save(path, icc_profile=srgb)
    assert load_image(path).getpixel((0, 0)) == (128, 64, 200)  # sRGB left alone
    linear = linear_rgb_icc()
    path = tmp_path / "linear.png"
    grad = Image.new("RGB", (3, 1))
    for k, v in enumerate((0, 128, 255)):
        grad.putpixel((k, 0), (v, v, v))
    grad.save(path, icc_profile=linear)
    out = load_image(path)
    assert out.getpixel((0, 0)) == (0, 0, 0)
    assert all(v >= 253 for v in out.getpixel((2, 0)))
    # linear 0.502 encodes to sRGB ≈ 0.735 → 188: proof the profile was applied
    assert all(abs(v - 188) <= 3 for v in out.getpixel((1, 0)))
    broken = tmp_path / "broken_icc.png"
    img.save(broken, icc_profile=b"not a profile at all" * 10)
    assert load_image(broken).getpixel((0, 0)) == (128, 64, 200)


def test_animated_gif_uses_first_frame(tmp_path: Path) -> None:
    frames = [Image.new("RGB", (8, 8), c) for c in ((255, 0, 0), (0, 0, 255))]
    path = tmp_path / "anim.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=100)
    assert load_image(path).getpixel((4, 4)) == (255, 0, 0)


def test_astronaut_goes_through(tmp_path: Path) -> None:
    data = pytest.importorskip("skimage.data")
    astro = Image.fromarray(data.astronaut())
    x = preprocess(astro)
    assert x.shape == (1, 3, S, S)  # 512² = 262144 px is not > 0.5*S²*4, so no 2×2 grid
    assert torch.isfinite(x).all()
    path = tmp_path / "astronaut.jpg"
    astro.save(path, quality=95)
    y = preprocess(path)
    assert y.shape == x.shape
    assert float((x - y).abs().mean()) < 0.05
    many = preprocess(astro, TileConfig(image_size=128))
    assert many.shape == (tile_count(512, 512, TileConfig(image_size=128)), 3, 128, 128)
    assert many.shape[0] == 10  # 3×3 with 128-px tiles (262144 > 0.5*128²*9) + thumbnail


# ---------------------------------------------------------------------------------------- bad input


@pytest.fixture
def real_jpeg() -> bytes:
    return jpeg_bytes(photo_like(640, 480))


def assert_load_error(source: object, reason_start: str) -> ImageLoadError:
    with pytest.raises(ImageLoadError) as info:
        load_image(source)  # type: ignore[arg-type]
    err = info.value
    assert isinstance(err, HumanAesError)
    assert err.reason.startswith(reason_start), err.reason
    assert err.source == str(source)
    with pytest.raises(ImageLoadError):
        preprocess(source)  # type: ignore[arg-type]
    return err


def test_zero_byte_file(tmp_path: Path) -> None:
    assert_load_error(write(tmp_path / "empty.jpg", b""), "not an image")


def test_truncated_jpeg(tmp_path: Path, real_jpeg: bytes) -> None:
    path = write(tmp_path / "half.jpg", real_jpeg[: len(real_jpeg) // 2])
    assert_load_error(path, "truncated or corrupt")
    with pytest.raises(ImageLoadError, match="truncated"):
        load_image(path, target=(160, 120))  # draft decoding still notices


def test_corrupt_png_data(tmp_path: Path) -> None:
    buf = io.BytesIO()
    noise(64, 64).save(buf, "PNG")
    data = bytearray(buf.getvalue())
    start = data.index(b"IDAT") + 4
    data[start + 10 : start + 60] = b"\xff" * 50
    assert_load_error(write(tmp_path / "bad.png", bytes(data)), "truncated or corrupt")


def test_random_bytes_and_text(tmp_path: Path) -> None:
    rnd = np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes()
    assert_load_error(write(tmp_path / "random.jpg", rnd), "not an image")
    assert_load_error(write(tmp_path / "notes.png", b"hello, this is text\n" * 20), "not an image")


def test_directory_and_missing_path(tmp_path: Path) -> None:
    folder = tmp_path / "folder.jpg"
    folder.mkdir()
    assert_load_error(folder, "is a directory")
    assert_load_error(tmp_path / "nope.jpg", "file not found")
    assert_load_error(str(tmp_path / "nope.jpg"), "file not found")


def test_permission_denied(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path / "locked.jpg", b"whatever")

    def deny(*args: object, **kwargs: object) -> None:
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(pp, "open", deny, raising=False)
    assert_load_error(path, "permission denied")


def test_decompression_bomb(tmp_path: Path) -> None:
    buf = io.BytesIO()
    Image.new("1", (8, 8)).save(buf, "PNG")
    data = buf.getvalue()
    ihdr_at = data.index(b"IHDR") - 4
    ihdr = bytearray(data[ihdr_at + 8 : ihdr_at + 8 + 13])
    ihdr[0:8] = struct.pack(">II", 60000, 60000)
    data = data[:ihdr_at] + png_chunk(b"IHDR", bytes(ihdr)) + data[ihdr_at + 8 + 13 + 4 :]
    err = assert_load_error(write(tmp_path / "bomb.png", data), "too large")
    assert "3600 megapixels" in err.reason


def test_pil_input_is_not_modified() -> None:
    rgba = Image.new("RGBA", (4, 4), (1, 2, 3, 0))
    out = load_image(rgba)
    assert out.mode == "RGB"
    assert rgba.mode == "RGBA"
    assert rgba.getpixel((0, 0)) == (1, 2, 3, 0)


def test_normalisation_is_read_from_the_checkpoint(tiny_model: Path) -> None:
    """humanaes.json's image.mean/std reach the pixels (they used to be saved and never read)."""
    from humanaes_core.model import read_meta
    from humanaes_core.scoring import tile_config_for

    meta = read_meta(tiny_model)
    img = Image.fromarray(np.full((64, 96, 3), 128, np.uint8))
    imagenet = preprocess(img, tile_config_for(meta, 1, fast_decode=True))
    meta.image.mean, meta.image.std = (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)
    plain = preprocess(img, tile_config_for(meta, 1, fast_decode=True))
    assert torch.allclose(plain, torch.full_like(plain, 128 / 255))
    expected = (128 / 255 - torch.tensor(IMAGENET_MEAN)) / torch.tensor(IMAGENET_STD)
    assert torch.allclose(imagenet[0, :, 0, 0], expected, atol=1e-6)
