"""Safety: checkpoints load only safetensors and JSON, and only when they match their manifest; a missing or
damaged model never stops browsing; training data cannot escape its root; sidecars and copies are written
only next to the photo or into the chosen folder, atomically, never over an original."""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
import pickle
import shutil
from pathlib import Path

import pytest
import torch

from humanaes_core import model as ckpt
from humanaes_core.culling import CullError, Decision, copy_picks
from humanaes_core.data.loaders import DataError, load_data
from humanaes_core.errors import CheckpointError, ModelNotAvailableError
from humanaes_core.formats.xmp import XmpError, read_rating, read_sidecar, write_decision
from humanaes_core.model import manifest
from humanaes_core.scoring.scan import CachedScoring
from humanaes_core.store.scores import ScoreCache

from . import hostile_corpus as hc

CPU = torch.device("cpu")


def _load(path: Path):
    return ckpt.load_model(path, device=CPU, dtype=torch.float32)


class _Trap:
    """Unpickling this creates ``marker``: proof that a pickle was opened."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def _trap_pickle(path: Path, marker: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps({"weight": _Trap(marker)}))


def _trap_module(path: Path, marker: Path) -> None:
    path.write_text(f"import pathlib\npathlib.Path({str(marker)!r}).write_text('imported')\n")


@pytest.fixture
def copy_of(tiny_model, tmp_path):
    def make(name: str = "ckpt") -> Path:
        return Path(shutil.copytree(tiny_model, tmp_path / name))

    return make


@pytest.fixture(autouse=True)
def _own_stamps(tmp_path, monkeypatch):
    """Each test its own verified-stamp file."""
    monkeypatch.setenv("HUMANAES_MODELS", str(tmp_path / "models"))


# ------------------------------------------------------------------------------------- checkpoints


def test_pickles_and_python_files_in_a_checkpoint_are_never_opened(copy_of, tmp_path, caplog):
    path = copy_of()
    markers = [tmp_path / f"marker{i}" for i in range(5)]
    _trap_pickle(path / "pytorch_model.bin", markers[0])
    _trap_pickle(path / "training_args.pt", markers[1])
    _trap_module(path / "modeling_internvl.py", markers[2])
    _trap_module(path / "tokenization_internvl.py", markers[3])
    _trap_pickle(path / "optimizer.pkl", markers[4])
    # config and tokenizer ask for the remote code (and the manifest vouches for all of it)
    for name, auto in (
        ("config.json", "modeling_internvl.Model"),
        ("tokenizer_config.json", "tokenization_internvl.T"),
    ):
        data = json.loads((path / name).read_text())
        data["auto_map"] = {"AutoModel": auto, "AutoConfig": auto, "AutoTokenizer": [auto, auto]}
        (path / name).write_text(json.dumps(data))
    ckpt.write_manifest(path)
    with caplog.at_level(logging.WARNING, logger="humanaes_core.model.checkpoint"):
        model, _ = _load(path)
    assert model is not None
    assert [m.name for m in markers if m.exists()] == []
    # unlisted pickles and code are ignored with a warning too
    (path / "extra.py").write_text("raise SystemExit('imported')\n")
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="humanaes_core.model.checkpoint"):
        _load(path)
    assert "extra.py" in caplog.text and "never loaded" in caplog.text


def test_loading_asks_for_safetensors_and_no_remote_code(copy_of, monkeypatch):
    from transformers import AutoTokenizer, InternVLForConditionalGeneration

    calls: list[tuple[str, dict]] = []

    def spy(name, real):
        def wrapper(*args, **kwargs):
            calls.append((name, kwargs))
            return real(*args, **kwargs)

        return wrapper

    monkeypatch.setattr(AutoTokenizer, "from_pretrained", spy("tokenizer", AutoTokenizer.from_pretrained))
    monkeypatch.setattr(
        InternVLForConditionalGeneration,
        "from_pretrained",
        spy("backbone", InternVLForConditionalGeneration.from_pretrained),
    )
    _load(copy_of())
    kinds = {name: kwargs for name, kwargs in calls}
    assert set(kinds) == {"tokenizer", "backbone"}
    assert all(kwargs.get("trust_remote_code") is False for kwargs in kinds.values())
    assert kinds["backbone"]["use_safetensors"] is True


def test_pickled_weights_alone_are_refused(copy_of, tmp_path):
    path = copy_of()
    marker = tmp_path / "unpickled"
    (path / "model.safetensors").unlink()
    _trap_pickle(path / "pytorch_model.bin", marker)
    ckpt.write_manifest(path)  # a consistent manifest: the refusal comes from the loader
    with pytest.raises(CheckpointError, match="backbone weights"):
        _load(path)
    assert not marker.exists()


def test_a_pickled_adapter_is_refused(copy_of, tmp_path):
    path = copy_of()
    marker = tmp_path / "unpickled"
    adapter = path / ckpt.ADAPTER_DIR
    _trap_pickle(adapter / "adapter_model.bin", marker)
    (adapter / "adapter_config.json").write_text(
        json.dumps({"peft_type": "LORA", "r": 2, "target_modules": ["q_proj"]})
    )
    ckpt.write_manifest(path)
    with pytest.raises(CheckpointError, match="safetensors only"):
        _load(path)
    assert not marker.exists()


@pytest.mark.parametrize("name", ["model.safetensors", "heads.safetensors", "tokenizer.json", "config.json"])
def test_a_file_that_does_not_match_the_manifest_is_refused(copy_of, name):
    path = copy_of()
    data = bytearray((path / name).read_bytes())
    data[len(data) // 2] ^= 0x01  # one bit, same size: only the hash can tell
    (path / name).write_bytes(bytes(data))
    with pytest.raises(
        CheckpointError, match=rf"{name}: content does not match the manifest's sha256"
    ) as err:
        _load(path)
    assert "not loaded" in str(err.value)


def test_an_unlisted_adapter_or_weights_file_is_refused(copy_of):
    path = copy_of()
    (path / "metrics.json").write_text('{"plcc": 0.85}')  # a user's own notes: never read, no problem
    (path / "README.md").write_text("my model")
    _load(path)
    shutil.copy(path / "heads.safetensors", path / "model-00002-of-00002.safetensors")
    with pytest.raises(CheckpointError, match=r"model-00002-of-00002\.safetensors: not listed in manifest"):
        _load(path)
    (path / "model-00002-of-00002.safetensors").unlink()
    (path / ckpt.ADAPTER_DIR).mkdir()
    (path / ckpt.ADAPTER_DIR / "adapter_config.json").write_text("{}")
    with pytest.raises(CheckpointError, match=r"adapter/adapter_config\.json: not listed"):
        _load(path)


def test_a_manifest_cannot_point_outside_the_checkpoint(copy_of):
    path = copy_of()
    manifest = json.loads((path / ckpt.MANIFEST_FILE).read_text())
    manifest["files"]["../../etc/passwd"] = {"size": 1, "sha256": "0" * 64}
    (path / ckpt.MANIFEST_FILE).write_text(json.dumps(manifest))
    with pytest.raises(CheckpointError, match="outside the checkpoint"):
        _load(path)


def test_large_files_are_hashed_once_then_trusted_until_they_change(copy_of, monkeypatch):
    path = copy_of()
    monkeypatch.setattr(manifest, "STAMP_MIN_BYTES", 100_000)  # model.safetensors (~780 KB) is "large" here
    hashed: list[str] = []
    real = manifest._sha256
    monkeypatch.setattr(manifest, "_sha256", lambda p: hashed.append(p.name) or real(p))
    ckpt.verify(path)
    assert "model.safetensors" in hashed and "tokenizer.json" in hashed
    hashed.clear()
    ckpt.verify(path)
    assert "model.safetensors" not in hashed and "tokenizer.json" in hashed  # small files: every time
    assert (manifest._stamps_path()).is_file()
    # changed in place, same size, mtime put back: the inode's ctime still changes, so it is hashed again
    weights = path / "model.safetensors"
    st = weights.stat()
    data = bytearray(weights.read_bytes())
    data[-10] ^= 0xFF
    weights.write_bytes(bytes(data))
    os.utime(weights, ns=(st.st_atime_ns, st.st_mtime_ns))
    hashed.clear()
    with pytest.raises(CheckpointError, match=r"model\.safetensors: content does not match"):
        ckpt.verify(path)
    assert "model.safetensors" in hashed


def test_a_damaged_model_still_serves_cached_cards(tiny_model, copy_of, tmp_path):
    shoot = tmp_path / "shoot"
    cached = hc.write(shoot / "a.jpg", hc.encoded(hc.picture(1, (160, 120)), "JPEG"))
    new = hc.write(shoot / "b.jpg", hc.encoded(hc.picture(2, (160, 120)), "JPEG"))
    db = tmp_path / "cache.sqlite"
    with ScoreCache(db) as cache:
        list(CachedScoring(tiny_model, cache=cache, device="cpu", max_tiles=1).run([cached]))
    broken = copy_of("broken")
    data = bytearray((broken / "model.safetensors").read_bytes())
    data[-100] ^= 0xFF
    (broken / "model.safetensors").write_bytes(bytes(data))
    assert ckpt.checkpoint_fingerprint(broken) == ckpt.checkpoint_fingerprint(
        tiny_model
    )  # same manifest: same cached cards
    with ScoreCache(db) as cache:
        runner = CachedScoring(broken, cache=cache, device="cpu", max_tiles=1)
        results = runner.run([cached, new])
        first = next(results)
        assert first.source == str(cached) and first.card is not None  # browsing: from the cache
        with pytest.raises(CheckpointError, match="damaged or incomplete"):
            next(results)  # scoring: a clear message
    with pytest.raises(ModelNotAvailableError):
        CachedScoring(tmp_path / "no-such-model", cache=None)


@pytest.mark.parametrize("fault", ["damaged", "missing"])
def test_the_app_shows_a_banner_and_keeps_browsing(qtbot, tiny_model, copy_of, tmp_path, monkeypatch, fault):
    pytest.importorskip("PySide6")
    from PySide6.QtWidgets import QApplication

    from humanaes_desktop.mainwindow import MainWindow
    from humanaes_desktop.settings import AppSettings

    monkeypatch.setenv("HUMANAES_LIBRARY", str(tmp_path / "cache.sqlite"))
    monkeypatch.setenv("HUMANAES_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.setenv("HUMANAES_THUMBNAILS", str(tmp_path / "thumbnails"))
    shoot = tmp_path / "shoot"
    photos = [
        hc.write(shoot / f"{i}.jpg", hc.encoded(hc.picture(10 + i, (160, 120)), "JPEG")) for i in range(4)
    ]
    with ScoreCache() as cache:  # two photos were scored before the model broke
        list(CachedScoring(tiny_model, cache=cache, device="cpu", max_tiles=1, batch_size=4).run(photos[:2]))
    if fault == "damaged":
        model = copy_of("broken")
        data = bytearray((model / "model.safetensors").read_bytes())
        data[-100] ^= 0xFF
        (model / "model.safetensors").write_bytes(bytes(data))
        expected = "damaged or incomplete"
    else:
        model = tmp_path / "gone"
        expected = "gone"
    settings = AppSettings.load()
    settings.scoring.model = str(model)
    settings.scoring.device = "cpu"
    settings.scoring.max_tiles = 1
    settings.scoring.batch_size = 4
    window = MainWindow(settings)
    qtbot.addWidget(window)
    window.show()
    window.open_paths([shoot])
    qtbot.waitUntil(lambda: not window.controller.running and len(window.model.photos) == 4, timeout=60000)
    qtbot.waitUntil(window.banner.isVisible, timeout=10000)
    assert expected in window.banner_text.text()
    assert QApplication.activeModalWidget() is None  # not a dialog
    scored = sum(p.card is not None for p in window.model.photos)
    assert scored == (2 if fault == "damaged" else 0)  # the damaged model's fingerprint still finds its cards
    window.set_sort("overall", descending=True)  # browsing still works
    window.select_row(3)
    assert window.current_photo() is not None
    window.close()


# -------------------------------------------------------------------------------------- training data


@pytest.fixture
def data_root(tmp_path):
    root = tmp_path / "data"
    for name in ("img/0.jpg", "img/1.jpg"):
        hc.write(root / name, hc.encoded(hc.picture(3, (64, 64)), "JPEG"))
    hc.write(tmp_path / "outside.jpg", hc.encoded(hc.picture(4, (64, 64)), "JPEG"))
    os.symlink(tmp_path / "outside.jpg", root / "img" / "link-out.jpg")
    return root


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("../outside.jpg", "leads outside the data root"),
        ("img/../../outside.jpg", "leads outside the data root"),
        ("img/link-out.jpg", "leads outside the data root"),  # a symlink inside pointing out
        ("/etc/passwd", "absolute path"),
        ("img/\x00.jpg", ""),
    ],
)
def test_label_paths_cannot_escape_the_root(data_root, name, reason):
    for fmt in ("jsonl", "csv"):
        if fmt == "jsonl":
            labels = data_root / "labels.jsonl"
            rows = [{"image_name": "img/0.jpg", "score": 0.5}, {"image_name": name, "score": 0.5}]
            labels.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
        else:
            labels = data_root / "labels.csv"
            labels.write_text(f"path,overall\nimg/0.jpg,0.5\n{name},0.5\n")
        with pytest.raises(DataError, match=reason or ".") as err:
            load_data(labels)
        assert ":2" in str(err.value) or ":3" in str(err.value)  # the offending line is named


def test_a_rated_folder_cannot_reach_outside_through_a_symlink(data_root, tmp_path):
    folder = data_root / "img"
    write_decision(folder / "0.jpg", 4)
    write_decision(folder / "link-out.jpg", 5)
    data = load_data(folder)
    assert all(s.path.resolve().is_relative_to(folder.resolve()) for s in data.samples)
    assert any(p.endswith("link-out.jpg") and "outside" in why for p, why in data.skipped)


# ------------------------------------------------------------------------------ sidecars and copies


def _tree(root: Path) -> dict[str, str]:
    """Every entry under root with a digest of what it is (content, or link target)."""
    out = {}
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root).as_posix()
        if p.is_symlink():
            out[rel] = "-> " + os.readlink(p)
        elif p.is_file():
            out[rel] = hashlib.sha256(p.read_bytes()).hexdigest()
        else:
            out[rel] = "dir"
    return out


@pytest.fixture
def shoot(tmp_path):
    root = tmp_path / "shoot"
    for i in range(3):
        hc.write(root / f"IMG_{i}.jpg", hc.encoded(hc.picture(20 + i, (120, 90)), "JPEG"))
    return root


def test_a_sidecar_is_written_next_to_the_photo_and_nowhere_else(shoot, tmp_path):
    before = _tree(tmp_path)
    (sidecar,) = write_decision(shoot / "IMG_0.jpg", 4, label="Green")
    after = _tree(tmp_path)
    assert sidecar.parent == shoot
    assert set(after) - set(before) == {f"shoot/{sidecar.name}"}  # no temporary file left anywhere
    assert {k: v for k, v in after.items() if k in before} == before  # the photo is untouched
    rating = read_rating(shoot / "IMG_0.jpg")
    assert (rating.stars, rating.label, rating.source) == (4, "Green", str(sidecar))


def test_a_sidecar_that_links_to_the_photo_is_never_written_through(shoot):
    photo = shoot / "IMG_1.jpg"
    original = photo.read_bytes()
    os.symlink(photo.name, shoot / "IMG_1.jpg.xmp")
    with pytest.raises(XmpError):
        write_decision(photo, 5)
    assert photo.read_bytes() == original


def test_a_sidecar_that_links_elsewhere_is_replaced_not_followed(shoot, tmp_path):
    other = hc.write(tmp_path / "elsewhere" / "x.jpg", hc.encoded(hc.picture(30, (64, 64)), "JPEG"))
    (outside,) = write_decision(other, 1)
    outside_bytes = outside.read_bytes()
    link = shoot / "IMG_2.jpg.xmp"
    os.symlink(outside, link)
    write_decision(shoot / "IMG_2.jpg", 5)
    assert outside.read_bytes() == outside_bytes
    assert not link.is_symlink() and read_sidecar(link)["Xmp.xmp.Rating"] == "5"


def test_a_failed_sidecar_write_keeps_the_old_one(shoot, monkeypatch):
    photo = shoot / "IMG_0.jpg"
    (sidecar,) = write_decision(photo, 2)
    old = sidecar.read_bytes()

    def crash(*_args, **_kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("humanaes_core.formats.xmp.os.replace", crash)
    with pytest.raises(XmpError, match="cannot write"):
        write_decision(photo, 5)
    assert sidecar.read_bytes() == old
    assert sorted(p.name for p in shoot.iterdir()) == ["IMG_0.jpg", "IMG_0.jpg.xmp", "IMG_1.jpg", "IMG_2.jpg"]


def test_copies_go_only_into_the_chosen_folder_and_never_over_a_file(shoot, tmp_path):
    write_decision(shoot / "IMG_0.jpg", 4)
    picks = {p: Decision(True, 4, "test") for p in sorted(shoot.glob("*.jpg"))}
    dest = tmp_path / "picks"
    taken = hc.write(dest / "IMG_1.jpg", b"someone else's file")
    before = _tree(shoot)
    report = copy_picks(picks, dest)
    assert _tree(shoot) == before  # originals untouched
    assert taken.read_bytes() == b"someone else's file"
    names = sorted(p.name for p in dest.iterdir())
    assert names == ["IMG_0.jpg", "IMG_0.jpg.xmp", "IMG_1-1.jpg", "IMG_1.jpg", "IMG_2.jpg"]  # no partials
    assert len(report.copied) == 3 and report.failed == []
    for src, dst in report.copied:
        assert dst.parent == dest and dst.read_bytes() == src.read_bytes()


def test_copies_refuse_the_photos_own_folder_even_through_a_link(shoot, tmp_path):
    picks = {shoot / "IMG_0.jpg": Decision(True, 4, "test")}
    os.symlink(shoot, tmp_path / "alias")
    before = _tree(shoot)
    for dest in (shoot, tmp_path / "alias"):
        with pytest.raises(CullError, match="holds the photos"):
            copy_picks(picks, dest)
    assert _tree(shoot) == before


def test_without_hard_links_a_copy_still_never_replaces_a_file(shoot, tmp_path, monkeypatch):
    """exFAT cards have no hard links: the name must be reserved, not checked and then replaced."""
    from humanaes_core.culling import moves as cull

    def no_links(*_args, **_kwargs):
        raise OSError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(cull.os, "link", no_links)
    dest = tmp_path / "card"
    dest.mkdir()
    tmp = hc.write(dest / ".IMG_0.jpg.partial", b"the new copy")
    target = hc.write(dest / "IMG_0.jpg", b"appeared a moment ago")
    monkeypatch.setattr(Path, "exists", lambda self: False)  # the check was made before it appeared
    with pytest.raises(FileExistsError):
        cull._publish(tmp, target)
    monkeypatch.undo()
    assert target.read_bytes() == b"appeared a moment ago"
    # and an ordinary copy without hard links works, leaving no placeholder or partial behind
    monkeypatch.setattr(cull.os, "link", no_links)
    report = copy_picks({shoot / "IMG_2.jpg": Decision(True, 4, "test")}, dest)
    assert [d.name for _, d in report.copied] == ["IMG_2.jpg"]
    assert sorted(p.name for p in dest.iterdir()) == [".IMG_0.jpg.partial", "IMG_0.jpg", "IMG_2.jpg"]


def test_scores_are_never_written_over_a_photo(shoot, tiny_model):
    from humanaes_core.cli.score import main

    photo = shoot / "IMG_0.jpg"
    original = photo.read_bytes()
    assert main([str(shoot), "--model", str(tiny_model), "--out", str(photo), "--no-cache"]) == 2
    assert photo.read_bytes() == original
