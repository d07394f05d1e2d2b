"""Segments that know the targets: no segment straddles a box border, more segments in and near the boxes."""

from pathlib import Path

import numpy as np
import pytest
from skimage import data

from examples.shapes.dataset import generate_scene
from explain.masking import box_pixel_slices
from explain.target_segments import RING_MARGIN, allot_segments, box_regions, segment_with_boxes

FACE = np.array([[0.34, 0.12, 0.54, 0.32]])  # the astronaut's face, normalised
OVERLAPPING = np.array([[0.10, 0.10, 0.50, 0.60], [0.35, 0.40, 0.80, 0.90]])
THREE = np.array([[0.05, 0.05, 0.30, 0.35], [0.60, 0.10, 0.95, 0.40], [0.30, 0.60, 0.70, 0.95]])
TWO_SMALL = np.array([[0.05, 0.05, 0.22, 0.30], [0.60, 0.55, 0.80, 0.80]])


def box_mask(shape, box):
    mask = np.zeros(shape, dtype=bool)
    mask[box_pixel_slices(box, *shape)] = True
    return mask


def ring_mask(shape, box):
    x0, y0, x1, y1 = box
    margin_x, margin_y = RING_MARGIN * (x1 - x0), RING_MARGIN * (y1 - y0)
    grown = np.clip([x0 - margin_x, y0 - margin_y, x1 + margin_x, y1 + margin_y], 0, 1)
    return box_mask(shape, grown) & ~box_mask(shape, box)


def straddlers(segments, boxes):
    """Labels of segments with pixels both inside and outside some box."""
    found = set()
    for box in boxes:
        inside = box_mask(segments.shape, box)
        count = segments.max() + 1
        in_count = np.bincount(segments[inside], minlength=count)
        out_count = np.bincount(segments[~inside], minlength=count)
        found |= set(np.nonzero((in_count > 0) & (out_count > 0))[0].tolist())
    return found


def scene_image():
    return generate_scene(np.random.default_rng(5)).image


@pytest.mark.parametrize("method", ["merged", "slico", "slic"])
@pytest.mark.parametrize("image, boxes", [
    (data.astronaut(), FACE), (data.astronaut(), OVERLAPPING), (data.coffee(), THREE),
    (scene_image(), THREE)], ids=["face", "overlapping", "coffee-three", "shapes-three"])
def test_no_segment_straddles_a_box_border(method, image, boxes):
    segments = segment_with_boxes(image, boxes, 20, method=method)
    assert segments.dtype == np.int32 and segments.shape == image.shape[:2]
    assert set(np.unique(segments)) == set(range(segments.max() + 1))
    assert straddlers(segments, boxes) == set()


@pytest.mark.parametrize("image, boxes", [(data.astronaut(), FACE), (data.coffee(), TWO_SMALL)],
                         ids=["face", "coffee-two"])
def test_boxes_and_their_surroundings_get_denser_segments(image, boxes):
    segments = segment_with_boxes(image, boxes, 20)
    shape = segments.shape
    inside = np.any([box_mask(shape, box) for box in boxes], axis=0)
    ring = np.any([ring_mask(shape, box) for box in boxes], axis=0) & ~inside
    far = ~inside & ~ring

    def density(area):  # segments per 10,000 pixels, each segment counted where most of it lies
        sizes = np.bincount(segments.ravel())
        share = np.bincount(segments[area], minlength=len(sizes)) / sizes
        return (share > 0.5).sum() / area.sum() * 1e4

    assert density(inside) > 2 * density(ring) > 0
    assert density(ring) > density(far) > 0
    plain_segments = len(np.unique(segments[inside]))
    assert plain_segments >= 10  # half of the 20 segments lie in the boxes


def test_merged_gives_exactly_the_requested_count():
    for image, boxes in [(data.astronaut(), FACE), (data.coffee(), THREE), (scene_image(), THREE)]:
        assert segment_with_boxes(image, boxes, 20).max() + 1 == 20


def test_same_image_same_segments():
    image = data.astronaut()
    np.testing.assert_array_equal(segment_with_boxes(image, OVERLAPPING, 24),
                                  segment_with_boxes(image.copy(), OVERLAPPING, 24))


