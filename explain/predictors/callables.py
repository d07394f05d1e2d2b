"""Any ``predict(batch)`` function as a predictor: fed at most one request's worth of images per call."""

from __future__ import annotations

import inspect
import threading
from collections.abc import Callable

import numpy as np

from serving.contract import NPY

from ..detection import model_class_names
from .planning import as_uint8_batch, check_task, images_per_request
from .transport import TransportConfig

__all__ = ["CallablePredictor"]


def _takes_score_threshold(function: Callable) -> bool:
    """Whether ``function`` accepts a ``score_threshold`` keyword (deploy.client.EndpointClient.predict does)."""
    try:
        parameter = inspect.signature(function).parameters.get("score_threshold")
    except (TypeError, ValueError):  # builtins and some C callables have no signature
        return False
    return parameter is not None and parameter.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD,
                                                        inspect.Parameter.KEYWORD_ONLY)


class CallablePredictor:
    """predict(batch) through a plain function, in chunks no larger than one endpoint request.

    function: (N, H, W, 3) uint8 -> N results, (D_i, 6) detections or (C,) probabilities; it
    is never given more images than one npy request of ``transport.max_payload_bytes`` holds
    (at most ``transport.max_images_per_request``), so a function that forwards its batch to
    an endpoint stays within the endpoint's limits. For detection, a function with a
    ``score_threshold`` parameter is called with ``score_threshold=0`` so that it answers
    every score, as the endpoint adapters ask for; any other detection function must return
    its low scores itself (a masked image's weaker detections still count). This predictor calls the
    function one call at a time, also when several images are explained at once (``run``'s threads): a
    plain function, a network with state, need not be thread-safe (two predictors, two Explainers, of
    one function do not wait for each other).
    """

    def __init__(self, function: Callable, task: str | None, transport: TransportConfig | None = None) -> None:
        check_task(task, allow_none=True)
        if not callable(function):
            raise TypeError(f"function must be callable, got {type(function).__name__}")
        self.function = function
        self.task = task
        self.transport = transport or TransportConfig()
        self.keywords = {"score_threshold": 0.0} if task == "detection" and _takes_score_threshold(function) else {}
        # review 36: run()'s two image threads called it at once; re-entrant: a function that explains through
        # the same Explainer (a sub-image) calls it again from its own thread (review 37)
        self._one_call = threading.RLock()

    @property
    def class_names(self) -> list[str] | None:
        """The function's own ``class_names`` attribute, if it has one."""
        names = model_class_names(self.function)
        return list(names) if names else None

    def images_per_request(self, image_shape: tuple[int, int, int]) -> int:
        """Images of ``image_shape`` (H, W, 3) in one call: what one npy request holds, at most the cap."""
        return min(images_per_request(tuple(image_shape), NPY, self.transport.max_payload_bytes),
                   self.transport.max_images_per_request)

    def request_plan(self, image_shape: tuple[int, int, int]) -> tuple[int, int]:
        """(images per call, calls in flight): one request's worth, one call at a time."""
        return self.images_per_request(image_shape), 1

    def __call__(self, batch) -> list[np.ndarray]:
        """(N, H, W, 3) uint8 -> N results, the function called once per request-sized chunk."""
        batch = as_uint8_batch(batch)
        if batch.shape[0] == 0:
            return []
        per_call = self.images_per_request(batch.shape[1:])
        results: list[np.ndarray] = []
        for start in range(0, batch.shape[0], per_call):
            with self._one_call:
                results.extend(self.function(batch[start:start + per_call], **self.keywords))
        return results

    def close(self) -> None:
        """Nothing to release (the function belongs to the caller)."""
