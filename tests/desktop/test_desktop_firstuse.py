"""What a photographer sees on first use (issue #14): selection and focus that stay put, honest states,
legible rejects, readable wording, and controls that look like what they are."""

from __future__ import annotations

import random
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import pytest

pytest.importorskip("PySide6")
pytest.importorskip("pytestqt")

from PySide6.QtCore import QItemSelectionModel, QRectF
from PySide6.QtGui import QColor, QImage, QPixmap
from PySide6.QtWidgets import QApplication, QSpinBox

from humanaes_core.attribution import Explanation
from humanaes_core.culling import Decision
from humanaes_core.store import Flag, PhotoDecision
from humanaes_desktop import theme
from humanaes_desktop.compare import CompareView
from humanaes_desktop.cull_dialogs import AutoCullDialog
from humanaes_desktop.cullcontrol import _cull_outcome
from humanaes_desktop.detail import DetailPanel
from humanaes_desktop.dialogs import SettingsDialog
from humanaes_desktop.explanation import ExplanationView
from humanaes_desktop.grid import PhotoGrid
from humanaes_desktop.photos import Photo, PhotoModel, PhotoRole
from humanaes_desktop.training import TrainDialog
from humanaes_desktop.widgets import sign_colour
from tests.conftest import synthetic_photo
from tests.desktop.test_desktop_parts import _card, big_model  # noqa: F401  (fixture)


def _near(colour: QColor, target: QColor, tolerance: int = 12) -> bool:
    return (
        abs(colour.red() - target.red()) <= tolerance
        and abs(colour.green() - target.green()) <= tolerance
        and abs(colour.blue() - target.blue()) <= tolerance
    )


def _count(image: QImage, target: QColor, rect: QRectF | None = None, tolerance: int = 12) -> int:
    r = (rect or QRectF(image.rect())).toRect()
    return sum(
        _near(QColor(image.pixel(x, y)), target, tolerance)
        for x in range(max(r.left(), 0), min(r.right() + 1, image.width()))
        for y in range(max(r.top(), 0), min(r.bottom() + 1, image.height()))
    )


def _folder(root: Path, n: int) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        synthetic_photo(300 + i, (320, 240)).save(root / f"photo_{i:02d}.jpg", quality=85)
    return root


def _wait_done(qtbot, window) -> None:
    qtbot.waitUntil(
        lambda: (
            not window.controller.running and window.model.photos and window.model.counts()["pending"] == 0
        ),
        timeout=60000,
    )


# ------------------------------------------------------------------ 1: selection survives re-scoring


def test_selection_survives_rescoring_with_other_settings(make_window, qtbot, tmp_path):
    window = make_window()
    window.open_paths([_folder(tmp_path / "shoot", 5)])
    _wait_done(qtbot, window)
    # A photo whose row by score differs from its row by name (the order of unscored photos): keeping the
    # row number instead of the photo would select another one.
    chosen = None
    for descending in (True, False):
        window.set_sort("overall", descending)
        rows = [window.model.photo(r).name for r in range(window.model.rowCount())]
        chosen = next((name for row, name in enumerate(rows) if sorted(rows).index(name) != row), None)
        if chosen:
            break
    assert chosen is not None
    assert window.select_path(tmp_path / "shoot" / chosen)

    # Settings -> Max tiles -> OK: every card is cleared and the folder is re-scored.
    window.apply_settings(replace(window.settings, scoring=replace(window.settings.scoring, max_tiles=1)))
    _wait_done(qtbot, window)
    assert window.current_photo() is not None
    assert window.current_photo().path.name == chosen
    selected = [ix.data(PhotoRole).path.name for ix in window.grid.selectionModel().selectedIndexes()]
    assert selected == [chosen]
    rect = window.grid.visualRect(window.grid.currentIndex())
    assert rect.intersects(window.grid.viewport().rect())  # and it is on screen


def test_a_resort_keeps_the_current_photo_where_it_was_on_screen(qtbot, big_model):  # noqa: F811
    model = big_model
    grid = PhotoGrid()
    qtbot.addWidget(grid)
    grid.resize(900, 600)
    grid.setModel(model)
    grid.show()
    model.set_sort("overall", True)
    grid.selectionModel().setCurrentIndex(model.index(600), QItemSelectionModel.SelectionFlag.ClearAndSelect)

    def on_screen() -> bool:
        grid.scrollTo(grid.currentIndex())  # the batched layout may still be running
        return grid.visualRect(grid.currentIndex()).intersects(grid.viewport().rect())

    qtbot.waitUntil(on_screen, timeout=5000)
    qtbot.wait(50)
    photo = model.photo(600)
    top = grid.visualRect(grid.currentIndex()).top()

    model.set_sort("looks", False)  # the photo moves far away in the order
    assert model.row_of(photo.path) != 600
    qtbot.waitUntil(lambda: grid.visualRect(grid.currentIndex()).top() == top, timeout=2000)
    assert grid.currentIndex().data(PhotoRole) is photo


