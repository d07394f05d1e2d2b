"""Detection matching and target selection (same class, IoU threshold, best score, else 0)."""

import numpy as np
import pytest

from explain.detection import (
    box_iou,
    check_detection_classes,
    check_label_headers,
    match_scores,
    select_classification_targets,
    select_detection_targets,
)
from explain.errors import ConfigError

TARGET = np.array([[2, 0.9, 0.1, 0.1, 0.5, 0.5]])


@pytest.mark.parametrize("detections, expected", [
    pytest.param([[2, 0.7, 0.1, 0.1, 0.5, 0.5]], 0.7, id="same class, same box"),
    pytest.param([[2, 0.6, 0.12, 0.1, 0.5, 0.52]], 0.6, id="same class, IoU above"),
    pytest.param([[2, 0.8, 0.3, 0.3, 0.7, 0.7]], 0.0, id="same class, IoU below"),
    pytest.param([[1, 0.8, 0.1, 0.1, 0.5, 0.5]], 0.0, id="different class"),
    pytest.param(np.zeros((0, 6)), 0.0, id="no detections"),
    pytest.param([[2, 0.3, 0.1, 0.1, 0.5, 0.5], [2, 0.5, 0.11, 0.1, 0.5, 0.5],
                  [1, 0.99, 0.1, 0.1, 0.5, 0.5]], 0.5, id="best matching score"),
    pytest.param([[2, 0.8, 0.1, 0.1, 0.5, 0.3]], 0.8, id="IoU exactly at threshold"),
])
def test_matching_table(detections, expected):
    scores = match_scores(TARGET, np.asarray(detections, dtype=np.float32), iou_threshold=0.5)
    assert scores.shape == (1,)
    assert scores[0] == pytest.approx(expected, abs=1e-6)


def test_several_targets_matched_at_once():
    targets = np.array([[0, 0.9, 0, 0, 0.5, 0.5], [1, 0.8, 0.5, 0.5, 1, 1]])
    detections = np.array([[1, 0.4, 0.5, 0.5, 1, 1], [0, 0.7, 0, 0, 0.5, 0.5]])
    np.testing.assert_allclose(match_scores(targets, detections, 0.5), [0.7, 0.4])


def test_box_iou_vectorised():
    boxes = np.array([[0, 0, 2, 2], [1, 1, 3, 3], [5, 5, 5, 5]], dtype=float)
    iou = box_iou(boxes, boxes)
    assert iou.shape == (3, 3)
    np.testing.assert_allclose(np.diag(iou), [1, 1, 0])
    assert iou[0, 1] == pytest.approx(1 / 7)


def test_targets_are_top_objects_above_threshold():
    detections = np.array([[0, 0.4, 0, 0, 1, 1], [1, 0.95, 0, 0, 1, 1], [2, 0.6, 0, 0, 1, 1],
                           [3, 0.8, 0, 0, 1, 1], [-1, 0.99, 0, 0, 1, 1]])
    targets = select_detection_targets(detections, max_objects=2, probability_threshold=0.5)
    np.testing.assert_array_equal(targets[:, 0], [1, 3])
    assert len(select_detection_targets(detections, 3, 0.99)) == 0
    assert len(select_detection_targets(np.zeros((0, 6)), 3, 0.5)) == 0


def test_classification_targets():
    probabilities = np.array([0.1, 0.7, 0.2])
    assert select_classification_targets(probabilities).tolist() == [1]
    headers = ("cat", "dog", "bird")
    assert select_classification_targets(probabilities, ("bird", "cat"), headers).tolist() == [2, 0]
    assert select_classification_targets(probabilities, ("2",)).tolist() == [2]
    with pytest.raises(ConfigError, match=r"labels: 'fish' is not a known class; expected one of cat, dog, bird, or a class id in \[0, 2\]"):
        select_classification_targets(probabilities, ("fish",), headers)
    with pytest.raises(ConfigError, match=r"expected a class id in \[0, 2\]"):
        select_classification_targets(probabilities, ("5",))


def test_a_class_named_twice_is_explained_once(caplog):
    """Review 6: --labels circle,0 explained class 0 twice (two identical targets in analysis.json)."""
    probabilities = np.array([0.1, 0.7, 0.2])
    headers = ("circle", "square", "triangle")
    with caplog.at_level("WARNING", logger="explain.detection"):
        targets = select_classification_targets(probabilities, ("circle", "2", "0", "triangle"), headers)
    assert targets.tolist() == [0, 2]
    assert ("labels name a class more than once ('circle', '0' are class 0; '2', 'triangle' are class 2): "
            "each class is explained once") in caplog.text


