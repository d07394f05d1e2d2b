"""Answers in the formats Clarify reads: SageMaker's built-in Object Detection format, JMESPath scores."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from explain.errors import ConfigError, PredictorError
from explain.predictors import HttpPredictor, TransportConfig, decode_response
from tests.fake_endpoint import FakeEndpoint, assert_same_predictions, fake_model, random_batch

ROW_A = [0.0, 0.9, 0.1, 0.1, 0.5, 0.5]
ROW_B = [2.0, 0.4, 0.2, 0.3, 0.6, 0.8]


def as_json(payload) -> bytes:
    return json.dumps(payload).encode()


# (answer, task, images in the request, probability path) -> the arrays per image
KNOWN_ANSWERS = [
    # SageMaker's built-in Object Detection algorithm: one image, two detections (was: two images)
    ({"prediction": [ROW_A, ROW_B]}, "detection", 1, None, [[ROW_A, ROW_B]]),
    ({"prediction": [ROW_A, ROW_B]}, "detection", 1, "prediction", [[ROW_A, ROW_B]]),
    ({"prediction": [ROW_A]}, "detection", 1, None, [[ROW_A]]),
    ({"prediction": []}, "detection", 1, None, [np.zeros((0, 6))]),
    # Clarify's other documented form: a bare array of one image's rows
    ([ROW_A, ROW_B], "detection", 1, None, [[ROW_A, ROW_B]]),
    # the wire contract: a list of rows per image
    ([[ROW_A, ROW_B]], "detection", 1, None, [[ROW_A, ROW_B]]),
    ([[ROW_A], [], [ROW_B, ROW_A]], "detection", 3, None, [[ROW_A], np.zeros((0, 6)), [ROW_B, ROW_A]]),
    ([[]], "detection", 1, None, [np.zeros((0, 6))]),
    # classification: one image's scores, a list per image, and JMESPath into JSON documents
    ([0.1, 0.6, 0.3], "classification", 1, None, [[0.1, 0.6, 0.3]]),
    ([[0.1, 0.9], [0.7, 0.3]], "classification", 2, None, [[0.1, 0.9], [0.7, 0.3]]),
    ({"prediction": [0.1, 0.6, 0.3]}, "classification", 1, None, [[0.1, 0.6, 0.3]]),
    ({"labels": ["cat", "dog"], "probabilities": [0.35, 0.65]}, "classification", 1, "probabilities",
     [[0.35, 0.65]]),
    ({"predictions": [{"scores": [0.2, 0.8]}, {"scores": [0.6, 0.4]}]}, "classification", 2,
     "predictions[*].scores", [[0.2, 0.8], [0.6, 0.4]]),
    ({"out": {"detections": [ROW_B]}}, "detection", 1, "out.detections", [[ROW_B]]),
]


@pytest.mark.parametrize("answer, task, num_images, probability, expected", KNOWN_ANSWERS)
def test_known_answers_decode_per_image(answer, task, num_images, probability, expected):
    results = decode_response(as_json(answer), "application/json", task, num_images, probability)
    assert len(results) == len(expected)
    for result, want in zip(results, expected, strict=True):
        assert result.dtype == np.float32
        np.testing.assert_allclose(result, np.asarray(want, dtype=np.float32).reshape(result.shape), atol=1e-7)
        assert result.shape == np.asarray(want).shape or (result.shape == (0, 6) and np.size(want) == 0)


BAD_ANSWERS = [
    ({"scores": [0.1]}, "classification", 1, "probabilities",
     "probability 'probabilities' finds nothing in {\"scores\": [0.1]}; set it to the JMESPath of the scores"),
    ({"prediction": [[[0, 0.9, 0.1, 0.1, 0.5]]]}, "detection", 1, None,
     "entry 0 has rows of 5 numbers; detection rows have 6"),
    ({"prediction": "cat"}, "classification", 1, None, "the answer is \"cat\": expected a list"),
    (b"not json", "detection", 1, None, "not valid JSON"),
    (b"[" * 100_000 + b"]" * 100_000, "classification", 1, None,  # review 17, F13: not a RecursionError
     "the answer is nested too deeply to be scores or detection rows (lists of numbers, a list per image): [[[["),
    # review 32: a classifier behind a detection run, an object of named fields without --probability
    ([0.1, 0.7, 0.2], "detection", 1, None,
     "response entry 0 is float, expected a list; lists of numbers that are not 6-number detection rows: a "
     "classifier's scores? (use --task classification; model_type IMAGE_CLASSIFICATION in a Clarify config)"),
    ({"probabilities": [0.1, 0.9], "labels": ["a", "b"]}, "classification", 1, None,
     "got dict; an object: set --probability (predictor.probability in a Clarify config) to the JMESPath of the "
     "scores among its fields (probabilities, labels)"),
]


@pytest.mark.parametrize("answer, task, num_images, probability, message", BAD_ANSWERS)
def test_unusable_answers_say_what_was_found(answer, task, num_images, probability, message):
    body = answer if isinstance(answer, bytes) else as_json(answer)
    with pytest.raises(ValueError, match=re.escape(message)):
        decode_response(body, "application/json", task, num_images, probability)


def test_a_malformed_probability_path_is_a_config_error():
    with pytest.raises(ConfigError, match=r"probability 'predictions\[' is not a valid JMESPath expression"):
        TransportConfig(probability="predictions[")


def test_probability_needs_a_json_answer():
    with pytest.raises(ValueError, match="applies to JSON answers, the endpoint answered application/x-npy"):
        decode_response(b"", "application/x-npy", "detection", 1, "prediction")


# --------------------------------------------------------------------------------------
# Through the real client against a local endpoint answering as the built-in algorithm
# --------------------------------------------------------------------------------------

@pytest.mark.parametrize("probability", [None, "prediction"])
def test_builtin_object_detection_endpoint_through_the_http_client(probability):
    batch = random_batch(5, seed=3)
    with FakeEndpoint("detection") as endpoint:
        endpoint.answer_format = "object-detection"
        predictor = HttpPredictor(endpoint.url, "detection", TransportConfig(
            content_type="image/png", probability=probability, concurrency=2))
        results = predictor(batch)
        requests_seen = len(endpoint.requests)
    assert_same_predictions(results, fake_model(batch, "detection"))
    assert max(len(result) for result in results) >= 2  # images with several boxes: rows, not images
    assert requests_seen == 5  # PNG: one image per request, as the built-in algorithm takes them


def test_a_batch_to_the_builtin_format_is_refused_with_the_endpoint_message():
    with FakeEndpoint("detection") as endpoint:
        endpoint.answer_format = "object-detection"
        predictor = HttpPredictor(endpoint.url, "detection", TransportConfig(max_retries=0))
        with pytest.raises(PredictorError, match="rejected the request with HTTP 400: one image per request, got 4"):
            predictor(random_batch(4))


def test_target_model_and_custom_attributes_reach_the_endpoint():
    with FakeEndpoint("classification") as endpoint:
        predictor = HttpPredictor(endpoint.url, "classification", TransportConfig(
            target_model="model-b.tar.gz", custom_attributes="trace=1"))
        predictor(random_batch(2))
        seen = {(request["target_model"], request["custom_attributes"]) for request in endpoint.requests}
    assert seen == {("model-b.tar.gz", "trace=1")}


@pytest.mark.parametrize("options, message", [
    ({"target_model": ""}, "target_model must be printable text of 1 to 1024 characters, got ''"),
    ({"custom_attributes": "a\nb"}, "custom_attributes must be printable text of 1 to 1024 characters"),
    ({"target_model": "m" * 1025}, "target_model must be printable text of 1 to 1024 characters"),
])
def test_header_settings_are_checked(options, message):
    with pytest.raises(ConfigError, match=message):
        TransportConfig(**options)


@pytest.mark.parametrize("results, task, message", [
    # review 17, F13: an empty answer is empty, not a detection model's
    ([np.zeros((0, 6), np.float32)], "classification",
     "endpoint E answered an empty list where class probabilities (C,) were expected; a classifier answers one "
     "score per class for each image"),
    ([np.zeros(0, np.float32)], "classification", "endpoint E answered an empty list where class probabilities"),
    ([np.zeros((2, 6), np.float32)], "classification",
     "endpoint E answered an array of shape (2, 6) where class probabilities (C,) were expected; is this a "
     "detection model? (use --task detection; task=\"detection\" from Python)"),
    ([np.zeros(3, np.float32)], "detection",
     "endpoint E answered an array of shape (3,) where detection rows (D, 6) were expected; is this a "
     "classification model? (use --task classification; task=\"classification\" from Python)"),
])
def test_answers_of_the_wrong_shape_say_what_was_found(results, task, message):
    from explain.predictors.planning import check_results

    with pytest.raises(PredictorError, match=re.escape(message)):
        check_results(results, 1, task, "endpoint E")
