"""Baseline images: the pixels an absent segment takes (noise, mean colour, blur, black, a file)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .config import BUILTIN_BASELINES
from .errors import ConfigError, ExplainError
from .images import load_image

__all__ = ["make_baseline", "BLUR_SIGMA_FRACTION"]

# Gaussian sigma of the "blur" baseline as a fraction of the image's long side.
BLUR_SIGMA_FRACTION = 0.05


def make_baseline(image: np.ndarray, baseline: str, rng: np.random.Generator) -> np.ndarray:
    """Build the baseline image for ``image``.

    image: (H, W, 3) uint8. baseline: "noise" (uniform white noise from ``rng``, as Clarify's
    default), "mean" (the image's mean colour), "blur" (Gaussian blur, sigma =
    ``BLUR_SIGMA_FRACTION`` * long side), "black", or a path to an image file that is
    resized to (W, H). Returns (H, W, 3) uint8.
    """
    height, width = image.shape[:2]
    if baseline == "noise":
        return rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)
    if baseline == "mean":
        mean_colour = np.round(image.reshape(-1, 3).mean(axis=0)).astype(np.uint8)
        return np.broadcast_to(mean_colour, image.shape).copy()
    if baseline == "blur":
        from scipy.ndimage import gaussian_filter

        sigma = BLUR_SIGMA_FRACTION * max(height, width)
        blurred = gaussian_filter(image.astype(np.float64), sigma=(sigma, sigma, 0), mode="nearest")
        return np.clip(np.round(blurred), 0, 255).astype(np.uint8)
    if baseline == "black":
        return np.zeros_like(image)
    path = Path(baseline)
    if not path.is_file():
        raise ConfigError(
            f"baseline must be one of {', '.join(BUILTIN_BASELINES)} or a path to an "
            f"existing image file, got {baseline!r} (no such file)", field="baseline")
    from PIL import Image

    try:
        pixels = load_image(path)
    except ExplainError as error:
        raise ConfigError(f"baseline image {baseline!r} cannot be read: {error}", field="baseline") from error
    resized = Image.fromarray(pixels).resize((width, height), Image.BILINEAR)
    return np.asarray(resized, dtype=np.uint8).copy()
