"""What humanaes-score and humanaes-cull show and write (issue #14: items 5, 6, 14 and 17)."""

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from humanaes_core import cli
from humanaes_core.cli import cull_main, score_main
from humanaes_core.culling import Decision, plan_warning
from humanaes_core.formats import CSV_COLUMNS
from humanaes_core.schema import KEYS
from tests.conftest import GOOD_PHOTOS

ROOT = Path(__file__).resolve().parents[3]


def _decisions(kept: int, rejected: int) -> dict:
    keep = {Path(f"k{i}.jpg"): Decision(True, 4, "", 0.7, "good") for i in range(kept)}
    return keep | {Path(f"r{i}.jpg"): Decision(False, 3, "", 0.5, "fair") for i in range(rejected)}


def test_plan_warning_only_when_nearly_everything_is_rejected():
    assert plan_warning(_decisions(0, 0)) is None
    assert plan_warning(_decisions(1, 9)) is None  # 90 % is a strict cull, not a mistake
    assert "rejects 10 of 11 photos" in plan_warning(_decisions(1, 10))
    sentence = plan_warning(_decisions(0, 26))
    assert sentence.startswith("this plan rejects all 26 photos") and "\n" not in sentence


@pytest.fixture
def shoot(tmp_path, photo_dir):
    folder = tmp_path / "shoot"
    folder.mkdir()
    for name in GOOD_PHOTOS:
        (folder / Path(name).name).write_bytes((photo_dir / name).read_bytes())
    return folder


def _cull(shoot, tiny_model, tmp_path, *extra):
    base = [str(shoot), "--model", str(tiny_model), "--cache", str(tmp_path / "lib.sqlite"), "--quiet"]
    return cull_main([*base, *extra])


def test_cull_refuses_a_plan_that_rejects_everything(shoot, tiny_model, tmp_path, capsys):
    code = _cull(shoot, tiny_model, tmp_path, "--min-level", "excellent", "--write-xmp")
    err = capsys.readouterr().err
    assert code == cli.EXIT_USAGE
    assert [line for line in err.splitlines() if line.startswith("error:")] == [
        line for line in err.splitlines() if "rejects all" in line
    ]
    assert "add --yes" in err and not list(shoot.glob("*.xmp"))
    assert _cull(shoot, tiny_model, tmp_path, "--min-level", "excellent", "--write-xmp", "--yes") == 0
    assert len(list(shoot.glob("*.xmp"))) == len(GOOD_PHOTOS)


