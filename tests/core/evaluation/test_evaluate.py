"""Metrics on hand-computed inputs (standard and the official script's definitions) and humanaes-eval."""

from __future__ import annotations

import csv
import json
import math
import os
from pathlib import Path

import pytest

from humanaes_core.cli.evaluate import _write_json
from humanaes_core.cli.evaluate import main as eval_main
from humanaes_core.evaluation.metrics import (
    METRICS,
    PAPER,
    REPORT_HEADS,
    STANDARD,
    compute,
    dimension_metrics,
    json_safe,
    overall_metrics,
    table2,
    table3,
)
from humanaes_core.schema import BY_KEY, HEAD_NAMES, KEYS, to_official
from tests.conftest import synthetic_photo

PRED = [0.1, 0.4, 0.35, 0.8]
TARGET = [0.2, 0.3, 0.5, 0.9]
# differences -0.1, 0.1, -0.15, -0.1: squared mean 0.013125, absolute mean 0.1125


def test_distance_metrics_match_their_formulas():
    m = compute(("mse", "rmse", "mae", "paper_mse", "paper_mae"), PRED, TARGET)
    assert m["mse"] == pytest.approx(0.013125)
    assert m["rmse"] == pytest.approx(math.sqrt(0.013125))
    assert m["mae"] == pytest.approx(0.1125)
    # the official script: "MSE" = sqrt(mean((x-y)^2) + 1e-8), "MAE" = sqrt(mean(|x-y|) + 1e-8)
    assert m["paper_mse"] == pytest.approx(math.sqrt(0.013125 + 1e-8), rel=1e-12)
    assert m["paper_mae"] == pytest.approx(math.sqrt(0.1125 + 1e-8), rel=1e-12)
    assert compute(("paper_mse", "paper_mae"), [0.5], [0.5]) == {"paper_mse": 1e-4, "paper_mae": 1e-4}


def test_correlations_signed_and_paper_absolute():
    # one discordant pair of six: Kendall (5 - 1) / 6; Spearman 1 - 6·2/(4·15) = 0.8 (ranks = values)
    m = compute(("plcc", "srcc", "krcc"), [1, 2, 3, 4], [1, 3, 2, 4])
    assert m == pytest.approx({"plcc": 0.8, "srcc": 0.8, "krcc": 4 / 6})
    reversed_ = compute(
        ("plcc", "srcc", "krcc", "paper_plcc", "paper_srcc", "paper_krcc"), [1, 2, 3, 4, 5], [5, 4, 3, 2, 1]
    )
    assert reversed_ == pytest.approx(
        {"plcc": -1, "srcc": -1, "krcc": -1, "paper_plcc": 1, "paper_srcc": 1, "paper_krcc": 1}
    )
    cubic = compute(("plcc", "srcc"), [1, 2, 3, 10], [1, 8, 27, 1000])
    assert cubic["srcc"] == pytest.approx(1.0) and cubic["plcc"] < 0.999


def test_json_safe_turns_nan_into_null():
    assert json_safe({"a": [math.nan, 1.0], "b": (0.5, math.nan)}) == {"a": [None, 1.0], "b": [0.5, None]}


def test_undefined_correlations_are_nan():
    m = compute(("plcc", "srcc", "krcc", "paper_srcc"), [0.5, 0.5, 0.5], [0.1, 0.2, 0.3])
    assert all(math.isnan(v) for v in m.values())
    assert math.isnan(compute(("mae",), [], [])["mae"])
    with pytest.raises(ValueError, match="equal length"):
        compute(("mae",), [0.1, 0.2], [0.1])


def test_level_metrics_on_a_known_confusion():
    # levels: pred bad, poor, fair, good, exc, exc; truth bad, fair, fair, good, exc, good
    pred = [0.1, 0.3, 0.5, 0.7, 0.9, 0.9]
    target = [0.1, 0.5, 0.5, 0.7, 0.9, 0.7]
    m = compute(("accuracy", "precision", "recall", "f1"), pred, target)
    assert m["accuracy"] == pytest.approx(4 / 6)
    assert m["precision"] == pytest.approx((1 + 0 + 1 + 1 + 0.5) / 5)
    assert m["recall"] == pytest.approx((1 + 0 + 0.5 + 0.5 + 1) / 5)
    assert m["f1"] == pytest.approx((1 + 0 + 3 * (2 / 3)) / 5)
    # the code's boundaries: 0.6 is good, 0.5999 fair
    assert compute(("accuracy",), [0.6], [0.79])["accuracy"] == 1.0
    assert compute(("accuracy",), [0.5999], [0.6])["accuracy"] == 0.0


def test_registry_is_complete_and_documented():
    for name in (*STANDARD, *PAPER):
        assert METRICS[name].doc and METRICS[name].label
    for name in ("mse", "mae", "plcc", "srcc", "krcc"):
        assert f"paper_{name}" in PAPER
        assert METRICS[f"paper_{name}"].higher_is_better == METRICS[name].higher_is_better


