"""Request decoding and response encoding for the wire contract (npy batches, JPEG/PNG images, JSON)."""
import io
import json

import numpy as np
from PIL import Image, ImageFile

# the media types live in the shared wire contract; imported here for the handler (codecs.JSON, ...)
from .contract import (
    JSON,
    NPY,
    REQUEST_TYPES,
    RESPONSE_TYPES,
    media_type,
)
from .errors import (
    BadRequestError,
    NotAcceptableError,
    PayloadTooLargeError,
    UnsupportedMediaTypeError,
)


def choose_response_type(accept):
    """Pick the first type of an Accept header the handler can produce (JSON when none is given)."""
    if not accept:
        return JSON
    for candidate in accept.split(","):
        kind = media_type(candidate)
        if kind in ("*/*", "application/*"):
            return JSON
        if kind in RESPONSE_TYPES:
            return kind
    raise NotAcceptableError(
        "Accept %r names no format this endpoint produces; use one of: %s" % (accept, ", ".join(RESPONSE_TYPES))
    )


def decode_images(body, content_type, max_body_bytes, max_image_pixels):
    """Decode a request body into a batch of RGB images.

    Args:
        body: the request body (bytes; the toolkit hands text types over as str).
        content_type: the request's Content-Type header.
        max_body_bytes: larger bodies are refused with 413.
        max_image_pixels: images with more pixels (H * W) are refused with 413.

    Returns:
        ``(N, H, W, 3)`` uint8 array, N >= 1.
    """
    kind = media_type(content_type)
    if kind not in REQUEST_TYPES:
        raise UnsupportedMediaTypeError(
            "Content-Type %r is not supported; send one of: %s" % (content_type, ", ".join(REQUEST_TYPES))
        )
    if isinstance(body, str):
        body = body.encode("utf-8")
    if body is None or len(body) == 0:
        raise BadRequestError("the request body is empty; send an image or an .npy batch")
    if len(body) > max_body_bytes:
        raise PayloadTooLargeError(
            "the request body is %d bytes, more than the limit of %d; send fewer images per request"
            % (len(body), max_body_bytes)
        )
    if kind == NPY:
        images = _decode_npy(body, max_image_pixels)
    else:
        images = _decode_image_file(body, kind, max_image_pixels)[None]
    return images


def _decode_npy(body, max_image_pixels):
    stream = io.BytesIO(body)
    try:
        version = np.lib.format.read_magic(stream)
        if version == (1, 0):
            shape, fortran_order, dtype = np.lib.format.read_array_header_1_0(stream)
        else:
            shape, fortran_order, dtype = np.lib.format.read_array_header_2_0(stream)
    except (ValueError, EOFError, SyntaxError) as error:
        raise BadRequestError("the body is not a valid .npy array (%s); write it with numpy.save" % error)
    if dtype.hasobject:
        raise BadRequestError("object arrays are refused (they would need unpickling); send uint8 or float pixels")
    if dtype.kind not in "uif":
        raise BadRequestError("dtype %s is not supported; send uint8 (or float in 0..255) pixels" % dtype)
    if len(shape) == 3:
        shape = (1,) + tuple(shape)
        single = True
    else:
        single = False
    if len(shape) != 4:
        raise BadRequestError(
            "an .npy body must have shape (H, W, 3) or (N, H, W, 3); got rank %d %s" % (len(shape) - single, shape)
        )
    count, height, width, channels = shape
    if channels != 3:
        raise BadRequestError("images must have 3 channels (RGB) in the last axis; got shape %s" % (shape,))
    if count == 0 or height == 0 or width == 0:
        raise BadRequestError("the batch is empty: shape %s" % (shape,))
    if height * width > max_image_pixels:
        raise PayloadTooLargeError(
            "images of %dx%d = %d pixels exceed the limit of %d pixels" % (width, height, height * width, max_image_pixels)
        )
    expected = count * height * width * channels * dtype.itemsize
    remaining = len(body) - stream.tell()
    if remaining != expected:
        raise BadRequestError(
            "the .npy body is truncated or padded: its header announces %d bytes of data, the body holds %d"
            % (expected, remaining)
        )
    images = np.frombuffer(body, dtype=dtype, count=count * height * width * channels, offset=stream.tell())
    images = images.reshape((count, height, width, channels), order="F" if fortran_order else "C")
    if dtype.kind == "f":
        if not np.all(np.isfinite(images)):
            raise BadRequestError("the batch holds NaN or infinite values; pixels must be finite numbers in 0..255")
    if dtype != np.uint8:
        low, high = images.min(), images.max()
        if low < 0 or high > 255:
            raise BadRequestError(
                "pixel values must lie in 0..255; this batch spans %s..%s" % (low.item(), high.item())
            )
        images = np.round(images).astype(np.uint8)
    return np.ascontiguousarray(images)


def _decode_image_file(body, kind, max_image_pixels):
    try:
        image = Image.open(io.BytesIO(body))
    except Image.DecompressionBombError as error:
        raise PayloadTooLargeError("the image has too many pixels (%s)" % error)
    except (IOError, OSError, ValueError, SyntaxError) as error:
        raise BadRequestError("the body is not a readable %s image (%s)" % (kind, error))
    width, height = image.size
    if width * height > max_image_pixels:
        raise PayloadTooLargeError(
            "the image is %dx%d = %d pixels, more than the limit of %d pixels" % (width, height, width * height, max_image_pixels)
        )
    # Some libraries (gluoncv) switch truncated-image loading on for the whole process: refuse them here.
    tolerant = ImageFile.LOAD_TRUNCATED_IMAGES
    ImageFile.LOAD_TRUNCATED_IMAGES = False
    try:
        pixels = np.asarray(image.convert("RGB"), dtype=np.uint8)
    except (IOError, OSError, ValueError, SyntaxError, Image.DecompressionBombError) as error:
        raise BadRequestError("the %s image cannot be decoded, it may be truncated (%s)" % (kind, error))
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = tolerant
    if pixels.size == 0:
        raise BadRequestError("the image is empty")
    return pixels


def encode_detections(detections, response_type):
    """Encode per-image detections.

    Args:
        detections: list of N float32 arrays ``(D_i, 6)``.
        response_type: ``application/json`` (ragged lists) or ``application/x-npy``
            (float32 ``(N, D_max, 6)`` padded with rows of -1).
    """
    if response_type == NPY:
        longest = max([len(rows) for rows in detections] + [0])
        padded = np.full((len(detections), longest, 6), -1.0, dtype=np.float32)
        for index, rows in enumerate(detections):
            padded[index, : len(rows)] = rows
        return _npy_bytes(padded)
    return json.dumps([np.round(rows.astype(np.float64), 6).tolist() for rows in detections])


def encode_probabilities(probabilities, response_type):
    """Encode ``(N, C)`` float32 class probabilities as JSON lists or npy."""
    if response_type == NPY:
        return _npy_bytes(probabilities.astype(np.float32))
    return json.dumps(np.round(probabilities.astype(np.float64), 7).tolist())


def encode_error(message, status):
    """The JSON body of an error response."""
    return json.dumps({"error": message, "status": status})


def _npy_bytes(array):
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()
