"""Masked images: a coalition keeps its segments and takes the baseline's pixels elsewhere."""

from __future__ import annotations

import numpy as np

__all__ = ["box_pixel_slices", "context_foreground", "mask_images"]


def box_pixel_slices(box: np.ndarray, height: int, width: int) -> tuple[slice, slice]:
    """Pixel rows/columns covered by a normalised box.

    box: (4,) float [x0/w, y0/h, x1/w, y1/h]. Returns (row slice, column slice); the box is
    widened outward to whole pixels and is never empty.
    """
    x0, y0, x1, y1 = np.clip(np.asarray(box, dtype=np.float64), 0.0, 1.0)
    col0 = min(int(np.floor(x0 * width)), width - 1)
    row0 = min(int(np.floor(y0 * height)), height - 1)
    col1 = max(int(np.ceil(x1 * width)), col0 + 1)
    row1 = max(int(np.ceil(y1 * height)), row0 + 1)
    return slice(row0, row1), slice(col0, col1)


def context_foreground(image: np.ndarray, baseline: np.ndarray, box: np.ndarray | None,
                       context: float) -> np.ndarray:
    """The pixels a kept segment shows when the background is blended toward the baseline.

    image, baseline: (H, W, 3) uint8; box: (4,) normalised or None. Outside the box every
    pixel becomes ``context * image + (1 - context) * baseline`` (0 hides all background,
    1 hides none); inside the box the image is unchanged. Returns (H, W, 3) uint8.
    """
    if box is None or context >= 1.0:
        return image
    height, width = image.shape[:2]
    blended = context * image.astype(np.float64) + (1.0 - context) * baseline.astype(np.float64)
    foreground = np.clip(np.round(blended), 0, 255).astype(np.uint8)
    rows, cols = box_pixel_slices(box, height, width)
    foreground[rows, cols] = image[rows, cols]
    return foreground


def mask_images(foreground: np.ndarray, baseline: np.ndarray, segment_map: np.ndarray,
                coalitions: np.ndarray) -> np.ndarray:
    """Build one masked image per coalition.

    foreground: (H, W, 3) uint8 (the image, or its context-blended version), baseline:
    (H, W, 3) uint8, segment_map: (H, W) int 0..S-1, coalitions: (M, S) bool (True keeps
    the segment). Returns the masked batch, (M, H, W, 3) uint8.
    """
    coalitions = np.asarray(coalitions, dtype=bool)
    keep = coalitions[:, segment_map]  # (M, H, W)
    masked = np.empty(keep.shape + (3,), dtype=np.uint8)
    for channel in range(3):  # per channel: 2-3x faster than one broadcast over (..., 3)
        masked[..., channel] = np.where(keep, foreground[..., channel], baseline[..., channel])
    return masked
