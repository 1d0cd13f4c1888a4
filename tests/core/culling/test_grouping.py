"""Bursts and near-duplicates: perceptual hash + capture time, on synthetic bursts written as real files."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from humanaes_core.culling import bursts as grouping
from humanaes_core.culling.bursts import (
    best_of,
    capture_time,
    group_photos,
    hamming,
    parse_exif_datetime,
)
from humanaes_core.culling.bursts import (
    photo_fingerprint as fingerprint,
)
from humanaes_core.scoring.scorer import ScoreCard
from tests.conftest import synthetic_photo

pytest.importorskip("imagehash", reason="imagehash computes the perceptual hashes")

T0 = datetime(2024, 5, 1, 14, 0, 0, tzinfo=UTC).timestamp()


def _exif(when: float) -> bytes:
    exif = Image.Exif()
    sub = exif.get_ifd(0x8769)
    stamp = datetime.fromtimestamp(when, UTC)
    sub[0x9003] = stamp.strftime("%Y:%m:%d %H:%M:%S")
    sub[0x9291] = f"{stamp.microsecond // 10000:02d}"
    return exif.tobytes()


def _frame(seed: int, rng: np.random.Generator) -> Image.Image:
    """A burst frame: the same scene, shifted by a few pixels, with fresh sensor noise."""
    base = synthetic_photo(seed, (680, 480))
    dx, dy = (int(v) for v in rng.integers(0, 16, 2))
    pixels = np.asarray(base.crop((dx, dy, dx + 640, dy + 440)), np.float32)
    pixels += rng.normal(0, 6, pixels.shape)
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def _write(folder: Path, name: str, img: Image.Image, when: float) -> Path:
    path = folder / name
    img.save(path, quality=90, exif=_exif(when))
    return path


@pytest.fixture(scope="module")
def shoot(tmp_path_factory) -> tuple[list[Path], list[list[str]]]:
    """Three bursts, unrelated photos interleaved in time, and a re-shot of burst A ten minutes later."""
    folder = tmp_path_factory.mktemp("shoot")
    rng = np.random.default_rng(0)
    files: list[Path] = []
    plan = [
        # (name, scene seed, seconds after T0)
        ("a1", 1, 0.0),
        ("a2", 1, 0.3),
        ("a3", 1, 0.6),
        ("a4", 1, 0.9),
        ("x1", 11, 1.2),  # unrelated, 0.3 s after the burst: time alone would merge it
        ("b1", 2, 60.0),
        ("b2", 2, 60.2),
        ("b3", 2, 60.4),
        ("x2", 12, 90.0),
        ("c1", 3, 120.0),
        ("c2", 3, 121.5),  # 1.5 s gap: still a burst
        ("c3", 3, 122.0),
        ("x3", 13, 300.0),
        ("a5", 1, 600.0),  # the burst A scene again, ten minutes later: a separate moment
    ]
    for name, seed, dt in plan:
        img = _frame(seed, rng) if name[0] != "x" else synthetic_photo(seed, (640, 440))
        files.append(_write(folder, f"{name}.jpg", img, T0 + dt))
    expected = [
        ["a1", "a2", "a3", "a4"],
        ["x1"],
        ["b1", "b2", "b3"],
        ["x2"],
        ["c1", "c2", "c3"],
        ["x3"],
        ["a5"],
    ]
    return files, expected


def test_synthetic_bursts_are_found(shoot):
    files, expected = shoot
    prints = [fingerprint(p) for p in reversed(files)]  # input order must not matter
    assert all(fp.time_source == "exif" for fp in prints)
    groups = group_photos([fp.item() for fp in prints])
    assert [[p.stem for p in g] for g in groups] == expected


def test_hash_and_time_each_matter(shoot):
    files, _ = shoot
    prints = {p.stem: fingerprint(p) for p in files}
    assert hamming(prints["a1"].hash, prints["a2"].hash) <= 6
    assert hamming(prints["a1"].hash, prints["x1"].hash) > grouping.DEFAULT_MAX_HAMMING
    assert hamming(prints["a1"].hash, prints["a5"].hash) <= grouping.DEFAULT_MAX_HAMMING  # same scene ...
    # ... so only the time gap keeps a5 apart; with a huge gap allowed it joins burst A
    items = [prints[n].item() for n in ("a1", "a2", "a5")]
    assert len(group_photos(items)) == 2
    assert len(group_photos(items, max_gap_s=3600)) == 1
    # and with a huge hash distance allowed, time alone merges the unrelated x1 into burst A
    items = [prints[n].item() for n in ("a3", "a4", "x1")]
    assert len(group_photos(items)) == 2
    assert len(group_photos(items, max_hamming=64)) == 1


def test_alternating_subjects_stay_in_their_bursts():
    a, b = "0" * 16, "f" * 16
    a2, b2 = "0" * 15 + "1", "f" * 15 + "e"
    items = [("p1", 0.0, a), ("p2", 0.4, b), ("p3", 0.8, a2), ("p4", 1.2, b2), ("p5", 1.6, a)]
    groups = group_photos(items)
    assert [[p.name for p in g] for g in groups] == [["p1", "p3", "p5"], ["p2", "p4"]]


def test_photos_without_time_group_by_hash_among_neighbours():
    items = [
        ("b.jpg", None, "ff00ff00ff00ff00"),
        ("a.jpg", None, "ff00ff00ff00ff01"),
        ("c.jpg", None, "0" * 16),
    ]
    assert [[p.name for p in g] for g in group_photos(items)] == [["a.jpg", "b.jpg"], ["c.jpg"]]
    with pytest.raises(ValueError):
        group_photos(items, max_hamming=-1)


def test_capture_time_from_exif_with_subseconds_and_offset(tmp_path):
    path = tmp_path / "t.jpg"
    exif = Image.Exif()
    sub = exif.get_ifd(0x8769)
    sub[0x9003], sub[0x9291], sub[0x9011] = "2024:05:01 16:00:00", "25", "+02:00"
    Image.new("RGB", (8, 8)).save(path, exif=exif.tobytes())
    assert capture_time(path) == (pytest.approx(T0 + 0.25), "exif")


def test_capture_time_falls_back_to_the_file_time(tmp_path):
    path = tmp_path / "no_exif.png"
    Image.new("RGB", (8, 8)).save(path)
    os.utime(path, (T0 + 5, T0 + 5))
    assert capture_time(path) == (T0 + 5, "mtime")
    assert capture_time(tmp_path / "missing.png") == (None, "none")


def test_capture_time_of_a_raw_file(tmp_path):
    pytest.importorskip("tifffile", reason="tifffile writes the test DNG")
    from tests.core.formats.test_formats import make_dng

    path = make_dng(
        tmp_path / "IMG_0001.dng",
        synthetic_photo(1, (64, 48)),
        extra_tags=[(36867, "s", 0, "2024:05:01 14:00:03", True)],  # DateTimeOriginal in IFD0
    )
    assert capture_time(path) == (T0 + 3, "exif")
    assert fingerprint(path).capture_time == T0 + 3


def test_parse_exif_datetime():
    assert parse_exif_datetime("2024:05:01 14:00:00") == T0
    assert parse_exif_datetime(b"2024:05:01 14:00:00\x00", "5") == T0 + 0.5
    assert parse_exif_datetime("2024:05:01 14:00:00", "050", "-01:30") == T0 + 5400 + 0.05
    for bad in ("0000:00:00 00:00:00", "", "    :  :     :  :  ", None, 17):
        assert parse_exif_datetime(bad) is None


def test_hamming_accepts_every_hash_form():
    import imagehash

    h1 = imagehash.phash(synthetic_photo(1, (64, 64)))
    h2 = imagehash.phash(synthetic_photo(2, (64, 64)))
    assert hamming(h1, h2) == hamming(str(h1), str(h2)) == hamming(int(str(h1), 16), h2) == h1 - h2


def _card(overall: float) -> ScoreCard:
    return ScoreCard(
        dims={"overall": overall}, heads={}, level="fair", lm_probs=[0.2] * 5, tiles=1, mode="overall"
    )


def test_best_of_is_the_highest_overall_score():
    group = [Path("a.jpg"), Path("b.jpg"), Path("c.jpg"), Path("d.jpg")]
    cards = {Path("a.jpg"): _card(0.4), "b.jpg": _card(0.7).to_dict(), Path("c.jpg"): _card(0.7)}
    assert best_of(group, cards) == Path("b.jpg")  # tie with c goes to the earlier frame
    cards[Path("c.jpg")] = _card(0.9)
    assert best_of(group, cards) == Path("c.jpg")
    assert best_of([Path("d.jpg")], cards) is None  # not scored


def test_best_of_burst_end_to_end(shoot):
    files, _ = shoot
    groups = group_photos([fingerprint(p).item() for p in files])
    burst_b = next(g for g in groups if g[0].stem == "b1")
    scores = {"b1": 0.51, "b2": 0.83, "b3": 0.62}
    cards = {p: _card(scores[p.stem]) for p in burst_b}
    assert best_of(burst_b, cards).stem == "b2"
