"""The "release" preset feeds the model what the release's own code feeds it, bit for bit (issue #12).

The reference helpers below are written from InternVL's published description of its preprocessing
(``load_image`` → ``dynamic_preprocess`` → ``build_transform``) and of its conversation templates, with
PIL, numpy and torch only; they are not InternVL's code. Run this file as a module to measure how far
the photographer defaults (EXIF rotation, JPEG draft decoding, ICC → sRGB) are from the release's pixels:

    python -m tests.core.model.test_release_parity
"""

from __future__ import annotations

import hashlib
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageOps

from humanaes_core.errors import HumanAesError
from humanaes_core.model import PromptConfig
from humanaes_core.model.preprocessing import TileConfig, preprocess
from humanaes_core.model.prompts import INTERNVL_SYSTEM_MESSAGE, OVERALL_ANSWER_PREFIX, SWIFT_SYSTEM_MESSAGE
from humanaes_core.scoring.presets import get_preset, resolve_max_tiles, resolve_precision
from tests.core.model.test_preprocessing import reference_grid, rgb_icc
from tests.core.model.test_prompts import TOKENS_PER_TILE, internlm2, tokenisation_model

S = 448
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
RELEASE_QUESTION = "Rate the aesthetics of this human picture."
RELEASE_DIMS_QUESTION = "Rate the aesthetics of this human picture from 12 different dimensions."

# ------------------------------------------------------------- reference: InternVL's load_image, described


def ref_grid(width: int, height: int, max_num: int = 12, min_num: int = 1) -> tuple[int, int]:
    """find_closest_aspect_ratio, as the tiling tests write it from InternVL's description."""
    return reference_grid(width, height, S, min_num, max_num)


def ref_tiles(image: Image.Image, max_num: int = 12) -> list[Image.Image]:
    """dynamic_preprocess: resize (bicubic) to the grid, crop the tiles row by row, then a thumbnail of
    the whole image when there is more than one tile."""
    cols, rows = ref_grid(image.width, image.height, max_num)
    grid = image.resize((cols * S, rows * S), Image.Resampling.BICUBIC)
    tiles = []
    for k in range(cols * rows):
        left, top = (k % cols) * S, (k // cols) * S
        tiles.append(grid.crop((left, top, left + S, top + S)))
    if len(tiles) != 1:
        tiles.append(image.resize((S, S), Image.Resampling.BICUBIC))
    return tiles


def ref_transform(tile: Image.Image) -> torch.Tensor:
    """build_transform: RGB, Resize((S, S), bicubic), ToTensor (uint8 HWC → float CHW / 255), Normalize
    with the ImageNet mean and std (subtract, then divide, in float32)."""
    tile = tile.convert("RGB") if tile.mode != "RGB" else tile
    tile = tile.resize((S, S), Image.Resampling.BICUBIC)
    x = torch.from_numpy(np.array(tile, dtype=np.uint8)).permute(2, 0, 1).contiguous().float().div(255)
    mean = torch.tensor(IMAGENET_MEAN, dtype=torch.float32).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD, dtype=torch.float32).view(3, 1, 1)
    return (x - mean) / std


def ref_load_image(path: Path, max_num: int = 12) -> torch.Tensor:
    """load_image: Image.open(path).convert('RGB'), tiles, transform each, stack."""
    image = Image.open(path).convert("RGB")
    return torch.stack([ref_transform(t) for t in ref_tiles(image, max_num)])


# ----------------------------------------------------------------------------------------- test photos


def texture(width: int, height: int, seed: int = 0) -> Image.Image:
    """Photo-like content with fine detail (smooth colour fields plus grain), so resampling shows."""
    rng = np.random.default_rng(seed)
    small = Image.fromarray(rng.integers(0, 256, (9, 13, 3), dtype=np.uint8)).resize(
        (width, height), Image.Resampling.BICUBIC
    )
    grain = rng.normal(0, 12, (height, width, 3))
    return Image.fromarray(np.clip(np.asarray(small, dtype=np.float64) + grain, 0, 255).astype(np.uint8))


def adobe_like_icc() -> bytes:
    """An ICC v2 RGB display profile with Adobe RGB (1998)-like primaries and a 2.2 gamma: a common
    camera setting, which a colour-managed viewer converts and the release does not."""
    primaries = ((0.6097, 0.3111, 0.0195), (0.2053, 0.6257, 0.0609), (0.1492, 0.0632, 0.7446))
    return rgb_icc("Adobe-like test profile", primaries, gamma=0x0233 / 256)


