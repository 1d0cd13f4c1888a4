"""A real portrait (skimage's astronaut, eyes open, sharp) and variants of it, built once per session."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageFilter
from scipy import ndimage


@pytest.fixture(scope="session")
def portrait() -> Image.Image:
    skimage_data = pytest.importorskip("skimage.data")
    return Image.fromarray(skimage_data.astronaut())


def motion_blur(img: Image.Image, length: int) -> Image.Image:
    """Horizontal camera shake over `length` pixels."""
    kernel = np.full((1, length), 1.0 / length)
    arr = np.asarray(img, dtype=np.float32)
    out = np.stack([ndimage.convolve(arr[..., c], kernel, mode="nearest") for c in range(3)], -1)
    return Image.fromarray(np.clip(out, 0, 255).astype(np.uint8))


def gaussian_blur(img: Image.Image, sigma: float) -> Image.Image:
    return img.filter(ImageFilter.GaussianBlur(sigma))
