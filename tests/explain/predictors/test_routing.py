"""Several endpoints: least outstanding work, failover of retriable errors, one shared concurrency budget."""

from __future__ import annotations

import json
import threading
import time

import numpy as np
import pytest
from click.testing import CliRunner

from explain import PredictorError
from explain.cli import main
from explain.errors import EndpointUnavailableError
from explain.predictors import HttpPredictor, MultiPredictor, TransportConfig
from tests.fake_endpoint import FakeEndpoint


class RecordingPredictor:
    """Answers one empty detection per image; records batch sizes; can block or fail."""

    def __init__(self, name, fail=None, gate=None):
        self.name = name
        self.fail = fail
        self.gate = gate
        self.batches = []
        self.entered = threading.Event()
        self.closed = False

    def __call__(self, batch):
        self.batches.append(len(batch))
        self.entered.set()
        if self.gate is not None:
            self.gate.wait(10)
        if self.fail is not None:
            raise self.fail
        return [np.zeros((0, 6), dtype=np.float32) for _ in batch]

    @property
    def stats(self):
        return {"transport": "fake", "endpoint": self.name, "requests": len(self.batches),
                "images": sum(self.batches), "retries": 0, "bytes_sent": 0}

    def close(self):
        self.closed = True


def batch(size):
    return np.zeros((size, 8, 8, 3), dtype=np.uint8)


def test_sequential_calls_alternate_by_images_sent():
    a, b = RecordingPredictor("a"), RecordingPredictor("b")
    router = MultiPredictor([a, b])
    for size in (4, 4, 2, 2, 8):
        assert len(router(batch(size))) == size
    # ties on outstanding work (none) go to whoever was sent fewer images so far
    assert a.batches == [4, 2, 8] and b.batches == [4, 2]
    stats = router.stats
    assert stats["transport"] == "multi" and stats["endpoint"] == "a, b"
    assert stats["images"] == 20 and [item["routed_images"] for item in stats["endpoints"]] == [14, 6]
    router.close()
    assert a.closed and b.closed


def test_a_busy_endpoint_gets_no_new_work_while_another_is_idle():
    gate = threading.Event()
    slow, fast = RecordingPredictor("slow", gate=gate), RecordingPredictor("fast")
    router = MultiPredictor([slow, fast])
    worker = threading.Thread(target=router, args=(batch(16),))
    worker.start()
    assert slow.entered.wait(5)  # 16 images in flight on "slow"
    for _ in range(3):
        router(batch(16))  # "fast" has nothing in flight: it takes all three
    assert fast.batches == [16, 16, 16] and slow.batches == [16]
    gate.set()
    worker.join(5)
    router(batch(1))
    assert slow.batches == [16, 1]  # sent 16 < 48 images: back to "slow" once it is idle


def test_a_failing_endpoint_sends_its_batches_to_the_other():
    down = RecordingPredictor("down", fail=EndpointUnavailableError("endpoint down failed after 3 attempt(s)"))
    up = RecordingPredictor("up")
    router = MultiPredictor([down, up], cooldown=60)
    for _ in range(3):
        assert len(router(batch(2))) == 2
    assert down.batches == [2]  # tried once, then rested for the cooldown
    assert up.batches == [2, 2, 2]
    assert router.stats["failovers"] == 1


def test_a_request_error_is_not_retried_elsewhere():
    bad = RecordingPredictor("bad", fail=PredictorError("rejected the request with HTTP 400: bad shape"))
    other = RecordingPredictor("other")
    router = MultiPredictor([bad, other])
    with pytest.raises(PredictorError, match="HTTP 400"):
        router(batch(1))
    assert other.batches == []


def test_every_endpoint_down_raises_the_last_error():
    router = MultiPredictor([RecordingPredictor("a", fail=EndpointUnavailableError("a down")),
                             RecordingPredictor("b", fail=EndpointUnavailableError("b down"))])
    with pytest.raises(EndpointUnavailableError, match="b down"):
        router(batch(1))


def test_http_endpoint_answering_503_fails_over_to_the_healthy_one():
    with FakeEndpoint("detection") as broken, FakeEndpoint("detection") as healthy:
        broken.fail_status = 503
        options = dict(max_retries=1, backoff_base=0.0, backoff_max=0.0)
        router = MultiPredictor([HttpPredictor(broken.url, "detection", TransportConfig(**options)),
                                 HttpPredictor(healthy.url, "detection", TransportConfig(**options))])
        images = np.random.default_rng(0).integers(0, 256, (3, 16, 16, 3), dtype=np.uint8)
        expected = HttpPredictor(healthy.url, "detection")(images)
        results = router(images)
        assert len(broken.requests) == 2  # first try + one retry
        for got, want in zip(results, expected, strict=True):
            np.testing.assert_array_equal(got, want)
        router.close()


