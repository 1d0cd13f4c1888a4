"""Where models come from, and what a person reads when one is missing."""

import pytest

from humanaes_core.errors import ModelNotAvailableError
from humanaes_core.sources import cache_dir, resolve_model


def test_local_checkpoint_directory(tiny_model):
    assert resolve_model(tiny_model) == tiny_model
    assert resolve_model(str(tiny_model)) == tiny_model


def test_offline_hub_id_gives_one_paragraph(monkeypatch, tmp_path):
    monkeypatch.setenv("HUMANAES_MODELS", str(tmp_path))
    with pytest.raises(ModelNotAvailableError) as err:
        resolve_model("KwaiVGI/HumanAesExpert-1B")
    message = str(err.value)
    assert "\n" not in message
    assert "KwaiVGI/HumanAesExpert-1B" in message and "humanaes-import" in message
    assert str(tmp_path) in message
    assert cache_dir() == tmp_path


def test_original_layout_directory_is_explained(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(ModelNotAvailableError, match="humanaes-import"):
        resolve_model(tmp_path)


@pytest.mark.parametrize("bad", ["no-such-dir", "a/b/c", "/definitely/not/here"])
def test_neither_directory_nor_hub_id(bad):
    with pytest.raises(ModelNotAvailableError):
        resolve_model(bad)


def test_file_instead_of_directory(tmp_path):
    f = tmp_path / "weights.safetensors"
    f.write_bytes(b"x")
    with pytest.raises(ModelNotAvailableError, match="is a file"):
        resolve_model(f)


def test_hub_id_downloads_into_our_cache_with_progress(monkeypatch, tmp_path, tiny_model):
    """The download path, with huggingface_hub replaced by a fake hub that has the repository."""
    import huggingface_hub
    from huggingface_hub.errors import LocalEntryNotFoundError

    monkeypatch.setenv("HUMANAES_MODELS", str(tmp_path))
    calls = []

    class Progress:  # stands in for the tqdm class a GUI passes
        pass

    def fake_snapshot_download(repo_id, cache_dir, local_files_only=False, tqdm_class=None):
        calls.append((repo_id, cache_dir, local_files_only, tqdm_class))
        if local_files_only:
            raise LocalEntryNotFoundError("not cached yet")
        return str(tiny_model)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_snapshot_download)
    assert resolve_model("KwaiVGI/HumanAesExpert-1B", progress=Progress) == tiny_model
    assert calls == [
        ("KwaiVGI/HumanAesExpert-1B", tmp_path / "hub", True, Progress),
        ("KwaiVGI/HumanAesExpert-1B", tmp_path / "hub", False, Progress),
    ]
