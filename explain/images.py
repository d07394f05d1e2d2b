"""The one image decoder of explain: image file bytes -> (H, W, 3) uint8 RGB."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from .errors import ExplainError

__all__ = ["decode_image", "load_image"]


def decode_image(data: bytes, location: str) -> np.ndarray:
    """Image file bytes (JPEG, PNG, ...) -> (H, W, 3) uint8 RGB; raises ExplainError naming ``location``."""
    try:
        with Image.open(io.BytesIO(data)) as opened:
            return np.asarray(opened.convert("RGB"), dtype=np.uint8).copy()
    except (OSError, UnidentifiedImageError) as error:
        raise ExplainError(f"cannot read image {location!r}: {error}") from error


def load_image(path: str | Path) -> np.ndarray:
    """Read an image file as (H, W, 3) uint8 RGB; raises ExplainError naming the file."""
    try:
        data = Path(path).read_bytes()
    except OSError as error:
        raise ExplainError(f"cannot read image {str(path)!r}: {error}") from error
    return decode_image(data, str(path))
