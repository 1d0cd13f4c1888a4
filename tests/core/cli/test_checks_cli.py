"""humanaes-score writes the photo checks' columns and never recomputes them; humanaes-cull rejects on
them (--reject, --preset KIND, sensitivities)."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from PIL import Image, ImageFilter

from humanaes_core.cli import score_main
from humanaes_core.cli.cull import main as cull_main
from humanaes_core.scoring import photo_checks

pytest.importorskip("ai_edge_litert")


@pytest.fixture()
def shoot(tmp_path: Path) -> Path:
    """A sharp real portrait, the same portrait badly blurred, and a black frame (lens cap on)."""
    skimage_data = pytest.importorskip("skimage.data")
    folder = tmp_path / "shoot"
    folder.mkdir()
    portrait = Image.fromarray(skimage_data.astronaut())
    portrait.save(folder / "a_sharp.jpg", quality=95)
    portrait.filter(ImageFilter.GaussianBlur(3)).save(folder / "b_blurred.jpg", quality=95)
    Image.new("RGB", (512, 512)).save(folder / "c_black.jpg")
    return folder


def _rows(path: Path) -> dict[str, dict]:
    with path.open(encoding="utf-8") as fh:
        return {Path(r["path"]).name: r for r in csv.DictReader(fh)}


def test_score_writes_the_check_columns_and_reuses_stored_checks(shoot, tiny_model, tmp_path, monkeypatch):
    base = [str(shoot), "--model", str(tiny_model), "--device", "cpu", "--max-tiles", "1", "--quiet"]
    out = tmp_path / "scores.csv"
    assert score_main([*base, "--out", str(out)]) == 0
    rows = _rows(out)
    sharp, blurred, black = rows["a_sharp.jpg"], rows["b_blurred.jpg"], rows["c_black.jpg"]
    assert (sharp["faces"], sharp["eyes_closed"], sharp["focus"], sharp["blur"]) == (
        "1",
        "0",
        "sharp",
        "sharp",
    )
    assert blurred["focus"] in ("soft", "missed") and blurred["blur"] == "soft"
    assert (black["faces"], black["misfire"], black["exposure"]) == ("0", "black", "under")

    def never(path):
        raise AssertionError(f"checked {path} again")

    monkeypatch.setattr(photo_checks, "check_photo", never)  # stored results are never recomputed
    again = tmp_path / "again.csv"
    assert score_main([*base, "--out", str(again)]) == 0
    assert _rows(again)["b_blurred.jpg"]["focus"] == blurred["focus"]
    no_checks = tmp_path / "none.csv"
    assert score_main([*base, "--out", str(no_checks), "--no-checks"]) == 0
    assert _rows(no_checks)["a_sharp.jpg"]["faces"] == ""


def test_cull_rejects_missed_focus_and_misfires_with_a_shoot_preset(shoot, tiny_model, tmp_path, capsys):
    export = tmp_path / "plan.csv"
    args = [str(shoot), "--model", str(tiny_model), "--device", "cpu", "--quiet", "--dry-run"]
    code = cull_main([*args, "--preset", "wedding", "--preset", "fast", "--export", str(export)])
    assert code == 0
    out = capsys.readouterr().out
    assert "rejected by the checks:" in out and "misfire: black frame 1" in out
    rows = _rows(export)
    assert rows["a_sharp.jpg"]["keep"] == "True"
    assert rows["b_blurred.jpg"]["keep"] == "False" and rows["c_black.jpg"]["keep"] == "False"
    # only the misfire rule: the blurred frame stays
    code = cull_main([*args, "--max-tiles", "1", "--reject", "misfire", "--export", str(export)])
    assert code == 0 and _rows(export)["b_blurred.jpg"]["keep"] == "True"


def test_cull_rule_arguments_are_checked(tiny_model, tmp_path):
    with pytest.raises(SystemExit):
        cull_main([str(tmp_path), "--model", str(tiny_model), "--reject", "red-eye"])
    with pytest.raises(SystemExit):
        cull_main([str(tmp_path), "--model", str(tiny_model), "--closed-eyes", "2"])
