"""Model calls: one request's worth per call with calls in flight, in order, checked and counted."""

import threading
import time

import numpy as np
import pytest

from explain import ExplainConfig, PredictorError, explain_image
from explain.model_calls import ModelCalls, call_plan
from explain.predictors import HttpPredictor, MultiPredictor, TransportConfig
from tests.explain.test_explainer import red_square_detector, red_square_scene


class PlannedPredictor:
    """Wraps a predict function like a remote adapter: a request plan, calls from many threads.

    Records every call's size and the most calls that were running at once; ``fail_on``
    makes that call (0-based) raise.
    """

    def __init__(self, predict, per_request, in_flight, delay=0.01, fail_on=None):
        self.predict = predict
        self.plan = (per_request, in_flight)
        self.delay = delay
        self.fail_on = fail_on
        self.sizes = []
        self.running = 0
        self.most_running = 0
        self.lock = threading.Lock()

    def request_plan(self, image_shape):
        assert len(image_shape) == 3
        return self.plan

    def __call__(self, batch):
        with self.lock:
            number = len(self.sizes)
            self.sizes.append(len(batch))
            self.running += 1
            self.most_running = max(self.most_running, self.running)
        try:
            time.sleep(self.delay)
            if number == self.fail_on:
                raise PredictorError(f"call {number} failed")
            return self.predict(batch)
        finally:
            with self.lock:
                self.running -= 1


def plain(batch):
    return red_square_detector(batch)


@pytest.mark.parametrize("predict, batch_size, expected", [
    (plain, 128, (128, 1)),
    (PlannedPredictor(plain, 20, 4), 128, (20, 4)),
    (PlannedPredictor(plain, 20, 4), 8, (8, 4)),
    (PlannedPredictor(plain, 0, 0), 128, (1, 1)),
])
def test_call_plan(predict, batch_size, expected):
    assert call_plan(predict, (64, 64, 3), batch_size) == expected


def test_plan_of_none_means_one_call_at_a_time():
    class NoPlan:
        def request_plan(self, image_shape):
            return None

        def __call__(self, batch):
            return plain(batch)

    assert call_plan(NoPlan(), (64, 64, 3), 32) == (32, 1)


def test_pipelined_values_equal_sequential_values_and_calls_stay_in_flight():
    image = red_square_scene()
    config = ExplainConfig(num_samples=200, num_segments=12)
    sequential = explain_image(image, red_square_detector, config)
    planned = PlannedPredictor(red_square_detector, per_request=9, in_flight=3)
    progress = []
    pipelined = explain_image(image, planned, config, progress=progress.append)
    np.testing.assert_array_equal(pipelined.shap_values, sequential.shap_values)
    np.testing.assert_array_equal(pipelined.standard_errors, sequential.standard_errors)
    assert pipelined.model_calls == sequential.model_calls == sum(planned.sizes) == sum(progress)
    assert max(planned.sizes) == 9
    assert planned.most_running == 3  # never more than the plan's calls in flight, and it fills them


def test_a_failing_call_stops_the_run_with_its_error():
    image = red_square_scene()
    planned = PlannedPredictor(red_square_detector, per_request=5, in_flight=2, fail_on=3)
    with pytest.raises(PredictorError, match="call 3 failed"):
        explain_image(image, planned, ExplainConfig(num_samples=200, num_segments=12))
    # the calls already submitted may finish; nothing is sent after the failure is seen
    assert len(planned.sizes) <= 3 + 2 + 1 + 1


def test_wrong_number_of_answers_is_a_predictor_error():
    calls = ModelCalls(PlannedPredictor(lambda batch: plain(batch)[:-1], 4, 2), 128, "detection", None)
    image = red_square_scene()
    with pytest.raises(PredictorError, match="returned 3 results for a batch of 4 images"):
        calls.scores(image, image, np.zeros(image.shape[:2], int), np.ones((8, 1), bool),
                     lambda output: output[:1, 1])


def test_multi_predictor_plan_is_the_smallest_request_and_the_sum_of_calls_in_flight():
    first, second = PlannedPredictor(plain, 20, 4), PlannedPredictor(plain, 12, 2)
    assert MultiPredictor([first, second]).request_plan((64, 64, 3)) == (12, 6)
    assert MultiPredictor([first, plain]).request_plan((64, 64, 3)) is None


def test_http_predictor_plan_packs_the_payload_budget():
    predictor = HttpPredictor("http://127.0.0.1:1", "detection", TransportConfig(
                                                                                 max_payload_bytes=64 * 64 * 3 * 5 + 200,
                                                                                 concurrency=3))
    assert predictor.request_plan((64, 64, 3)) == (5, 3)
    png = HttpPredictor("http://127.0.0.1:1", "detection", TransportConfig(content_type="image/png",
                                                                           concurrency=2))
    assert png.request_plan((64, 64, 3)) == (1, 2)


def test_values_through_a_real_endpoint_do_not_depend_on_concurrency(detector_endpoint):
    image = np.random.default_rng(5).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    config = ExplainConfig(num_samples=60, num_segments=8, probability_threshold=0.0, max_objects=2)
    results = []
    for concurrency in (1, 4):
        with HttpPredictor(detector_endpoint.url, "detection", TransportConfig(concurrency=concurrency,
                                                                               max_payload_bytes=48 * 64 * 3 * 7 + 200)) as predictor:
            results.append(explain_image(image, predictor, config))
    assert results[0].num_targets > 0
    np.testing.assert_array_equal(results[0].shap_values, results[1].shap_values)
    assert results[0].model_calls == results[1].model_calls
