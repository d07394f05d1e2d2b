"""Superpixels: the features that Kernel SHAP switches on and off."""

from __future__ import annotations

import heapq
import logging

import numpy as np

from .config import SEGMENTATION_METHODS
from .image_warnings import warn_about_image

__all__ = ["segment_image", "relabel_contiguous", "ward_merge", "oversegment", "plain_slic", "grid_slico",
           "warn_if_merged_fell_short", "warn_if_plain_slic_fell_short", "SEGMENTATION_METHODS", "OVERSEGMENT_FACTOR"]

logger = logging.getLogger(__name__)

# "merged" asks SLICO for this many times num_segments superpixels before merging them.
# Ceiling on 40 shapes scenes at 20 segments (grid seeds): 2x 0.923, 4x 0.978, 6x 0.973.
OVERSEGMENT_FACTOR = 4

# Connectivity enforcement can still merge or drop a few segments; re-asking with a scaled
# request a few times and keeping the count closest to the target costs a few cheap slic calls.
_MAX_ATTEMPTS = 4

_METHOD_NAMES = {"slic": "plain SLIC (segmentation slic)", "slico": "SLICO (segmentation slico)",
                 "merged": "the merged segmentation"}
# What changes the count of plain SLIC, which works in CIELAB: a higher compactness gives more,
# squarer segments (a 320 px shapes scene at 20 segments: 1 at compactness 5 and 10, 10 at 20, 15 at 50).
_FEWER_SEGMENTS_HINT = ("For more segments, raise --segment-compactness (e.g. 20 or 50; Clarify: "
                        "segment_compactness) or --num-segments, or use --segmentation merged (the default "
                        "without --clarify-compatible), which gives --num-segments")


def relabel_contiguous(segment_map: np.ndarray) -> np.ndarray:
    """Renumber labels to 0..S-1 in order of first appearance of each value's sorted rank.

    segment_map: (H, W) integer labels, any values. Returns (H, W) int32 in 0..S-1.
    """
    _, inverse = np.unique(segment_map, return_inverse=True)
    return inverse.reshape(segment_map.shape).astype(np.int32)


def _slic(image: np.ndarray, n_segments: int, compactness: float, slic_zero: bool) -> np.ndarray:
    from skimage.segmentation import slic

    # A full mask makes slic place exactly n_segments seeds by k-means over the pixel grid
    # (deterministic: skimage seeds it) instead of a regular grid, whose rows x columns
    # rounding turns 20 into 16 or 25 on a square image.
    full_mask = np.ones(image.shape[:2], dtype=bool)
    return slic(image, n_segments=n_segments, compactness=compactness, slic_zero=slic_zero,
                start_label=0, channel_axis=-1, mask=full_mask)


