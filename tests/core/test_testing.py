"""The demo model (`python -m humanaes_core.testing OUT --demo`): scores that follow brightness."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageEnhance

from humanaes_core.model import read_meta
from humanaes_core.schema import LEVELS
from humanaes_core.testing import demo_property, is_demo, main, make_demo_model


@pytest.fixture(scope="session")
def demo_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_demo_model(tmp_path_factory.mktemp("demo") / "demo")


def _photo(brightness: float) -> Image.Image:
    """The bundled sample photo at a given brightness factor (a real photo, not the calibration set)."""
    sample = Path(__file__).resolve().parents[2] / "resources" / "samples" / "astronaut.jpg"
    return ImageEnhance.Brightness(Image.open(sample).convert("RGB")).enhance(brightness)


def test_demo_scores_follow_brightness_over_the_levels(demo_model: Path) -> None:
    from humanaes_core import load_scorer

    photos = [_photo(b) for b in np.linspace(0.3, 1.8, 10)]
    cards = load_scorer(demo_model, device="cpu", max_tiles=2).score(photos)
    scores = [c.dims["overall"] for c in cards]
    assert len({c.level for c in cards}) >= 3, scores
    props = [demo_property(p) for p in photos]
    assert props == sorted(props)
    # Ordered like the property: rank correlation near 1, and the darkest third below the brightest third.
    rho = np.corrcoef(np.argsort(np.argsort(props)), np.argsort(np.argsort(scores)))[0, 1]
    assert rho >= 0.9, scores
    assert max(scores[:3]) < min(scores[-3:]), scores
    assert {c.level for c in cards} <= set(LEVELS)


def test_demo_checkpoint_says_it_is_a_demo(demo_model: Path, tiny_model: Path) -> None:
    meta = read_meta(demo_model)
    assert meta.name == "HumanAes demo model"
    assert meta.provenance["demo"] is True and is_demo(meta)
    assert not is_demo(read_meta(tiny_model))  # the plain random model stays the tests' default


def test_demo_model_is_deterministic(demo_model: Path, tmp_path: Path, capsys) -> None:
    assert main([str(tmp_path / "again"), "--demo"]) == 0
    assert "brightness" in capsys.readouterr().out
    for name in ("heads.safetensors", "humanaes.json"):
        assert (tmp_path / "again" / name).read_bytes() == (demo_model / name).read_bytes()
