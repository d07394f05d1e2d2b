"""Faithfulness metrics: deletion and insertion curves and their areas (AUC)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

__all__ = ["ordered_coalitions", "area_under_curve", "deletion_insertion", "smallest_sets",
           "KEEP_FRACTION", "REMOVE_FRACTION"]

# smallest_sets: a set "keeps" the score when it alone recovers this share of the score's gain over
# the base value, and "removes" it when at most REMOVE_FRACTION of the gain is left without it.
KEEP_FRACTION = 0.9
REMOVE_FRACTION = 0.1


def ordered_coalitions(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Coalitions that delete / insert segments in order of decreasing SHAP value.

    values: (S,) float. Returns (deletion, insertion), each (S+1, S) bool: deletion row j
    has the j most important segments removed (row 0 = full image), insertion row j has
    only them kept (row 0 = empty). Ties keep segment order.
    """
    num_segments = len(values)
    order = np.argsort(-np.asarray(values, dtype=np.float64), kind="stable")
    rank = np.empty(num_segments, dtype=np.int64)
    rank[order] = np.arange(num_segments)
    steps = np.arange(num_segments + 1)[:, None]
    insertion = rank[None, :] < steps
    return ~insertion, insertion


def area_under_curve(scores: np.ndarray) -> float:
    """Trapezoidal area under scores sampled at fractions 0, 1/S, ..., 1 (x spans [0, 1]).

    scores: (S+1,) float. Returns a float in the units of the scores.
    """
    scores = np.asarray(scores, dtype=np.float64)
    if len(scores) < 2:
        return float(scores.mean()) if len(scores) else 0.0
    return float((scores[:-1] + scores[1:]).sum() / (2.0 * (len(scores) - 1)))


def deletion_insertion(evaluate_target: Callable[[np.ndarray], np.ndarray],
                       values: np.ndarray) -> dict:
    """Deletion and insertion curves of one target.

    evaluate_target: coalitions (M, S) bool -> the target's scores (M,) float (each row is
    one model call). values: (S,) SHAP values. Returns a dict with ``deletion_auc`` (lower
    is better), ``insertion_auc`` (higher is better), both curves as lists and
    ``model_calls`` (2 S + 2).
    """
    deletion, insertion = ordered_coalitions(values)
    scores = np.asarray(evaluate_target(np.concatenate([deletion, insertion])), dtype=np.float64)
    deletion_scores, insertion_scores = scores[: len(deletion)], scores[len(deletion):]
    return {
        "deletion_auc": area_under_curve(deletion_scores),
        "insertion_auc": area_under_curve(insertion_scores),
        "deletion_curve": deletion_scores.tolist(),
        "insertion_curve": insertion_scores.tolist(),
        "model_calls": int(len(scores)),
    }


def smallest_sets(values: np.ndarray, deletion_curve, insertion_curve, base_value: float,
                  prediction: float, keep_fraction: float = KEEP_FRACTION,
                  remove_fraction: float = REMOVE_FRACTION) -> dict | None:
    """The fewest top-ranked segments that keep the score, and the fewest whose removal removes it.

    values: (S,) SHAP values (rank: decreasing value, ties in segment order, as
    ``ordered_coalitions``); deletion_curve, insertion_curve: (S+1,) scores from
    ``deletion_insertion`` (no model calls here). With gain = prediction - base_value:
    ``keep`` is the smallest k whose top-k segments shown alone (the rest replaced by the
    baseline) score at least base_value + keep_fraction * gain; ``remove`` the smallest k
    whose top-k segments replaced by the baseline leave at most base_value +
    remove_fraction * gain. Each is {"segments": [segment ids, rank order], "score": float}.
    Returns None when gain <= 0 (the segments together do not raise the score).
    """
    gain = float(prediction) - float(base_value)
    if not gain > 0:
        return None
    order = np.argsort(-np.asarray(values, dtype=np.float64), kind="stable")
    deletion = np.asarray(deletion_curve, dtype=np.float64)
    insertion = np.asarray(insertion_curve, dtype=np.float64)
    keep_level = float(base_value) + keep_fraction * gain
    remove_level = float(base_value) + remove_fraction * gain
    reached_keep = np.flatnonzero(insertion >= keep_level)
    reached_remove = np.flatnonzero(deletion <= remove_level)
    keep = int(reached_keep[0]) if reached_keep.size else len(order)
    remove = int(reached_remove[0]) if reached_remove.size else len(order)
    return {
        "keep": {"segments": order[:keep].tolist(), "score": float(insertion[min(keep, len(insertion) - 1)])},
        "remove": {"segments": order[:remove].tolist(), "score": float(deletion[min(remove, len(deletion) - 1)])},
        "keep_fraction": keep_fraction,
        "remove_fraction": remove_fraction,
    }
