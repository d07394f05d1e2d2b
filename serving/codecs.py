"""Request decoding and response encoding for the wire contract (npy batches, JPEG/PNG images, JSON)."""
import io
import json
import re
import struct

import numpy as np
from PIL import Image, ImageFile, JpegImagePlugin, PngImagePlugin

# the media types live in the shared wire contract; imported here for the handler (codecs.JSON, ...)
from .contract import (
    JSON,
    NPY,
    REQUEST_TYPES,
    RESPONSE_TYPES,
    media_type,
    pixel_value_problem,
)
from .errors import (
    BadRequestError,
    NotAcceptableError,
    PayloadTooLargeError,
    UnsupportedMediaTypeError,
)


def choose_response_type(accept):
    """The type of an Accept header the handler can produce that the client rates highest (JSON when none is given).

    Each produced type takes the q-value of the most specific entry that matches it (its own
    name, else ``application/*``, else ``*/*``; q=1 when an entry names none); ``q=0`` excludes
    it. Equal ratings go to the entry written first, and a wildcard gives JSON before npy.
    Raises NotAcceptableError (406) when every produced type is excluded or none is named.
    """
    if not accept:
        return JSON
    ratings = {}  # produced type -> (specificity, q, position of the entry)
    for position, entry in enumerate(accept.split(",")):
        kind = media_type(entry)
        quality = _quality(entry)
        matches = [kind] if kind in RESPONSE_TYPES else []
        specificity = 2
        if kind in ("*/*", "application/*"):
            matches, specificity = list(RESPONSE_TYPES), (0 if kind == "*/*" else 1)
        for produced in matches:
            if produced not in ratings or specificity > ratings[produced][0]:
                ratings[produced] = (specificity, quality, position)
    acceptable = [(-quality, position, RESPONSE_TYPES.index(produced), produced)
                  for produced, (_, quality, position) in ratings.items() if quality > 0]
    if acceptable:
        return min(acceptable)[-1]
    raise NotAcceptableError(
        "Accept %r names no format this endpoint produces; use one of: %s" % (accept, ", ".join(RESPONSE_TYPES))
    )


def _quality(entry):
    """The q-value of one Accept entry (``'application/json;q=0.5'`` -> 0.5); 1 when absent or unreadable."""
    for parameter in entry.split(";")[1:]:
        name, _, value = parameter.partition("=")
        if name.strip().lower() == "q":
            try:
                return min(max(float(value.strip()), 0.0), 1.0)
            except ValueError:
                return 1.0
    return 1.0


def decode_images(body, content_type, max_body_bytes, max_image_pixels, check_batch=None):
    """Decode a request body into a batch of RGB images.

    Args:
        body: the request body (bytes; the toolkit hands text types over as str).
        content_type: the request's Content-Type header.
        max_body_bytes: larger bodies are refused with 413.
        max_image_pixels: images with more pixels (H * W) are refused with 413.
        check_batch: called as ``check_batch(count, height, width)`` once the header has been
            read and before any pixel is decoded, to refuse work the handler will not do (it
            raises a ServingError).

    Returns:
        ``(N, H, W, 3)`` uint8 array, N >= 1.
    """
    kind = media_type(content_type)
    if not kind:
        if content_type is None:  # the toolkit passes None when the header is absent
            raise UnsupportedMediaTypeError(
                "the request has no Content-Type header; send one of: %s" % ", ".join(REQUEST_TYPES))
        if not content_type.strip():  # "Content-Type: " is sent, with no value
            raise UnsupportedMediaTypeError(
                "the Content-Type header is empty; send one of: %s" % ", ".join(REQUEST_TYPES))
        # present but malformed ("; charset=utf-8"): saying "no header" sent the client looking for the wrong mistake
        raise UnsupportedMediaTypeError(
            "Content-Type %r names no media type; send one of: %s" % (content_type, ", ".join(REQUEST_TYPES)))
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
    check_batch = check_batch if check_batch is not None else _admit_any
    if kind == NPY:
        images = _decode_npy(body, max_image_pixels, check_batch)
    else:
        images = _decode_image_file(body, kind, max_image_pixels, check_batch)[None]
    return images


def _admit_any(count, height, width):
    return None


# numpy >= 1.24 refuses longer .npy headers by default (max_header_size); numpy.save writes
# about 128 bytes for an image batch. A longer header is not parsed at all.
MAX_NPY_HEADER_BYTES = 10000
# A dimension above this is no image (and above what mxnet indexes without large-tensor support).
MAX_NPY_DIMENSION = 2 ** 31 - 1


