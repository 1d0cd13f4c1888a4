"""The native checkpoint directory: self-describing, integrity-checked, with an optional LoRA adapter."""

import json
import shutil

import pytest
import torch

from humanaes_core import load_scorer
from humanaes_core import model as ckpt
from humanaes_core.errors import CheckpointError, ModelNotAvailableError
from humanaes_core.testing import make_tiny_model


def test_layout_is_safetensors_and_json_only(tiny_model):
    names = {p.name for p in tiny_model.iterdir()}
    assert {"humanaes.json", "config.json", "heads.safetensors", "manifest.json", "tokenizer.json"} <= names
    assert any(n.startswith("model") and n.endswith(".safetensors") for n in names)
    assert not [n for n in names if n.endswith((".bin", ".pt", ".pth", ".ckpt", ".pkl", ".py"))]
    meta = json.loads((tiny_model / "humanaes.json").read_text())
    assert meta["format"] == "humanaes-checkpoint"
    assert meta["prompt"]["overall_questions"][0] == "Can you evaluate the aesthetics of the human image?"
    assert json.loads((tiny_model / "config.json").read_text())["model_type"] == "internvl"


def test_make_tiny_model_is_reproducible(tmp_path, tiny_model):
    again = make_tiny_model(tmp_path / "again", seed=0)
    other = make_tiny_model(tmp_path / "other", seed=1)
    manifest = lambda d: json.loads((d / "manifest.json").read_text())["files"]  # noqa: E731
    weights = "model.safetensors"
    assert manifest(again)[weights]["sha256"] == manifest(tiny_model)[weights]["sha256"]
    assert manifest(other)[weights]["sha256"] != manifest(tiny_model)[weights]["sha256"]
    assert ckpt.checkpoint_fingerprint(again) == ckpt.checkpoint_fingerprint(tiny_model)


def test_small_model_size_is_in_range(tmp_path):
    path = make_tiny_model(tmp_path / "small", size="small")
    model, _ = ckpt.load_model(path, device=torch.device("cpu"), dtype=torch.float32)
    n = sum(p.numel() for p in model.parameters())
    assert 20e6 <= n <= 60e6


def test_damaged_checkpoints_are_refused(tmp_path, tiny_model):
    broken = tmp_path / "broken"
    shutil.copytree(tiny_model, broken)
    with open(broken / "heads.safetensors", "ab") as f:
        f.write(b"junk")
    with pytest.raises(CheckpointError, match=r"heads\.safetensors"):
        load_scorer(broken, device="cpu")
    (broken / "heads.safetensors").unlink()
    with pytest.raises(CheckpointError, match="missing"):
        load_scorer(broken, device="cpu")
    with pytest.raises(CheckpointError, match="sha256"):
        same_size = tmp_path / "same_size"
        shutil.copytree(tiny_model, same_size)
        data = bytearray((same_size / "heads.safetensors").read_bytes())
        data[-1] ^= 0xFF
        (same_size / "heads.safetensors").write_bytes(bytes(data))
        ckpt.check_manifest(same_size, full=True)


def test_not_a_checkpoint(tmp_path):
    with pytest.raises(ModelNotAvailableError, match=r"humanaes\.json"):
        load_scorer(tmp_path, device="cpu")


def test_lora_adapter_round_trip(tmp_path, tiny_model, photo_dir):
    from peft import LoraConfig, get_peft_model

    model, meta = ckpt.load_model(tiny_model, device=torch.device("cpu"), dtype=torch.float32)
    torch.manual_seed(3)
    config = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    peft_model = get_peft_model(model.backbone, config)
    model.backbone = peft_model.get_base_model()
    out_dir = ckpt.save_checkpoint(model, tmp_path / "lora", meta, adapter=peft_model)
    assert (out_dir / "adapter" / "adapter_config.json").is_file()
    assert (out_dir / "adapter" / "adapter_model.safetensors").is_file()

    pixels = torch.randn(1, 3, 448, 448)
    expected = model.score_batch(pixels, 1)
    loaded = load_scorer(out_dir, device="cpu").model
    got = loaded.score_batch(pixels, 1)
    assert torch.allclose(got.metavoter, expected.metavoter, atol=1e-4)
    assert torch.allclose(got.level_logits, expected.level_logits, atol=1e-4)
    # The adapter matters: without it the base weights give different logits.
    base = load_scorer(tiny_model, device="cpu").model.score_batch(pixels, 1)
    assert not torch.allclose(base.level_logits, expected.level_logits, atol=1e-4)


def test_save_replaces_existing_directory_atomically(tmp_path, tiny_model):
    model, meta = ckpt.load_model(tiny_model, device=torch.device("cpu"), dtype=torch.float32)
    target = tmp_path / "ckpt"
    ckpt.save_checkpoint(model, target, meta)
    (target / "stale.txt").write_text("from an older save")
    ckpt.save_checkpoint(model, target, meta)
    assert not (target / "stale.txt").exists()
    weights = lambda d: {  # noqa: E731
        k: v["sha256"] for k, v in ckpt.check_manifest(d).items() if k.endswith(".safetensors")
    }
    assert weights(target) == weights(tiny_model)
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt"]  # no temporary leftovers