def camera_jpeg(path: Path, size: tuple[int, int] = (6000, 4000), orientation: int = 6) -> Path:
    """A large JPEG as a camera writes it: EXIF orientation and an embedded non-sRGB profile."""
    exif = Image.Exif()
    exif[0x0112] = orientation
    texture(*size).save(path, "JPEG", quality=92, exif=exif, icc_profile=adobe_like_icc())
    return path


def _photos(root: Path) -> list[Path]:
    """Every decoding the release and the photographer path treat differently, and tiling edge cases."""
    out = [camera_jpeg(root / "camera.jpg", (1800, 1200)), camera_jpeg(root / "turned.jpg", (900, 1300), 8)]
    rgba = texture(640, 480).convert("RGBA")
    rgba.putalpha(Image.fromarray(np.tile((np.arange(640) % 256).astype(np.uint8)[None], (480, 1))))
    rgba.save(root / "alpha.png")
    palette = texture(300, 500).convert("P", palette=Image.Palette.ADAPTIVE)
    palette.info["transparency"] = 0
    palette.save(root / "palette.png", transparency=0)
    texture(1000, 1000).convert("L").save(root / "grey.jpg", quality=90)
    texture(512, 300).convert("CMYK").save(root / "cmyk.jpg", quality=90)
    grey16 = (np.arange(700 * 90, dtype=np.uint32).reshape(90, 700) * 13 % 65536).astype(np.uint16)
    Image.fromarray(grey16).save(root / "deep.png")
    for w, h in ((448, 448), (896, 448), (300, 200), (2000, 600), (37, 1200), (1, 1), (673, 449)):
        texture(w, h, seed=w).save(root / f"size_{w}x{h}.png")
    return out + sorted(p for p in root.iterdir() if p not in out)


RELEASE_TILES = TileConfig(release_decode=True, fast_decode=False, max_tiles=12)

# ------------------------------------------------------------------------------------ pixels, bit for bit


def test_release_pixels_equal_internvl_load_image(tmp_path):
    photos = _photos(tmp_path)
    assert len(photos) >= 13
    for path in photos:
        ours = preprocess(path, RELEASE_TILES)
        ref = ref_load_image(path)
        assert ours.dtype == ref.dtype == torch.float32
        assert ours.shape == ref.shape and torch.equal(ours, ref), path.name
        assert (
            hashlib.sha256(ours.numpy().tobytes()).digest() == hashlib.sha256(ref.numpy().tobytes()).digest()
        )


def test_release_pixels_of_an_in_memory_image(tmp_path):
    path = camera_jpeg(tmp_path / "c.jpg", (1200, 800))
    assert torch.equal(preprocess(Image.open(path), RELEASE_TILES), ref_load_image(path))


def test_photographer_defaults_differ_from_the_release(tmp_path):
    """The defaults stay: an EXIF-rotated photo is upright (another grid), an alpha PNG is over white."""
    turned = camera_jpeg(tmp_path / "t.jpg", (1800, 1200), orientation=6)
    assert preprocess(turned).shape[0] != ref_load_image(turned).shape[0] or not torch.equal(
        preprocess(turned), ref_load_image(turned)
    )
    rgba = texture(200, 100).convert("RGBA")
    rgba.putalpha(0)
    rgba.save(tmp_path / "clear.png")
    white = (1 - torch.tensor(IMAGENET_MEAN)) / torch.tensor(IMAGENET_STD)
    assert torch.allclose(preprocess(tmp_path / "clear.png")[0, :, 50, 50], white)
    assert not torch.allclose(ref_load_image(tmp_path / "clear.png")[0, :, 50, 50], white)


def test_release_decode_keeps_the_safety_checks(tmp_path):
    from humanaes_core.errors import ImageLoadError

    (tmp_path / "empty.jpg").write_bytes(b"")
    with pytest.raises(ImageLoadError, match="empty file"):
        preprocess(tmp_path / "empty.jpg", RELEASE_TILES)
    with pytest.raises(ImageLoadError, match="is a directory"):
        preprocess(tmp_path, RELEASE_TILES)


# ------------------------------------------------------------------------------- token ids, bit for bit


