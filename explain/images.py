"""The one image decoder of explain: JPEG or PNG file bytes -> (H, W, 3) uint8 RGB, with a pixel cap.

Pixels come out as the endpoint's decoder makes them (``serving.codecs``, whose mode handling
this reuses): a 16-bit PNG keeps its high byte, alpha is dropped, palette, 1-bit, grey and CMYK
become RGB. So an image explained from a file and the same file sent to the endpoint are the
same pixels, and so is a ``--baseline`` file.
"""

from __future__ import annotations

import io
import logging
import threading
from pathlib import Path

import numpy as np
from PIL import Image, ImageFile, JpegImagePlugin, PngImagePlugin

from serving.codecs import rgb_pixels  # the endpoint's mode handling: one definition for both sides

from .errors import ExplainError
from .image_warnings import warn_about_image
from .sources import ImageSource

__all__ = ["MAX_IMAGE_PIXELS", "decode_image", "load_image"]

logger = logging.getLogger(__name__)

# What explain decodes: the formats of the wire contract, through Pillow's PNG and JPEG readers
# only (its GIF, TIFF, EPS, ... readers are never reached with untrusted files).
_READERS = (PngImagePlugin.PngImageFile, JpegImagePlugin.JpegImageFile)
# Decoded pixels at most (width x height, from the header, before any pixel is decoded): 40 MP,
# 120 MB as RGB, the endpoint's own limit for image bodies (SERVING_MAX_IMAGE_PIXELS). Pillow's
# Image.open alone would decode up to 179 MP and only warn below that.
MAX_IMAGE_PIXELS = 40_000_000
# Some libraries (gluoncv) switch Pillow's truncated-image loading on for the whole process; while
# explain decodes, it is off (images in flight decode one at a time under this lock).
_STRICT_LOADING = threading.Lock()
# EXIF's Orientation tag, and how a viewer turns the stored pixels for each value other than 1
_EXIF_ORIENTATION = 0x0112
_ORIENTATIONS = {2: "mirrored", 3: "rotated 180 degrees", 4: "mirrored upside down",
                 5: "mirrored and rotated 90 degrees", 6: "rotated 90 degrees clockwise",
                 7: "mirrored and rotated 270 degrees", 8: "rotated 90 degrees counter-clockwise"}


def _open(data: bytes) -> Image.Image | None:
    """The PNG or JPEG image in ``data``, header read and pixels not decoded yet; None for other data."""
    for reader in _READERS:
        try:
            return reader(io.BytesIO(data))
        except SyntaxError:  # Pillow's "not a PNG file" / "not a JPEG file"
            continue
    return None


def _warn_if_rotated(opened: Image.Image, location: str) -> None:
    """Warn when the image carries an EXIF Orientation other than 1 (as stored), through
    ``warn_about_image``: in the log, and in the image's warnings in analysis.json and the report.

    Its pixels are explained as stored, as the endpoint decodes them (mxnet's decoder, as GluonCV
    uses it, ignores the tag; OpenCV's and photo viewers apply it): a phone photo then lies on its
    side in the report, and the model saw it that way.
    """
    try:
        orientation = opened.getexif().get(_EXIF_ORIENTATION)
    except Exception:  # noqa: BLE001 - a malformed EXIF block says nothing about orientation
        return
    if isinstance(orientation, int) and orientation in _ORIENTATIONS:
        warn_about_image(logger, f"carries EXIF Orientation {orientation} (viewers show it "
                                 f"{_ORIENTATIONS[orientation]}): it is explained as stored, the way the endpoint "
                                 "decodes it (mxnet ignores the tag), not as photo viewers show it; to explain it "
                                 "upright, rotate its pixels first (e.g. PIL.ImageOps.exif_transpose)", location)


def decode_image(data: bytes, location: str, max_pixels: int = MAX_IMAGE_PIXELS) -> np.ndarray:
    """JPEG or PNG file bytes -> (H, W, 3) uint8 RGB; raises ExplainError naming ``location`` and the reason.

    The size is read from the header first: an image of more than ``max_pixels`` pixels is
    refused before it is decoded (a PNG of a few dozen bytes can claim 15000x15000).
    """
    try:
        opened = _open(data)
        if opened is None:
            kind = "empty" if not data else "not a JPEG or PNG file"
            raise ExplainError(f"cannot read image {location!r}: {kind} (explain reads JPEG and PNG)")
        with opened:
            width, height = opened.size
            if width * height > max_pixels:
                raise ExplainError(
                    f"cannot read image {location!r}: {width}x{height} is {width * height:,} pixels, more "
                    f"than the {max_pixels:,} explain decodes; downscale it first")
            with _STRICT_LOADING:
                tolerant, ImageFile.LOAD_TRUNCATED_IMAGES = ImageFile.LOAD_TRUNCATED_IMAGES, False
                try:
                    pixels = np.array(rgb_pixels(opened), dtype=np.uint8)  # a writable copy
                finally:
                    ImageFile.LOAD_TRUNCATED_IMAGES = tolerant
            _warn_if_rotated(opened, location)  # once decoded: a PNG's EXIF may follow its pixels
            return pixels
    except (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError) as error:
        # OSError: truncated or corrupt data; the others: Pillow's parsers on malformed headers
        raise ExplainError(f"cannot read image {location!r}: {error}") from None


def load_image(path: str | Path) -> np.ndarray:
    """Read a JPEG or PNG file as (H, W, 3) uint8 RGB; raises ExplainError naming the file (a file
    of more than sources.MAX_IMAGE_FILE_BYTES is refused before it is read)."""
    return decode_image(ImageSource(Path(path).name, str(path)).read(), str(path))
