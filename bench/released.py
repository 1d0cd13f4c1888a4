"""The released HumanAesExpert inference recipe, re-implemented step for step as the baseline.

Released inference (InternVL's `load_image` + the model's chat call) handles one photo at a time:
open and fully decode the file, convert to RGB, pick the tile grid, resize the full-resolution image to
the grid and crop the tiles, resize the full image again for the thumbnail, then per tile
torchvision's Resize (a same-size copy), ToTensor and Normalize, and stack; then two full forward passes
(overall question, 12-dimension question), each encoding the image again. The operations and their
order are the released ones, written with numpy/torch so the benchmark needs no torchvision.
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from humanaes_core.model import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    HeadOutputs,
    HumanAesModel,
    TileConfig,
    closest_grid,
)

_MEAN = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
_STD = torch.tensor(IMAGENET_STD).view(3, 1, 1)


def _tile_transform(tile: Image.Image, size: int) -> torch.Tensor:
    """torchvision's Resize((S, S), BICUBIC) → ToTensor → Normalize, as the release composes them."""
    if tile.mode != "RGB":
        tile = tile.convert("RGB")
    tile = tile.resize((size, size), Image.Resampling.BICUBIC)  # same size: Pillow returns a copy
    arr = np.array(tile, dtype=np.uint8, copy=True)
    t = torch.from_numpy(arr).view(size, size, 3).permute(2, 0, 1).contiguous()
    t = t.to(torch.float32).div(255)
    return t.clone().sub_(_MEAN).div_(_STD)  # Normalize(inplace=False) clones first


def load_image(path: str, cfg: TileConfig) -> torch.Tensor:
    """Released `load_image(path, max_num)`: full decode, full-size resizes, per-tile transforms."""
    image = Image.open(path).convert("RGB")
    size = cfg.image_size
    cols, rows = closest_grid(image.width, image.height, cfg)
    resized = image.resize((cols * size, rows * size), Image.Resampling.BICUBIC)
    tiles = [
        resized.crop((c * size, r * size, (c + 1) * size, (r + 1) * size))
        for r in range(rows)
        for c in range(cols)
    ]
    if cfg.use_thumbnail and len(tiles) != 1:
        tiles.append(image.resize((size, size), Image.Resampling.BICUBIC))
    return torch.stack([_tile_transform(t, size) for t in tiles])


def score_one(model: HumanAesModel, pixels: torch.Tensor, heads: str = "all") -> HeadOutputs:
    """Released scoring of one photo: the overall pass, then (for a full card) the 12-dimension pass,
    each with its own vision-tower run."""
    return model.score_batch(pixels, pixels.shape[0], heads=heads, shared_prefix=False)
