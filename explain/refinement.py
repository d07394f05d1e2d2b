"""Adaptive refinement: split the segments that carry a target's value, and split their value with them.

Level 0 is the coarse partition (``num_segments`` segments, box-aware for detection); its
values are the Kernel SHAP estimates of the Shapley values of the game whose players are
those segments (the values sum to f(image) - f(baseline)). Then, best first, the segment
holding the largest share of some target's absolute value is cut in two (SLICO inside it,
so the halves follow its colours; a child never leaves its parent, so box borders stay
borders), and its value is divided between the halves:

* the halves' Shapley values in the two-player game between them are computed in two
  contexts, the rest of the image shown (as in the full image) and the rest hidden (the
  baseline everywhere else): for half a with sibling b in context C,
  s_a(C) = ((v(C + a) - v(C)) + (v(C + a + b) - v(C + b))) / 2;
* each half gets the mean over the two contexts, plus a share of whatever the two means
  leave unexplained of the parent's value, so the halves sum exactly to their parent: in
  proportion to the means' magnitudes, so when the means have the same sign the parent's
  value is split in their proportion and each half has the parent's sign (an equal shift
  could turn a half that raises the score in both contexts red under a positive parent:
  review 16 found such segments although hiding them lost the detection).

So a value at any level is "this segment's share of its parent's value": the parent's value
split by how much each half moves the score when the rest of the image is present and when
it is absent. On a game additive over pixels both contexts give each half its own
contribution, so the values are exact at every level; the values of one target still sum
to f(image) - f(baseline). This is shap's PartitionExplainer recursion (Owen values) with
two differences: the top level is a Kernel SHAP estimate over many segments instead of a
binary split, and the contexts are the two extreme ones instead of every combination of
the ancestors' siblings (which would double the cost per level). A split costs 4 masked
images per group of targets (the parent alone and the parent left out are usually known
already: ``CachedGame`` evaluates each masked image once); splits are made in rounds of
``SPLITS_PER_ROUND`` so that requests carry several images. Deterministic: every choice
depends only on evaluated scores.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .segmentation import relabel_contiguous

__all__ = [
    "CachedGame",
    "RefinementStep",
    "split_segment",
    "split_coalitions",
    "split_values",
    "refine_values",
    "worth_splitting",
    "MIN_CHILD_PIXELS",
    "SPLIT_SIGNIFICANCE",
    "SPLIT_CALLS",
    "SPLITS_PER_ROUND",
]

logger = logging.getLogger(__name__)

# A segment is split only if each half can have at least this many pixels.
MIN_CHILD_PIXELS = 16
# SLICO pieces a segment is cut into before they merge by colour into its two halves.
SPLIT_PIECES = 16
# The most new masked images a split costs per game (4 when the parent's own two are known).
SPLIT_CALLS = 6
# Splits chosen and evaluated together (one batch of 4 x this many masked images per group).
SPLITS_PER_ROUND = 8
# A segment is not split when it holds less than this share of every target's absolute value,
# or when its value is within this many standard errors of 0.
MIN_SPLIT_SHARE = 0.01
SPLIT_SIGNIFICANCE = 2.0

EvaluateMasks = Callable[[np.ndarray, np.ndarray], np.ndarray]


class CachedGame:
    """Coalitions of the current partition -> target scores, each distinct masked image evaluated once.

    evaluate_masks(segment_map, coalitions): (H, W) int labels 0..S-1 and (M, S) bool ->
    (M, T) float scores, one model call per row. ``repartition`` moves to a partition made
    by splitting segments and re-expresses every evaluated coalition in it, so a coalition
    asked for again (the same masked image) costs nothing. ``model_calls`` counts rows sent
    to ``evaluate_masks``.
    """

    def __init__(self, evaluate_masks: EvaluateMasks, segment_map: np.ndarray):
        self._evaluate_masks = evaluate_masks
        self.segment_map = segment_map
        self.num_segments = int(segment_map.max()) + 1
        self._coalitions: list[np.ndarray] = []  # (S,) bool each, over the current labels
        self._outputs: list[np.ndarray] = []  # (T,) each
        self._index: dict[bytes, int] = {}
        self.model_calls = 0

    @staticmethod
    def _key(coalition: np.ndarray) -> bytes:
        return np.packbits(coalition).tobytes()

    def _remember(self, coalitions: np.ndarray, outputs: np.ndarray) -> None:
        for row, output in zip(coalitions, outputs):
            key = self._key(row)
            if key not in self._index:
                self._index[key] = len(self._coalitions)
                self._coalitions.append(row.copy())
                self._outputs.append(np.asarray(output, dtype=np.float64).copy())

    def known(self, coalitions: np.ndarray) -> np.ndarray:
        """(M,) bool: which coalitions were evaluated already."""
        return np.array([self._key(row) in self._index for row in np.asarray(coalitions, dtype=bool)],
                        dtype=bool)

    def __call__(self, coalitions: np.ndarray) -> np.ndarray:
        """Scores of coalitions (M, S) bool of the current partition: (M, T) float64, in order."""
        coalitions = np.asarray(coalitions, dtype=bool)
        keys = [self._key(row) for row in coalitions]
        missing, seen = [], set()
        for position, key in enumerate(keys):
            if key not in self._index and key not in seen:
                seen.add(key)
                missing.append(position)
        if missing:
            outputs = np.asarray(self._evaluate_masks(self.segment_map, coalitions[missing]),
                                 dtype=np.float64)
            self.model_calls += len(missing)
            self._remember(coalitions[missing], outputs)
        if not keys:
            return np.zeros((0, len(self._outputs[0]) if self._outputs else 0))
        return np.stack([self._outputs[self._index[key]] for key in keys])

    def repartition(self, segment_map: np.ndarray, parent: np.ndarray) -> None:
        """Move to a finer partition: ``parent`` (S_new,) int is the old label each new label is part of."""
        self.segment_map = segment_map
        self.num_segments = len(parent)
        self._coalitions = [row[parent] for row in self._coalitions]
        self._index = {self._key(row): position for position, row in enumerate(self._coalitions)}


def split_segment(image: np.ndarray, segment_map: np.ndarray, label: int,
                  compactness: float = 5.0) -> np.ndarray:
    """Cut one segment in two along its colours: SLICO pieces inside it merged by Ward's criterion.

    image: (H, W, 3) uint8; segment_map: (H, W) int labels 0..S-1. The segment is cut into up
    to ``SPLIT_PIECES`` SLICO superpixels, which merge (touching pieces, closest mean CIELAB
    colour and position first) into two halves; when that fails or leaves a half under
    ``MIN_CHILD_PIXELS``, the segment is halved across its longer extent. Returns the new
    map: the first half keeps ``label``, the second gets S (every other label is unchanged).
    A segment too small to hold two halves is returned unchanged (the same object).
    """
    from skimage.color import rgb2lab
    from skimage.segmentation import slic

    from .segmentation import ward_merge

    mask = segment_map == label
    pixels = int(mask.sum())
    if pixels < 2 * MIN_CHILD_PIXELS:
        return segment_map
    rows, cols = np.nonzero(mask)
    window = (slice(rows.min(), rows.max() + 1), slice(cols.min(), cols.max() + 1))
    inside = mask[window]
    pieces = slic(image[window], n_segments=SPLIT_PIECES, compactness=compactness, slic_zero=True,
                  start_label=1, channel_axis=-1, mask=inside)
    halves = None
    if len(np.unique(pieces[inside])) >= 2:
        local = np.zeros(inside.shape, dtype=np.int64)
        outside = not inside.all()
        local[inside] = relabel_contiguous(pieces[inside]) + int(outside)
        # Pixels of the window outside the segment: label 0, a group of its own that never merges.
        groups = np.zeros(int(local.max()) + 1, dtype=np.int64)
        groups[0] = 1 if outside else 0
        # Colour decides; position (the window's diagonal worth 10 CIELAB units) breaks the
        # ties of a flat region into two compact halves.
        grid = np.stack(np.mgrid[:inside.shape[0], :inside.shape[1]], axis=-1).astype(np.float64)
        features = np.concatenate([rgb2lab(image[window]),
                                   grid * (10.0 / max(np.hypot(*inside.shape), 1.0))], axis=-1)
        merged = ward_merge(local, features, 2, groups=groups, quotas=np.array([2, 1]))
        labels = merged[inside]
        values = np.unique(labels)
        if len(values) == 2:
            halves = (labels == values[1]).astype(np.int64)
            if min(halves.sum(), pixels - halves.sum()) < MIN_CHILD_PIXELS:
                halves = None
    if halves is None:
        along = rows if np.ptp(rows) >= np.ptp(cols) else cols
        order = np.argsort(along, kind="stable")
        halves = np.zeros(pixels, dtype=np.int64)
        halves[order[pixels // 2:]] = 1
    new_map = segment_map.copy()
    new_map[mask] = np.where(halves == 0, label, int(segment_map.max()) + 1)
    return new_map


def split_coalitions(num_segments: int, first: int, second: int) -> np.ndarray:
    """The 6 coalitions that value a split of a parent into halves ``first`` and ``second``.

    Rows (M=6, S) bool: rest hidden: {first}, {second}, {first, second}; rest shown:
    all but second (first kept), all but first, all but both. The empty and full coalitions
    complete the two contexts.
    """
    rows = np.zeros((6, num_segments), dtype=bool)
    rows[0, first] = rows[1, second] = True
    rows[2, [first, second]] = True
    rows[3:] = True
    rows[3, second] = rows[4, first] = False
    rows[5, [first, second]] = False
    return rows


def split_values(outputs: np.ndarray, empty: np.ndarray, full: np.ndarray,
                 parent_value: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Values of the two halves from the ``split_coalitions`` scores.

    outputs: (6, T); empty, full, parent_value: (T,). Returns (first, second, first_share),
    each (T,): the halves' values, summing to ``parent_value``, and the share of the parent's
    value (and of its standard error) that reached the first half through the shift. Each
    half gets the mean over the two contexts of its Shapley value in the game between the
    halves, m, plus a share of what is left of the parent's value, p - m_1 - m_2, in
    proportion to |m| (the half that moves the score more takes more of what the contexts do not
    explain; continuous in m): when the means have the same sign, p is split in their
    proportion, so each half has the sign of p; half each when both are 0.
    """
    first_alone, second_alone, both, without_second, without_first, without_both = outputs
    hidden_first = ((first_alone - empty) + (both - second_alone)) / 2
    hidden_second = ((second_alone - empty) + (both - first_alone)) / 2
    shown_first = ((without_second - without_both) + (full - without_first)) / 2
    shown_second = ((without_first - without_both) + (full - without_second)) / 2
    first = (hidden_first + shown_first) / 2
    second = (hidden_second + shown_second) / 2
    weight = np.abs(first) + np.abs(second)
    first_share = np.divide(np.abs(first), weight, out=np.full_like(weight, 0.5), where=weight > 0)
    rest = parent_value - first - second
    return first + first_share * rest, second + (1.0 - first_share) * rest, first_share


