"""Handler limits from environment variables, and per-request options from SageMaker custom attributes."""
import os

from .contract import CUSTOM_ATTRIBUTES_HEADER, MAX_IMAGES_PER_REQUEST, MMS_MAX_REQUEST_BYTES  # noqa: F401
from .errors import BadRequestError, ServingError

# MMS refuses bodies above 6,553,500 bytes by default (max_request_size); keep the same limit in-process.
DEFAULT_MAX_BODY_BYTES = MMS_MAX_REQUEST_BYTES
# 40 megapixels: a 8000x5000 photo passes, a decompression bomb does not.
DEFAULT_MAX_IMAGE_PIXELS = 40000000
# Work per request. Every image is resized to the network's input size before the forward pass,
# so a request's cost is set by its image count and network-input pixels, not by its bytes
# (100,000 images of 2x2 pixels are a 1.2 MB body). Both limits are checked from the .npy or
# image header, before any pixel is decoded or resized.
#
# 64 images (serving.contract.MAX_IMAGES_PER_REQUEST): the explain client packs at most this many
# masked images into one request (it imports that constant), and so does the in-process predictor; the benchmarks use at most 64.
# 64 * 600 * 1000 network-input pixels: 64 images at the largest input of any GluonCV preset
# `deploy package` knows (Faster/Mask R-CNN: short side 600, long side at most 1000; YOLO's
# 416x1024 is 426k), so the explain client's default requests pass for those models whatever
# the aspect ratio. For the shipped shapes detector (input at most 160x512) the image count
# binds first. Measured on this project's 2 CPU cores while other jobs kept the load average
# at 9-12 (bench/bench_limits.py, in-process, medians of 3), with one OpenMP thread as the
# SageMaker container gives a worker: 64 images at its largest input took 2.2-4.0 s, 64 images
# of 1x1 0.84 s, one image filling the body limit 0.04 s, while 2,000 images of 1x1 (a 6 KB
# body) took 31 s with the limits lifted. With two OpenMP threads on the same overloaded cores
# the first request took 12-71 s (threads spinning at barriers). yolo3_darknet53 took 35 s for
# 4 images at 416x1024 under that load: on a CPU endpoint serving such a network, lower
# SERVING_MAX_REQUEST_PIXELS (and SERVING_MAX_IMAGES_PER_REQUEST with the explain client's
# --max-images-per-request).
DEFAULT_MAX_IMAGES_PER_REQUEST = MAX_IMAGES_PER_REQUEST
DEFAULT_MAX_REQUEST_PIXELS = 64 * 600 * 1000
# Images per forward pass; larger batches are run in chunks of this size to bound memory.
DEFAULT_MAX_BATCH_SIZE = 32
# Network-input pixels per forward pass on a CPU. Measured on 2 cores (yolo3_darknet53, 16
# photos resized to 416x624): one image per pass 2.05 images/s, 4 per pass 1.71, all 16 in one
# pass 1.37 -- large batches of large inputs thrash the caches -- while a small network on
# 160x160 inputs runs 16 per pass faster than one at a time. 500k pixels keeps both fast.
# On a GPU the whole batch (up to max_batch_size) goes in one pass.
DEFAULT_CPU_BATCH_PIXELS = 500000


