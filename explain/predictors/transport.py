"""How a predictor talks to a model: the TransportConfig settings and the Connection interface.

A connection sends one encoded request body and returns the response: ``send(body) ->
(response body, content type)``. It raises TransientError for a failure worth retrying (no
response, throttling, 5xx) and PredictorError for one that is not (a 4xx: the request's
fault). The HTTP, SageMaker runtime and in-process connections each live in their own module;
``explain.predictors.engine.Predictor`` plans, sends, retries and decodes over any of them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

from serving.contract import (
    CLIENT_REQUEST_TYPES,
    JSON,
    MAX_IMAGES_PER_REQUEST,
    NPY,
    RESPONSE_TYPES,
    SAGEMAKER_MAX_REQUEST_BYTES,
)

from ..config import MAX_HEADER_CHARS, plain_number
from ..errors import ConfigError
from .responses import compile_probability_path

__all__ = ["TransportConfig", "Connection", "TransientError"]

_MAX_HEADER_CHARS = MAX_HEADER_CHARS


@dataclass(frozen=True)
class TransportConfig:
    """How a predictor talks to its endpoint, validated once on construction.

    content_type / accept: request and response encodings (the wire contract's media types).
    max_payload_bytes: largest request body (SageMaker's real-time limit is 6,291,456).
    concurrency: requests in flight at most. max_retries: retries of one request after
    a connection error, timeout, 429 or 5xx. timeout: seconds to wait for one response.
    backoff_base/backoff_max: first and largest retry delay in seconds (exponential, jittered).
    custom_attributes: value of X-Amzn-SageMaker-Custom-Attributes, e.g. ``score_threshold=0.1``
    (Clarify's ``predictor.custom_attributes``).
    max_images_per_request: images in one request at most (the endpoint refuses more with 413;
    its SERVING_MAX_IMAGES_PER_REQUEST default is this default).
    target_model: the model of a multi-model endpoint to invoke (``TargetModel`` of
    invoke_endpoint, header X-Amzn-SageMaker-Target-Model over HTTP; Clarify's
    ``predictor.target_model``).
    probability: a JMESPath expression that picks the scores out of a JSON answer (Clarify's
    ``predictor.probability``, e.g. ``prediction``); None: the answer is the scores
    (``explain.predictors.responses``).
    A bad value raises ConfigError whose ``field`` names the setting.
    """

    content_type: str = NPY
    accept: str = JSON
    max_payload_bytes: int = SAGEMAKER_MAX_REQUEST_BYTES
    concurrency: int = 4
    max_retries: int = 5
    timeout: float = 70.0
    backoff_base: float = 0.5
    backoff_max: float = 20.0
    custom_attributes: str | None = None
    max_images_per_request: int = MAX_IMAGES_PER_REQUEST
    target_model: str | None = None
    probability: str | None = None

    def __post_init__(self) -> None:
        for name in ("max_payload_bytes", "concurrency", "max_retries", "max_images_per_request", "timeout",
                     "backoff_base", "backoff_max"):  # np.int64(4) -> 4, as ExplainConfig does
            object.__setattr__(self, name, plain_number(getattr(self, name)))
        for name in ("custom_attributes", "target_model"):  # a header value cannot start or end with a space
            value = getattr(self, name)
            if isinstance(value, str) and value.strip():
                object.__setattr__(self, name, value.strip())
            elif name == "custom_attributes" and isinstance(value, str) and value:  # spaces: none, as the settings say
                object.__setattr__(self, name, None)
        if self.content_type not in CLIENT_REQUEST_TYPES:
            raise ConfigError(f"content_type must be one of {', '.join(CLIENT_REQUEST_TYPES)}, "
                              f"got {self.content_type!r}", field="content_type")
        if self.accept not in RESPONSE_TYPES:
            raise ConfigError(f"accept must be one of {', '.join(RESPONSE_TYPES)}, got {self.accept!r}",
                              field="accept")
        for name, low, high in (("max_payload_bytes", 1024, 1 << 31), ("concurrency", 1, 256),
                                ("max_retries", 0, 100), ("max_images_per_request", 1, 100_000)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                raise ConfigError(f"{name} must be an integer in [{low}, {high}], got {value!r}", field=name)
        for name in ("timeout", "backoff_base", "backoff_max"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not (
                    math.isfinite(value) and value >= 0 and (value > 0 or name != "timeout")):
                raise ConfigError(f"{name} must be a finite number of seconds > 0, got {value!r}", field=name)
        for name in ("custom_attributes", "target_model"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, str) or not value or not value.isprintable()
                                      or len(value) > _MAX_HEADER_CHARS):
                raise ConfigError(f"{name} must be printable text of 1 to {_MAX_HEADER_CHARS} characters, "
                                  f"got {value!r}", field=name)
        if self.probability is not None:
            compile_probability_path(self.probability)


class TransientError(Exception):
    """A failure worth retrying (no response, throttling, 5xx); the message says what happened."""


class Connection(Protocol):
    """One endpoint reached one way (HTTP, SageMaker runtime, in process)."""

    name: str
    """What the stats call the transport: ``http``, ``sagemaker`` or ``in-process``."""

    @property
    def description(self) -> str:
        """Names the endpoint in messages, e.g. ``endpoint http://127.0.0.1:8080/invocations``."""

    @property
    def endpoint_id(self) -> str:
        """The endpoint as the CLI names it: a URL, ``sagemaker:NAME`` or a model path."""

    def send(self, body: bytes) -> tuple[bytes, str]:
        """Send one request body; return (response body, its content type).

        Raises TransientError (retry) or PredictorError (do not).
        """

    def close(self) -> None:
        """Release connections and temporary files; the connection is unusable afterwards."""
