"""Baseline images: the pixels an absent segment takes (noise, mean colour, blur, black, a file, an S3 object)."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np

from .config import BUILTIN_BASELINES
from .errors import ConfigError, ExplainError
from .images import decode_image, load_image
from .sources import read_s3_object

__all__ = ["make_baseline", "baseline_file_bytes", "is_s3_baseline", "BLUR_SIGMA_FRACTION"]

# Gaussian sigma of the "blur" baseline as a fraction of the image's long side.
BLUR_SIGMA_FRACTION = 0.05


def make_baseline(image: np.ndarray, baseline: str, rng: np.random.Generator) -> np.ndarray:
    """Build the baseline image for ``image``.

    image: (H, W, 3) uint8. baseline: "noise" (uniform white noise from ``rng``, as Clarify's
    default), "mean" (the image's mean colour), "blur" (Gaussian blur, sigma =
    ``BLUR_SIGMA_FRACTION`` * long side), "black", a path to an image file or an S3 object
    s3://BUCKET/KEY (as it is now; read again only when replaced), resized to (W, H). Returns (H, W, 3) uint8.
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
    from PIL import Image

    if is_s3_baseline(baseline):
        try:
            data = _s3_baseline_bytes(baseline)
        except ExplainError as error:  # its message names the object and says it cannot be read
            raise ConfigError(str(error), field="baseline") from error
    else:
        path = Path(baseline)
        if not path.is_file():
            raise ConfigError(
                f"baseline must be one of {', '.join(BUILTIN_BASELINES)}, a path to an existing image file "
                f"or an s3://BUCKET/KEY image, got {baseline!r} (no such file)", field="baseline")
        data = None
    try:
        pixels = decode_image(data, baseline) if data is not None else load_image(path)
    except ExplainError as error:
        raise ConfigError(f"baseline image {baseline!r} cannot be read: {error}", field="baseline") from error
    resized = Image.fromarray(pixels).resize((width, height), Image.BILINEAR)
    return np.asarray(resized, dtype=np.uint8).copy()


def is_s3_baseline(baseline: str) -> bool:
    """Whether ``baseline`` names an S3 object (s3://BUCKET/KEY) rather than a built-in or a local file."""
    return isinstance(baseline, str) and baseline.startswith("s3://")


# The S3 baselines read in this process, by URI: (ETag, bytes). Each use asks S3 whether the object
# changed (a conditional GET, nothing downloaded when not): a notebook that re-uploads its baseline
# and explains again gets the new image.
_S3_BASELINES: dict[str, tuple[str, bytes]] = {}
_S3_BASELINES_LOCK = threading.Lock()


def _s3_baseline_bytes(url: str) -> bytes:
    """The bytes of baseline image ``url`` as the object is now."""
    with _S3_BASELINES_LOCK:
        cached = _S3_BASELINES.get(url)
    etag, data = read_s3_object(url, "baseline image", unless_etag=cached[0] if cached else None)
    if data is None:
        return cached[1]
    with _S3_BASELINES_LOCK:
        if len(_S3_BASELINES) >= 4:
            _S3_BASELINES.clear()
        _S3_BASELINES[url] = (etag, data)
    return data


def baseline_file_bytes(baseline: str) -> bytes | None:
    """The bytes of a baseline image (a local file or an S3 object), None for a built-in baseline or a
    local path that is not a file. Raises ExplainError when an S3 object cannot be read."""
    if is_s3_baseline(baseline):
        return _s3_baseline_bytes(baseline)
    if isinstance(baseline, str) and baseline not in BUILTIN_BASELINES and Path(baseline).is_file():
        return Path(baseline).read_bytes()
    return None