def test_concurrency_is_one_budget_across_callers():
    with FakeEndpoint("detection") as endpoint:
        endpoint.hang_seconds = 0.05
        in_flight, peak, lock = [0], [0], threading.Lock()
        predictor = HttpPredictor(endpoint.url, "detection", TransportConfig(concurrency=2,
                                                                             max_payload_bytes=4096))
        original = predictor.connection.send

        def counting_invoke(body):
            with lock:
                in_flight[0] += 1
                peak[0] = max(peak[0], in_flight[0])
            try:
                return original(body)
            finally:
                with lock:
                    in_flight[0] -= 1

        predictor.connection.send = counting_invoke
        images = np.zeros((6, 16, 16, 3), dtype=np.uint8)  # 4 images per request -> 2 requests per call
        threads = [threading.Thread(target=predictor, args=(images,)) for _ in range(4)]
        started = time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(10)
        assert time.perf_counter() - started < 10
        assert len(endpoint.requests) == 8 and peak[0] == 2  # 4 callers, never more than 2 requests


def test_cli_spreads_over_repeated_endpoints(tmp_path):
    from PIL import Image

    folder = tmp_path / "images"
    folder.mkdir()
    for index in range(3):
        image = np.full((40, 48, 3), 220, dtype=np.uint8)
        image[:, : 10 + index * 5, 1] = 40
        Image.fromarray(image).save(folder / f"scene{index}.png")
    with FakeEndpoint("detection") as first, FakeEndpoint("detection") as second:
        result = CliRunner().invoke(main, [
            "--endpoint", first.url, "--endpoint", second.url, "--task", "detection", "--out",
            str(tmp_path / "out"), "--num-samples", "16", "--num-segments", "4", "--quiet",
            "--images-in-flight", "3", str(folder)], prog_name="python -m explain")
        counts = len(first.requests), len(second.requests)
    assert result.exit_code == 0, result.output
    assert min(counts) > 0
    analysis = json.loads((tmp_path / "out" / "analysis.json").read_text())
    assert analysis["predictor"]["transport"] == "multi"
    assert analysis["predictor"]["requests"] == sum(counts)
    assert f"multi {first.url}/invocations, {second.url}/invocations" in result.stdout


def test_summed_counters_of_several_endpoints_are_every_counter_of_one():
    """One definition of the counters: the router's totals add up each of them (the largest request)."""
    from dataclasses import fields

    from explain.predictors import PredictorStats

    with FakeEndpoint("detection") as first, FakeEndpoint("detection") as second:
        router = MultiPredictor([HttpPredictor(first.url, "detection", TransportConfig(
                                                                                       max_payload_bytes=4096)),
                                 HttpPredictor(second.url, "detection", TransportConfig(
                                                                                        max_payload_bytes=8192))])
        for size in (8, 12, 6):  # 16x16 images: 5 per request to the first, 10 to the second
            router(np.zeros((size, 16, 16, 3), dtype=np.uint8))
        stats = router.stats
        router.close()
    names = [item.name for item in fields(PredictorStats)]
    assert {name: stats[name] for name in names} == PredictorStats.total(
        PredictorStats.from_dict(item) for item in stats["endpoints"]).to_dict()
    assert stats["images"] == 26 and stats["requests"] == sum(item["requests"] for item in stats["endpoints"])
    assert stats["max_request_bytes"] == max(item["max_request_bytes"] for item in stats["endpoints"]) > 4096
    assert stats["request_seconds"] > 0


def test_predictor_stats_add_up():
    from explain.predictors import PredictorStats

    first = PredictorStats(requests=2, images=3, retries=1, bytes_sent=10, max_request_bytes=7, request_seconds=0.5)
    second = PredictorStats(requests=1, images=1, failed_requests=1, bytes_received=4, max_request_bytes=9,
                            request_seconds=0.25)
    assert first + second == PredictorStats(requests=3, images=4, retries=1, failed_requests=1, bytes_sent=10,
                                            bytes_received=4, max_request_bytes=9, request_seconds=0.75)
    assert PredictorStats.total([]) == PredictorStats()
    assert PredictorStats.from_dict({"requests": 2, "transport": "http"}) == PredictorStats(requests=2)
