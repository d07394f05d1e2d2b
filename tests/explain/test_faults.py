"""Endpoint faults delay an explanation but never change its values: 503 bursts and a worker killed mid-run."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from explain.config import ExplainConfig
from explain.explainer import Explanation, explain_image
from explain.predictors import HttpPredictor, TransportConfig
from tests.conftest import ServeProcess
from tests.fake_endpoint import FakeEndpoint

CONFIG = ExplainConfig(task="detection", num_samples=200, seed=3)
# 8 images of 32x32 per request (npy body 24,704 bytes), so one explanation takes ~30 requests
FAKE_PAYLOAD_BYTES = 25_000


class BurstEndpoint(FakeEndpoint):
    """The fake detection endpoint, answering 503 to the requests that arrive at ``unavailable`` positions."""

    def __init__(self, unavailable: range) -> None:
        super().__init__("detection")
        self.unavailable = unavailable
        self.arrivals = 0
        self.refused = 0

    def _handle(self, handler) -> None:
        with self.lock:
            position = self.arrivals
            self.arrivals += 1
            refuse = position in self.unavailable
            self.refused += refuse
        if refuse:
            handler.rfile.read(int(handler.headers.get("Content-Length", 0)))
            return self._error(handler, 503, "No worker is available to serve request")
        return super()._handle(handler)


def bright_image(seed: int = 0, side: int = 32) -> np.ndarray:
    """(side, side, 3) uint8 whose channel means (~178) give the fake detector three targets above 0.5."""
    return np.random.default_rng(seed).integers(100, 256, (side, side, 3), dtype=np.uint8)


def assert_same_explanation(actual: Explanation, expected: Explanation) -> None:
    assert actual.model_calls == expected.model_calls
    np.testing.assert_array_equal(actual.segments, expected.segments)
    np.testing.assert_array_equal(actual.labels, expected.labels)
    np.testing.assert_array_equal(actual.shap_values, expected.shap_values)
    np.testing.assert_array_equal(actual.standard_errors, expected.standard_errors)
    np.testing.assert_array_equal(actual.base_values, expected.base_values)
    np.testing.assert_array_equal(actual.predictions, expected.predictions)


def fake_predictor(url: str, max_retries: int = 5) -> HttpPredictor:
    return HttpPredictor(url, "detection", TransportConfig(max_payload_bytes=FAKE_PAYLOAD_BYTES,
                                                           concurrency=4, max_retries=max_retries,
                                                           timeout=10.0, backoff_base=0.001,
                                                           backoff_max=0.01))


@pytest.fixture(scope="module")
def undisturbed_fake_run() -> tuple[Explanation, int]:
    """The explanation of ``bright_image()`` through a fault-free fake endpoint, and its request count."""
    with FakeEndpoint("detection") as endpoint, fake_predictor(endpoint.url) as predictor:
        explanation = explain_image(bright_image(), predictor, CONFIG)
        assert predictor.stats["retries"] == 0
        return explanation, len(endpoint.requests)


def test_the_undisturbed_run_explains_three_targets_over_many_requests(undisturbed_fake_run):
    explanation, requests = undisturbed_fake_run
    assert explanation.num_targets == 3
    assert requests >= 25
    assert np.abs(explanation.shap_values).max() > 1e-3  # masking changes the fake scores


def test_503_for_the_first_requests_delays_but_does_not_change_the_values(undisturbed_fake_run):
    expected, requests = undisturbed_fake_run
    with FakeEndpoint("detection") as endpoint, fake_predictor(endpoint.url, max_retries=6) as predictor:
        endpoint.fail_first = 6  # the unmasked image's request is refused six times in a row
        explanation = explain_image(bright_image(), predictor, CONFIG)
        assert predictor.stats["retries"] == 6
        assert predictor.stats["failed_requests"] == 6
        assert len(endpoint.requests) == requests + 6
    assert_same_explanation(explanation, expected)


@pytest.mark.parametrize("burst", [range(10, 22), range(3, 4), range(20, 21)])
def test_a_burst_of_503_mid_run_delays_but_does_not_change_the_values(undisturbed_fake_run, burst):
    expected, requests = undisturbed_fake_run
    # one request can meet at most len(burst) refusals, so len(burst) retries always suffice
    with BurstEndpoint(burst) as endpoint, fake_predictor(endpoint.url, max_retries=len(burst)) as predictor:
        explanation = explain_image(bright_image(), predictor, CONFIG)
        assert endpoint.refused == len(burst)
        assert predictor.stats["retries"] == len(burst)
        assert endpoint.arrivals == requests + len(burst)
    assert_same_explanation(explanation, expected)


# --------------------------------------------------------------------------------------
# The real serving stack: kill the MMS worker that runs inference while an explanation runs
# --------------------------------------------------------------------------------------

def _inference_workers(server: ServeProcess) -> list:
    """The MMS Python processes that run the model.

    MMS starts ``model_service_worker.py`` as a listener on a Unix socket; each connection
    of the Java frontend is served by a forked child of it, which loads and runs the model.
    Killing that child is a worker crash MMS recovers from (it reconnects and the listener
    forks a fresh one). Killing the listener itself is not: multi-model-server 1.1.11 only
    retries connecting to its socket, with growing delays, and never starts a new one.
    """
    import psutil

    workers = [process for process in psutil.Process(server.process.pid).children(recursive=True)
               if any("model_service_worker" in part for part in process.cmdline())]
    listeners = {process.pid for process in workers}
    return [process for process in workers if process.ppid() in listeners]


def _http_predictor(url: str) -> HttpPredictor:
    # one 48x48 image per request (6,912 + 128 bytes), so the run takes ~300 requests
    return HttpPredictor(url, "detection", TransportConfig(max_payload_bytes=7_100, concurrency=2,
                                                           max_retries=8, timeout=20.0, backoff_base=0.2,
                                                           backoff_max=2.0))


@pytest.fixture(scope="module")
def own_detector_endpoint(tiny_detector_archive):
    """A local endpoint of our own (its worker gets killed), serving the tiny detector."""
    server = ServeProcess(tiny_detector_archive, None)
    yield server
    server.stop()


def test_a_worker_killed_mid_run_delays_but_does_not_change_the_values(own_detector_endpoint):
    image = np.random.default_rng(5).integers(0, 256, (48, 48, 3), dtype=np.uint8)
    config = ExplainConfig(task="detection", num_samples=300, seed=1)
    started = time.monotonic()
    with _http_predictor(own_detector_endpoint.url) as predictor:
        expected = explain_image(image, predictor, config)
        total_requests = predictor.stats["requests"]
    # a hang guard, not a speed test: the same run undisturbed, three times over, plus MMS's restart
    allowed = 3 * (time.monotonic() - started) + 30
    assert expected.num_targets >= 1 and expected.model_calls == total_requests

    (worker,) = _inference_workers(own_detector_endpoint)
    outcome = {}
    with _http_predictor(own_detector_endpoint.url) as predictor:
        def run() -> None:
            try:
                outcome["explanation"] = explain_image(image, predictor, config)
            except BaseException as error:  # reported by the assertion below
                outcome["error"] = error

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        deadline = time.monotonic() + 30
        while predictor.stats["requests"] < total_requests // 5 and time.monotonic() < deadline:
            time.sleep(0.005)
        requests_at_kill = predictor.stats["requests"]
        worker.kill()
        thread.join(timeout=allowed)
        assert not thread.is_alive(), f"the explanation did not finish within {allowed:.0f} s of the worker's death"
        stats = predictor.stats
    assert "error" not in outcome, f"the explanation failed: {outcome.get('error')!r}"
    assert total_requests // 5 <= requests_at_kill < total_requests  # killed mid-run
    (replacement,) = _inference_workers(own_detector_endpoint)
    assert replacement.pid != worker.pid
    assert stats["images"] == total_requests and stats["requests"] == total_requests + stats["retries"]
    assert_same_explanation(outcome["explanation"], expected)
