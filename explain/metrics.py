"""Faithfulness metrics: deletion and insertion curves and their areas (AUC)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

__all__ = ["ordered_coalitions", "area_under_curve", "deletion_insertion"]


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
