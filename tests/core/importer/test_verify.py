"""`--verify`: references made by our own models with other open fields are recovered exactly.

A reference here is written in tools/release_reference.py's schema (its `summary` and `pixel_record`
make the parts they share), from one of our models with some open fields changed: the regression
head's activation, L's input order, the MetaVoter's input order, the question. Verifying a copy that
still has the defaults must find exactly the changed combination and write it into humanaes.json.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import shutil
import sys
from pathlib import Path

import pytest
import torch

from humanaes_core.importer.reference import VerifyError, read_reference
from humanaes_core.importer.verify import (
    Tolerance,
    current_fields,
    head_values,
    photo_states,
    scored,
    verify_import,
)
from humanaes_core.model import HumanAesModel, load_model, preprocess, read_meta
from humanaes_core.model import verify as verify_manifest
from humanaes_core.model.prompts import PromptConfig
from humanaes_core.schema import OFFICIAL_ORDER
from humanaes_core.scoring import tile_config_for
from tests.conftest import synthetic_photo

ROOT = Path(__file__).resolve().parents[3]
TIGHT = Tolerance(score=1e-4, hidden=1e-3)  # same device, same precision: only float noise differs
DEFAULTS = current_fields({})
CHANGED = {
    "regression_activation": "sigmoid",
    "expert_l_inputs": ["facial_aesthetic", "environment", "general_appearance_aesthetic"],
    "metavoter_inputs": ["regression", "lm", "expert"],
}


def release_tool():
    spec = importlib.util.spec_from_file_location("release_reference", ROOT / "tools/release_reference.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("release_reference", module)
    spec.loader.exec_module(module)
    return module


def _loaded(model_dir: Path) -> tuple[HumanAesModel, object]:
    model, meta = load_model(model_dir, device=torch.device("cpu"), dtype=torch.float32)
    return model, tile_config_for(meta, max_tiles=4, fast_decode=True)


def make_reference(model: HumanAesModel, tiles, photos: list[Path], fields: dict, out: Path) -> Path:
    """What tools/release_reference.py would record from a release that reads its heads with `fields`."""
    tool = release_tool()
    samples = []
    for photo in photos:
        px = preprocess(photo, tiles)
        states = photo_states(model, px)
        v = head_values(model, states, fields)  # what each head read, and the MetaVoter's inputs
        v.update({k: s for k, s in scored(model, states, fields).items() if k != "level_logits"})
        lay = model.layout(px.shape[0])
        overall, dims = lay.prefix_ids + lay.overall_ids, lay.prefix_ids + lay.dims_ids
        logits = {str(i): float(states.lm_row[i]) for i in model.level_token_ids}
        summary = tool.summary

        def head(name: str, call: dict) -> dict:
            return {"module": name, "type": "Linear", "calls": [call]}

        calls = {
            "score": {
                "output": v["regression"],
                "forward_ids": [overall],
                "heads": {
                    "regression": head("lm_regression_head", {
                        "input": summary(v["reg_hidden"]),
                        "output": summary(torch.tensor([v["regression"]]))}),
                    "lm": head("lm_head", {"input": summary(states.lm_hidden), "level_logits": logits}),
                },
            },
            "run_metavoter": {
                "output": v["metavoter"],
                "forward_ids": [overall, dims],
                "heads": {"metavoter": head("meta_voter", {
                    "input": summary(torch.tensor(v["metavoter_in"])),
                    "output": summary(torch.tensor([v["metavoter"]]))})},
            },
            "expert_score": {
                "output": [v["expert"][k] for k in OFFICIAL_ORDER],
                "text": "...",
                "forward_ids": [dims],
                "heads": {"expert": head("expert_head", {"input": summary(v["exp_hidden"]), "output": None})},
            },
        }  # fmt: skip
        samples.append(
            {
                "file": photo.name,
                "path": str(photo),
                "file_sha256": hashlib.sha256(photo.read_bytes()).hexdigest(),
                "pixel_values": tool.pixel_record(px),
                "calls": calls,
            }
        )
    settings = {"max_num": tiles.max_tiles}
    reference = {"format": tool.FORMAT, "version": tool.VERSION, "settings": settings, "samples": samples}
    tool.write_json(reference, out)
    return out


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    root = tmp_path_factory.mktemp("verify-photos")
    shutil.copy(ROOT / "resources/samples/astronaut.jpg", root / "astronaut.jpg")
    synthetic_photo(5, (700, 400)).save(root / "wide.jpg", quality=90)
    synthetic_photo(6, (300, 500)).save(root / "tall.png")
    return sorted(root.iterdir())


@pytest.fixture(scope="module")
def loaded(tiny_model: Path):
    return _loaded(tiny_model)


def _copy(tiny_model: Path, dst: Path) -> Path:
    shutil.copytree(tiny_model, dst)
    return dst


def test_same_fields_match_every_stage(tiny_model, loaded, photos, tmp_path):
    model, tiles = loaded
    ref = make_reference(model, tiles, photos, DEFAULTS, tmp_path / "reference.json")
    out = _copy(tiny_model, tmp_path / "copy")
    report = verify_import(out, ref, model, tiles, tol=TIGHT)
    assert report.ok, report.table()
    assert report.changed == {} and report.prompt == {}
    stages = {s.stage: s for s in report.stages}
    assert {"pixels", "ids: score", "ids: expert_score", "lm level logits", "regression head input"} <= set(
        stages
    )
    assert all(stages[h].matched and stages[h].max_diff < 1e-4 for h in ("regression", "expert", "metavoter"))
    assert stages["pixels"].max_diff == 0.0
    stored = json.loads((out / "humanaes.json").read_text())["open_fields"]
    assert stored["evidence"]["metavoter_inputs"] == "verify: reference.json"
    verify_manifest(out)  # the rewritten humanaes.json is signed again


def test_changed_fields_are_recovered_exactly(tiny_model, loaded, photos, tmp_path):
    model, tiles = loaded
    fields = {**DEFAULTS, **CHANGED}
    ref = make_reference(model, tiles, photos, fields, tmp_path / "reference.json")
    out = _copy(tiny_model, tmp_path / "copy")
    report = verify_import(out, ref, model, tiles, tol=TIGHT)
    assert report.ok, report.table()
    assert report.changed == CHANGED, report.table()
    stored = json.loads((out / "humanaes.json").read_text())["open_fields"]
    assert {k: stored[k] for k in CHANGED} == CHANGED
    assert all(stored["evidence"][k] == "verify: reference.json" for k in CHANGED)
    verify_manifest(out)
    read_meta(out)  # still a valid checkpoint description
    # verified again, the written fields reproduce the reference as they stand
    again = verify_import(out, ref, model, tiles, tol=TIGHT, write=False)
    assert again.ok and again.changed == {}, again.table()


def test_reading_position_and_layer_are_found(tiny_model, loaded, photos, tmp_path):
    model, tiles = loaded
    changed = {"head_hidden": "last_layer", "head_position": "answer_start", "expert_activation": "sigmoid"}
    ref = make_reference(model, tiles, photos, {**DEFAULTS, **changed}, tmp_path / "reference.json")
    report = verify_import(_copy(tiny_model, tmp_path / "copy"), ref, model, tiles, tol=TIGHT)
    assert report.ok, report.table()
    assert report.changed == changed


def test_the_question_is_found_from_the_ids(tiny_model, loaded, photos, tmp_path):
    model, tiles = loaded
    asked = PromptConfig(**{**model.prompt.to_dict(), "question_index": 3})
    other = HumanAesModel(model.backbone, model.heads, model.tokenizer, asked, model.num_image_token)
    ref = make_reference(other, tiles, photos[:1], DEFAULTS, tmp_path / "reference.json")
    out = _copy(tiny_model, tmp_path / "copy")
    report = verify_import(out, ref, model, tiles, tol=TIGHT)
    assert report.prompt == {"question_index": 3}, report.table()
    assert report.ok, report.table()
    assert json.loads((out / "humanaes.json").read_text())["prompt"]["question_index"] == 3
    verify_manifest(out)


def test_a_head_nothing_reproduces_is_reported_not_written(tiny_model, loaded, photos, tmp_path):
    model, tiles = loaded
    ref_path = make_reference(model, tiles, photos[:1], DEFAULTS, tmp_path / "reference.json")
    ref = json.loads(ref_path.read_text())
    ref["samples"][0]["calls"]["run_metavoter"]["output"] += 0.5
    ref_path.write_text(json.dumps(ref))
    out = _copy(tiny_model, tmp_path / "copy")
    report = verify_import(out, ref_path, model, tiles, tol=TIGHT)
    stages = {s.stage: s for s in report.stages}
    assert stages["metavoter"].matched is False and not report.ok
    assert abs(stages["metavoter"].max_diff - 0.5) < 0.2
    evidence = json.loads((out / "humanaes.json").read_text())["open_fields"]["evidence"]
    assert "metavoter_inputs" not in evidence and evidence["regression_activation"].startswith("verify")
    assert "| metavoter" in report.table()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("not json", "cannot read"),
        ('{"format": "other"}', "not a reference"),
        ('{"format": "humanaes-release-reference", "version": 1, "samples": []}', "no samples"),
    ],
)
def test_unusable_references_are_one_line(tmp_path, content, message):
    path = tmp_path / "reference.json"
    path.write_text(content)
    with pytest.raises(VerifyError, match=message):
        read_reference(path)


def test_cli_import_then_verify(sources, imported, photos, tmp_path, capsys):
    """humanaes-import SRC OUT --verify: the original-layout source, a reference with other fields."""
    from humanaes_core.cli.imports import main

    model, tiles = _loaded(imported["qwen2"][1])
    changed = {"regression_activation": "sigmoid", "metavoter_inputs": ["expert", "regression", "lm"]}
    ref = make_reference(model, tiles, photos[:2], {**DEFAULTS, **changed}, tmp_path / "ref.json")
    out = tmp_path / "verified"
    code = main([str(sources["qwen2"]), str(out), "--quiet", "--verify", str(ref), "--verify-preset", "none",
                 "--verify-tolerance", "1e-4"])  # fmt: skip
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "| stage" in captured.out and "regression_activation=sigmoid" in captured.out
    stored = json.loads((out / "humanaes.json").read_text())["open_fields"]
    assert {k: stored[k] for k in changed} == changed
    verify_manifest(out)
    bad = tmp_path / "bad.json"
    bad.write_text("{}")
    assert main([str(sources["qwen2"]), str(tmp_path / "o2"), "--quiet", "--verify", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "not a reference" in err and "Traceback" not in err
    assert not (tmp_path / "o2").exists()  # the reference is read before anything is converted
