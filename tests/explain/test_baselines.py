"""Baseline images: seeded noise, mean colour, blur, black and a resized image file."""

import numpy as np
import pytest
from PIL import Image

from explain.baselines import make_baseline
from explain.errors import ConfigError


@pytest.fixture
def image():
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, size=(30, 40, 3), dtype=np.uint8)


def test_noise_is_seeded(image):
    first = make_baseline(image, "noise", np.random.default_rng(1))
    again = make_baseline(image, "noise", np.random.default_rng(1))
    other = make_baseline(image, "noise", np.random.default_rng(2))
    assert first.shape == image.shape and first.dtype == np.uint8
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)


def test_mean_black_blur(image):
    mean = make_baseline(image, "mean", np.random.default_rng(0))
    np.testing.assert_allclose(mean[0, 0], image.reshape(-1, 3).mean(axis=0), atol=0.5)
    assert np.all(mean == mean[0, 0])
    assert not make_baseline(image, "black", np.random.default_rng(0)).any()
    blur = make_baseline(image, "blur", np.random.default_rng(0))
    assert blur.dtype == np.uint8 and blur.std() < image.std() / 2


def test_image_file_is_resized(tmp_path, image):
    path = tmp_path / "baseline.png"
    Image.fromarray(np.full((7, 9, 3), 42, np.uint8)).save(path)
    baseline = make_baseline(image, str(path), np.random.default_rng(0))
    assert baseline.shape == image.shape and np.all(baseline == 42)


def test_unreadable_file(tmp_path, image):
    path = tmp_path / "broken.png"
    path.write_bytes(b"not an image")
    with pytest.raises(ConfigError, match="baseline image .* cannot be read"):
        make_baseline(image, str(path), np.random.default_rng(0))
