"""The SageMaker entry points ``model_fn`` and ``transform_fn``: N images in, one forward pass, rows out.

The inference toolkit appends the MMS request ``context`` when a handler takes one more
parameter than it is given; both functions take it as an optional trailing argument, so they
also run in-process (tests, the explain in-process predictor) where errors are raised instead.

sagemaker-inference 1.6.1, the version the SageMaker MXNet 1.9 inference container pins, is
older than that feature (1.7.0): it calls ``model_fn(model_dir)`` and
``transform_fn(model, body, content_type, accept)`` from ``Transformer.transform(data,
context)``. There the handler takes the context from that calling frame
(:func:`_toolkit_context`), so statuses, JSON error bodies, custom attributes and the GPU id
work the same on both toolkit versions.

Both toolkit versions decode an ``application/json`` or ``text/csv`` request body as UTF-8
before calling ``transform_fn`` (``Transformer.transform``; the list is
``sagemaker_inference.content_types.UTF8_TYPES``): an image sent under one of those types
failed there, a 500 whose body is the toolkit's traceback. The handler decodes neither type,
so ``model_fn``, when the toolkit calls it, empties that list in its worker
(:func:`_keep_request_bodies_binary`): every body then reaches ``transform_fn`` as bytes and
an unsupported Content-Type gets the handler's own 415.
"""
import logging
import sys
import time

import numpy as np

from . import codecs
from .errors import BadRequestError, PayloadTooLargeError, ServingError
from .network import LoadedNetwork, choose_context
from .postprocess import detection_rows
from .preprocess import cropped_size, resized_size
from .settings import (
    CUSTOM_ATTRIBUTES_HEADER,
    DEFAULT_CPU_BATCH_PIXELS,
    HandlerLimits,
    RequestOptions,
    parse_custom_attributes,
)

logger = logging.getLogger(__name__)


