"""Speed work: the vision-feature cache, out-of-memory halving, the presets, and the bench command."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pytest
import torch

from humanaes_core import load_scorer
from humanaes_core.cli import score_main
from humanaes_core.errors import HumanAesError
from humanaes_core.model.preprocessing import TileConfig, preprocess
from humanaes_core.schema import KEYS
from humanaes_core.scoring import scorer as scoring
from humanaes_core.scoring.presets import PRESETS, resolve_max_tiles
from humanaes_core.scoring.scorer import FeatureCache
from tests.conftest import GOOD_PHOTOS, synthetic_photo


def _fresh(tiny_model: Path, **kw) -> scoring.Scorer:
    return load_scorer(tiny_model, device="cpu", max_tiles=4, batch_size=4, **kw)


def _count_vision(scorer: scoring.Scorer) -> dict[str, int]:
    """Wrap the vision tower: calls["photos"] counts the photos it encoded."""
    calls = {"photos": 0}
    encode = scorer.model.encode_images

    def counting(pixel_values: torch.Tensor, n_tiles: int) -> torch.Tensor:
        calls["photos"] += pixel_values.shape[0] // n_tiles
        return encode(pixel_values, n_tiles)

    scorer.model.encode_images = counting  # type: ignore[method-assign]
    return calls


def _same(a: scoring.ScoreCard, b: scoring.ScoreCard) -> None:
    assert a.mode == b.mode and a.tiles == b.tiles and list(a.dims) == list(b.dims)
    for key in a.dims:
        assert a.dims[key] == pytest.approx(b.dims[key], abs=1e-5), key
    for head in a.heads:
        assert a.heads[head] == pytest.approx(b.heads[head], abs=1e-5), head


# ------------------------------------------------------------------------------------- model level


def test_precomputed_image_features_give_the_same_outputs(scorer):
    model = scorer.model
    torch.manual_seed(0)
    pixels = torch.randn(2 * 3, 3, 448, 448)
    feats = model.encode_images(pixels, 3)
    for kwargs in ({}, {"heads": "overall"}, {"shared_prefix": False}):
        direct = model.score_batch(pixels, 3, **kwargs)
        reused = model.score_batch(None, 3, image_features=feats, **kwargs)
        assert torch.allclose(direct.level_logits, reused.level_logits, atol=1e-5)
        assert torch.allclose(direct.regression, reused.regression, atol=1e-5)
        if direct.metavoter is not None:
            assert torch.allclose(direct.metavoter, reused.metavoter, atol=1e-5)
            for key in KEYS:
                assert torch.allclose(direct.expert[key], reused.expert[key], atol=1e-5)
    with pytest.raises(ValueError):
        model.score_batch(None, 3)


def test_suffix_rows_of_the_tree_mask_equal_the_full_mask_rows():
    from humanaes_core.model.modeling import tree_attention_mask

    cpu = torch.device("cpu")
    full = tree_attention_mask(6, 3, 4, torch.float32, cpu)
    rows = tree_attention_mask(6, 3, 4, torch.float32, cpu, first_row=6)
    assert rows.shape == (1, 1, 7, 13) and torch.equal(rows, full[:, :, 6:])


# ------------------------------------------------------------------------------ vision-feature cache


@pytest.mark.parametrize(("first", "second"), [("overall", "all"), ("all", "overall")])
def test_feature_cache_skips_decoding_and_the_vision_tower(tiny_model, photo_dir, monkeypatch, first, second):
    paths = [photo_dir / p for p in GOOD_PHOTOS]
    reference = _fresh(tiny_model, feature_cache_bytes=0).score(paths, heads=second)
    scorer = _fresh(tiny_model)
    calls = _count_vision(scorer)
    decodes = {"n": 0}
    real_preprocess = scoring.preprocess

    def counting_preprocess(*a, **k):
        decodes["n"] += 1
        return real_preprocess(*a, **k)

    monkeypatch.setattr(scoring, "preprocess", counting_preprocess)
    scorer.score(paths, heads=first)
    assert calls["photos"] == len(paths) and decodes["n"] == len(paths)
    again = scorer.score(paths, heads=second)
    assert calls["photos"] == len(paths), "the vision tower ran again for cached photos"
    assert decodes["n"] == len(paths), "cached photos were decoded again"
    for a, b in zip(again, reference, strict=True):
        _same(a, b)
        assert a.source == b.source
    assert scorer.features is not None and scorer.features.hits >= len(paths)


def test_feature_cache_is_keyed_by_file_identity_and_tile_settings(tiny_model, tmp_path):
    photo = tmp_path / "a.jpg"
    synthetic_photo(5, (900, 600)).save(photo, quality=90)
    scorer = _fresh(tiny_model)
    calls = _count_vision(scorer)
    before = scorer.score([photo], heads="overall")[0]
    synthetic_photo(6, (900, 600)).save(photo, quality=90)  # same name, new content
    st = os.stat(photo)
    os.utime(photo, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    after = scorer.score([photo], heads="overall")[0]
    assert calls["photos"] == 2  # a changed file is never served stale features
    assert after.dims["overall"] != before.dims["overall"]
    cfg = scorer.tile_config
    assert scoring.photo_key(photo, cfg) != scoring.photo_key(photo, dataclasses.replace(cfg, max_tiles=1))
    image = synthetic_photo(7, (300, 200))
    assert scoring.photo_key(image, cfg) == scoring.photo_key(image.copy(), cfg)
    assert scoring.photo_key(image, cfg, hash_pixels=False) is None


def test_in_memory_images_are_cached_by_their_pixels(tiny_model):
    scorer = _fresh(tiny_model)
    calls = _count_vision(scorer)
    image = synthetic_photo(8, (600, 400))
    quick = scorer.score([image], heads="overall")[0]
    full = scorer.score([image.copy()])[0]
    assert calls["photos"] == 1
    assert full.heads["lm"] == pytest.approx(quick.heads["lm"], abs=1e-5)


def test_feature_cache_is_bounded_by_bytes_least_recently_used_first():
    cache = FeatureCache(max_bytes=3 * 400)  # room for three 100-float tensors
    for key in "abc":
        cache.put(key, torch.zeros(100))
    assert cache.get("a") is not None  # a is now the most recently used
    cache.put("d", torch.zeros(100))
    assert "b" not in cache and all(k in cache for k in "acd")
    assert cache.bytes == 1200 and len(cache) == 3
    cache.put("huge", torch.zeros(1000))  # larger than the whole cache: not kept, nothing evicted
    assert "huge" not in cache and len(cache) == 3
    cache.put("a", torch.zeros(50))  # replacing an entry frees the old bytes
    assert cache.bytes == 1000
    cache.clear()
    assert cache.bytes == 0 and len(cache) == 0


def test_dropped_features_fall_back_to_decoding(tiny_model, photo_dir):
    """A photo skipped by the decoder because its features were cached, but evicted before its batch ran."""

    class Forgetful(FeatureCache):
        def __contains__(self, key) -> bool:
            return True

        def get(self, key):
            return None

    paths = [photo_dir / p for p in GOOD_PHOTOS]
    scorer = _fresh(tiny_model)
    scorer.features = Forgetful()
    cards = scorer.score(paths)
    reference = _fresh(tiny_model, feature_cache_bytes=0).score(paths)
    for a, b in zip(cards, reference, strict=True):
        _same(a, b)


# -------------------------------------------------------------------------------- out of GPU memory


def _oom_above(scorer: scoring.Scorer, limit: int) -> list[int]:
    """Make the language model raise CUDA out-of-memory for batches larger than `limit`."""
    sizes: list[int] = []
    real = scorer.model.score_batch

    def fake(pixel_values, n_tiles, *a, image_features=None, **k):
        batch = image_features.shape[0] if image_features is not None else pixel_values.shape[0] // n_tiles
        sizes.append(batch)
        if batch > limit:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real(pixel_values, n_tiles, *a, image_features=image_features, **k)

    scorer.model.score_batch = fake  # type: ignore[method-assign]
    return sizes


def test_out_of_memory_halves_the_batch_and_remembers_the_limit(tiny_model):
    images = [synthetic_photo(i, (448, 448)) for i in range(8)]
    reference = _fresh(tiny_model, feature_cache_bytes=0).score(images)
    scorer = _fresh(tiny_model, feature_cache_bytes=0)
    sizes = _oom_above(scorer, 1)
    cards = scorer.score(images, batch_size=4)
    assert len(cards) == 8
    for a, b in zip(cards, reference, strict=True):
        _same(a, b)
    assert sizes[:3] == [4, 2, 1]  # 4 fails, 2 fails, then one at a time
    assert scorer.batch_limits == {1: 1}
    sizes.clear()
    scorer.score(images[:4], batch_size=4)
    assert sizes == [1, 1, 1, 1]  # later batches of that tile count start at the size that fitted


def test_out_of_memory_at_one_photo_is_reported_for_that_photo(tiny_model, photo_dir):
    scorer = _fresh(tiny_model, feature_cache_bytes=0)
    _oom_above(scorer, 0)
    paths = [photo_dir / p for p in GOOD_PHOTOS]
    results = list(scorer.score_iter(paths))
    assert len(results) == len(paths)
    for r in results:
        assert r.card is None
        assert r.error is not None and r.error.startswith("out of GPU memory at ")
        assert r.error.endswith(" tiles; lower max tiles")
    with pytest.raises(HumanAesError, match="out of GPU memory at 1 tiles"):
        scorer.score([photo_dir / "astronaut.jpg"])


# --------------------------------------------------------------------------------------------- presets


def test_presets_resolve_to_tile_limits(tiny_model, photo_dir):
    assert resolve_max_tiles() == 12 == PRESETS["accurate"].max_tiles
    assert resolve_max_tiles("fast") == 1 and resolve_max_tiles("balanced") == 4
    assert resolve_max_tiles(None, 6) == 6 and resolve_max_tiles("fast", 1) == 1
    with pytest.raises(HumanAesError, match="give one or the other"):
        resolve_max_tiles("fast", 12)
    with pytest.raises(HumanAesError, match="unknown preset"):
        resolve_max_tiles("turbo")
    fast = load_scorer(tiny_model, device="cpu", preset="fast")
    assert fast.max_tiles == 1
    assert {c.tiles for c in fast.score([photo_dir / p for p in GOOD_PHOTOS])} == {1}
    assert load_scorer(tiny_model, device="cpu").max_tiles == 12


def test_device_defaults_for_batches_and_decode_threads(tiny_model):
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert scoring.batch_size_for(cpu) == 1 and scoring.batch_size_for(cuda) == 8
    assert scoring.decode_workers_for(cpu) == 2 and scoring.decode_workers_for(cuda) >= 2
    assert load_scorer(tiny_model, device="cpu").batch_size == 1
    assert load_scorer(tiny_model, device="cpu", batch_size=4).batch_size == 4


def test_cli_preset(tiny_model, photo_dir, tmp_path, capsys):
    out = tmp_path / "cards.csv"
    base = [str(photo_dir / "day2"), "--model", str(tiny_model), "--device", "cpu", "--no-cache", "--quiet"]
    assert score_main([*base, "--out", str(out), "--preset", "fast"]) == 0
    import csv

    rows = list(csv.DictReader(out.open()))
    assert rows and {r["tiles"] for r in rows} == {"1"}
    assert score_main([*base, "--out", str(out), "--preset", "fast", "--max-tiles", "4"]) == 2
    assert "give one or the other" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------- the bench


def test_bench_quick_run_writes_every_section(tmp_path, monkeypatch, capsys):
    from bench import run as bench_run
    from bench.photos import PhotoSpec
    from bench.presets import TrainSize

    smaller = dataclasses.replace(
        bench_run.QUICK,
        photos=PhotoSpec(3000, 2000, 85),
        folder=6,
        decode_photos=2,
        one_card=[(2, (448, 448), 1)],
        batching_photos=4,
        feature_photos=1,
        speed_photos=1,
        thumbs_naive_sample=2,
        train=TrainSize(train=8, test=4, epochs=1, image_size=480),
        scale_photos=6,
    )
    monkeypatch.setattr(bench_run, "QUICK", smaller)

    def offline(url, timeout):
        raise OSError("no network in tests")

    monkeypatch.setattr("bench.eyes_real.urlopen", offline)  # the real-faces archives are not fetched
    out = tmp_path / "BENCH.md"
    code = bench_run.main(["--quick", "--out", str(out), "--cache-dir", str(tmp_path / "cache")])
    text = out.read_text()
    assert code == 0, text
    for title in (
        "Decode + preprocess",
        "One card",
        "Batching",
        "Re-scoring a photo",
        "End to end",
        "Accuracy cost of the presets",
        "Cached rescan",
        "Thumbnails",
        "Reopening a cached",
        "Photo checks: accuracy",
        "Photo checks: closed eyes on real faces",
        "Photo checks: cost",
        "GPU",
        "Scale: the Ray engine",
    ):
        assert f"## {title}" in text, title
    assert "quick smoke run" in text and "| torch |" in text
    assert "failed" not in text
    assert "**Not measured:** the labelled archives come from PyPI and npm" in text
    assert ("no CUDA device" in text) != torch.cuda.is_available()
    for section in ("decode", "rescan", "presets_accuracy", "app_open"):
        assert f"python -m bench --only {section}" in text
    # generated inputs are reused: a second run finds the photos in the cache folder
    photos = sorted((tmp_path / "cache").glob("photos-*/*.JPG"))
    assert len(photos) == 6 and all(p.stat().st_size > 100_000 for p in photos)


def test_gpu_section_code_runs_on_a_toy_architecture(tmp_path):
    """The GPU benchmark's own code (build, load, sweep, released) on the CPU with toy dimensions."""
    from bench import gpu
    from bench.common import Section

    sec = Section("gpu", "gpu", "cmd", ["c"] * 10)
    gpu.measure_arch(
        gpu.TOY, tmp_path, sec, device="cpu", precisions=("16bit",), tiles=(1, 2), batches=(1, 2), photos=2
    )
    assert [r[2] for r in sec.rows] == ["1", "2"]
    assert all(float(r[3]) > 0 and r[8] == "—" for r in sec.rows)  # no CUDA memory figures on a CPU
    if not torch.cuda.is_available():
        skipped = gpu.run(["1B"], tmp_path, None)
        assert skipped.skipped and "no CUDA device" in skipped.skipped and not skipped.rows


def test_released_recipe_makes_the_same_tiles_as_ours(tmp_path):
    """The decode benchmark's baseline: same grid, values within draft-mode rounding of ours."""
    from bench import released

    photo = tmp_path / "p.jpg"
    synthetic_photo(9, (1800, 1200)).save(photo, quality=95)
    cfg = TileConfig(fast_decode=False)
    theirs, ours = released.load_image(str(photo), cfg), preprocess(photo, cfg)
    assert theirs.shape == ours.shape == (7, 3, 448, 448)
    assert torch.allclose(theirs, ours, atol=1e-5)  # without draft mode: the same arithmetic
