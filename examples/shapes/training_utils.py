"""Helpers shared by the two training scripts: scene pool, serving-identical resizing, LR schedule."""
from __future__ import annotations

import logging
import math
import time

import click
import mxnet as mx
import numpy as np

from examples.shapes.dataset import generate_scene
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


def training_options(default_out: str, minutes: float, validation_images: int, seed: int,
                     pool_items: str):
    """The command-line options both training scripts share, with each script's defaults.

    Passes out_dir, minutes, steps, batch_size, base_lr, pool_size, refresh,
    validation_images and seed to the decorated command.
    """
    options = [
        click.option("--out", "out_dir", default=default_out, show_default=True, type=click.Path(file_okay=False),
                     help="Directory for model-symbol.json, model-0000.params and model.json."),
        click.option("--minutes", default=minutes, show_default=True, type=click.FloatRange(0.1, 600),
                     help="Wall-clock training budget (the cosine schedule spans it)."),
        click.option("--steps", default=None, type=click.IntRange(1),
                     help="Train this many steps instead of --minutes."),
        click.option("--batch-size", default=32, show_default=True, type=click.IntRange(1)),
        click.option("--lr", "base_lr", default=3e-3, show_default=True, type=click.FloatRange(0, min_open=True)),
        click.option("--pool-size", default=3000, show_default=True, type=click.IntRange(64),
                     help=f"{pool_items} held in memory; --refresh of them are regenerated every step."),
        click.option("--refresh", default=4, show_default=True, type=click.IntRange(0)),
        click.option("--validation-images", default=validation_images, show_default=True,
                     type=click.IntRange(1)),
        click.option("--seed", default=seed, show_default=True, type=int),
    ]

    def decorate(command):
        for option in reversed(options):
            command = option(command)
        return command

    return decorate


def seed_everything(seed: int) -> np.random.Generator:
    """Seed mxnet and return a numpy Generator for the script's own randomness."""
    mx.random.seed(seed)
    np.random.seed(seed)
    return np.random.default_rng(seed)


def noise_background(image: np.ndarray, objects: np.ndarray, rng: np.random.Generator,
                     max_regions: int = 40) -> np.ndarray:
    """Replace random background regions with uniform noise, as an explainer's masking does.

    image: (H, W, 3) uint8; objects: (H, W) bool, the union of the object masks (never
    touched). The image is cut into 4-``max_regions`` random Voronoi cells (superpixel-like
    regions) and each cell is noised with one probability drawn in [0.2, 0.8]; returns a new
    (H, W, 3) uint8 image. Trained on such images, a detector's scores stop depending on
    whether the background around an object is intact, so masked images are in distribution.
    """
    height, width = objects.shape
    step = 4  # cells are computed on a 4x coarser grid: cheap, and blocky edges do not matter
    rows, cols = np.mgrid[0:height:step, 0:width:step]
    seeds = rng.uniform([0, 0], [height, width], size=(int(rng.integers(4, max_regions + 1)), 2))
    distances = (rows[..., None] - seeds[:, 0]) ** 2 + (cols[..., None] - seeds[:, 1]) ** 2
    cells = np.argmin(distances, axis=-1).repeat(step, axis=0).repeat(step, axis=1)[:height, :width]
    noised = rng.uniform(size=len(seeds)) < rng.uniform(0.2, 0.8)
    replace = noised[cells] & ~objects
    result = image.copy()
    result[replace] = rng.integers(0, 256, size=(int(replace.sum()), 3), dtype=np.uint8)
    return result


class ScenePool:
    """A pool of resized training scenes, partly regenerated every step for fresh data.

    Images are stored ``(size, h, w, 3)`` uint8 as ``resize_for_network`` returns them; targets
    are ``(class_ids (K,) int64, boxes (K, 4) float64)`` in pixels of the resized image. With
    ``noise_probability`` > 0 that share of the scenes gets ``noise_background`` (at full size,
    before resizing, as a masked image reaches the model).
    """

    def __init__(self, rng: np.random.Generator, size: int, preprocess: Preprocess, image_size: int = 320,
                 max_objects: int = 3, noise_probability: float = 0.0):
        self.rng = rng
        self.max_objects = max_objects
        self.noise_probability = noise_probability
        self.preprocess = preprocess
        self.image_size = image_size
        height, width = resized_size(image_size, image_size, preprocess.short_side, preprocess.max_size)
        self.images = np.empty((size, height, width, 3), dtype=np.uint8)
        self.targets = [None] * size
        for index in range(size):
            self.replace(index)
            if (index + 1) % 500 == 0:
                logger.info("generated %d/%d pool scenes", index + 1, size)

    def replace(self, index: int) -> None:
        scene = generate_scene(self.rng, self.image_size, self.image_size, max_objects=self.max_objects)
        image = scene.image
        if self.noise_probability > 0 and self.rng.uniform() < self.noise_probability:
            image = noise_background(image, scene.masks.any(axis=0), self.rng)
        resized = resize_for_network(image[None], self.preprocess)[0]
        scale = resized.shape[1] / float(self.image_size)
        self.images[index] = resized
        self.targets[index] = (scene.class_ids, scene.boxes.astype(np.float64) * scale)

    def batch(self, batch_size: int) -> tuple[np.ndarray, list]:
        """Return ``(images (B, h, w, 3) uint8, [(class_ids, boxes)])`` with random dihedral flips."""
        indices = self.rng.choice(len(self.images), size=batch_size, replace=False)
        images, targets = [], []
        for index in indices:
            image = self.images[index]
            class_ids, boxes = self.targets[index]
            boxes = boxes.copy()
            height, width = image.shape[:2]
            if self.rng.uniform() < 0.5:
                image = image[:, ::-1]
                boxes[:, [0, 2]] = width - boxes[:, [2, 0]]
            if self.rng.uniform() < 0.5:
                image = image[::-1]
                boxes[:, [1, 3]] = height - boxes[:, [3, 1]]
            if self.rng.uniform() < 0.5:
                image = image.transpose(1, 0, 2)
                boxes = boxes[:, [1, 0, 3, 2]]
            images.append(np.ascontiguousarray(image))
            targets.append((class_ids, boxes))
        return np.stack(images), targets