def test_dimension_metrics_count_only_labelled_photos():
    dims = dimension_metrics({"environment": [0.5, 0.7]}, {"environment": [0.4, 0.9]})
    assert dims["environment"]["n"] == 2
    assert dims["environment"]["mae"] == pytest.approx(0.15)
    assert dims["environment"]["paper_mae"] == pytest.approx(math.sqrt(0.15 + 1e-8))
    assert dims["looks"]["n"] == 0 and math.isnan(dims["looks"]["mae"])
    assert list(dims) == list(KEYS)


def test_tables_are_shaped_like_the_paper():
    entry = overall_metrics(PRED, TARGET)
    report = {
        "overall": entry,
        "heads": dict.fromkeys(("metavoter", "lm", "regression", "expert"), entry),
        "dimensions": dimension_metrics({"overall": PRED}, {"overall": TARGET}),
    }
    t2 = table2(report, "mine")
    for column in ("MSE* ↓", "MAE* ↓", "PLCC* ↑", "SRCC* ↑", "KRCC* ↑", "Accuracy ↑", "F1 Score ↑", "RMSE ↓"):
        assert column in t2
    assert "| mine " in t2 and "regression head" in t2
    assert f"{math.sqrt(0.1125 + 1e-8):.4f}" in t2  # MAE* of the known input
    t3 = table3(report, "mine")
    for key in KEYS:
        assert BY_KEY[key].name in t3
    assert "n/a" in t3  # dimensions without labels


# ------------------------------------------------------------------------------------------ humanaes-eval


@pytest.fixture(scope="module")
def labelled(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("eval-data")
    rows = []
    for i in range(6):
        name = f"p{i}.jpg"
        synthetic_photo(10 + i, (96, 64)).save(root / name)
        if i % 2:
            dims = {k: 0.1 + 0.05 * i + 0.01 * j for j, k in enumerate(KEYS)}
            rows.append({"image_name": name, "is_expert": True, "score": to_official(dims)})
        else:
            rows.append({"image_name": name, "is_expert": False, "score": 0.15 * i + 0.1})
    (root / "test_label.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return root


def test_humanaes_eval_writes_json_csv_and_prints_tables(tiny_model, labelled, tmp_path, capsys):
    out, table = tmp_path / "m.json", tmp_path / "m.csv"
    args = ["--data", str(labelled), "--model", str(tiny_model), "--out", str(out), "--csv", str(table)]
    assert eval_main([*args, "--device", "cpu", "--max-tiles", "1", "--quiet"]) == 0
    report = json.loads(out.read_text())
    assert report["overall"]["n"] == 6 and report["scored"] == 6
    assert set(report["overall"]["paper_compatible"]) == set(PAPER)
    assert set(report["overall"]["standard"]) == set(STANDARD)
    assert report["dimensions"]["environment"]["n"] == 3 and report["dimensions"]["overall"]["n"] == 6
    assert report["data"]["format"] == "humanbeauty" and len(report["data"]["fingerprint"]) == 16
    assert report["model"]["fingerprint"] and set(report["heads"]) == {
        "metavoter",
        "lm",
        "regression",
        "expert",
    }
    printed = capsys.readouterr().out
    assert "Table 2, paper-compatible" in printed and "Facial Brightness" in printed
    rows = list(csv.DictReader(table.open()))
    assert {"section", "name", "metric", "value", "n"} <= set(rows[0])
    assert any(r["name"] == "looks" and r["metric"] == "paper_mae" for r in rows)


def test_humanaes_eval_reports_bad_data_without_traceback(tiny_model, tmp_path, capsys):
    (tmp_path / "l.csv").write_text("path,overall\nmissing.jpg,0.5\n")
    code = eval_main(
        ["--data", str(tmp_path / "l.csv"), "--model", str(tiny_model), "--out", str(tmp_path / "o.json")]
    )
    assert code == 2
    assert "l.csv:2: image not found" in capsys.readouterr().err
    assert not (tmp_path / "o.json").exists()


def test_humanaes_eval_help(capsys):
    with pytest.raises(SystemExit) as info:
        eval_main(["--help"])
    assert info.value.code == 0
    assert "paper_compatible" in capsys.readouterr().out


def test_report_with_an_undecodable_file_name_is_written_and_keeps_it(tmp_path):
    """A skipped photo whose name is not UTF-8 (lone surrogates in Python) must not crash the report."""
    name = os.fsdecode(b"/photos/caf\xe9.jpg")
    out = tmp_path / "reports" / "r.json"
    _write_json({"skipped": [{"path": name, "reason": "0 stars"}], "srcc": math.nan}, out)
    back = json.loads(out.read_text(encoding="utf-8"))
    assert os.fsencode(back["skipped"][0]["path"]) == b"/photos/caf\xe9.jpg" and back["srcc"] is None
    assert [p.name for p in out.parent.iterdir()] == ["r.json"]  # no temporary file left behind


def test_report_lists_the_final_score_first_then_every_card_head():
    assert REPORT_HEADS[0] == "metavoter" and sorted(REPORT_HEADS) == sorted(HEAD_NAMES)