def test_cull_lists_the_keepers_and_says_what_was_saved(shoot, tiny_model, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(cli, "STARTED", cli.STARTED - 7)  # the imports before main() count too
    assert _cull(shoot, tiny_model, tmp_path, "--keep-top", "50%") == 0
    out, err = capsys.readouterr()
    kept = out.split("kept:\n", 1)[1].splitlines()
    assert len([line for line in kept if line.startswith("  ")]) == len(GOOD_PHOTOS) // 2
    assert "nothing saved (add --write-xmp, --export or --copy-picks)" in out
    assert float(err.rsplit("done in ", 1)[1].rstrip("s\n")) >= 7
    assert _cull(shoot, tiny_model, tmp_path, "--keep-top", "50%", "--write-xmp", "--dry-run") == 0
    out = capsys.readouterr().out
    assert "dry run: nothing written" in out and "nothing saved" not in out
    assert not list(shoot.glob("*.xmp"))


def test_cull_shows_the_first_twenty_keepers_and_counts_the_rest(monkeypatch, capsys):
    from humanaes_core.cli.cull import _print_plan

    _print_plan("all", {p: d for p, d in _decisions(25, 0).items()})
    out = capsys.readouterr().out
    assert "k19.jpg" in out and "k20.jpg" not in out and "... and 5 more" in out


def test_csv_has_lettered_columns_overall_first_and_four_decimals(tmp_path, tiny_model, photo_dir):
    out = tmp_path / "cards.csv"
    photo = str(photo_dir / GOOD_PHOTOS[0])
    assert score_main([photo, "--model", str(tiny_model), "--out", str(out), "--no-cache", "--quiet"]) == 0
    with out.open(newline="") as fh:
        reader = csv.DictReader(fh)
        (row,) = list(reader)
    assert reader.fieldnames == CSV_COLUMNS
    assert reader.fieldnames[:4] == ["path", "level", "L_overall", "error"]
    assert "A_facial_brightness" in row and "K_environment" in row and "overall" not in row
    assert len(row["L_overall"].split(".")[1]) == 4 and len(row["head_lm"].split(".")[1]) == 4
    jsonl = tmp_path / "cards.jsonl"
    assert score_main([photo, "--model", str(tiny_model), "--out", str(jsonl), "--no-cache", "--quiet"]) == 0
    assert set(KEYS) <= set(json.loads(jsonl.read_text()))  # JSON keys stay the plain ones


def test_model_help_explains_precision_batch_size_and_tiles(capsys):
    with pytest.raises(SystemExit):
        score_main(["--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert "--precision {auto,fp32,fp16,bf16} number format" in help_text
    assert "--batch-size BATCH_SIZE photos per forward pass" in help_text
    assert "plus 1 overview" in help_text and "12 means up to 13" in help_text


def test_scoring_a_photo_prints_no_future_warning(tmp_path, tiny_model, photo_dir):
    photo = str(photo_dir / GOOD_PHOTOS[0])
    cmd = [
        sys.executable,
        "-W",
        "default",
        "-m",
        "humanaes_core.cli.score",
        photo,
        "--model",
        str(tiny_model),
    ]
    done = subprocess.run(
        [*cmd, "--out", str(tmp_path / "x.jsonl"), "--no-cache", "--quiet"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr
    assert "FutureWarning" not in done.stderr and "past_key_values" not in done.stderr


def test_a_fully_cached_run_does_not_import_torch(tmp_path, tiny_model, photo_dir):
    """Issue #14 item 17: reading cards back from the cache must not pay seconds for torch, nor the
    quarter of a second SQLAlchemy's import takes, nor numpy's (the checks are cached too)."""
    photos = [str(photo_dir / name) for name in GOOD_PHOTOS]
    cache, out = str(tmp_path / "lib.sqlite"), str(tmp_path / "cards.csv")
    args = [*photos, "--model", str(tiny_model), "--cache", cache, "--out", out, "--quiet", "--device", "cpu"]
    assert score_main(args) == 0  # fills the cache (in this process: torch is already here)
    probe = (
        "import sys; from humanaes_core.cli import score_main; code = score_main(sys.argv[1:]); "
        "names = ('torch', 'transformers', 'tqdm', 'sqlalchemy', 'numpy', 'PIL'); "
        "print(*(m in sys.modules for m in names)); sys.exit(code)"
    )
    for device in ("cpu", "auto"):
        argv = [*args[:-1], device]
        env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
        done = subprocess.run(
            [sys.executable, "-c", probe, *argv],
            capture_output=True,
            text=True,
            timeout=120,
            cwd=ROOT,
            env=env,
        )
        assert done.returncode == 0, done.stderr
        assert "from cache, 0 by the model, model not loaded" in done.stderr
        if device == "cpu" or not any(map(os.path.exists, ("/dev/nvidia0", "/dev/kfd", "/dev/dxg"))):
            assert done.stdout.split() == ["False"] * 6, device  # no bar with --quiet: no tqdm


@pytest.mark.parametrize("precision", ["auto", "fp32", "fp16", "bf16"])
def test_the_torch_free_cpu_placement_keys_cards_as_torch_does(precision):
    """A cached scan's CPU placement (no torch) must give the settings key the loaded model gives."""
    from humanaes_core.model import resolve
    from humanaes_core.scoring.scan import placement_for

    assert placement_for("cpu", precision, None).label == resolve("cpu", precision, None).label


def test_explain_adds_why_agreeing_with_each_rows_score(tmp_path, tiny_model, photo_dir, capsys):
    photos = [str(photo_dir / p) for p in GOOD_PHOTOS]
    out = tmp_path / "why.csv"
    args = [*photos, "--model", str(tiny_model), "--out", str(out), "--no-cache", "--quiet", "--explain"]
    assert score_main(args) == 0
    rows = list(csv.DictReader(out.open()))
    assert [r for r in rows if r["why"]] == rows and len(rows) == len(GOOD_PHOTOS)
    average = sum(float(r["L_overall"]) for r in rows) / len(rows)
    for row in rows:
        difference = float(row["L_overall"]) - average
        word = row["why"].split()[0]
        if abs(difference) >= 0.006:  # clear of "about the same" after the CSV's rounding
            assert word == ("Above" if difference > 0 else "Below"), row["why"]
        assert "the average of these photos" in row["why"]
    with pytest.raises(SystemExit):
        score_main(
            [*photos, "--model", str(tiny_model), "--out", str(out), "--heads", "overall", "--explain"]
        )
    assert "--explain needs the full card" in capsys.readouterr().err
