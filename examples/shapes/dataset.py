"""Seeded generator of synthetic "shapes" scenes (circles, squares, triangles) with ground truth."""
from __future__ import annotations

import colorsys
import json
import logging
import os
from dataclasses import dataclass

import click
import numpy as np
from PIL import Image
from scipy import ndimage
from skimage import draw

logger = logging.getLogger(__name__)

CLASSES = ("circle", "square", "triangle")
MIN_OBJECT_SIZE = 48
MAX_OBJECT_SIZE = 128
MIN_SATURATION = 0.5
MIN_VALUE = 0.5
MAX_NOISE_SIGMA = 20.0
MAX_CLUTTER_STROKES = 3
MAX_STROKE_WIDTH = 3
OBJECT_GAP = 2  # pixels kept free between two objects
SAMPLES_SEED = 2026_0006
_PLACEMENT_ATTEMPTS = 200


@dataclass(frozen=True)
class ShapesSample:
    """One generated image and its ground truth.

    Attributes:
        image: ``(H, W, 3)`` uint8 RGB.
        class_ids: ``(K,)`` int64, indices into :data:`CLASSES`.
        boxes: ``(K, 4)`` int64 tight boxes ``x0, y0, x1, y1`` in pixels; ``x1``/``y1`` are
            exclusive (``x1 - x0`` is the box width in pixels).
        masks: ``(K, H, W)`` bool, one pixel mask per object.
        colours: ``(K, 3)`` uint8 RGB fill colour of each object.
    """

    image: np.ndarray
    class_ids: np.ndarray
    boxes: np.ndarray
    masks: np.ndarray
    colours: np.ndarray


def random_fill_colour(rng: np.random.Generator) -> np.ndarray:
    """Return a saturated ``(3,)`` uint8 RGB colour whose HSV S and V are both >= 0.5."""
    while True:
        hue = rng.uniform(0.0, 1.0)
        saturation = rng.uniform(0.6, 1.0)
        value = rng.uniform(0.6, 1.0)
        colour = np.round(np.array(colorsys.hsv_to_rgb(hue, saturation, value)) * 255.0).astype(np.uint8)
        _, quantised_s, quantised_v = colorsys.rgb_to_hsv(*(colour / 255.0))
        if quantised_s >= MIN_SATURATION and quantised_v >= MIN_VALUE:
            return colour


