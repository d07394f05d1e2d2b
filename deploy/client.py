"""A small HTTP client for a clearsight endpoint: encode images, POST /invocations, decode.

Usage::

    import numpy as np
    from deploy.client import EndpointClient

    client = EndpointClient("http://127.0.0.1:8080")
    images = np.zeros((2, 416, 416, 3), dtype=np.uint8)          # (N, H, W, 3) uint8
    detections = client.predict(images, score_threshold=0.5, top_k=10)
    for rows in detections:      # per image (D, 6) float32: class_id, score, x0, y0, x1, y1
        print(rows)

``encode_images`` and ``decode_predictions`` are pure functions shared with
``explain.predictors``: they speak the wire contract without any network.
"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Sequence
from urllib.parse import urlsplit

import numpy as np

from .errors import EndpointError

__all__ = [
    "EndpointClient",
    "encode_images",
    "decode_predictions",
    "format_custom_attributes",
    "REQUEST_CONTENT_TYPES",
    "RESPONSE_CONTENT_TYPES",
    "CUSTOM_ATTRIBUTES_HEADER",
]

logger = logging.getLogger(__name__)

NPY = "application/x-npy"
JSON = "application/json"
JPEG = "image/jpeg"
PNG = "image/png"
REQUEST_CONTENT_TYPES = (NPY, JPEG, PNG)
RESPONSE_CONTENT_TYPES = (JSON, NPY)
CUSTOM_ATTRIBUTES_HEADER = "X-Amzn-SageMaker-Custom-Attributes"
_PIL_FORMATS = {JPEG: "JPEG", PNG: "PNG"}
_MAX_MESSAGE_CHARS = 500


def _media_type(content_type: str) -> str:
    """``'application/json; charset=utf-8'`` -> ``'application/json'``."""
    return content_type.split(";", 1)[0].strip().lower()


def _as_batch(images) -> np.ndarray:
    """One (H, W, 3) array, an (N, H, W, 3) array or a list of equal (H, W, 3) arrays -> (N, H, W, 3) uint8."""
    if isinstance(images, (list, tuple)):
        if not images:
            raise ValueError("images is an empty list: pass at least one (H, W, 3) uint8 array")
        shapes = {np.shape(image) for image in images}
        if len(shapes) != 1:
            raise ValueError(
                f"images in one request must share one size, got shapes {sorted(shapes)}; "
                "resize them or send them in separate requests")
        batch = np.stack([np.asarray(image) for image in images])
    else:
        batch = np.asarray(images)
        if batch.ndim == 3:
            batch = batch[np.newaxis]
    if batch.ndim != 4 or batch.shape[-1] != 3 or 0 in batch.shape:
        raise ValueError(
            f"images must have shape (H, W, 3) or (N, H, W, 3) with RGB channels last, "
            f"got shape {batch.shape}")
    if batch.dtype != np.uint8:
        raise ValueError(
            f"images must be uint8 (0..255), got dtype {batch.dtype}; "
            "convert with np.clip(images, 0, 255).astype(np.uint8)")
    return batch


def encode_images(images, content_type: str = NPY) -> bytes:
    """Encode images as a request body.

    images: (H, W, 3) or (N, H, W, 3) uint8, or a list of equal (H, W, 3) uint8 arrays.
    ``application/x-npy`` holds the whole (N, H, W, 3) batch (``np.save``);
    ``image/jpeg`` and ``image/png`` hold exactly one image (PIL; JPEG at quality 95).
    """
    media_type = _media_type(content_type)
    batch = _as_batch(images)
    if media_type == NPY:
        buffer = io.BytesIO()
        np.save(buffer, np.ascontiguousarray(batch), allow_pickle=False)
        return buffer.getvalue()
    if media_type in _PIL_FORMATS:
        if batch.shape[0] != 1:
            raise ValueError(
                f"{media_type} carries one image per request, got {batch.shape[0]}; "
                f"use {NPY} to send a batch")
        from PIL import Image

        buffer = io.BytesIO()
        options = {"quality": 95} if media_type == JPEG else {}
        Image.fromarray(batch[0], mode="RGB").save(buffer, format=_PIL_FORMATS[media_type], **options)
        return buffer.getvalue()
    raise ValueError(
        f"unsupported request content type {content_type!r}; "
        f"use one of {', '.join(REQUEST_CONTENT_TYPES)}")


def npy_body_size(shape: Sequence[int], dtype=np.uint8) -> int:
    """Exact byte size of ``np.save`` of a C-ordered array of this shape and dtype (header included)."""
    header = {
        "descr": np.lib.format.dtype_to_descr(np.dtype(dtype)),
        "fortran_order": False,
        "shape": tuple(int(size) for size in shape),
    }
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, header)
    return buffer.tell() + int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize


def _entry_as_array(entry, index: int) -> np.ndarray:
    """One image's JSON entry: list of 6-number rows -> (D, 6) float32; list of numbers -> (C,) float32."""
    if not isinstance(entry, list):
        raise ValueError(f"response entry {index} is {type(entry).__name__}, expected a list")
    if not entry:
        return np.zeros((0, 6), dtype=np.float32)
    try:
        array = np.asarray(entry, dtype=np.float32)
    except (TypeError, ValueError) as error:
        raise ValueError(f"response entry {index} is not a list of numbers or of rows: {error}") from None
    if array.ndim == 2 and array.shape[1] != 6:
        raise ValueError(
            f"response entry {index} has rows of {array.shape[1]} numbers; detection rows have 6 "
            "[class_id, score, x0, y0, x1, y1]")
    if array.ndim not in (1, 2):
        raise ValueError(f"response entry {index} has {array.ndim} dimensions, expected 1 or 2")
    return array