def _read_npy_header(body):
    """``(shape, fortran_order, dtype, data_offset)`` from an .npy body; BadRequestError if unusable."""
    stream = io.BytesIO(body)
    try:
        version = np.lib.format.read_magic(stream)
    except (ValueError, EOFError) as error:
        raise BadRequestError("the body is not a valid .npy array (%s); write it with numpy.save" % error)
    if version not in ((1, 0), (2, 0), (3, 0)):
        raise BadRequestError("the body is not a valid .npy array (format version %d.%d is unknown); "
                              "write it with numpy.save" % version)
    length_field = 2 if version == (1, 0) else 4  # bytes of the header-length field after the magic
    length_bytes = body[8:8 + length_field]
    if len(length_bytes) < length_field:
        raise BadRequestError("the body is too short for an .npy array: it ends after %d bytes, inside the "
                              ".npy header; send the whole file written by numpy.save" % len(body))
    header_length = int.from_bytes(length_bytes, "little")
    if header_length > MAX_NPY_HEADER_BYTES:
        raise BadRequestError("the .npy header is %d bytes long, more than the %d this endpoint reads "
                              "(numpy.save writes about 128); write the array with numpy.save"
                              % (header_length, MAX_NPY_HEADER_BYTES))
    try:
        if version == (1, 0):
            shape, fortran_order, dtype = np.lib.format.read_array_header_1_0(stream)
        else:  # 3.0 differs from 2.0 only by a utf-8 header; dtype names here are ascii
            shape, fortran_order, dtype = np.lib.format.read_array_header_2_0(stream)
    except (ValueError, EOFError, SyntaxError, TypeError, RecursionError, MemoryError) as error:
        raise BadRequestError("the body is not a valid .npy array (%s); write it with numpy.save"
                              % _scrub(error))
    return tuple(shape), fortran_order, dtype, stream.tell()


def _decode_npy(body, max_image_pixels, check_batch):
    shape, fortran_order, dtype, offset = _read_npy_header(body)
    if dtype.hasobject:
        # numpy makes a list of images of different sizes into an object array, which np.save
        # (and the SageMaker SDK's NumpySerializer) can only write as a pickle: say so.
        raise BadRequestError(
            "object arrays are refused (they would need unpickling); this body holds an object array "
            "(images of different sizes in one list?): send images of one size per request, or one "
            "request per image")
    if dtype.kind not in "uif":
        raise BadRequestError("dtype %s is not supported; send uint8 (or float in 0..255) pixels" % dtype)
    for axis, dimension in enumerate(shape):
        # np.lib.format takes a bool for an int: (True, 64, 64, 3) reached reshape and was a 500
        if isinstance(dimension, bool) or not isinstance(dimension, int):
            raise BadRequestError(
                "the .npy header announces shape %s, whose dimension %d is %r, not an integer: write the "
                "array with numpy.save" % (shape, axis, dimension))
    if any(dimension < 0 or dimension > MAX_NPY_DIMENSION for dimension in shape):
        raise BadRequestError(
            "the .npy header announces shape %s; every dimension must lie in 0..%d: write the array "
            "with numpy.save" % (shape, MAX_NPY_DIMENSION))
    sent_shape = tuple(shape)  # the messages name the shape the client sent, not the batch made of it
    if len(shape) == 3:
        shape = (1,) + sent_shape
    if len(shape) != 4:
        raise BadRequestError(
            "an .npy body must have shape (H, W, 3) or (N, H, W, 3); got rank %d %s" % (len(sent_shape), sent_shape)
        )
    count, height, width, channels = shape
    if channels != 3:
        raise BadRequestError("images must have 3 channels (RGB) in the last axis; got shape %s" % (sent_shape,))
    if count == 0 or height == 0 or width == 0:
        raise BadRequestError("the batch is empty: shape %s" % (sent_shape,))
    if height * width > max_image_pixels:
        raise PayloadTooLargeError(
            "images of %dx%d = %d pixels exceed the limit of %d pixels per image; send smaller images, or raise "
            "the limit with the environment variable SERVING_MAX_IMAGE_PIXELS"
            % (width, height, height * width, max_image_pixels))
    expected = count * height * width * channels * dtype.itemsize
    remaining = len(body) - offset
    if remaining != expected:
        raise BadRequestError(
            "the .npy body is truncated or padded: its header announces %d bytes of data, the body holds %d"
            % (expected, remaining)
        )
    check_batch(count, height, width)
    images = np.frombuffer(body, dtype=dtype, count=count * height * width * channels, offset=offset)
    images = images.reshape((count, height, width, channels), order="F" if fortran_order else "C")
    if dtype != np.uint8:
        problem = pixel_value_problem(images)
        if problem is not None:
            raise BadRequestError(problem)
        images = np.round(images).astype(np.uint8)
    return np.ascontiguousarray(images)


