"""CenterNet training targets (centre heatmaps, offsets, log sizes) and losses, shared by both demo nets."""
from __future__ import annotations

import mxnet as mx
import numpy as np


def build_targets(targets: list, grid_height: int, grid_width: int, num_classes: int,
                  stride: int) -> tuple:
    """Encode boxes into CenterNet targets on the stride-``stride`` grid.

    Args:
        targets: per image ``(class_ids (K,) int, boxes (K, 4) float x0, y0, x1, y1 pixels)``.

    Returns ``heatmap (B, C, gh, gw)``, ``regression (B, 4, gh, gw)`` (offset x, y in cells;
    log width, log height in cells) and ``centre_mask (B, 1, gh, gw)``, all float32.
    """
    batch = len(targets)
    heatmap = np.zeros((batch, num_classes, grid_height, grid_width), np.float32)
    regression = np.zeros((batch, 4, grid_height, grid_width), np.float32)
    centre_mask = np.zeros((batch, 1, grid_height, grid_width), np.float32)
    rows = np.arange(grid_height)[:, None]
    cols = np.arange(grid_width)[None, :]
    for item, (class_ids, boxes) in enumerate(targets):
        for class_id, (x0, y0, x1, y1) in zip(class_ids, boxes):
            centre_x, centre_y = (x0 + x1) / 2.0 / stride, (y0 + y1) / 2.0 / stride
            width, height = (x1 - x0) / stride, (y1 - y0) / stride
            col, row = min(int(centre_x), grid_width - 1), min(int(centre_y), grid_height - 1)
            sigma_x, sigma_y = max(width / 6.0, 0.4), max(height / 6.0, 0.4)
            gaussian = np.exp(-((cols - col) ** 2) / (2 * sigma_x ** 2) - ((rows - row) ** 2) / (2 * sigma_y ** 2))
            heatmap[item, class_id] = np.maximum(heatmap[item, class_id], gaussian)
            regression[item, :, row, col] = (centre_x - col, centre_y - row, np.log(width), np.log(height))
            centre_mask[item, 0, row, col] = 1.0
    return heatmap, regression, centre_mask


def heatmap_focal_loss(logits, heatmap, positive_count):
    """CenterNet's penalty-reduced focal loss of ``(B, C, gh, gw)`` logits, per positive centre."""
    probability = mx.nd.sigmoid(logits).clip(1e-4, 1 - 1e-4)
    log_p = -mx.nd.Activation(-logits, act_type="softrelu")
    log_not_p = -mx.nd.Activation(logits, act_type="softrelu")
    positive = heatmap == 1
    positive_loss = log_p * (1 - probability) ** 2 * positive
    negative_loss = log_not_p * probability ** 2 * (1 - heatmap) ** 4 * (1 - positive)
    return -(positive_loss.sum() + negative_loss.sum()) / positive_count


def centernet_loss(head, heatmap, regression, centre_mask, num_classes: int):
    """Focal loss on the heatmaps plus L1 on offset and log size at centres: ``(total, focal, l1)``."""
    positive_count = mx.nd.maximum(centre_mask.sum(), 1)
    focal = heatmap_focal_loss(head.slice_axis(axis=1, begin=0, end=num_classes), heatmap, positive_count)
    predicted = head.slice_axis(axis=1, begin=num_classes, end=num_classes + 4)
    l1 = (mx.nd.abs(predicted - regression) * centre_mask).sum() / positive_count
    return focal + l1, focal, l1