class HandlerLimits(object):
    """Limits read once when the model loads.

    Environment variables: ``SERVING_MAX_BODY_BYTES``, ``SERVING_MAX_IMAGE_PIXELS``,
    ``SERVING_MAX_IMAGES_PER_REQUEST``, ``SERVING_MAX_REQUEST_PIXELS`` (network-input pixels of
    all the images of one request, after the resize), ``SERVING_MAX_BATCH_SIZE``,
    ``SERVING_MAX_BATCH_PIXELS``, ``SERVING_SCORE_THRESHOLD``, ``SERVING_TOP_K``.
    ``max_batch_pixels`` None means: no pixel cap per forward pass (the handler sets
    DEFAULT_CPU_BATCH_PIXELS when it runs on a CPU).
    """

    def __init__(self, max_body_bytes=DEFAULT_MAX_BODY_BYTES, max_image_pixels=DEFAULT_MAX_IMAGE_PIXELS,
                 max_batch_size=DEFAULT_MAX_BATCH_SIZE, score_threshold=None, top_k=None,
                 max_batch_pixels=None, max_images_per_request=DEFAULT_MAX_IMAGES_PER_REQUEST,
                 max_request_pixels=DEFAULT_MAX_REQUEST_PIXELS):
        self.max_body_bytes = max_body_bytes
        self.max_image_pixels = max_image_pixels
        self.max_images_per_request = max_images_per_request
        self.max_request_pixels = max_request_pixels
        self.max_batch_size = max_batch_size
        self.max_batch_pixels = max_batch_pixels
        self.score_threshold = score_threshold
        self.top_k = top_k

    @classmethod
    def from_environment(cls, environ=None):
        environ = os.environ if environ is None else environ
        return cls(
            max_body_bytes=_env_int(environ, "SERVING_MAX_BODY_BYTES", DEFAULT_MAX_BODY_BYTES),
            max_image_pixels=_env_int(environ, "SERVING_MAX_IMAGE_PIXELS", DEFAULT_MAX_IMAGE_PIXELS),
            max_batch_size=_env_int(environ, "SERVING_MAX_BATCH_SIZE", DEFAULT_MAX_BATCH_SIZE),
            score_threshold=_env_threshold(environ),
            top_k=_env_int(environ, "SERVING_TOP_K", None),
            max_batch_pixels=_env_int(environ, "SERVING_MAX_BATCH_PIXELS", None),
            max_images_per_request=_env_int(environ, "SERVING_MAX_IMAGES_PER_REQUEST",
                                            DEFAULT_MAX_IMAGES_PER_REQUEST),
            max_request_pixels=_env_int(environ, "SERVING_MAX_REQUEST_PIXELS", DEFAULT_MAX_REQUEST_PIXELS),
        )

    def images_per_pass(self, input_height, input_width):
        """How many images of the network-input size go through one forward pass."""
        if self.max_batch_pixels is None:
            return self.max_batch_size
        return max(1, min(self.max_batch_size, self.max_batch_pixels // (input_height * input_width)))


def _env_int(environ, name, default):
    raw = environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1:
        raise ServingError("environment variable %s must be a positive integer, got %r" % (name, raw))
    return value


def _env_threshold(environ):
    raw = environ.get("SERVING_SCORE_THRESHOLD")
    if raw is None or raw == "":
        return None
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not 0.0 <= value <= 1.0:
        raise ServingError("environment variable SERVING_SCORE_THRESHOLD must be in [0, 1], got %r" % raw)
    return value


class RequestOptions(object):
    """Detection filters for one request: rows below ``score_threshold`` dropped, at most ``top_k`` kept."""

    def __init__(self, score_threshold, top_k):
        self.score_threshold = score_threshold
        self.top_k = top_k


def parse_custom_attributes(header, default_threshold, default_top_k):
    """Read ``score_threshold=0.5,top_k=10`` from the custom-attributes header.

    Unknown keys are ignored (the header is shared with other tools); a known key with a bad
    value is a 400 naming the key and the allowed range.
    """
    threshold, top_k = default_threshold, default_top_k
    if header:
        for item in header.split(","):
            if not item.strip():
                continue
            key, separator, value = item.partition("=")
            key, value = key.strip().lower(), value.strip()
            if key == "score_threshold":
                try:
                    threshold = float(value)
                except ValueError:
                    threshold = -1.0
                if not separator or not 0.0 <= threshold <= 1.0:
                    raise BadRequestError(
                        "custom attribute score_threshold must be a number in [0, 1], got %r" % value
                    )
            elif key == "top_k":
                try:
                    top_k = int(value)
                except ValueError:
                    top_k = 0
                if not separator or top_k < 1:
                    raise BadRequestError("custom attribute top_k must be a positive integer, got %r" % value)
    return RequestOptions(threshold, top_k)
