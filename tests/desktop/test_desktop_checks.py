"""The checks in the app: tile badges, check filters, faces at 100 % with synced zoom and pan, and the
auto-cull rules with their shoot presets."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("PySide6")
pytest.importorskip("pytestqt")

from PIL import Image
from PySide6.QtCore import QPoint, QPointF, QRect, QRectF, Qt
from PySide6.QtGui import QColor, QImage, QPainter
from PySide6.QtWidgets import QStyleOptionViewItem

from humanaes_core.checks import Face, PhotoChecks
from humanaes_core.culling import SHOOT_PRESETS, CheckRules
from humanaes_core.schema import KEYS, score_to_level
from humanaes_core.scoring import ScoreCard
from humanaes_desktop import theme
from humanaes_desktop.compare import CompareView
from humanaes_desktop.cull_dialogs import CUSTOM, SCORE_ONLY, AutoCullDialog, CullParams
from humanaes_desktop.cullcontrol import CullingController, cull_plan
from humanaes_desktop.delegate import TileDelegate
from humanaes_desktop.faces import (
    CELL_H,
    CELL_W,
    FaceCrop,
    FaceCrops,
    FaceStrip,
    FaceZoom,
    grid_cells,
    reading_order,
)
from humanaes_desktop.filterbar import FilterBar
from humanaes_desktop.photos import Photo, PhotoModel
from humanaes_desktop.settings import AppSettings
from humanaes_desktop.verdicts import face_verdicts, has_any, photo_badges

# The astronaut's eyes in skimage.data.astronaut() (512 × 512): the face box and eye landmarks.
ASTRONAUT_FACE = (160, 40, 120, 150)
ASTRONAUT_EYES = {"left_eye": (240.0, 100.0), "right_eye": (195.0, 100.0)}


def _face(box=ASTRONAUT_FACE, left="open", right="open", focus="sharp", score=0.8, landmarks=None) -> Face:
    return Face(
        box=box,
        landmarks=dict(ASTRONAUT_EYES if landmarks is None else landmarks),
        size=box[2],
        left_eye=left,
        right_eye=right,
        eyes_closed=left == right == "closed",
        focus=focus,
        focus_score=score,
        confidence=0.9,
    )


def _card(overall: float, faces: list[Face] | None = None, misfire: str | None = None) -> ScoreCard:
    dims = {k: overall for k in KEYS}
    checks = (
        None
        if faces is None and misfire is None
        else PhotoChecks(misfire=misfire, main_face=0 if faces else None)
    )
    return ScoreCard(
        dims=dims,
        heads={},
        level=score_to_level(overall),
        lm_probs=[0.2] * 5,
        tiles=1,
        mode="all",
        faces=faces,
        checks=checks,
    )


CLOSED = _face(left="closed", right="closed")
SOFT = _face(focus="soft", score=0.35)
MISSED = _face(focus="missed", score=0.1)
GOOD = _face()


@pytest.fixture
def astronaut(tmp_path: Path) -> Path:
    """A real face as a lossless PNG, so a 100 % crop can be compared pixel for pixel."""
    from skimage import data

    path = tmp_path / "astronaut.png"
    Image.fromarray(data.astronaut()).save(path)
    return path


# ---------------------------------------------------------------------------------- words and badges


def test_verdicts_speak_a_photographers_language():
    assert [v.text for v in face_verdicts(CLOSED)] == ["Eyes closed", "Sharp"]
    assert [v.text for v in face_verdicts(SOFT)] == ["Eyes open", "Soft focus"]
    assert face_verdicts(_face(left="closed"))[0].text == "One eye closed"
    assert [v.text for v in face_verdicts(_face(left="unknown", right="unknown", focus="unknown"))] == [
        "Eyes: can't tell",
        "Focus: can't tell",
    ]
    assert "0.35" in face_verdicts(SOFT)[1].tip  # the measure goes into the tooltip, not on screen
    assert [b.text for b in photo_badges(_card(0.8, [CLOSED]))] == ["Eyes closed"]
    assert [b.text for b in photo_badges(_card(0.8, [MISSED]))] == ["Missed focus"]
    assert [b.text for b in photo_badges(_card(0.8, [], misfire="black"))] == ["Misfire"]
    group = [CLOSED, GOOD, _face(box=(300, 40, 100, 120), left="closed", right="closed")]
    assert [b.text for b in photo_badges(_card(0.8, group))] == ["Eyes closed ×2"]
    assert photo_badges(_card(0.8, [GOOD])) == [] and photo_badges(_card(0.8)) == []


def _render_tile(photo: Photo) -> QImage:
    model = PhotoModel()
    model.set_photos([photo.path])
    model.update_results([(str(photo.path), photo.card, None)])
    delegate = TileDelegate(200)
    image = QImage(200, 226, QImage.Format.Format_RGB32)
    image.fill(theme.WINDOW)
    option = QStyleOptionViewItem()
    option.rect = QRect(0, 0, 200, 226)
    p = QPainter(image)
    delegate.paint(p, option, model.index(0))
    p.end()
    return image


def _pixels(image: QImage) -> np.ndarray:
    image = image.convertToFormat(QImage.Format.Format_RGB888)
    rows = np.frombuffer(image.constBits(), np.uint8).reshape(image.height(), image.bytesPerLine())
    return rows[:, : image.width() * 3].reshape(image.height(), image.width(), 3).astype(float)


def _count_near(image: QImage, colour: QColor, tolerance: int = 40) -> int:
    ptr = image.constBits()
    pixels = np.frombuffer(ptr, np.uint8).reshape(image.height(), image.bytesPerLine())[
        :, : image.width() * 4
    ]
    bgr = pixels.reshape(image.height(), image.width(), 4)[:, :, :3].astype(int)
    target = np.array([colour.blue(), colour.green(), colour.red()])
    return int((np.abs(bgr - target).max(axis=2) < tolerance).sum())


def test_a_tile_shows_a_closed_eyes_badge(qtbot, tmp_path):
    path = tmp_path / "a.jpg"
    closed = _render_tile(Photo(path, "a.jpg", card=_card(0.9, [CLOSED])))
    fine = _render_tile(Photo(path, "a.jpg", card=_card(0.9, [GOOD])))
    soft = _render_tile(Photo(path, "a.jpg", card=_card(0.9, [SOFT])))
    # A score of 0.9 paints a green pill; only the badge brings red (closed eyes) or amber (soft focus).
    assert _count_near(closed, theme.REJECT) > 50 > _count_near(fine, theme.REJECT)
    assert _count_near(soft, theme.CAUTION) > 50 > _count_near(fine, theme.CAUTION)


def test_full_screen_shows_the_badges_too(qtbot, tmp_path):
    from humanaes_desktop.viewer import FullView

    def strip(card: ScoreCard) -> QImage:
        view = FullView()
        qtbot.addWidget(view)
        view.resize(1000, 300)
        view.set_photo(Photo(tmp_path / "a.jpg", "a.jpg", card=card), None, "1 / 1")
        image = view.grab().toImage()
        return image.copy(0, 300 - 54, 1000, 54)

    assert (
        _count_near(strip(_card(0.9, [CLOSED])), theme.REJECT)
        > 50
        > _count_near(strip(_card(0.9, [GOOD])), theme.REJECT)
    )


# ------------------------------------------------------------------------------------------ filters


def test_check_filters_show_only_photos_with_those_findings(qtbot, tmp_path):
    cards = {
        "closed.jpg": _card(0.5, [CLOSED]),
        "soft.jpg": _card(0.6, [SOFT]),
        "missed.jpg": _card(0.7, [MISSED]),
        "black.jpg": _card(0.2, [], misfire="black"),
        "fine.jpg": _card(0.8, [GOOD]),
        "landscape.jpg": _card(0.4, []),
        "unchecked.jpg": _card(0.3),
    }
    model = PhotoModel()
    model.set_photos([tmp_path / name for name in cards])
    model.update_results((str(tmp_path / name), card, None) for name, card in cards.items())
    bar = FilterBar()
    bar.changed.connect(lambda shown: model.set_check_filter(shown.checks))

    def shown() -> set[str]:
        return {model.photo(r).name for r in range(model.rowCount())}

    assert len(shown()) == len(cards)  # no check chip on: every photo
    bar.check_chips["eyes_closed"].click()
    assert shown() == {"closed.jpg"}
    bar.check_chips["missed_focus"].click()  # any of the checked findings
    assert shown() == {"closed.jpg", "missed.jpg"}
    bar.check_chips["eyes_closed"].click()
    bar.check_chips["missed_focus"].click()
    bar.check_chips["soft_focus"].click()
    assert shown() == {"soft.jpg"}
    bar.check_chips["soft_focus"].click()
    bar.check_chips["misfire"].click()
    assert shown() == {"black.jpg"}
    bar.check_chips["misfire"].click()
    bar.check_chips["faces"].click()
    assert shown() == {"closed.jpg", "soft.jpg", "missed.jpg", "fine.jpg"}
    assert not has_any(None, ["faces"])


def test_the_best_frame_of_a_burst_has_open_eyes_before_a_higher_score(qtbot, tmp_path):
    model = PhotoModel()
    paths = [tmp_path / f"f{i}.jpg" for i in range(3)]
    model.set_photos(paths)
    cards = [_card(0.9, [CLOSED]), _card(0.7, [GOOD]), _card(0.8, [MISSED])]
    model.update_results((str(p), c, None) for p, c in zip(paths, cards, strict=True))
    model.set_groups([paths])
    assert model.best_of_group(model.photos[0]).path == paths[1]


# ------------------------------------------------------------------------------- faces at 100 %


def _crops(qtbot, photo: Photo) -> list:
    crops = FaceCrops()
    assert crops.get(photo) is None  # decoded off the UI thread
    with qtbot.waitSignal(crops.ready, timeout=10000):
        pass
    got = crops.get(photo)
    assert got is not None
    return got


def test_face_crops_are_full_resolution_regions_around_the_eyes(qtbot, astronaut):
    faces = [GOOD, _face(box=(330, 250, 60, 60), landmarks={})]
    photo = Photo(astronaut, astronaut.name, card=_card(0.8, faces))
    crops = _crops(qtbot, photo)
    assert len(crops) == 2 and all(isinstance(c, FaceCrop) for c in crops)
    source = np.asarray(Image.open(astronaut).convert("RGB"))
    crop = crops[0]
    assert crop.anchor == (217.5, 100.0)  # between the eyes
    ox, oy = crop.origin
    x, y = 230, 120
    pixel = crop.image.pixelColor(x - ox, y - oy)
    assert (pixel.red(), pixel.green(), pixel.blue()) == tuple(source[y, x])  # 1:1, not resampled
    assert crops[1].anchor == (360.0, 280.0)  # no landmarks: the box's middle


def test_a_photo_that_cannot_be_decoded_shows_no_image_once(qtbot, tmp_path):
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not a photo")
    photo = Photo(broken, broken.name, card=_card(0.5, [GOOD, SOFT]))
    crops = _crops(qtbot, photo)
    assert len(crops) == 2 and all(isinstance(c, QImage) and c.isNull() for c in crops)


def test_the_face_strip_shows_every_face_at_100_percent_and_zooms(qtbot, astronaut):
    faces = [GOOD, _face(box=(330, 250, 60, 60), left="closed", right="closed", landmarks={})]
    photo = Photo(astronaut, astronaut.name, card=_card(0.8, faces))
    crops, zoom = FaceCrops(), FaceZoom()
    strip = FaceStrip()
    qtbot.addWidget(strip)
    strip.set_source(crops, zoom)
    strip.resize(420, 400)
    strip.set_photo(photo)
    strip.show()
    with qtbot.waitSignal(crops.ready, timeout=10000):
        strip.repaint()
    shot = strip.grab().toImage()
    assert len(strip._cells) == 2
    assert all((cell.width(), cell.height()) == (CELL_W, CELL_H) for cell in strip._cells)
    # At 100 % the cell is centred between the eyes (217.5, 100), one photo pixel per screen pixel.
    source = np.asarray(Image.open(astronaut).convert("RGB"))
    cell = strip._cells[0]
    centre = cell.center()
    left, top = round(217.5 - CELL_W / 2), round(100 - CELL_H / 2)  # the photo pixel at the top-left
    x0, y0 = int(cell.left()), int(cell.top())
    inner = range(4, CELL_H - 4)
    painted = np.array([[shot.pixelColor(x0 + i, y0 + j).getRgb()[:3] for i in inner] for j in inner], float)
    want = source[top + 4 : top + CELL_H - 4, left + 4 : left + CELL_H - 4].astype(float)
    assert np.abs(painted - want).mean() < 3  # the photo's own pixels, neither scaled nor shifted
    shifted = source[top + 14 : top + CELL_H + 6, left + 4 : left + CELL_H - 4].astype(float)
    assert np.abs(painted - shifted).mean() > 3 * np.abs(painted - want).mean()
    group = Photo(astronaut, astronaut.name, card=_card(0.8, [GOOD] * 6))
    strip.set_photo(group)
    tall = strip.minimumHeight()
    strip.set_photo(photo)
    assert strip.minimumHeight() < tall  # another photo with fewer faces: no empty rows left behind
    strip.set_photo(Photo(astronaut, astronaut.name, card=_card(0.8, [])))
    assert strip.isHidden()
    strip.set_photo(photo)

    from PySide6.QtTest import QTest

    zoom.step(2)
    zoom.pan_by(10, 0)
    assert zoom.scale == 2.0 and zoom.pan == QPointF(-5, 0)
    zoom.step(-20)
    assert zoom.scale == 0.25  # the widest step, no further
    QTest.mouseDClick(strip, Qt.MouseButton.LeftButton, pos=centre.toPoint())  # back to 100 %, on the eyes
    assert zoom.scale == 1.0 and zoom.pan == QPointF(0, 0)
    # The mouse, through the same handler as the compare view's: the wheel and a drag act on faces only.
    _wheel(strip, QPointF(centre.x(), 2))  # over the title, not a face
    assert zoom.scale == 1.0
    _wheel(strip, centre)
    assert zoom.scale == 1.5
    QTest.mousePress(strip, Qt.MouseButton.LeftButton, pos=centre.toPoint())
    QTest.mouseMove(strip, centre.toPoint() + QPoint(15, 0))
    QTest.mouseRelease(strip, Qt.MouseButton.LeftButton, pos=centre.toPoint() + QPoint(15, 0))
    assert zoom.pan == QPointF(-15 / 1.5, 0)
    QTest.mouseMove(strip, centre.toPoint() + QPoint(40, 0))  # released: moving no longer pans
    assert zoom.pan == QPointF(-15 / 1.5, 0)


def _wheel(widget, at: QPointF) -> None:
    """One wheel click up (zoom in) at `at` in `widget`."""
    from PySide6.QtGui import QWheelEvent
    from PySide6.QtWidgets import QApplication

    wheel = QWheelEvent(
        at,
        widget.mapToGlobal(at.toPoint()).toPointF(),
        QPoint(0, 0),
        QPoint(0, 120),
        Qt.MouseButton.NoButton,
        Qt.KeyboardModifier.NoModifier,
        Qt.ScrollPhase.NoScrollPhase,
        False,
    )
    QApplication.sendEvent(widget, wheel)


def test_100_percent_is_one_photo_pixel_per_device_pixel_on_a_high_density_screen():
    crop = FaceCrop(QImage(400, 400, QImage.Format.Format_RGB888), (100, 50), (300.0, 250.0))
    zoom = FaceZoom()
    source, target = zoom.view(crop, QRectF(10, 20, 200, 120))
    assert (source.width(), source.height()) == (200, 120) and target == QRectF(10, 20, 200, 120)
    source, target = zoom.view(crop, QRectF(10, 20, 200, 120), dpr=2.0)
    assert (source.width(), source.height()) == (400, 240)  # 200 logical = 400 device pixels
    assert target.width() == 200
    zoom.pan_by(10, 0, dpr=2.0)
    assert zoom.pan == QPointF(-20, 0)


def test_a_group_lines_up_face_for_face_across_frames():
    # Two rows of three faces; the detector lists them in a different order in each frame.
    boxes = [(x, y, 80, 90) for y in (100, 400) for x in (50, 350, 650)]
    frame_a = [_face(box=b, landmarks={}) for b in boxes]
    shuffled = [5, 0, 3, 1, 4, 2]
    frame_b = [_face(box=(boxes[i][0] + 7, boxes[i][1] - 12, 80, 90), landmarks={}) for i in shuffled]
    assert reading_order(frame_a) == [0, 1, 2, 3, 4, 5]
    assert [shuffled[i] for i in reading_order(frame_b)] == [0, 1, 2, 3, 4, 5]  # same people, same cells
    cells = grid_cells(QRectF(0, 0, 380, 234), 6, 30)
    assert len(cells) == 6 and len({(c.x(), c.y()) for c in cells}) == 6
    assert all(c.width() > 100 and c.height() > 60 for c in cells)  # two rows of three, not six slivers
    assert all(QRectF(0, 0, 380, 234).contains(c) for c in cells)


def test_compare_view_zoom_and_pan_are_synced_across_the_burst(qtbot, astronaut, tmp_path):
    # Three frames of a burst: the subject moved between them, so each face sits elsewhere.
    source = Image.open(astronaut)
    members = []
    for i, shift in enumerate((0, 30, 60)):
        path = tmp_path / f"frame{i}.png"
        frame = Image.new("RGB", (600, 560))
        frame.paste(source, (shift, shift // 2))
        frame.save(path)
        eyes = {k: (x + shift, y + shift // 2) for k, (x, y) in ASTRONAUT_EYES.items()}
        box = (ASTRONAUT_FACE[0] + shift, ASTRONAUT_FACE[1] + shift // 2, *ASTRONAUT_FACE[2:])
        face = _face(
            box=box, landmarks=eyes, left="closed" if i == 1 else "open", right="closed" if i == 1 else "open"
        )
        members.append(Photo(path, path.name, card=_card(0.7, [face])))
    crops, zoom = FaceCrops(), FaceZoom()
    view = CompareView(lambda _photo: None)
    qtbot.addWidget(view)
    view.show_faces(crops, zoom)
    view.resize(900, 760)
    view.set_members(members, members[0], members[0])
    view.show()
    for _ in members:
        with qtbot.waitSignal(crops.ready, timeout=10000):
            view.repaint()
    view.repaint()
    assert len(view._face_cells) == 3

    def shots() -> list[np.ndarray]:
        image = view.grab().toImage()
        return [_pixels(image.copy(cell.toRect().adjusted(3, 3, -3, -3))) for cell in view._face_cells]

    def same(a: np.ndarray, b: np.ndarray) -> bool:
        return float(np.abs(a - b).mean()) < 1

    first = shots()
    # The same face, centred on its own eyes in every frame: the same crop although it moved.
    assert same(first[0], first[2]) and same(first[0], first[1])

    # A wheel turn over the first frame's face zooms every frame's face.
    _wheel(view, view._face_cells[0].center())
    assert zoom.scale == 1.5  # one step in
    view.repaint()
    zoomed = shots()
    assert not same(zoomed[0], first[0]) and not same(zoomed[2], first[2]) and same(zoomed[0], zoomed[2])

    # A drag on the last frame's face pans every face by the same photo pixels.
    from PySide6.QtTest import QTest

    start = view._face_cells[2].center().toPoint()
    QTest.mousePress(view, Qt.MouseButton.LeftButton, pos=start)
    QTest.mouseMove(view, start + QPoint(20, 10))
    QTest.mouseRelease(view, Qt.MouseButton.LeftButton, pos=start + QPoint(20, 10))
    assert zoom.pan == QPointF(-20 / 1.5, -10 / 1.5)
    assert view.current() is members[2]  # the press on its face also chose the frame
    panned = shots()
    assert same(panned[0], panned[2]) and not same(panned[0], zoomed[0])
    QTest.mouseDClick(view, Qt.MouseButton.LeftButton, pos=view._face_cells[1].center().toPoint())
    assert zoom.scale == 1.0 and zoom.pan == QPointF(0, 0)  # a double-click on a face: back to 100 %


# ---------------------------------------------------------------------------------------- auto-cull


def test_shoot_presets_set_the_rule_sliders(qtbot):
    settings = AppSettings.load()
    dialog = AutoCullDialog(settings, lambda _params: ("ok", True))
    qtbot.addWidget(dialog)
    assert not dialog.rules().active  # nothing rejected by the checks until asked
    assert dialog.shoot.currentData() == SCORE_ONLY
    dialog.choose_shoot("portrait")
    assert dialog.rules() == SHOOT_PRESETS["portrait"]
    assert dialog.closed_eyes.slider.value() == 100 and dialog.missed_focus.slider.value() == 80
    assert dialog.misfire.isChecked()
    dialog.choose_shoot("sports")
    assert not dialog.closed_eyes.check.isChecked() and not dialog.closed_eyes.slider.isEnabled()
    assert dialog.missed_focus.slider.value() == 60
    dialog.missed_focus.slider.setValue(30)  # a slider moved: the rules are the photographer's own
    assert dialog.shoot.currentData() == CUSTOM
    assert dialog.params().rules == CheckRules(closed_eyes=None, missed_focus=0.3, misfire=True)
    dialog.missed_focus.slider.setValue(60)
    assert dialog.shoot.currentData() == "sports"  # back on the preset: its name shows again
    dialog.store(settings)
    dialog.choose_shoot(SCORE_ONLY)
    assert not dialog.rules().active and not dialog.misfire.isChecked()
    again = AutoCullDialog(AppSettings(cull_rules=settings.cull_rules), lambda _params: ("ok", True))
    qtbot.addWidget(again)
    assert again.rules() == SHOOT_PRESETS["sports"] and again.shoot.currentData() == "sports"
    dialog.stop_previews()
    again.stop_previews()


def test_hand_edited_rule_sensitivities_fall_back_to_no_rules(tmp_path):
    path = tmp_path / "desktop.json"
    path.write_text('{"cull_rules": {"closed_eyes": 5, "misfire": true}}')
    assert AppSettings.load(path).cull_rules == {}
    path.write_text('{"cull_rules": {"closed_eyes": 0.5, "missed_focus": null, "misfire": true}}')
    assert CheckRules.from_dict(AppSettings.load(path).cull_rules) == CheckRules(
        closed_eyes=0.5, misfire=True
    )


class _View:
    def __init__(self, photos):
        self.photos = photos
        self.notices: list[str] = []

    def folder_photos(self):
        return self.photos

    def selected_photos(self):
        return []

    def bursts(self):
        return []

    def finding_bursts(self):
        return False

    def notice(self, text, msecs=10000):
        self.notices.append(text)


def test_auto_cull_rules_reach_plan_cull(tmp_path):
    photos = [
        Photo(tmp_path / "blink.jpg", "blink.jpg", card=_card(0.95, [CLOSED])),
        Photo(tmp_path / "soft.jpg", "soft.jpg", card=_card(0.9, [MISSED])),
        Photo(tmp_path / "black.jpg", "black.jpg", card=_card(0.85, [], misfire="black")),
        Photo(tmp_path / "fine.jpg", "fine.jpg", card=_card(0.5, [GOOD])),
    ]
    without = cull_plan(photos, keep_top_percent=50)
    assert {p.name for p, d in without.items() if d.keep} == {"blink.jpg", "soft.jpg"}
    rules = SHOOT_PRESETS["ceremony"]
    plan = cull_plan(photos, keep_top_percent=50, rules=rules)
    assert {p.name for p, d in plan.items() if d.keep} == {"fine.jpg"}
    assert "eyes closed" in plan[tmp_path / "blink.jpg"].reason
    params = CullParams(
        keep_top_percent=50, min_level=None, per="folder", overwrite_manual=False, rules=rules
    )
    text, ok = CullingController(_View(photos), None).preview_cull(params)
    assert ok and "The checks reject 3 photos" in text
    assert "reject closed eyes, missed focus, misfires" in params.describe()
