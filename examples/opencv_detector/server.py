"""A small HTTP server that puts OpenCV's cascades behind the project's wire contract.

``POST /invocations`` takes ``application/x-npy`` (H, W, 3) or (N, H, W, 3) uint8 RGB, or one
``image/jpeg`` / ``image/png`` / ``application/x-image``, and answers per image the rows
``[class_id, score, x0/w, y0/h, x1/w, y1/h]`` (JSON lists, or float32 npy padded with -1
rows), sorted by score; ``X-Amzn-SageMaker-Custom-Attributes: score_threshold=..,top_k=..``
filters them, as the SageMaker handler does. ``GET /ping`` answers 200. Bodies are decoded
and answers encoded by ``serving.codecs`` (never unpickled); errors are JSON ``{"error",
"status"}`` with 400/404/406/411/413/415. Each request is handled in its own thread with that
thread's own ``cv2.CascadeClassifier``.
"""

from __future__ import annotations

import json
import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np

from serving.codecs import choose_response_type, decode_images, encode_detections, encode_error
from serving.errors import ServingError
from serving.settings import CUSTOM_ATTRIBUTES_HEADER, HandlerLimits, parse_custom_attributes

from .cascades import CascadeDetector

__all__ = ["DetectorServer"]

logger = logging.getLogger(__name__)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: the explain client reuses its connections
    server: _Server

    def log_message(self, format, *args):  # noqa: A002 - BaseHTTPRequestHandler's signature
        logger.debug("%s " + format, self.address_string(), *args)

    def _send(self, status: int, body: bytes | str, content_type: str) -> None:
        payload = body.encode("utf-8") if isinstance(body, str) else body
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def _error(self, status: int, message: str) -> None:
        self._send(status, encode_error(message, status), "application/json")

    def do_GET(self):  # noqa: N802 - http.server's naming
        if self.path.rstrip("/") == "/ping":
            self._send(200, json.dumps({"status": "healthy"}), "application/json")
        else:
            self._error(404, f"no such resource {self.path!r}; use GET /ping or POST /invocations")

    def do_POST(self):  # noqa: N802 - http.server's naming
        length_header = self.headers.get("Content-Length")
        if self.path.rstrip("/") != "/invocations":
            self._drain(length_header)
            self._error(404, f"no such resource {self.path!r}; POST images to /invocations")
            return
        if length_header is None or not length_header.strip().isdigit():
            self.close_connection = True
            self._error(411, "send a Content-Length header with the request body")
            return
        length = int(length_header)
        limits = self.server.limits
        if length > limits.max_body_bytes:
            self.close_connection = True
            self._error(413, f"the request body is {length} bytes, more than the limit of "
                             f"{limits.max_body_bytes}; send fewer images per request")
            return
        body = self.rfile.read(length)
        try:
            response_type = choose_response_type(self.headers.get("Accept"))
            options = parse_custom_attributes(self.headers.get(CUSTOM_ATTRIBUTES_HEADER),
                                              limits.score_threshold or 0.0, limits.top_k)
            images = decode_images(body, self.headers.get("Content-Type"), limits.max_body_bytes,
                                   limits.max_image_pixels)
            detections = [_filter(rows, options.score_threshold, options.top_k)
                          for rows in self.server.detector(images)]
            self._send(200, encode_detections(detections, response_type), response_type)
        except ServingError as error:
            self._error(error.status, error.message)

    def _drain(self, length_header: str | None) -> None:
        if length_header is not None and length_header.strip().isdigit():
            self.rfile.read(int(length_header))


def _filter(rows: np.ndarray, score_threshold: float, top_k: int | None) -> np.ndarray:
    """Rows (D, 6) sorted by score: those >= score_threshold, at most top_k. float32."""
    rows = rows[rows[:, 1] >= score_threshold]
    return (rows if top_k is None else rows[:top_k]).astype(np.float32)


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address, detector: CascadeDetector, limits: HandlerLimits):
        super().__init__(address, _Handler)
        self.detector = detector
        self.limits = limits


class DetectorServer:
    """OpenCV cascades served on ``host:port`` (port 0: a free one) until ``stop`` or the ``with`` block ends.

    names: cascades of ``cascades.CASCADES``, class ids in this order. ``url`` is the base
    address to give to ``python -m explain --endpoint``.
    """

    def __init__(self, names: tuple[str, ...] = ("face",), host: str = "127.0.0.1", port: int = 0,
                 limits: HandlerLimits | None = None):
        self.detector = CascadeDetector(tuple(names))
        self.limits = limits or HandlerLimits()
        self._server = _Server((host, port), self.detector, self.limits)
        self._thread: threading.Thread | None = None

    @property
    def class_names(self) -> list[str]:
        return list(self.detector.names)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> DetectorServer:
        self._thread = threading.Thread(target=self._server.serve_forever, name="opencv-detector",
                                        daemon=True)
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        self._server.serve_forever()

    def stop(self) -> None:
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join()
            self._thread = None
        self._server.server_close()

    def __enter__(self) -> DetectorServer:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()
