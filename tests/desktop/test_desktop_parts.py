"""The desktop app's pieces without a model: 10,000-photo grid, thumbnails, capture times, settings."""

from __future__ import annotations

import builtins
import io
import json
import os
import random
import threading
import time
from datetime import datetime

import pytest

pytest.importorskip("PySide6")
pytest.importorskip("pytestqt")

from PIL import Image
from PySide6.QtCore import QItemSelectionModel, Qt
from PySide6.QtGui import QPixmap

from humanaes_core.schema import KEYS, LEVELS, score_to_level
from humanaes_core.scoring.scorer import ScoreCard
from humanaes_desktop import thumbnails as thumbs
from humanaes_desktop.grid import PhotoGrid
from humanaes_desktop.photos import SORT_KEYS, PhotoModel, PhotoRole
from humanaes_desktop.settings import AppSettings, ScoringSettings
from humanaes_desktop.thumbnails import CaptureTimeScanner, ImageLoader, capture_time
from humanaes_desktop.widgets import format_duration
from tests.conftest import synthetic_photo

N = 10_000


def _card(rng: random.Random) -> ScoreCard:
    dims = {k: rng.random() for k in KEYS}
    heads = {h: rng.random() for h in ("lm", "regression", "expert", "metavoter")}
    return ScoreCard(
        dims=dims,
        heads=heads,
        level=score_to_level(dims["overall"]),
        lm_probs=[0.2] * 5,
        tiles=1,
        mode="all",
        expert_raw=dict(dims),
    )


@pytest.fixture
def big_model(qtbot, tmp_path):
    """10,000 photos (paths that do not exist), 90 % scored, with random capture times."""
    rng = random.Random(0)
    loader = ImageLoader(320, cache_dir=tmp_path / "thumbs")
    model = PhotoModel(loader)
    model.set_photos([tmp_path / f"shoot/img_{i:05d}.jpg" for i in range(N)], tmp_path)
    model.update_results((str(p.path), _card(rng), None) for p in model.photos if rng.random() < 0.9)
    model.set_capture_times({str(p.path): rng.uniform(1e9, 2e9) for p in model.photos})
    model.resort()  # while scoring, re-sorts are coalesced by a timer; apply now
    return model


def test_sorting_and_filtering_10000_photos_is_fast_and_correct(big_model):
    model = big_model
    for key, _label in SORT_KEYS:
        start = time.perf_counter()
        model.set_sort(key, descending=key not in ("name", "captured"))
        elapsed = time.perf_counter() - start
        assert elapsed < 0.25, f"sorting 10,000 photos by {key} took {elapsed:.3f} s"
        values = [model.photo(r).sort_value(key) for r in range(model.rowCount())]
        known = [v for v in values if v is not None]
        assert known == sorted(known, reverse=key not in ("name", "captured"))
        assert all(v is None for v in values[len(known) :])  # unscored photos go last
    assert model.rowCount() == N

    start = time.perf_counter()
    model.set_filter({"good", "excellent"}, 0.7)
    assert time.perf_counter() - start < 0.25
    shown = [model.photo(r) for r in range(model.rowCount())]
    assert shown and all(
        p.card.level in ("good", "excellent") and p.card.dims["overall"] >= 0.7 for p in shown
    )
    expected = sum(1 for p in model.photos if p.card and p.card.dims["overall"] >= 0.7)
    assert len(shown) == expected
    model.set_filter(LEVELS, 0.0)
    assert model.rowCount() == N  # unscored photos are back once nothing is filtered


def test_selection_follows_the_photo_through_a_resort(qtbot, big_model):
    model = big_model
    grid = PhotoGrid()
    qtbot.addWidget(grid)
    grid.setModel(model)
    model.set_sort("overall", True)
    photo = model.photo(1234)
    grid.selectionModel().setCurrentIndex(model.index(1234), QItemSelectionModel.SelectionFlag.ClearAndSelect)
    model.set_sort("looks", False)
    assert grid.currentIndex().data(PhotoRole) is photo
    assert grid.currentIndex().row() == model.row_of(photo.path)