# ------------------------------------------------------------------ 7: model unavailable


def test_unavailable_model_says_not_scored_instead_of_waiting(make_window, qtbot, photo_dir):
    window = make_window(model="KwaiVGI/HumanAesExpert-1B")  # offline, not downloaded
    window.open_paths([photo_dir])
    qtbot.waitUntil(lambda: window.banner.isVisible(), timeout=10000)
    qtbot.waitUntil(lambda: not window.controller.running, timeout=10000)
    status = window.status_label.text()
    assert "not scored: model unavailable" in status and "waiting" not in status
    assert not window.rate_label.text().startswith("Done")
    assert window.delegate.pending_text == "not scored"
    window.select_row(0)
    assert window.panel.badge._caption == "Not scored: model unavailable"


# ------------------------------------------------------------------ 8: auto-cull wording


def test_auto_cull_dialog_says_keep_once_and_the_outcome_once(qtbot, settings):
    dialog = AutoCullDialog(settings, lambda _params: ("preview", True))
    qtbot.addWidget(dialog)
    assert "keep" not in dialog.by_percent.text().lower() and "keep" not in dialog.by_level.text().lower()
    dialog.stop_previews()

    plan = {Path(f"{i}.jpg"): Decision(keep=i < 3, stars=3, reason="") for i in range(6)}
    mine = [Path("0.jpg")]
    text = _cull_outcome(plan, mine, overwrite=False)
    assert (
        text == "Of 6 scored photos, 2 would be picked and 3 rejected; 1 you decided yourself stays as it is."
    )
    assert _cull_outcome(plan, list(plan), overwrite=False).endswith("nothing changes.")
    replaced = _cull_outcome(plan, mine, overwrite=True)
    assert (
        replaced
        == "Of 6 scored photos, 3 would be picked and 3 rejected. This replaces 1 decision of your own."
    )


# ------------------------------------------------------------------ 9: attribution colours


def test_a_zero_contribution_is_neutral_not_red(qtbot):
    assert sign_colour(-0.0002) == theme.MUTED and sign_colour(0.0) == theme.MUTED
    assert sign_colour(0.01) == theme.POSITIVE and sign_colour(-0.01) == theme.NEGATIVE
    view = ExplanationView()
    qtbot.addWidget(view)
    view.resize(420, view.height())
    leaf = Explanation("environment", "Environment", 0.6, 0.55, 0.0)
    expert = Explanation("expert", "Detailed assessment", 0.6, 0.55, 0.0, children={"environment": leaf})
    parts = {
        "lm": Explanation("lm", "Rating in words", 0.6, 0.55, 0.05),
        "regression": Explanation("regression", "Direct rating", 0.6, 0.6, -0.0002),
        "expert": expert,
    }
    view.set_explanation(Explanation("overall", "Overall", 0.6, 0.55, 0.0498, children=parts))
    image = view.grab().toImage()
    assert _count(image, theme.POSITIVE, tolerance=4) > 0
    assert _count(image, theme.NEGATIVE, tolerance=30) == 0  # "0.000" and its bar are not red


# ------------------------------------------------------------------ 10: spin box arrows


def test_spin_boxes_show_their_arrows_in_the_dark_theme(qtbot):
    app = QApplication.instance()
    old_style, old_sheet, old_palette = app.style().name(), app.styleSheet(), app.palette()
    theme.apply(app)
    try:
        spin = QSpinBox()
        qtbot.addWidget(spin)
        spin.setRange(0, 10)
        spin.setValue(5)
        spin.resize(120, 30)
        spin.show()
        image = spin.grab().toImage()
        buttons = QRectF(image.width() - 20, 2, 18, image.height() - 4)
        light = sum(
            QColor(image.pixel(x, y)).lightness() > 140
            for x in range(int(buttons.left()), int(buttons.right()))
            for y in range(int(buttons.top()), int(buttons.bottom()))
        )
        assert light >= 6  # two arrow glyphs, not a blank button
    finally:
        app.setStyleSheet(old_sheet)
        app.setStyle(old_style)
        app.setPalette(old_palette)


# ------------------------------------------------------------------ 11: rejects stay legible


