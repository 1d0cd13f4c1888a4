"""A synthetic human-aesthetics task whose labels are fixed functions of what each image shows.

Real data cannot be downloaded in tests or CI, and a random model's scores say nothing about whether
training works. Here every image is a simple figure — background, torso, head with hair, eyes and
mouth — drawn from nine numbers, one per leaf dimension, and those numbers *are* the leaf labels:

=====  ============================  ==================================================
 key    leaf                           what the image shows (monotone in the label)
=====  ============================  ==================================================
 A      facial_brightness              luminance of the face
 B      facial_feature_clarity         contrast of the eyes and mouth against the face
 C      facial_skin_tone               warmth of the face colour (cool blue → warm)
 D      facial_structure               width of the face
 E      facial_contour_clarity         sharpness of the face outline (blurred → crisp)
 G      outfit                         saturation of the torso colour
 H      body_shape                     width of the torso
 I      looks                          hair colour (grey → rich brown)
 K      environment                    background (dull grey → bright sky blue)
=====  ============================  ==================================================

Parents are fixed functions of their children (`parent_scores`), exactly the hierarchy the expert
head models. Leaves share a latent "photo quality" so they correlate as real ratings do. Training a
model on a few hundred of these and measuring it on held-out ones shows whether the training pipeline
learns; benchmarks can reuse the generator.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
from PIL import Image

from humanaes_core.schema import LEAF_KEYS, score_to_level, to_official

#: Weights of each parent's children (fixed functions of the children).
PARENT_WEIGHTS: dict[str, dict[str, float]] = {
    "facial_aesthetic": {
        "facial_brightness": 0.3,
        "facial_feature_clarity": 0.2,
        "facial_skin_tone": 0.2,
        "facial_structure": 0.15,
        "facial_contour_clarity": 0.15,
    },
    "general_appearance_aesthetic": {"outfit": 0.4, "body_shape": 0.3, "looks": 0.3},
    "overall": {"facial_aesthetic": 0.4, "general_appearance_aesthetic": 0.35, "environment": 0.25},
}


def sample_leaves(rng: np.random.Generator, shared: float = 0.55) -> dict[str, float]:
    """Nine leaf labels in [0.05, 0.95]: a shared quality plus independent parts."""
    quality = rng.uniform()
    return {k: 0.05 + 0.9 * float(shared * quality + (1 - shared) * rng.uniform()) for k in LEAF_KEYS}


def parent_scores(leaves: dict[str, float]) -> dict[str, float]:
    """All 12 labels: the leaves and the parents computed from them (children before parents)."""
    scores = dict(leaves)
    for parent, weights in PARENT_WEIGHTS.items():
        scores[parent] = sum(w * scores[c] for c, w in weights.items())
    return scores


def _lerp(a: np.ndarray | tuple, b: np.ndarray | tuple, t: float) -> np.ndarray:
    return np.asarray(a, np.float32) * (1 - t) + np.asarray(b, np.float32) * t


def render(leaves: dict[str, float], size: int = 448, seed: int = 0) -> Image.Image:
    """Draw the figure that the nine leaf labels describe (see the module table)."""
    v = leaves
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size].astype(np.float32) / size
    # K environment: dull grey → bright sky blue, with a vertical gradient
    top = _lerp((0.35, 0.35, 0.35), (0.45, 0.72, 1.0), v["environment"])
    img = top[None, None, :] * (1.0 - 0.35 * y[..., None])
    # G outfit (saturation) and H body shape (width): the torso
    half_w = 0.12 + 0.16 * v["body_shape"]
    torso = ((np.abs(x - 0.5) < half_w) & (y > 0.58)).astype(np.float32)[..., None]
    cloth = _lerp((0.5, 0.5, 0.5), (0.9, 0.15, 0.25), v["outfit"])
    img = img * (1 - torso) + cloth * torso
    # D structure (width), E contour clarity (edge softness), A brightness, C skin tone: the face
    rx, ry, cx, cy = 0.09 + 0.08 * v["facial_structure"], 0.17, 0.5, 0.38
    dist = np.sqrt(((x - cx) / rx) ** 2 + ((y - cy) / ry) ** 2)
    soft = 0.02 + 0.5 * (1 - v["facial_contour_clarity"])
    face = np.clip((1 + soft / 2 - dist) / soft, 0, 1)[..., None]
    tone = _lerp((0.7, 0.8, 1.0), (1.0, 0.78, 0.55), v["facial_skin_tone"])
    skin = tone * (0.25 + 0.7 * v["facial_brightness"])
    # I looks: hair colour on the upper part of the head
    hair = ((dist < 1.1) & (y < cy - 0.6 * ry)).astype(np.float32)[..., None]
    hair_colour = _lerp((0.6, 0.6, 0.6), (0.4, 0.18, 0.05), v["looks"])
    img = img * (1 - face) + skin * face
    img = img * (1 - hair) + hair_colour * hair
    # B feature clarity: eyes and mouth, darker the clearer
    marks = np.zeros_like(x)
    for mx, my, r in (
        (cx - 0.4 * rx, cy - 0.1, 0.025),
        (cx + 0.4 * rx, cy - 0.1, 0.025),
        (cx, cy + 0.08, 0.03),
    ):
        marks = np.maximum(marks, ((x - mx) ** 2 + (y - my) ** 2 < r * r).astype(np.float32))
    img = img * (1 - 0.85 * v["facial_feature_clarity"] * marks[..., None])
    img = img + rng.normal(0, 0.015, img.shape).astype(np.float32)
    return Image.fromarray((np.clip(img, 0, 1) * 255).round().astype(np.uint8))


def write_humanbeauty(
    root: str | os.PathLike,
    n_train: int,
    n_test: int,
    seed: int = 0,
    expert_fraction: float = 0.5,
    size: int = 224,
) -> Path:
    """A HumanBeauty-layout root (``train_label.jsonl``, ``test_label.jsonl``, ``images/``).

    A fraction of the lines are 12-dimension (expert) lines, the rest overall-only lines with
    ``text_level``, as in the real data set. Images are JPEGs at `size` px (224 by default: the
    figure has no fine detail, and small files keep generating and decoding fast).
    """
    root = Path(root)
    (root / "images").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    index = 0
    for split, n in (("train", n_train), ("test", n_test)):
        lines = []
        for _ in range(n):
            scores = parent_scores(sample_leaves(rng))
            name = f"images/{split}_{index:05d}.jpg"
            render(scores, size, seed=seed * 1_000_003 + index).save(root / name, quality=95)
            index += 1
            if rng.uniform() < expert_fraction:
                row = {
                    "image_name": name,
                    "is_expert": True,
                    "score": [round(s, 6) for s in to_official(scores)],
                }
            else:
                overall = round(scores["overall"], 6)
                row = {
                    "image_name": name,
                    "is_expert": False,
                    "score": overall,
                    "text_level": score_to_level(overall),
                }
            lines.append(json.dumps(row))
        (root / f"{split}_label.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return root


def main(argv: list[str] | None = None) -> int:
    """python -m humanaes_core.data.synthetic OUT [N_TRAIN N_TEST]: write a synthetic HumanBeauty root."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m humanaes_core.data.synthetic", description=main.__doc__)
    parser.add_argument("out")
    parser.add_argument("n_train", type=int, nargs="?", default=300)
    parser.add_argument("n_test", type=int, nargs="?", default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--expert-fraction", type=float, default=0.5)
    args = parser.parse_args(argv)
    root = write_humanbeauty(args.out, args.n_train, args.n_test, args.seed, args.expert_fraction)
    print(root)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