def release_chat(system: str, question: str, newlines: int, tiles: int, answer: str = "") -> str:
    """The conversation InternVL renders (Hermes-2 and internlm2-chat: ``<|im_start|>role\\n`` … joined by
    ``<|im_end|>`` with nothing between), with the query ``<image>\\n`` + question whose ``<image>`` became
    ``<img>`` + context tokens + ``</img>``; swift's template adds one more newline after ``</img>``."""
    image = "<img>" + "<IMG_CONTEXT>" * (TOKENS_PER_TILE * tiles) + "</img>"
    return (
        f"<|im_start|>system\n{system}<|im_end|><|im_start|>user\n{image}{chr(10) * newlines}{question}"
        f"<|im_end|><|im_start|>assistant\n{answer}"
    )


TEMPLATE_CASES = {"internvl_chat": (INTERNVL_SYSTEM_MESSAGE, 1), "swift_internvl2": (SWIFT_SYSTEM_MESSAGE, 2)}


def _tokenizer(kind: str, root: Path):
    """(tokenizer, reference tokenisation of one whole string, the prompt's BOS text)."""
    if kind == "qwen2":  # Hermes-2 with the tiny model's byte-level BPE: no BOS
        from humanaes_core.testing import build_tokenizer

        tok = build_tokenizer(PromptConfig(), 1024)
        return tok, lambda text: tok(text, add_special_tokens=False)["input_ids"], ""
    tok, reference = internlm2(root, dummy_prefix=kind == "internlm2")  # internlm2-chat: BOS first
    return tok, reference, "<s>"


@pytest.mark.parametrize("template", list(TEMPLATE_CASES))
@pytest.mark.parametrize("kind", ["qwen2", "internlm2", "internlm2-no-dummy-prefix"])
def test_release_token_ids_equal_the_template_tokenised_at_once(tmp_path, kind, template):
    tok, reference, bos = _tokenizer(kind, tmp_path / "tok")
    prompt = PromptConfig(template=template, bos=bos, question_index=0)
    model = tokenisation_model(tok, prompt)
    q = prompt.release_question_index()
    system, newlines = TEMPLATE_CASES[template]
    for tiles in (1, 7):
        lay = model.layout(tiles, q)
        overall = release_chat(system, RELEASE_QUESTION, newlines, tiles)
        assert lay.prefix_ids + lay.overall_ids == reference(overall + OVERALL_ANSWER_PREFIX)
        assert lay.prefix_ids + lay.dims_ids == reference(
            release_chat(system, RELEASE_DIMS_QUESTION, newlines, tiles)
        )
        context = reference(overall)
        assert lay.image_slice == slice(
            context.index(model.img_context_id), context.index(model.img_context_id) + TOKENS_PER_TILE * tiles
        )
    at = len(reference(overall + OVERALL_ANSWER_PREFIX))
    levels = [
        reference(f"{overall}{OVERALL_ANSWER_PREFIX} {w}")[at]
        for w in ("bad", "poor", "fair", "good", "excellent")
    ]
    assert model.level_token_ids == levels


# ------------------------------------------------------------------------------------------ the preset


def test_release_preset_settings():
    release = get_preset("release")
    assert release.release_parity and release.max_tiles == resolve_max_tiles("release") == 12
    assert resolve_precision("release", "auto", cuda=True) == "fp16"
    assert resolve_precision("release", "auto", cuda=False) == "fp32"
    assert resolve_precision("accurate", "auto", cuda=True) == "auto"
    with pytest.raises(HumanAesError, match="runs in fp16"):
        resolve_precision("release", "bf16", cuda=True)
    with pytest.raises(HumanAesError, match="unknown preset"):
        get_preset("exact")


def test_settings_fingerprint_of_other_presets_is_unchanged():
    """Cards cached before the release preset existed keep their keys; the release preset gets its own."""
    from humanaes_core.model import resolve
    from humanaes_core.scoring.scorer import CARD_VERSION, settings_fingerprint

    placement = resolve("cpu")
    common = {"heads": "all", "max_tiles": 12, "question_index": 1, "placement": placement}
    old = {"card": CARD_VERSION, "heads": "all", "max_tiles": 12, "question": 1}
    old |= {"placement": placement.label, "fast_decode": True}
    expected = hashlib.sha256(json.dumps(old, sort_keys=True).encode()).hexdigest()[:16]
    assert settings_fingerprint(**common, fast_decode=True) == expected
    assert settings_fingerprint(**common, fast_decode=False, release_decode=True) != expected


