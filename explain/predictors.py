"""Predictor adapters: HTTP endpoint, SageMaker runtime and in-process model behind one predict(batch).

Every adapter is a callable ``predict(batch) -> list of N arrays`` where ``batch`` is an
(N, H, W, 3) uint8 array and each result is, for detection, a (D_i, 6) float32 array of
rows ``[class_id, score, x0/w, y0/h, x1/w, y1/h]`` (D_i may be 0) and, for
classification, a (C,) float32 array of class probabilities. Remote adapters split a
batch into requests that fit a byte budget, send them concurrently and reassemble the
results in order, so the output does not depend on concurrency or budget. A request holds
at most ``max_images_per_request`` images (default: the endpoint's own default limit,
``serving.settings.DEFAULT_MAX_IMAGES_PER_REQUEST``), so small images never draw a 413. ``.stats``
counts requests, images, retries and bytes for analysis.json.
"""

from __future__ import annotations

import logging
import math
import random
import re
import tempfile
import threading
import time
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from deploy.client import (
    REQUEST_CONTENT_TYPES,
    RESPONSE_CONTENT_TYPES,
    EndpointClient,
    decode_predictions,
    encode_images,
    npy_body_size,
)
from deploy.errors import EndpointError
from serving.settings import DEFAULT_MAX_IMAGES_PER_REQUEST as MAX_IMAGES_PER_REQUEST

from .config import TASKS
from .errors import ConfigError, EndpointUnavailableError, PredictorError

__all__ = [
    "TransportConfig",
    "HttpPredictor",
    "SageMakerPredictor",
    "InProcessPredictor",
    "make_predictor",
    "images_per_request",
    "plan_requests",
    "MAX_IMAGES_PER_REQUEST",
]

logger = logging.getLogger(__name__)

NPY = "application/x-npy"
SAGEMAKER_PREFIX = "sagemaker:"
_ENDPOINT_NAME = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$")
_RETRYABLE_AWS_CODES = frozenset({
    "ThrottlingException", "ServiceUnavailable", "InternalFailure",
    "InternalDependencyException", "ModelNotReadyException",
})


