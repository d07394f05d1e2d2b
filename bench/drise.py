"""D-RISE (Petsiuk et al., CVPR 2021), written here for the real-photo benchmark.

Random masks: a ``grid`` x ``grid`` array of cells, each kept with probability ``keep``,
upsampled bilinearly to (grid + 1) cells' worth of pixels and cropped at a random offset
(so cell borders fall anywhere). A masked image is ``mask * image + (1 - mask) * baseline``.
Each masked image's detections are compared with each target: the similarity is D-RISE's
IoU x class-vector cosine x objectness, which for detections that carry one class id and one
score is max_j IoU(target, detection_j) * [same class] * score_j. The saliency of a pixel is
the similarity-weighted mean of the masks; here it is centred,
sum_i w_i (M_i - keep) / (N keep (1 - keep)), an estimate of E[w | pixel shown] - E[w |
pixel hidden] (for binary masks), so that a pixel that does not matter gets about 0 and the
map has a sign, like the attributions it is compared with. Costs one model call per mask.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from explain.detection import box_iou

__all__ = ["drise_masks", "drise_saliency", "similarity"]


def drise_masks(count: int, height: int, width: int, rng: np.random.Generator, grid: int = 16,
                keep: float = 0.5) -> np.ndarray:
    """(count, H, W) float32 masks in [0, 1] (1 keeps the image's pixel)."""
    import cv2

    cell_height, cell_width = -(-height // grid), -(-width // grid)
    up_height, up_width = (grid + 1) * cell_height, (grid + 1) * cell_width
    masks = np.empty((count, height, width), dtype=np.float32)
    for index in range(count):
        cells = (rng.random((grid, grid)) < keep).astype(np.float32)
        upsampled = cv2.resize(cells, (up_width, up_height), interpolation=cv2.INTER_LINEAR)
        row, col = rng.integers(0, cell_height), rng.integers(0, cell_width)
        masks[index] = upsampled[row:row + height, col:col + width]
    return masks


def similarity(targets: np.ndarray, detections: np.ndarray) -> np.ndarray:
    """D-RISE similarity of each target (T, 6) to one image's detections (D, 6): (T,) in [0, 1]."""
    targets = np.asarray(targets, dtype=np.float64).reshape(-1, 6)
    detections = np.asarray(detections, dtype=np.float64).reshape(-1, 6)
    if len(detections) == 0:
        return np.zeros(len(targets))
    iou = box_iou(targets[:, 2:], detections[:, 2:])
    same_class = targets[:, None, 0] == detections[None, :, 0]
    return (iou * same_class * detections[None, :, 1]).max(axis=1)


def drise_saliency(image: np.ndarray, baseline: np.ndarray, targets: np.ndarray,
                   predict: Callable[[np.ndarray], list], num_masks: int, rng: np.random.Generator,
                   batch_size: int = 32, grid: int = 16, keep: float = 0.5) -> np.ndarray:
    """Centred D-RISE saliency maps, (T, H, W) float64, from ``num_masks`` model calls.

    image, baseline: (H, W, 3) uint8; targets: (T, 6) detection rows of the unmasked image;
    predict: (N, H, W, 3) uint8 -> N (D_i, 6) arrays.
    """
    height, width = image.shape[:2]
    saliency = np.zeros((len(targets), height, width))
    foreground, background = image.astype(np.float32), baseline.astype(np.float32)
    done = 0
    while done < num_masks:
        count = min(batch_size, num_masks - done)
        masks = drise_masks(count, height, width, rng, grid, keep)
        blended = masks[..., None] * foreground + (1.0 - masks[..., None]) * background
        outputs = predict(np.clip(np.round(blended), 0, 255).astype(np.uint8))
        weights = np.array([similarity(targets, output) for output in outputs])  # (count, T)
        saliency += np.tensordot(weights.T, masks - keep, axes=1)
        done += count
    return saliency / (num_masks * keep * (1.0 - keep))
