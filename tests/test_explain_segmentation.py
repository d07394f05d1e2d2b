"""SLIC superpixels: close to the requested count on photos and flat synthetic scenes."""

import numpy as np
import pytest
from skimage import data

from explain.segmentation import relabel_contiguous, segment_image


def shapes_scene(seed, size=320):
    """Flat background with a few flat-coloured rectangles and discs (like the demo data)."""
    rng = np.random.default_rng(seed)
    image = np.empty((size, size, 3), np.uint8)
    image[:] = rng.integers(60, 200, size=3)
    rows, cols = np.mgrid[:size, :size]
    for _ in range(3):
        colour = rng.integers(0, 256, size=3)
        top, left = rng.integers(0, size - 100, size=2)
        extent = rng.integers(48, 100)
        if rng.random() < 0.5:
            image[top:top + extent, left:left + extent] = colour
        else:
            radius = extent / 2
            disc = (rows - top - radius) ** 2 + (cols - left - radius) ** 2 < radius ** 2
            image[disc] = colour
    noise = rng.normal(0, 8, image.shape)
    return np.clip(image + noise, 0, 255).astype(np.uint8)


PHOTOS = {"astronaut": data.astronaut, "coffee": data.coffee, "chelsea": data.chelsea}


@pytest.mark.parametrize("name", sorted(PHOTOS))
@pytest.mark.parametrize("num_segments", [10, 20, 50])
def test_photo_count_close_to_requested(name, num_segments):
    segments = segment_image(PHOTOS[name](), num_segments)
    count = segments.max() + 1
    assert abs(count - num_segments) <= max(2, 0.1 * num_segments)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("num_segments", [16, 20])
def test_shapes_scene_count_close_to_requested(seed, num_segments):
    # Plain SLIC at compactness 5 in Lab space merges such a scene into a handful of segments.
    segments = segment_image(shapes_scene(seed), num_segments, compactness=5.0)
    assert abs(segments.max() + 1 - num_segments) <= 2


def test_labels_are_contiguous_int32_and_cover_the_image():
    image = shapes_scene(3, size=120)
    segments = segment_image(image, 12)
    assert segments.shape == image.shape[:2] and segments.dtype == np.int32
    assert set(np.unique(segments)) == set(range(segments.max() + 1))


def test_relabel_contiguous():
    labels = np.array([[7, 7, 3], [3, 12, 12]])
    np.testing.assert_array_equal(relabel_contiguous(labels), [[1, 1, 0], [0, 2, 2]])


def test_uniform_image_still_has_two_segments():
    segments = segment_image(np.full((40, 40, 3), 128, np.uint8), 20)
    assert segments.max() + 1 >= 2


def test_rejects_grey_images():
    with pytest.raises(ValueError, match=r"image must have shape \(H, W, 3\)"):
        segment_image(np.zeros((10, 10), np.uint8), 4)