class ServedModel(object):
    """What ``model_fn`` returns: the loaded network and the handler's limits."""

    def __init__(self, network, limits):
        self.network = network
        self.limits = limits
        self.spec = network.spec

    def default_options(self):
        threshold = self.limits.score_threshold
        top_k = self.limits.top_k
        return RequestOptions(
            self.spec.score_threshold if threshold is None else threshold,
            self.spec.top_k if top_k is None else top_k,
        )

    def check_batch(self, count, height, width):
        """Refuse a batch of ``count`` images of ``height`` x ``width`` before any pixel is decoded.

        Raises BadRequestError when resizing for the network would leave a side of 0 pixels,
        PayloadTooLargeError (413) above ``limits.max_images_per_request`` images or above
        ``limits.max_request_pixels`` network-input pixels; each message names the environment
        variable that raises the limit.
        """
        preprocess = self.spec.preprocess
        if preprocess.center_crop is not None:
            return self._check_cropped_batch(count, height, width)
        new_height, new_width = resized_size(height, width, preprocess.short_side, preprocess.max_size)
        if new_height < 1 or new_width < 1:
            raise BadRequestError(
                "a %dx%d (width x height) image is too elongated for this model: resized for the network "
                "(short side %d, long side at most %d) it would be %dx%d pixels; crop or pad it so that "
                "its long side is at most %d times its short side"
                % (width, height, preprocess.short_side, preprocess.max_size, new_width, new_height,
                   preprocess.max_size))
        self._check_image_count(count)
        limits = self.limits
        pixels = count * new_height * new_width
        if pixels > limits.max_request_pixels:
            raise PayloadTooLargeError(
                "the request's %d image(s) of %dx%d are resized for the network to %dx%d, %d network-input "
                "pixels in all, more than the limit of %d pixels per request; send at most %d such "
                "images per request, or raise the limit with the environment variable "
                "SERVING_MAX_REQUEST_PIXELS"
                % (count, width, height, new_width, new_height, pixels, limits.max_request_pixels,
                   limits.max_request_pixels // (new_height * new_width)))
        return new_height, new_width

    def _check_image_count(self, count):
        """413 when a request holds more images than ``SERVING_MAX_IMAGES_PER_REQUEST``."""
        limit = self.limits.max_images_per_request
        if count > limit:
            raise PayloadTooLargeError(
                "the request holds %d images, more than the limit of %d images per request; send at "
                "most %d per request, or raise the limit with the environment variable "
                "SERVING_MAX_IMAGES_PER_REQUEST" % (count, limit, limit))

    def _check_cropped_batch(self, count, height, width):
        """``check_batch`` for a model whose preprocessing ends in a centre crop: the resize before the crop
        keeps the aspect ratio without a cap, so ``max_size`` bounds the resized long side here."""
        preprocess = self.spec.preprocess
        new_height, new_width = cropped_size(height, width, preprocess.short_side, preprocess.center_crop)
        if max(new_height, new_width) > preprocess.max_size:
            raise BadRequestError(
                "a %dx%d (width x height) image is too elongated for this model: its short side resized to %d "
                "makes it %dx%d pixels before the centre crop, over %d; crop or pad it so that its long side is "
                "at most %.2f times its short side"
                % (width, height, preprocess.short_side, new_width, new_height, preprocess.max_size,
                   preprocess.max_size / float(preprocess.short_side)))
        self._check_image_count(count)
        return preprocess.center_crop, preprocess.center_crop

    def images_per_request(self, height, width):
        """How many images of ``height`` x ``width`` one request may hold (0: not even one)."""
        preprocess = self.spec.preprocess
        if preprocess.center_crop is not None:
            if max(cropped_size(height, width, preprocess.short_side, preprocess.center_crop)) > preprocess.max_size:
                return 0
            new_height = new_width = preprocess.center_crop
        else:
            new_height, new_width = resized_size(height, width, preprocess.short_side, preprocess.max_size)
        if new_height < 1 or new_width < 1:
            return 0
        return min(self.limits.max_images_per_request,
                   self.limits.max_request_pixels // (new_height * new_width))

    def predict(self, images, options=None):
        """Run a batch through the network: one forward pass, or chunks of ``limits.images_per_pass``
        (at most ``spec.images_per_pass`` images each when model.json sets it).

        Args:
            images: ``(N, H, W, 3)`` uint8.
            options: detection filters; the model's defaults when None.

        Returns:
            detection: list of N float32 ``(D_i, 6)`` rows; classification: float32 ``(N, C)``.
        """
        options = options if options is not None else self.default_options()
        preprocess = self.spec.preprocess
        if preprocess.center_crop is not None:
            chunk = self.limits.images_per_pass(preprocess.center_crop, preprocess.center_crop)
        else:
            chunk = self.limits.images_per_pass(
                *resized_size(images.shape[1], images.shape[2], preprocess.short_side, preprocess.max_size))
        if self.spec.images_per_pass is not None:  # a graph that runs a fixed batch (model.json)
            chunk = min(chunk, self.spec.images_per_pass)
        results = []
        for start in range(0, len(images), chunk):
            outputs, resized = self.network.forward(images[start:start + chunk])
            if self.spec.task == "classification":
                results.append(outputs[0].astype(np.float32))
            else:
                class_ids, scores, boxes = outputs
                results.extend(
                    detection_rows(class_ids[i], scores[i], boxes[i], resized,
                                   options.score_threshold, options.top_k)
                    for i in range(len(class_ids))
                )
        if self.spec.task == "classification":
            return np.concatenate(results, axis=0)
        return results


def model_fn(model_dir, context=None):
    """Load the network named by ``model_dir/model.json`` on the GPU when there is one, and warm it up."""
    gpu_id = None
    context = context if context is not None else _toolkit_context()
    if context is not None:
        gpu_id = (getattr(context, "system_properties", None) or {}).get("gpu_id")
        _keep_request_bodies_binary()
    network = LoadedNetwork(model_dir, ctx=choose_context(gpu_id))
    network.warm_up()
    limits = HandlerLimits.from_environment()
    if limits.max_batch_pixels is None and network.ctx.device_type == "cpu":
        limits.max_batch_pixels = DEFAULT_CPU_BATCH_PIXELS
    return ServedModel(network, limits)


def transform_fn(model, body, content_type, accept, context=None):
    """Decode the request, run one batched forward pass, encode the response.

    Returns ``(body, content_type)``. With an MMS ``context``, client mistakes become a 4xx
    status with a JSON ``{"error": ...}`` body; without one they are raised as ServingError.
    """
    started = time.time()
    context = context if context is not None else _toolkit_context()
    try:
        response_type = codecs.choose_response_type(accept)
        images = codecs.decode_images(body, content_type, model.limits.max_body_bytes,
                                      model.limits.max_image_pixels, check_batch=model.check_batch)
        defaults = model.default_options()
        options = parse_custom_attributes(
            _request_header(context, CUSTOM_ATTRIBUTES_HEADER), defaults.score_threshold, defaults.top_k
        )
        predictions = model.predict(images, options)
        if model.spec.task == "classification":
            payload = codecs.encode_probabilities(predictions, response_type)
        else:
            payload = codecs.encode_detections(predictions, response_type)
        logger.info("batch of %d image(s) %dx%d answered in %.1f ms",
                    len(images), images.shape[2], images.shape[1], 1000 * (time.time() - started))
        return payload, response_type
    except ServingError as error:
        if context is None:
            raise
        logger.warning("request refused with %d: %s", error.status, error.message)
        return _error_response(context, error.status, error.message)
    except Exception:  # noqa: BLE001 - any other failure is ours: log it, answer 500 without a trace
        if context is None:
            raise
        logger.exception("inference failed")
        return _error_response(context, 500, "internal error while running the model; see the endpoint logs")


def _keep_request_bodies_binary():
    """Stop the inference toolkit running this worker from decoding text request bodies (see the module docstring).

    Only when the toolkit is already loaded (it called ``model_fn``); its list of UTF-8 types is
    emptied in place, the one way to reach the decoding that runs before ``transform_fn``.
    """
    content_types = sys.modules.get("sagemaker_inference.content_types")
    utf8_types = getattr(content_types, "UTF8_TYPES", None)
    if isinstance(utf8_types, list) and utf8_types:
        logger.info("request bodies of type %s reach transform_fn as bytes, not decoded by the toolkit",
                    ", ".join(utf8_types))
        del utf8_types[:]


def _toolkit_context(max_frames=8):
    """The MMS context held by the sagemaker-inference code that called us, or None.

    Only for toolkits older than 1.7.0, which do not pass it (see the module docstring):
    ``Transformer.transform(data, context)`` calls ``transform_fn`` and
    ``DefaultHandlerService.initialize(context)`` calls ``model_fn``. A frame counts only when
    its module is part of ``sagemaker_inference`` and its ``context`` can set a response
    status. In-process callers have no such frame and get None.
    """
    try:
        frame = sys._getframe(2)
    except ValueError:
        return None
    for _ in range(max_frames):
        if frame is None:
            return None
        if str(frame.f_globals.get("__name__", "")).startswith("sagemaker_inference."):
            context = frame.f_locals.get("context")
            if hasattr(context, "set_response_status") and hasattr(context, "system_properties"):
                return context
        frame = frame.f_back
    return None


def _request_header(context, name):
    if context is None:
        return None
    try:
        headers = context.get_all_request_header(0) or {}
    except (AttributeError, IndexError, TypeError):
        return None
    wanted = name.lower()
    for key, value in headers.items():
        if isinstance(key, str) and key.lower() == wanted:
            return value if isinstance(value, str) else None
    return None


def _error_response(context, status, message):
    phrase = message.replace("\r", " ").replace("\n", " ")[:200]
    context.set_response_status(status, phrase)
    return codecs.encode_error(message, status), codecs.JSON
