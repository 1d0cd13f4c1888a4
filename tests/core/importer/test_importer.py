"""The importer: released HumanAesExpert checkpoints (InternVL 2 original layout) → native checkpoints.

The sources are miniature checkpoints in the original layout (originals.py); the imported native model
must reproduce the reference forward computed from the original tensors (reference.py).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from humanaes_core.errors import ModelNotAvailableError
from humanaes_core.importer import ImportFailure, import_checkpoint, looks_like_original, plan_import
from humanaes_core.importer.heads import mean_metavoter_state
from humanaes_core.schema import KEYS
from tests.conftest import synthetic_photo
from tests.core.importer.originals import (
    CASES,
    FFN_HIDDEN,
    SENTINEL,
    VOTER_HIDDEN,
    original_tensors,
    variant_copy,
)
from tests.core.importer.reference import (
    ref_expert,
    ref_image_features,
    ref_language_model,
    ref_metavoter,
)


@pytest.mark.parametrize("variant", list(CASES))
def test_every_source_tensor_is_placed_exactly_once(variant, sources, imported):
    report, out = imported[variant]
    placed = [p.source for p in report.placements]
    assert sorted(placed) == sorted(original_tensors(sources[variant]))
    assert len(placed) == len(set(placed))
    targets = [t for p in report.placements for t in p.targets]
    assert len(targets) == len(set(targets))
    if variant == "internlm2":
        wqkv = next(p for p in report.placements if p.source.endswith("layers.0.attention.wqkv.weight"))
        assert [t.rsplit(".", 2)[-2] for t in wqkv.targets] == ["q_proj", "k_proj", "v_proj"]
    from humanaes_core.model.checkpoint import load_model

    model, _ = load_model(out, device=torch.device("cpu"), dtype=torch.float32)
    native = set(model.backbone.state_dict()) | {f"heads.{k}" for k in model.heads.state_dict()}
    assert set(targets) == native
    assert not (sources[variant] / SENTINEL).exists(), "code from the source directory was executed"
    meta = json.loads((out / "humanaes.json").read_text())
    assert meta["provenance"]["tensors_placed"] == len(placed)
    assert meta["provenance"]["metavoter"]["source"] == "imported"


@pytest.mark.parametrize("variant", list(CASES))
def test_native_model_matches_the_original_layout_forward(variant, sources, imported):
    from humanaes_core.model.checkpoint import load_model

    _, out = imported[variant]
    w = original_tensors(sources[variant])
    cfg = json.loads((sources[variant] / "config.json").read_text())
    model, meta = load_model(out, device=torch.device("cpu"), dtype=torch.float32)
    ids, image_slice = model.prompt_ids(1, model.prompt.overall_questions[0])
    pixels = torch.randn(1, 3, 448, 448, generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        feats = ref_image_features(w, cfg, pixels)
        embed_name = "embed_tokens" if variant == "qwen2" else "tok_embeddings"
        embeds = w[f"language_model.model.{embed_name}.weight"][torch.tensor(ids)][None].clone()
        embeds[0, image_slice] = feats[0]
        ref_hidden, ref_logits = ref_language_model(w, cfg["llm_config"], embeds)

        native_feats = model.encode_images(pixels, 1)
        out_native = model.backbone(
            input_ids=torch.tensor([ids]), pixel_values=pixels, output_hidden_states=True
        )
    torch.testing.assert_close(native_feats, feats, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out_native.hidden_states[-1], ref_hidden, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out_native.logits, ref_logits, atol=1e-5, rtol=1e-5)

    hidden = torch.randn(3, cfg["llm_config"]["hidden_size"], generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        reg = F.linear(
            hidden, w["language_model.lm_regression_head.weight"], w["language_model.lm_regression_head.bias"]
        )
        torch.testing.assert_close(model.heads.regression(hidden), reg.squeeze(-1), atol=1e-6, rtol=1e-6)
        expert = model.heads.expert(hidden)
        ref = ref_expert(w, hidden, CASES[variant]["expert_layout"])
        for key in KEYS:
            torch.testing.assert_close(expert[key], ref[key], atol=1e-6, rtol=1e-6)
        x = torch.rand(5, 3, generator=torch.Generator().manual_seed(4))
        voted = model.heads.metavoter(x[:, 0], x[:, 1], x[:, 2])
        torch.testing.assert_close(
            voted, ref_metavoter(w, CASES[variant]["metavoter"], x), atol=1e-6, rtol=1e-6
        )
    assert meta.heads.expert_ffn_hidden == FFN_HIDDEN and meta.heads.metavoter_hidden == VOTER_HIDDEN
    assert meta.image.image_size == 448 and meta.image.max_tiles == 12


def test_imported_checkpoint_scores_end_to_end(imported):
    from humanaes_core import load_scorer

    _, out = imported["qwen2"]
    scorer = load_scorer(out, device="cpu", max_tiles=2, batch_size=2)
    cards = scorer.score([synthetic_photo(1, (500, 300)), synthetic_photo(2, (300, 300))])
    assert len(cards) == 2
    for card in cards:
        assert set(card.dims) == set(KEYS)
        assert all(0.0 <= v <= 1.0 for v in card.dims.values())
        assert set(card.heads) == {"lm", "regression", "expert", "metavoter"}


def _refused(src: Path, *fragments: str, **kwargs) -> str:
    with pytest.raises(ImportFailure) as err:
        plan_import(src, **kwargs)
    message = str(err.value)
    for fragment in fragments:
        assert fragment in message, message
    return message


def test_unknown_extra_tensor_is_refused_by_name(sources, tmp_path):
    def add(t):
        t["language_model.mystery_probe.weight"] = torch.zeros(7, 5)

    src = variant_copy(sources["qwen2"], tmp_path / "extra", add)
    _refused(src, "could not be placed", "language_model.mystery_probe.weight [7, 5]", "the importer places")


def test_wrongly_shaped_expert_head_is_refused_by_name(sources, tmp_path):
    def shrink(t):
        t["language_model.expert_head.weight"] = t["language_model.expert_head.weight"][:8]
        t["language_model.expert_head.bias"] = t["language_model.expert_head.bias"][:8]

    src = variant_copy(sources["qwen2"], tmp_path / "shape", shrink)
    _refused(src, "expert head not recognised", "language_model.expert_head.weight [8, 64]", "Linear(64 → 9)")


def test_wrongly_shaped_regression_head_is_refused_by_name(sources, tmp_path):
    def widen(t):
        t["language_model.lm_regression_head.weight"] = torch.zeros(2, 64)

    src = variant_copy(sources["internlm2"], tmp_path / "reg", widen)
    _refused(src, "regression head has the wrong shape", "language_model.lm_regression_head.weight [2, 64]")


def test_unrecognised_expert_structure_is_refused(sources, tmp_path):
    def rename(t):
        t["language_model.expert_head.4.weight"] = t.pop("language_model.expert_head.3.0.weight")

    src = variant_copy(sources["internlm2"], tmp_path / "struct", rename)
    _refused(src, "expert head not recognised", "language_model.expert_head.4.weight", "expert_head{1..4}")


def test_missing_tensor_is_refused_by_name(sources, tmp_path):
    def drop(t):
        del t["language_model.model.layers.1.attention.wqkv.weight"]

    src = variant_copy(sources["internlm2"], tmp_path / "missing", drop)
    _refused(src, "missing from the source", "language_model.model.layers.1.attention.wqkv.weight [96, 64]")


def test_missing_metavoter_fails_unless_mean_is_asked_for(sources, tmp_path):
    src = tmp_path / "no-voter"
    shutil.copytree(sources["qwen2"], src)
    (src / "metavoter.safetensors").unlink()
    (src / "metavoter.pt").write_bytes(b"pickle")
    message = _refused(src, "no MetaVoter found", "--metavoter mean", "metavoter.pt")
    assert "Linear(3 → h)" in message
    report = import_checkpoint(src, tmp_path / "out", metavoter="mean", expert_activation="relu")
    meta = json.loads((tmp_path / "out" / "humanaes.json").read_text())
    assert meta["provenance"]["metavoter"]["source"].startswith("mean")
    assert meta["heads"]["expert_activation"] == "relu"
    assert any("--metavoter mean" in a for a in report.assumptions)
    with pytest.raises(ImportFailure, match="drop --metavoter mean"):
        plan_import(sources["qwen2"], metavoter="mean")


def test_mean_metavoter_is_the_mean_of_its_inputs():
    from humanaes_core.model.heads import MetaVoter

    voter = MetaVoter(2)
    voter.load_state_dict({k.removeprefix("metavoter."): v for k, v in mean_metavoter_state().items()})
    voter.eval()
    x = torch.tensor([[0.0, 0.0, 0.0], [1.0, 1.0, 1.0], [0.2, 0.5, 0.9], [-0.3, 0.1, 0.05]])
    torch.testing.assert_close(voter(x[:, 0], x[:, 1], x[:, 2]), x.mean(-1), atol=1e-7, rtol=0)


def test_unsupported_configs_fail_clearly(sources, tmp_path):
    for field, value, fragment in [
        (("vision_config", "qk_normalization"), True, "InternViT-6B"),
        (("template",), "vicuna_v1.1", "template 'vicuna_v1.1' is not supported"),
        (("ps_version",), "v1", "pixel shuffle"),
        (("llm_config", "architectures"), ["Phi3ForCausalLM"], "Phi3ForCausalLM"),
    ]:
        src = tmp_path / fragment.split()[0].strip("'")
        shutil.copytree(sources["qwen2"], src)
        cfg = json.loads((src / "config.json").read_text())
        target = cfg
        for key in field[:-1]:
            target = target[key]
        target[field[-1]] = value
        (src / "config.json").write_text(json.dumps(cfg))
        _refused(src, fragment)


def test_hub_snapshot_is_imported_on_first_use(sources, tmp_path, monkeypatch):
    """An original-layout snapshot in the hub cache becomes a cached native checkpoint, once."""
    from humanaes_core import sources as src_mod
    from humanaes_core.model.meta import is_checkpoint

    monkeypatch.setenv("HUMANAES_MODELS", str(tmp_path))
    repo = "KwaiVGI/HumanAesExpert-1B"
    commit = "0123456789abcdef0123456789abcdef01234567"
    cache = tmp_path / "hub" / "models--KwaiVGI--HumanAesExpert-1B"
    shutil.copytree(sources["qwen2"], cache / "snapshots" / commit)
    (cache / "refs").mkdir()
    (cache / "refs" / "main").write_text(commit)
    assert looks_like_original(cache / "snapshots" / commit)

    path = src_mod.resolve_model(repo)
    assert path == tmp_path / "converted" / f"KwaiVGI--HumanAesExpert-1B--{commit}"
    assert is_checkpoint(path)
    meta = json.loads((path / "humanaes.json").read_text())
    assert meta["provenance"]["hub_id"] == repo and meta["provenance"]["revision"] == commit

    def no_second_import(*args, **kwargs):
        raise AssertionError("imported twice")

    monkeypatch.setattr("humanaes_core.importer.convert.import_checkpoint", no_second_import)
    assert src_mod.resolve_model(repo) == path


def test_hub_snapshot_that_cannot_be_imported_says_how_to_fix(sources, tmp_path, monkeypatch):
    from humanaes_core import sources as src_mod

    monkeypatch.setenv("HUMANAES_MODELS", str(tmp_path))
    commit = "89abcdef0123456789abcdef0123456789abcdef"
    cache = tmp_path / "hub" / "models--KwaiVGI--HumanAesExpert-8B"
    shutil.copytree(sources["internlm2"], cache / "snapshots" / commit)
    (cache / "refs").mkdir()
    (cache / "refs" / "main").write_text(commit)
    snapshot = cache / "snapshots" / commit
    save_file({"x": torch.zeros(1)}, str(snapshot / "stray.safetensors"))
    with pytest.raises(ModelNotAvailableError) as err:
        src_mod.resolve_model("KwaiVGI/HumanAesExpert-8B")
    assert "humanaes-import" in str(err.value) and "stray.safetensors" in str(err.value)
    assert not (tmp_path / "converted" / f"KwaiVGI--HumanAesExpert-8B--{commit}").exists()


def _tied_copy(src: Path, dst: Path, edit) -> Path:
    variant_copy(src, dst, edit)
    cfg = json.loads((dst / "config.json").read_text())
    cfg["llm_config"]["tie_word_embeddings"] = True
    (dst / "config.json").write_text(json.dumps(cfg))
    return dst


def test_tied_output_layer(sources, tmp_path):
    """Qwen2-0.5B ties lm_head to the embeddings: a stored copy must equal them, or the import refuses."""
    from humanaes_core.model.checkpoint import load_model

    embed = "language_model.model.embed_tokens.weight"

    def same(t):
        t["language_model.lm_head.weight"] = t[embed].clone()

    report = import_checkpoint(_tied_copy(sources["qwen2"], tmp_path / "same", same), tmp_path / "out")
    tied = next(p for p in report.placements if p.source == "language_model.lm_head.weight")
    assert tied.targets == ("lm_head.weight",) and "tied" in tied.how
    model, _ = load_model(tmp_path / "out", device=torch.device("cpu"), dtype=torch.float32)
    torch.testing.assert_close(model.backbone.lm_head.weight, original_tensors(tmp_path / "same")[embed])

    plan = plan_import(
        _tied_copy(sources["qwen2"], tmp_path / "absent", lambda t: t.pop("language_model.lm_head.weight"))
    )
    assert plan.config.text_config.tie_word_embeddings

    _refused(_tied_copy(sources["qwen2"], tmp_path / "differs", lambda t: None), "ties the output layer")


@pytest.mark.parametrize("variant", list(CASES))
def test_prompt_follows_the_source_template(variant, imported):
    """Hermes-2 (1B) and internlm2-chat (8B) join turns without a newline; the 8B starts with BOS."""
    from humanaes_core.model.meta import read_meta

    _, out = imported[variant]
    prompt = read_meta(out).prompt
    assert prompt.turn_sep == ""
    assert prompt.text_before_image().startswith(prompt.bos + "<|im_start|>system\n")
    assert "<|im_end|><|im_start|>user\n" in prompt.text_before_image()
    assert prompt.bos == ("<s>" if variant == "internlm2" else "")
