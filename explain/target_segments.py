"""Segments that know the targets: box borders cut segments, and boxes and their surroundings get more of them.

A detector's evidence for a box lies mostly inside the box and next to it. Colour-merged
superpixels ignore that: one segment of face, hair and forehead can straddle the face
box and hold almost all of the face's score. Here the target boxes first cut the image
into regions (``box_regions``):

* box: inside at least one target box (overlapping boxes split into their overlaps);
* ring: inside a box enlarged by ``RING_MARGIN`` of its side on every edge, outside all boxes
  (one region per connected area, whichever targets' rings make it up);
* far: everything else.

No segment crosses a region border, except a region smaller than ``MIN_REGION_SHARE`` of
the smallest box, which joins the neighbour it shares most border with (a sliver between
two boxes is not worth a feature). The ``num_segments`` are shared out by region kind,
``KIND_SHARES`` = box 0.6, ring 0.15, far 0.25 (a kind that does not occur passes its share
on; a kind never gets denser segments than one nearer the boxes), and within a kind in
proportion to area, at least one per region. Each region is then
segmented on its own with the chosen method ("merged": a SLICO over-segmentation cut by
the region borders and merged by colour within each region down to its quota; "slico" and
"slic": superpixels computed inside the region's mask).
"""

from __future__ import annotations

import logging

import numpy as np

from .masking import box_pixel_slices
from .segmentation import (
    OVERSEGMENT_FACTOR,
    _slico,
    grid_slico,
    plain_slic,
    relabel_contiguous,
    ward_merge,
    warn_if_merged_fell_short,
    warn_if_plain_slic_fell_short,
)

__all__ = [
    "box_regions",
    "allot_segments",
    "segment_with_boxes",
    "RING_MARGIN",
    "KIND_SHARES",
    "REGION_KINDS",
]

logger = logging.getLogger(__name__)

REGION_KINDS = ("box", "ring", "far")
# Measured on 10 shapes scenes (shapes detector, defaults otherwise): box/ring/far 0.4/0.2/0.4
# 0.784, 0.5/0.25/0.25 0.798, 0.6/0.15/0.25 0.809, 0.7/0.1/0.2 0.806; the astronaut's face
# (Haar cascade, 256 px): share in the box 0.940 at 0.5/0.25/0.25, 0.984 at 0.6/0.15/0.25.
KIND_SHARES = (0.6, 0.15, 0.25)
# The ring is the box enlarged by this fraction of its width / height beyond every edge.
RING_MARGIN = 0.5
# A region smaller than this fraction of the smallest box joins a neighbouring region.
MIN_REGION_SHARE = 0.05
# The over-segmentation that "merged" starts from holds at most this many superpixels.
_MAX_SUPERPIXELS = 4000


def _connected_components(label_map: np.ndarray) -> np.ndarray:
    """(H, W) int -> (H, W) int32: each 4-connected area of equal value gets its own label 0..R-1."""
    from skimage.measure import label

    return relabel_contiguous(label(label_map, background=-1, connectivity=1))


def box_regions(shape: tuple[int, int], boxes: np.ndarray,
                ring_margin: float = RING_MARGIN) -> tuple[np.ndarray, np.ndarray]:
    """Cut an image into box, ring and far regions.

    shape: (H, W); boxes: (T, 4) normalised [x0, y0, x1, y1]. Returns the region map, (H, W)
    int32 labels 0..R-1 (each region 4-connected, pixels of one region inside the same set of
    boxes and rings), and the kind of each region, (R,) int in 0..2 (``REGION_KINDS``).
    Regions smaller than ``MIN_REGION_SHARE`` of the smallest box are merged into the
    neighbouring region they share the longest border with.
    """
    height, width = shape
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    signature = np.zeros((height, width), dtype=np.int64)
    in_box = np.zeros((height, width), dtype=bool)
    in_ring = np.zeros((height, width), dtype=bool)
    box_areas = []
    for index, box in enumerate(boxes):
        rows, cols = box_pixel_slices(box, height, width)
        box_areas.append((rows.stop - rows.start) * (cols.stop - cols.start))
        x0, y0, x1, y1 = np.clip(box, 0.0, 1.0)
        margin_x, margin_y = ring_margin * (x1 - x0), ring_margin * (y1 - y0)
        ring_rows, ring_cols = box_pixel_slices(
            np.clip([x0 - margin_x, y0 - margin_y, x1 + margin_x, y1 + margin_y], 0.0, 1.0),
            height, width)
        ring = np.zeros((height, width), dtype=bool)
        ring[ring_rows, ring_cols] = True
        ring[rows, cols] = False
        signature[rows, cols] |= 1 << index
        in_box[rows, cols] = True
        in_ring |= ring
    # Box regions are told apart by the set of boxes holding them; rings only by being rings,
    # so that one target's ring never cuts another target's box or ring.
    signature[in_ring & ~in_box] = -1
    regions = _connected_components(signature)
    if box_areas:
        regions = _absorb_small_regions(regions, MIN_REGION_SHARE * min(box_areas))
    count = int(regions.max()) + 1
    boxed = np.bincount(regions.ravel(), weights=in_box.ravel(), minlength=count)
    ringed = np.bincount(regions.ravel(), weights=(in_ring & ~in_box).ravel(), minlength=count)
    sizes = np.bincount(regions.ravel(), minlength=count)
    # A region's kind is what most of its pixels are (absorbed slivers do not change it).
    kinds = np.where(boxed * 2 >= sizes, 0, np.where((boxed + ringed) * 2 >= sizes, 1, 2))
    return regions, kinds.astype(np.int64)


