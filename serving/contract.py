"""The wire contract both sides share: media types, headers, limits, task names and the client's codecs.

The bottom layer of the project: it imports the standard library and numpy only (Pillow lazily,
for JPEG/PNG request bodies) and parses as Python 3.8, because serving/ ships it inside
model.tar.gz and the SageMaker MXNet container runs it there, while deploy/ and explain/ import
it on the client side (explain without mxnet, on numpy 1 or 2). What the handler does with a
request lives in ``serving.codecs``; what a client sends and reads back lives here.

Requests: ``application/x-npy`` of shape (H, W, 3) or (N, H, W, 3) uint8 (or float in 0..255:
a float image whose largest value lies in (0, 1] looks normalised to 0..1 and the batch is
refused with 400; images of one size per request); ``image/jpeg``, ``image/png`` or ``application/x-image``
(one image). Responses, per image: detection rows ``[class_id, score, x0/w, y0/h, x1/w, y1/h]``
or class probabilities, as JSON lists or npy.
"""
import io
import json
import re
from urllib.parse import urlsplit, urlunsplit

import numpy as np

# --- media types -------------------------------------------------------------------------
NPY = "application/x-npy"
JSON = "application/json"
JPEG = "image/jpeg"
PNG = "image/png"
X_IMAGE = "application/x-image"
IMAGE_TYPES = (JPEG, PNG, X_IMAGE)
# what the handler decodes and encodes
REQUEST_TYPES = (NPY,) + IMAGE_TYPES
RESPONSE_TYPES = (JSON, NPY)
# what a client writes with encode_images (application/x-image is a SageMaker alias it never needs)
CLIENT_REQUEST_TYPES = (NPY, JPEG, PNG)

# --- headers -----------------------------------------------------------------------------
CUSTOM_ATTRIBUTES_HEADER = "X-Amzn-SageMaker-Custom-Attributes"

# --- tasks -------------------------------------------------------------------------------
TASKS = ("detection", "classification")

# --- limits ------------------------------------------------------------------------------
# multi-model-server refuses bodies above its max_request_size, 6,553,500 bytes by default.
MMS_MAX_REQUEST_BYTES = 6553500
# A SageMaker real-time InvokeEndpoint body is at most 6 MiB.
SAGEMAKER_MAX_REQUEST_BYTES = 6291456
# Images in one request: the endpoint's default limit (SERVING_MAX_IMAGES_PER_REQUEST, see
# serving/settings.py for how it was chosen); clients pack at most this many by default.
MAX_IMAGES_PER_REQUEST = 64
# npy header bytes a batch needs at most (np.save pads the header to a multiple of 64).
_NPY_HEADER_ALLOWANCE = 256

# --- names -------------------------------------------------------------------------------
# SageMaker endpoint (and job) names: 1-63 letters, digits and hyphens, no leading or trailing hyphen.
ENDPOINT_NAME_PATTERN = r"[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}"
_ENDPOINT_NAME = re.compile(ENDPOINT_NAME_PATTERN)

_PIL_FORMATS = {JPEG: "JPEG", PNG: "PNG"}
_MAX_MESSAGE_CHARS = 500

__all__ = [
    "NPY", "JSON", "JPEG", "PNG", "X_IMAGE", "IMAGE_TYPES", "REQUEST_TYPES", "RESPONSE_TYPES",
    "CLIENT_REQUEST_TYPES", "CUSTOM_ATTRIBUTES_HEADER", "TASKS", "MMS_MAX_REQUEST_BYTES",
    "SAGEMAKER_MAX_REQUEST_BYTES", "MAX_IMAGES_PER_REQUEST", "ENDPOINT_NAME_PATTERN", "is_endpoint_name", "media_type",
    "npy_body_size", "images_per_request", "as_image_batch", "encode_images", "decode_predictions",
    "format_custom_attributes", "request_headers", "invocations_url", "redact_url", "is_retryable_status",
    "error_message", "entry_as_array",
]


def is_endpoint_name(name):
    """Whether ``name`` is a valid SageMaker endpoint name (1-63 letters, digits, hyphens)."""
    return isinstance(name, str) and _ENDPOINT_NAME.fullmatch(name) is not None


def media_type(header):
    """``'Image/JPEG; q=1'`` -> ``'image/jpeg'``; None or empty -> ''."""
    if not header:
        return ""
    return header.split(";", 1)[0].strip().lower()


# --- request sizes -----------------------------------------------------------------------

def npy_body_size(shape, dtype=np.uint8):
    """Exact byte size of ``np.save`` of a C-ordered array of this shape and dtype (header included)."""
    header = {
        "descr": np.lib.format.dtype_to_descr(np.dtype(dtype)),
        "fortran_order": False,
        "shape": tuple(int(size) for size in shape),
    }
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, header)
    return buffer.tell() + int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize


