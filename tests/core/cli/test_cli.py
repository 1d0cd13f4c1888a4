"""humanaes-score and the console scripts."""

import csv
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from humanaes_core.cli import score_main
from humanaes_core.schema import KEYS
from humanaes_core.scoring import scan
from tests.conftest import BROKEN_PHOTOS, GOOD_PHOTOS

SCRIPTS = [
    "humanaes",
    "humanaes-score",
    "humanaes-train",
    "humanaes-eval",
    "humanaes-cull",
    "humanaes-import",
]


def _rows(path, root):
    return {Path(r["path"]).relative_to(root).as_posix(): r for r in map(json.loads, path.open())}


def test_score_folder_then_rescan_from_cache(tmp_path, tiny_model, photo_dir, capsys, monkeypatch):
    cache = tmp_path / "cache.sqlite"
    out = tmp_path / "cards.jsonl"
    args = [str(photo_dir), "--model", str(tiny_model), "--out", str(out), "--cache", str(cache), "--quiet"]
    assert score_main(args) == 0
    rows = _rows(out, photo_dir)
    assert sorted(rows) == sorted(GOOD_PHOTOS + BROKEN_PHOTOS)  # notes.txt is not a photo suffix
    for name in GOOD_PHOTOS:
        assert rows[name]["error"] is None
        assert all(0 <= rows[name][k] <= 1 for k in KEYS)
        assert rows[name]["level"] in {"bad", "poor", "fair", "good", "excellent"}
    for name in BROKEN_PHOTOS:
        assert rows[name]["error"] and "overall" not in rows[name]
    err = capsys.readouterr().err
    assert "4 photos scored (0 from cache, 4 by the model" in err and "3 skipped" in err

    # Second run: everything from the cache, the model is never loaded.
    def no_model(*a, **k):
        raise AssertionError("the model was loaded for a cached rescan")

    monkeypatch.setattr(scan, "load_scorer", no_model)
    out2 = tmp_path / "again.jsonl"
    args[4] = str(out2)
    assert score_main(args) == 0
    assert "4 from cache, 0 by the model, model not loaded" in capsys.readouterr().err
    again = _rows(out2, photo_dir)
    for name in GOOD_PHOTOS:
        assert again[name]["overall"] == rows[name]["overall"]


def test_csv_output_and_no_cache(tmp_path, tiny_model, photo_dir):
    out = tmp_path / "cards.csv"
    files = [str(photo_dir / "astronaut.jpg"), str(photo_dir / "empty.png")]
    assert score_main([*files, "--model", str(tiny_model), "--out", str(out), "--no-cache", "--quiet"]) == 0
    rows = list(csv.DictReader(out.open()))
    assert [r["path"] for r in rows] == files
    assert rows[0]["error"] == "" and float(rows[0]["L_overall"]) >= 0
    assert rows[1]["error"] and rows[1]["L_overall"] == ""
    assert list(rows[0])[:4] == ["path", "level", "L_overall", "error"]


def test_changed_file_is_rescored(tmp_path, tiny_model, photo_dir, capsys):
    folder = tmp_path / "shoot"
    folder.mkdir()
    shutil.copy(photo_dir / "astronaut.jpg", folder / "a.jpg")
    base = [str(folder), "--model", str(tiny_model), "--cache", str(tmp_path / "c.sqlite"), "--quiet"]
    assert score_main([*base, "--out", str(tmp_path / "1.jsonl")]) == 0
    shutil.copy(photo_dir / "day2" / "landscape.jpg", folder / "a.jpg")
    capsys.readouterr()
    assert score_main([*base, "--out", str(tmp_path / "2.jsonl")]) == 0
    assert "0 from cache, 1 by the model" in capsys.readouterr().err


def test_missing_model_is_one_message_not_a_traceback(tmp_path, photo_dir, capsys):
    code = score_main(
        [str(photo_dir), "--model", "KwaiVGI/HumanAesExpert-8B", "--out", str(tmp_path / "x.jsonl")]
    )
    assert code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "Traceback" not in err and "humanaes-import" in err


def test_missing_path_is_reported(tmp_path, tiny_model, capsys):
    out = tmp_path / "x.jsonl"
    assert score_main([str(tmp_path / "nope"), "--model", str(tiny_model), "--out", str(out), "--quiet"]) == 0
    (row,) = map(json.loads, out.open())
    assert row["error"] == "file not found"


def test_out_dash_writes_json_lines_to_stdout(tmp_path, tiny_model, capsys):
    missing = str(tmp_path / "nope.jpg")
    assert score_main([missing, "--model", str(tiny_model), "--out", "-", "--quiet", "--no-cache"]) == 0
    (row,) = map(json.loads, capsys.readouterr().out.splitlines())
    assert row == {"path": missing, "error": "file not found"}
    assert not (Path.cwd() / "-").exists()


@pytest.mark.parametrize("script", SCRIPTS)
def test_console_scripts_have_help(script):
    exe = shutil.which(script)
    assert exe, f"{script} is not installed (pip install -e .)"
    done = subprocess.run([exe, "--help"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "usage:" in done.stdout


def test_score_with_the_release_preset_has_its_own_cache_key(tiny_model, tmp_path):
    """--preset release scores the release's pixels and question, cached apart from the default cards.

    The photo has an alpha channel: the release drops it, the photographer default paints it over white."""
    from PIL import Image

    from humanaes_core import load_scorer

    photo = tmp_path / "glass.png"
    Image.new("RGBA", (600, 300), (200, 30, 30, 90)).save(photo)
    out, cache = tmp_path / "release.jsonl", tmp_path / "lib.sqlite"
    base = [str(photo), "--model", str(tiny_model), "--device", "cpu", "--quiet"]
    assert score_main([*base, "--cache", str(cache), "--out", str(out), "--preset", "release"]) == 0
    row = json.loads(out.read_text().splitlines()[0])
    expected = load_scorer(tiny_model, device="cpu", preset="release").score([photo])[0]
    assert abs(row["overall"] - expected.dims["overall"]) < 1e-5
    default = tmp_path / "default.jsonl"
    assert score_main([*base, "--cache", str(cache), "--out", str(default)]) == 0
    assert json.loads(default.read_text().splitlines()[0])["overall"] != row["overall"]
