"""A small HTTP client for a clearsight endpoint: encode images, POST /invocations, decode.

Usage::

    import numpy as np
    from deploy.client import EndpointClient

    client = EndpointClient("http://127.0.0.1:8080")
    images = np.zeros((2, 416, 416, 3), dtype=np.uint8)          # (N, H, W, 3) uint8
    detections = client.predict(images, score_threshold=0.5, top_k=10)
    for rows in detections:      # per image (D, 6) float32: class_id, score, x0, y0, x1, y1
        print(rows)

``encode_images`` and ``decode_predictions`` come from ``serving.contract``, the wire contract
that the handler and every client share: pure functions, no network.
"""

from __future__ import annotations

import logging

import numpy as np

from serving.contract import (
    CLIENT_REQUEST_TYPES,
    CUSTOM_ATTRIBUTES_HEADER,
    JSON,
    NPY,
    RESPONSE_TYPES,
    as_image_batch,
    decode_predictions,
    encode_images,
    error_message,
    format_custom_attributes,
    invocations_url,
    media_type,
    npy_body_size,
    redact_url,
    request_headers,
)

from .errors import EndpointError

__all__ = [
    "EndpointClient",
    "encode_images",
    "decode_predictions",
    "format_custom_attributes",
    "npy_body_size",
    "REQUEST_CONTENT_TYPES",
    "RESPONSE_CONTENT_TYPES",
    "CUSTOM_ATTRIBUTES_HEADER",
]

logger = logging.getLogger(__name__)

# the wire contract's names for what this client sends and reads
REQUEST_CONTENT_TYPES = CLIENT_REQUEST_TYPES
RESPONSE_CONTENT_TYPES = RESPONSE_TYPES


class EndpointClient:
    """Client for ``POST {url}/invocations`` of a clearsight endpoint.

    url: base URL (``http://127.0.0.1:8080``) or the full ``.../invocations`` URL.
    timeout: seconds to wait for a response (SageMaker answers within 60 s).
    session: a ``requests.Session`` to reuse (connection pool, proxies); one is created if None.
    """

    def __init__(self, url: str, timeout: float = 70.0, session=None) -> None:
        import requests  # deploy's runtime dependency, imported where a client is made

        self.url = invocations_url(url)
        self.shown_url = redact_url(self.url)  # in messages: never the password of user:password@
        self.timeout = timeout
        self.session = session if session is not None else requests.Session()

    def invoke(self, body: bytes, content_type: str, accept: str,
               custom_attributes: str | None = None) -> tuple[bytes, str]:
        """POST one request body; return (response body, response content type).

        Raises EndpointError(status, message) for an HTTP error status, and
        EndpointError(None, message) when no response arrived (connection error, timeout).
        """
        import requests

        headers = request_headers(content_type, accept, custom_attributes)
        try:
            response = self.session.post(self.url, data=body, headers=headers, timeout=self.timeout)
        except requests.Timeout:
            raise EndpointError(None, f"no response from {self.shown_url} within {self.timeout:g} s") from None
        except requests.ConnectionError as error:
            raise EndpointError(None, f"cannot connect to {self.shown_url}: {error}") from None
        except requests.exceptions.ChunkedEncodingError as error:
            raise EndpointError(None, f"connection to {self.shown_url} broke mid-response: {error}") from None
        if response.status_code >= 400:
            raise EndpointError(response.status_code, error_message(response.content, response.reason))
        return response.content, response.headers.get("Content-Type", accept)

    def predict(self, images, content_type: str = NPY, accept: str = JSON,
                score_threshold: float | None = None, top_k: int | None = None) -> list[np.ndarray]:
        """Predict on images: (H, W, 3) or (N, H, W, 3) uint8, or a list of equal (H, W, 3) uint8 arrays.

        Returns one float32 array per image: detection (D, 6), classification (C,).
        Raises EndpointError for a failed call, ValueError for an unusable response.
        npy sends the batch in one request; jpeg/png send one request per image.
        """
        batch = as_image_batch(images)
        attributes = format_custom_attributes(score_threshold, top_k)
        if media_type(content_type) == NPY:
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
