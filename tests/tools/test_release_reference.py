"""tools/release_reference.py's pure parts, on a fake release model (the real one needs the network).

The fake has the release's shape where it matters: heads as sub-modules named like InternVL's
(language_model.lm_regression_head, expert_head, meta_voter, language_model.lm_head), methods
score/run_metavoter/expert_score that tokenise a prompt and run the heads, one of them failing.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[2]
H, V = 16, 40


def _tool():
    spec = importlib.util.spec_from_file_location("release_reference", ROOT / "tools/release_reference.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("release_reference", module)
    spec.loader.exec_module(module)
    return module


tool = _tool()


class FakeTokenizer:
    def __call__(self, text, return_tensors=None):
        return {"input_ids": torch.tensor([self.encode(text)])}

    def encode(self, text, add_special_tokens=False):
        return [3 + (ord(c) % (V - 3)) for c in text]

    def __len__(self):
        return V


class Lm(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(V, H)
        self.lm_regression_head = nn.Linear(H, 1)
        self.lm_head = nn.Linear(H, V)


class FakeRelease(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.language_model = Lm()
        self.expert_head = nn.ModuleDict({"leaves": nn.Linear(H, 9), "root": nn.Linear(3, 1)})
        self.meta_voter = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 1))

    def forward(self, pixel_values, input_ids):
        return self.language_model.embed(input_ids) + pixel_values.mean()

    def _hidden(self, tokenizer, pixel_values, question):
        ids = tokenizer(question, return_tensors="pt")["input_ids"]
        h = self(pixel_values, ids)
        self.language_model.lm_head(h)
        return h[:, -1]

    def score(self, tokenizer, pixel_values, question):
        hidden = self._hidden(tokenizer, pixel_values, question)
        return float(torch.sigmoid(self.language_model.lm_regression_head(hidden)).detach())

    def run_metavoter(self, tokenizer, pixel_values):
        reg = self.score(tokenizer, pixel_values, "<image>\nq")
        x = torch.tensor([[0.5, reg, 0.4]])
        return float(self.meta_voter(x))

    def expert_score(self, tokenizer, pixel_values):
        h = self._hidden(tokenizer, pixel_values, "<image>\nq from 12 different dimensions.")
        leaves = self.expert_head["leaves"](h)
        return [*leaves[0].tolist(), 0.1, 0.2, 0.3], "1. Facial Brightness : good"


def test_hash_is_of_the_float32_bytes():
    t = torch.arange(6, dtype=torch.float16).reshape(2, 3)
    want = hashlib.sha256(np.arange(6, dtype="<f4").reshape(2, 3).tobytes()).hexdigest()
    assert tool.tensor_sha256(t) == want
    assert tool.tensor_sha256(t.t()) != want  # C order of the values as they stand


def test_summary_and_pixel_record():
    row = torch.arange(20.0).reshape(2, 10)
    s = tool.summary(row)
    assert s["shape"] == [2, 10] and s["first"] == [10.0, 11, 12, 13, 14, 15, 16, 17]
    assert s["norm"] == pytest.approx(float(row[1].norm())) and len(s["values"]) == 20
    assert "values" not in tool.summary(torch.zeros(3, 100))
    record = tool.pixel_record(torch.ones(1, 3, 4, 4))
    assert record["shape"] == [1, 3, 4, 4] and record["stats"]["mean"] == 1.0


def test_jsonable_handles_what_a_call_returns():
    assert tool.jsonable((torch.tensor([0.5, float("nan")]), "text", {"a": np.float32(0.25)})) == [
        [0.5, None],
        "text",
        {"a": 0.25},
    ]
    big = tool.jsonable(torch.zeros(tool.MAX_OUTPUT_VALUES + 1))
    assert big["shape"] == [tool.MAX_OUTPUT_VALUES + 1]


def test_heads_are_found_by_name_outermost_first():
    found = tool.find_heads(FakeRelease())
    assert {role: name for role, (name, _) in found.items()} == {
        "regression": "language_model.lm_regression_head",
        "lm": "language_model.lm_head",
        "expert": "expert_head.leaves",  # the container is never called: its first called part
        "metavoter": "meta_voter",
    }


def test_record_photo_books_prompts_forwards_and_heads_per_call(tmp_path):
    model, tok = FakeRelease(), FakeTokenizer()
    recorder = tool.Recorder(tool.level_ids(tok))
    assert set(recorder.attach(model)) == {"regression", "lm", "expert", "metavoter"}
    pixels = torch.full((2, 3, 4, 4), 0.1)
    with torch.no_grad():
        calls = tool.record_photo(model, tok, recorder, pixels, "<image>\nRate it.")
    recorder.detach()
    assert set(calls) == set(tool.CALLS)
    score = calls["score"]
    assert score["error"] is None and 0 < score["output"] < 1
    assert score["prompts"][0]["text"] == "<image>\nRate it."
    assert score["prompts"][0]["input_ids"] == [tok.encode("<image>\nRate it.")]
    assert score["forward_ids"] == [tok.encode("<image>\nRate it.")]
    reg = score["heads"]["regression"]["calls"][0]
    assert reg["input"]["shape"] == [1, H] and len(reg["output"]["values"]) == 1
    lm = score["heads"]["lm"]["calls"][0]
    assert lm["output"] is None and set(lm["level_logits"]) == {str(i) for i in recorder.level_token_ids}
    voter = calls["run_metavoter"]["heads"]["metavoter"]["calls"][0]
    assert voter["input"]["values"][0] == 0.5 and "expert" not in calls["run_metavoter"]["heads"]
    expert = calls["expert_score"]
    assert len(expert["output"]) == 12 and expert["text"].startswith("1. Facial")
    assert expert["heads"]["expert"]["module"] == "expert_head.leaves"
    assert expert["heads"]["expert"]["calls"][0]["input"]["shape"] == [1, H]  # the hidden state it read
    # outside a call nothing is recorded, and the hooks are gone after detach
    model.score(tok, pixels, "x")
    assert len(calls["score"]["heads"]["regression"]["calls"]) == 1
    out = tmp_path / "reference.json"
    tool.write_json({"format": tool.FORMAT, "samples": [{"calls": calls}]}, out)
    assert json.loads(out.read_text())["samples"][0]["calls"]["score"]["output"] == score["output"]


def test_a_failing_call_is_recorded_and_the_others_still_run():
    model, tok = FakeRelease(), FakeTokenizer()
    model.run_metavoter = lambda *_: (_ for _ in ()).throw(RuntimeError("no MetaVoter weights"))
    recorder = tool.Recorder()
    recorder.attach(model)
    calls = tool.record_photo(model, tok, recorder, torch.zeros(1, 3, 4, 4), "q")
    assert calls["run_metavoter"]["error"] == "RuntimeError: no MetaVoter weights"
    assert calls["expert_score"]["error"] is None and calls["score"]["output"] is not None


def test_release_tiling_matches_internvl_grids():
    from PIL import Image

    tiles = list(tool._tiles(Image.new("RGB", (900, 600)), 12, 448))
    assert len(tiles) == 7 and all(t.size == (448, 448) for t in tiles)  # 3x2 grid + thumbnail
    assert len(list(tool._tiles(Image.new("RGB", (500, 500)), 12, 448))) == 1


def test_write_json_refuses_nan_and_keeps_the_old_file(tmp_path):
    out = tmp_path / "reference.json"
    out.write_text("{}")
    with pytest.raises(ValueError):
        tool.write_json({"x": float("nan")}, out)
    assert out.read_text() == "{}" and list(tmp_path.iterdir()) == [out]


def test_main_checks_its_arguments(tmp_path, capsys):
    with pytest.raises(SystemExit):
        tool.main([str(tmp_path / "missing.jpg")])
    assert "not a file" in capsys.readouterr().err
