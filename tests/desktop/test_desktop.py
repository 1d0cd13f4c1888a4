"""The desktop app end to end (offscreen, tiny model): open, score, sort, inspect, cache, cancel, stalls."""

from __future__ import annotations

import json
import shutil
import threading
import time
from dataclasses import replace
from pathlib import Path

import pytest

pytest.importorskip("PySide6")
pytest.importorskip("pytestqt")

from PySide6.QtCore import QElapsedTimer, QMimeData, QPointF, Qt, QTimer, QUrl
from PySide6.QtGui import QDropEvent
from PySide6.QtWidgets import QApplication

from humanaes_core import model as ckpt
from humanaes_core.schema import BY_KEY, KEYS
from humanaes_core.store.scores import ScoreCache
from humanaes_desktop.mainwindow import MainWindow
from humanaes_desktop.settings import AppSettings
from tests.conftest import BROKEN_PHOTOS, GOOD_PHOTOS, synthetic_photo

MAX_STALL_MS = 250


def _wait_done(qtbot, window: MainWindow, timeout: int = 30000) -> None:
    qtbot.waitUntil(
        lambda: (
            not window.controller.running and window.model.photos and window.model.counts()["pending"] == 0
        ),
        timeout=timeout,
    )


def _rows(window: MainWindow) -> list:
    return [window.model.photo(r) for r in range(window.model.rowCount())]


def _folder(root: Path, n: int, seed: int = 100) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    sizes = [(320, 240), (240, 320), (300, 300), (480, 200)]
    for i in range(n):
        synthetic_photo(seed + i, sizes[i % len(sizes)]).save(root / f"photo_{i:02d}.jpg", quality=85)
    return root