def _strip_padding(rows: np.ndarray) -> np.ndarray:
    """(D_max, 6) rows padded with -1 rows -> (D, 6) rows whose class id is not -1."""
    return np.ascontiguousarray(rows[rows[:, 0] != -1])


def decode_predictions(body: bytes, content_type: str) -> list[np.ndarray]:
    """Decode a response body into one float32 array per image.

    Detection: per image (D, 6) float32 rows [class_id, score, x0/w, y0/h, x1/w, y1/h]
    (D may be 0). Classification: per image (C,) float32 probabilities.
    ``application/json``: a list (one entry per image) of lists; a bare list of numbers is
    one image's class probabilities. ``application/x-npy``: (N, D_max, 6) float32 detections
    padded with rows of -1 (padding stripped here) or (N, C) float32 probabilities.
    """
    media_type = _media_type(content_type)
    if media_type == JSON:
        try:
            payload = json.loads(body)
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            raise ValueError(f"response is not valid JSON: {error}") from None
        if isinstance(payload, dict) and "prediction" in payload:
            payload = payload["prediction"]
        if not isinstance(payload, list):
            raise ValueError(f"JSON response must be a list (one entry per image), got {type(payload).__name__}")
        if payload and all(isinstance(item, (int, float)) and not isinstance(item, bool) for item in payload):
            return [np.asarray(payload, dtype=np.float32)]
        return [_entry_as_array(entry, index) for index, entry in enumerate(payload)]
    if media_type == NPY:
        try:
            array = np.load(io.BytesIO(body), allow_pickle=False)
        except (ValueError, OSError, EOFError) as error:
            raise ValueError(f"response is not a valid .npy array: {error}") from None
        if array.ndim == 3 and array.shape[2] == 6:
            return [_strip_padding(rows.astype(np.float32)) for rows in array]
        if array.ndim == 2:
            return [row.astype(np.float32) for row in array]
        raise ValueError(
            f"npy response has shape {array.shape}; expected (N, D_max, 6) detections or "
            "(N, C) class probabilities")
    raise ValueError(
        f"unsupported response content type {content_type!r}; "
        f"expected one of {', '.join(RESPONSE_CONTENT_TYPES)}")


def format_custom_attributes(score_threshold: float | None = None, top_k: int | None = None) -> str | None:
    """``score_threshold=0.5, top_k=10`` -> ``'score_threshold=0.5,top_k=10'`` (None when both unset)."""
    parts = []
    if score_threshold is not None:
        parts.append(f"score_threshold={float(score_threshold):g}")
    if top_k is not None:
        parts.append(f"top_k={int(top_k)}")
    return ",".join(parts) or None