def test_regions_of_two_overlapping_boxes():
    regions, kinds = box_regions((100, 100), OVERLAPPING)
    # box-only parts of each box, their overlap, the rings around them and the far corners
    box_regions_found = {tuple(sorted(set(np.unique(regions[box_mask((100, 100), box)]))))
                         for box in OVERLAPPING}
    assert all(len(found) == 2 for found in box_regions_found)  # each box: its own part + overlap
    assert sorted(kinds.tolist()).count(0) == 3
    overlap = box_mask((100, 100), OVERLAPPING[0]) & box_mask((100, 100), OVERLAPPING[1])
    assert len(np.unique(regions[overlap])) == 1 and kinds[regions[overlap][0]] == 0
    assert kinds[regions[0, 99]] == 2 and kinds[regions[99, 0]] == 2  # far corners
    # a ring pixel just left of the first box
    assert kinds[regions[30, 5]] == 1


def test_one_targets_ring_does_not_cut_another_targets_box():
    boxes = np.array([[0.10, 0.10, 0.40, 0.40], [0.10, 0.45, 0.40, 0.75]])  # the first ring covers the second box's top
    regions, kinds = box_regions((200, 200), boxes)
    second = box_mask((200, 200), boxes[1])
    assert len(np.unique(regions[second])) == 1


@pytest.mark.parametrize("sizes, kinds, num_segments, expected", [
    ([100, 300, 600], [0, 1, 2], 20, [12, 3, 5]),         # shares 0.6, 0.15, 0.25
    ([100, 100, 800], [0, 0, 2], 20, [7, 7, 6]),          # no ring: box 0.6/0.85, far 0.25/0.85; box by area
    ([100, 900], [0, 2], 20, [14, 6]),                    # no ring: its share passes on
    ([50, 50, 50, 50, 9800], [0, 0, 0, 0, 2], 3, [1, 1, 1, 1, 1]),  # at least one per region
    ([3, 1000], [0, 2], 20, [3, 17]),                     # never more segments than pixels: the rest pass on
    ([100, 300, 100], [0, 1, 2], 20, [12, 6, 2]),         # far denser than ring by shares: they pool
])
def test_allot_segments(sizes, kinds, num_segments, expected):
    assert allot_segments(np.array(sizes), np.array(kinds), num_segments).tolist() == expected


def test_plain_slic_inside_the_boxes_far_below_the_count_asked_is_a_warning(caplog):
    """--segmentation slic with box-aware segments: the count can fall far short there too, and is said."""
    from PIL import Image

    image = np.asarray(Image.open(Path(__file__).resolve().parents[2] / "examples/shapes/samples/shapes_0.png")
                       .convert("RGB"))
    box = np.array([[0.2, 0.2, 0.6, 0.6]])
    with caplog.at_level("WARNING", logger="explain.segmentation"):
        segment_map = segment_with_boxes(image, box, 20, 5.0, method="slic")
    assert segment_map.max() + 1 == 4
    assert [record.getMessage() for record in caplog.records] == [
        "plain SLIC (segmentation slic) gave 4 segments of the 20 asked with the segments fitted to the target "
        "boxes (segment_compactness 5); explained with those 4. For more segments, raise --segment-compactness "
        "(e.g. 20 or 50; Clarify: segment_compactness) or --num-segments, or use --segmentation merged (the "
        "default without --clarify-compatible), which gives --num-segments"]
    caplog.clear()
    with caplog.at_level("WARNING", logger="explain.segmentation"):
        segment_with_boxes(image, box, 20, 5.0, method="slico")
        segment_with_boxes(image, box, 20, 5.0, method="merged")
    assert not caplog.records


def test_merged_inside_the_boxes_below_the_count_asked_is_a_warning(caplog):
    """Review 17, F13: --num-segments 1000 on a small image gives fewer segments, and says so."""
    from PIL import Image

    image = np.asarray(Image.open(Path(__file__).resolve().parents[2] / "examples/shapes/samples/shapes_1.png")
                       .convert("RGB"))[:50, :50].copy()
    box = np.array([[0.2, 0.2, 0.6, 0.6]])
    with caplog.at_level("WARNING", logger="explain.segmentation"):
        segment_map = segment_with_boxes(image, box, 1000)
    assert segment_map.max() + 1 < 1000
    assert [record.getMessage() for record in caplog.records] == [
        f"the merged segmentation gave {segment_map.max() + 1} segments of the 1000 asked with the segments fitted "
        "to the target boxes: the superpixels it merges were no more in this image; explained with those "
        f"{segment_map.max() + 1}. For exactly --num-segments, ask for fewer or explain a larger image"]
