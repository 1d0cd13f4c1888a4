"""Issue #16 for the console scripts: every output path a user names passes the one guard before any work
starts, special files are written directly, OS errors and absurd numbers end in one line, paths that are
not UTF-8 print on a strict terminal, and CSV cells cannot become spreadsheet formulas."""

from __future__ import annotations

import csv
import errno
import io
import json
import os
import sqlite3
import stat
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from humanaes_core import culling
from humanaes_core.cli import echo, eval_main, import_main, printable, score_main
from humanaes_core.cli.cull import main as cull_main
from humanaes_core.culling import Decision, export_cards
from humanaes_core.files import atomic
from humanaes_core.formats import csv_text, write_csv
from humanaes_core.outputs import UnsafeOutputError
from humanaes_core.scoring import scan
from tests.conftest import synthetic_photo

RAW_NAME = b"caf\xe9.jpg"  # Latin-1 bytes: not valid UTF-8


@pytest.fixture
def shoot(tmp_path: Path) -> Path:
    folder = tmp_path / "shoot"
    folder.mkdir()
    for i in range(3):
        synthetic_photo(40 + i, (160, 120)).save(folder / f"IMG_{i}.jpg", quality=85)
    return folder


@pytest.fixture
def no_model(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail the test if a model is loaded: the guard must run before any scoring."""

    def refuse(*_a: object, **_k: object) -> None:
        raise AssertionError("the model was loaded before the output was checked")

    monkeypatch.setattr(scan, "load_scorer", refuse)


def _base(paths: list[str] | str, model: Path, cache: Path | None = None) -> list[str]:
    paths = [paths] if isinstance(paths, str) else paths
    flags = ["--cache", str(cache)] if cache else ["--no-cache"]
    return [*paths, "--model", str(model), "--device", "cpu", "--max-tiles", "1", "--quiet", *flags]


def _one_line_error(capsys: pytest.CaptureFixture[str], *words: str) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    (line,) = [line for line in err.splitlines() if line.startswith("error: ")]
    assert all(w in line for w in words), line
    return line


def _database(path: Path) -> bytes:
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE decisions (photo TEXT, rating INTEGER)")
        db.execute("INSERT INTO decisions VALUES ('IMG_0.jpg', 5)")
    sqlite3.connect(path).close()
    return path.read_bytes()


# ----------------------------------------------------------------------------- item 1: the one guard


def test_cull_export_onto_a_photo_is_refused_before_scoring_even_dry_run(shoot, tiny_model, capsys, no_model):
    photo = shoot / "IMG_1.jpg"
    before = photo.read_bytes()
    args = [*_base(str(shoot), tiny_model), "--keep-top", "50%", "--dry-run", "--export", str(photo)]
    assert cull_main(args) == 2
    _one_line_error(capsys, "--export", "IMG_1.jpg")
    assert photo.read_bytes() == before


def test_cull_export_onto_the_library_is_refused_before_sidecars_or_copies(
    shoot, tiny_model, capsys, no_model
):
    library = shoot.parent / "library.sqlite"
    before = _database(library)
    picks = shoot.parent / "picks"
    args = [*_base(str(shoot), tiny_model, library), "--keep-top", "50%", "--write-xmp"]
    assert cull_main([*args, "--copy-picks", str(picks), "--export", str(library)]) == 2
    _one_line_error(capsys, "--export", "SQLite database")
    assert library.read_bytes() == before
    assert not picks.exists() and not list(shoot.glob("*.xmp"))


def test_cull_export_onto_a_photo_under_a_text_name_is_refused(shoot, tiny_model, capsys, no_model):
    disguised = shoot.parent / "plan.csv"
    disguised.write_bytes((shoot / "IMG_0.jpg").read_bytes())
    before = disguised.read_bytes()
    assert cull_main([*_base(str(shoot), tiny_model), "--keep-top", "50%", "--export", str(disguised)]) == 2
    _one_line_error(capsys, "--export", "is a photo")
    assert disguised.read_bytes() == before


@pytest.mark.parametrize("target", ["cache.sqlite", "IMG_0.jpg", "sub"])
def test_score_out_that_is_not_ours_is_refused_before_scoring(shoot, tiny_model, capsys, no_model, target):
    (shoot / "sub").mkdir()
    if target == "cache.sqlite":
        _database(shoot / target)
    before = (shoot / target).read_bytes() if (shoot / target).is_file() else None
    assert score_main([*_base(str(shoot), tiny_model), "--out", str(shoot / target)]) == 2
    _one_line_error(capsys, "--out")
    assert before is None or (shoot / target).read_bytes() == before


@pytest.mark.parametrize("flag", ["--out", "--csv"])
def test_eval_outputs_are_checked_before_the_data_or_the_model(tmp_path, shoot, capsys, flag):
    library = tmp_path / "library.sqlite"
    before = _database(library)
    outs = {"--out": str(tmp_path / "report.json"), "--csv": str(tmp_path / "report.csv"), flag: str(library)}
    args = ["--data", str(tmp_path / "no-such-labels.jsonl"), "--model", str(tmp_path / "no-model")]
    assert eval_main([*args, "--out", outs["--out"], "--csv", outs["--csv"]]) == 2
    _one_line_error(capsys, flag, "SQLite database")  # not "labels not found": nothing was read first
    assert library.read_bytes() == before


def test_import_report_is_checked_before_anything_is_converted(tmp_path, shoot, capsys):
    photo = shoot / "IMG_2.jpg"
    before = photo.read_bytes()
    assert import_main([str(tmp_path / "no-src"), str(tmp_path / "out"), "--report", str(photo)]) == 2
    _one_line_error(capsys, "--report", "IMG_2.jpg")
    assert photo.read_bytes() == before and not (tmp_path / "out").exists()


def test_the_apps_export_goes_through_the_guard(shoot):
    photo = shoot / "IMG_0.jpg"
    before = photo.read_bytes()
    with pytest.raises(UnsafeOutputError, match=r"^export .*IMG_0\.jpg"):
        export_cards({}, photo)
    assert photo.read_bytes() == before


# ------------------------------------------------------------------ item 2: special files, item 10: OS errors


def test_out_dev_null_is_written_directly(shoot, tiny_model, capsys):
    assert score_main([*_base(str(shoot), tiny_model), "--out", "/dev/null"]) == 0
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)
    assert "Results: /dev/null" in capsys.readouterr().err
    args = [*_base(str(shoot), tiny_model), "--keep-top", "50%", "--dry-run", "--export", "/dev/null"]
    assert cull_main(args) == 0
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
def test_a_full_device_is_one_line(shoot, tiny_model, capsys):
    assert score_main([*_base(str(shoot), tiny_model), "--out", "/dev/full"]) == 2
    _one_line_error(capsys, "--out /dev/full", "the disk is full")


def test_disk_full_while_replacing_keeps_the_old_result(shoot, tiny_model, capsys, monkeypatch):
    out = shoot.parent / "scores.csv"
    out.write_text("path,overall\nold.jpg,0.5\n")

    def full(_fd: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", full)
    assert score_main([*_base(str(shoot), tiny_model), "--out", str(out)]) == 2
    _one_line_error(capsys, "--out", "the disk is full")
    assert out.read_text() == "path,overall\nold.jpg,0.5\n"
    assert sorted(p.name for p in out.parent.iterdir()) == ["scores.csv", "shoot"]  # no temp file left


def test_read_only_folder_is_one_line(shoot, tiny_model, capsys, monkeypatch):
    """A folder the user may not write to (simulated: the tests may run as root, who may write anywhere)."""

    def denied(*_a: object, **_k: object) -> None:
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES))

    monkeypatch.setattr(atomic, "tempfile", SimpleNamespace(mkstemp=denied))
    args = [*_base(str(shoot), tiny_model), "--keep-top", "50%", "--export", str(shoot.parent / "plan.json")]
    assert cull_main(args) == 2
    _one_line_error(capsys, "--export", "permission denied")


@pytest.mark.parametrize(
    ("flag", "value", "words"),
    [
        ("--max-tiles", "0", "from 1 to 40"),
        ("--max-tiles", "100000", "from 1 to 40"),
        ("--max-tiles", "many", "not a whole number"),
        ("--batch-size", "0", "from 1 to"),
        ("--max-gap", "-1", "0 or more"),
        ("--max-gap", "nan", "0 or more"),
        ("--max-hamming", "-1", "from 0 to 64"),
        ("--max-hamming", "65", "from 0 to 64"),
    ],
)
def test_absurd_numbers_are_usage_errors(shoot, tiny_model, capsys, no_model, flag, value, words):
    args = [str(shoot), "--model", str(tiny_model), "--keep-top", "50%", "--no-cache", flag, value]
    with pytest.raises(SystemExit) as exit_:
        cull_main(args)
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert f"argument {flag}: " in err and words in err and "Traceback" not in err


def test_score_refuses_max_tiles_beyond_the_documented_range(shoot, tiny_model, capsys, no_model):
    with pytest.raises(SystemExit):
        score_main([str(shoot), "--model", str(tiny_model), "--out", "-", "--max-tiles", "41"])
    assert "from 1 to 40" in capsys.readouterr().err


# ------------------------------------------------------------------------- item 9: names that are not UTF-8


@pytest.mark.parametrize("suffix", [".csv", ".json", ".jsonl"])
def test_cull_export_with_a_non_utf8_name_end_to_end(tmp_path, shoot, tiny_model, capsys, suffix):
    os.rename(shoot / "IMG_0.jpg", os.path.join(os.fsencode(shoot), RAW_NAME))
    out = tmp_path / f"plan{suffix}"
    assert cull_main([*_base(str(shoot), tiny_model), "--keep-top", "50%", "--export", str(out)]) == 0
    text = out.read_bytes().decode("utf-8")
    if suffix == ".csv":
        paths = [r["path"] for r in csv.DictReader(io.StringIO(text))]
        assert any(p.endswith("caf\\xe9.jpg") for p in paths)
    else:
        rows = json.loads(text) if suffix == ".json" else [json.loads(line) for line in text.splitlines()]
        assert os.path.join(os.fsencode(shoot), RAW_NAME) in {os.fsencode(r["path"]) for r in rows}
    assert "Traceback" not in capsys.readouterr().err


def test_printable_shows_undecodable_bytes_on_any_terminal():
    name = os.fsdecode(b"/shots/caf\xe9/\xff.jpg")
    assert printable(name) == "/shots/caf\\xe9/\\xff.jpg"
    assert printable("été \ud800", "ascii") == "\\xe9t\\xe9 \\ud800"
    assert printable("été", "utf-8") == "été"


@pytest.mark.parametrize("err", [False, True])
def test_echo_on_a_strict_stream(monkeypatch, err):
    raw = io.BytesIO()
    stream = io.TextIOWrapper(raw, encoding="utf-8", errors="strict")
    monkeypatch.setattr(sys, "stderr" if err else "stdout", stream)
    name = os.fsdecode(b"caf\xe9")
    echo(f"  {name}: kept 1, rejected 0", err=err)
    stream.flush()
    assert raw.getvalue() == b"  caf\\xe9: kept 1, rejected 0\n"


@pytest.mark.slow
def test_cull_prints_a_non_utf8_folder_under_a_strict_utf8_locale(tmp_path, shoot, tiny_model):
    folder = os.path.join(os.fsencode(tmp_path), b"d\xe9j\xe0")
    os.rename(shoot, folder)
    env = {**os.environ, "PYTHONIOENCODING": "utf-8:strict", "LC_ALL": "C.UTF-8", "PYTHONUTF8": "0"}
    code = "import sys; from humanaes_core.cli import cull_main; sys.exit(cull_main(sys.argv[1:]))"
    argv = [sys.executable, "-c", code, folder, *_base([], tiny_model), "--keep-top", "50%"]
    done = subprocess.run(argv, capture_output=True, env=env, timeout=300, check=False)
    assert done.returncode == 0, done.stderr.decode("utf-8", "replace")
    assert b"d\\xe9j\\xe0: kept" in done.stdout  # the per-folder line
    assert b"Traceback" not in done.stderr


# -------------------------------------------------------------------------------- item 13: CSV injection


@pytest.mark.parametrize(
    "cell", ["=1+2.jpg", "+cmd", "-2+3", "@SUM(A1)", "\tx", "\rx", '=HYPERLINK("x","open")']
)
def test_formula_cells_are_quoted(cell):
    assert csv_text(cell) == "'" + cell


@pytest.mark.parametrize("cell", ["-0.5", "+1e-3", 3, None, "IMG_1.jpg", "/shoot/=1+2.jpg", ""])
def test_numbers_and_plain_text_stay_as_they_are(cell):
    assert csv_text(cell) == cell


def test_negative_floats_stay_numbers_with_four_decimals():
    assert csv_text(-0.5) == "-0.5000" and csv_text(0.123456789) == "0.1235"


def test_csv_rows_are_neutralised_and_numbers_stay_numbers():
    fh = io.StringIO()
    write_csv([{"path": "=1+2.jpg", "error": "@bad", "overall": -0.5}], fh, ["path", "error", "overall"])
    (row,) = csv.DictReader(io.StringIO(fh.getvalue()))
    assert row == {"path": "'=1+2.jpg", "error": "'@bad", "overall": "-0.5000"}


def test_score_csv_neutralises_a_formula_name_and_json_stays_exact(tmp_path, tiny_model, monkeypatch):
    monkeypatch.chdir(tmp_path)
    synthetic_photo(7, (160, 120)).save(tmp_path / "=1+2.jpg")
    assert score_main([*_base("=1+2.jpg", tiny_model), "--out", "s.csv"]) == 0
    (row,) = csv.DictReader((tmp_path / "s.csv").open(newline=""))
    assert row["path"] == "'=1+2.jpg" and float(row["L_overall"]) >= 0
    assert score_main([*_base("=1+2.jpg", tiny_model), "--out", "s.jsonl"]) == 0
    assert json.loads((tmp_path / "s.jsonl").read_text())["path"] == "=1+2.jpg"


def test_cull_export_neutralises_a_formula_folder(tmp_path, shoot, tiny_model, monkeypatch):
    evil = '=HYPERLINK("https:evil.example","open")'
    os.rename(shoot, tmp_path / evil)
    monkeypatch.chdir(tmp_path)
    assert cull_main([*_base(evil, tiny_model), "--keep-top", "50%", "--export", "plan.csv"]) == 0
    rows = list(csv.DictReader((tmp_path / "plan.csv").open(newline="")))
    assert {r["group"] for r in rows} == {"'" + evil}
    assert all(r["path"].startswith("'=HYPERLINK(") for r in rows)
    assert {r["rating"] for r in rows} <= {"-1", "1", "2", "3", "4", "5"}  # numbers, unquoted


def test_eval_csv_cells_are_neutralised(tmp_path):
    from humanaes_core.evaluation import write_csv as write_report_csv

    report = {
        "heads": {"=evil": {"n": 2, "standard": {"mae": -0.5}, "paper_compatible": {}}},
        "dimensions": {},
    }
    write_report_csv(report, tmp_path / "m.csv")
    (row,) = csv.DictReader((tmp_path / "m.csv").open(newline=""))
    assert row["name"] == "'=evil" and row["value"] == "-0.5000"


# ------------------------------------------------------------------------------------------- small ones


def test_a_failed_copy_says_not_copied(shoot, tiny_model, capsys, monkeypatch):
    report = SimpleNamespace(
        copied=[], already_there=[], recovered=[], failed=[(shoot / "IMG_0.jpg", "no space")]
    )
    monkeypatch.setattr(culling, "copy_picks", lambda *a, **k: report)
    args = [*_base(str(shoot), tiny_model), "--keep-top", "50%", "--copy-picks", str(shoot.parent / "picks")]
    assert cull_main(args) == 1
    err = capsys.readouterr().err
    assert "not copied: " in err and "copyd" not in err


def test_decision_export_keeps_json_exact(tmp_path):
    photo = tmp_path / "=1+2.jpg"
    cards = {photo: None}
    export_cards(cards, tmp_path / "p.json", decisions={photo: Decision(False, -1, "rejected")})
    assert json.loads((tmp_path / "p.json").read_text())[0]["path"] == str(photo)
