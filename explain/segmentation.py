"""SLIC superpixels: the features that Kernel SHAP switches on and off."""

from __future__ import annotations

import logging

import numpy as np

__all__ = ["segment_image", "relabel_contiguous"]

logger = logging.getLogger(__name__)

# Connectivity enforcement can still merge or drop a few segments; re-asking with a scaled
# request a few times and keeping the count closest to the target costs a few cheap slic calls.
_MAX_ATTEMPTS = 4


def relabel_contiguous(segment_map: np.ndarray) -> np.ndarray:
    """Renumber labels to 0..S-1 in order of first appearance of each value's sorted rank.

    segment_map: (H, W) integer labels, any values. Returns (H, W) int32 in 0..S-1.
    """
    _, inverse = np.unique(segment_map, return_inverse=True)
    return inverse.reshape(segment_map.shape).astype(np.int32)


def _slic(image: np.ndarray, n_segments: int, compactness: float, slic_zero: bool) -> np.ndarray:
    from skimage.segmentation import slic

    # A full mask makes slic place exactly n_segments seeds by k-means over the pixel grid
    # (deterministic: skimage seeds it) instead of a regular grid, whose rows x columns
    # rounding turns 20 into 16 or 25 on a square image.
    full_mask = np.ones(image.shape[:2], dtype=bool)
    return slic(image, n_segments=n_segments, compactness=compactness, slic_zero=slic_zero,
                start_label=0, channel_axis=-1, mask=full_mask)


def segment_image(image: np.ndarray, num_segments: int = 20, compactness: float = 5.0,
                  slic_zero: bool = True) -> np.ndarray:
    """Split an image into about ``num_segments`` superpixels.

    image: (H, W, 3) uint8. Returns the segment map, (H, W) int32 with labels 0..S-1;
    S = ``segment_map.max() + 1`` is the number of segments actually used (may differ
    from ``num_segments``; it is never below 2 for an image with more than one pixel).

    SLICO (``slic_zero=True``) adapts the compactness per segment so that Clarify's default
    ``compactness=5`` gives close to ``num_segments`` on photos and on flat synthetic
    scenes alike; plain SLIC in Lab space can merge a 320 px scene into 2 segments.
    Measured for num_segments=20 (plain slic at compactness 5 -> this function):
    astronaut 6 -> 20, coffee 14 -> 20, chelsea 8 -> 20, three 320 px shapes scenes
    3/9/15 -> 20/19/20.
    """
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"image must have shape (H, W, 3), got {image.shape}")
    best_map, best_gap = None, None
    request = num_segments
    tried = set()
    for _ in range(_MAX_ATTEMPTS):
        tried.add(request)
        segment_map = relabel_contiguous(_slic(image, request, compactness, slic_zero))
        count = int(segment_map.max()) + 1
        gap = abs(count - num_segments)
        if best_gap is None or gap < best_gap:
            best_map, best_gap = segment_map, gap
        if gap <= max(1, num_segments // 20):
            break
        request = max(2, int(round(request * num_segments / max(count, 1))))
        if request in tried:
            request = request + (1 if count < num_segments else -1)
            if request in tried or request < 2:
                break
    if best_map.max() < 1 and best_map.size > 1:
        # One segment explains nothing: fall back to a left/right split.
        best_map = np.zeros(image.shape[:2], np.int32)
        best_map[:, image.shape[1] // 2:] = 1
    logger.debug("segmentation: asked %d segments, using %d", num_segments, best_map.max() + 1)
    return best_map
