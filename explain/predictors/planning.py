"""Request planning: which images go into which request, and the checks on what comes back.

Pure functions over shapes and arrays; the byte arithmetic is the wire contract's
(``serving.contract.images_per_request``), the messages say which option to change.
"""

from __future__ import annotations

import numpy as np

from serving.contract import TASKS, npy_body_size, pixel_value_problem
from serving.contract import images_per_request as contract_images_per_request

from ..errors import ConfigError, PredictorError

__all__ = ["as_uint8_batch", "check_results", "check_task", "images_per_request", "plan_requests",
           "too_large_message"]


def check_task(task: str | None, allow_none: bool = False) -> None:
    """Raise ConfigError (field ``task``) unless ``task`` is a known task (or None when allowed)."""
    if task is None and allow_none:
        return
    if task not in TASKS:
        raise ConfigError(f"task must be one of {', '.join(TASKS)}, got {task!r}", field="task")


def as_uint8_batch(batch) -> np.ndarray:
    """(N, H, W, 3) images -> C-contiguous uint8.

    Other numbers are rounded when the wire contract reads them as 0..255 pixels; a batch it
    refuses (``serving.contract.pixel_value_problem``: NaN or infinite values, values outside
    0..255, a float image whose largest value lies in (0, 1], normalised to 0..1) raises
    PredictorError before any request, as the endpoint would answer it with 400.
    """
    batch = np.asarray(batch)
    if batch.ndim != 4 or batch.shape[-1] != 3:
        raise PredictorError(f"predict expects an (N, H, W, 3) batch, got shape {batch.shape}")
    if batch.dtype != np.uint8:
        if batch.dtype.kind == "b":  # True/False would go out as 0/1: nearly black images
            raise PredictorError("predict expects pixels as numbers (uint8, or 0..255 in another number type), "
                                 "got dtype bool (a mask: batch.astype(np.uint8) * 255)")
        if batch.dtype.kind not in "iuf":
            raise PredictorError(f"predict expects pixels as numbers (uint8, or 0..255 in another number type), "
                                 f"got dtype {batch.dtype}")
        problem = pixel_value_problem(batch) if batch.size else None
        if problem is not None:
            raise PredictorError(problem)
        batch = np.rint(batch).astype(np.uint8)
    return np.ascontiguousarray(batch)


def too_large_message(width: int, height: int, body_bytes: int, content_type: str, max_payload_bytes: int) -> str:
    """Why one image cannot be sent, and what to do about it."""
    return (f"one {width}x{height} image is {body_bytes} bytes as {content_type}, more than "
            f"max_payload_bytes={max_payload_bytes}; use --resize (e.g. --resize 512; resize=512 from Python) or a smaller image")


def images_per_request(image_shape: tuple[int, int, int], content_type: str, max_payload_bytes: int) -> int:
    """How many images of ``image_shape`` (H, W, 3) uint8 one request carries.

    npy: as many as fit ``max_payload_bytes`` with the exact npy header; jpeg/png: one (its
    encoded size is checked when it is encoded). Raises PredictorError when one image alone
    does not fit.
    """
    per_request = contract_images_per_request(image_shape, content_type, max_payload_bytes)
    if per_request == 0:
        height, width = image_shape[:2]
        raise PredictorError(too_large_message(width, height, npy_body_size((1, *image_shape)), "npy",
                                               max_payload_bytes))
    return per_request


def plan_requests(num_images: int, image_shape: tuple[int, int, int], content_type: str,
                  max_payload_bytes: int, max_images: int | None = None) -> list[slice]:
    """Split ``num_images`` images of ``image_shape`` into request slices.

    Each holds ``images_per_request`` images, at most ``max_images`` when given.
    """
    per_request = images_per_request(image_shape, content_type, max_payload_bytes)
    if max_images is not None:
        per_request = min(per_request, max_images)
    return [slice(start, min(start + per_request, num_images))
            for start in range(0, num_images, per_request)]


def check_results(results: list[np.ndarray], expected: int, task: str | None, source: str) -> None:
    """Raise PredictorError unless there are ``expected`` results shaped as ``task`` requires.

    Detection: (D, 6) rows each; classification: (C,) probabilities each; None: any shape.
    """
    if len(results) != expected:
        raise PredictorError(f"{source} answered {len(results)} predictions for {expected} images")
    if task is None:
        return
    for result in results:
        if task == "detection" and (result.ndim != 2 or result.shape[1] != 6):
            raise PredictorError(
                f"{source} answered an array of shape {result.shape} where detection rows (D, 6) "
                "were expected; is this a classification model? (use --task classification; task=\"classification\" from "
                "Python)")
        if task == "classification" and result.size == 0:  # [] or [[]]: no scores at all
            raise PredictorError(
                f"{source} answered an empty list where class probabilities (C,) were expected; a "
                "classifier answers one score per class for each image")
        if task == "classification" and result.ndim != 1:
            raise PredictorError(
                f"{source} answered an array of shape {result.shape} where class probabilities (C,) "
                "were expected; is this a detection model? (use --task detection; task=\"detection\" from Python)")