# Only these are decoded: Pillow's other readers (GIF, BMP, TIFF, ICO, PPM, WebP, EPS -- the last
# through Ghostscript) are attack surface this endpoint does not need. Each format's first bytes
# (the PNG signature, JPEG's SOI marker and a marker's 0xFF) pick its reader, which reads the
# header only. Not through Image.open: it refused an image above Pillow's own, process-wide limit
# (2 x Image.MAX_IMAGE_PIXELS, 179 MP) with Pillow's message before SERVING_MAX_IMAGE_PIXELS was
# checked, so that a higher limit could not be configured (and it warned above 89 MP).
_READERS = (("PNG", b"\x89PNG\r\n\x1a\n", PngImagePlugin.PngImageFile),
            ("JPEG", b"\xff\xd8\xff", JpegImagePlugin.JpegImageFile))  # an MPO: its first image, as mxnet
# Pillow modes of 16-bit greyscale PNGs ("I" before Pillow 10, "I;16" after).
_SIXTEEN_BIT_GREY = ("I", "I;16", "I;16B", "I;16L")


def _open_image_file(body, kind):
    """The JPEG or PNG image in ``body``, its header read and no pixel decoded; BadRequestError otherwise."""
    for name, signature, reader in _READERS:
        if bytes(body[:len(signature)]) != signature:
            continue
        try:
            return reader(io.BytesIO(body))
        except (SyntaxError, IndexError, TypeError, KeyError, EOFError, struct.error):
            # what Image.open reports as "cannot identify image file"
            raise BadRequestError(
                "the body is not a readable %s image: it starts as a %s file but is truncated or corrupt; "
                "send the whole file" % (kind, name))
        except (IOError, OSError, ValueError) as error:
            raise BadRequestError("the body is not a readable %s image (%s)" % (kind, _scrub(error)))
    raise BadRequestError(
        "the body is not a readable %s image: it is neither JPEG nor PNG (it starts with %r); this "
        "endpoint decodes only JPEG and PNG files, or send the pixels as application/x-npy" % (kind, bytes(body[:8])))


def _decode_image_file(body, kind, max_image_pixels, check_batch):
    image = _open_image_file(body, kind)
    width, height = image.size
    if width * height > max_image_pixels:
        raise PayloadTooLargeError(
            "the image is %dx%d = %d pixels, more than the limit of %d pixels per image; send a smaller image, "
            "or raise the limit with the environment variable SERVING_MAX_IMAGE_PIXELS"
            % (width, height, width * height, max_image_pixels))
    if width == 0 or height == 0:
        raise BadRequestError("the image is empty: %dx%d pixels" % (width, height))
    check_batch(1, height, width)
    # Some libraries (gluoncv) switch truncated-image loading on for the whole process: refuse them here.
    tolerant = ImageFile.LOAD_TRUNCATED_IMAGES
    ImageFile.LOAD_TRUNCATED_IMAGES = False
    try:
        pixels = rgb_pixels(image)
    except (IOError, OSError, ValueError, SyntaxError, Image.DecompressionBombError) as error:
        raise BadRequestError("the %s image cannot be decoded, it may be truncated (%s)" % (kind, _scrub(error)))
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = tolerant
    return pixels


def rgb_pixels(image):
    """A Pillow image (any mode a JPEG or PNG opens in) -> ``(H, W, 3)`` uint8 RGB.

    16-bit greyscale keeps its high byte, as OpenCV's and mxnet's decoders (GluonCV's) and
    Pillow's own 16-bit RGB PNG reader do; Pillow's convert would clip it to white. Alpha is
    dropped, as OpenCV does; palette, 1-bit, LA and CMYK images go through Pillow's convert.
    """
    if image.mode in _SIXTEEN_BIT_GREY:
        grey = np.asarray(image).astype(np.int64)
        grey = (np.clip(grey, 0, 65535) >> 8).astype(np.uint8)
        return np.ascontiguousarray(np.repeat(grey[:, :, None], 3, axis=2))
    return np.asarray(image.convert("RGB"), dtype=np.uint8)


_OBJECT_REPR = re.compile(r"<[^<>]* at 0x[0-9a-fA-F]+>")


def _scrub(error):
    """An exception's text without object reprs such as ``<_io.BytesIO object at 0x7f...>``."""
    return _OBJECT_REPR.sub("the request body", str(error))


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
    return json.dumps([_json_numbers(rows) for rows in detections])


def encode_probabilities(probabilities, response_type):
    """Encode ``(N, C)`` float32 class probabilities as JSON lists or npy."""
    if response_type == NPY:
        return _npy_bytes(probabilities.astype(np.float32))
    return json.dumps(_json_numbers(probabilities))


def _json_numbers(array):
    """``array`` as nested lists of floats with 9 significant digits, the most a float32 holds.

    Rounding to a number of decimals instead (7 before) kept 1 or 2 digits of a probability
    around 1e-6, and explanations of such a class turned into a step function.
    """
    values = [float("%.9g" % value) for value in np.asarray(array, dtype=np.float32).ravel().tolist()]
    return np.array(values, dtype=np.float64).reshape(np.shape(array)).tolist()


def encode_error(message, status):
    """The JSON body of an error response."""
    return json.dumps({"error": message, "status": status})


def _npy_bytes(array):
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()
