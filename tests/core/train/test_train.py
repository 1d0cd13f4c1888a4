"""Training: token layout = scoring layout, the Eq. 7 switch, learning on a synthetic task, reload,
resume after Ctrl-C, the CLI on a rated folder, and two processes (slow)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from dataclasses import fields
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from humanaes_core import load_scorer
from humanaes_core.cli.train import config_from_args
from humanaes_core.cli.train import main as train_main
from humanaes_core.data.loaders import load_data
from humanaes_core.data.qa import build_qa
from humanaes_core.data.samples import Sample
from humanaes_core.data.synthetic import write_humanbeauty
from humanaes_core.errors import HumanAesError
from humanaes_core.model.checkpoint import load_model
from humanaes_core.model.manifest import check_manifest
from humanaes_core.model.meta import read_meta
from humanaes_core.model.preprocessing import TileConfig, preprocess
from humanaes_core.schema import KEYS, LEAF_KEYS
from humanaes_core.train.config import TrainConfig
from humanaes_core.train.dataset import TrainingSet, collate
from humanaes_core.train.stage1 import Stage1, apply_lora, set_activation_checkpointing
from humanaes_core.train.trainer import TrainingInterrupted, export_checkpoint, train
from tests.conftest import synthetic_photo
from tests.conftest import train_config as _config

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def small_data(tmp_path_factory) -> Path:
    """16 training and 4 test photos of the synthetic task, half of them 12-dimension."""
    return write_humanbeauty(tmp_path_factory.mktemp("small"), 16, 4, seed=3)


@pytest.fixture
def lora_model(tiny_model):
    """A fresh tiny model with LoRA injected, as stage 1 trains it."""
    model, _ = load_model(tiny_model, device=CPU, dtype=torch.float32)
    apply_lora(model, TrainConfig(lora_rank=4, lora_dropout=0.0))
    return model


def _samples(tmp_path: Path, kinds: str) -> list[Sample]:
    """'o': overall-only sample, 'd': 12-dimension sample, 'p': only the environment labelled."""
    out = []
    for i, kind in enumerate(kinds):
        path = tmp_path / f"{i}.jpg"
        synthetic_photo(i, (80 + 40 * i, 60)).save(path)
        if kind == "o":
            labels = {"overall": 0.2 + 0.1 * i}
        elif kind == "d":
            labels = {k: 0.1 + 0.05 * j + 0.02 * i for j, k in enumerate(KEYS)}
        else:
            labels = {"environment": 0.9}
        out.append(Sample(path, labels, f"test:{i}"))
    return out


def _batch(model, samples, max_tiles: int = 1, question: int | None = None) -> dict:
    ds = TrainingSet(samples, TileConfig(max_tiles=max_tiles), model.prompt, seed=0)
    items = [ds[i] for i in range(len(samples))]
    if question is not None:  # the scoring question instead of the random paraphrase
        for item, s in zip(items, samples, strict=True):
            qa = build_qa(s, model.prompt, question)
            item["question"], item["answer"] = qa.question, qa.answer
    return collate(items)


# ------------------------------------------------------------------------------ consistency with scoring


def test_training_sequence_is_the_scoring_layout(scorer):
    model = scorer.model
    lay = model.layout(2)
    qi = model.prompt.question_index  # the question scoring asks
    q, dq = model.prompt.overall_questions[qi], model.prompt.dims_questions[qi]
    ids, image_slice, plen = model.training_ids(2, q, "The aesthetics of the human image is good")
    prefix = lay.prefix_ids + lay.overall_ids  # what scoring feeds for the LM and regression heads
    assert ids[: len(prefix)] == prefix and image_slice == lay.image_slice
    assert ids[len(prefix)] == model.level_token_ids[3]  # the LM score reads exactly this prediction
    assert plen - 1 == len(lay.prefix_ids) + lay.overall_reg_offset  # the regression head's token
    assert ids[-1] == model.tokenizer.convert_tokens_to_ids(model.prompt.im_end)
    dims_ids, _, dplen = model.training_ids(2, dq, None)
    assert dims_ids == lay.prefix_ids + lay.dims_ids and dplen == len(dims_ids)  # expert head: last token


def test_training_forward_reads_what_scoring_reads(scorer, tmp_path):
    """Heads applied to the training pass's hidden states equal the scorer's, in a padded batch that
    mixes tile counts and question kinds."""
    model = scorer.model
    samples = _samples(tmp_path, "odod")
    batch = _batch(model, samples, max_tiles=2, question=model.prompt.question_index)
    assert len(set(batch["tiles"])) > 1
    with torch.no_grad():
        out = model.training_forward(
            batch["pixel_values"], batch["tiles"], batch["questions"], batch["answers"]
        )
        h = out.head_hidden.float()
        reg, expert = model.heads.regression(h), model.heads.expert(h)
    start = 0
    for i, n in enumerate(batch["tiles"]):
        ref = model.score_batch(batch["pixel_values"][start : start + n], n)
        start += n
        if samples[i].is_dims:
            for key in KEYS:
                assert expert[key][i].item() == pytest.approx(ref.expert[key][0].item(), abs=1e-4)
        else:
            assert reg[i].item() == pytest.approx(ref.regression[0].item(), abs=1e-4)


def test_cross_entropy_covers_only_the_answer(scorer, tmp_path):
    model = scorer.model
    samples = _samples(tmp_path, "od")
    batch = _batch(model, samples, question=0)
    with torch.no_grad():
        out = model.training_forward(
            batch["pixel_values"], batch["tiles"], batch["questions"], batch["answers"]
        )
        for i in range(2):
            ids, image_slice, plen = model.training_ids(1, batch["questions"][i], batch["answers"][i])
            assert out.answer_tokens[i] == len(ids) - plen == len(model.answer_ids(batch["answers"][i]))
            emb = model._embed(ids, 1).clone()
            emb[:, image_slice] = model.encode_images(batch["pixel_values"][i : i + 1], 1)
            hidden = model._language_model(emb, torch.arange(len(ids)).unsqueeze(0), None)[0]
            logits = model.backbone.lm_head(hidden).float()
            targets = torch.tensor(ids[1:])
            answer_only = torch.nn.functional.cross_entropy(logits[plen - 1 : -1], targets[plen - 1 :])
            everything = torch.nn.functional.cross_entropy(logits[:-1], targets)
            assert out.ce[i].item() == pytest.approx(answer_only.item(), rel=1e-4)
            assert abs(everything.item() - answer_only.item()) > 1e-3


# ------------------------------------------------------------------------------------- Eq. 7 switch


def _grads(model, batch) -> dict[str, torch.Tensor]:
    stage1 = Stage1(model, lambda_reg=1.0, mu_exp=1.0)
    stage1.zero_grad(set_to_none=False)
    stage1(batch)["loss"].backward()
    return {n: (p.grad if p.grad is not None else torch.zeros_like(p)) for n, p in stage1.named_parameters()}


@pytest.mark.parametrize(
    ("kinds", "regression_trained", "expert_trained"),
    [("dd", False, True), ("oo", True, False), ("odo", True, True)],
)
def test_each_sample_trains_only_its_own_head(
    lora_model, tmp_path, kinds, regression_trained, expert_trained
):
    grads = _grads(lora_model, _batch(lora_model, _samples(tmp_path, kinds)))
    reg = [g for n, g in grads.items() if n.startswith("regression.")]
    exp = [g for n, g in grads.items() if n.startswith("expert.")]
    lora = [g for n, g in grads.items() if n.startswith("backbone_params.")]
    assert any(g.abs().sum() > 0 for g in lora)  # the LM always learns (lora_B: lora_A starts behind B = 0)
    assert any(g.abs().sum() > 0 for g in reg) == regression_trained
    assert all(g.abs().sum() == 0 for g in reg) == (not regression_trained)  # exactly zero, not small
    assert any(g.abs().sum() > 0 for g in exp) == expert_trained
    assert all(g.abs().sum() == 0 for g in exp) == (not expert_trained)


def test_partially_labelled_sample_trains_only_its_labelled_node(lora_model, tmp_path):
    batch = _batch(lora_model, _samples(tmp_path, "p"))
    assert batch["answers"] == [None]  # no 12-line answer can be written
    grads = _grads(lora_model, batch)
    leaves = grads["expert.leaves.weight"]
    env = LEAF_KEYS.index("environment")
    assert leaves[env].abs().sum() > 0
    assert leaves[[i for i in range(len(LEAF_KEYS)) if i != env]].abs().sum() == 0
    assert all(g.abs().sum() == 0 for n, g in grads.items() if n.startswith("expert.parents"))
    assert all(g.abs().sum() == 0 for n, g in grads.items() if n.startswith("regression."))


# ------------------------------------------------------------------------------ learning, reload, eval


def _figures(report: dict) -> str:
    s = report["summary"]
    dims = " ".join(f"{k}={v:.3f}" for k, v in s["dims_mae"].items())
    return f"SRCC {s['srcc']:+.3f} PLCC {s['plcc']:+.3f} MAE {s['mae']:.4f} | per-dim MAE {dims}"


def test_training_learns_the_synthetic_task(learned):
    before, after = learned["before"]["summary"], learned["after"]["summary"]
    print("\nbefore:", _figures(learned["before"]), "\nafter: ", _figures(learned["after"]))
    assert after["srcc"] > 0.85 and after["srcc"] - before["srcc"] > 0.5
    assert after["mae"] < 0.5 * before["mae"]
    dims_before, dims_after = (
        np.mean(list(before["dims_mae"].values())),
        np.mean(list(after["dims_mae"].values())),
    )
    assert dims_after < 0.7 * dims_before
    assert sum(after["dims_mae"][k] < before["dims_mae"][k] for k in KEYS) >= 10
    for head in ("lm", "regression", "expert"):  # every head learned, not just the MetaVoter
        assert learned["after"]["heads"][head]["standard"]["srcc"] > 0.6


def test_reloaded_checkpoint_scores_like_the_trained_model(learned):
    result = learned["result"]
    loaded = load_scorer(result.output, device="cpu", max_tiles=1)
    photos = [s.path for s in load_data(learned["root"], split="test").samples[:12]]
    pixels = torch.cat([preprocess(p, loaded.tile_config) for p in photos])
    mine, theirs = result.model.score_batch(pixels, 1), loaded.model.score_batch(pixels, 1)
    assert torch.allclose(mine.level_logits, theirs.level_logits, atol=1e-4)
    assert torch.allclose(mine.regression, theirs.regression, atol=1e-4)
    assert torch.allclose(mine.metavoter, theirs.metavoter, atol=1e-4)
    for key in KEYS:
        assert torch.allclose(mine.expert[key], theirs.expert[key], atol=1e-4)
    cards = loaded.score(photos)
    assert (
        max(abs(c.dims["overall"] - float(m)) for c, m in zip(cards, mine.metavoter.clamp(0, 1), strict=True))
        < 1e-4
    )


def test_checkpoint_records_how_it_was_made(learned, tiny_model):
    out, config = learned["result"].output, learned["config"]
    check_manifest(out, full=True)
    assert (out / "adapter" / "adapter_config.json").is_file() and not (out / "resume").exists()
    provenance = read_meta(out).provenance
    assert provenance["training"]["epochs"] == 4 and provenance["training"]["lora_rank"] == 8
    assert provenance["data"]["fingerprint"] == load_data(learned["root"]).labels_fingerprint()
    assert provenance["data"]["train_samples"] == 216 and provenance["data"]["val_samples"] == 24
    assert (
        provenance["metrics"]["validation"]["n"] == 24 and "paper_srcc" in provenance["metrics"]["validation"]
    )
    assert provenance["stage2"]["metavoter_epochs"] == config.metavoter_epochs
    # only LoRA trained: the backbone weights beside the adapter are the base's, bit for bit
    base, mine = load_file(str(tiny_model / "model.safetensors")), load_file(str(out / "model.safetensors"))
    assert base.keys() == mine.keys() and all(torch.equal(base[k], mine[k]) for k in base)


def test_humanaes_eval_on_the_trained_checkpoint(learned, tmp_path, capsys):
    from humanaes_core.cli.evaluate import main as eval_main

    out = tmp_path / "report.json"
    args = ["--data", str(learned["root"]), "--model", str(learned["result"].output), "--out", str(out)]
    assert eval_main([*args, "--device", "cpu", "--max-tiles", "1", "--quiet"]) == 0
    printed = capsys.readouterr().out
    print(printed)
    report = json.loads(out.read_text())
    assert report["overall"]["standard"]["srcc"] == pytest.approx(
        learned["after"]["overall"]["standard"]["srcc"], abs=1e-3
    )


# ------------------------------------------------------------------------------ resume, Ctrl-C, output


def _lora_and_heads(path: Path) -> dict[str, torch.Tensor]:
    state = load_file(str(path / "heads.safetensors"))
    state |= {
        f"adapter.{k}": v for k, v in load_file(str(path / "adapter" / "adapter_model.safetensors")).items()
    }
    return state


def test_ctrl_c_saves_a_state_that_resumes_to_the_same_result(small_data, tiny_model, tmp_path):
    straight = train(_config(small_data, tiny_model, tmp_path / "straight", epochs=2))

    def interrupt(step: int, logs: dict) -> None:
        if step == 3:  # mid-epoch: 4 steps per epoch
            os.kill(os.getpid(), signal.SIGINT)

    config = _config(small_data, tiny_model, tmp_path / "resumed", epochs=2)
    with pytest.raises(TrainingInterrupted, match="--resume"):
        train(config, on_step=interrupt)
    progress = json.loads((tmp_path / "resumed" / "resume" / "progress.json").read_text())
    assert progress["global_step"] == 3 and progress["stage"] == "stage1"
    with pytest.raises(HumanAesError, match="unfinished run"):
        train(config)  # neither --resume nor --overwrite
    config.resume = True
    config.lr = 2e-3
    with pytest.raises(HumanAesError, match=r"changed settings \(lr"):
        train(config)
    config.lr = 1e-3
    resumed = train(config)
    assert resumed.steps == straight.steps == 8
    a, b = _lora_and_heads(straight.output), _lora_and_heads(resumed.output)
    assert a.keys() == b.keys()
    for key in a:
        assert torch.allclose(a[key], b[key], atol=1e-6), key


def test_existing_checkpoint_is_not_replaced_without_overwrite(small_data, tiny_model, tmp_path):
    existing = shutil.copytree(tiny_model, tmp_path / "existing")
    with pytest.raises(HumanAesError, match="already holds a checkpoint; pass --overwrite"):
        train(_config(small_data, tiny_model, existing))
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    with pytest.raises(HumanAesError, match="not empty"):
        train(_config(small_data, tiny_model, tmp_path / "other", overwrite=True))
    with pytest.raises(HumanAesError, match="must not be the base"):
        train(_config(small_data, tiny_model, tiny_model, overwrite=True))
    with pytest.raises(HumanAesError, match="nothing to resume"):
        train(_config(small_data, tiny_model, tmp_path / "new", resume=True))


def test_qlora_export_path_rebuilds_an_unquantised_base(small_data, tiny_model, tmp_path):
    """The 4-bit export (base reloaded unquantised, LoRA/heads copied on) gives the same model."""
    result = train(_config(small_data, tiny_model, tmp_path / "a", max_steps=3, train_projector=True))
    rebuilt = export_checkpoint(
        result.model, tmp_path / "b", read_meta(result.output), result.adapter, rebuild_from=tiny_model
    )
    x = torch.randn(2, 3, 448, 448)
    one = load_scorer(result.output, device="cpu", max_tiles=1).model.score_batch(x, 1)
    two = load_scorer(rebuilt, device="cpu", max_tiles=1).model.score_batch(x, 1)
    assert torch.allclose(one.metavoter, two.metavoter, atol=1e-5)
    assert torch.allclose(one.level_logits, two.level_logits, atol=1e-5)


def test_gradient_checkpointing_changes_memory_not_results(lora_model, tmp_path):
    batch = _batch(lora_model, _samples(tmp_path, "od"))
    lora_model.train()
    plain = _grads(lora_model, batch)
    set_activation_checkpointing(lora_model, True)
    checkpointed = _grads(lora_model, batch)
    layer = lora_model.backbone.model.language_model.layers[0]
    assert layer.gradient_checkpointing  # the layers really recompute
    set_activation_checkpointing(lora_model, False)
    assert not layer.gradient_checkpointing
    for name, grad in plain.items():
        assert torch.allclose(grad, checkpointed[name], atol=1e-6), name


def test_bf16_autocast_with_projector_and_checkpointing(small_data, tiny_model, tmp_path):
    """The GPU path (16-bit base, autocast, fp32 projector copy) on the CPU; the projector is saved."""
    config = _config(small_data, tiny_model, tmp_path / "bf16", max_steps=2, precision="bf16")
    config.train_projector = config.gradient_checkpointing = True
    result = train(config)
    assert result.model.backbone.model.multi_modal_projector.linear_1.weight.dtype == torch.bfloat16
    base, mine = (
        load_file(str(tiny_model / "model.safetensors")),
        load_file(str(result.output / "model.safetensors")),
    )
    key = "multi_modal_projector.linear_1.weight"
    assert mine[key].dtype == torch.bfloat16 and not torch.equal(
        mine[key].float(), base[key].bfloat16().float()
    )
    photo = next((small_data / "images").glob("test_*.jpg"))
    assert 0.0 <= load_scorer(result.output, device="cpu", max_tiles=1).score(photo)[0].dims["overall"] <= 1.0


def test_heads_only_training_without_lora(small_data, tiny_model, tmp_path):
    result = train(_config(small_data, tiny_model, tmp_path / "heads", max_steps=2, lora_rank=0))
    assert result.adapter is None and not (result.output / "adapter").exists()
    base, mine = (
        load_file(str(tiny_model / "heads.safetensors")),
        load_file(str(result.output / "heads.safetensors")),
    )
    assert not torch.equal(base["regression.linear.weight"], mine["regression.linear.weight"])
    load_scorer(result.output, device="cpu", max_tiles=1)


def test_impossible_hardware_settings_fail_before_loading(small_data, tiny_model, tmp_path):
    if torch.cuda.is_available():
        pytest.skip("checks the CPU-only messages")
    with pytest.raises(HumanAesError, match=r"4-bit .* needs a CUDA GPU"):
        train(_config(small_data, tiny_model, tmp_path / "q", quantize="4bit"))
    with pytest.raises(HumanAesError, match="fp16 training needs a GPU"):
        train(_config(small_data, tiny_model, tmp_path / "h", precision="fp16"))
    assert not (tmp_path / "q").exists()


# ----------------------------------------------------------------------------------- config and CLI


def test_config_file_then_flags(tmp_path):
    (tmp_path / "c.yaml").write_text(
        "lr: 0.0005\nepochs: 3\nlora-targets: [q_proj, v_proj]\ntrain_projector: true\n"
    )
    config = config_from_args(["--config", str(tmp_path / "c.yaml"), "--epochs", "2", "--data", "d"])
    assert (config.lr, config.epochs, config.lora_targets, config.train_projector) == (
        5e-4,
        2,
        ["q_proj", "v_proj"],
        True,
    )
    assert config.data == "d" and config.batch_size == TrainConfig().batch_size
    (tmp_path / "bad.json").write_text(json.dumps({"learning_rate": 1}))
    with pytest.raises(HumanAesError, match="unknown setting 'learning_rate'"):
        config_from_args(["--config", str(tmp_path / "bad.json")])
    with pytest.raises(HumanAesError, match="epochs = 'many'"):
        TrainConfig.from_mapping({"epochs": "many"})
    with pytest.raises(HumanAesError, match="4-bit training needs LoRA"):
        TrainConfig.from_mapping({"quantize": "4bit", "lora_rank": 0})


def test_every_setting_is_a_flag():
    """The parser is generated from TrainConfig: each field has its dashed flag, typed as the field."""
    expected: dict[str, object] = {}
    argv: list[str] = []
    for f in fields(TrainConfig):
        default = getattr(TrainConfig(), f.name)
        flag = "--" + f.name.replace("_", "-")
        if f.name == "check_images":
            argv.append("--no-image-check")
            expected[f.name] = False
        elif isinstance(default, bool):
            argv.append(flag)
            expected[f.name] = True
        elif f.name in ("precision", "quantize", "taste"):
            value = {"precision": "bf16", "quantize": "4bit", "taste": "off"}[f.name]
            argv += [flag, value]
            expected[f.name] = value
        elif f.name == "lora_targets":
            argv += [flag, "q_proj, v_proj"]
            expected[f.name] = ["q_proj", "v_proj"]
        elif isinstance(default, int) or f.name == "max_tiles":
            argv += [flag, str((default or 1) + 1)]
            expected[f.name] = (default or 1) + 1
        elif isinstance(default, float) or f.name == "head_lr":
            argv += [flag, str((default or 0.0) + 0.5)]
            expected[f.name] = (default or 0.0) + 0.5
        else:
            argv += [flag, "x"]
            expected[f.name] = "x"
    config = config_from_args(argv)
    assert {name: getattr(config, name) for name in expected} == expected
    assert all(expected[name] != getattr(TrainConfig(), name) for name in expected)


def test_recipes_in_training_folder_are_valid():
    root = Path(__file__).resolve().parents[3] / "training"
    recipes = sorted(root.glob("*.yaml"))
    assert len(recipes) >= 3
    for recipe in recipes:
        config = config_from_args(["--config", str(recipe)])
        assert config.lr > 0


def test_personal_taste_from_star_ratings(tiny_model, tmp_path, capsys):
    """humanaes-train on a folder the photographer rated: overall-only samples from XMP stars."""
    folder = tmp_path / "shoot"
    folder.mkdir()
    for i in range(12):
        synthetic_photo(100 + i, (90, 60)).save(folder / f"img{i:02d}.jpg")
        stars = "-1" if i == 0 else str(1 + i % 5)
        (folder / f"img{i:02d}.jpg.xmp").write_text(
            '<x:xmpmeta xmlns:x="adobe:ns:meta/">'
            '<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
            f'<rdf:Description xmlns:xmp="http://ns.adobe.com/xap/1.0/" xmp:Rating="{stars}"/>'
            "</rdf:RDF></x:xmpmeta>"
        )
    out = tmp_path / "my-taste"
    args = ["--data", str(folder), "--base", str(tiny_model), "--out", str(out), "--max-tiles", "1", "--cpu"]
    assert (
        train_main(
            [
                *args,
                "--batch-size",
                "4",
                "--lora-rank",
                "2",
                "--workers",
                "0",
                "--quiet",
                "--val-fraction",
                "0.25",
            ]
        )
        == 0
    )
    assert "validation (3 photos)" in capsys.readouterr().err
    provenance = read_meta(out).provenance
    assert provenance["data"]["format"] == "rated-folder" and provenance["data"]["overall_only"] == 12
    assert provenance["data"]["twelve_dim"] == 0
    card = load_scorer(out, device="cpu", max_tiles=1).score(folder / "img01.jpg")[0]
    assert 0.0 <= card.dims["overall"] <= 1.0


def test_train_help_lists_the_flags(capsys):
    with pytest.raises(SystemExit):
        train_main(["--help"])
    text = capsys.readouterr().out
    for flag in ("--lora-rank", "--lambda-reg", "--mu-exp", "--resume", "--quantize", "--metavoter-epochs"):
        assert flag in text


# ----------------------------------------------------------------------------------- two processes


@pytest.mark.slow
def test_two_cpu_processes_match_one_process_with_the_same_global_batch(small_data, tiny_model, tmp_path):
    """torchrun with 2 CPU processes (gloo DDP, what `accelerate launch` starts on GPUs) trains the same
    model as one process whose batch is both processes' batches together."""
    single = train(_config(small_data, tiny_model, tmp_path / "one", batch_size=8))
    out = tmp_path / "two"
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "-m",
        "humanaes_core.cli.train",
    ]
    cmd += [
        "--data",
        str(small_data),
        "--base",
        str(tiny_model),
        "--out",
        str(out),
        "--cpu",
        "--max-tiles",
        "1",
    ]
    cmd += [
        "--batch-size",
        "4",
        "--lora-rank",
        "4",
        "--lora-alpha",
        "8",
        "--lora-dropout",
        "0",
        "--lr",
        "1e-3",
    ]
    cmd += ["--workers", "0", "--save-every", "0", "--val-fraction", "0", "--quiet"]
    run = subprocess.run(
        cmd, capture_output=True, text=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"}
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert read_meta(out).provenance["processes"] == 2
    assert read_meta(out).provenance["stage1"]["optimizer_steps"] == single.steps == 2
    a, b = _lora_and_heads(single.output), _lora_and_heads(out)
    for key in a:
        if not key.startswith("metavoter."):
            assert torch.allclose(a[key], b[key], atol=1e-6), key
    # MetaVoter: the bias before BatchNorm has no effect (and drifts with rounding), so compare outputs
    x = torch.randn(2, 3, 448, 448)
    one = load_scorer(single.output, device="cpu", max_tiles=1).model.score_batch(x, 1)
    two = load_scorer(out, device="cpu", max_tiles=1).model.score_batch(x, 1)
    assert torch.allclose(one.metavoter, two.metavoter, atol=1e-4)


def test_request_stop_saves_a_resumable_state_like_ctrl_c(small_data, tiny_model, tmp_path):
    """An app's cancel button: stop after the current step with a resumable state, as Ctrl-C does."""
    from humanaes_core.train.trainer import Trainer

    config = _config(small_data, tiny_model, tmp_path / "stopped", epochs=2)
    trainer = Trainer(config, on_step=lambda step, logs: trainer.request_stop() if step == 2 else None)
    with trainer, pytest.raises(TrainingInterrupted, match="--resume"):
        trainer.run()
    progress = json.loads((tmp_path / "stopped" / "resume" / "progress.json").read_text())
    assert progress["global_step"] == 2 and progress["stage"] == "stage1"