def _absorb_small_regions(regions: np.ndarray, min_pixels: float) -> np.ndarray:
    """Merge regions under ``min_pixels`` into the neighbour sharing the longest border, smallest first."""
    while True:
        count = int(regions.max()) + 1
        sizes = np.bincount(regions.ravel(), minlength=count)
        small = [label for label in np.argsort(sizes, kind="stable") if sizes[label] < min_pixels]
        if not small or count == 1:
            return regions
        label = int(small[0])
        border = _border_lengths(regions, label)
        if not border:
            return regions
        target = max(sorted(border), key=lambda other: border[other])
        regions = relabel_contiguous(np.where(regions == label, target, regions))


def _border_lengths(regions: np.ndarray, label: int) -> dict[int, int]:
    """Pixel edges that region ``label`` shares with each neighbouring region."""
    lengths: dict[int, int] = {}
    for first, second in ((regions[:, :-1], regions[:, 1:]), (regions[:-1, :], regions[1:, :])):
        touching = (first == label) ^ (second == label)
        others = np.where(first[touching] == label, second[touching], first[touching])
        for other, length in zip(*np.unique(others, return_counts=True)):
            lengths[int(other)] = lengths.get(int(other), 0) + int(length)
    return lengths


def allot_segments(region_sizes: np.ndarray, region_kinds: np.ndarray, num_segments: int,
                   kind_shares: tuple[float, float, float] | None = None) -> np.ndarray:
    """Segments per region: by kind share, then by area within a kind, at least one each.

    A kind's segment density (segments per pixel) never falls below that of a kind further
    out: where the shares would give the far background denser segments than the ring (a
    small far area), the two kinds pool their shares and areas and get one density (pool
    adjacent violators, box -> ring -> far).

    region_sizes: (R,) pixels; region_kinds: (R,) int 0..2. Returns (R,) int64 >= 1 summing to
    max(num_segments, R) (less only if the image has fewer pixels), no region getting more
    segments than pixels. Shares of kinds that do not occur, and segments a region cannot
    hold, pass on; rounding gives each further segment to the region furthest below its share.
    """
    kind_shares = KIND_SHARES if kind_shares is None else kind_shares
    sizes = np.asarray(region_sizes, dtype=np.float64)
    kinds = np.asarray(region_kinds, dtype=np.int64)
    present = np.array([np.any(kinds == kind) for kind in range(len(kind_shares))])
    shares = np.where(present, kind_shares, 0.0)
    shares = shares / shares.sum()
    kind_area = np.array([sizes[kinds == kind].sum() for kind in range(len(kind_shares))])
    density = _ordered_densities(shares, kind_area)
    ideal = num_segments * density[kinds] * sizes
    limit = np.maximum(sizes.astype(np.int64), 1)
    quotas = np.minimum(np.maximum(np.floor(ideal), 1), limit).astype(np.int64)
    # Hand out what is left one at a time to the region furthest below its ideal share
    # (ties: the earlier region), so that segments a region cannot hold pass on.
    while quotas.sum() < num_segments and np.any(quotas < limit):
        gap = np.where(quotas < limit, ideal - quotas, -np.inf)
        quotas[int(np.argmax(gap))] += 1
    return quotas


