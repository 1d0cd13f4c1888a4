"""Auto-cull plans, acting on them (sidecars, copying picks, exports) and `humanaes-cull` end to end."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from humanaes_core.cli.cull import main as cull_main
from humanaes_core.culling import (
    DECISION_COLUMNS,
    CullError,
    Decision,
    copy_picks,
    export_cards,
    plan_cull,
    write_sidecars,
)
from humanaes_core.formats import CSV_COLUMNS
from humanaes_core.formats.xmp import read_rating, write_decision
from humanaes_core.schema import score_to_level
from humanaes_core.scoring.scorer import ScoreCard
from tests.conftest import synthetic_photo

EXIFTOOL = shutil.which("exiftool")
needs_exiftool = pytest.mark.skipif(
    EXIFTOOL is None, reason="exiftool not installed (Debian: apt-get install libimage-exiftool-perl)"
)


def exif_ratings(paths: list[Path]) -> dict[str, int | None]:
    """xmp:Rating of each sidecar as exiftool reads it, by file name."""
    out = subprocess.run(
        [EXIFTOOL, "-j", "-n", "-XMP:Rating", *map(str, paths)], capture_output=True, check=True
    )
    return {Path(r["SourceFile"]).name: r.get("Rating") for r in json.loads(out.stdout)}


def _card(overall: float) -> ScoreCard:
    return ScoreCard(
        dims={"overall": overall},
        heads={"lm": overall, "regression": overall},
        level=score_to_level(overall),
        lm_probs=[0.2] * 5,
        tiles=1,
        mode="overall",
    )


SCORES = {
    "day1/a.jpg": 0.91,  # excellent
    "day1/b.jpg": 0.65,  # good
    "day1/c.jpg": 0.45,  # fair
    "day1/d.jpg": 0.15,  # bad
    "day2/e.jpg": 0.55,  # fair
    "day2/f.jpg": 0.35,  # poor
    "day2/g.jpg": 0.75,  # good
}


@pytest.fixture
def shoot(tmp_path) -> dict[Path, ScoreCard]:
    cards = {}
    for i, (name, score) in enumerate(SCORES.items()):
        path = tmp_path / "shoot" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        synthetic_photo(i, (64, 48)).save(path, quality=90)
        cards[path] = _card(score)
    return cards


def _kept(decisions: dict[Path, Decision]) -> set[str]:
    return {p.name for p, d in decisions.items() if d.keep}


# ---------------------------------------------------------------------------------------------- plans


def test_keep_top_percent_per_folder(shoot):
    decisions = plan_cull(shoot, keep_top_percent=50)
    assert _kept(decisions) == {"a.jpg", "b.jpg", "g.jpg", "e.jpg"}  # 2 of 4, ceil(1.5) = 2 of 3
    d = decisions[next(p for p in shoot if p.name == "c.jpg")]
    assert not d.keep and d.rating == -1 and d.stars == 3 and "#3 of 4" in d.reason
    a = decisions[next(p for p in shoot if p.name == "a.jpg")]
    assert a.keep and a.rating == a.stars == 5 and a.group.endswith("day1")


def test_min_level_and_both_criteria(shoot):
    assert _kept(plan_cull(shoot, min_level="good")) == {"a.jpg", "b.jpg", "g.jpg"}
    assert _kept(plan_cull(shoot, keep_top_percent=50, min_level="good")) == {"a.jpg", "b.jpg", "g.jpg"}
    assert _kept(plan_cull(shoot, keep_top_percent=100, min_level="bad")) == {p.name for p in shoot}
    reason = plan_cull(shoot, min_level="good")[next(p for p in shoot if p.name == "f.jpg")].reason
    assert reason == "poor, below good"


def test_per_all_and_per_burst(shoot):
    assert _kept(plan_cull(shoot, keep_top_percent=30, per="all")) == {"a.jpg", "g.jpg", "b.jpg"}
    paths = {p.name: p for p in shoot}
    groups = [[paths["b.jpg"], paths["c.jpg"], paths["d.jpg"]], [paths["e.jpg"], paths["f.jpg"]]]
    decisions = plan_cull(shoot, keep_top_percent=1, per="burst", groups=groups)
    # each burst keeps its best frame; photos in no burst are their own group and stay
    assert _kept(decisions) == {"b.jpg", "e.jpg", "a.jpg", "g.jpg"}
    assert decisions[paths["c.jpg"]].group == "burst of 3 from b.jpg"
    assert decisions[paths["c.jpg"]].group_size == 3


def test_ties_are_broken_by_path(tmp_path):
    cards = {tmp_path / n: _card(0.5) for n in ("b.jpg", "a.jpg", "c.jpg")}
    assert _kept(plan_cull(cards, keep_top_percent=34)) == {"a.jpg", "b.jpg"}


def test_plans_in_words():
    """What the undo history says and a sidecar records as humanaes:Plan."""
    from humanaes_core.culling import describe_plan

    assert describe_plan(20) == "keep top 20% per folder"
    assert describe_plan(None, "good", "burst") == "keep good and better per burst"
    assert describe_plan(12.5, "fair", "all") == "keep top 12.5% and fair and better across all photos"


def test_bad_requests(shoot):
    for kwargs in (
        {},
        {"keep_top_percent": 0},
        {"keep_top_percent": 150},
        {"min_level": "great"},
        {"keep_top_percent": 10, "per": "day"},
        {"keep_top_percent": 10, "per": "burst"},
    ):
        with pytest.raises(CullError):
            plan_cull(shoot, **kwargs)


# ---------------------------------------------------------------------------------------- sidecars


@needs_exiftool
def test_write_sidecars_read_back_by_exiftool(shoot):
    decisions = plan_cull(shoot, keep_top_percent=50)
    report = write_sidecars(decisions, label="Green")
    assert not report.failed and len(report.written) == len(shoot)
    ratings = exif_ratings(report.written)
    for photo, d in decisions.items():
        assert ratings[photo.name + ".xmp"] == (d.stars if d.keep else -1)
        assert read_rating(photo).label == ("Green" if d.keep else None)
    # a stricter re-run: new rejects lose the keeper label, keepers keep it
    again = plan_cull(shoot, min_level="excellent")
    write_sidecars(again, label="Green")
    assert {p.name for p in shoot if read_rating(p).label == "Green"} == {"a.jpg"}
    assert exif_ratings(report.written)["b.jpg.xmp"] == -1


def test_write_sidecars_reports_failures_and_goes_on(shoot):
    decisions = plan_cull(shoot, keep_top_percent=50)
    broken = next(iter(shoot))
    Path(f"{broken}.xmp").write_text("not xml at all <", encoding="utf-8")
    report = write_sidecars(decisions)
    assert [p for p, _ in report.failed] == [broken]
    assert len(report.written) == len(shoot) - 1


# -------------------------------------------------------------------------------------------- copies


def _tree(folder: Path) -> dict[str, bytes]:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
    }


def test_copy_picks_with_sidecars_never_overwrites(shoot, tmp_path):
    source = tmp_path / "shoot"
    decisions = plan_cull(shoot, keep_top_percent=50)
    write_sidecars(decisions)
    before = _tree(source)
    dest = tmp_path / "picks"
    dest.mkdir()
    (dest / "a.jpg").write_bytes(b"a different photo with the same name")
    report = copy_picks(decisions, dest)
    assert _tree(source) == before  # originals untouched
    names = sorted(p.name for p in dest.iterdir())
    expected = ["a.jpg", "a-1.jpg", "a-1.jpg.xmp", "b.jpg", "b.jpg.xmp", "e.jpg", "e.jpg.xmp", "g.jpg"]
    assert names == sorted([*expected, "g.jpg.xmp"])
    assert (dest / "a.jpg").read_bytes() == b"a different photo with the same name"
    assert (dest / "a-1.jpg").read_bytes() == before["day1/a.jpg"]
    assert read_rating(dest / "a-1.jpg").stars == 5
    assert len(report.copied) == 4 and not report.failed
    again = copy_picks(decisions, dest)  # idempotent: identical files are recognised
    assert again.copied == [] and len(again.already_there) == 4  # a.jpg is recognised as a-1.jpg
    assert not [p for p in dest.iterdir() if p.name.startswith(".")]


def test_raw_sidecar_travels_with_the_raw(tmp_path):
    folder = tmp_path / "card"
    folder.mkdir()
    raw = folder / "IMG_0001.CR2"
    raw.write_bytes(b"raw bytes")
    write_decision(raw, 4)
    assert (folder / "IMG_0001.xmp").exists()
    copy_picks({raw: Decision(True, 4, "test")}, tmp_path / "picks")
    assert (tmp_path / "picks" / "IMG_0001.xmp").exists()
    assert read_rating(tmp_path / "picks" / "IMG_0001.CR2").stars == 4


def test_move_picks(shoot, tmp_path):
    decisions = plan_cull(shoot, min_level="good")
    write_sidecars(decisions)
    report = copy_picks(decisions, tmp_path / "best", move=True)
    assert sorted(p.name for p, _ in report.copied) == ["a.jpg", "b.jpg", "g.jpg"]
    for src, dst in report.copied:
        assert not src.exists() and not Path(f"{src}.xmp").exists()
        assert dst.exists() and read_rating(dst).stars in (4, 5)
    assert all(p.exists() for p, d in decisions.items() if not d.keep)


def test_copy_into_the_photos_own_folder_is_refused(shoot):
    decisions = plan_cull(shoot, keep_top_percent=50)
    folder = next(iter(shoot)).parent
    with pytest.raises(CullError, match="choose another folder"):
        copy_picks(decisions, folder)


# -------------------------------------------------------------------------------------------- export


def test_export_csv_json_and_jsonl(shoot, tmp_path):
    decisions = plan_cull(shoot, keep_top_percent=50)
    out = export_cards(shoot, tmp_path / "cards.csv", decisions=decisions, errors={"x.jpg": "not an image"})
    with out.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        assert reader.fieldnames == CSV_COLUMNS + DECISION_COLUMNS
        rows = {Path(r["path"]).name: r for r in reader}
    assert rows["a.jpg"]["keep"] == "True" and rows["a.jpg"]["rating"] == "5"
    assert rows["d.jpg"]["rating"] == "-1" and rows["x.jpg"]["error"] == "not an image"
    data = json.loads(export_cards(shoot, tmp_path / "cards.json", decisions=decisions).read_text())
    assert len(data) == len(shoot) and {r["keep"] for r in data} == {True, False}
    lines = (export_cards(shoot, tmp_path / "cards.jsonl")).read_text().splitlines()
    assert [json.loads(line)["overall"] for line in lines] == list(SCORES.values())
    assert "keep" not in json.loads(lines[0])  # the plain humanaes-score format


# ------------------------------------------------------------------------------------ humanaes-cull


@pytest.fixture
def folder(tmp_path) -> Path:
    """JPEGs, a PNG, a HEIC, a DNG and a 'CR2' (a DNG under a Canon name: LibRaw reads content),
    plus a broken file."""
    from tests.core.formats.test_formats import make_dng

    root = tmp_path / "session"
    (root / "sub").mkdir(parents=True)
    for i in range(4):
        synthetic_photo(20 + i, (300, 200)).save(root / f"IMG_{i:04d}.jpg", quality=90)
    synthetic_photo(30, (200, 300)).save(root / "sub" / "portrait.png")
    make_dng(root / "IMG_0100.CR2", synthetic_photo(31, (300, 200)), preview=synthetic_photo(31, (150, 100)))
    make_dng(root / "sub" / "scan.dng", synthetic_photo(32, (300, 200)), orientation=6)
    try:
        import pillow_heif  # noqa: F401

        synthetic_photo(33, (300, 200)).save(root / "sub" / "phone.heic", format="HEIF", quality=80)
    except ImportError:
        pass
    (root / "broken.jpg").write_bytes(b"not a photo")
    return root


def _cull(folder: Path, model: Path, *extra: str) -> int:
    args = [str(folder), "--model", str(model), "--device", "cpu", "--max-tiles", "1", "--quiet", *extra]
    return cull_main(args)


@needs_exiftool
def test_humanaes_cull_end_to_end(folder, tiny_model, tmp_path, capsys):
    photos = sorted(p for p in folder.rglob("*.*") if p.suffix != ".xmp" and p.name != "broken.jpg")
    before = {p: p.read_bytes() for p in photos}
    picks = tmp_path / "picks"
    export = tmp_path / "plan.csv"
    code = _cull(
        folder,
        tiny_model,
        "--keep-top",
        "50%",
        "--write-xmp",
        "--copy-picks",
        str(picks),
        "--export",
        str(export),
    )
    assert code == 0
    out, err = capsys.readouterr()
    assert "culled:" in out and "XMP sidecars" in out and "broken.jpg" in err
    assert {p: p.read_bytes() for p in photos} == before  # originals never modified

    with export.open(encoding="utf-8") as fh:
        rows = {Path(r["path"]).name: r for r in csv.DictReader(fh) if not r["error"]}
    assert set(rows) == {p.name for p in photos}
    sidecars = sorted(folder.rglob("*.xmp"))
    ratings = exif_ratings(sidecars)
    assert "IMG_0100.xmp" in ratings  # the CR2's sidecar, where Lightroom looks for it
    for photo in photos:
        name = "IMG_0100.xmp" if photo.suffix == ".CR2" else photo.name + ".xmp"
        row = rows[photo.name]
        expected = int(row["rating"])
        assert ratings[name] == expected
        assert expected == -1 or (row["keep"] == "True" and 1 <= expected <= 5)
    kept = {name for name, r in rows.items() if r["keep"] == "True"}
    assert kept and len(kept) < len(rows)
    copied = {p.name for p in picks.iterdir() if p.suffix.lower() != ".xmp"}
    assert copied == kept
    assert {p.name for p in picks.iterdir() if p.suffix.lower() == ".xmp"} >= {
        "IMG_0100.xmp" if n.endswith(".CR2") else n + ".xmp" for n in kept
    }


@needs_exiftool
def test_humanaes_cull_sidecars_are_never_read_back_as_the_photographers(
    folder, tiny_model, tmp_path, monkeypatch
):
    """The issue #13 case: humanaes-cull --write-xmp, then a restart with a new, empty library (another
    machine, the library file lost). Every rating is read back as HumanAes's, by the reader the app's
    folder scan uses and by the training loader, except the one an editor changed afterwards."""
    from humanaes_core.data import DataError, load_rated_folder
    from humanaes_core.formats import collect_photos
    from humanaes_core.origins import Origin
    from humanaes_core.store import DecisionStore, default_library_path

    plan = "humanaes-cull: keep top 50% per folder"
    assert _cull(folder, tiny_model, "--keep-top", "50%", "--write-xmp") == 0
    monkeypatch.setenv("HUMANAES_LIBRARY", str(tmp_path / "new-library.sqlite"))
    with DecisionStore(default_library_path()) as store:
        assert store.count() == 0  # nothing remembers who wrote the sidecars but the sidecars
    photos, _ = collect_photos([folder])
    ratings = {p: read_rating(p) for p in photos if p.name != "broken.jpg"}
    assert ratings and all(r.source is not None for r in ratings.values())
    assert {(r.origin, r.plan) for r in ratings.values()} == {(Origin.HUMANAES, plan)}
    with pytest.raises(DataError, match=r"\d+ rated by HumanAes itself are not used"):
        load_rated_folder(folder, check_images=False)

    # An editor (not HumanAes: exiftool, as Lightroom would) rates one of them 5 stars.
    edited = folder / "IMG_0000.jpg"
    side = ratings[edited].source  # the sidecar it was read from
    assert side == f"{edited}.xmp"
    subprocess.run([EXIFTOOL, "-q", "-overwrite_original", "-XMP-xmp:Rating=5", side], check=True)
    assert (read_rating(edited).origin, read_rating(edited).stars) == (Origin.EDITOR, 5)
    data = load_rated_folder(folder, check_images=False)
    assert [(s.path, s.overall) for s in data.samples] == [(edited, 0.9)]
    ours = [
        Path(p) for p, why in data.skipped if why == f"decided by HumanAes ({plan}), not by you or an editor"
    ]
    assert sorted(ours) == sorted(p for p in ratings if p != edited)
    assert f"{len(ours)} decided by HumanAes ({plan})" in data.skipped_text()


def test_humanaes_cull_dry_run_writes_nothing(folder, tiny_model, tmp_path, capsys):
    before = _tree(folder)
    code = _cull(
        folder,
        tiny_model,
        "--min-level",
        "bad",
        "--per",
        "burst",
        "--write-xmp",
        "--copy-picks",
        str(tmp_path / "p"),
        "--dry-run",
    )
    assert code == 0
    out = capsys.readouterr().out
    assert "would write XMP sidecars" in out and "would copy" in out
    assert _tree(folder) == before and not (tmp_path / "p").exists()


def test_humanaes_cull_usage_errors(tiny_model, tmp_path, capsys):
    with pytest.raises(SystemExit):
        cull_main([str(tmp_path), "--model", str(tiny_model)])  # neither --keep-top nor --min-level
    with pytest.raises(SystemExit):
        cull_main([str(tmp_path), "--model", str(tiny_model), "--keep-top", "120%"])
    assert _cull(tmp_path / "empty", tiny_model, "--keep-top", "10") == 2
    assert "no photos found" in capsys.readouterr().err