def images_per_request(image_shape, content_type, max_payload_bytes):
    """How many images of ``image_shape`` (H, W, 3) uint8 one request body of at most
    ``max_payload_bytes`` carries: as many as fit for npy (exact header included), one for
    JPEG/PNG (their size is known only once encoded). 0 when not even one npy image fits.
    """
    if media_type(content_type) != NPY:
        return 1
    image_shape = tuple(int(size) for size in image_shape)
    image_bytes = int(np.prod(image_shape, dtype=np.int64))
    per_request = max(0, (max_payload_bytes - _NPY_HEADER_ALLOWANCE) // image_bytes)
    while per_request > 0 and npy_body_size((per_request,) + image_shape) > max_payload_bytes:
        per_request -= 1
    while npy_body_size((per_request + 1,) + image_shape) <= max_payload_bytes:
        per_request += 1
    return per_request


# --- requests ----------------------------------------------------------------------------

def as_image_batch(images):
    """One (H, W, 3) array, an (N, H, W, 3) array or a list of equal (H, W, 3) arrays -> (N, H, W, 3) uint8.

    Raises ValueError naming the problem (empty list, mixed sizes, wrong shape, not uint8).
    """
    if isinstance(images, (list, tuple)):
        if not images:
            raise ValueError("images is an empty list: pass at least one (H, W, 3) uint8 array")
        shapes = {np.shape(image) for image in images}
        if len(shapes) != 1:
            raise ValueError(
                "images in one request must share one size, got shapes %s; "
                "resize them or send them in separate requests" % sorted(shapes))
        batch = np.stack([np.asarray(image) for image in images])
    else:
        batch = np.asarray(images)
    given = batch.shape  # as passed (a list: the stacked shape), not after adding the batch axis
    if batch.ndim == 3:
        batch = batch[np.newaxis]
    if batch.ndim != 4 or batch.shape[-1] != 3 or 0 in batch.shape:
        raise ValueError(
            "images must have shape (H, W, 3) or (N, H, W, 3) with RGB channels last, "
            "got shape %s" % (given,))
    if batch.dtype != np.uint8:
        raise ValueError(
            "images must be uint8 (0..255), got dtype %s; "
            "convert with np.clip(images, 0, 255).astype(np.uint8)" % batch.dtype)
    return batch


# A float image whose largest value lies in (0, 1] was normalised to 0..1 by the client (the
# commonest preprocessing mistake): rounded to uint8 it would be a black image, and its answer
# wrong without a word. The rule is per image, so a 0..255 image beside it in the batch does not
# hide it. In 0..255 such an image is black already, so nothing real is refused; an all-zero
# image stays accepted.
FLOAT_PIXELS_NORMALISED_MAX = 1.0


def pixel_value_problem(images):
    """Why a batch that is not uint8 cannot be read as 0..255 pixels, or None when it can.

    images: (N, H, W, C) of any numeric dtype. The problems, in this order: NaN or infinite
    values; values outside 0..255; a float image whose largest value lies in (0, 1]
    (``FLOAT_PIXELS_NORMALISED_MAX``: normalised to 0..1, black once rounded). The handler
    answers each with 400; a client refuses such a batch before sending it.
    """
    if images.dtype.kind == "f" and not np.all(np.isfinite(images)):
        return "the batch holds NaN or infinite values; pixels must be finite numbers in 0..255"
    # each image's largest value, reduced in place over the (possibly Fortran-ordered) buffer: no copy
    image_maxima = images.max(axis=(1, 2, 3))
    low, high = images.min(), image_maxima.max()
    if low < 0 or high > 255:
        return "pixel values must lie in 0..255; this batch spans %s..%s" % (low.item(), high.item())
    if images.dtype.kind == "f":
        normalised = np.flatnonzero((image_maxima > 0) & (image_maxima <= FLOAT_PIXELS_NORMALISED_MAX))
        if normalised.size:
            index = int(normalised[0])
            return ("pixels look normalised to 0..1 in image %d (max %s); send 0..255 values (multiply by 255) "
                    "or uint8 pixels: a float image whose largest value is above 0 and at most 1 is refused, "
                    "as it would be black once rounded to 0..255" % (index, _short_number(image_maxima[index])))
    return None


def _short_number(value):
    """A float in 4 significant digits for a message (``0.98``, not ``0.9800000190734863``)."""
    return "%.4g" % float(value)


def encode_images(images, content_type=NPY):
    """Encode images as a request body (bytes).

    images: (H, W, 3) or (N, H, W, 3) uint8, or a list of equal (H, W, 3) uint8 arrays.
    ``application/x-npy`` holds the whole (N, H, W, 3) batch (``np.save``);
    ``image/jpeg`` and ``image/png`` hold exactly one image (Pillow; JPEG at quality 95).
    """
    kind = media_type(content_type)
    batch = as_image_batch(images)
    if kind == NPY:
        buffer = io.BytesIO()
        np.save(buffer, np.ascontiguousarray(batch), allow_pickle=False)
        return buffer.getvalue()
    if kind in _PIL_FORMATS:
        if batch.shape[0] != 1:
            raise ValueError(
                "%s carries one image per request, got %d; use %s to send a batch"
                % (kind, batch.shape[0], NPY))
        from PIL import Image  # only JPEG/PNG bodies need Pillow

        buffer = io.BytesIO()
        options = {"quality": 95} if kind == JPEG else {}
        Image.fromarray(np.ascontiguousarray(batch[0])).save(buffer, format=_PIL_FORMATS[kind], **options)
        return buffer.getvalue()
    raise ValueError(
        "unsupported request content type %r; use one of %s" % (content_type, ", ".join(CLIENT_REQUEST_TYPES)))


def format_custom_attributes(score_threshold=None, top_k=None):
    """``score_threshold=0.5, top_k=10`` -> ``'score_threshold=0.5,top_k=10'`` (None when both unset)."""
    parts = []
    if score_threshold is not None:
        parts.append("score_threshold=%g" % float(score_threshold))
    if top_k is not None:
        parts.append("top_k=%d" % int(top_k))
    return ",".join(parts) or None


def request_headers(content_type, accept, custom_attributes=None):
    """The HTTP headers of one ``POST /invocations``."""
    headers = {"Content-Type": content_type, "Accept": accept}
    if custom_attributes:
        headers[CUSTOM_ATTRIBUTES_HEADER] = custom_attributes
    return headers


def invocations_url(url):
    """``http://127.0.0.1:8080`` (or the full ``.../invocations`` URL) -> ``http://127.0.0.1:8080/invocations``.

    A query string stays after the path (``http://gw/prod?api_key=K`` -> ``http://gw/prod/invocations?api_key=K``:
    API gateways take keys there). Raises ValueError for anything but an http(s) URL with a host (and a
    port in 1-65535 when one is given).
    """
    parsed = urlsplit(url) if isinstance(url, str) else None
    if parsed is None or parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise ValueError("endpoint URL must look like http://HOST:PORT, got %r" % (redact_url(url),))
    try:
        port = parsed.port  # ValueError for a port that is not a number or above 65535
    except ValueError:
        port = 0
    if not parsed.hostname:
        raise ValueError("endpoint URL must look like http://HOST:PORT with a HOST, got %r" % (redact_url(url),))
    if port == 0:
        raise ValueError("endpoint URL must look like http://HOST:PORT with a PORT in 1-65535, got %r"
                         % (redact_url(url),))
    path = parsed.path.rstrip("/")
    if not path.endswith("/invocations"):
        path += "/invocations"
    return urlunsplit((parsed.scheme, parsed.netloc, path, parsed.query, parsed.fragment))


def redact_url(url):
    """A URL as it may be shown or stored: passwords and query values replaced by ``***``.

    ``http://user:secret@host:8080/x`` -> ``http://user:***@host:8080/x``; a lone user part
    (``http://TOKEN@host``, often a token) becomes ``***``; every query value too
    (``?api_key=K&stage=prod`` -> ``?api_key=***&stage=***``; a bare ``?TOKEN`` -> ``?***``),
    as gateways take keys there. Anything without credentials or a query (other URLs,
    ``sagemaker:NAME``, paths) comes back as it is.
    """
    if not isinstance(url, str) or ("@" not in url and "?" not in url):
        return url
    parsed = urlsplit(url)
    if "@" not in parsed.netloc and not parsed.query:
        return url
    netloc = parsed.netloc
    if "@" in netloc:
        userinfo, _, host = netloc.rpartition("@")
        user, colon, _ = userinfo.partition(":")
        netloc = "%s@%s" % ("%s:***" % user if colon else "***", host)
    return urlunsplit((parsed.scheme, netloc, parsed.path, _redact_query(parsed.query), parsed.fragment))


def _redact_query(query):
    """``a=1&b=2`` -> ``a=***&b=***``; a parameter without ``=`` is all value (``TOKEN`` -> ``***``)."""
    if not query:
        return query
    parts = []
    for part in query.split("&"):
        name, equals, _ = part.partition("=")
        parts.append("%s=***" % name if equals else ("***" if part else part))
    return "&".join(parts)


# --- responses ---------------------------------------------------------------------------

def is_retryable_status(status):
    """True for failures worth retrying: no response (None), 429 and every 5xx (503 included)."""
    return status is None or status == 429 or status >= 500


def error_message(body, reason=""):
    """The server's message in an error response: the ``error`` field of the handler's JSON
    errors, the ``message`` field of multi-model-server's own (``{"code", "type", "message"}``),
    else the first line of the body text (``reason``, the HTTP reason phrase, when it is empty).
    """
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
    return text.splitlines()[0][:_MAX_MESSAGE_CHARS]


def entry_as_array(entry, index):
    """One image's JSON entry: list of 6-number rows -> (D, 6) float32; list of numbers -> (C,) float32."""
    if not isinstance(entry, list):
        raise ValueError("response entry %d is %s, expected a list" % (index, type(entry).__name__))
    if not entry:
        return np.zeros((0, 6), dtype=np.float32)
    try:
        array = np.asarray(entry, dtype=np.float32)
    except (TypeError, ValueError) as error:
        raise ValueError("response entry %d is not a list of numbers or of rows: %s" % (index, error)) from None
    if array.ndim == 2 and array.shape[1] != 6:
        raise ValueError(
            "response entry %d has rows of %d numbers; detection rows have 6 "
            "[class_id, score, x0, y0, x1, y1]" % (index, array.shape[1]))
    if array.ndim not in (1, 2):
        raise ValueError("response entry %d has %d dimensions, expected 1 or 2" % (index, array.ndim))
    return array


def _strip_padding(rows):
    """(D_max, 6) rows padded with -1 rows -> (D, 6) rows whose class id is not -1."""
    return np.ascontiguousarray(rows[rows[:, 0] != -1])


def _load_npy_response(body):
    """An npy response body -> array, never allocating more than the body carries.

    The header's shape and dtype announce a size; it must equal the data that follows, so a
    header claiming an enormous shape is refused before any allocation (np.load would
    allocate the announced size first). Object arrays are refused (never unpickled).
    """
    stream = io.BytesIO(body)
    try:
        version = np.lib.format.read_magic(stream)
        if version == (1, 0):
            shape, fortran_order, dtype = np.lib.format.read_array_header_1_0(stream)
        elif version == (2, 0):
            shape, fortran_order, dtype = np.lib.format.read_array_header_2_0(stream)
        else:
            raise ValueError("npy format version %d.%d is not supported (1.0 and 2.0 are)" % version)
    except (ValueError, OSError, EOFError, SyntaxError) as error:
        raise ValueError("response is not a valid .npy array: %s" % error) from None
    if dtype.kind not in "biuf":
        raise ValueError("npy response has dtype %s; expected numbers (float32)" % dtype)
    count = 1
    for size in shape:
        count *= int(size)
    announced = count * dtype.itemsize
    carried = len(body) - stream.tell()
    if announced != carried:
        raise ValueError(
            "npy response announces shape %s of %s (%d bytes of data) but carries %d bytes; "
            "the response is truncated or corrupt" % (tuple(shape), dtype, announced, carried))
    array = np.frombuffer(body, dtype=dtype, count=count, offset=stream.tell())
    return array.reshape(shape, order="F" if fortran_order else "C")


def decode_predictions(body, content_type):
    """Decode a response body into one float32 array per image.

    Detection: per image (D, 6) float32 rows [class_id, score, x0/w, y0/h, x1/w, y1/h]
    (D may be 0). Classification: per image (C,) float32 probabilities.
    ``application/json``: a list (one entry per image) of lists; a bare list of numbers is
    one image's class probabilities. ``application/x-npy``: (N, D_max, 6) float32 detections
    padded with rows of -1 (padding stripped here) or (N, C) float32 probabilities.
    Raises ValueError for a body that is none of these.
    """
    kind = media_type(content_type)
    if kind == JSON:
        try:
            payload = json.loads(body)
        except (UnicodeDecodeError, ValueError) as error:
            raise ValueError("response is not valid JSON: %s" % error) from None
        if isinstance(payload, dict) and "prediction" in payload:
            payload = payload["prediction"]
        if not isinstance(payload, list):
            raise ValueError("JSON response must be a list (one entry per image), got %s" % type(payload).__name__)
        if payload and all(isinstance(item, (int, float)) and not isinstance(item, bool) for item in payload):
            return [np.asarray(payload, dtype=np.float32)]
        return [entry_as_array(entry, index) for index, entry in enumerate(payload)]
    if kind == NPY:
        array = _load_npy_response(body)
        if array.ndim == 3 and array.shape[2] == 6:
            return [_strip_padding(rows.astype(np.float32)) for rows in array]
        if array.ndim == 2:
            return [row.astype(np.float32) for row in array]
        raise ValueError(
            "npy response has shape %s; expected (N, D_max, 6) detections or (N, C) class probabilities"
            % (array.shape,))
    raise ValueError(
        "unsupported response content type %r; expected one of %s" % (content_type, ", ".join(RESPONSE_TYPES)))
