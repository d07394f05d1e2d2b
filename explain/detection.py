"""Targets and their scores: detection matching by class and IoU, classification class picking."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np

from .errors import ConfigError, PredictorError

__all__ = [
    "box_iou",
    "select_detection_targets",
    "match_scores",
    "select_classification_targets",
    "class_name",
    "check_label_headers",
    "check_detection_classes",
    "check_detections",
    "check_probabilities",
    "check_target_boxes",
    "check_class_count",
]

logger = logging.getLogger(__name__)


def box_iou(boxes_a: np.ndarray, boxes_b: np.ndarray) -> np.ndarray:
    """Intersection over union of every pair of boxes.

    boxes_a: (A, 4), boxes_b: (B, 4), corners [x0, y0, x1, y1] in any common unit.
    Returns (A, B) float64 in [0, 1]; a pair of empty boxes has IoU 0.
    """
    a = np.asarray(boxes_a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(boxes_b, dtype=np.float64).reshape(-1, 4)
    top_left = np.maximum(a[:, None, :2], b[None, :, :2])
    bottom_right = np.minimum(a[:, None, 2:], b[None, :, 2:])
    overlap = np.clip(bottom_right - top_left, 0.0, None).prod(axis=2)
    area_a = np.clip(a[:, 2:] - a[:, :2], 0.0, None).prod(axis=1)
    area_b = np.clip(b[:, 2:] - b[:, :2], 0.0, None).prod(axis=1)
    union = area_a[:, None] + area_b[None, :] - overlap
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, overlap / np.where(union > 0, union, 1.0), 0.0)


def _numbers(answer, what: str, index: int) -> np.ndarray:
    """One image's answer as a float64 array, or PredictorError when it holds anything but numbers."""
    try:
        return np.asarray(answer, dtype=np.float64)
    except (TypeError, ValueError) as error:  # text, None, ragged rows
        raise PredictorError(f"predictor returned {what} for image {index} that are not an array of numbers "
                             f"({type(error).__name__}: {error})") from None


DETECTION_COLUMNS = ("class id", "score", "x0/w", "y0/h", "x1/w", "y1/h")  # a detection row's columns


def check_detections(detections, index: int = 0) -> np.ndarray:
    """Validate one image's detections and return them as (D, 6) float64.

    Rows are [class_id, score, x0/w, y0/h, x1/w, y1/h]; D may be 0. Raises PredictorError for
    another shape, non-finite values, or a class id that is not a whole number >= 0 or -1.
    """
    array = _numbers(detections, "detections", index)
    if array.size == 0:
        return np.zeros((0, 6))
    if array.ndim != 2 or array.shape[1] != 6:
        raise PredictorError(
            f"predictor returned detections of shape {array.shape} for image {index}; "
            "expected (D, 6) rows [class_id, score, x0/w, y0/h, x1/w, y1/h]")
    if not np.all(np.isfinite(array)):
        columns = ", ".join(name for name, finite in zip(DETECTION_COLUMNS, np.isfinite(array).all(axis=0))
                            if not finite)
        raise PredictorError(f"predictor returned non-finite detections for image {index} of a request (a masked "
                             f"image): NaN or infinite {columns} (the answer's values are float32: beyond "
                             "±3.4e38 is infinite)")
    class_ids = array[:, 0]
    odd = class_ids[(class_ids != np.round(class_ids)) | ((class_ids < 0) & (class_ids != -1))]
    if odd.size:
        raise PredictorError(
            f"predictor returned a detection of class id {odd[0]:g} for image {index}: class ids are whole "
            "numbers from 0 (-1 marks an empty row, as in GluonCV's padding); rows must be "
            "[class_id, score, x0/w, y0/h, x1/w, y1/h], class first (a score first reads as a class id)")
    return array


def check_probabilities(probabilities, index: int = 0) -> np.ndarray:
    """Validate one image's class probabilities and return them as (C,) float64."""
    array = _numbers(probabilities, "class scores", index)
    if array.ndim != 1 or array.size == 0:
        raise PredictorError(
            f"predictor returned class scores of shape {array.shape} for image {index}; "
            "expected (C,) probabilities")
    if not np.all(np.isfinite(array)):
        raise PredictorError(f"predictor returned non-finite class scores for image {index} of a request "
                             "(a masked image: NaN or infinite scores)")
    return array


BOX_REACH = 1.0  # how far past a border (in image sizes) a box may reach before it reads as pixel coordinates