@pytest.mark.parametrize("label_headers, classes, message", [
    (("cat", "dog"), 3, "label_headers has 2 name(s) (cat, dog) but the model returns 3 class scores; give one "
                        "name per class, in class-id order"),
    (("cat", "dog", "bird", "fish"), 3, "label_headers has 4 name(s) (cat, dog, bird, fish) but the model "
                                        "returns 3 class scores"),
    (("labels.txt",), ("circle", "square", "triangle"),
     "label_headers has 1 name(s) (labels.txt) but the model names 3 classes (circle, square, triangle); give "
     "one name per class, in class-id order"),
    (tuple("abcdefg"), tuple("abcdef"), "label_headers has 7 name(s) (a, b, c, d, e, ...) but the model names 6 "
                                        "classes (a, b, c, d, e, ...)"),
])
def test_label_headers_that_do_not_name_every_class_are_refused(label_headers, classes, message):
    with pytest.raises(ConfigError) as raised:
        check_label_headers(label_headers, classes)
    assert str(raised.value).startswith(message) and raised.value.field == "label_headers"


def test_a_classifiers_answer_checks_the_label_headers_with_or_without_labels():
    probabilities = np.array([0.1, 0.7, 0.2])
    for labels in (None, ("dog",)):
        with pytest.raises(ConfigError, match=r"label_headers has 2 name\(s\) \(cat, dog\) but the model returns 3"):
            select_classification_targets(probabilities, labels, ("cat", "dog"))
    check_label_headers(None, 3)  # no names: nothing to check
    check_label_headers(("cat", "dog", "bird"), ("cat", "dog", "bird"))


def rows(*class_ids):
    """(D, 6) detections of the given class ids, scores 0.9, 0.8, ..., one box."""
    return np.array([[class_id, 0.9 - 0.1 * index, 0.1, 0.1, 0.5, 0.5] for index, class_id in enumerate(class_ids)])


@pytest.mark.parametrize("class_ids, message", [
    ((0, 1, 2), "label_headers has 2 name(s) (cat, dog) but the model answered a detection of class id 2, which "
                "needs at least 3 names; give one name per class, in class-id order (a detection endpoint does not "
                "say how many classes it has)"),
    ((7, 0, 3), "label_headers has 2 name(s) (cat, dog) but the model answered a detection of class id 7, which "
                "needs at least 8 names; give one name per class, in class-id order (a detection endpoint does not "
                "say how many classes it has)"),
    ((0, -2), "label_headers has 2 name(s) (cat, dog) but the model answered a detection of class id -2, which no "
              "name can stand for: class ids are whole numbers from 0 (-1 marks an empty row, as in GluonCV's "
              "padding)"),
    ((1.5,), "label_headers has 2 name(s) (cat, dog) but the model answered a detection of class id 1.5, which no "
             "name can stand for: class ids are whole numbers from 0 (-1 marks an empty row, as in GluonCV's "
             "padding)"),
])
def test_a_detection_class_id_without_a_name_is_refused(class_ids, message):
    with pytest.raises(ConfigError) as raised:
        check_detection_classes(rows(*class_ids), ("cat", "dog"))
    assert str(raised.value) == message and raised.value.field == "label_headers"


@pytest.mark.parametrize("class_ids, message", [
    ((0, 1, 2), "the model's model.json names 2 class(es) (cat, dog) but the model answered a detection of class id "
                "2, which needs at least 3 names; package the model again with one name per class, in class-id order "
                "(`clearsight deploy package` checks them)"),
    ((0, -2), "the model's model.json names 2 class(es) (cat, dog) but the model answered a detection of class id "
              "-2, which no name can stand for: class ids are whole numbers from 0 (-1 marks an empty row, as in "
              "GluonCV's padding)"),
])
def test_a_detection_class_id_the_models_own_names_miss_blames_the_model(class_ids, message):
    """The names came from the model's model.json, not from label_headers: the error said --label-headers."""
    with pytest.raises(ConfigError) as raised:
        check_detection_classes(rows(*class_ids), ("cat", "dog"), model_names=True)
    assert str(raised.value) == message and raised.value.field == "model"


def test_detection_class_ids_with_names_padding_and_no_names_pass():
    check_detection_classes(rows(0, 1, -1, 1.0), ("cat", "dog"))  # -1: GluonCV's padding rows
    check_detection_classes(np.zeros((0, 6)), ("cat", "dog"))
    check_detection_classes(rows(5, -2), None)  # no names given: classes are shown by their ids