def draw_background(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """Return a ``(height, width, 3)`` uint8 background: colour gradient, noise and clutter."""
    start_colour = rng.uniform(0, 255, size=3)
    end_colour = rng.uniform(0, 255, size=3)
    angle = rng.uniform(0, 2 * np.pi)
    rows, cols = np.mgrid[0:height, 0:width].astype(np.float64)
    projection = cols * np.cos(angle) + rows * np.sin(angle)
    projection = (projection - projection.min()) / max(np.ptp(projection), 1e-9)
    background = start_colour + (end_colour - start_colour) * projection[..., None]
    noise_sigma = rng.uniform(0.0, MAX_NOISE_SIGMA)
    background = background + rng.normal(0.0, noise_sigma, size=background.shape)
    image = np.clip(np.round(background), 0, 255).astype(np.uint8)
    for _ in range(rng.integers(0, MAX_CLUTTER_STROKES + 1)):
        stroke = _clutter_stroke_mask(rng, height, width)
        image[stroke] = rng.integers(0, 256, size=3, dtype=np.uint8)
    return image


def _clutter_stroke_mask(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """Return a ``(height, width)`` bool mask of a line or an arc at most 3 px wide."""
    if rng.uniform() < 0.5:
        points = rng.uniform([0, 0], [height, width], size=(2, 2))
    else:
        center = rng.uniform([0, 0], [height, width])
        radius = rng.uniform(20, max(height, width) / 2)
        first_angle = rng.uniform(0, 2 * np.pi)
        angles = first_angle + np.linspace(0, rng.uniform(0.5, 1.5) * np.pi, 32)
        points = center + radius * np.stack([np.sin(angles), np.cos(angles)], axis=1)
    stroke = np.zeros((height, width), dtype=bool)
    for (row0, col0), (row1, col1) in zip(points[:-1], points[1:]):
        rr, cc = draw.line(int(round(row0)), int(round(col0)), int(round(row1)), int(round(col1)))
        inside = (rr >= 0) & (rr < height) & (cc >= 0) & (cc < width)
        stroke[rr[inside], cc[inside]] = True
    stroke_width = int(rng.integers(1, MAX_STROKE_WIDTH + 1))
    if stroke_width > 1:
        stroke = ndimage.binary_dilation(stroke, structure=np.ones((stroke_width, stroke_width), bool))
    return stroke


def shape_mask(class_id: int, size: float, angle: float, center: tuple[float, float],
               height: int, width: int) -> np.ndarray:
    """Rasterise one shape into a ``(height, width)`` bool mask.

    Args:
        class_id: index into :data:`CLASSES`.
        size: the longer side of the shape's axis-aligned extent, in pixels (the diameter of a
            circle).
        angle: rotation in radians (ignored for circles).
        center: ``(row, col)`` of the extent's centre, in pixels.
        height, width: size of the mask.
    """
    if CLASSES[class_id] == "circle":
        rr, cc = draw.disk(center, size / 2.0, shape=(height, width))
    else:
        corner_count = 4 if CLASSES[class_id] == "square" else 3
        corner_angles = angle + 2 * np.pi * np.arange(corner_count) / corner_count
        corners = np.stack([np.sin(corner_angles), np.cos(corner_angles)], axis=1)
        extent = np.ptp(corners, axis=0)
        corners = (corners - corners.min(axis=0) - extent / 2) * (size - 1) / extent.max()
        corners = corners + np.asarray(center) - 0.5
        rr, cc = draw.polygon(corners[:, 0], corners[:, 1], shape=(height, width))
    mask = np.zeros((height, width), dtype=bool)
    mask[rr, cc] = True
    return mask


def mask_box(mask: np.ndarray) -> np.ndarray:
    """Return the tight ``(4,)`` int64 box ``x0, y0, x1, y1`` (exclusive ends) of a non-empty mask."""
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    return np.array([cols[0], rows[0], cols[-1] + 1, rows[-1] + 1], dtype=np.int64)


def _place_object(rng: np.random.Generator, class_id: int, occupied: np.ndarray) -> np.ndarray | None:
    """Return a ``(H, W)`` bool mask of a new object that keeps clear of ``occupied``, or None."""
    height, width = occupied.shape
    keep_out = ndimage.binary_dilation(occupied, iterations=OBJECT_GAP) if occupied.any() else occupied
    for _ in range(_PLACEMENT_ATTEMPTS):
        size = rng.uniform(MIN_OBJECT_SIZE, MAX_OBJECT_SIZE)
        half = size / 2.0
        center = (rng.uniform(half, height - half), rng.uniform(half, width - half))
        mask = shape_mask(class_id, size, rng.uniform(0, 2 * np.pi), center, height, width)
        box = mask_box(mask)
        longer_side = max(box[2] - box[0], box[3] - box[1])
        if MIN_OBJECT_SIZE <= longer_side <= MAX_OBJECT_SIZE and not (mask & keep_out).any():
            return mask
    return None


def generate_scene(rng: np.random.Generator, height: int = 320, width: int = 320,
                   min_objects: int = 1, max_objects: int = 3) -> ShapesSample:
    """Generate one detection scene with ``min_objects``..``max_objects`` non-overlapping shapes.

    Returns:
        a :class:`ShapesSample` whose image is ``(height, width, 3)`` uint8.
    """
    if min(height, width) < MAX_OBJECT_SIZE:
        raise ValueError("height and width must be >= %d, got %dx%d" % (MAX_OBJECT_SIZE, height, width))
    if not 1 <= min_objects <= max_objects:
        raise ValueError("need 1 <= min_objects <= max_objects, got %d, %d" % (min_objects, max_objects))
    image = draw_background(rng, height, width)
    object_count = int(rng.integers(min_objects, max_objects + 1))
    occupied = np.zeros((height, width), dtype=bool)
    class_ids, masks, colours = [], [], []
    for _ in range(object_count):
        class_id = int(rng.integers(0, len(CLASSES)))
        mask = _place_object(rng, class_id, occupied)
        if mask is None:
            logger.debug("no room for another object; keeping %d", len(masks))
            break
        colour = random_fill_colour(rng)
        image[mask] = colour
        occupied |= mask
        class_ids.append(class_id)
        masks.append(mask)
        colours.append(colour)
    return ShapesSample(
        image=image,
        class_ids=np.array(class_ids, dtype=np.int64),
        boxes=np.stack([mask_box(mask) for mask in masks]).astype(np.int64),
        masks=np.stack(masks),
        colours=np.stack(colours).astype(np.uint8),
    )


def generate_classification_sample(rng: np.random.Generator, height: int = 320,
                                   width: int = 320) -> ShapesSample:
    """Generate one image holding exactly one shape; its label is ``sample.class_ids[0]``."""
    return generate_scene(rng, height, width, min_objects=1, max_objects=1)


def generate_classification_batch(rng: np.random.Generator, count: int, height: int = 320,
                                  width: int = 320) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(images (count, H, W, 3) uint8, labels (count,) int64)`` of one-object images."""
    samples = [generate_classification_sample(rng, height, width) for _ in range(count)]
    return (np.stack([sample.image for sample in samples]),
            np.array([sample.class_ids[0] for sample in samples], dtype=np.int64))


def write_samples(out_dir: str, count: int = 6, seed: int = SAMPLES_SEED, height: int = 320,
                  width: int = 320) -> list[dict]:
    """Write ``shapes_<k>.png``, ``shapes_<k>_mask.png`` and ``ground_truth.json`` into ``out_dir``.

    The mask PNG holds, per pixel, the 1-based index of the object covering it (0 = background).
    Returns the ground-truth records written to ``ground_truth.json``.
    """
    os.makedirs(out_dir, exist_ok=True)
    rng = np.random.default_rng(seed)
    records = []
    for index in range(count):
        sample = generate_scene(rng, height, width)
        object_map = np.zeros(sample.image.shape[:2], dtype=np.uint8)
        for object_index, mask in enumerate(sample.masks, start=1):
            object_map[mask] = object_index
        image_file, mask_file = "shapes_%d.png" % index, "shapes_%d_mask.png" % index
        Image.fromarray(sample.image).save(os.path.join(out_dir, image_file))
        Image.fromarray(object_map).save(os.path.join(out_dir, mask_file))
        records.append({
            "image": image_file,
            "mask": mask_file,
            "objects": [
                {"mask_index": object_index + 1, "class_id": int(class_id),
                 "class": CLASSES[class_id], "box": [int(v) for v in box],
                 "colour": [int(v) for v in colour]}
                for object_index, (class_id, box, colour)
                in enumerate(zip(sample.class_ids, sample.boxes, sample.colours))
            ],
        })
    with open(os.path.join(out_dir, "ground_truth.json"), "w") as handle:
        json.dump({"classes": list(CLASSES), "seed": seed, "box_format": "x0,y0,x1,y1 pixels, x1/y1 exclusive",
                   "samples": records}, handle, indent=2)
    return records


@click.command()
@click.option("--samples", "samples_dir", type=click.Path(file_okay=False), required=True,
              help="Directory to write the sample images, masks and ground_truth.json into.")
@click.option("--count", default=6, show_default=True, type=click.IntRange(1, 1000),
              help="Number of sample images.")
@click.option("--seed", default=SAMPLES_SEED, show_default=True, type=int, help="Random seed.")
def main(samples_dir: str, count: int, seed: int) -> None:
    """Write demo sample images with their ground truth."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    records = write_samples(samples_dir, count=count, seed=seed)
    click.echo("wrote %d samples (%d objects) to %s"
               % (len(records), sum(len(r["objects"]) for r in records), samples_dir))


if __name__ == "__main__":
    main()