def check_target_boxes(targets: np.ndarray) -> None:
    """Raise PredictorError when a target's box is empty or inverted (x1 <= x0 or y1 <= y0), or
    lies wholly outside the image (x0 >= 1, y0 >= 1, x1 <= 0 or y1 <= 0) or reaches far past it.

    targets: (T, 6) rows [class_id, score, x0/w, y0/h, x1/w, y1/h]. Such a box has no area, so
    no detection ever overlaps it: the target would score 0 on every image, the unmasked one
    included, and its explanation would be all zeros. The usual cause is an endpoint answering
    another box convention ([y0, x0, y1, x1], or [x, y, width, height]). A box outside the image
    covers no pixel: its focus segments and its drawing are nowhere (the usual cause is pixel
    coordinates, [24, 20, 48, 44] on a 64 px image); a box that reaches past a border is kept,
    unless by more than ``BOX_REACH`` image sizes (pixel coordinates again: [0, 0, 30, 40]).
    """
    for row in np.asarray(targets, dtype=np.float64).reshape(-1, 6):
        x0, y0, x1, y1 = row[2:6]
        if x1 <= x0 or y1 <= y0:
            raise PredictorError(
                f"the model's detection of class {row[0]:g} at score {row[1]:.3f} has the box "
                f"[{x0:g}, {y0:g}, {x1:g}, {y1:g}], which has no area ({'x1/w <= x0/w' if x1 <= x0 else 'y1/h <= y0/h'}): "
                "boxes must be [x0/w, y0/h, x1/w, y1/h] with x0 < x1 and y0 < y1; an endpoint that "
                "answers [y0, x0, y1, x1] or [x, y, width, height] needs converting")
        outside = x0 >= 1 or y0 >= 1 or x1 <= 0 or y1 <= 0
        if outside or min(x0, y0) < -BOX_REACH or max(x1, y1) > 1 + BOX_REACH:
            raise PredictorError(
                f"the model's detection of class {row[0]:g} at score {row[1]:.3f} has the box "
                f"[{x0:g}, {y0:g}, {x1:g}, {y1:g}], which "
                + ("lies outside the image" if outside else "reaches more than an image's size past its border")
                + ": boxes must be "
                "[x0/w, y0/h, x1/w, y1/h], fractions of the image's width and height (0..1); an endpoint "
                "that answers pixel coordinates needs dividing by the width and height")


def check_class_count(scores: np.ndarray, expected: int) -> np.ndarray:
    """Raise PredictorError when a classifier's answer to a masked image has a different number
    of class scores than its answer to the image itself (a model swapped mid-run, say); returns
    ``scores``."""
    if len(scores) != expected:
        raise PredictorError(f"the model answered {len(scores)} class scores for a masked image but "
                             f"{expected} for the image itself; was the model changed during the run?")
    return scores


def select_detection_targets(detections: np.ndarray, max_objects: int = 3,
                             probability_threshold: float = 0.5) -> np.ndarray:
    """Top ``max_objects`` detections with score >= ``probability_threshold``.

    detections: (D, 6). Returns (T, 6) float64 sorted by score descending (stable), T <= max_objects.
    """
    detections = np.asarray(detections, dtype=np.float64).reshape(-1, 6)
    kept = detections[(detections[:, 0] >= 0) & (detections[:, 1] >= probability_threshold)]
    order = np.argsort(-kept[:, 1], kind="stable")
    return kept[order[:max_objects]]


def match_scores(targets: np.ndarray, detections: np.ndarray,
                 iou_threshold: float = 0.5) -> np.ndarray:
    """Score of each target on one masked image.

    targets: (T, 6), detections: (D, 6) of the masked image. A target's score is the best
    score among detections of the same class whose IoU with the target box is at least
    ``iou_threshold``, else 0. Returns (T,) float64.
    """
    targets = np.asarray(targets, dtype=np.float64).reshape(-1, 6)
    detections = np.asarray(detections, dtype=np.float64).reshape(-1, 6)
    if len(targets) == 0 or len(detections) == 0:
        return np.zeros(len(targets))
    iou = box_iou(targets[:, 2:], detections[:, 2:])  # (T, D)
    same_class = targets[:, None, 0] == detections[None, :, 0]
    eligible = same_class & (iou >= iou_threshold)
    scores = np.where(eligible, detections[None, :, 1], -np.inf)
    best = scores.max(axis=1)
    return np.where(np.isfinite(best), np.maximum(best, 0.0), 0.0)


def class_name(class_id: int, label_headers: tuple[str, ...] | None) -> str:
    """Human name of a class id: its label header when known, else the id."""
    if label_headers is not None and 0 <= class_id < len(label_headers):
        return label_headers[class_id]
    return str(class_id)


def model_class_names(predict) -> tuple[str, ...] | None:
    """A predictor's or function's own ``class_names`` (a model folder's model.json) as a tuple, None when it
    has none; a numpy array of names too (review 36/37: its truth value was ambiguous). The names are not
    turned into strings: ExplainConfig refuses what is not one (a dict's keys, ints, None: review 38)."""
    names = getattr(predict, "class_names", None)
    if names is None:
        return None
    if isinstance(names, np.ndarray):
        names = names.tolist()
    return tuple(name.item() if isinstance(name, np.generic) else name for name in names) or None


