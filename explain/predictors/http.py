"""HTTP connection: ``POST {url}/invocations`` of an endpoint speaking the wire contract (requests)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from urllib.parse import urlsplit

import requests
import urllib3

from serving.contract import (
    error_message,
    invocations_url,
    is_retryable_status,
    redact_url,
    request_headers,
)

from ..errors import ConfigError, PredictorError
from .engine import Predictor, rejects_content_type, status_hint
from .planning import check_task
from .transport import TransientError, TransportConfig

__all__ = ["HttpConnection", "HttpPredictor", "MAX_ANSWER_BYTES", "TARGET_MODEL_HEADER"]

# SageMaker's header naming the model of a multi-model endpoint (invoke_endpoint's TargetModel)
TARGET_MODEL_HEADER = "X-Amzn-SageMaker-Target-Model"
# The most bytes one answer may hold: ten times SageMaker's 6 MB response limit (64 images of 100
# detections each are under 1 MB as JSON). A longer one is refused as it arrives, not read into memory
# whole (300,000 rows per image took 2.9 GB and 75 s).
MAX_ANSWER_BYTES = 64 * 1024 * 1024


def _pieces(response: requests.Response) -> Iterator[bytes]:
    """The decoded body as it arrives, up to 64 KB a piece. ``iter_content`` waits for 64 KB (or the
    end) before it yields, so a deadline checked between its pieces missed an answer trickling in;
    urllib3 2's ``read1`` returns what one read brings. With urllib3 1 (no read1): ``iter_content``.
    urllib3's errors become the requests errors that ``iter_content`` raises for them."""
    raw = response.raw
    if not hasattr(raw, "read1"):
        yield from response.iter_content(chunk_size=1 << 16)
        return
    try:
        while piece := raw.read1(1 << 16, decode_content=True):
            yield piece
    except urllib3.exceptions.ProtocolError as error:
        raise requests.exceptions.ChunkedEncodingError(error) from None
    except urllib3.exceptions.DecodeError as error:
        raise requests.exceptions.ContentDecodingError(error) from None
    except urllib3.exceptions.ReadTimeoutError:  # no byte for the timeout, which is past the deadline too
        raise _Unfinished from None


class _Unfinished(Exception):
    """An answer still arriving when the request's time is up."""


class HttpConnection:
    """One endpoint over HTTP: a pooled ``requests.Session`` posting request bodies.

    url: base URL (``http://127.0.0.1:8080``) or the full ``.../invocations`` URL; credentials
    in it (``http://user:password@host``) are sent, never shown: messages and stats carry
    ``redact_url(url)``.
    session: a ``requests.Session`` to reuse (proxies, tests); one with ``max(10, concurrency)``
    pooled connections is created if None.
    """

    name = "http"

    max_answer_bytes = MAX_ANSWER_BYTES

    def __init__(self, url: str, transport: TransportConfig, session: requests.Session | None = None) -> None:
        try:
            self.url = invocations_url(url)
        except ValueError as error:
            raise ConfigError(str(error), field="endpoint") from None
        self.shown_url = redact_url(self.url)
        self.transport = transport
        if session is None:
            session = requests.Session()
            adapter = requests.adapters.HTTPAdapter(pool_maxsize=max(10, transport.concurrency))
            session.mount("http://", adapter)
            session.mount("https://", adapter)
        self.session = session
        self._headers = request_headers(transport.content_type, transport.accept, transport.custom_attributes)
        if transport.target_model is not None:
            self._headers[TARGET_MODEL_HEADER] = transport.target_model

    @property
    def description(self) -> str:
        return f"endpoint {self.shown_url}"

    @property
    def endpoint_id(self) -> str:
        return self.shown_url

    def send(self, body: bytes) -> tuple[bytes, str]:
        """POST one body; TransientError without an answer or for 429/5xx, PredictorError for other 4xx."""
        timeout = self.transport.timeout
        deadline = time.monotonic() + timeout
        try:
            with self.session.post(self.url, data=body, headers=self._headers, timeout=timeout,
                                   stream=True) as response:
                content = self._read(response, deadline)
        except requests.Timeout:
            raise TransientError(f"endpoint error (no response): no response from {self.shown_url} "
                                 f"within {timeout:g} s") from None
        except _Unfinished:
            raise TransientError(f"endpoint error (no response): the answer from {self.shown_url} was still "
                                 f"arriving {timeout:g} s after the request was sent") from None
        except requests.ConnectionError as error:
            raise TransientError(f"endpoint error (no response): cannot connect to {self.shown_url}: "
                                 f"{self._scrub(error)}") from None
        except requests.exceptions.ChunkedEncodingError as error:
            raise TransientError(f"endpoint error (no response): connection to {self.shown_url} broke "
                                 f"mid-response: {self._scrub(error)}") from None
        status = response.status_code
        if status >= 400:
            message = error_message(content, response.reason)
            if is_retryable_status(status) and not rejects_content_type(message):
                raise TransientError(f"endpoint error (HTTP {status}): {message}")
            raise PredictorError(f"{self.description} rejected the request with HTTP {status}: "
                                 f"{message}{status_hint(status, message)}")
        return content, response.headers.get("Content-Type", self.transport.accept)

    def _read(self, response: requests.Response, deadline: float) -> bytes:
        """The answer's body, refused (PredictorError) once longer than ``max_answer_bytes``; abandoned
        (_Unfinished) when a piece of it arrives after ``deadline`` (time.monotonic()). The transport's
        timeout bounds each wait for bytes, so an answer trickling in a byte at a time never timed out."""
        chunks, size = [], 0
        for chunk in _pieces(response):
            if time.monotonic() > deadline:
                raise _Unfinished
            size += len(chunk)
            if size > self.max_answer_bytes:
                raise PredictorError(f"{self.description} answered more than {self.max_answer_bytes:,} bytes to "
                                     "one request; no answer of the wire contract is that long (SageMaker's are "
                                     "6 MB at most): is this the right endpoint?")
            chunks.append(chunk)
        return b"".join(chunks)

    def _scrub(self, error: BaseException) -> str:
        """An error's text with the URL as shown (requests quotes the URL it was given, or its path and query)."""
        text = str(error).replace(self.url, self.shown_url)
        target, shown_target = (urlsplit(url) for url in (self.url, self.shown_url))
        if target.query:
            text = text.replace(f"{target.path}?{target.query}", f"{shown_target.path}?{shown_target.query}")
        return text

    def close(self) -> None:
        self.session.close()


class HttpPredictor(Predictor):
    """predict(batch) over ``POST {url}/invocations`` of an endpoint speaking the wire contract."""

    def __init__(self, url: str, task: str, transport: TransportConfig | None = None, *,
                 session: requests.Session | None = None) -> None:
        check_task(task)
        transport = transport or TransportConfig()
        super().__init__(HttpConnection(url, transport, session), task, transport)
