"""A fake model and a threaded HTTP server on 127.0.0.1 that speaks the wire contract (shared test helpers)."""

from __future__ import annotations

import io
import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np

_BOXES = np.array([[0.1, 0.1, 0.5, 0.5], [0.4, 0.4, 0.9, 0.9], [0.2, 0.3, 0.6, 0.8]], dtype=np.float32)


def fake_detections(image: np.ndarray, score_threshold: float = 0.1, top_k: int = 100) -> np.ndarray:
    """(H, W, 3) uint8 -> (D, 6) float32: one box per channel scored by the channel's mean / 255."""
    scores = image.reshape(-1, 3).mean(axis=0).astype(np.float32) / 255.0
    rows = np.concatenate([np.arange(3, dtype=np.float32)[:, None], scores[:, None], _BOXES], axis=1)
    rows = rows[rows[:, 1] >= score_threshold]
    rows = rows[np.argsort(-rows[:, 1], kind="stable")][:top_k]
    return rows.astype(np.float32)


def fake_probabilities(image: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 -> (4,) float32 softmax over the channel means and a constant class."""
    logits = np.append(image.reshape(-1, 3).mean(axis=0) / 64.0, 1.0)
    exp = np.exp(logits - logits.max())
    return (exp / exp.sum()).astype(np.float32)


def fake_model(batch: np.ndarray, task: str) -> list[np.ndarray]:
    """(N, H, W, 3) uint8 -> what the fake endpoint answers per image."""
    if task == "detection":
        return [fake_detections(image) for image in batch]
    return [fake_probabilities(image) for image in batch]


class _QuietServer(ThreadingHTTPServer):
    """A client that went away mid-request (a stopped run, a killed worker) is no error worth a traceback."""

    def handle_error(self, request, client_address) -> None:
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class FakeEndpoint:
    """A threaded HTTP server on 127.0.0.1 answering POST /invocations with the fake model.

    Behaviour knobs: ``fail_first`` (answer 503 to that many requests), ``fail_status`` and
    ``fail_message`` (answer every request with that status), ``hang_seconds`` (sleep before
    answering), ``max_body_bytes`` (413 above it), ``hold`` (a callable: a request arriving while
    it returns True waits until ``release()``; ``holding`` is set once one waits),
    ``answer_format`` ("per-image": the wire contract's JSON list per image; "object-detection":
    SageMaker's built-in Object Detection algorithm, ``{"prediction": rows}`` for its one image,
    which refuses a request of several images with 400). ``requests`` records every request.
    """

    def __init__(self, task: str = "detection", max_body_bytes: int = 6_553_500) -> None:
        self.task = task
        self.max_body_bytes = max_body_bytes
        self.fail_first = 0
        self.fail_status: int | None = None
        self.fail_message = "bad request"
        self.hang_seconds = 0.0
        self.answer_format = "per-image"
        self.status_script: list[int] = []  # statuses for the next requests, in arrival order
        self.requests: list[dict] = []
        self.hold = None
        self.holding = threading.Event()
        self._released = threading.Event()
        self.lock = threading.Lock()
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body go out at once, no 40 ms stalls

            def log_message(self, *args) -> None:  # keep pytest output clean
                pass

            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                endpoint._handle(self)

        self.server = _QuietServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> FakeEndpoint:
        self.thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.server.shutdown()
        self.server.server_close()

    def release(self) -> None:
        """Let held requests (and every later one) through."""
        self.hold = None
        self._released.set()

    def _reply(self, handler, status: int, body: bytes, content_type: str) -> None:
        handler.send_response(status)
        handler.send_header("Content-Type", content_type)
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)

    def _error(self, handler, status: int, message: str) -> None:
        self._reply(handler, status, json.dumps({"error": message}).encode(), "application/json")

    def _handle(self, handler) -> None:
        length = int(handler.headers.get("Content-Length", 0))
        body = handler.rfile.read(length)
        content_type = handler.headers.get("Content-Type", "")
        accept = handler.headers.get("Accept", "application/json")
        attributes = handler.headers.get("X-Amzn-SageMaker-Custom-Attributes")
        target_model = handler.headers.get("X-Amzn-SageMaker-Target-Model")
        with self.lock:
            index = len(self.requests)
            scripted = self.status_script.pop(0) if self.status_script else None
            record = {"content_type": content_type, "accept": accept, "body_bytes": len(body),
                      "custom_attributes": attributes, "target_model": target_model,
                      "authorization": handler.headers.get("Authorization"), "path": handler.path, "images": 0}
            self.requests.append(record)
        if handler.path.split("?", 1)[0] != "/invocations":
            return self._error(handler, 404, f"no route {handler.path}")
        if self.hold is not None and self.hold():
            self.holding.set()
            self._released.wait(120)
        if self.hang_seconds:
            time.sleep(self.hang_seconds)
        if scripted is not None and scripted != 200:
            return self._error(handler, scripted, f"scripted status {scripted}")
        if index < self.fail_first:
            return self._error(handler, 503, "No worker is available to serve request")
        if self.fail_status is not None:
            return self._error(handler, self.fail_status, self.fail_message)
        if length > self.max_body_bytes:
            return self._error(handler, 413, f"request body of {length} bytes exceeds {self.max_body_bytes}")
        try:
            if content_type == "application/x-npy":
                batch = np.load(io.BytesIO(body), allow_pickle=False)
                if batch.ndim == 3:
                    batch = batch[None]
            elif content_type in ("image/jpeg", "image/png", "application/x-image"):
                from PIL import Image

                batch = np.asarray(Image.open(io.BytesIO(body)).convert("RGB"))[None]
            else:
                return self._error(handler, 415, f"unsupported content type {content_type!r}")
        except (ValueError, OSError) as error:
            return self._error(handler, 400, f"cannot decode the body: {error}")
        if batch.dtype != np.uint8 or batch.ndim != 4 or batch.shape[-1] != 3:
            return self._error(handler, 400, f"expected (N, H, W, 3) uint8, got {batch.shape} {batch.dtype}")
        record["images"] = batch.shape[0]
        predictions = fake_model(batch, self.task)
        if accept == "application/x-npy":
            if self.task == "detection":
                rows = max(1, max(len(p) for p in predictions))
                array = np.full((len(predictions), rows, 6), -1, dtype=np.float32)
                for i, prediction in enumerate(predictions):
                    array[i, :len(prediction)] = prediction
            else:
                array = np.stack(predictions)
            buffer = io.BytesIO()
            np.save(buffer, array)
            return self._reply(handler, 200, buffer.getvalue(), "application/x-npy")
        if self.answer_format == "object-detection":
            if len(predictions) != 1:
                return self._error(handler, 400, f"one image per request, got {len(predictions)}")
            return self._reply(handler, 200, json.dumps({"prediction": predictions[0].tolist()}).encode(),
                               "application/json")
        payload = json.dumps([p.tolist() for p in predictions]).encode()
        return self._reply(handler, 200, payload, "application/json")


def random_batch(count: int, height: int = 32, width: int = 32, seed: int = 0) -> np.ndarray:
    """(count, height, width, 3) uint8 with varied channel means (so detections are ragged)."""
    rng = np.random.default_rng(seed)
    scale = rng.uniform(0.0, 1.0, size=(count, 1, 1, 3))
    return (rng.uniform(0, 255, size=(count, height, width, 3)) * scale).astype(np.uint8)


def assert_same_predictions(actual: list[np.ndarray], expected: list[np.ndarray]) -> None:
    assert len(actual) == len(expected)
    for got, want in zip(actual, expected, strict=True):
        assert got.dtype == np.float32
        assert got.shape == want.shape
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-6)