def test_load_scorer_release_preset(tiny_model, tmp_path):
    from humanaes_core import load_scorer
    from humanaes_core.scoring.scorer import _decode_one

    scorer = load_scorer(tiny_model, device="cpu", preset="release", batch_size=2)
    assert scorer.tile_config.release_decode and scorer.tile_config.max_tiles == 12
    assert scorer.placement.dtype == torch.float32  # fp16 only on CUDA
    assert scorer.model.prompt.overall_questions[scorer.question_index] == RELEASE_QUESTION
    path = camera_jpeg(tmp_path / "c.jpg", (900, 600))
    decoded = _decode_one(0, path, scorer.tile_config)
    assert torch.equal(decoded.pixels, ref_load_image(path))
    card = scorer.score(path)[0]
    out = scorer.model.score_batch(ref_load_image(path), decoded.pixels.shape[0], question_index=1)
    assert card.heads["regression"] == pytest.approx(min(max(float(out.regression[0]), 0.0), 1.0), abs=1e-5)
    accurate = load_scorer(tiny_model, device="cpu", batch_size=2)
    assert accurate.settings_fingerprint() != scorer.settings_fingerprint()


def test_release_preset_needs_the_release_question(tiny_model, tmp_path):
    import shutil

    from humanaes_core import load_scorer
    from humanaes_core.model import write_manifest

    path = Path(shutil.copytree(tiny_model, tmp_path / "ckpt"))
    data = json.loads((path / "humanaes.json").read_text())
    data["prompt"]["overall_questions"] = data["prompt"]["overall_questions"][2:]
    data["prompt"]["dims_questions"] = data["prompt"]["dims_questions"][2:]
    data["prompt"]["question_index"] = 0
    (path / "humanaes.json").write_text(json.dumps(data))
    write_manifest(path)
    with pytest.raises(HumanAesError, match="do not include the release's"):
        load_scorer(path, device="cpu", preset="release")


# ------------------------------------------------------------------- measuring the photographer defaults


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


def measure(size: tuple[int, int] = (6000, 4000)) -> dict[str, float]:
    """How far each photographer default moves the pixels and the tiny model's vision features from the
    release's, on a camera-like JPEG (EXIF orientation 6, Adobe-like ICC). Both sides are compared
    upright, so each difference is the one named."""
    from humanaes_core.model import load_model
    from humanaes_core.model.preprocessing import _to_tensor, closest_grid
    from humanaes_core.testing import make_tiny_model

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        path = camera_jpeg(root / "camera.jpg", size)
        model, _ = load_model(make_tiny_model(root / "tiny"), device=torch.device("cpu"), dtype=torch.float32)
        cfg = TileConfig(fast_decode=False)
        # the release's pixels turned upright (a pure transpose of the stored pixels: no colour change)
        upright = ImageOps.exif_transpose(Image.open(path)).convert("RGB")
        release = _to_tensor(upright, closest_grid(upright.width, upright.height, cfg), cfg)
        full = preprocess(path, cfg)  # EXIF + ICC, full decode
        default = preprocess(path)  # EXIF + ICC + draft decoding (the default)
        turned = preprocess(path, RELEASE_TILES)
        with torch.no_grad():
            feats = {
                k: model.encode_images(v, v.shape[0])
                for k, v in (("r", release), ("f", full), ("d", default))
            }
    return {
        "grid_tiles_release": turned.shape[0],
        "grid_tiles_upright": default.shape[0],
        "icc_pixels_max_abs": float((full - release).abs().max()),
        "icc_features_rel": _rel(feats["f"], feats["r"]),
        "draft_pixels_max_abs": float((default - full).abs().max()),
        "draft_features_rel": _rel(feats["d"], feats["f"]),
        "all_pixels_max_abs": float((default - release).abs().max()),
        "all_features_rel": _rel(feats["d"], feats["r"]),
    }


@pytest.mark.slow
def test_photographer_defaults_measured_size():
    m = measure((3000, 2000))
    assert m["grid_tiles_release"] == m["grid_tiles_upright"] == 7  # 3x2 landscape vs 2x3 portrait
    assert m["icc_pixels_max_abs"] > 0 and m["draft_pixels_max_abs"] > 0
    assert 0 < m["all_features_rel"] < 0.5


if __name__ == "__main__":
    json.dump(measure(), sys.stdout, indent=1)
    print()
