"""Data loading: the three formats, validation messages with file and line, XMP ratings, QA pairs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL.PngImagePlugin import PngInfo

from humanaes_core.data.loaders import (
    REJECT_SCORE,
    STAR_SCORES,
    load_csv,
    load_data,
    load_label_jsonl,
    load_rated_folder,
)
from humanaes_core.data.qa import build_qa
from humanaes_core.data.samples import DataError, split_train_val
from humanaes_core.model.prompts import DIMS_QUESTIONS, OVERALL_QUESTIONS, PromptConfig
from humanaes_core.schema import KEYS, LEVELS, OFFICIAL_ORDER, score_to_level
from tests.conftest import synthetic_photo

# Distinct value per official position, so a mix-up of positions 9 and 10 shows.
OFFICIAL_SCORES = [0.01 * (i + 1) for i in range(12)]


def _photo(path: Path, seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    synthetic_photo(seed, (64, 48)).save(path, quality=90)
    return path


def _jsonl(path: Path, rows: list) -> Path:
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows) + "\n")
    return path


def _xmp(rating: str | None = None, pick: str | None = None, element: bool = False) -> bytes:
    """An XMP packet as Lightroom (attribute form) or some other writers (element form) write it."""
    attrs, children = "", ""
    for name, value in (("xmp:Rating", rating), ("digiKam:PickLabel", pick)):
        if value is None:
            continue
        if element:
            children += f"<{name}>{value}</{name}>"
        else:
            attrs += f' {name}="{value}"'
    return (
        '<?xpacket begin="" id="W5M0MpCehiHzreSzNTczkc9d"?><x:xmpmeta xmlns:x="adobe:ns:meta/">'
        '<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
        '<rdf:Description rdf:about="" xmlns:xmp="http://ns.adobe.com/xap/1.0/" '
        f'xmlns:digiKam="http://www.digikam.org/ns/1.0/"{attrs}>{children}</rdf:Description>'
        '</rdf:RDF></x:xmpmeta><?xpacket end="w"?>'
    ).encode()


@pytest.fixture
def root(tmp_path: Path) -> Path:
    for i in range(3):
        _photo(tmp_path / "img" / f"{i}.jpg", i)
    return tmp_path


# ---------------------------------------------------------------------------------------- HumanBeauty


def test_humanbeauty_root_maps_the_official_order_by_name(root):
    _jsonl(
        root / "train_label.jsonl",
        [
            {"image_name": "img/0.jpg", "is_expert": False, "score": 0.55, "text_level": "fair"},
            {"image_name": "img/1.jpg", "is_expert": True, "score": OFFICIAL_SCORES},
        ],
    )
    data = load_data(root)
    assert data.format == "humanbeauty" and data.root == root
    overall, expert = data.samples
    assert overall.labels == {"overall": 0.55} and overall.level == "fair" and not overall.is_dims
    assert expert.is_dims and expert.complete
    # official index 9 is Environment, 10 General Appearance, 11 overall
    assert expert.labels["environment"] == pytest.approx(0.10)
    assert expert.labels["general_appearance_aesthetic"] == pytest.approx(0.11)
    assert expert.labels["overall"] == pytest.approx(0.12)
    assert list(expert.labels) == list(KEYS)
    assert data.counts() == {
        "samples": 2,
        "overall_only": 1,
        "twelve_dim": 1,
        "partial_dims": 0,
        "skipped": 0,
    }


BAD_LINES = [
    ({"image_name": "img/missing.jpg", "score": 0.5}, "image not found"),
    ({"image_name": "img/0.jpg", "score": 1.5}, "outside [0, 1]"),
    ({"image_name": "img/0.jpg", "score": "good"}, "not a number"),
    (
        {"image_name": "img/0.jpg", "is_expert": True, "score": [0.5] * 11},
        "a list of 12 numbers; got a list of 11",
    ),
    ({"image_name": "img/0.jpg", "is_expert": True, "score": [0.5] * 11 + [-0.1]}, "score[11]"),
    ({"image_name": "img/0.jpg", "is_expert": False, "score": [0.5] * 12}, "must be one number"),
    ({"image_name": "img/0.jpg", "score": 0.5, "rating": 3}, "unknown key(s) rating"),
    ({"image_name": "img/0.jpg", "score": 0.5, "text_level": "superb"}, "text_level 'superb'"),
    ({"image_name": "img/0.jpg"}, "missing 'score'"),
    ({"image_name": "../outside.jpg", "score": 0.5}, "leads outside the data root"),
    ('{"image_name": "img/0.jpg", "score": 0.5', "not valid JSON"),
    ("[1, 2]", "must be a JSON object"),
    # hostile lines (issue 16): each one labelled problem, never a RecursionError or OverflowError
    ("[" * 100_000 + "]" * 100_000, "not valid JSON (JSON nested too deeply)"),
    ('{"image_name": "img/0.jpg", "score": 1' + "0" * 400 + "}", "digits> is outside [0, 1]"),
    ('{"image_name": "img/0.jpg", "score": 1' + "0" * 5000 + "}", "not valid JSON"),
    ({"image_name": "img/0.jpg", "is_expert": True, "score": [10**400] * 12}, "score[0]: score <a number"),
    ({"image_name": "b" * 300 + ".jpg", "score": 0.5}, "is not usable (File name too long)"),
    ({"image_name": "a/" * 5000, "score": 0.5}, "is not a usable path"),
]


@pytest.mark.parametrize(("bad", "message"), BAD_LINES, ids=[message for _, message in BAD_LINES])
def test_bad_label_lines_are_reported_with_file_and_line(root, bad, message):
    _photo(root.parent / "outside.jpg")
    labels = _jsonl(root / "train_label.jsonl", [{"image_name": "img/1.jpg", "score": 0.3}, bad])
    with pytest.raises(DataError) as info:
        load_data(root)
    text = str(info.value)
    assert f"{labels}:2: " in text and message in text
    assert f"{labels}:1:" not in text  # the good line is not blamed


def test_a_huge_label_value_is_not_repeated_in_the_message(root):
    big = "x" * (20 << 20)
    labels = _jsonl(
        root / "train_label.jsonl",
        [
            {"image_name": "img/0.jpg", "score": big},
            {"image_name": big, "score": 0.5},
            {"image_name": "img/1.jpg", "score": 0.5, big: 1},
            {"image_name": "img/2.jpg", "score": 0.5, "text_level": big},
            {"image_name": "img/2.jpg", "score": 0.5, "is_expert": big},
        ],
    )
    with pytest.raises(DataError, match="5 problem") as info:
        load_label_jsonl(labels)
    assert len(str(info.value)) < 5000


def test_a_label_file_with_a_utf8_bom_is_read_like_the_csv(root):
    labels = root / "train_label.jsonl"
    labels.write_bytes(
        b"\xef\xbb\xbf" + json.dumps({"image_name": "img/0.jpg", "score": 0.5}).encode() + b"\n"
    )
    assert [s.overall for s in load_data(root).samples] == [0.5]
    table = root / "labels.csv"
    table.write_bytes(b"\xef\xbb\xbfpath,overall\nimg/1.jpg,0.25\n")
    assert [s.overall for s in load_data(table).samples] == [0.25]


@pytest.mark.parametrize("kind", ["fifo", "device"])
@pytest.mark.parametrize("suffix", [".jsonl", ".csv"])
def test_a_label_file_that_is_not_a_regular_file_is_refused_at_once(tmp_path, kind, suffix):
    import os

    path = tmp_path / f"labels{suffix}"
    if kind == "fifo":
        os.mkfifo(path)
    else:
        os.symlink("/dev/zero", path)
    reader = load_csv if suffix == ".csv" else load_label_jsonl
    with pytest.raises(DataError, match="not a regular file"):
        reader(path)
    with pytest.raises(DataError, match="not a regular file"):
        load_data(path)


def test_every_problem_is_reported_at_once(root):
    labels = _jsonl(
        root / "train_label.jsonl",
        [
            {"image_name": "img/0.jpg", "score": 2},
            {"image_name": "img/1.jpg", "score": 0.3},
            {"image_name": "x.jpg", "score": 0.1},
        ],
    )
    with pytest.raises(DataError, match="2 problem") as info:
        load_label_jsonl(labels)
    assert f"{labels}:1:" in str(info.value) and f"{labels}:3:" in str(info.value)


def test_absolute_paths_only_when_allowed(root, tmp_path_factory):
    elsewhere = _photo(tmp_path_factory.mktemp("elsewhere") / "a.jpg")
    labels = _jsonl(root / "labels.jsonl", [{"image_name": str(elsewhere), "score": 0.7}])
    with pytest.raises(DataError, match="absolute path"):
        load_data(labels)
    data = load_data(labels, allow_outside_root=True)
    assert data.samples[0].path == elsewhere and data.format == "jsonl"


def test_unreadable_image_is_caught_before_training(root):
    (root / "img" / "fake.jpg").write_bytes(b"not a jpeg")
    labels = _jsonl(root / "labels.jsonl", [{"image_name": "img/fake.jpg", "score": 0.7}])
    with pytest.raises(DataError, match=r"labels.jsonl:1: .*fake.jpg: not an image"):
        load_data(labels)
    assert load_data(labels, check_images=False).samples[0].path.name == "fake.jpg"


def test_root_without_the_split_names_what_it_found(root):
    _jsonl(root / "test_label.jsonl", [{"image_name": "img/0.jpg", "score": 0.5}])
    with pytest.raises(DataError, match=r"no train_label\.jsonl .*found test_label\.jsonl"):
        load_data(root)
    assert len(load_data(root, split="test").samples) == 1


# ------------------------------------------------------------------------------------------------ CSV


def test_csv_with_overall_and_partial_dimensions(root):
    others = [k for k in KEYS if k not in ("overall", "environment")]
    header = ["path", "overall", "environment", *others]
    rows = [
        ["img/0.jpg", "0.8", "", *[""] * len(others)],
        ["img/1.jpg", "0.4", "0.9", *[""] * len(others)],
        ["img/2.jpg", *["0.5"] * 12],
    ]
    (root / "labels.csv").write_text("\n".join(",".join(r) for r in [header, *rows]) + "\n")
    data = load_data(root / "labels.csv")
    assert data.format == "csv"
    only, partial, full = data.samples
    assert only.labels == {"overall": 0.8} and not only.is_dims
    assert partial.labels == {"environment": 0.9, "overall": 0.4} and partial.is_dims and not partial.complete
    assert full.complete
    assert data.counts()["partial_dims"] == 1 and data.counts()["twelve_dim"] == 1


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("path,overall,sharpness\nimg/0.jpg,0.5,0.5\n", ":1: unknown column(s) sharpness"),
        ("file,overall\nimg/0.jpg,0.5\n", ":1: the header needs a 'path' column"),
        ("path,overall\nimg/0.jpg,0.5\nimg/1.jpg,high\n", ":3: overall: score 'high' is not a number"),
        ("path,overall\nimg/0.jpg,0.5\nimg/1.jpg,-0.2\n", ":3: overall: score -0.2 is outside [0, 1]"),
        ("path,overall,looks\nimg/0.jpg,,\n", ":2: no label in this row"),
        ("path,overall\nimg/0.jpg,0.5,0.1\n", ":2: 3 cells, the header has 2"),
        ("path,overall\nimg/nope.jpg,0.5\n", ":2: image not found"),
    ],
)
def test_csv_problems_name_file_and_line(root, text, message):
    (root / "labels.csv").write_text(text)
    with pytest.raises(DataError) as info:
        load_csv(root / "labels.csv")
    assert f"labels.csv{message}" in str(info.value)


# ------------------------------------------------------------------------------------------ XMP ratings


def test_star_scores_sit_in_the_middle_of_their_level():
    for stars, score in STAR_SCORES.items():
        assert score_to_level(score) == LEVELS[stars - 1]
    assert STAR_SCORES[1] > REJECT_SCORE
    assert score_to_level(REJECT_SCORE) == "bad"


@pytest.mark.parametrize(
    ("packet", "score"),
    [
        (_xmp(rating="4"), 0.7),
        (_xmp(rating="2", element=True), 0.3),
        (_xmp(rating="-1"), 0.0),  # Lightroom / Bridge / darktable reject
        (_xmp(rating="3", pick="1"), 0.0),  # digiKam: a rejected pick label wins over stars
        (_xmp(rating="0"), None),
        (_xmp(pick="3"), None),  # accepted pick without stars: nothing to learn from
    ],
)
def test_xmp_flavours_map_to_overall_scores(tmp_path, packet, score):
    _photo(tmp_path / "rated.jpg", 1)
    (tmp_path / "rated.jpg.xmp").write_bytes(_xmp(rating="5"))  # keeps the folder non-empty
    _photo(tmp_path / "a.jpg").with_name("a.jpg.xmp").write_bytes(packet)
    data = load_rated_folder(tmp_path)
    scores = {s.path.name: s.labels["overall"] for s in data.samples}
    assert scores.get("a.jpg") == score
    if score is None:
        assert [Path(p).name for p, _ in data.skipped] == ["a.jpg"]


def test_embedded_xmp_and_sidecar_precedence(tmp_path):
    synthetic_photo(3, (64, 48)).save(tmp_path / "c.jpg", xmp=_xmp(rating="3"))
    info = PngInfo()
    info.add_itxt("XML:com.adobe.xmp", _xmp(rating="4").decode())
    synthetic_photo(4, (64, 48)).save(tmp_path / "d.png", pnginfo=info)
    synthetic_photo(5, (64, 48)).save(tmp_path / "e.jpg", xmp=_xmp(rating="2"))
    (tmp_path / "e.xmp").write_bytes(_xmp(rating="5"))  # Lightroom's sidecar name beats the embedded packet
    data = load_rated_folder(tmp_path)
    assert {s.path.name: s.labels["overall"] for s in data.samples} == {
        "c.jpg": 0.5,
        "d.png": 0.7,
        "e.jpg": 0.9,
    }
    origin = {s.path.name: s.origin for s in data.samples}
    assert "embedded" in origin["c.jpg"] and origin["e.jpg"].endswith("e.xmp")


def test_rated_folder_becomes_overall_only_samples(tmp_path):
    for name, rating in (("a", "5"), ("b", "-1"), ("c", "0"), ("d", None), ("e", "3")):
        photo = _photo(tmp_path / "shoot" / f"{name}.jpg")
        if rating is not None:
            photo.with_suffix(".xmp").write_bytes(_xmp(rating=rating))
    (tmp_path / "shoot" / "sub").mkdir()
    sub = _photo(tmp_path / "shoot" / "sub" / "f.jpg")
    sub.with_name("f.jpg.xmp").write_bytes(_xmp(rating="4"))
    data = load_data(tmp_path / "shoot")
    assert data.format == "rated-folder"
    scores = {s.path.name: s.labels for s in data.samples}
    assert scores == {
        "a.jpg": {"overall": 0.9},
        "b.jpg": {"overall": 0.0},
        "e.jpg": {"overall": 0.5},
        "f.jpg": {"overall": 0.7},
    }
    reasons = {Path(p).name: r for p, r in data.skipped}
    assert "0 stars" in reasons["c.jpg"] and "no star rating" in reasons["d.jpg"]


def test_folder_without_ratings_is_an_error(tmp_path):
    _photo(tmp_path / "a.jpg")
    with pytest.raises(DataError, match="no rated photos"):
        load_rated_folder(tmp_path)


# ------------------------------------------------------------------------------------------------ QA


def test_questions_and_answers_follow_the_paper(root):
    _jsonl(
        root / "train_label.jsonl",
        [
            {"image_name": "img/0.jpg", "is_expert": False, "score": 0.59, "text_level": "good"},
            {"image_name": "img/1.jpg", "score": 0.35},
            {"image_name": "img/2.jpg", "is_expert": True, "score": OFFICIAL_SCORES},
        ],
    )
    given_level, plain, expert = load_data(root).samples
    prompt = PromptConfig()
    qa = build_qa(given_level, prompt)
    assert qa.question == OVERALL_QUESTIONS[1] and not qa.is_dims  # evaluation: the configured (release's)
    assert qa.answer == "The aesthetics of the human image is good"  # the data's text_level is used
    assert build_qa(plain, prompt).answer == "The aesthetics of the human image is poor"
    assert build_qa(plain, prompt, 3).question == OVERALL_QUESTIONS[3]  # training: a paraphrase
    qa = build_qa(expert, prompt, 2)
    assert qa.question == DIMS_QUESTIONS[2] and qa.is_dims
    lines = qa.answer.split("\n")
    assert len(lines) == 12
    assert lines[9] == f"10. Environment : {score_to_level(OFFICIAL_SCORES[9])}"
    assert lines[10].startswith("11. General Appearance Aesthetic Score : ")
    assert OFFICIAL_ORDER[9] == "environment"


def test_partial_dimensions_get_no_answer_text(root):
    (root / "l.csv").write_text("path,environment\nimg/0.jpg,0.9\n")
    qa = build_qa(load_data(root / "l.csv").samples[0], PromptConfig(), 1)
    assert qa.is_dims and qa.answer is None and qa.question == DIMS_QUESTIONS[1]


# ------------------------------------------------------------------------------------- fingerprint, split


def test_fingerprint_follows_labels_not_location(tmp_path):
    def make(where: Path, score: float) -> str:
        _photo(where / "img" / "0.jpg")
        _jsonl(where / "train_label.jsonl", [{"image_name": "img/0.jpg", "score": score}])
        return load_data(where).labels_fingerprint()

    assert make(tmp_path / "a", 0.5) == make(tmp_path / "b", 0.5)
    assert make(tmp_path / "c", 0.5) != make(tmp_path / "d", 0.6)


def test_split_is_seeded_disjoint_and_keeps_both_sides(root):
    _jsonl(root / "l.jsonl", [{"image_name": f"img/{i % 3}.jpg", "score": i / 20} for i in range(20)])
    samples = load_data(root / "l.jsonl").samples
    train, val = split_train_val(samples, 0.25, seed=1)
    assert len(val) == 5 and len(train) == 15
    assert {s.origin for s in train}.isdisjoint(s.origin for s in val)
    assert split_train_val(samples, 0.25, seed=1) == (train, val)
    assert split_train_val(samples, 0.25, seed=2) != (train, val)
    assert len(split_train_val(samples[:2], 0.01, seed=0)[1]) == 1
    assert split_train_val(samples, 0.0, seed=0) == (samples, [])
    with pytest.raises(DataError):
        split_train_val(samples, 1.0, seed=0)


def test_missing_data_path(tmp_path):
    with pytest.raises(DataError, match="no such file or folder"):
        load_data(tmp_path / "nope")
    (tmp_path / "x.txt").write_text("")
    with pytest.raises(DataError, match=r"\.csv or a \.jsonl"):
        load_data(tmp_path / "x.txt")
