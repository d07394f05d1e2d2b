"""Your own features: a given segment map (captum's ``feature_mask``) checked before it is used."""

from __future__ import annotations

import numpy as np

from .errors import ConfigError

__all__ = ["check_segment_map"]


def check_segment_map(segments, image_shape: tuple[int, int]) -> np.ndarray:
    """A user's feature mask as the explainer's segment map, or ConfigError (field ``segments``).

    segments: (H, W) integer labels 0..S-1, every label used at least once, S >= 2 (relabel
    any integer map with ``explain.segmentation.relabel_contiguous``). image_shape: (H, W)
    of the image explained (after ``resize``). Returns (H, W) int32.
    """
    array = np.asarray(segments)
    height, width = (int(side) for side in image_shape[:2])
    if array.dtype == bool or array.dtype.kind not in "iu":
        raise ConfigError(f"segments must be an integer array of segment labels, got dtype {array.dtype}; "
                          "convert it with segments.astype(int)", field="segments")
    if array.shape != (height, width):
        raise ConfigError(f"segments must have the image's shape (H, W) = ({height}, {width}), got "
                          f"{array.shape} (with resize set, the image explained is the resized one)",
                          field="segments")
    low, high = int(array.min()), int(array.max())
    if low < 0:
        raise ConfigError(f"segments must hold labels 0..S-1, got a label {low}; relabel with "
                          "explain.segmentation.relabel_contiguous(segments)", field="segments")
    used = np.bincount(array.ravel().astype(np.int64), minlength=high + 1)
    missing = np.flatnonzero(used == 0)
    if missing.size:
        shown = ", ".join(str(label) for label in missing[:5]) + (", ..." if missing.size > 5 else "")
        raise ConfigError(f"segments must use every label 0..{high} (the values are the features' "
                          f"indices), labels {shown} are unused; relabel with "
                          "explain.segmentation.relabel_contiguous(segments)", field="segments")
    if high < 1:
        raise ConfigError("segments must hold at least 2 segments (one segment explains nothing), "
                          f"got {high + 1}", field="segments")
    return array.astype(np.int32)
