"""The predictor engine: a batch split into requests, sent concurrently with retries, decoded, checked.

``Predictor`` is the callable ``predict(batch) -> list of N arrays`` that the explainer uses,
over any Connection (HTTP, SageMaker runtime, in process). ``batch`` is an (N, H, W, 3) uint8
array; each result is, for detection, a (D_i, 6) float32 array of rows ``[class_id, score,
x0/w, y0/h, x1/w, y1/h]`` (D_i may be 0) and, for classification, a (C,) float32 array of
class probabilities. A batch is split into requests that fit the byte budget, at most
``concurrency`` of them in flight (one budget shared by every caller), each retried with
jittered exponential backoff on transient failures; results come back in order, so they do
not depend on concurrency or budget. ``.stats`` counts requests, images, retries and bytes.
"""

from __future__ import annotations

import logging
import random
import re
import threading
import time
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait

import numpy as np

from serving.contract import encode_images

from ..errors import EndpointUnavailableError, PredictorError
from .planning import (
    as_uint8_batch,
    check_results,
    check_task,
    images_per_request,
    too_large_message,
)
from .responses import decode_response
from .stats import PredictorStats, StatsRecorder
from .transport import Connection, TransientError, TransportConfig

__all__ = ["Predictor", "rejects_content_type", "status_hint"]

logger = logging.getLogger(__name__)


def status_hint(status: int | None, message: str = "") -> str:
    """What the user can change for an error status and the server's message ('' when nothing obvious)."""
    if status == 413:
        return ("; lower --max-payload-bytes or --max-images-per-request (TransportConfig's max_payload_bytes, "
                "max_images_per_request), or use --resize (the resize setting)")
    if status == 415 or rejects_content_type(message):
        return ("; choose another --content-type (predictor.content_type in a Clarify config, "
                "TransportConfig(content_type=...) from Python; Clarify sends image/jpeg, this client's default "
                "is application/x-npy)")
    return ""


def rejects_content_type(message: str) -> bool:
    """Whether an error message blames the request's content type (JumpStart and other containers answer
    400 or 500 "unsupported content type", not 415): no retry makes such a request succeed."""
    return bool(_CONTENT_TYPE_WORDS.search(message or ""))


_SEPARATOR = r"[ \t'\":=]+"  # within one phrase: no sentence or line break between the words
_CONTENT_TYPE_WORDS = re.compile(
    rf"\b(unsupported|unknown|invalid|not supported|cannot handle){_SEPARATOR}(\w+{_SEPARATOR})?"
    rf"(content[ _-]?type|media[ _-]?type|mime[ _-]?type)\b"
    rf"|\bcontent[ _-]?type{_SEPARATOR}[\w/.+-]+{_SEPARATOR}(is )?(not supported|unsupported)\b", re.IGNORECASE)



class _FirstFailure:
    """The first error of a batch's concurrent requests (in time: the cause, not an echo of it).

    ``watch`` runs one request's work in a worker thread; the first error it sees is kept and
    ``abort`` set before the error leaves the worker, so a worker freed by a failure starts no
    further request, and an error caused by the abort is never the one reported."""

    def __init__(self):
        self.abort = threading.Event()
        self.error: BaseException | None = None
        self._lock = threading.Lock()

    def watch(self, work, *args):
        try:
            return work(*args)
        except BaseException as error:
            with self._lock:
                if self.error is None:
                    self.error = error
                    self.abort.set()
            raise