def _slico(image: np.ndarray, num_segments: int, compactness: float) -> np.ndarray:
    """SLICO superpixels, re-asked until their count is close to ``num_segments``.

    image: (H, W, 3) uint8. Returns (H, W) int32 labels 0..S-1, S within 5% of
    ``num_segments`` where a few slic calls reach it (else the closest count seen).
    """
    best_map, best_gap = None, None
    request = num_segments
    tried = set()
    for _ in range(_MAX_ATTEMPTS):
        tried.add(request)
        segment_map = relabel_contiguous(_slic(image, request, compactness, slic_zero=True))
        count = int(segment_map.max()) + 1
        gap = abs(count - num_segments)
        if best_gap is None or gap < best_gap:
            best_map, best_gap = segment_map, gap
        if gap <= max(1, num_segments // 20):
            break
        request = max(2, int(round(request * num_segments / max(count, 1))))
        if request in tried:
            request = request + (1 if count < num_segments else -1)
            if request in tried or request < 2:
                break
    return best_map


def plain_slic(image: np.ndarray, num_segments: int, compactness: float,
               mask: np.ndarray | None = None) -> np.ndarray:
    """scikit-image's SLIC with its defaults, as Clarify's settings name it (no count retries).

    image: (H, W, 3) uint8; mask: optional (H, W) bool, superpixels only inside it. Returns
    (H, W) int32 labels 0..S-1 (with a mask: -1 outside it, 0..S-1 inside). At Clarify's
    compactness 5 this can give far fewer segments than asked (examples/shapes/samples/shapes_0.png,
    320 px: 1 of 20; ``segment_image`` then warns).
    """
    from skimage.segmentation import slic

    labels = slic(image, n_segments=num_segments, compactness=compactness, start_label=1,
                  channel_axis=-1, mask=mask)
    if mask is None:
        return relabel_contiguous(labels)
    result = np.full(labels.shape, -1, dtype=np.int32)
    inside = labels > 0
    result[inside] = relabel_contiguous(labels[inside])
    return result


def _adjacent_pairs(segment_map: np.ndarray) -> np.ndarray:
    """Label pairs that touch (4-connectivity): (P, 2) int64 rows (a, b), a < b, unique, sorted."""
    count = int(segment_map.max()) + 1
    codes = []
    for first, second in ((segment_map[:, :-1], segment_map[:, 1:]),
                          (segment_map[:-1, :], segment_map[1:, :])):
        differ = first != second
        low = np.minimum(first[differ], second[differ]).astype(np.int64)
        high = np.maximum(first[differ], second[differ]).astype(np.int64)
        codes.append(low * count + high)
    codes = np.unique(np.concatenate(codes))
    return np.stack([codes // count, codes % count], axis=1)


def ward_merge(segment_map: np.ndarray, features: np.ndarray, num_regions: int,
               groups: np.ndarray | None = None, quotas: np.ndarray | None = None) -> np.ndarray:
    """Merge adjacent regions, cheapest first by Ward's criterion, until ``num_regions`` remain.

    segment_map: (H, W) int labels 0..S-1, features: (H, W, C) float (mean colour is compared).
    Returns (H, W) int32 labels 0..R-1 with R = min(S, num_regions) when the regions form one
    adjacency component. cost(a, b) = n_a n_b / (n_a + n_b) * |mean_a - mean_b|^2, the growth
    of the within-region squared error. A heap with lazy invalidation (a version per region)
    keeps it O(P log P) for P adjacent pairs; ties go to the smaller label pair, and a pair
    merges into its smaller label, so the result is deterministic. Only touching regions
    merge, so connected regions stay connected.

    groups: optional (S,) int, a group id per label: only labels of the same group merge (a
    border between groups is never crossed), and group g stops merging once it is down to
    ``quotas[g]`` regions (quotas: (G,) int >= 1; ``num_regions`` is then ignored).
    """
    count = int(segment_map.max()) + 1
    flat = segment_map.ravel()
    sizes = np.bincount(flat, minlength=count).astype(np.float64)
    sums = np.stack([np.bincount(flat, weights=features[..., channel].ravel(), minlength=count)
                     for channel in range(features.shape[-1])], axis=1)
    sizes, sums = sizes.tolist(), [tuple(row) for row in sums.tolist()]
    means = [tuple(total / size for total in row) for row, size in zip(sums, sizes)]
    neighbours = [set() for _ in range(count)]
    version = [0] * count  # bumped when a region grows; -1 once merged away
    parent = list(range(count))
    if groups is None:
        group_of = [0] * count
        left = [count]
        floor = [num_regions]
    else:
        group_of = [int(group) for group in groups]
        left = np.bincount(np.asarray(groups, dtype=np.int64), minlength=len(quotas)).tolist()
        floor = [int(quota) for quota in quotas]

    def entry(a: int, b: int) -> tuple:
        squared = sum((x - y) ** 2 for x, y in zip(means[a], means[b]))
        return sizes[a] * sizes[b] / (sizes[a] + sizes[b]) * squared, a, b, version[a], version[b]

    for a, b in _adjacent_pairs(segment_map).tolist():
        if group_of[a] != group_of[b]:
            continue
        neighbours[a].add(b)
        neighbours[b].add(a)
    heap = [entry(a, b) for a in range(count) for b in neighbours[a] if a < b]
    heapq.heapify(heap)
    while heap and any(remaining > target for remaining, target in zip(left, floor)):
        _, a, b, version_a, version_b = heapq.heappop(heap)
        if version[a] != version_a or version[b] != version_b:
            continue  # stale: one of the two has merged since this cost was computed
        group = group_of[a]
        if left[group] <= floor[group]:
            continue  # this group is down to its quota; its pairs are dropped for good
        sizes[a] += sizes[b]
        sums[a] = tuple(x + y for x, y in zip(sums[a], sums[b]))
        means[a] = tuple(total / sizes[a] for total in sums[a])
        parent[b], version[a], version[b] = a, version[a] + 1, -1
        for other in neighbours[b]:
            neighbours[other].discard(b)
            if other != a:
                neighbours[other].add(a)
                neighbours[a].add(other)
        neighbours[b] = set()
        for other in neighbours[a]:
            heapq.heappush(heap, entry(min(a, other), max(a, other)))
        left[group] -= 1
    for label in range(count):  # parent[label] <= label: its entry already holds the root
        parent[label] = parent[parent[label]]
    return relabel_contiguous(np.asarray(parent, dtype=np.int64)[segment_map])


def grid_slico(image: np.ndarray, request: int, compactness: float) -> np.ndarray:
    """SLICO on slic's regular seed grid (fast for thousands of superpixels): (H, W) int32 0..S-1."""
    from skimage.segmentation import slic

    return relabel_contiguous(slic(image, n_segments=request, compactness=compactness,
                                   slic_zero=True, start_label=0, channel_axis=-1))


def oversegment(image: np.ndarray, num_segments: int, compactness: float) -> np.ndarray:
    """About ``OVERSEGMENT_FACTOR * num_segments`` SLICO superpixels, for merging.

    image: (H, W, 3) uint8. Returns (H, W) int32 labels 0..S-1. Seeds sit on slic's regular
    grid: the exact count does not matter before merging, and it is both faster than k-means
    seeds (0.06 s against 3.2 s for 4000 segments at 320 x 320) and follows outlines better
    (ceiling 0.978 against 0.922 after merging to 20, scenes as in ``segment_image``). Where the grid
    gives fewer than ``num_segments``, the k-means seeded, count-retrying SLICO is used.
    """
    request = num_segments * OVERSEGMENT_FACTOR
    segment_map = grid_slico(image, request, compactness)
    if segment_map.max() + 1 < num_segments:
        segment_map = _slico(image, request, compactness)
    return segment_map


def warn_if_plain_slic_fell_short(found: int, num_segments: int, compactness: float,
                                  where: str = "") -> None:
    """Warn (for the image being explained) when plain SLIC gave fewer than half the segments asked."""
    if found < num_segments / 2:
        warn_about_image(logger, f"{_METHOD_NAMES['slic']} gave {found} segments of the {num_segments} asked"
                                 f"{where} (segment_compactness {compactness:g}); explained with those {found}. "
                                 f"{_FEWER_SEGMENTS_HINT}")


def warn_if_merged_fell_short(found: int, num_segments: int, where: str = "") -> None:
    """Warn (for the image being explained) when the merged segmentation gave fewer segments than asked:
    its over-segmentation of the image held fewer superpixels than that (a small image, many segments)."""
    if found < num_segments:
        warn_about_image(logger, f"{_METHOD_NAMES['merged']} gave {found} segments of the {num_segments} asked"
                                 f"{where}: the superpixels it merges were no more in this image; explained with "
                                 f"those {found}. For exactly --num-segments, ask for fewer or explain a larger "
                                 "image")


def segment_image(image: np.ndarray, num_segments: int = 20, compactness: float = 5.0,
                  method: str = "merged") -> np.ndarray:
    """Split an image into ``num_segments`` superpixels (about that many for "slico" and "slic").

    image: (H, W, 3) uint8. num_segments: an integer >= 1; compactness: a finite number > 0
    (ValueError otherwise). Returns the segment map, (H, W) int32 with labels 0..S-1;
    S = ``segment_map.max() + 1`` is the number of segments actually used: ``num_segments``
    for "merged" unless the image has fewer pixels or superpixels than that, close to it
    for "slico", and never below 2 for an image with more than one pixel.

    method "slico": SLICO (``slic_zero``) with k-means seeds, re-asked until the count is
    close; its per-segment compactness gives close to ``num_segments`` on photos and flat
    scenes alike, where plain SLIC at Clarify's compactness 5 can merge a 320 px scene into
    2 segments. Measured for num_segments=20 (plain slic -> slico): astronaut 6 -> 20,
    coffee 14 -> 20, chelsea 8 -> 20, three 320 px shapes scenes 3/9/15 -> 20/19/20.

    method "slic": scikit-image's plain SLIC at ``compactness``, what Clarify's settings
    describe; its count can fall far below ``num_segments`` (see above).

    method "merged" (default): SLICO over-segments to ``OVERSEGMENT_FACTOR`` x
    ``num_segments``, then touching superpixels merge by Ward's criterion on their mean
    CIELAB colour until ``num_segments`` remain, so segment borders follow object outlines
    instead of a grid. Segmentation ceiling (share of an ideal attribution inside the object
    mask, ``bench.bench_localisation.segmentation_ceiling``) on 40 shapes scenes (seed
    777001) at 20 segments: slico 0.790, merged 0.978; at 10: 0.418 -> 0.911; at 50:
    0.898 -> 0.985. Localisation of the detector it was measured with
    (bench.bench_localisation, 100 images, 500 samples): 0.667 -> 0.808 (BENCHMARKS.md).
    """
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"image must have shape (H, W, 3), got {image.shape}")
    if isinstance(num_segments, bool) or not isinstance(num_segments, (int, np.integer)) or num_segments < 1:
        raise ValueError(f"num_segments must be an integer >= 1, got {num_segments!r}")
    if isinstance(compactness, bool) or not isinstance(compactness, (int, float, np.integer, np.floating)) or not (
            np.isfinite(compactness) and compactness > 0):
        raise ValueError(f"compactness must be a finite number > 0, got {compactness!r}")
    if method not in SEGMENTATION_METHODS:
        raise ValueError(f"method must be one of {', '.join(SEGMENTATION_METHODS)}, got {method!r}")
    if method == "slico":
        segment_map = _slico(image, num_segments, compactness)
    elif method == "slic":
        segment_map = plain_slic(image, num_segments, compactness)
    else:
        from skimage.color import rgb2lab

        over = oversegment(image, num_segments, compactness)
        segment_map = ward_merge(over, rgb2lab(image), max(2, num_segments))
    found = int(segment_map.max()) + 1
    if found < 2 and segment_map.size > 1:
        # One segment explains nothing: fall back to a left/right split, and say so.
        segment_map = np.zeros(image.shape[:2], np.int32)
        segment_map[:, image.shape[1] // 2:] = 1
        warn_about_image(logger, f"{_METHOD_NAMES[method]} gave 1 segment of the {num_segments} asked "
                                 f"(segment_compactness {compactness:g}); explained with 2 segments instead, the "
                                 f"left and right halves of the image. {_FEWER_SEGMENTS_HINT}")
    elif method == "slic":
        warn_if_plain_slic_fell_short(found, num_segments, compactness)
    else:
        warn_if_merged_fell_short(found, num_segments)
    logger.debug("segmentation (%s): asked %d segments, using %d", method, num_segments,
                 segment_map.max() + 1)
    return segment_map