def _error_message(body: bytes, reason: str) -> str:
    """The server's message: the ``error`` field of our JSON errors, the ``message`` field of
    multi-model-server's own (``{"code", "type", "message"}``), else the start of the body text."""
    text = body.decode("utf-8", errors="replace").strip()
    try:
        payload = json.loads(text)
    except ValueError:
        payload = None
    if isinstance(payload, dict):
        for field in ("error", "message"):
            if isinstance(payload.get(field), str):
                return payload[field]
    if not text:
        return reason or "empty response body"
    first_line = text.splitlines()[0]
    return first_line[:_MAX_MESSAGE_CHARS]


class EndpointClient:
    """Client for ``POST {url}/invocations`` of a clearsight endpoint.

    url: base URL (``http://127.0.0.1:8080``) or the full ``.../invocations`` URL.
    timeout: seconds to wait for a response (SageMaker answers within 60 s).
    session: a ``requests.Session`` to reuse (connection pool, proxies); one is created if None.
    """

    def __init__(self, url: str, timeout: float = 70.0, session=None) -> None:
        import requests

        parsed = urlsplit(url)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise ValueError(f"endpoint URL must look like http://HOST:PORT, got {url!r}")
        url = url.rstrip("/")
        self.url = url if url.endswith("/invocations") else url + "/invocations"
        self.timeout = timeout
        self.session = session if session is not None else requests.Session()

    def invoke(self, body: bytes, content_type: str, accept: str,
               custom_attributes: str | None = None) -> tuple[bytes, str]:
        """POST one request body; return (response body, response content type).

        Raises EndpointError(status, message) for an HTTP error status, and
        EndpointError(None, message) when no response arrived (connection error, timeout).
        """
        import requests

        headers = {"Content-Type": content_type, "Accept": accept}
        if custom_attributes:
            headers[CUSTOM_ATTRIBUTES_HEADER] = custom_attributes
        try:
            response = self.session.post(self.url, data=body, headers=headers, timeout=self.timeout)
        except requests.Timeout:
            raise EndpointError(None, f"no response from {self.url} within {self.timeout:g} s") from None
        except requests.ConnectionError as error:
            raise EndpointError(None, f"cannot connect to {self.url}: {error}") from None
        except requests.exceptions.ChunkedEncodingError as error:
            raise EndpointError(None, f"connection to {self.url} broke mid-response: {error}") from None
        if response.status_code >= 400:
            raise EndpointError(response.status_code, _error_message(response.content, response.reason))
        return response.content, response.headers.get("Content-Type", accept)

    def predict(self, images, content_type: str = NPY, accept: str = JSON,
                score_threshold: float | None = None, top_k: int | None = None) -> list[np.ndarray]:
        """Predict on images: (H, W, 3) or (N, H, W, 3) uint8, or a list of equal (H, W, 3) uint8 arrays.

        Returns one float32 array per image: detection (D, 6), classification (C,).
        Raises EndpointError for a failed call, ValueError for an unusable response.
        npy sends the batch in one request; jpeg/png send one request per image.
        """
        batch = _as_batch(images)
        attributes = format_custom_attributes(score_threshold, top_k)
        if _media_type(content_type) == NPY:
            chunks = [batch]
        else:
            chunks = [batch[index:index + 1] for index in range(batch.shape[0])]
        predictions: list[np.ndarray] = []
        for chunk in chunks:
            body, response_type = self.invoke(encode_images(chunk, content_type), content_type, accept, attributes)
            decoded = decode_predictions(body, response_type)
            if len(decoded) != chunk.shape[0]:
                raise ValueError(
                    f"endpoint answered {len(decoded)} predictions for {chunk.shape[0]} images")
            predictions.extend(decoded)
        return predictions

    def close(self) -> None:
        """Close the underlying session's connections."""
        self.session.close()

    def __enter__(self) -> EndpointClient:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()
