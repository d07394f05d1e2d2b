"""VOC-style detection average precision (all-point interpolation) and box IoU, in numpy."""
from __future__ import annotations

import numpy as np


def box_iou(boxes_a: np.ndarray, boxes_b: np.ndarray) -> np.ndarray:
    """Return the ``(A, B)`` float64 IoU of ``(A, 4)`` and ``(B, 4)`` boxes ``x0, y0, x1, y1``."""
    boxes_a = np.asarray(boxes_a, dtype=np.float64).reshape(-1, 4)
    boxes_b = np.asarray(boxes_b, dtype=np.float64).reshape(-1, 4)
    top_left = np.maximum(boxes_a[:, None, :2], boxes_b[None, :, :2])
    bottom_right = np.minimum(boxes_a[:, None, 2:], boxes_b[None, :, 2:])
    intersection = np.prod(np.clip(bottom_right - top_left, 0, None), axis=2)
    area_a = np.prod(boxes_a[:, 2:] - boxes_a[:, :2], axis=1)
    area_b = np.prod(boxes_b[:, 2:] - boxes_b[:, :2], axis=1)
    union = area_a[:, None] + area_b[None, :] - intersection
    return np.where(union > 0, intersection / np.maximum(union, 1e-12), 0.0)


def average_precision(recall: np.ndarray, precision: np.ndarray) -> float:
    """All-point interpolated AP (VOC 2010+) from ``(D,)`` recall and precision curves."""
    recall = np.concatenate([[0.0], recall, [1.0]])
    precision = np.concatenate([[0.0], precision, [0.0]])
    precision = np.maximum.accumulate(precision[::-1])[::-1]
    changes = np.flatnonzero(recall[1:] != recall[:-1])
    return float(np.sum((recall[changes + 1] - recall[changes]) * precision[changes + 1]))


def detection_average_precisions(predictions: list[tuple[np.ndarray, np.ndarray, np.ndarray]],
                                 ground_truths: list[tuple[np.ndarray, np.ndarray]],
                                 num_classes: int, iou_threshold: float = 0.5) -> np.ndarray:
    """Per-class VOC AP over a set of images.

    Args:
        predictions: per image ``(class_ids (D,) int, scores (D,) float, boxes (D, 4) float)``,
            padding rows already removed.
        ground_truths: per image ``(class_ids (G,) int, boxes (G, 4) float)`` in the same
            coordinates as the predicted boxes.
        num_classes: number of classes.
        iou_threshold: minimum IoU for a detection to match a ground-truth box.

    Returns:
        ``(num_classes,)`` float64 AP per class (NaN for a class with no ground truth).
    """
    if len(predictions) != len(ground_truths):
        raise ValueError("got %d predictions for %d ground truths" % (len(predictions), len(ground_truths)))
    precisions = np.full(num_classes, np.nan)
    for class_id in range(num_classes):
        records = []  # (score, is_true_positive)
        positive_count = 0
        for (pred_ids, pred_scores, pred_boxes), (gt_ids, gt_boxes) in zip(predictions, ground_truths):
            gt_class_boxes = np.asarray(gt_boxes)[np.asarray(gt_ids) == class_id]
            positive_count += len(gt_class_boxes)
            selected = np.asarray(pred_ids) == class_id
            scores = np.asarray(pred_scores)[selected]
            boxes = np.asarray(pred_boxes)[selected]
            order = np.argsort(-scores, kind="stable")
            scores, boxes = scores[order], boxes[order]
            matched = np.zeros(len(gt_class_boxes), dtype=bool)
            ious = box_iou(boxes, gt_class_boxes) if len(gt_class_boxes) else np.zeros((len(boxes), 0))
            for row, score in enumerate(scores):
                best = int(np.argmax(ious[row])) if ious.shape[1] else -1
                if best >= 0 and ious[row, best] >= iou_threshold and not matched[best]:
                    matched[best] = True
                    records.append((score, True))
                else:
                    records.append((score, False))
        if positive_count == 0:
            continue
        if not records:
            precisions[class_id] = 0.0
            continue
        records.sort(key=lambda record: -record[0])
        hits = np.array([record[1] for record in records], dtype=np.float64)
        true_positives = np.cumsum(hits)
        false_positives = np.cumsum(1.0 - hits)
        recall = true_positives / positive_count
        precision = true_positives / np.maximum(true_positives + false_positives, 1e-12)
        precisions[class_id] = average_precision(recall, precision)
    return precisions