def test_grid_of_10000_paints_visible_tiles_without_file_io_on_the_ui_thread(qtbot, big_model, monkeypatch):
    model = big_model
    main = threading.main_thread()
    io_on_ui: list[str] = []

    def guard(name, fn):
        def wrapper(*args, **kwargs):
            if threading.current_thread() is main:
                io_on_ui.append(f"{name}{args[:1]}")
            return fn(*args, **kwargs)

        return wrapper

    for owner, name in ((builtins, "open"), (io, "open"), (os, "stat"), (os, "scandir"), (Image, "open")):
        monkeypatch.setattr(owner, name, guard(name, getattr(owner, name)))

    grid = PhotoGrid(184)
    qtbot.addWidget(grid)
    grid.setModel(model)
    grid.resize(1000, 700)
    grid.show()
    qtbot.waitExposed(grid)
    start = time.perf_counter()
    grid.grab()
    first_paint = time.perf_counter() - start
    grid.scrollToBottom()
    start = time.perf_counter()
    grid.grab()
    bottom_paint = time.perf_counter() - start
    for row in range(200):
        model.data(model.index(row), Qt.ItemDataRole.DecorationRole)
        model.data(model.index(row), Qt.ItemDataRole.ToolTipRole)
        model.data(model.index(row), PhotoRole)
    monkeypatch.undo()
    assert io_on_ui == []
    assert first_paint < 0.5 and bottom_paint < 0.5, (first_paint, bottom_paint)
    assert model.thumbnails.busy  # visible tiles asked for thumbnails; they load in the background


def test_thumbnails_are_made_off_thread_and_cached_on_disk(qtbot, tmp_path, photo_dir, monkeypatch):
    cache = tmp_path / "thumbs"
    loader = ImageLoader(128, cache_dir=cache)
    path = photo_dir / "day2" / "portrait.png"
    assert loader.get(path) is None  # never blocks: queued
    with qtbot.waitSignal(loader.ready, timeout=10000) as blocker:
        pass
    assert blocker.args == [str(path)]
    pix = loader.get(path)
    assert isinstance(pix, QPixmap) and max(pix.width(), pix.height()) == 128
    assert pix.height() > pix.width()  # 600×900 stays portrait
    files = list(cache.rglob("*.jpg"))
    assert len(files) == 1

    # A new loader (empty memory) reads the disk cache instead of decoding the photo again.
    def no_decode(*_args, **_kwargs):
        raise AssertionError("decoded although a cached thumbnail exists")

    monkeypatch.setattr(thumbs, "load_scaled", no_decode)
    fresh = ImageLoader(128, cache_dir=cache)
    fresh.get(path)
    qtbot.waitSignal(fresh.ready, timeout=10000).wait()
    assert fresh.peek(path) is not None

    # A changed file gets a new thumbnail (the key includes size and mtime).
    monkeypatch.undo()
    changed = tmp_path / "changed.jpg"
    synthetic_photo(5, (200, 100)).save(changed)
    key_before = thumbs.thumbnail_key(changed, 128)
    time.sleep(0.01)
    synthetic_photo(6, (220, 100)).save(changed)
    assert thumbs.thumbnail_key(changed, 128) != key_before


def test_broken_file_fails_once_and_is_not_retried(qtbot, tmp_path, photo_dir):
    loader = ImageLoader(128, cache_dir=tmp_path / "thumbs")
    broken = photo_dir / "not_a_photo.jpg"
    loader.get(broken)
    with qtbot.waitSignal(loader.failed, timeout=10000) as blocker:
        pass
    assert blocker.args[0] == str(broken) and blocker.args[1]
    assert loader.get(broken) is None and not loader.busy  # not queued again
    assert loader.error(broken)


def test_capture_time_from_exif_or_mtime(qtbot, tmp_path):
    with_exif = tmp_path / "exif.jpg"
    exif = Image.Exif()
    exif.get_ifd(0x8769)[36867] = "2021:05:04 13:14:15"
    synthetic_photo(1, (64, 48)).save(with_exif, exif=exif)
    plain = tmp_path / "plain.png"
    synthetic_photo(2, (64, 48)).save(plain)
    os.utime(plain, (1_600_000_000, 1_600_000_000))
    assert capture_time(with_exif) == datetime(2021, 5, 4, 13, 14, 15).timestamp()
    assert capture_time(plain) == 1_600_000_000
    assert capture_time(tmp_path / "missing.jpg") == 0.0

    scanner = CaptureTimeScanner()
    with qtbot.waitSignal(scanner.times, timeout=10000) as blocker:
        scanner.scan([with_exif, plain])
    assert blocker.args[0] == {str(with_exif): capture_time(with_exif), str(plain): 1_600_000_000}

    model = PhotoModel()
    model.set_photos([with_exif, plain])
    model.set_capture_times(blocker.args[0])
    model.set_sort("captured", descending=False)
    assert [model.photo(r).path for r in range(2)] == [plain, with_exif]


