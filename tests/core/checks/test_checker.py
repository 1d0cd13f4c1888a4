"""check_image / check_photo on a real portrait: the face, its open eyes, focus, and what blur does."""

from __future__ import annotations

import pytest
from PIL import Image

from humanaes_core.checks import check_image, check_photo, decode_for_checks
from humanaes_core.errors import ImageLoadError

from .conftest import gaussian_blur

pytest.importorskip("ai_edge_litert")


def test_the_astronaut_has_one_face_with_open_eyes_in_focus(portrait):
    faces, checks = check_image(portrait)
    assert len(faces) == 1 and checks.main_face == 0
    face = faces[0]
    x, y, w, _ = face.box
    # her face, looked at: about x 180-270, y 70-175 in the 512 px photo
    assert 160 < x < 200 and 50 < y < 90 and 80 < w < 120
    assert face.left_eye == face.right_eye == "open" and not face.eyes_closed
    assert face.focus == "sharp" and face.gaze == "camera"
    lx, ly = face.landmarks["left_eye"]
    rx, _ = face.landmarks["right_eye"]
    assert rx < lx and 90 < ly < 115  # her right eye is on the picture's left
    assert checks.blur == "sharp" and checks.misfire is None


def test_a_blurred_portrait_has_missed_focus_and_is_soft(portrait):
    faces, checks = check_image(gaussian_blur(portrait, 2.5))
    assert checks.blur == "soft"
    assert faces and faces[0].focus in ("soft", "missed")


def test_a_reduced_decode_reports_full_resolution_pixels(portrait):
    half = portrait.resize((256, 256))
    faces, _ = check_image(half, full_size=(512, 512))
    assert faces and 160 < faces[0].box[0] < 200


@pytest.mark.parametrize("tilt", [-60, -35, 35, 50])
def test_a_tilted_head_is_not_read_as_turned_away(portrait, tilt):
    """A head resting on a shoulder faces the camera: its eyes are read. (The turn was once taken along
    the image's x axis, and these tilts read as near-profile, so both eyes came out "unknown".)"""
    faces, _ = check_image(portrait.rotate(tilt, expand=True, fillcolor=(128, 128, 128)))
    assert len(faces) == 1
    assert faces[0].left_eye == faces[0].right_eye == "open" and faces[0].gaze == "camera"


def test_the_head_turn_is_measured_along_the_eye_line():
    import numpy as np

    from humanaes_core.checks.detector import head_turn

    right, left = np.array([0.0, 0.0]), np.array([100.0, 0.0])
    assert head_turn(right, left, np.array([50.0, 60.0])) == 0  # frontal: the nose halfway
    assert head_turn(right, left, np.array([85.0, 60.0])) == pytest.approx(0.7)
    turn = np.array([[np.cos(0.8), -np.sin(0.8)], [np.sin(0.8), np.cos(0.8)]])  # the same head, tilted
    assert head_turn(turn @ right, turn @ left, turn @ np.array([85.0, 60.0])) == pytest.approx(0.7)
    assert head_turn(right, left, np.array([400.0, 0.0])) == 1  # beyond the far eye: a profile
    assert head_turn(right, right, np.array([50.0, 60.0])) == 1  # the eyes on one spot: no readable turn


def test_a_face_in_profile_is_found_and_its_small_eyes_are_not_guessed():
    skimage_data = pytest.importorskip("skimage.data")
    cameraman = Image.fromarray(skimage_data.camera()).convert("RGB")  # looked at: face x 195-265, y 120-200
    faces, _ = check_image(cameraman)
    assert len(faces) == 1 and 180 < faces[0].box[0] < 215 and 105 < faces[0].box[1] < 140
    assert "closed" not in (faces[0].left_eye, faces[0].right_eye)


def test_a_black_frame_is_a_misfire_without_faces():
    faces, checks = check_image(Image.new("RGB", (640, 480)))
    assert faces == [] and checks.misfire == "black" and checks.main_face is None


def test_check_photo_decodes_an_oriented_jpeg_upright(tmp_path, portrait):
    path = tmp_path / "turned.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # stored turned: a viewer rotates it 90 degrees clockwise
    portrait.transpose(Image.Transpose.ROTATE_90).save(path, quality=95, exif=exif)
    faces, _ = check_photo(path)
    assert len(faces) == 1 and faces[0].left_eye == "open"


def test_check_photo_says_why_a_file_is_no_photo(tmp_path):
    path = tmp_path / "notes.jpg"
    path.write_text("not a photo")
    with pytest.raises(ImageLoadError):
        check_photo(path)


def test_decoding_for_the_checks_is_reduced_but_never_below_the_analysis_size(tmp_path, portrait):
    png, jpeg = tmp_path / "big.png", tmp_path / "big.jpg"
    big = portrait.resize((4000, 4000))
    big.save(png)
    big.save(jpeg, quality=90)
    for path in (png, jpeg):
        img, full = decode_for_checks(path)
        assert full == (4000, 4000) and 1600 <= img.width < 3200 and img.size[0] == img.size[1]
