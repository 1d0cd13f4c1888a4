"""End-to-end scoring through the public API with the tiny model."""

import json
from pathlib import Path

import pytest
from PIL import Image

from humanaes_core import ScoreCard, load_scorer
from humanaes_core.errors import ImageLoadError
from humanaes_core.schema import KEYS, score_to_level
from tests.conftest import BROKEN_PHOTOS, GOOD_PHOTOS


def _check_full_card(card: ScoreCard) -> None:
    assert list(card.dims) == list(KEYS)
    assert all(0.0 <= v <= 1.0 for v in card.dims.values())
    assert set(card.heads) == {"lm", "regression", "expert", "metavoter"}
    assert all(0.0 <= v <= 1.0 for v in card.heads.values())
    assert card.dims["overall"] == card.heads["metavoter"]
    assert card.level == score_to_level(card.dims["overall"])
    assert sum(card.lm_probs) == pytest.approx(1.0, abs=1e-5)
    assert card.mode == "all"


def test_astronaut_portrait_end_to_end(scorer):
    from skimage import data

    image = Image.fromarray(data.astronaut())
    (card,) = scorer.score([image])
    _check_full_card(card)
    assert card.tiles == 1  # 512×512 square, max_tiles 4: one tile, no thumbnail
    assert card.model == scorer.fingerprint
    json.dumps(card.to_dict())  # JSON-ready
    assert ScoreCard.from_dict(json.loads(json.dumps(card.to_dict()))) == card


def test_synthetic_photos_from_paths_keep_input_order(scorer, photo_dir):
    paths = [photo_dir / p for p in GOOD_PHOTOS]
    cards = scorer.score(paths)
    assert [c.source for c in cards] == [str(p) for p in paths]
    for card in cards:
        _check_full_card(card)
    assert len({c.dims["overall"] for c in cards}) == len(cards)  # a random model still tells them apart
    assert {c.tiles for c in cards} == {1, 3, 5}  # square, 3:2, 2:3 and 4:1 photos tile differently


def test_scoring_is_deterministic(tiny_model, photo_dir):
    paths = [photo_dir / p for p in GOOD_PHOTOS]
    first = load_scorer(tiny_model, device="cpu", max_tiles=4).score(paths)
    second = load_scorer(tiny_model, device="cpu", max_tiles=4, batch_size=1).score(paths)
    for a, b in zip(first, second, strict=True):
        for key in KEYS:
            assert a.dims[key] == pytest.approx(b.dims[key], abs=1e-5)


def test_quick_overall_cards(scorer, photo_dir):
    paths = [photo_dir / p for p in GOOD_PHOTOS[:2]]
    quick = scorer.score(paths, heads="overall")
    full = scorer.score(paths)
    for q, f in zip(quick, full, strict=True):
        assert list(q.dims) == ["overall"] and set(q.heads) == {"lm", "regression"}
        assert q.mode == "overall"
        assert q.heads["lm"] == pytest.approx(f.heads["lm"], abs=1e-4)
        assert q.dims["overall"] == pytest.approx((q.heads["lm"] + q.heads["regression"]) / 2, abs=1e-6)


def test_bad_files_raise_from_score_but_stream_as_reasons(scorer, photo_dir):
    with pytest.raises(ImageLoadError) as err:
        scorer.score([photo_dir / "truncated.jpg"])
    assert "truncated.jpg" in str(err.value)
    items = [photo_dir / p for p in (*GOOD_PHOTOS[:2], *BROKEN_PHOTOS)]
    results = {Path(r.source).name: r for r in scorer.score_iter(items)}
    assert len(results) == len(items)
    for name in ("astronaut.jpg", "landscape.jpg"):
        assert results[name].card is not None and results[name].error is None
    for name in BROKEN_PHOTOS:
        assert results[name].card is None and results[name].error


def test_invalid_arguments(scorer, tiny_model):
    with pytest.raises(ValueError):
        list(scorer.score_iter([], heads="expert"))
    with pytest.raises(Exception, match="max_tiles"):
        load_scorer(tiny_model, device="cpu", max_tiles=0)
