"""`humanaes-eval --protocol paper`: the release's question and pixels, and text_level ground truth.

The synthetic set's text_level words are chosen to differ from score_to_level(score), so a level
metric computed from the scores instead of the words cannot pass.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from humanaes_core.cli.evaluate import main as eval_main
from humanaes_core.data import Sample
from humanaes_core.evaluation.metrics import evaluate_samples, level_metrics, overall_metrics
from humanaes_core.model.prompts import OVERALL_QUESTIONS
from humanaes_core.schema import KEYS, LEVELS, score_to_level
from humanaes_core.scoring import ScoreCard, ScoreResult
from tests.conftest import synthetic_photo

RELEASE_QUESTION = "Rate the aesthetics of this human picture."
SCORES = [0.1, 0.3, 0.5, 0.7, 0.9]
WORDS = ["poor", "bad", "good", "fair", "excellent"]  # only the last agrees with its score's level


def test_level_metrics_use_the_given_words():
    assert [score_to_level(s) for s in SCORES] == list(LEVELS)
    assert level_metrics(SCORES, WORDS)["accuracy"] == pytest.approx(1 / 5)
    assert level_metrics(SCORES, [score_to_level(s) for s in SCORES])["accuracy"] == 1.0
    m = overall_metrics(SCORES, SCORES, WORDS)
    assert m["standard"]["accuracy"] == m["paper_compatible"]["accuracy"] == pytest.approx(1 / 5)
    assert m["standard"]["mae"] == 0.0  # the score metrics still compare with the scores
    assert overall_metrics(SCORES, SCORES)["standard"]["accuracy"] == 1.0


class _Scorer:
    """Cards that predict exactly the ground-truth score."""

    def __init__(self, by_path: dict[str, float]) -> None:
        self.by_path = by_path

    def score_iter(self, paths, heads="all"):
        for i, path in enumerate(paths):
            s = self.by_path[path]
            heads_ = {"lm": s, "regression": s, "expert": s, "metavoter": s}
            dims = dict.fromkeys(KEYS, s)
            card = ScoreCard(dims, heads_, score_to_level(s), [0.2] * 5, tiles=1, mode="all")
            yield ScoreResult(i, path, card=card)


def test_evaluate_samples_takes_text_level_only_in_the_paper_protocol(tmp_path):
    samples = [
        Sample(tmp_path / f"{i}.jpg", {"overall": s}, f"line {i}", level)
        for i, (s, level) in enumerate(zip(SCORES, WORDS, strict=True))
    ]
    samples.append(Sample(tmp_path / "x.jpg", {"overall": 0.9}, "line x", None))  # no word: its score's
    scorer = _Scorer({str(s.path): s.labels["overall"] for s in samples})
    paper = evaluate_samples(scorer, samples, progress=False, text_levels=True)
    standard = evaluate_samples(scorer, samples, progress=False)
    assert paper["overall"]["standard"]["accuracy"] == pytest.approx(2 / 6)
    assert standard["overall"]["standard"]["accuracy"] == 1.0
    assert paper["heads"]["regression"]["paper_compatible"]["accuracy"] == pytest.approx(2 / 6)
    assert paper["levels_from_text_level"] == 5 and standard["levels_from_text_level"] == 0


@pytest.fixture(scope="module")
def labelled(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("paper-set")
    lines = []
    for i, (score, word) in enumerate(zip(SCORES, WORDS, strict=True)):
        synthetic_photo(40 + i, (320, 240)).save(root / f"p{i}.jpg", quality=90)
        lines.append({"image_name": f"p{i}.jpg", "is_expert": False, "score": score, "text_level": word})
    (root / "test_label.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    return root


def test_cli_paper_protocol(tiny_model, labelled, tmp_path, capsys):
    out = tmp_path / "paper.json"
    code = eval_main(["--data", str(labelled), "--model", str(tiny_model), "--out", str(out), "--quiet",
                      "--device", "cpu", "--protocol", "paper"])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    report = json.loads(out.read_text())
    settings = report["settings"]
    assert settings["protocol"] == "paper" and settings["preset"] == "release"
    assert settings["question"] == RELEASE_QUESTION == OVERALL_QUESTIONS[1]
    assert report["levels_from_text_level"] == 5
    # the level metrics are the release-preset predictions' levels against the words
    from humanaes_core import load_scorer

    scorer = load_scorer(tiny_model, device="cpu", preset="release")
    preds = [c.dims["overall"] for c in scorer.score([labelled / f"p{i}.jpg" for i in range(len(SCORES))])]
    expected = level_metrics(preds, WORDS)
    assert report["overall"]["standard"]["accuracy"] == pytest.approx(expected["accuracy"])
    assert report["overall"]["paper_compatible"]["f1"] == pytest.approx(expected["f1"])


def test_cli_paper_protocol_refuses_other_tile_counts(tiny_model, labelled, tmp_path, capsys):
    args = ["--data", str(labelled), "--model", str(tiny_model), "--out", str(tmp_path / "r.json")]
    with pytest.raises(SystemExit) as exit_:
        eval_main([*args, "--protocol", "paper", "--max-tiles", "4"])
    assert exit_.value.code == 2
    assert "release's 12 tiles" in capsys.readouterr().err