@dataclass(frozen=True)
class TransportConfig:
    """How a remote predictor talks to its endpoint, validated once on construction.

    max_payload_bytes: largest request body (SageMaker's real-time limit is 6,291,456).
    concurrency: requests in flight at most. max_retries: retries of one request after
    a connection error, timeout, 429 or 5xx. timeout: seconds to wait for one response.
    backoff_base/backoff_max: first and largest retry delay in seconds (exponential, jittered).
    custom_attributes: value of X-Amzn-SageMaker-Custom-Attributes, e.g. ``score_threshold=0.1``.
    max_images_per_request: images in one request at most (the endpoint's
    SERVING_MAX_IMAGES_PER_REQUEST; its default is this default).
    """

    content_type: str = NPY
    accept: str = "application/json"
    max_payload_bytes: int = 6_291_456
    concurrency: int = 4
    max_retries: int = 5
    timeout: float = 70.0
    backoff_base: float = 0.5
    backoff_max: float = 20.0
    custom_attributes: str | None = None
    max_images_per_request: int = MAX_IMAGES_PER_REQUEST

    def __post_init__(self) -> None:
        if self.content_type not in REQUEST_CONTENT_TYPES:
            raise ConfigError(
                f"content_type must be one of {', '.join(REQUEST_CONTENT_TYPES)}, got {self.content_type!r}")
        if self.accept not in RESPONSE_CONTENT_TYPES:
            raise ConfigError(
                f"accept must be one of {', '.join(RESPONSE_CONTENT_TYPES)}, got {self.accept!r}")
        for name, low, high in (("max_payload_bytes", 1024, 1 << 31), ("concurrency", 1, 256),
                                ("max_retries", 0, 100), ("max_images_per_request", 1, 100_000)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                raise ConfigError(f"{name} must be an integer in [{low}, {high}], got {value!r}")
        for name in ("timeout", "backoff_base", "backoff_max"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not (
                    math.isfinite(value) and value >= 0 and (value > 0 or name != "timeout")):
                raise ConfigError(f"{name} must be a finite number of seconds > 0, got {value!r}")


def _check_task(task: str | None, allow_none: bool = False) -> None:
    if task is None and allow_none:
        return
    if task not in TASKS:
        raise ConfigError(f"task must be one of {', '.join(TASKS)}, got {task!r}")


def _as_uint8_batch(batch) -> np.ndarray:
    """(N, H, W, 3) images -> C-contiguous uint8 (floats are rounded and clipped to 0..255)."""
    batch = np.asarray(batch)
    if batch.ndim != 4 or batch.shape[-1] != 3:
        raise PredictorError(f"predict expects an (N, H, W, 3) batch, got shape {batch.shape}")
    if batch.dtype != np.uint8:
        batch = np.clip(np.rint(batch), 0, 255).astype(np.uint8)
    return np.ascontiguousarray(batch)


def images_per_request(image_shape: tuple[int, int, int], content_type: str, max_payload_bytes: int,
                       max_images: int = MAX_IMAGES_PER_REQUEST) -> int:
    """How many images of ``image_shape`` (H, W, 3) uint8 one request carries.

    npy: as many as fit ``max_payload_bytes`` with the exact npy header, and at most
    ``max_images`` (the endpoint refuses more with 413); jpeg/png: one (its encoded size is
    checked when it is encoded). Raises PredictorError when one image alone does not fit.
    """
    if content_type != NPY:
        return 1
    image_bytes = int(np.prod(image_shape))
    per_request = max(0, (max_payload_bytes - 256) // image_bytes)
    while per_request > 0 and npy_body_size((per_request, *image_shape)) > max_payload_bytes:
        per_request -= 1
    while npy_body_size((per_request + 1, *image_shape)) <= max_payload_bytes:
        per_request += 1
    if per_request == 0:
        height, width = image_shape[:2]
        raise PredictorError(
            f"one {width}x{height} image is {npy_body_size((1, *image_shape))} bytes as npy, more than "
            f"max_payload_bytes={max_payload_bytes}; use --resize (e.g. --resize 512) or a smaller image")
    return min(per_request, max_images)


def plan_requests(num_images: int, image_shape: tuple[int, int, int], content_type: str,
                  max_payload_bytes: int, max_images: int = MAX_IMAGES_PER_REQUEST) -> list[slice]:
    """Split ``num_images`` images of ``image_shape`` into request slices (``images_per_request`` each)."""
    per_request = images_per_request(image_shape, content_type, max_payload_bytes, max_images)
    return [slice(start, min(start + per_request, num_images))
            for start in range(0, num_images, per_request)]


def _check_results(results: list[np.ndarray], expected: int, task: str | None, source: str) -> None:
    """Raise PredictorError unless there are ``expected`` results shaped as ``task`` requires."""
    if len(results) != expected:
        raise PredictorError(f"{source} answered {len(results)} predictions for {expected} images")
    if task is None:
        return
    for result in results:
        if task == "detection" and (result.ndim != 2 or result.shape[1] != 6):
            raise PredictorError(
                f"{source} answered an array of shape {result.shape} where detection rows (D, 6) "
                "were expected; is this a classification model? (use --task classification)")
        if task == "classification" and result.ndim != 1:
            raise PredictorError(
                f"{source} answered an array of shape {result.shape} where class probabilities (C,) "
                "were expected; is this a detection model? (use --task detection)")


class _Stats:
    """Thread-safe counters of one predictor."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts = {"requests": 0, "images": 0, "retries": 0, "failed_requests": 0,
                        "bytes_sent": 0, "bytes_received": 0, "max_request_bytes": 0,
                        "request_seconds": 0.0}

    def add(self, **increments: float) -> None:
        with self._lock:
            for name, value in increments.items():
                self._counts[name] += value

    def request(self, body_bytes: int) -> None:
        with self._lock:
            self._counts["requests"] += 1
            self._counts["bytes_sent"] += body_bytes
            self._counts["max_request_bytes"] = max(self._counts["max_request_bytes"], body_bytes)

    def snapshot(self) -> dict:
        with self._lock:
            return dict(self._counts)


class _TransientError(Exception):
    """A failure worth retrying (no response, throttling, 5xx)."""


class _RemotePredictor:
    """Packing, concurrency, retries and reassembly shared by the remote adapters."""

    transport_name = "remote"

    def __init__(self, task: str, transport: TransportConfig) -> None:
        _check_task(task)
        self.task = task
        self.transport = transport
        self._stats = _Stats()
        self._random = random.Random()
        # one budget for every caller: images explained in parallel share ``concurrency``
        self._slots = threading.BoundedSemaphore(transport.concurrency)

    @property
    def description(self) -> str:
        """Names the endpoint in messages, e.g. ``endpoint http://127.0.0.1:8080/invocations``."""
        raise NotImplementedError

    @property
    def endpoint_id(self) -> str:
        """The endpoint as the CLI names it: a URL or ``sagemaker:NAME``."""
        raise NotImplementedError

    def _invoke(self, body: bytes) -> tuple[bytes, str]:
        """Send one body; return (response body, content type); raise _TransientError or PredictorError."""
        raise NotImplementedError

    @property
    def stats(self) -> dict:
        """Counters so far plus the transport settings (JSON-serialisable)."""
        return {"transport": self.transport_name, "endpoint": self.endpoint_id,
                "content_type": self.transport.content_type, "accept": self.transport.accept,
                "max_payload_bytes": self.transport.max_payload_bytes,
                "concurrency": self.transport.concurrency, **self._stats.snapshot()}

    def request_plan(self, image_shape: tuple[int, int, int]) -> tuple[int, int]:
        """(images per request, requests in flight) for images of ``image_shape`` (H, W, 3).

        The explainer feeds one request's worth per call with this many calls in flight, so
        the next masked batch is built while the endpoint works.
        """
        return (images_per_request(tuple(image_shape), self.transport.content_type,
                                   self.transport.max_payload_bytes, self.transport.max_images_per_request),
                self.transport.concurrency)

    def __call__(self, batch) -> list[np.ndarray]:
        """(N, H, W, 3) uint8 -> N arrays: detection (D_i, 6) float32, classification (C,) float32."""
        batch = _as_uint8_batch(batch)
        if batch.shape[0] == 0:
            return []
        slices = plan_requests(batch.shape[0], batch.shape[1:], self.transport.content_type,
                               self.transport.max_payload_bytes, self.transport.max_images_per_request)
        chunks = [batch[part] for part in slices]
        abort = threading.Event()  # set on the first failure: other requests stop retrying
        if self.transport.concurrency == 1 or len(chunks) == 1:
            parts = [self._predict_chunk(chunk, abort) for chunk in chunks]
        else:
            workers = min(self.transport.concurrency, len(chunks))
            pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="predict")
            futures = [pool.submit(self._predict_chunk, chunk, abort) for chunk in chunks]
            try:
                wait(futures, return_when=FIRST_EXCEPTION)
                for future in futures:  # the first failure in request order, if any
                    if future.done() and future.exception() is not None:
                        raise future.exception()
                parts = [future.result() for future in futures]
            except BaseException:
                abort.set()
                pool.shutdown(wait=False, cancel_futures=True)
                raise
            pool.shutdown(wait=True)
        return [result for part in parts for result in part]

    def _predict_chunk(self, chunk: np.ndarray, abort: threading.Event) -> list[np.ndarray]:
        body = encode_images(chunk, self.transport.content_type)
        if len(body) > self.transport.max_payload_bytes:
            height, width = chunk.shape[1:3]
            raise PredictorError(
                f"one {width}x{height} image is {len(body)} bytes as {self.transport.content_type}, more "
                f"than max_payload_bytes={self.transport.max_payload_bytes}; use --resize "
                "(e.g. --resize 512) or a smaller image")
        response, content_type = self._send_with_retries(body, abort)
        try:
            results = decode_predictions(response, content_type)
        except ValueError as error:
            raise PredictorError(f"{self.description} answered an unusable response: {error}") from None
        _check_results(results, chunk.shape[0], self.task, self.description)
        self._stats.add(images=chunk.shape[0])
        return results

    def _send_with_retries(self, body: bytes, abort: threading.Event) -> tuple[bytes, str]:
        attempts = self.transport.max_retries + 1
        for attempt in range(attempts):
            self._slots.acquire()
            self._stats.request(len(body))
            started = time.perf_counter()
            try:
                response, content_type = self._invoke(body)
            except _TransientError as error:
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
            self._stats.add(bytes_received=len(response), request_seconds=time.perf_counter() - started)
            return response, content_type
        raise AssertionError("unreachable")  # pragma: no cover

    def close(self) -> None:
        """Release connections; the predictor is unusable afterwards."""

    def __enter__(self):
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


class HttpPredictor(_RemotePredictor):
    """predict(batch) over ``POST {url}/invocations`` of an endpoint speaking the wire contract."""

    transport_name = "http"

    def __init__(self, url: str, task: str, content_type: str = NPY, accept: str = "application/json",
                 max_payload_bytes: int = 6_291_456, concurrency: int = 4, max_retries: int = 5,
                 timeout: float = 70.0, *, backoff_base: float = 0.5, backoff_max: float = 20.0,
                 custom_attributes: str | None = None, max_images_per_request: int = MAX_IMAGES_PER_REQUEST,
                 session=None) -> None:
        super().__init__(task, TransportConfig(
            content_type, accept, max_payload_bytes, concurrency, max_retries, timeout,
            backoff_base, backoff_max, custom_attributes, max_images_per_request))
        if session is None:
            import requests

            session = requests.Session()
            adapter = requests.adapters.HTTPAdapter(pool_maxsize=max(10, concurrency))
            session.mount("http://", adapter)
            session.mount("https://", adapter)
        try:
            self.client = EndpointClient(url, timeout=timeout, session=session)
        except ValueError as error:
            raise ConfigError(str(error)) from None

    @property
    def description(self) -> str:
        return f"endpoint {self.client.url}"

    @property
    def endpoint_id(self) -> str:
        return self.client.url

    def _invoke(self, body: bytes) -> tuple[bytes, str]:
        try:
            return self.client.invoke(body, self.transport.content_type, self.transport.accept,
                                      self.transport.custom_attributes)
        except EndpointError as error:
            if error.retryable:
                raise _TransientError(str(error)) from None
            raise PredictorError(
                f"{self.description} rejected the request with HTTP {error.status}: "
                f"{error.message}{_status_hint(error.status)}") from None

    def close(self) -> None:
        self.client.close()


class SageMakerPredictor(_RemotePredictor):
    """predict(batch) over ``sagemaker-runtime.invoke_endpoint`` (boto3).

    client: an injected ``sagemaker-runtime`` client (tests, custom sessions); otherwise one is
    created for ``region`` (and ``endpoint_url``, e.g. a moto server) with botocore's own retries
    off, since this adapter retries throttling, 5xx and connection errors itself.
    """

    transport_name = "sagemaker"

    def __init__(self, endpoint_name: str, task: str, region: str | None = None,
                 content_type: str = NPY, accept: str = "application/json",
                 max_payload_bytes: int = 6_291_456, concurrency: int = 4, max_retries: int = 5,
                 timeout: float = 70.0, *, backoff_base: float = 0.5, backoff_max: float = 20.0,
                 custom_attributes: str | None = None, max_images_per_request: int = MAX_IMAGES_PER_REQUEST,
                 client=None, endpoint_url: str | None = None) -> None:
        super().__init__(task, TransportConfig(
            content_type, accept, max_payload_bytes, concurrency, max_retries, timeout,
            backoff_base, backoff_max, custom_attributes, max_images_per_request))
        if not isinstance(endpoint_name, str) or not _ENDPOINT_NAME.match(endpoint_name):
            raise ConfigError(
                f"SageMaker endpoint name must be 1-63 letters, digits or hyphens, got {endpoint_name!r}")
        self.endpoint_name = endpoint_name
        if client is None:
            client = self._make_client(region, endpoint_url, timeout, concurrency)
        self.client = client

    @staticmethod
    def _make_client(region, endpoint_url, timeout, concurrency):
        import boto3
        from botocore.config import Config
        from botocore.exceptions import BotoCoreError, NoRegionError

        config = Config(read_timeout=timeout, connect_timeout=10, max_pool_connections=max(10, concurrency),
                        retries={"total_max_attempts": 1, "mode": "standard"})
        try:
            return boto3.client("sagemaker-runtime", region_name=region, endpoint_url=endpoint_url,
                                config=config)
        except NoRegionError:
            raise PredictorError(
                "no AWS region for the SageMaker endpoint: set AWS_DEFAULT_REGION "
                "(e.g. export AWS_DEFAULT_REGION=us-east-1)") from None
        except BotoCoreError as error:
            raise PredictorError(f"cannot create a sagemaker-runtime client: {error}") from None

    @property
    def description(self) -> str:
        return f"SageMaker endpoint {self.endpoint_name}"

    @property
    def endpoint_id(self) -> str:
        return f"{SAGEMAKER_PREFIX}{self.endpoint_name}"

    def _invoke(self, body: bytes) -> tuple[bytes, str]:
        from botocore.exceptions import (
            BotoCoreError,
            ClientError,
            ConnectionClosedError,
            ConnectTimeoutError,
            EndpointConnectionError,
            NoCredentialsError,
            ReadTimeoutError,
        )

        params = {"EndpointName": self.endpoint_name, "Body": body,
                  "ContentType": self.transport.content_type, "Accept": self.transport.accept}
        if self.transport.custom_attributes:
            params["CustomAttributes"] = self.transport.custom_attributes
        try:
            response = self.client.invoke_endpoint(**params)
            return response["Body"].read(), response.get("ContentType") or self.transport.accept
        except ClientError as error:
            raise self._client_error(error) from None
        except (EndpointConnectionError, ConnectTimeoutError, ReadTimeoutError,
                ConnectionClosedError) as error:
            raise _TransientError(str(error)) from None
        except NoCredentialsError:
            raise PredictorError(
                "no AWS credentials found: configure them (aws configure, AWS_PROFILE or "
                "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY)") from None
        except BotoCoreError as error:
            raise PredictorError(f"{self.description}: {error}") from None

    def _client_error(self, error) -> Exception:
        """Map a botocore ClientError to _TransientError (retry) or PredictorError."""
        response = error.response
        code = response.get("Error", {}).get("Code", "")
        message = response.get("Error", {}).get("Message", "")
        if code in _RETRYABLE_AWS_CODES:
            return _TransientError(f"{code}: {message}")
        if code == "ModelError":
            original_status = response.get("OriginalStatusCode")
            original_message = response.get("OriginalMessage") or message
            try:
                original_message = _json_error_field(original_message)
            except ValueError:
                pass
            if original_status is None or int(original_status) >= 500 or int(original_status) == 429:
                return _TransientError(f"model error (HTTP {original_status}): {original_message}")
            return PredictorError(
                f"the model behind {self.description} rejected the request with HTTP "
                f"{original_status}: {original_message}{_status_hint(int(original_status))}")
        message = message.strip().splitlines()[0][:300] if message.strip() else code
        if response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) >= 500:
            return _TransientError(f"{code}: {message}")
        return PredictorError(f"{self.description}: {code}: {message}")


def _status_hint(status: int | None) -> str:
    """What the user can change for a client-error status ('' when nothing obvious)."""
    if status == 413:
        return "; lower --max-payload-bytes or --max-images-per-request, or use --resize"
    if status == 415:
        return "; choose another --content-type"
    return ""


def _json_error_field(text: str) -> str:
    """``'{"error": "bad shape"}'`` -> ``'bad shape'``; raise ValueError for other text."""
    import json

    payload = json.loads(text)
    if isinstance(payload, dict) and isinstance(payload.get("error"), str):
        return payload["error"]
    raise ValueError("no error field")


class InProcessPredictor:
    """predict(batch) through ``serving.handler``'s model_fn/transform_fn in this process.

    Takes the endpoint's code path (npy request, npy response) without HTTP: batches are
    split into chunks of at most ``batch_size`` images that the handler's limits admit (body
    bytes, images and network-input pixels per request). ``task`` (optional) checks the shape
    of the model's answers.
    """

    transport_name = "in-process"

    def __init__(self, model_dir: str | Path, task: str | None = None, batch_size: int = MAX_IMAGES_PER_REQUEST,
                 *, cleanup: tempfile.TemporaryDirectory | None = None, source: str | None = None) -> None:
        _check_task(task, allow_none=True)
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ConfigError(f"batch_size must be an integer >= 1, got {batch_size!r}")
        self.model_dir = Path(model_dir)
        self.task = task
        self.batch_size = batch_size
        self._cleanup = cleanup
        self._source = source or str(self.model_dir)
        self._stats = _Stats()
        self._forward_lock = threading.Lock()  # one forward pass at a time (Gluon blocks are not thread-safe)
        self._max_body_bytes = _serving_body_limit()
        try:
            from serving.handler import model_fn, transform_fn
        except ImportError as error:
            self.close()
            raise PredictorError(f"cannot import serving.handler to run the model in process: {error}") from None
        self._transform_fn = transform_fn
        try:
            self.model = model_fn(str(self.model_dir))
        except Exception as error:  # the handler's own errors carry a message meant for users
            self.close()
            raise PredictorError(f"cannot load the model from {self._source}: {_message(error)}") from None
        limits = getattr(self.model, "limits", None)
        if limits is not None and getattr(self.model.spec, "task", None) == "detection":
            # Same as DETECTION_CUSTOM_ATTRIBUTES over HTTP: every detection score counts.
            limits.score_threshold = 0.0

    @property
    def description(self) -> str:
        return f"model {self._source}"

    @property
    def class_names(self) -> list[str] | None:
        """Class names from the model's model.json, when the handler exposes them."""
        classes = getattr(getattr(self.model, "spec", None), "classes", None)
        return list(classes) if classes else None

    @property
    def stats(self) -> dict:
        """Counters so far (requests = transform_fn calls), JSON-serialisable."""
        return {"transport": self.transport_name, "endpoint": self._source,
                "batch_size": self.batch_size, **self._stats.snapshot()}

    def __call__(self, batch) -> list[np.ndarray]:
        """(N, H, W, 3) uint8 -> N arrays: detection (D_i, 6) float32, classification (C,) float32."""
        batch = _as_uint8_batch(batch)
        results: list[np.ndarray] = []
        if batch.shape[0] == 0:
            return results
        # at most batch_size images, and no more than the handler's limits take (as over HTTP)
        per_chunk = min(self.batch_size, images_per_request(batch.shape[1:], NPY, self._max_body_bytes,
                                                            max_images=self.batch_size))
        admitted = getattr(self.model, "images_per_request", None)
        if admitted is not None:
            per_chunk = max(1, min(per_chunk, admitted(batch.shape[1], batch.shape[2])))
        for start in range(0, batch.shape[0], per_chunk):
            chunk = batch[start:start + per_chunk]
            body = encode_images(chunk, NPY)
            self._stats.request(len(body))
            started = time.perf_counter()
            try:
                with self._forward_lock:
                    response, content_type = self._transform_fn(self.model, body, NPY, NPY)
            except Exception as error:  # serving errors name the problem; keep their message
                self._stats.add(failed_requests=1)
                raise PredictorError(f"{self.description} failed on a batch: {_message(error)}") from None
            if isinstance(response, str):
                response = response.encode("utf-8")
            self._stats.add(bytes_received=len(response), images=chunk.shape[0],
                            request_seconds=time.perf_counter() - started)
            try:
                decoded = decode_predictions(response, content_type)
            except ValueError as error:
                raise PredictorError(f"{self.description} answered an unusable response: {error}") from None
            _check_results(decoded, chunk.shape[0], self.task, self.description)
            results.extend(decoded)
        return results

    def close(self) -> None:
        """Remove the temporary directory a tarball was extracted to, if any."""
        if self._cleanup is not None:
            self._cleanup.cleanup()
            self._cleanup = None

    def __enter__(self):
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


def _serving_body_limit() -> int:
    """The body limit serving.handler enforces (env SERVING_MAX_BODY_BYTES, else its default)."""
    import os

    try:
        from serving.settings import DEFAULT_MAX_BODY_BYTES
    except ImportError:  # pragma: no cover - serving/ ships with this package
        DEFAULT_MAX_BODY_BYTES = 6_553_500  # noqa: N806
    try:
        return max(1024, int(os.environ.get("SERVING_MAX_BODY_BYTES", DEFAULT_MAX_BODY_BYTES)))
    except ValueError:
        return DEFAULT_MAX_BODY_BYTES


def _message(error: Exception) -> str:
    """The user-facing message of an exception (ServingError carries ``.message`` and ``.status``)."""
    message = getattr(error, "message", None) or str(error) or type(error).__name__
    status = getattr(error, "status", None)
    return f"HTTP {status}: {message}" if isinstance(status, int) else message


def _extract_model_tarball(path: Path) -> tempfile.TemporaryDirectory:
    """Extract model.tar.gz into a new temporary directory (safe members only) and return it."""
    from deploy.errors import PackageError
    from deploy.package import extract_archive

    directory = tempfile.TemporaryDirectory(prefix="clearsight-model-")
    try:
        extract_archive(path, directory.name)
    except PackageError as error:
        directory.cleanup()
        raise PredictorError(f"cannot extract {path}: {error}") from None
    return directory


# serving/ reads these from X-Amzn-SageMaker-Custom-Attributes; other endpoints ignore them.
DETECTION_CUSTOM_ATTRIBUTES = "score_threshold=0"

_HTTP_ONLY_OPTIONS = ("content_type", "accept", "max_payload_bytes", "concurrency", "max_retries",
                      "timeout", "backoff_base", "backoff_max", "custom_attributes", "max_images_per_request")


def make_predictor(endpoint: str, task: str, **transport_options):
    """Build the adapter an endpoint string names.

    ``http://...`` / ``https://...`` -> HttpPredictor; ``sagemaker:NAME`` -> SageMakerPredictor;
    a model directory or a ``.tar.gz`` model package -> InProcessPredictor (the tarball is
    extracted to a temporary directory removed by ``close()``). Transport options that the
    in-process adapter has no use for are ignored; ``batch_size`` applies only to it.
    """
    _check_task(task)
    if not isinstance(endpoint, str) or not endpoint.strip():
        raise ConfigError(f"endpoint must be a URL, sagemaker:NAME or a model path, got {endpoint!r}")
    endpoint = endpoint.strip()
    if task == "detection" and transport_options.get("custom_attributes") is None:
        # A masked image's weaker detections still count: ask the endpoint for every score.
        transport_options["custom_attributes"] = DETECTION_CUSTOM_ATTRIBUTES
    remote_options = {name: value for name, value in transport_options.items() if name != "batch_size"}
    if endpoint.startswith(("http://", "https://")):
        return HttpPredictor(endpoint, task, **remote_options)
    if endpoint.startswith(SAGEMAKER_PREFIX):
        return SageMakerPredictor(endpoint[len(SAGEMAKER_PREFIX):], task, **remote_options)
    path = Path(endpoint).expanduser()
    in_process_options = {"batch_size": transport_options["batch_size"]} if "batch_size" in transport_options else {}
    ignored = sorted(name for name in transport_options if name in _HTTP_ONLY_OPTIONS)
    if path.is_dir() or (path.is_file() and path.name.endswith(".tar.gz")):
        if ignored:
            logger.debug("in-process model: ignoring transport options %s", ", ".join(ignored))
        if path.is_dir():
            return InProcessPredictor(path, task, **in_process_options)
        directory = _extract_model_tarball(path)
        return InProcessPredictor(directory.name, task, cleanup=directory, source=str(path),
                                  **in_process_options)
    raise ConfigError(
        f"endpoint {endpoint!r} is neither an http(s):// URL, sagemaker:ENDPOINT_NAME, a model "
        "directory nor a model .tar.gz file")