def check_label_headers(label_headers: tuple[str, ...] | None, classes: int | Sequence[str]) -> None:
    """Raise ConfigError (field ``label_headers``) when ``label_headers`` does not name every class once.

    classes: the model's own class names (its model.json) or the number of class scores it
    returns (C of a classifier's answer). None (no names given) passes.
    """
    num_classes = classes if isinstance(classes, int) else len(classes)
    if label_headers is None or len(label_headers) == num_classes:
        return
    model = (f"the model returns {num_classes} class scores" if isinstance(classes, int)
             else f"the model names {num_classes} classes ({_listed(classes)})")
    raise ConfigError(f"label_headers has {len(label_headers)} name(s) ({_listed(label_headers)}) but {model}; "
                      "give one name per class, in class-id order", field="label_headers")


def check_detection_classes(detections: np.ndarray, label_headers: tuple[str, ...] | None,
                            model_names: bool = False) -> None:
    """Raise ConfigError (field ``label_headers``) when a detection's class id has no name in ``label_headers``.

    detections: (D, 6) rows [class_id, score, ...] of one image, at any score. A detection
    endpoint does not say how many classes it has, so its answers are where a list that is too
    short shows: a class id >= len(label_headers), or one no list can name (negative, or not a
    whole number). Rows of class -1 (GluonCV's padding: no detection) are skipped. None (no
    names given: classes are shown by their ids) passes. ``model_names``: the names are the model's
    own (its model.json), not the user's: the error says so, against the field ``model``.
    """
    if label_headers is None:
        return
    class_ids = np.asarray(detections, dtype=np.float64).reshape(-1, 6)[:, 0]
    named = (class_ids >= 0) & (class_ids < len(label_headers)) & (class_ids == np.round(class_ids))
    unnamed = class_ids[~named & (class_ids != -1)]
    if unnamed.size == 0:
        return
    class_id = float(unnamed.max()) if (unnamed >= len(label_headers)).any() else float(unnamed[0])
    names = (f"the model's model.json names {len(label_headers)} class(es)" if model_names
             else f"label_headers has {len(label_headers)} name(s)")
    heading = f"{names} ({_listed(label_headers)}) but the model answered a detection of class id {class_id:g}"
    field = "model" if model_names else "label_headers"
    if class_id >= len(label_headers):
        fix = ("package the model again with one name per class, in class-id order (`clearsight deploy package` "
               "checks them)" if model_names else
               "give one name per class, in class-id order (a detection endpoint does not say how many classes it "
               "has)")
        raise ConfigError(f"{heading}, which needs at least {int(np.floor(class_id)) + 1} names; {fix}", field=field)
    raise ConfigError(f"{heading}, which no name can stand for: class ids are whole numbers from 0 (-1 marks an "
                      "empty row, as in GluonCV's padding)", field=field)


def _listed(names: Sequence[str], shown: int = 5) -> str:
    return ", ".join(names[:shown]) + (", ..." if len(names) > shown else "")


def select_classification_targets(probabilities: np.ndarray,
                                  labels: tuple[str, ...] | None = None,
                                  label_headers: tuple[str, ...] | None = None) -> np.ndarray:
    """Class ids to explain for a classifier.

    probabilities: (C,) of the unmasked image. Without ``labels`` the top class; with
    ``labels`` each name is looked up in ``label_headers`` (or read as an integer class
    id when there are no headers). A class named twice (``circle,0``) is explained once, where
    it first appears, with a warning. Returns (T,) int64. Raises ConfigError for unknown labels
    and for ``label_headers`` that do not name C classes.
    """
    num_classes = len(probabilities)
    check_label_headers(label_headers, num_classes)
    if labels is None:
        return np.array([int(np.argmax(probabilities))], dtype=np.int64)
    class_ids = []
    for label in labels:
        if label_headers is not None and label in label_headers:
            class_ids.append(label_headers.index(label))
            continue
        if label.lstrip("-").isdigit() and 0 <= int(label) < num_classes:
            class_ids.append(int(label))
            continue
        known = (f"one of {', '.join(label_headers)}, or a class id in [0, {num_classes - 1}]"
                 if label_headers is not None else f"a class id in [0, {num_classes - 1}]")
        raise ConfigError(f"labels: {label!r} is not a known class; expected {known}", field="labels")
    unique = list(dict.fromkeys(class_ids))
    if len(unique) < len(class_ids):
        named = {class_id: [label for label, other in zip(labels, class_ids, strict=True) if other == class_id]
                 for class_id in unique}
        twice = "; ".join(f"{', '.join(map(repr, names))} are class {class_id}"
                          for class_id, names in named.items() if len(names) > 1)
        logger.warning("labels name a class more than once (%s): each class is explained once", twice)
    return np.array(unique, dtype=np.int64)