class Predictor:
    """predict(batch) over one Connection, with request planning, concurrency, retries and counters.

    connection: how requests reach the model. task: "detection" or "classification" (the
    answers' shapes are checked), or None (no check). transport: the TransportConfig.
    max_images_per_request: a tighter cap on images per request than the transport's (None: none).
    """

    def __init__(self, connection: Connection, task: str | None, transport: TransportConfig,
                 max_images_per_request: int | None = None) -> None:
        check_task(task, allow_none=True)
        self.connection = connection
        self.task = task
        self.transport = transport
        self.max_images_per_request = max_images_per_request
        self._stats = StatsRecorder()
        self._random = random.Random()
        # one budget for every caller: images explained in parallel share ``concurrency``
        self._slots = threading.BoundedSemaphore(transport.concurrency)

    @property
    def transport_name(self) -> str:
        return self.connection.name

    @property
    def description(self) -> str:
        """Names the endpoint in messages, e.g. ``endpoint http://127.0.0.1:8080/invocations``."""
        return self.connection.description

    @property
    def endpoint_id(self) -> str:
        """The endpoint as the CLI names it: a URL, ``sagemaker:NAME`` or a model path."""
        return self.connection.endpoint_id

    @property
    def class_names(self) -> list[str] | None:
        """Class names the model declares (in-process models read them from model.json), else None."""
        return getattr(self.connection, "class_names", None)

    def settings(self) -> dict:
        """The transport settings reported beside the counters in ``stats``."""
        settings = {"content_type": self.transport.content_type, "accept": self.transport.accept,
                    "max_payload_bytes": self.transport.max_payload_bytes,
                    "concurrency": self.transport.concurrency}
        for name in ("custom_attributes", "target_model", "probability"):
            if getattr(self.transport, name) is not None:
                settings[name] = getattr(self.transport, name)
        return settings

    @property
    def counters(self) -> PredictorStats:
        """The counters so far."""
        return self._stats.snapshot()

    @property
    def stats(self) -> dict:
        """Transport, endpoint, settings and counters so far (JSON-serialisable, for analysis.json)."""
        return {"transport": self.transport_name, "endpoint": self.endpoint_id, **self.settings(),
                **self.counters.to_dict()}

    def images_per_request(self, image_shape: tuple[int, int, int]) -> int:
        """Images of ``image_shape`` (H, W, 3) in one request: the byte budget's, at most the cap."""
        per_request = min(images_per_request(tuple(image_shape), self.transport.content_type,
                                             self.transport.max_payload_bytes),
                          self.transport.max_images_per_request)
        if self.max_images_per_request is not None:
            per_request = min(per_request, self.max_images_per_request)
        return per_request

    def request_plan(self, image_shape: tuple[int, int, int]) -> tuple[int, int]:
        """(images per request, requests in flight) for images of ``image_shape`` (H, W, 3).

        The explainer feeds one request's worth per call with this many calls in flight, so
        the next masked batch is built while the endpoint works.
        """
        return self.images_per_request(image_shape), self.transport.concurrency

    def __call__(self, batch) -> list[np.ndarray]:
        """(N, H, W, 3) uint8 -> N arrays: detection (D_i, 6) float32, classification (C,) float32."""
        batch = as_uint8_batch(batch)
        if batch.shape[0] == 0:
            return []
        per_request = self.images_per_request(batch.shape[1:])
        chunks = [batch[start:start + per_request] for start in range(0, batch.shape[0], per_request)]
        failure = _FirstFailure()  # other requests stop retrying, and none starts, once one fails
        if self.transport.concurrency == 1 or len(chunks) == 1:
            parts = [self._predict_chunk(chunk, failure.abort) for chunk in chunks]
        else:
            workers = min(self.transport.concurrency, len(chunks))
            pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="predict")
            futures = [pool.submit(failure.watch, self._predict_chunk, chunk, failure.abort) for chunk in chunks]
            try:
                wait(futures, return_when=FIRST_EXCEPTION)
                if failure.error is not None:
                    raise failure.error
                parts = [future.result() for future in futures]
            except BaseException:
                failure.abort.set()
                pool.shutdown(wait=False, cancel_futures=True)
                raise
            pool.shutdown(wait=True)
        return [result for part in parts for result in part]

    def _predict_chunk(self, chunk: np.ndarray, abort: threading.Event) -> list[np.ndarray]:
        body = encode_images(chunk, self.transport.content_type)
        if len(body) > self.transport.max_payload_bytes:
            height, width = chunk.shape[1:3]
            raise PredictorError(too_large_message(width, height, len(body), self.transport.content_type,
                                                   self.transport.max_payload_bytes))
        response, content_type = self._send_with_retries(body, abort)
        try:
            results = decode_response(response, content_type, self.task, chunk.shape[0],
                                      self.transport.probability)
        except ValueError as error:
            raise PredictorError(f"{self.description} answered an unusable response: {error}") from None
        check_results(results, chunk.shape[0], self.task, self.description)
        self._stats.add(images=chunk.shape[0])
        return results

    def _send_with_retries(self, body: bytes, abort: threading.Event) -> tuple[bytes, str]:
        attempts = self.transport.max_retries + 1
        for attempt in range(attempts):
            if abort.is_set():
                raise EndpointUnavailableError(f"{self.description}: request not sent, another request failed")
            self._slots.acquire()
            self._stats.sent(len(body))
            started = time.perf_counter()
            try:
                response, content_type = self.connection.send(body)
            except TransientError as error:
                self._slots.release()
                self._stats.add(failed_requests=1, request_seconds=time.perf_counter() - started)
                if attempt + 1 == attempts:
                    raise EndpointUnavailableError(
                        f"{self.description} failed after {attempts} attempt(s), last: {error}; check that the "
                        "endpoint is up, or lower --concurrency if it is overloaded") from None
                delay = min(self.transport.backoff_max, self.transport.backoff_base * 2 ** attempt)
                delay *= self._random.uniform(0.5, 1.0)
                logger.info("retrying in %.2f s after: %s", delay, error)
                if abort.wait(delay):
                    raise EndpointUnavailableError(f"{self.description}: stopped retrying after another "
                                                   f"request failed; last: {error}") from None
                self._stats.add(retries=1)
                continue
            except BaseException as error:
                self._slots.release()
                if isinstance(error, PredictorError):
                    self._stats.add(failed_requests=1, request_seconds=time.perf_counter() - started)
                raise
            self._slots.release()
            if isinstance(response, str):  # the in-process handler answers JSON as text
                response = response.encode("utf-8")
            self._stats.add(bytes_received=len(response), request_seconds=time.perf_counter() - started)
            return response, content_type
        raise AssertionError("unreachable")  # pragma: no cover

    def close(self) -> None:
        """Release connections (and an in-process model's temporary files); unusable afterwards."""
        self.connection.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()