def _ordered_densities(shares: np.ndarray, areas: np.ndarray) -> np.ndarray:
    """Per kind share / area, made non-increasing from box to far by pooling neighbours: (K,)."""
    blocks = [[kind] for kind in range(len(shares)) if areas[kind] > 0]

    def block_density(block):
        return sum(shares[kind] for kind in block) / sum(areas[kind] for kind in block)

    position = 0
    while position < len(blocks) - 1:
        if block_density(blocks[position]) < block_density(blocks[position + 1]):
            blocks[position] += blocks.pop(position + 1)
            position = max(position - 1, 0)
        else:
            position += 1
    density = np.zeros(len(shares))
    for block in blocks:
        density[block] = block_density(block)
    return density


def segment_with_boxes(image: np.ndarray, boxes: np.ndarray, num_segments: int = 20,
                       compactness: float = 5.0, method: str = "merged",
                       ring_margin: float = RING_MARGIN) -> np.ndarray:
    """Segments that respect the target boxes and are denser in and around them.

    image: (H, W, 3) uint8; boxes: (T, 4) normalised [x0, y0, x1, y1], T >= 1 (every target
    of the image, so that all of them can share one set of masked images). Returns (H, W)
    int32 labels 0..S-1; each segment lies inside one region of ``box_regions``. For
    "merged" S = ``num_segments`` unless regions outnumber it (then one per region) or an
    image is too small; "slico" and "slic" come close to it.
    """
    from skimage.color import rgb2lab

    regions, kinds = box_regions(image.shape[:2], boxes, ring_margin)
    sizes = np.bincount(regions.ravel())
    quotas = allot_segments(sizes, kinds, num_segments)
    if method == "merged":
        # Superpixels fine enough that every region holds OVERSEGMENT_FACTOR per segment it gets.
        density = float(np.max(quotas / sizes)) * regions.size
        request = int(min(max(OVERSEGMENT_FACTOR * density, OVERSEGMENT_FACTOR * num_segments),
                          _MAX_SUPERPIXELS, regions.size // 16 + 1))
        over = _slico(image, request, compactness) if request < 2 * num_segments else grid_slico(
            image, request, compactness)
        pieces = _connected_components(over.astype(np.int64) * (int(regions.max()) + 1) + regions)
        piece_region = np.zeros(int(pieces.max()) + 1, dtype=np.int64)
        piece_region[pieces.ravel()] = regions.ravel()
        segment_map = ward_merge(pieces, rgb2lab(image), num_segments, groups=piece_region,
                                 quotas=quotas)
        warn_if_merged_fell_short(int(segment_map.max()) + 1, num_segments,
                                  " with the segments fitted to the target boxes")
    else:
        segment_map = np.zeros(regions.shape, dtype=np.int64)
        offset = 0
        for region, quota in enumerate(quotas):
            mask = regions == region
            if quota <= 1 or mask.sum() < 4:
                labels = np.zeros(int(mask.sum()), dtype=np.int64)
            else:
                labels = _masked_superpixels(image, mask, int(quota), compactness, method)
            segment_map[mask] = labels + offset
            offset += int(labels.max()) + 1
        segment_map = _connected_components(segment_map)
        if method == "slic":
            warn_if_plain_slic_fell_short(int(segment_map.max()) + 1, num_segments, compactness,
                                          " with the segments fitted to the target boxes")
    logger.debug("box-aware segmentation (%s): %d regions, quotas %s, %d segments", method,
                 len(quotas), quotas.tolist(), segment_map.max() + 1)
    return segment_map.astype(np.int32)


def _masked_superpixels(image: np.ndarray, mask: np.ndarray, count: int, compactness: float,
                        method: str) -> np.ndarray:
    """Superpixels inside ``mask``: (P,) int64 labels 0.. for the mask's pixels in raster order."""
    from skimage.segmentation import slic

    if method == "slic":
        labels = plain_slic(image, count, compactness, mask=mask)[mask]
    else:
        labels = slic(image, n_segments=count, compactness=compactness, slic_zero=True,
                      start_label=1, channel_axis=-1, mask=mask)[mask] - 1
    labels = np.asarray(labels, dtype=np.int64)
    return relabel_contiguous(np.maximum(labels, 0)).astype(np.int64)