def test_a_rejected_tile_keeps_its_score_pill_legible_and_compare_does_not_dim(qtbot, tmp_path):
    rng = random.Random(3)
    model = PhotoModel()
    model.set_photos([tmp_path / "a.jpg"], tmp_path)
    card = _card(rng)
    model.update_results([(str(tmp_path / "a.jpg"), card, None)])
    photo = model.photos[0]
    photo.decision = PhotoDecision(flag=Flag.REJECT)
    grid = PhotoGrid()
    qtbot.addWidget(grid)
    grid.setModel(model)
    grid.resize(400, 400)
    grid.show()
    image = grid.viewport().grab().toImage()
    assert _count(image, theme.level_colour(card.dims["overall"]), tolerance=3) > 20  # the pill, undimmed

    white = QPixmap(200, 200)
    white.fill(QColor("#ffffff"))
    view = CompareView(lambda _photo: white)
    qtbot.addWidget(view)
    view.resize(520, 700)
    other = Photo(tmp_path / "b.jpg", "b.jpg", card=_card(rng))
    view.set_members([photo, other], other, photo)
    view.show()
    frames = view.grab().toImage()
    first, second = view._columns[0][1], view._columns[1][1]
    whites = [_count(frames, QColor("#ffffff"), r, tolerance=2) for r in (first, second)]
    assert whites[0] > 0.8 * whites[1]  # the rejected frame is as visible as its neighbour
    assert _count(frames, theme.REJECT, first, tolerance=3) > _count(
        frames, theme.REJECT, second, tolerance=3
    )


# ------------------------------------------------------------------ 12: nothing skipped


def test_skipped_files_with_nothing_skipped_says_so(make_window, qtbot, photo_dir):
    window = make_window()
    window.toggle_errors()
    assert window.errors_dock.isVisible()
    assert window.errors_stack.currentWidget() is window.errors_none
    assert window.errors_none.text().startswith("Nothing was skipped")
    window.open_paths([photo_dir])  # three broken files
    _wait_done(qtbot, window)
    assert window.errors_stack.currentWidget() is window.errors_list and window.errors_list.count() == 3


# ------------------------------------------------------------------ 13: train dialog


def test_train_dialog_shows_the_output_from_its_start_and_closes_after_use(qtbot, settings, tmp_path):
    dialog = TrainDialog(tmp_path / "a" / "rather" / "long" / "folder" / "name", [], settings)
    qtbot.addWidget(dialog)
    dialog.show()
    text = dialog.output.text()
    assert dialog.output.cursorPosition() == 0  # the start of the path is what shows
    assert dialog.output.width() >= min(dialog.output.fontMetrics().horizontalAdvance(text), 600)

    used: list[str] = []
    dialog.use_model.connect(used.append)
    dialog.outcome = SimpleNamespace(output=tmp_path / "models" / "mine")
    dialog.use_button.show()
    dialog.use_button.click()
    assert used == [str(tmp_path / "models" / "mine")]
    assert not dialog.isVisible() and not dialog.use_button.isEnabled()


# ------------------------------------------------------------------ 15: detail panel scroll


def test_detail_panel_starts_at_the_top_for_another_photo(qtbot, tmp_path):
    rng = random.Random(5)
    panel = DetailPanel()
    qtbot.addWidget(panel)
    panel.resize(400, 300)
    panel.show()
    a = Photo(tmp_path / "a.jpg", "a.jpg", card=_card(rng))
    b = Photo(tmp_path / "b.jpg", "b.jpg", card=_card(rng))
    panel.show_photo(a)
    bar = panel.verticalScrollBar()
    qtbot.waitUntil(lambda: bar.maximum() > 100)
    bar.setValue(bar.maximum())
    panel.show_photo(a)  # the same photo refreshed (new scores arrived): the reader's place is kept
    assert bar.value() == bar.maximum()
    panel.show_photo(b)
    assert bar.value() == 0


# ------------------------------------------------------------------ 16: focus after dialogs


def test_focus_returns_to_the_grid_after_a_modal_dialog(make_window, qtbot, photo_dir, monkeypatch):
    window = make_window()
    window.open_paths([photo_dir])
    _wait_done(qtbot, window)
    window.activateWindow()
    window.grid.setFocus()
    qtbot.waitUntil(window.grid.hasFocus)

    def dialog_takes_focus(_dialog) -> int:
        window.grid.clearFocus()  # what a dialog closing under some window managers leaves behind
        return 0

    for dialog_class, command in (
        (SettingsDialog, window.open_settings),
        (AutoCullDialog, window.open_auto_cull),
    ):
        monkeypatch.setattr(dialog_class, "exec", dialog_takes_focus)
        command()
        assert window.grid.hasFocus(), dialog_class.__name__
    assert QApplication.focusWidget() is window.grid


# ------------------------------------------------------------------ 4: the demo model says so


def test_the_window_labels_the_demo_model(make_window, qtbot, tmp_path, tiny_model):
    from humanaes_core.testing import make_demo_model

    demo = make_demo_model(tmp_path / "demo")
    window = make_window(demo)
    window.open_paths([_folder(tmp_path / "shoot", 2)])
    _wait_done(qtbot, window)
    assert "demo model — scores are not aesthetic judgements" in window.status_label.text()

    plain = make_window(tiny_model)  # a real (here: random, not demo) checkpoint is not labelled
    plain.open_paths([_folder(tmp_path / "other", 2)])
    _wait_done(qtbot, plain)
    assert "model" in plain.status_label.text() and "demo model" not in plain.status_label.text()
