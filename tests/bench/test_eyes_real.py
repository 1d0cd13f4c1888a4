"""The closed-eye benchmark's own parts, without the network: matching, scoring, the .tag parser, the
labels file and the checked download."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile

import pytest

from bench import eyes_real
from humanaes_core.checks import Face


def test_iou_of_boxes():
    assert eyes_real.iou((0, 0, 10, 10), (0, 0, 10, 10)) == 1.0
    assert eyes_real.iou((0, 0, 10, 10), (5, 0, 10, 10)) == pytest.approx(50 / 150)
    assert eyes_real.iou((0, 0, 10, 10), (20, 20, 5, 5)) == 0.0


def test_match_pairs_best_overlaps_first_and_each_detection_once():
    labelled = [(0, 0, 100, 100), (10, 0, 100, 100), (500, 500, 50, 50)]
    found = [(12, 0, 100, 100), (300, 300, 40, 40)]
    # the second labelled face overlaps the detection best; the first is then left without one
    assert eyes_real.match(labelled, found) == [None, 0, None]
    assert eyes_real.match([(0, 0, 100, 100)], [(60, 0, 100, 100)]) == [None]  # IoU 0.25 < 0.3
    assert eyes_real.match([(0, 0, 100, 100)], [(40, 0, 100, 100)]) == [0]  # IoU 0.43


def _face(left: str, right: str) -> Face:
    return Face(box=(0, 0, 10, 10), left_eye=left, right_eye=right, eyes_closed=left == right == "closed")


def test_prediction_follows_the_products_both_eyes_closed():
    assert eyes_real.prediction(None) == "not found"
    assert eyes_real.prediction(_face("closed", "closed")) == "both closed"
    assert eyes_real.prediction(_face("closed", "unknown")) == "one closed"
    assert eyes_real.prediction(_face("open", "closed")) == "one closed"
    assert eyes_real.prediction(_face("open", "unknown")) == "open"
    assert eyes_real.prediction(_face("unknown", "unknown")) == "can't tell"


def test_confusion_and_precision_recall():
    pairs = [("closed", "both closed"), ("closed", "can't tell"), ("closed", "not found")]
    pairs += [("downcast-closed", "both closed"), ("downcast-closed", "one closed")]
    pairs += [("open", "open")] * 5 + [("open", "both closed"), ("unclear", "both closed")]
    table = eyes_real.confusion(pairs)
    assert table["closed"] == {"both closed": 1, "can't tell": 1, "not found": 1}
    both = eyes_real.scores(table, ("closed", "downcast-closed"), ("open",))
    assert (both.tp, both.fp, both.fn) == (2, 1, 3)  # unclear is not scored
    assert both.precision == "2/3 = 0.67" and both.recall == "2/5 = 0.40"
    strict = eyes_real.scores(table, ("closed",), ())
    assert strict.recall == "1/3 = 0.33" and strict.precision == "1/1 = 1.00"
    assert eyes_real.scores({}, ("closed",), ("open",)).recall == "—"


TAG = """#eye-blink annotation file version 1.1
#start
#end
0:-1:X:X:X:X:X:260:194:251:290:299:270:351:259:416:246:466:243
1:1:X:X:X:X:X:252:219:246:289:296:290:349:283:408:272:460:269
2:1:X:C:X:C:X:252:219:246:289:295:292:349:283:407:272:461:270
3:1:X:C:X:X:X:252:219:246:289:295:292:349:283:407:272:461:270
"""


def test_parse_tag_labels_every_frame():
    frames = eyes_real.parse_tag(TAG)
    assert [f.frame for f in frames] == [0, 1, 2, 3]
    assert [f.label for f in frames] == ["not in a blink", "partly closed", "fully closed", "partly closed"]
    assert frames[0].box == (260, 194, 251, 290) and frames[2].closed == (True, True)
    with pytest.raises(ValueError, match="line 2"):
        eyes_real.parse_tag("#start\n7:-1:X:X\n")


def test_labels_file_names_every_face_and_archive():
    labels = json.loads(eyes_real.LABELS.read_text(encoding="utf-8"))
    keys = {a["key"] for a in labels["archives"]}
    assert all(len(a["sha256"]) == 64 and a["url"].startswith("https://") for a in labels["archives"])
    faces = labels["faces"]
    assert len(faces) == 84 and {f["archive"] for f in faces} <= keys
    assert {f["label"] for f in faces} == set(eyes_real.STILL_LABELS)
    assert all(len(f["box"]) == 4 and f["box"][2] > 0 for f in faces)
    assert labels["video"]["archive"] in keys


def test_fetch_keeps_only_a_download_with_the_recorded_sha256(tmp_path, monkeypatch):
    payload = b"an archive"
    monkeypatch.setattr(eyes_real, "urlopen", lambda url, timeout: io.BytesIO(payload))
    archive = {"registry": "npm", "file": "a.tgz", "url": "https://example.invalid/a.tgz"}
    with pytest.raises(RuntimeError, match="sha256"):
        eyes_real.fetch({**archive, "sha256": "0" * 64}, tmp_path)
    assert list(tmp_path.iterdir()) == []
    good = {**archive, "sha256": hashlib.sha256(payload).hexdigest()}
    assert eyes_real.fetch(good, tmp_path).read_bytes() == payload

    def offline(url, timeout):
        raise OSError("no network")

    monkeypatch.setattr(eyes_real, "urlopen", offline)
    assert eyes_real.fetch(good, tmp_path).read_bytes() == payload  # cached: no network needed
    with pytest.raises(eyes_real.RegistryUnreachable):
        eyes_real.fetch({**good, "file": "b.tgz"}, tmp_path)


def test_members_reads_the_named_files_from_a_tar(tmp_path):
    path = tmp_path / "a.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        for name, data in (("p/x.jpg", b"x"), ("p/y.jpg", b"yy")):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    assert eyes_real.members(path, ["p/y.jpg"]) == {"p/y.jpg": b"yy"}
    with pytest.raises(RuntimeError, match=r"p/z\.jpg"):
        eyes_real.members(path, ["p/x.jpg", "p/z.jpg"])