def test_open_score_sort_click_shows_card_and_attribution(make_window, qtbot, photo_dir):
    window = make_window()
    window.open_paths([photo_dir])
    _wait_done(qtbot, window)

    counts = window.model.counts()
    assert counts == {"total": 7, "shown": 7, "scored": 4, "skipped": 3, "pending": 0}
    # A broken file is a tile marked skipped and a line in the list, never a dialog.
    skipped = {p.name: p.error for p in window.model.photos if p.state == "skipped"}
    assert set(skipped) == set(BROKEN_PHOTOS) and all(skipped.values())
    assert window.errors_list.count() == 3
    assert window.errors_button.text() == "3 skipped"
    assert QApplication.activeModalWidget() is None
    assert {p.name for p in window.model.photos if p.card is not None} == set(GOOD_PHOTOS)

    window.set_sort("facial_feature_clarity", descending=True)
    rows = _rows(window)
    values = [p.card.dims["facial_feature_clarity"] for p in rows if p.card is not None]
    assert values == sorted(values, reverse=True) and len(values) == 4
    assert [p.state for p in rows[4:]] == ["skipped"] * 3  # unknown values sort last
    window.set_sort("facial_feature_clarity", descending=False)
    values_up = [p.card.dims["facial_feature_clarity"] for p in _rows(window) if p.card is not None]
    assert values_up == sorted(values_up)

    target_row = 1
    rect = window.grid.visualRect(window.model.index(target_row))
    qtbot.mouseClick(window.grid.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
    photo = window.current_photo()
    assert photo is window.model.photo(target_row) and photo.card is not None
    card = photo.card

    panel = window.panel
    assert panel.title.text() == Path(photo.name).name
    assert panel.hierarchy.values() == card.dims and list(panel.hierarchy.values()) == list(KEYS)
    assert panel.radar.values() == card.dims
    assert panel.heads.values() == card.heads and set(card.heads) == {
        "lm",
        "regression",
        "expert",
        "metavoter",
    }

    # The why: against the folder's other cards, adding up to the shown overall minus the folder average
    # at every level, and the sentence and the badge's average are the same numbers.
    why = panel.attribution.explanation()
    cards = [p.card for p in window.model.photos if p.card is not None]
    average = sum(c.dims["overall"] for c in cards) / len(cards)
    assert why.total == pytest.approx(card.dims["overall"] - average, abs=1e-6)
    contributions = panel.attribution.contributions()
    assert list(contributions) == ["overall", "expert", "facial_aesthetic", "general_appearance_aesthetic"]
    assert sum(contributions["overall"].values()) == pytest.approx(why.total, abs=1e-9)
    assert sum(contributions["expert"].values()) == pytest.approx(
        contributions["overall"]["expert"], abs=1e-9
    )
    for parent in ("facial_aesthetic", "general_appearance_aesthetic"):
        assert list(contributions[parent]) == list(BY_KEY[parent].children)
        assert sum(contributions[parent].values()) == pytest.approx(contributions["expert"][parent], abs=1e-9)
    assert panel.explanation.text() == why.sentence
    assert f"folder average {why.reference:.2f}" in panel.badge.caption()

    assert "folder average" in panel.explanation.text()

    # Keyboard: Enter full screen, arrows move through the grid, Esc back.
    qtbot.keyClick(window.grid, Qt.Key.Key_Return)
    assert window.in_full_view
    assert window.full_view.photo is photo
    qtbot.keyClick(window.full_view, Qt.Key.Key_Right)
    assert window.current_photo() is window.model.photo(target_row + 1)
    assert window.full_view.photo is window.model.photo(target_row + 1)
    qtbot.keyClick(window.full_view, Qt.Key.Key_Left)
    assert window.current_photo() is photo
    qtbot.keyClick(window.full_view, Qt.Key.Key_Escape)
    assert not window.in_full_view
    qtbot.keyClick(window.grid, Qt.Key.Key_Right)
    assert window.current_photo() is window.model.photo(target_row + 1)

    # Filters: a minimum score hides the weaker photos (and every unscored one).
    threshold = sorted(c.dims["overall"] for c in cards)[2]
    window.filters.min_score.setValue(threshold)
    shown = _rows(window)
    assert shown and all(p.card is not None and p.card.dims["overall"] >= threshold for p in shown)
    window.filters.min_score.setValue(0.0)
    level = cards[0].level
    for lv, chip in window.filters.level_chips.items():
        chip.setChecked(lv == level)
    assert {p.card.level for p in _rows(window)} == {level}


def test_reopening_shows_cached_scores_without_model_work(make_window, qtbot, photo_dir, monkeypatch):
    first = make_window()
    first.open_paths([photo_dir])
    _wait_done(qtbot, first)
    scores = {str(p.path): p.card.dims for p in first.model.photos if p.card is not None}
    first.close()

    import humanaes_core.scoring.scan

    def no_model(*_args, **_kwargs):
        raise AssertionError("the model must not be loaded for a fully cached folder")

    monkeypatch.setattr(humanaes_core.scoring.scan, "load_scorer", no_model)
    second = make_window()
    second.open_paths([photo_dir])
    _wait_done(qtbot, second)
    assert not second.banner.isVisible()
    again = {str(p.path): p.card.dims for p in second.model.photos if p.card is not None}
    assert again == scores
    assert second.last_progress.cached == 4 and second.last_progress.scored == 0
    assert "4 from cache" in second.rate_label.text()


def test_cached_folder_opens_at_its_ranked_first_screen_before_whole_folder_scans(
    make_window, qtbot, tmp_path, monkeypatch
):
    """Reopening a cached folder: one sort as the cards arrive, the top of the ranking on screen, its
    thumbnails before any other, and the scans of the whole folder (capture times, bursts) only after."""
    from humanaes_desktop import window_scoring

    monkeypatch.setattr(window_scoring, "FIRST_SCREEN_WAIT_MS", 120_000)  # only the first screen releases
    folder = _folder(tmp_path / "shoot", 40)
    first = make_window()
    first.open_paths([folder])
    _wait_done(qtbot, first)
    first.close()

    window = make_window()
    requested: list[str] = []
    request = window.thumbnails.request
    monkeypatch.setattr(
        window.thumbnails, "request", lambda path: (requested.append(str(path)), request(path))
    )
    batches: list[tuple[bool, list[float]]] = []
    update = window.model.update_results

    def recording_update(batch):
        changed = update(batch)
        overall = [p.overall for p in _rows(window) if p.overall is not None]
        batches.append((window.model.resort_pending, overall))
        return changed

    monkeypatch.setattr(window.model, "update_results", recording_update)
    scans: list[tuple[str, bool, int]] = []
    for name, owner, method in (
        ("capture times", window.capture_times, "scan"),
        ("bursts", window.scanner, "find_bursts"),
    ):
        real = getattr(owner, method)

        def recording(*args, name=name, real=real, **kwargs):
            scans.append((name, window.tiles_on_screen_ready(), len(requested)))
            return real(*args, **kwargs)

        monkeypatch.setattr(owner, method, recording)

    window.open_paths([folder])
    _wait_done(qtbot, window)
    qtbot.waitUntil(lambda: len(scans) == 2, timeout=30000)

    assert not window.controller.has_model and window.last_progress.scored == 0
    pending, overall = batches[0]
    assert not pending and overall == sorted(overall, reverse=True)  # the first cards are sorted in at once
    visible = window.grid.visible_rows()
    assert visible and visible[0] == 0 and window.grid.currentIndex().row() == 0  # the top of the ranking
    on_screen = {str(window.model.photo(r).path) for r in visible}
    assert len(on_screen) < 40
    # Only tiles that were on screen asked for thumbnails (the first screen in name order may have
    # asked before the cards sorted it), and the whole-folder scans started once they were in memory.
    assert on_screen <= set(requested) and len(set(requested)) <= 2 * len(on_screen)
    assert {name for name, _, _ in scans} == {"capture times", "bursts"}
    assert all(ready for _, ready, _ in scans)


def test_a_cached_run_sends_every_card_before_torch_and_never_imports_transformers(tmp_path, tiny_model):
    """The scoring run of a cached folder, in a fresh interpreter: all cards go out before anything
    imports torch (the expert head for attribution comes after them), transformers is never imported
    and the model never loaded."""
    import subprocess
    import sys

    from humanaes_desktop.settings import ScoringSettings
    from humanaes_desktop.worker import ScoringJob, ScoringRun

    folder = _folder(tmp_path / "shoot", 6)
    settings = ScoringSettings(model=str(tiny_model), device="cpu", max_tiles=1, batch_size=4)

    class Job:
        def report(self, _event) -> None:
            pass

    ScoringRun(ScoringJob((str(folder),), settings)).run(Job())  # scores and caches the folder

    script = f"""
import json, sys
from humanaes_desktop.settings import ScoringSettings
from humanaes_desktop.worker import ScoringJob, ScoringRun
events = []
class Job:
    def report(self, event):
        name, args = event
        info = args[0] if name == "model_ready" else None
        events.append([name, "torch" in sys.modules, "transformers" in sys.modules,
                       None if info is None else info.attributor is not None])
events.append(["start", "torch" in sys.modules, "transformers" in sys.modules, None])
run = ScoringRun(ScoringJob(({str(folder)!r},), ScoringSettings(**{settings.__dict__!r})))
run.run(Job())
events.append(["end", "torch" in sys.modules, "transformers" in sys.modules, None])
print(json.dumps({{"events": events, "cached": run.progress_state.cached, "scored": run.progress_state.scored,
                  "scorer": run.scorer is not None}}))
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    events = report["events"]
    assert report["cached"] == 6 and report["scored"] == 0 and not report["scorer"]
    assert not any(transformers for _, _, transformers, _ in events)
    results = [i for i, e in enumerate(events) if e[0] == "results"]
    with_attributor = [i for i, e in enumerate(events) if e[0] == "model_ready" and e[3]]
    assert results and with_attributor and max(results) < with_attributor[0]
    first_torch = next(i for i, e in enumerate(events) if e[1])
    assert first_torch > max(results)  # torch is imported only for attribution, after every card


def test_pause_resume_and_cancel_leave_a_consistent_cache(
    make_window, qtbot, tmp_path, tiny_model, monkeypatch
):
    folder = _folder(tmp_path / "shoot", 12)
    stored = threading.Event()
    original_put = ScoreCache.put
    puts: list[str] = []

    def slow_put(self, content_hash, model_fp, settings_fp, card):
        original_put(self, content_hash, model_fp, settings_fp, card)
        puts.append(content_hash)
        if len(puts) >= 3:
            stored.set()
        time.sleep(0.08)  # slow enough that the run is still going when the test acts

    monkeypatch.setattr(ScoreCache, "put", slow_put)
    window = make_window(batch_size=1)
    window.open_paths([folder])
    qtbot.waitUntil(stored.is_set, timeout=30000)

    window.activateWindow()
    window.grid.setFocus()
    qtbot.keyClick(window.grid, Qt.Key.Key_Space)  # pause
    qtbot.waitUntil(lambda: window.last_progress.paused, timeout=5000)
    paused_at = len(puts)
    qtbot.wait(400)
    assert len(puts) <= paused_at + 1  # at most the photo already in flight
    qtbot.keyClick(window.grid, Qt.Key.Key_Space)  # resume
    qtbot.waitUntil(lambda: not window.last_progress.paused, timeout=5000)
    window.cancel_scoring()
    qtbot.waitUntil(lambda: not window.controller.running, timeout=30000)

    shown = {str(p.path) for p in window.model.photos if p.card is not None}
    assert 3 <= len(shown) < 12, "cancel should stop the run midway"
    assert "Cancelled" in window.rate_label.text()

    # Consistent: every card on screen is in the cache, complete, and keyed by this model and settings.
    from humanaes_core.scoring.scan import CachedScoring
    from humanaes_core.scoring.scorer import ScoreCard

    s = window.settings.scoring
    keys = CachedScoring(s.model, cache=None, device="cpu", max_tiles=s.max_tiles, batch_size=s.batch_size)
    with ScoreCache() as cache:
        hashes = cache.content_hashes(sorted(folder.iterdir()))
        cached = {}
        for path, h in hashes.items():
            card = cache.get(h, ckpt.checkpoint_fingerprint(tiny_model), keys.settings_fp)
            if card is not None:
                cached[str(path)] = ScoreCard.from_dict(card)
    assert shown == set(cached)
    assert all(list(c.dims) == list(KEYS) for c in cached.values())
    assert len(cached) == len(set(puts))

    monkeypatch.setattr(ScoreCache, "put", original_put)
    window.open_paths([folder])
    _wait_done(qtbot, window)
    paths = [str(p.path) for p in window.model.photos]
    assert len(paths) == len(set(paths)) == 12  # no duplicates
    assert window.model.counts()["scored"] == 12
    assert window.last_progress.cached == len(cached)
    assert window.last_progress.scored == 12 - len(cached)


def test_ui_thread_keeps_processing_events_while_scoring(make_window, qtbot, tmp_path, monkeypatch):
    from humanaes_core.model.modeling import HumanAesModel

    folder = _folder(tmp_path / "event_loop", 16, seed=300)
    model_threads: set[int] = set()
    original = HumanAesModel.score_batch

    def recording(self, *args, **kwargs):
        model_threads.add(threading.get_ident())
        return original(self, *args, **kwargs)

    monkeypatch.setattr(HumanAesModel, "score_batch", recording)
    window = make_window(batch_size=2)
    gaps: list[int] = []
    clock = QElapsedTimer()
    ticker = QTimer()
    ticker.setInterval(5)

    def tick() -> None:
        gaps.append(clock.restart())

    ticker.timeout.connect(tick)
    clock.start()
    ticker.start()
    window.open_paths([folder])
    _wait_done(qtbot, window)
    qtbot.waitUntil(lambda: not window.thumbnails.busy, timeout=10000)
    ticker.stop()

    assert window.model.counts()["scored"] == 16
    assert model_threads and threading.main_thread().ident not in model_threads
    longest = max(gaps)
    print(f"longest event-loop stall while scoring: {longest} ms over {len(gaps)} ticks")
    assert longest < MAX_STALL_MS


def test_changing_the_model_rescores_and_never_mixes_cards(
    make_window, qtbot, photo_dir, tiny_model, tmp_path
):
    other = tmp_path / "other_model"
    shutil.copytree(tiny_model, other)
    meta = ckpt.read_meta(other)
    meta.name = "HumanAes other"
    (other / ckpt.META_FILE).write_text(json.dumps(meta.to_json()))
    ckpt.write_manifest(other)
    old_fp, new_fp = ckpt.checkpoint_fingerprint(tiny_model), ckpt.checkpoint_fingerprint(other)
    assert old_fp != new_fp

    window = make_window()
    window.open_paths([photo_dir])
    _wait_done(qtbot, window)
    assert {p.card.model for p in window.model.photos if p.card} == {old_fp}

    seen: list[str] = []
    window.controller.results.connect(
        lambda batch: seen.extend(c.model for _, c, _ in batch if c is not None)
    )
    window.apply_settings(
        replace(window.settings, scoring=replace(window.settings.scoring, model=str(other)))
    )
    # Old cards are gone from the screen at once, before the new model has produced anything.
    assert all(p.card is None for p in window.model.photos)
    _wait_done(qtbot, window)
    assert {p.card.model for p in window.model.photos if p.card} == {new_fp}
    assert set(seen) == {new_fp}
    assert window.model_info is not None and window.model_info.fingerprint == new_fp
    assert window.settings.scoring.model == str(other)
    assert AppSettings.load().scoring.model == str(other)  # persisted


def test_missing_model_shows_one_message_and_browsing_keeps_working(make_window, qtbot, photo_dir, tmp_path):
    # Offline (HF_HUB_OFFLINE=1 in conftest) and not downloaded: one banner saying what to do.
    window = make_window(model="KwaiVGI/HumanAesExpert-1B")
    window.open_paths([photo_dir])
    qtbot.waitUntil(lambda: window.banner.isVisible(), timeout=10000)
    qtbot.waitUntil(lambda: not window.controller.running, timeout=10000)
    message = window.banner_text.text()
    assert "HumanAesExpert-1B" in message and "hf download" in message and "humanaes-import" in message
    assert QApplication.activeModalWidget() is None
    assert window.model.counts()["total"] == 7  # the folder is browsable
    window.set_sort("name", descending=False)
    names = [p.name for p in _rows(window)]
    assert names == sorted(names, key=str.casefold)
    window.select_row(0)
    assert window.panel.badge._caption == "Not scored: model unavailable"
    assert not window.panel.card_sections.isVisible()


def test_window_remembers_size_splitter_and_sort(make_window, qtbot):
    window = make_window()
    window.resize(760, 560)  # within the offscreen platform's 800×600 screen, which geometry is fitted to
    window.splitter.setSizes([330, 420])
    window.set_sort("looks", descending=False)
    window.filters.level_chips["bad"].setChecked(False)
    sizes = window.splitter.sizes()
    window.close()

    settings = AppSettings.load()
    assert settings.sort_key == "looks" and settings.sort_descending is False
    assert "bad" not in settings.levels
    again = MainWindow(settings)
    qtbot.addWidget(again)
    again.show()
    assert (again.width(), again.height()) == (760, 560)
    assert again.splitter.sizes() == sizes
    assert again.model.sort_key == "looks" and not again.model.descending
    assert again.sorting.combo.currentData() == "looks"
    assert not again.filters.level_chips["bad"].isChecked()
    again.close()


def test_dropping_a_folder_opens_it(make_window, qtbot, photo_dir):
    window = make_window()
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(photo_dir / "day2"))])
    event = QDropEvent(
        QPointF(10, 10),
        Qt.DropAction.CopyAction,
        mime,
        Qt.MouseButton.LeftButton,
        Qt.KeyboardModifier.NoModifier,
    )
    window.dropEvent(event)
    _wait_done(qtbot, window)
    assert window.model.counts()["scored"] == 3
    assert window.settings.recent_folders[0] == str(photo_dir / "day2")
    assert window.recent_menu.actions()[0].text() == str(photo_dir / "day2")


def test_entry_point_help_and_bad_folder(capsys):
    from humanaes_desktop.__main__ import main

    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    assert "--model" in capsys.readouterr().out
    assert main(["/no/such/folder"]) == 2


def test_opening_another_folder_mid_run_never_mixes_folders(make_window, qtbot, photo_dir, tmp_path):
    other = _folder(tmp_path / "other", 5, seed=500)
    window = make_window(batch_size=1)
    delivered: list[str] = []
    window.controller.results.connect(lambda batch: delivered.extend(path for path, _, _ in batch))
    window.open_paths([photo_dir])
    window.open_paths([other])  # the first run is cancelled and its results dropped
    _wait_done(qtbot, window)
    assert {p.path.parent for p in window.model.photos} == {other}
    assert window.model.counts()["scored"] == 5
    assert all(Path(p).parent == other for p in delivered)


def test_download_progress_reaches_a_non_modal_dialog(make_window):
    from humanaes_desktop.worker import _download_bar

    reports = []
    bar_class = _download_bar(lambda desc, n, total: reports.append((desc, n, total)))
    with bar_class(total=2_000, unit="B", desc="Downloading bytes") as bar:
        bar.update(500)
        bar.update(1_500)
    assert reports == [("Downloading bytes", 500.0, 2000.0), ("Downloading bytes", 2000.0, 2000.0)]
    with bar_class(total=3, desc="Fetching 3 files") as files:
        files.update(1)  # file counts are not bytes: not reported
    assert len(reports) == 2

    window = make_window()
    window._on_download("Downloading bytes", 1.5 * 1024**3, 3 * 1024**3)
    dialog = window._download_dialog
    assert dialog is not None and dialog.isVisible() and not dialog.isModal()
    assert dialog.value() == 500 and "1.50 of 3.00 GB" in dialog.labelText()
    window._on_download("Downloading bytes", 3 * 1024**3, 3 * 1024**3)
    assert not dialog.isVisible()


def test_rescan_scores_new_photos_with_the_model_already_loaded(make_window, qtbot, tmp_path, monkeypatch):
    folder = _folder(tmp_path / "growing", 3, seed=700)
    window = make_window()
    window.open_paths([folder])
    _wait_done(qtbot, window)
    window.select_path(folder / "photo_01.jpg")

    import humanaes_core.scoring.scan

    def no_reload(*_args, **_kwargs):
        raise AssertionError("rescanning with the same settings must reuse the loaded model")

    monkeypatch.setattr(humanaes_core.scoring.scan, "load_scorer", no_reload)
    synthetic_photo(999, (300, 200)).save(folder / "photo_new.jpg")
    qtbot.keyClick(window.grid, Qt.Key.Key_F5)
    _wait_done(qtbot, window)
    assert window.model.counts()["scored"] == 4
    assert window.last_progress.cached == 3 and window.last_progress.scored == 1
    assert window.current_photo().path == folder / "photo_01.jpg"  # the selection survives a rescan
