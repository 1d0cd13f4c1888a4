"""The static reader of the release's modeling code, its place in the import, and the self-check."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
import torch

from humanaes_core.importer import import_checkpoint, plan_import, read_modeling
from humanaes_core.importer.selfcheck import judge, run_self_check
from humanaes_core.model import HeadOutputs, OpenFields
from humanaes_core.model.meta import read_meta
from humanaes_core.schema import KEYS
from tests.core.importer.modeling_variants import (
    CONFIGURATION,
    PAYLOADS,
    SENTINEL,
    VARIANTS,
    modeling_source,
)
from tests.core.importer.originals import original_tensors, variant_copy


def snapshot(root: Path, **changes: str) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "modeling_internvl_chat.py").write_text(modeling_source(**changes))
    (root / "configuration_internvl_chat.py").write_text(CONFIGURATION)
    return root


@pytest.mark.parametrize("name", list(VARIANTS))
def test_the_reader_fills_every_field_the_variant_sets(tmp_path, name):
    changes, expected = VARIANTS[name]
    ev = read_modeling(snapshot(tmp_path / name, **changes))
    assert ev.not_understood == []
    for key, value in expected.items():
        if value is not None:
            assert ev.values.get(key) == value, key
            assert ev.where[key].startswith("modeling_internvl_chat.py:"), key
    fields = ev.open_fields()
    for key in expected:
        if key in OpenFields.names():
            assert fields.source_of(key).startswith("modeling_internvl_chat.py:"), key


def test_every_open_field_is_read_with_a_non_default_value_somewhere(tmp_path):
    default = OpenFields()
    changed = set()
    for name, (changes, _) in VARIANTS.items():
        ev = read_modeling(snapshot(tmp_path / name, **changes))
        fields = ev.open_fields()
        changed |= {
            n for n in fields.read() if n in OpenFields.names() and getattr(fields, n) != getattr(default, n)
        }
        if ev.values.get("template") not in (None, "internvl_chat"):
            changed.add("template")
    assert changed == {*OpenFields.names(), "template"}


def test_the_prompt_follows_the_code(tmp_path):
    from humanaes_core.model import PromptConfig

    ev = read_modeling(snapshot(tmp_path / "s", **VARIANTS["swift_answer_start_sigmoid"][0]))
    prompt = ev.prompt(PromptConfig(question_index=0))
    assert prompt.template == "swift_internvl2" and prompt.query_newlines == 2
    assert prompt.overall_questions[prompt.question_index] == "Rate the aesthetics of this human picture."


def test_a_planted_payload_never_runs(tmp_path, monkeypatch):
    root = snapshot(tmp_path / "evil", **PAYLOADS)
    monkeypatch.chdir(root)  # the decorator's and default argument's relative paths land here
    before = set(sys.modules)
    ev = read_modeling(root)
    assert not list(tmp_path.rglob(SENTINEL)) and not list(tmp_path.rglob("configuration-payload-ran"))
    assert not {m for m in set(sys.modules) - before if "internvl" in m or "modeling" in m}
    assert ev.values["head_position"] == "answer_start"  # still read, nothing run
    # control: the payload does leave the sentinel when it runs, so its absence above means something
    exec(compile(PAYLOADS["payload_module"], "payload", "exec"), {"__file__": str(root / "m.py"), "os": os})
    assert (root / SENTINEL).exists()


@pytest.mark.parametrize(
    ("code", "named"),
    [
        ({"reg_read": "        hidden = self.pool(outputs)"}, "which hidden state is not recognised"),
        ({"reg_read": "        hidden = outputs.hidden_states[-1][:, 3]"}, "which token is not recognised"),
        ({"voter_inputs": "self.inputs"}, "MetaVoter inputs"),
        ({"levels": "load_levels()"}, "level words score() reads are not a literal list"),
        ({"overall": "self.expert_head4(x)"}, "root's inputs are not F, J and K"),
    ],
)
def test_what_the_reader_does_not_understand_is_named_and_the_default_kept(tmp_path, code, named):
    ev = read_modeling(snapshot(tmp_path / "odd", **code))
    assert any(named in line for line in ev.not_understood), ev.not_understood
    fields = ev.open_fields()
    assert all(":" in fields.source_of(n) for n in fields.read())


def test_unparsable_and_missing_files_are_named(tmp_path):
    (tmp_path / "modeling_internvl_chat.py").write_text("def broken(:\n")
    ev = read_modeling(tmp_path)
    assert any("cannot be parsed" in line for line in ev.not_understood)
    assert read_modeling(tmp_path / "nothing").not_understood  # no modeling file at all
    assert ev.open_fields() == OpenFields(evidence={})


def _renumbered(sources: dict[str, Path], root: Path) -> Path:
    """The qwen2 source with its expert head as expert_head1 (leaves) … expert_head4, like the fixture."""

    def edit(t: dict) -> None:
        for old, new in (
            ("expert_head3", "expert_head4"),
            ("expert_head2", "expert_head3"),
            ("expert_head1", "expert_head2"),
        ):
            for name in [n for n in t if f".{old}." in n]:
                t[name.replace(f".{old}.", f".{new}.")] = t.pop(name)
        for name in [n for n in t if n.startswith("language_model.expert_head.")]:
            t[name.replace("expert_head.", "expert_head1.")] = t.pop(name)
        for p in ("weight", "bias"):  # a 12-wide regression head
            w = t[f"language_model.lm_regression_head.{p}"]
            t[f"language_model.lm_regression_head.{p}"] = w.repeat(12, *([1] * (w.dim() - 1)))

    return variant_copy(sources["qwen2"], root, edit)


def test_import_reads_the_code_and_reports_read_and_assumed(sources, tmp_path):
    src = _renumbered(sources, tmp_path / "src")
    changes, _ = VARIANTS["pre_norm_j_l_swapped"]
    snapshot(src, **changes)
    plan = plan_import(src)
    report = plan.fields_report()
    assert report["read"]["head_hidden"].startswith("modeling_internvl_chat.py:")
    assert report["read"]["regression_width"]  # the weights say 12; the code's Linear says 1: noted
    assert plan.open_fields.regression_width == 12
    assert any("disagrees with the weights" in line for line in report["not_understood"])
    assert "regression_activation" in report["assumed"] and "head_hidden" not in report["assumed"]
    assert any("regression_activation" in a and "assumed" in a for a in plan.assumptions)
    # the code says the fourth sub-module is J and the third L: the weights follow it
    assert plan.heads.expert["expert.parents.overall.fc1.weight"] == "language_model.expert_head3.fc1.weight"
    assert plan.heads.expert["expert.parents.general_appearance_aesthetic.fc1.weight"].startswith(
        "language_model.expert_head4."
    )

    out = tmp_path / "out"
    result = import_checkpoint(src, out)
    meta = read_meta(out)
    assert meta.open_fields.head_hidden == "last_layer" and meta.open_fields.regression_width == 12
    assert meta.open_fields.evidence["head_hidden"].startswith("modeling_internvl_chat.py:")
    assert meta.provenance["open_fields"]["assumed"] == report["assumed"]
    assert meta.provenance["self_check"]["photos"][-2:] == ["generated-gradient", "generated-noise"]
    written = json.loads(json.dumps(result.to_dict()))
    assert written["open_fields"]["read"] and written["self_check"]["scores"]["metavoter"]
    assert original_tensors(src)["language_model.expert_head3.fc1.weight"].shape[1] == 3


def test_every_import_runs_the_self_check(imported):
    for report, out in imported.values():
        assert report.self_check is not None and len(report.self_check.photos) >= 2
        assert read_meta(out).provenance["self_check"]["scores"].keys() == {
            "lm",
            "regression",
            "expert",
            "metavoter",
        }


def _outputs(reg, exp, voter, logits) -> HeadOutputs:
    expert = {k: torch.tensor(exp, dtype=torch.float32) for k in KEYS}
    return HeadOutputs(
        torch.tensor(logits, dtype=torch.float32), torch.tensor(reg), expert, torch.tensor(voter)
    )


SPREAD = [[0.0, 1.0, 2.0, 1.0, 0.0], [2.0, 1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 1.0, 3.0]]


def test_self_check_is_quiet_when_heads_agree():
    lm = judge(["a", "b", "c"], _outputs([0.5, 0.3, 0.8], [0.5, 0.3, 0.8], [0.5, 0.3, 0.8], SPREAD))
    assert lm.warnings == [], lm.warnings


@pytest.mark.parametrize(
    ("outputs", "names"),
    [
        (([3.1, 2.0, 4.2], [0.5, 0.3, 0.8], [0.5, 0.3, 0.8], SPREAD), "regression_activation"),
        (([0.5, 0.3, 0.8], [4.0, -2.0, 1.5], [0.5, 0.3, 0.8], SPREAD), "expert_activation"),
        (([0.5, 0.3, 0.8], [0.5, 0.3, 0.8], [0.05, 0.95, 0.1], SPREAD), "metavoter_inputs"),
        (([0.5, 0.3, 0.8], [0.8, 0.6, 0.3], [0.5, 0.3, 0.8], SPREAD), "head_position"),
        (([0.5, 0.3, 0.8], [0.5, 0.3, 0.8], [0.5, 0.3, 0.8], [[9.0, 0, 0, 0, 0]] * 3), "lm_level_space"),
    ],
)
def test_self_check_warns_naming_the_likely_wrong_assumption(outputs, names):
    check = judge(["a", "b", "c"], _outputs(*outputs))
    assert any(names in w for w in check.warnings), check.warnings


def test_self_check_on_a_model_with_a_missing_activation(scorer):
    model = scorer.model
    saved = model.heads.regression.linear.bias.detach().clone()
    try:
        with torch.no_grad():
            model.heads.regression.linear.bias.fill_(4.0)
        check = run_self_check(model, scorer.meta.image)
    finally:
        with torch.no_grad():
            model.heads.regression.linear.bias.copy_(saved)
    assert check.photos[0] == "astronaut.jpg" or not Path("resources/samples/astronaut.jpg").exists()
    assert any("regression_activation" in w for w in check.warnings)
    assert os.environ.get("HF_HUB_OFFLINE") == "1"
