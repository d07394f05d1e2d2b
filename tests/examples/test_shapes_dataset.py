"""Known-answer tests of the synthetic shapes generator."""
import colorsys

import numpy as np
import pytest

from examples.shapes.dataset import (
    CLASSES,
    MAX_OBJECT_SIZE,
    MIN_OBJECT_SIZE,
    generate_classification_batch,
    generate_classification_sample,
    generate_scene,
    mask_box,
)

SCENE_COUNT = 40


@pytest.fixture(scope="module")
def scenes():
    rng = np.random.default_rng(1234)
    return [generate_scene(rng) for _ in range(SCENE_COUNT)]


def test_same_seed_gives_identical_scenes():
    first = generate_scene(np.random.default_rng(7))
    second = generate_scene(np.random.default_rng(7))
    np.testing.assert_array_equal(first.image, second.image)
    np.testing.assert_array_equal(first.class_ids, second.class_ids)
    np.testing.assert_array_equal(first.boxes, second.boxes)
    np.testing.assert_array_equal(first.masks, second.masks)


def test_different_seeds_give_different_scenes():
    first = generate_scene(np.random.default_rng(7))
    second = generate_scene(np.random.default_rng(8))
    assert not np.array_equal(first.image, second.image)


def test_image_shape_and_dtype_follow_the_requested_size():
    sample = generate_scene(np.random.default_rng(3), height=256, width=384)
    assert sample.image.shape == (256, 384, 3)
    assert sample.image.dtype == np.uint8
    assert sample.masks.shape[1:] == (256, 384)


def test_object_count_is_one_to_three_and_all_counts_occur(scenes):
    counts = [len(scene.class_ids) for scene in scenes]
    assert set(counts) == {1, 2, 3}
    for scene in scenes:
        count = len(scene.class_ids)
        assert scene.boxes.shape == (count, 4)
        assert scene.masks.shape == (count, 320, 320)
        assert scene.colours.shape == (count, 3)


def test_every_class_occurs(scenes):
    class_ids = np.concatenate([scene.class_ids for scene in scenes])
    assert set(class_ids.tolist()) == set(range(len(CLASSES)))


def test_objects_never_overlap(scenes):
    for scene in scenes:
        assert scene.masks.sum(axis=0).max() <= 1


def test_object_sizes_are_within_bounds(scenes):
    for scene in scenes:
        widths = scene.boxes[:, 2] - scene.boxes[:, 0]
        heights = scene.boxes[:, 3] - scene.boxes[:, 1]
        longer_sides = np.maximum(widths, heights)
        assert longer_sides.min() >= MIN_OBJECT_SIZE
        assert longer_sides.max() <= MAX_OBJECT_SIZE


def test_fill_colours_are_saturated_and_bright_and_fill_the_mask(scenes):
    for scene in scenes:
        for mask, colour in zip(scene.masks, scene.colours):
            _, saturation, value = colorsys.rgb_to_hsv(*(colour / 255.0))
            assert saturation >= 0.5
            assert value >= 0.5
            assert (scene.image[mask] == colour).all()


def test_boxes_are_the_tight_bounding_boxes_of_the_masks(scenes):
    for scene in scenes:
        for mask, box in zip(scene.masks, scene.boxes):
            rows = np.flatnonzero(mask.any(axis=1))
            cols = np.flatnonzero(mask.any(axis=0))
            np.testing.assert_array_equal(box, [cols[0], rows[0], cols[-1] + 1, rows[-1] + 1])
            np.testing.assert_array_equal(mask_box(mask), box)


def test_classification_variant_has_exactly_one_object():
    rng = np.random.default_rng(99)
    for _ in range(20):
        assert len(generate_classification_sample(rng).class_ids) == 1
    images, labels = generate_classification_batch(np.random.default_rng(5), 12)
    assert images.shape == (12, 320, 320, 3) and images.dtype == np.uint8
    assert labels.shape == (12,) and labels.dtype == np.int64
    assert set(labels.tolist()) <= {0, 1, 2}


def test_samples_command_writes_images_masks_and_ground_truth(tmp_path):
    import json

    from click.testing import CliRunner
    from PIL import Image

    from examples.shapes.dataset import main

    result = CliRunner().invoke(main, ["--samples", str(tmp_path), "--count", "2", "--seed", "11"])
    assert result.exit_code == 0, result.output
    truth = json.loads((tmp_path / "ground_truth.json").read_text())
    assert truth["classes"] == list(CLASSES)
    for record in truth["samples"]:
        object_map = np.array(Image.open(tmp_path / record["mask"]))
        assert set(np.unique(object_map)) == set(range(len(record["objects"]) + 1))
        for obj in record["objects"]:
            assert obj["class"] == CLASSES[obj["class_id"]]
            np.testing.assert_array_equal(mask_box(object_map == obj["mask_index"]), obj["box"])


def test_noise_background_keeps_objects_and_noises_part_of_the_background(scenes):
    from examples.shapes.training_utils import noise_background

    shares = []
    for index, scene in enumerate(scenes[:10]):
        objects = scene.masks.any(axis=0)
        noised = noise_background(scene.image, objects, np.random.default_rng(index))
        again = noise_background(scene.image, objects, np.random.default_rng(index))
        assert noised.shape == scene.image.shape and noised.dtype == np.uint8
        np.testing.assert_array_equal(noised, again)
        np.testing.assert_array_equal(noised[objects], scene.image[objects])
        changed = (noised != scene.image).any(axis=-1)
        shares.append(changed[~objects].mean())
    # each cell is noised with a probability in [0.2, 0.8]: some background changes, never all of it
    assert 0.05 < np.mean(shares) < 0.95
    assert max(shares) < 1.0
