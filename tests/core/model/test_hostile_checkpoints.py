"""Hostile checkpoints with a consistent manifest: every one is refused in one line, fast, before anything
outside the directory is read or anything large is allocated (issue 16, items 10, 11 and 12).

Each case copies the tiny model, changes it the way a corrupt download or an attacker would, and rewrites
the manifest with `write_manifest` so that only the checks beyond the sha256 comparison can catch it.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from humanaes_core import load_scorer
from humanaes_core import model as ckpt
from humanaes_core.errors import CheckpointError
from humanaes_core.files import FileTooLargeError, NotRegularFileError, read_json_file, read_small_file

#: A refusal must not cost a model load's worth of time, let alone an allocation of gigabytes.
FAST_S = 3.0


@pytest.fixture(autouse=True)
def _own_stamps(tmp_path, monkeypatch):
    monkeypatch.setenv("HUMANAES_MODELS", str(tmp_path / "models"))


@pytest.fixture
def copy_of(tiny_model, tmp_path) -> Callable[[], Path]:
    return lambda: Path(shutil.copytree(tiny_model, tmp_path / "ckpt"))


def _edit(name: str, change: Callable[[dict], object]) -> Callable[[Path], None]:
    def apply(path: Path) -> None:
        data = json.loads((path / name).read_text(encoding="utf-8"))
        change(data)
        (path / name).write_text(json.dumps(data), encoding="utf-8")

    return apply


def _weight_names(path: Path) -> list[str]:
    from safetensors import safe_open

    with safe_open(str(path / "model.safetensors"), "pt") as f:
        return list(f.keys())


def _index_to(where: Callable[[Path], str]) -> Callable[[Path], None]:
    """Weights moved out of the checkpoint, a shard index in their place naming them ``where(ckpt)``."""

    def apply(path: Path) -> None:
        outside = path.parent / "w"
        outside.mkdir()
        names = _weight_names(path)
        shutil.move(path / "model.safetensors", outside / "model.safetensors")
        index = {"metadata": {}, "weight_map": dict.fromkeys(names, where(path))}
        (path / "model.safetensors.index.json").write_text(json.dumps(index))

    return apply


def _link_out(name: str) -> Callable[[Path], None]:
    def apply(path: Path) -> None:
        outside = path.parent / "w"
        outside.mkdir()
        shutil.move(path / name, outside / name)
        os.symlink(outside / name, path / name)

    return apply


def _replace_with(name: str, make: Callable[[Path], None]) -> Callable[[Path], None]:
    def apply(path: Path) -> None:
        (path / name).unlink()
        make(path / name)

    return apply


def _dev_zero(p: Path) -> None:
    os.symlink("/dev/zero", p)


def _nested(p: Path) -> None:
    p.write_text("[" * 100_000 + "]" * 100_000)


def _fast_tokenizer_files(path: Path) -> None:
    outside = path.parent / "w"
    outside.mkdir()
    shutil.copy(path / "tokenizer.json", outside / "tokenizer.9.json")
    _edit("tokenizer_config.json", lambda c: c.update(fast_tokenizer_files=["../w/tokenizer.9.json"]))(path)


def _corrupt_header(path: Path) -> None:
    """Same size, a header that is not JSON: only safetensors itself can tell."""
    data = bytearray((path / "model.safetensors").read_bytes())
    data[:24] = b"\x10\0\0\0\0\0\0\0{not json at all"
    (path / "model.safetensors").write_bytes(bytes(data))


def _huge_tokenizer(path: Path) -> None:
    with open(path / "tokenizer.json", "r+b") as f:  # sparse: costs nothing on disk
        f.truncate(ckpt.MAX_TOKENIZER_BYTES + 1)


def _adapter(config: dict) -> Callable[[Path], None]:
    def apply(path: Path) -> None:
        (path / ckpt.ADAPTER_DIR).mkdir()
        (path / ckpt.ADAPTER_DIR / "adapter_config.json").write_text(json.dumps(config))
        shutil.copy(path / "heads.safetensors", path / ckpt.ADAPTER_DIR / "adapter_model.safetensors")

    return apply


def _text(**values) -> Callable[[Path], None]:
    return _edit("config.json", lambda c: c["text_config"].update(values))


def _vision(**values) -> Callable[[Path], None]:
    return _edit("config.json", lambda c: c["vision_config"].update(values))


def _meta(section: str, **values) -> Callable[[Path], None]:
    return _edit("humanaes.json", lambda c: c[section].update(values))


# name: (mutation, what the one-line message says)
CASES: dict[str, tuple[Callable[[Path], None], str]] = {
    # item 11: every file a checkpoint reads lies inside it and in its manifest
    "index names ../w": (_index_to(lambda p: "../w/model.safetensors"), "not a file beside it"),
    "index names an absolute path": (
        _index_to(lambda p: str(p.parent / "w" / "model.safetensors")),
        "not a file beside it",
    ),
    "weights linked from outside": (_link_out("model.safetensors"), "leads outside the checkpoint"),
    "tokenizer linked from outside": (_link_out("tokenizer.json"), "leads outside the checkpoint"),
    "adapter folder linked from outside": (
        lambda p: (p.parent / "w").mkdir() or os.symlink(p.parent / "w", p / ckpt.ADAPTER_DIR),
        "adapter: a link that leads outside",
    ),
    "fast_tokenizer_files names ../w": (_fast_tokenizer_files, "not a file beside it"),
    # item 12: absurd sizes, special files
    "1e6 text layers": (_text(num_hidden_layers=1_000_000), "num_hidden_layers is 1000000"),
    "1e6 vision layers": (_vision(num_hidden_layers=1_000_000), "num_hidden_layers is 1000000"),
    "1e9 attention heads": (_text(num_attention_heads=10**9), "num_attention_heads is 1000000000"),
    "uneven heads": (_text(num_attention_heads=3), "not a multiple of num_attention_heads"),
    "1e9 vocabulary": (_text(vocab_size=10**9), "vocab_size is 1000000000"),
    "float layers": (_text(num_hidden_layers=2.0), "must be a whole number"),
    "1-pixel patches": (_vision(patch_size=[1, 1]), "patches per side"),
    "billions of parameters on kilobytes of weights": (
        _text(num_hidden_layers=200, intermediate_size=65536, layer_types=["full_attention"] * 200),
        "too few for the 2,518,276,160 parameters or more",
    ),
    "image_size 100000": (_meta("image", image_size=100_000), "image.image_size is 100000"),
    "max_tiles 1e6": (_meta("image", max_tiles=1_000_000), "image.max_tiles is 1000000"),
    "expert FFN of 1e9": (_meta("heads", expert_ffn_hidden=10**9), "expert_ffn_hidden is 1000000000"),
    "metavoter of 1e9": (_meta("heads", metavoter_hidden=10**9), "metavoter_hidden is 1000000000"),
    "zero std": (_meta("image", std=[0, 0, 0]), "image.std must be 3 finite numbers above 0"),
    "heads wider than the model": (_meta("heads", hidden_size=8), "the heads read hidden states of 8"),
    "tiles of another size": (_meta("image", image_size=224), "cuts 224-pixel tiles"),
    "huge tokenizer": (_huge_tokenizer, "tokenizer.json: 67,108,865 bytes, more than"),
    "config.json is /dev/zero": (_replace_with("config.json", _dev_zero), "config.json: a link that leads"),
    "config.json is a FIFO": (_replace_with("config.json", os.mkfifo), "config.json: not a regular file"),
    "humanaes.json is /dev/zero": (_replace_with("humanaes.json", _dev_zero), "not a regular file"),
    "humanaes.json is a FIFO": (_replace_with("humanaes.json", os.mkfifo), "not a regular file"),
    "LoRA rank 1e9": (_adapter({"peft_type": "LORA", "r": 10**9}), "r is 1000000000"),
    "not a LoRA adapter": (_adapter({"peft_type": "PREFIX_TUNING"}), "not a LoRA adapter"),
    # item 10: broken files the manifest vouches for
    "corrupt weights header": (
        _corrupt_header,
        "cannot load the backbone weights: Error while deserializing header",
    ),
    "corrupt heads": (lambda p: (p / "heads.safetensors").write_bytes(b"junk"), "cannot load the heads"),
    "config.json not JSON": (lambda p: (p / "config.json").write_text("{oops"), "config.json is unreadable"),
    "config.json nested": (lambda p: _nested(p / "config.json"), "JSON nested too deeply"),
    "humanaes.json nested": (lambda p: _nested(p / "humanaes.json"), "JSON nested too deeply"),
    "tokenizer.json nested": (lambda p: _nested(p / "tokenizer.json"), "cannot load the tokenizer"),
    "tokenizer.json empty object": (
        lambda p: (p / "tokenizer.json").write_text("{}"),
        "cannot load the tokenizer",
    ),
    "config without text_config": (
        _edit("config.json", lambda c: c.pop("text_config")),
        "text_config is not",
    ),
    "humanaes.json without heads": (_edit("humanaes.json", lambda c: c.pop("heads")), "heads is required"),
    "humanaes.json heads a number": (
        _edit("humanaes.json", lambda c: c.update(heads=5)),
        "heads is required",
    ),
    "unknown image setting": (_meta("image", bogus=1), "image has unknown setting(s) ['bogus']"),
    "format_version a word": (
        _edit("humanaes.json", lambda c: c.update(format_version="x")),
        "format_version is 'x'",
    ),
    "question_index out of range": (_meta("prompt", question_index=99), "question_index 99"),
    "index not JSON": (
        lambda p: (p / "model.safetensors.index.json").write_text("{bad"),
        "model.safetensors.index.json: unreadable",
    ),
}


@pytest.mark.parametrize("name", list(CASES))
def test_a_hostile_checkpoint_is_refused_in_one_line_and_fast(copy_of, name):
    mutate, message = CASES[name]
    path = copy_of()
    mutate(path)
    ckpt.write_manifest(path)  # consistent: the manifest vouches for the change (regular files only)
    start = time.perf_counter()
    with pytest.raises(CheckpointError) as err:
        load_scorer(path, device="cpu")
    elapsed = time.perf_counter() - start
    text = str(err.value)
    assert message in text
    assert "\n" not in text and len(text) < 1000
    assert elapsed < FAST_S, f"{name}: refused after {elapsed:.1f} s"


def test_outside_weights_are_never_what_the_fingerprint_vouches_for(copy_of):
    """The red team's case: editing the file the index pointed at changed scores under the same fingerprint.
    Now the index is refused, so the fingerprint only ever describes files inside the checkpoint."""
    path = copy_of()
    _index_to(lambda p: "../w/model.safetensors")(path)
    ckpt.write_manifest(path)
    with pytest.raises(CheckpointError, match=r"names '\.\./w/model\.safetensors'"):
        ckpt.verify(path)
    # a shard index that names a listed shard beside it is fine
    shutil.move(path.parent / "w" / "model.safetensors", path / "model-00001-of-00001.safetensors")
    index = json.loads((path / "model.safetensors.index.json").read_text())
    index["weight_map"] = dict.fromkeys(index["weight_map"], "model-00001-of-00001.safetensors")
    (path / "model.safetensors.index.json").write_text(json.dumps(index))
    ckpt.write_manifest(path)
    ckpt.verify(path)
    model, _ = ckpt.load_model(path, device=torch.device("cpu"), dtype=torch.float32)
    assert model is not None


def test_files_transformers_reads_from_sub_folders_must_be_listed(copy_of):
    path = copy_of()
    (path / "additional_chat_templates").mkdir()
    (path / "additional_chat_templates" / "x.jinja").write_text("{{ 1 }}")  # after the manifest
    with pytest.raises(CheckpointError, match=r"additional_chat_templates/x\.jinja: not listed"):
        ckpt.verify(path)
    ckpt.write_manifest(path)
    ckpt.verify(path)
    (path / "notes").mkdir()  # a folder no loader reads may hold anything, and links to anything
    (path / "notes" / "config.json").write_text("{}")
    os.symlink("/etc", path / "notes" / "elsewhere")
    os.symlink("/etc/hostname", path / "README.md")
    ckpt.verify(path)


def test_a_manifest_that_is_a_device_or_huge_is_not_read(copy_of):
    path = copy_of()
    (path / ckpt.MANIFEST_FILE).unlink()
    os.symlink("/dev/zero", path / ckpt.MANIFEST_FILE)
    start = time.perf_counter()
    with pytest.raises(CheckpointError, match="not a regular file") as err:
        load_scorer(path, device="cpu")
    with pytest.raises(CheckpointError, match="not a regular file"):
        ckpt.checkpoint_fingerprint(path)
    assert time.perf_counter() - start < FAST_S and "\n" not in str(err.value)
    (path / ckpt.MANIFEST_FILE).unlink()
    with open(path / ckpt.MANIFEST_FILE, "wb") as f:
        f.truncate(ckpt.MAX_METADATA_BYTES + 1)
    with pytest.raises(CheckpointError, match="larger than"):
        ckpt.verify(path)


def test_a_hub_snapshot_may_link_into_its_own_blobs(tiny_model, tmp_path):
    """The hub cache keeps files in ``blobs`` and links them from ``snapshots/<rev>``: that is inside."""
    repo = tmp_path / "models--owner--name"
    blobs, snapshot = repo / "blobs", repo / "snapshots" / "0123abcd"
    blobs.mkdir(parents=True)
    snapshot.mkdir(parents=True)
    for f in tiny_model.iterdir():
        shutil.copy(f, blobs / f.name)
        os.symlink(Path("..", "..", "blobs", f.name), snapshot / f.name)
    ckpt.verify(snapshot)
    # but not to anything else outside the snapshot
    (snapshot / "tokenizer.json").unlink()
    shutil.copy(tiny_model / "tokenizer.json", repo / "tokenizer.json")
    os.symlink(repo / "tokenizer.json", snapshot / "tokenizer.json")
    with pytest.raises(CheckpointError, match=r"tokenizer\.json: leads outside the checkpoint"):
        ckpt.verify(snapshot)


def test_humanaes_score_ends_in_one_line(copy_of, tmp_path, capsys):
    from humanaes_core.cli.score import main

    shoot = tmp_path / "shoot"
    shoot.mkdir()
    from PIL import Image

    Image.new("RGB", (64, 48), (120, 80, 40)).save(shoot / "a.jpg")
    path = copy_of()
    _text(num_hidden_layers=1_000_000)(path)
    ckpt.write_manifest(path)
    code = main([str(shoot), "--model", str(path), "--device", "cpu", "--out", str(tmp_path / "out.csv")])
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert code != 0
    assert len(err) == 1 and "num_hidden_layers is 1000000" in err[0]


# ------------------------------------------------------------------------ the bounded reader itself


def test_read_small_file_refuses_what_is_not_a_small_regular_file(tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(NotRegularFileError):
        read_small_file(fifo, 100)  # returns at once: a FIFO without a writer would block a plain open
    with pytest.raises(NotRegularFileError):
        read_small_file("/dev/zero", 100)
    with pytest.raises(NotRegularFileError):
        read_small_file(tmp_path, 100)
    big = tmp_path / "big.json"
    big.write_text("[" + "1," * 100 + "1]")
    with pytest.raises(FileTooLargeError):
        read_small_file(big, 100)
    assert read_json_file(big)[:2] == [1, 1]
    (tmp_path / "bom.json").write_bytes(b"\xef\xbb\xbf{}")
    assert read_json_file(tmp_path / "bom.json") == {}
    (tmp_path / "deep.json").write_text("[" * 50_000 + "]" * 50_000)
    with pytest.raises(ValueError, match="nested too deeply"):
        read_json_file(tmp_path / "deep.json")
