"""Request bodies a client may send by mistake or malice, with the status and message the handler must answer.

Shared by the in-process tests on this Python and the runs of the packed handler on the
SageMaker container's Python 3.8. The messages assume the tiny detector of
``tests/tiny_models.py`` (short side 64, long side at most 256) and the default limits.
"""
import io
import re
import struct
import zlib

import numpy as np
from PIL import Image

from serving.settings import DEFAULT_MAX_IMAGES_PER_REQUEST
from tests.conftest import npy_bytes, random_images

HEAP_ADDRESS = re.compile(r"0x[0-9a-fA-F]{6,}")


def npy_with_header(shape_text, data=b"", descr="|u1", pad_to=None):
    """An .npy (version 1.0) body whose header announces ``shape_text`` verbatim, then ``data``."""
    header = "{'descr': '%s', 'fortran_order': False, 'shape': %s, }" % (descr, shape_text)
    length = pad_to if pad_to is not None else -(-(len(header) + 11) // 64) * 64 - 10
    header = header.ljust(length - 1) + "\n"
    return b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header.encode("latin1") + data


def png_claiming(width, height):
    """A PNG whose header announces ``width`` x ``height`` RGB pixels, followed by a few bytes of them."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(bytes(64))) + chunk(b"IEND", b""))


def jpeg_claiming(width, height):
    """A 16x16 JPEG whose frame header (SOF0) is rewritten to announce ``width`` x ``height`` pixels."""
    body = bytearray(encoded(np.zeros((16, 16, 3), np.uint8), "JPEG"))
    frame = body.index(b"\xff\xc0")
    body[frame + 5:frame + 9] = struct.pack(">HH", height, width)
    return bytes(body)


# Pillow's Image.open refuses images above 2 x Image.MAX_IMAGE_PIXELS (178,956,970 pixels) itself
PAST_PILLOWS_LIMIT = 14000

def encoded(array, image_format, **options):
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format=image_format, **options)
    return buffer.getvalue()


def other_formats():
    """Bodies in formats Pillow reads but this endpoint must not: name -> bytes."""
    image = random_images(1, 16, 16, seed=9)[0]
    bodies = {name: encoded(image, name) for name in ("GIF", "BMP", "TIFF", "ICO", "PPM", "WEBP")}
    bodies["EPS"] = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 16 16\n" + b"0 0 moveto\n" * 4
    return bodies


BAD_BODIES = [
    # images that resizing for the network would turn into 0 pixels (ZeroDivisionError before)
    (npy_bytes(np.zeros((1, 1, 3000, 3), np.uint8)), "application/x-npy", 400,
     "a 3000x1 (width x height) image is too elongated for this model"),
    (npy_bytes(np.zeros((1, 3000, 1, 3), np.uint8)), "application/x-npy", 400,
     "long side is at most 256 times its short side"),
    (encoded(np.zeros((1, 3000, 3), np.uint8), "PNG"), "image/png", 400, "too elongated for this model"),
    # negative or absurd dimensions whose byte counts match the body (500 before)
    (npy_with_header("(-1, -1, 8, 3)", bytes(24)), "application/x-npy", 400,
     "announces shape (-1, -1, 8, 3); every dimension must lie in 0..2147483647"),
    (npy_with_header("(1, -2, -4, 3)", bytes(24)), "application/x-npy", 400, "every dimension must lie in 0.."),
    (npy_with_header("(1, %d, %d, 3)" % (2 ** 40, 2 ** 40)), "application/x-npy", 400,
     "every dimension must lie in 0.."),
    # a bool is an int to np.lib.format: True reached reshape (a 500), False gave "the batch is empty"
    (npy_with_header("(True, 64, 64, 3)", bytes(64 * 64 * 3)), "application/x-npy", 400,
     "the .npy header announces shape (True, 64, 64, 3), whose dimension 0 is True, not an integer: write "
     "the array with numpy.save"),
    (npy_with_header("(64, True, 3)", bytes(64 * 3 * 4), descr="<f4"), "application/x-npy", 400,
     "announces shape (64, True, 3), whose dimension 1 is True, not an integer"),
    (npy_with_header("(1, 64, 64, True)", bytes(64 * 64)), "application/x-npy", 400,
     "whose dimension 3 is True, not an integer"),
    (npy_with_header("(False, 64, 64, 3)"), "application/x-npy", 400,
     "announces shape (False, 64, 64, 3), whose dimension 0 is False, not an integer"),
    (npy_with_header("(1, 8, 8, 3)", bytes(192), pad_to=20000), "application/x-npy", 400,
     "the .npy header is 20000 bytes long, more than the 10000 this endpoint reads"),
    # bodies that end before the header's length field: too short, not "a header of 0 bytes, over 10000"
    (b"\x93NUMPY\x01\x00", "application/x-npy", 400,
     "the body is too short for an .npy array: it ends after 8 bytes, inside the .npy header; "
     "send the whole file written by numpy.save"),
    (b"\x93NUMPY\x01\x00\x10", "application/x-npy", 400, "it ends after 9 bytes, inside the .npy header"),
    (b"\x93NUMPY\x02\x00\x10\x00", "application/x-npy", 400, "it ends after 10 bytes, inside the .npy header"),
    (npy_with_header("(" * 3000 + ")" * 3000), "application/x-npy", 400, "not a valid .npy array"),
    # more images than a request may hold: the count is read from the header, nothing is resized
    (npy_bytes(np.zeros((DEFAULT_MAX_IMAGES_PER_REQUEST + 1, 1, 1, 3), np.uint8)), "application/x-npy", 413,
     "the request holds 65 images, more than the limit of 64 images per request; send at most 64 per "
     "request, or raise the limit with the environment variable SERVING_MAX_IMAGES_PER_REQUEST"),
    (npy_bytes(np.zeros((100_000, 2, 2, 3), np.uint8)), "application/x-npy", 413,
     "more than the limit of 64 images per request"),
    # images over the handler's limit, also past Pillow's own (its message, and a limit the handler could not lift)
    (png_claiming(PAST_PILLOWS_LIMIT, PAST_PILLOWS_LIMIT), "image/png", 413,
     "the image is 14000x14000 = 196000000 pixels, more than the limit of 40000000 pixels per image; send a "
     "smaller image, or raise the limit with the environment variable SERVING_MAX_IMAGE_PIXELS"),
    (jpeg_claiming(PAST_PILLOWS_LIMIT, PAST_PILLOWS_LIMIT), "image/jpeg", 413,
     "the image is 14000x14000 = 196000000 pixels, more than the limit of 40000000 pixels per image"),
    (png_claiming(8000, 6000), "image/png", 413, "the image is 8000x6000 = 48000000 pixels, more than the limit "
                                                 "of 40000000 pixels per image"),
    (npy_with_header("(1, 8000, 6000, 3)"), "application/x-npy", 413,  # refused from the header alone
     "images of 6000x8000 = 48000000 pixels exceed the limit of 40000000 pixels per image; send smaller "
     "images, or raise the limit with the environment variable SERVING_MAX_IMAGE_PIXELS"),
    # bodies Pillow would have identified with an object repr in its message
    (b"not an image", "image/jpeg", 400, "it is neither JPEG nor PNG (it starts with b'not an i')"),
    (b"\x89PNG\r\n\x1a\n" + b"\0" * 40, "image/png", 400, "not a readable image/png image"),
    # a PNG or JPEG cut before Pillow could identify it is named as such, not as "neither JPEG nor PNG"
    (b"\x89PNG\r\n\x1a\n", "image/png", 400, "the body is not a readable image/png image: it starts as a PNG "
     "file but is truncated or corrupt; send the whole file"),
    (b"\xff\xd8\xff" + bytes(20), "image/jpeg", 400, "the body is not a readable image/jpeg image: it starts as "
     "a JPEG file but is truncated or corrupt; send the whole file"),
] + [
    (body, content_type, 400, "it is neither JPEG nor PNG")
    for name, body in sorted(other_formats().items())
    for content_type in ("image/jpeg", "image/png", "application/x-image")
]


SIXTEEN_BIT_RAMP = np.arange(0, 65536, 64, dtype=np.uint16).reshape(32, 32)


def sixteen_bit_png(channels):
    """A 16-bit PNG (greyscale, RGB or RGBA) of SIXTEEN_BIT_RAMP (0..65535), written by OpenCV."""
    import cv2

    ramp = SIXTEEN_BIT_RAMP
    planes = [ramp, ramp[::-1], ramp[:, ::-1], ramp.T][:channels]
    ok, body = cv2.imencode(".png", planes[0] if channels == 1 else np.dstack(planes))
    assert ok
    return body.tobytes()
