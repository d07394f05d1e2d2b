"""Helpers shared by the two training scripts: serving-identical resizing, LR schedule, timing."""
from __future__ import annotations

import logging
import math
import time

import mxnet as mx
import numpy as np

from serving.model_spec import Preprocess
from serving.preprocess import _BICUBIC, resized_size

logger = logging.getLogger(__name__)


def resize_for_network(images: np.ndarray, preprocess: Preprocess) -> np.ndarray:
    """Resize ``(N, H, W, 3)`` uint8 images exactly as ``serving.preprocess.preprocess_batch`` does.

    Returns ``(N, h, w, 3)`` uint8; feeding it to ``preprocess_batch`` then only normalises.
    """
    count, height, width = images.shape[:3]
    new_height, new_width = resized_size(height, width, preprocess.short_side, preprocess.max_size)
    if (new_height, new_width) == (height, width):
        return images.copy()
    resized = np.empty((count, new_height, new_width, 3), dtype=np.uint8)
    for index in range(count):
        resized[index] = mx.image.imresize(mx.nd.array(images[index], dtype=np.uint8), new_width,
                                           new_height, interp=_BICUBIC).asnumpy()
    return resized


class TrainingClock:
    """Cosine learning-rate schedule over a step budget or a wall-clock budget, with warm-up."""

    def __init__(self, base_lr: float, minutes: float, steps: int | None = None, warmup_steps: int = 100):
        self.base_lr = base_lr
        self.seconds = minutes * 60.0
        self.steps = steps
        self.warmup_steps = warmup_steps
        self.start = time.monotonic()

    def progress(self, step: int) -> float:
        """Fraction of the budget used, in [0, 1]."""
        if self.steps is not None:
            return min(step / float(self.steps), 1.0)
        return min((time.monotonic() - self.start) / self.seconds, 1.0)

    def finished(self, step: int) -> bool:
        return self.progress(step) >= 1.0

    def learning_rate(self, step: int) -> float:
        warmup = min(1.0, (step + 1) / float(self.warmup_steps))
        return self.base_lr * warmup * 0.5 * (1.0 + math.cos(math.pi * self.progress(step)))

    def elapsed_minutes(self) -> float:
        return (time.monotonic() - self.start) / 60.0


def seed_everything(seed: int) -> np.random.Generator:
    """Seed mxnet and return a numpy Generator for the script's own randomness."""
    mx.random.seed(seed)
    np.random.seed(seed)
    return np.random.default_rng(seed)
