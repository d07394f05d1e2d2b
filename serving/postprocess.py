"""Turn GluonCV detector outputs into wire rows ``[class_id, score, x0/w, y0/h, x1/w, y1/h]``."""
import numpy as np


def detection_rows(class_ids, scores, boxes, resized_size, score_threshold, top_k):
    """Rows for one image.

    Args:
        class_ids: ``(K,)`` class ids, -1 on padding rows.
        scores: ``(K,)`` confidences.
        boxes: ``(K, 4)`` x0, y0, x1, y1 in pixels of the network input.
        resized_size: ``(h, w)`` of the network input.
        score_threshold: rows with a lower score are dropped.
        top_k: at most this many rows are kept.

    Returns:
        ``(D, 6)`` float32 rows, padding removed, coordinates normalised and clipped to [0, 1],
        sorted by score, highest first.
    """
    height, width = resized_size
    keep = (class_ids >= 0) & (scores >= score_threshold) & np.isfinite(scores)
    ids, kept_scores, kept_boxes = class_ids[keep], scores[keep], boxes[keep].astype(np.float32)
    order = np.argsort(-kept_scores, kind="stable")[:top_k]
    scale = np.array([width, height, width, height], dtype=np.float32)
    normalised = np.clip(kept_boxes[order] / scale, 0.0, 1.0)
    rows = np.empty((len(order), 6), dtype=np.float32)
    rows[:, 0] = ids[order]
    rows[:, 1] = kept_scores[order]
    rows[:, 2:] = normalised
    return rows