@dataclass(frozen=True)
class RefinementStep:
    """One round of splits: the labels split (before the round) and the segments after it."""

    split: tuple[int, ...]
    segments_after: int


def refine_values(image: np.ndarray, segment_map: np.ndarray, games: list[CachedGame],
                  values: list[np.ndarray], errors: list[np.ndarray], anchors: list[tuple],
                  budgets: list[int], max_segments: int, compactness: float = 5.0,
                  ranking_errors: list[np.ndarray] | None = None) -> tuple:
    """Split the segments holding the most value, best first, while the budget lasts.

    image: (H, W, 3) uint8; segment_map: (H, W) int32 labels 0..S-1 (the coarse partition of
    every game); games: one CachedGame per group of targets sharing masked images, each
    already holding its coarse evaluations; values, errors: per game (T_g, S) level-0 values
    and standard errors; anchors: per game (empty, full), each (T_g,); budgets: per game, the
    most model calls it may reach; max_segments: most segments in all; ranking_errors: per game
    (T_g, S), the standard errors that decide which values may be noise (``_priorities``; default
    ``errors``): the fit's own (``ShapResult.fit_errors``), finite where the reported ones are
    unknown or widened for scarce pairs, so that a few calls still split the largest values.

    Returns (segment_map (H, W) int32, values per game (T_g, S'), errors per game (T_g, S'),
    levels (S',) int (0 = a coarse segment, k = split k times), steps). A half's standard
    error is its share of its parent's (it inherits the parent's estimate through the shift:
    ``split_values``'s first_share and its complement; half each when the shift is equal).
    """
    values = [np.array(value, dtype=np.float64) for value in values]
    errors = [np.array(error, dtype=np.float64) for error in errors]
    ranking = errors if ranking_errors is None else [np.array(error, dtype=np.float64)
                                                     for error in ranking_errors]
    num_segments = int(segment_map.max()) + 1
    levels = np.zeros(num_segments, dtype=np.int64)
    steps: list[RefinementStep] = []
    exhausted: set[int] = set()
    while num_segments < max_segments:
        priority = _priorities(values, ranking)
        sizes = np.bincount(segment_map.ravel(), minlength=num_segments)
        candidates = [label for label in np.argsort(-priority, kind="stable")
                      if label not in exhausted and sizes[label] >= 2 * MIN_CHILD_PIXELS
                      and priority[label] >= MIN_SPLIT_SHARE and priority[label] > 0]
        room = min(SPLITS_PER_ROUND, max_segments - num_segments,
                   min((budget - game.model_calls) // SPLIT_CALLS for game, budget in zip(games, budgets)))
        chosen = [int(label) for label in candidates[:max(room, 0)]]
        if not chosen:
            break
        pairs = []
        for label in chosen:
            after = split_segment(image, segment_map, label, compactness)
            if after is segment_map:
                exhausted.add(label)
                continue
            pairs.append((label, int(after.max())))
            segment_map = after
        if not pairs:
            continue
        new_count = int(segment_map.max()) + 1
        parent = np.concatenate([np.arange(num_segments), [label for label, _ in pairs]])
        for game in games:
            game.repartition(segment_map, parent)
        coalitions = np.concatenate([split_coalitions(new_count, first, second)
                                     for first, second in pairs])
        for index, game in enumerate(games):
            scores = game(coalitions).reshape(len(pairs), 6, -1)
            empty, full = anchors[index]
            grown = np.concatenate([values[index], np.zeros((len(values[index]), len(pairs)))], axis=1)
            grown_errors, grown_ranking = (np.concatenate([error[index], np.zeros((len(error[index]), len(pairs)))],
                                                          axis=1) for error in (errors, ranking))
            for (first, second), outputs in zip(pairs, scores):
                grown[:, first], grown[:, second], share = split_values(outputs, empty, full,
                                                                        grown[:, first])
                for grown_error in (grown_errors, grown_ranking):
                    parent_error = grown_error[:, first].copy()
                    grown_error[:, first] = share * parent_error
                    grown_error[:, second] = (1.0 - share) * parent_error
            values[index], errors[index], ranking[index] = grown, grown_errors, grown_ranking
        levels = np.concatenate([levels, np.zeros(len(pairs), dtype=np.int64)])
        for first, second in pairs:
            levels[first] += 1
            levels[second] = levels[first]
        steps.append(RefinementStep(tuple(label for label, _ in pairs), new_count))
        logger.debug("refinement: split %d segments -> %d", len(pairs), new_count)
        num_segments = new_count
    return segment_map.astype(np.int32), values, errors, levels, steps


def worth_splitting(values: np.ndarray, errors: np.ndarray) -> bool:
    """Whether refinement would split any of these values (T, S) with standard errors (T, S): one
    holds at least ``MIN_SPLIT_SHARE`` of a target's absolute value and lies ``SPLIT_SIGNIFICANCE``
    standard errors from 0 (segment sizes aside)."""
    return bool(np.any(_priorities([values], [errors]) >= MIN_SPLIT_SHARE))


def _priorities(values: list[np.ndarray], errors: list[np.ndarray]) -> np.ndarray:
    """(S,) the largest share of any target's absolute value that each segment holds, counting
    only values at least ``SPLIT_SIGNIFICANCE`` standard errors away from 0 (splitting a value
    that may be noise would only spread the noise)."""
    shares = []
    for value, error in zip(values, errors):
        magnitude = np.abs(value)
        totals = magnitude.sum(axis=1, keepdims=True)
        share = np.divide(magnitude, totals, out=np.zeros_like(magnitude), where=totals > 0)
        shares.append(np.where(magnitude >= SPLIT_SIGNIFICANCE * error, share, 0.0))
    stacked = np.concatenate(shares) if shares else np.zeros((0, 0))
    return stacked.max(axis=0) if len(stacked) else np.zeros(0)
