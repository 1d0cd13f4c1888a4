"""A self-check after every import: score a few sample photos and look for a wrong assumption.

The open fields (`OpenFields`) cannot all be read from the weights, and a wrong one gives plausible-
looking numbers rather than an error. A few photos show the usual symptoms: a head outside [0, 1] (a
missing activation), heads that rank the photos in opposite orders (a wrong position or hidden state),
a MetaVoter far from every head (its input order or the LM normalisation) and an LM level distribution
that does not move (wrong level tokens, answer prefix or template). The figures and a loud warning
naming the likely wrong assumption go into the import report. One tile per photo keeps it cheap.
"""

from __future__ import annotations

import itertools
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from PIL import Image

    from humanaes_core.model import HeadOutputs, HumanAesModel, ImageConfig

log = logging.getLogger(__name__)

#: The bundled sample photo, found beside the package in a source checkout (absent from a wheel).
SAMPLE = Path(__file__).resolve().parents[2] / "resources" / "samples" / "astronaut.jpg"
RANGE_SLACK = 0.05  # a trained head overshoots [0, 1] a little; beyond this an activation is missing
RANK_TOLERANCE = 0.05  # score differences below this are ties
METAVOTER_DISTANCE = 0.25  # the MetaVoter combines the heads: farther than this from all of them is wrong
HEADS = ("lm", "regression", "expert")


@dataclass
class SelfCheck:
    """The figures of one self-check and its warnings (empty when nothing looks wrong)."""

    photos: list[str]
    scores: dict[str, list[float]]  # head -> one score per photo (lm: (S_LM - 1) / 4)
    lm_probs: list[list[float]]
    dims_range: tuple[float, float]
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {
            "photos": self.photos,
            "scores": self.scores,
            "lm_probs": self.lm_probs,
            "expert_dims_range": list(self.dims_range),
            "warnings": self.warnings,
        }


def sample_photos() -> list[tuple[str, Image.Image]]:
    """The bundled astronaut (when present) and two generated photos of very different character."""
    from PIL import Image

    photos = []
    if SAMPLE.is_file():
        with Image.open(SAMPLE) as im:
            photos.append((SAMPLE.name, im.convert("RGB")))
    y, x = np.mgrid[0:336, 0:448].astype(np.float32)
    smooth = np.stack([x / 448 * 255, y / 336 * 255, np.full_like(x, 128)], -1)
    photos.append(("generated-gradient", Image.fromarray(smooth.astype(np.uint8))))
    noise = np.random.default_rng(12).integers(0, 256, (448, 336, 3), dtype=np.uint8)
    photos.append(("generated-noise", Image.fromarray(noise)))
    return photos


def run_self_check(model: HumanAesModel, image: ImageConfig) -> SelfCheck:
    """Score the sample photos (one tile each) and judge the outputs (`judge`)."""
    import torch

    from humanaes_core.model import TileConfig, preprocess

    tiles = TileConfig(
        image_size=image.image_size,
        max_tiles=1,
        use_thumbnail=image.use_thumbnail,
        mean=image.mean,
        std=image.std,
    )
    photos = sample_photos()
    pixels = torch.cat([preprocess(im, tiles) for _, im in photos])
    out = model.score_batch(pixels, 1)
    return judge([name for name, _ in photos], out)


def judge(photos: list[str], out: HeadOutputs) -> SelfCheck:
    """The self-check's figures and warnings from a batch of head outputs (one row per photo)."""
    import torch

    from humanaes_core.model import lm_level_score, normalise_lm_score

    assert out.expert is not None and out.metavoter is not None
    probs = torch.softmax(out.level_logits.float(), -1)
    scores = {
        "lm": normalise_lm_score(lm_level_score(out.level_logits)).tolist(),
        "regression": out.regression.float().tolist(),
        "expert": out.expert["overall"].float().tolist(),
        "metavoter": out.metavoter.float().tolist(),
    }
    dims = torch.stack([v.float() for v in out.expert.values()])
    check = SelfCheck(photos, scores, probs.tolist(), (float(dims.min()), float(dims.max())))
    check.warnings = _range_warnings(scores, check.dims_range) + _rank_warnings(scores)
    check.warnings += _voter_warnings(scores) + _lm_warnings(probs.numpy())
    for warning in check.warnings:
        log.warning("self-check: %s", warning)
    return check


def _outside(values: list[float]) -> bool:
    return any(not -RANGE_SLACK <= v <= 1 + RANGE_SLACK for v in values)


def _range_warnings(scores: dict[str, list[float]], dims: tuple[float, float]) -> list[str]:
    warnings = []
    if _outside(scores["regression"]):
        warnings.append(
            f"regression head outside [0, 1] ({_fmt(scores['regression'])}): likely a missing activation "
            "(open field regression_activation: try 'sigmoid'), or the wrong regression_width"
        )
    if _outside(list(dims)):
        warnings.append(
            f"expert head outside [0, 1] (its 12 scores span {dims[0]:.3f} to {dims[1]:.3f}): likely a "
            "missing activation (open field expert_activation: try 'sigmoid')"
        )
    if _outside(scores["metavoter"]):
        warnings.append(
            f"MetaVoter outside [0, 1] ({_fmt(scores['metavoter'])}): likely its input order "
            "(metavoter_inputs) or the LM score's normalisation (lm_normalisation)"
        )
    return warnings


def _rank_warnings(scores: dict[str, list[float]]) -> list[str]:
    """Pairs of heads that order two photos oppositely, both by more than the tolerance."""
    warnings = []
    for a, b in itertools.combinations(HEADS, 2):
        n = len(scores[a])
        flips = [
            (i, j)
            for i, j in itertools.combinations(range(n), 2)
            if (da := scores[a][i] - scores[a][j]) * (db := scores[b][i] - scores[b][j]) < 0
            and min(abs(da), abs(db)) > RANK_TOLERANCE
        ]
        if flips and len(flips) * 2 > n * (n - 1) // 2:
            warnings.append(
                f"the {a} and {b} heads rank the sample photos in opposite orders ({a} {_fmt(scores[a])}, "
                f"{b} {_fmt(scores[b])}): likely the position or hidden state the heads read "
                "(head_position, head_hidden) or the expert leaf order"
            )
    return warnings


def _voter_warnings(scores: dict[str, list[float]]) -> list[str]:
    far = [
        i
        for i, v in enumerate(scores["metavoter"])
        if all(abs(v - scores[h][i]) > METAVOTER_DISTANCE for h in HEADS)
    ]
    if not far:
        return []
    return [
        f"the MetaVoter is far from all three heads on {len(far)} of {len(scores['metavoter'])} photos "
        f"(MetaVoter {_fmt(scores['metavoter'])}): likely its input order (metavoter_inputs) or the LM "
        "score's normalisation (lm_normalisation)"
    ]


def _lm_warnings(probs: np.ndarray) -> list[str]:
    top = probs.max(-1)
    same_level = len(set(probs.argmax(-1).tolist())) == 1
    frozen = float(probs.std(0).max()) < 1e-4 and len(probs) > 1
    if (same_level and bool((top > 0.99).all())) or frozen:
        return [
            "the LM's level distribution does not move between photos "
            f"(top probabilities {_fmt(top.tolist())}): likely the level tokens (lm_level_space), the "
            "answer prefix or the chat template"
        ]
    return []


def _fmt(values: list[float]) -> str:
    return ", ".join(f"{v:.3f}" for v in values)
