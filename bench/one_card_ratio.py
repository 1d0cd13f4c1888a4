"""Time of a full card (all heads, 12 dimensions) over the overall question alone.

The released code pays two full forward passes for a full card (ratio about 2.0); the shared-prefix
pass should cost little more than one. Runs on the "small" random model, CPU, 1 tile per photo.

    python bench/one_card_ratio.py [--photos 16] [--repeats 3] [--tiles 1]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from humanaes_core import load_scorer
from humanaes_core.testing import make_tiny_model


def _time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--tiles", type=int, default=1, help="max tiles per photo")
    parser.add_argument("--batch-size", type=int, default=8)
    args = parser.parse_args()
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    images = [
        Image.fromarray(rng.integers(0, 255, (448, 448, 3), dtype=np.uint8)) for _ in range(args.photos)
    ]
    with tempfile.TemporaryDirectory() as tmp:
        path = make_tiny_model(Path(tmp) / "small", size="small")
        scorer = load_scorer(path, device="cpu", max_tiles=args.tiles, batch_size=args.batch_size)
        scorer.score(images[:2])  # warm-up
        model = scorer.model
        pixels = torch.cat([_pixels(img, scorer) for img in images])
        n = len(images)
        full = _time(lambda: scorer.score(images), args.repeats)
        quick = _time(lambda: scorer.score(images, heads="overall"), args.repeats)
        two_pass = _time(
            lambda: [
                model.score_batch(pixels[i : i + args.batch_size], 1, shared_prefix=False)
                for i in range(0, n, args.batch_size)
            ],
            args.repeats,
        )
        one_pass = _time(
            lambda: [
                model.score_batch(pixels[i : i + args.batch_size], 1) for i in range(0, n, args.batch_size)
            ],
            args.repeats,
        )
    print(
        f"small model, CPU fp32, torch {torch.__version__}: {n} photos, {args.tiles} tile(s), "
        f"batch {args.batch_size}"
    )
    print(f"score(images)                   {full / n * 1000:8.1f} ms/photo")
    print(f"score(images, heads='overall')  {quick / n * 1000:8.1f} ms/photo")
    print(f"ratio full/overall (API)        {full / quick:8.2f}   (target <= 1.3; released approach 2.0)")
    print(f"model only: shared-prefix pass  {one_pass / n * 1000:8.1f} ms/photo")
    print(f"model only: released two passes {two_pass / n * 1000:8.1f} ms/photo")
    print(f"ratio two-pass/shared           {two_pass / one_pass:8.2f}")


def _pixels(img: Image.Image, scorer) -> torch.Tensor:
    from humanaes_core.preprocess import preprocess

    return preprocess(img, scorer.tile_config)


if __name__ == "__main__":
    main()