def test_settings_round_trip_and_survive_bad_files(tmp_path):
    path = tmp_path / "desktop.json"
    settings = AppSettings.load(path)
    assert settings == AppSettings()  # defaults when there is no file
    settings.scoring = ScoringSettings(model="/models/mine", precision="4bit", device="cuda:1", max_tiles=6)
    settings.sort_key, settings.sort_descending, settings.levels = "looks", False, ["good", "excellent"]
    for i in range(15):
        settings.add_recent(str(tmp_path / f"f{i % 12}"))
    settings.add_recent(str(tmp_path / "f3"))
    settings.save()
    loaded = AppSettings.load(path)
    assert loaded == settings
    assert loaded.recent_folders[0] == str(tmp_path / "f3") and len(loaded.recent_folders) == 10
    assert len(set(loaded.recent_folders)) == 10
    assert loaded.scoring.quantize == "4bit" and loaded.scoring.dtype == "auto"
    assert ScoringSettings(precision="bf16").quantize is None

    path.write_text("{ not json")
    assert AppSettings.load(path) == AppSettings()
    path.write_text(
        json.dumps(
            {
                "scoring": {"model": "", "precision": "fp8", "max_tiles": 99, "batch_size": True},
                "levels": ["good", "awful"],
                "min_score": 7,
                "recursive": "yes",
            }
        )
    )
    odd = AppSettings.load(path)
    assert odd.scoring == ScoringSettings()
    assert odd.levels == ["good"] and odd.min_score == 1.0 and odd.recursive is True


def test_unscored_photos_are_hidden_only_while_filtering(qtbot, tmp_path):
    model = PhotoModel()
    model.set_photos([tmp_path / "a.jpg", tmp_path / "b.jpg", tmp_path / "c.jpg"])
    rng = random.Random(1)
    card = _card(rng)
    model.update_results(
        [(str(tmp_path / "a.jpg"), card, None), (str(tmp_path / "b.jpg"), None, "not an image")]
    )
    assert model.rowCount() == 3
    model.set_filter(LEVELS, 0.0001)
    model.resort()
    assert [model.photo(r).path.name for r in range(model.rowCount())] == ["a.jpg"]
    model.set_filter([lv for lv in LEVELS if lv != card.level], 0.0)
    assert model.rowCount() == 0


def test_durations_read_naturally():
    assert format_duration(None) == "–"
    assert format_duration(0.2) == "1 s"
    assert format_duration(42) == "42 s"
    assert format_duration(150) == "2 min" or format_duration(150) == "3 min"
    assert format_duration(2 * 3600 + 20 * 60) == "2 h 20 min"


def test_signed_values_never_show_negative_zero():
    from humanaes_desktop.widgets import signed

    assert signed(0.0123) == "+0.012"
    assert signed(-0.0345) == "-0.034" or signed(-0.0345) == "-0.035"
    assert signed(-0.0001) == "0.000"


def test_a_failed_settings_save_keeps_the_old_file_and_leaves_no_temporary_file(tmp_path, monkeypatch):
    from humanaes_desktop import settings as settings_module

    path = tmp_path / "config" / "desktop.json"
    settings = AppSettings.load(path)
    settings.sort_key = "looks"
    settings.save()
    before = path.read_bytes()

    def disk_full(data, fh, **_kwargs):
        fh.write(json.dumps(data)[:10])  # half written, then the disk is full
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(settings_module.json, "dump", disk_full)
    settings.sort_key = "name"
    settings.save()  # logged, not raised
    assert path.read_bytes() == before
    assert sorted(p.name for p in path.parent.iterdir()) == ["desktop.json"]


def test_painting_helpers_fit_and_label_like_every_view(qtbot):
    from PySide6.QtCore import QRectF
    from PySide6.QtGui import QColor, QImage, QPainter

    from humanaes_desktop import theme
    from humanaes_desktop.painting import dim_reject, fitted, paint_fitted, score_text

    card = _card(random.Random(3))
    assert score_text(card) == f"{card.dims['overall']:.2f}  {card.level}"
    portrait = QPixmap(100, 200)
    assert fitted(portrait, QRectF(10, 10, 300, 100)) == QRectF(135, 10, 50, 100)

    canvas = QImage(40, 40, QImage.Format.Format_ARGB32)
    canvas.fill(QColor("white"))
    portrait.fill(QColor("white"))
    p = QPainter(canvas)
    target = paint_fitted(p, portrait, QRectF(0, 0, 40, 40), radius=4, dimmed=True)
    p.end()
    assert target == QRectF(10, 0, 20, 40)
    inside, outside = canvas.pixelColor(20, 20), canvas.pixelColor(2, 20)
    assert inside.lightness() < outside.lightness() == 255  # the reject is dimmed, only where it is

    again = QImage(40, 40, QImage.Format.Format_ARGB32)
    again.fill(QColor("white"))
    p = QPainter(again)
    dim_reject(p, QRectF(10, 0, 20, 40))
    p.end()
    assert again.pixelColor(20, 20) == inside  # one dimming, wherever a reject is shown
    assert theme.REJECT_DIM.alpha() < 255
