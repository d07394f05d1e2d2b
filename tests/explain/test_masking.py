"""Masked images and context blending: kept segments show the image, others the baseline."""

import numpy as np

from explain.masking import box_pixel_slices, context_foreground, mask_images


def test_coalition_keeps_its_segments_and_takes_baseline_elsewhere():
    image = np.full((4, 6, 3), 200, np.uint8)
    baseline = np.full((4, 6, 3), 10, np.uint8)
    segments = np.repeat(np.array([[0, 0, 1, 1, 2, 2]]), 4, axis=0).astype(np.int32)
    coalitions = np.array([[1, 0, 1], [0, 0, 0], [1, 1, 1]], dtype=bool)
    masked = mask_images(image, baseline, segments, coalitions)
    assert masked.shape == (3, 4, 6, 3) and masked.dtype == np.uint8
    np.testing.assert_array_equal(masked[0, :, :, 0], [[200, 200, 10, 10, 200, 200]] * 4)
    np.testing.assert_array_equal(masked[1], baseline)
    np.testing.assert_array_equal(masked[2], image)


def test_context_blends_background_only():
    image = np.full((10, 10, 3), 200, np.uint8)
    baseline = np.zeros((10, 10, 3), np.uint8)
    box = np.array([0.2, 0.2, 0.5, 0.6])  # columns 2..4, rows 2..5
    half = context_foreground(image, baseline, box, 0.5)
    assert half[3, 3, 0] == 200 and half[0, 0, 0] == 100 and half[9, 9, 0] == 100
    assert half[5, 4, 0] == 200 and half[6, 4, 0] == 100 and half[5, 5, 0] == 100
    hidden = context_foreground(image, baseline, box, 0.0)
    assert hidden[0, 0, 0] == 0 and hidden[2, 2, 0] == 200
    assert context_foreground(image, baseline, box, 1.0) is image


def test_box_pixels_widen_outward_and_never_vanish():
    assert box_pixel_slices(np.array([0.25, 0.0, 0.26, 1.0]), 8, 100) == (slice(0, 8), slice(25, 26))
    assert box_pixel_slices(np.array([0.5, 0.5, 0.5, 0.5]), 10, 10) == (slice(5, 6), slice(5, 6))
    assert box_pixel_slices(np.array([-1, -1, 2, 2]), 10, 10) == (slice(0, 10), slice(0, 10))
