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
