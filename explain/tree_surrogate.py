"""Boosted regression trees over binary features, with their exact baseline Shapley values.

A surrogate for the Shapley regression (``explain.shap_regression``): trees fitted on the
evaluated coalitions, whose Shapley values are known exactly, so the regression only has to
estimate what the trees miss.

With binary features, the baseline the all-zero coalition and the explained point the
all-one coalition, a leaf reached by requiring the features A on and B off is the game
v * prod_{a in A} z_a * prod_{b in B} (1 - z_b). Its Shapley value is
v (|A|-1)! |B|! / (|A|+|B|)! for each i in A (i must come after the rest of A and before
all of B in a random order) and -v |A|! (|B|-1)! / (|A|+|B|)! for each i in B. A tree is
the sum of its leaves, an ensemble the sum of its trees.

Several ensembles ("forests", one per output and cross-fitting fold) are grown at once over
the same rows, each with its own member rows (the others do not shape that forest but
still get its predictions). Squared loss, gradient boosting with shrinkage, depth-limited
trees, an L2 penalty on leaf values, a minimum number of member rows per side of a split;
pure numpy (a few tens of milliseconds for S = 20, three outputs, 500 coalitions).

``cross_fitted_surrogates`` fits them on the evaluated coalitions of a ``PairedDesign``:
the sampled pairs are split into ``FOLDS`` folds, the forest of fold k is fitted on every
coalition but those of fold k's pairs and gives those pairs their surrogate values, so the
adjustment (``explain.shap_regression.adjust_with_surrogate``) never sees a surrogate's
fit to the pair it corrects.
"""

from __future__ import annotations

from dataclasses import dataclass
from math import factorial

import numpy as np

from .shap_regression import PairedDesign

__all__ = ["BoostedTrees", "Surrogate", "fit_boosted_trees", "leaf_shapley_values",
           "cross_fitted_surrogates", "FOLDS"]

FOLDS = 5  # cross-fitting folds of the sampled pairs
NUM_TREES = 30
DEPTH = 6
LEARNING_RATE = 0.4
LEAF_PENALTY = 1.0
MIN_LEAF_ROWS = 1
_RELATIVE_GAIN = 1e-12  # the least gain of a split, as a share of its forest's squared residuals


@dataclass(frozen=True)
class BoostedTrees:
    """F ensembles fitted on the same N rows.

    predictions: (N, F) float64, each forest's prediction on every row (rows it was not
    fitted on included); shapley_values: (F, S) float64, exact baseline Shapley values of
    each forest (baseline all-zero, explained point all-one); empty_values, full_values:
    (F,) float64, each forest's value at the all-zero and the all-one coalition.
    """

    predictions: np.ndarray
    shapley_values: np.ndarray
    empty_values: np.ndarray
    full_values: np.ndarray


def _leaf_weight_tables(max_conditions: int) -> tuple[np.ndarray, np.ndarray]:
    """(C+1, C+1) tables indexed [|A|, |B|], |A| + |B| <= C = max_conditions: the share of a
    leaf's value given to each required-on feature, (|A|-1)!|B|!/(|A|+|B|)!, and taken from
    each required-off feature, |A|!(|B|-1)!/(|A|+|B|)! (0 where the set is empty)."""
    on_share = np.zeros((max_conditions + 1, max_conditions + 1))
    off_share = np.zeros((max_conditions + 1, max_conditions + 1))
    for on in range(max_conditions + 1):
        for off in range(max_conditions + 1 - on):
            if on + off == 0:
                continue
            whole = factorial(on + off)
            if on:
                on_share[on, off] = factorial(on - 1) * factorial(off) / whole
            if off:
                off_share[on, off] = factorial(on) * factorial(off - 1) / whole
    return on_share, off_share


def leaf_shapley_values(features: np.ndarray, signs: np.ndarray, leaf_values: np.ndarray,
                        num_features: int) -> np.ndarray:
    """Exact baseline Shapley values of sums of leaves, each given by the conditions on its path.

    features: (F, L, D) int, the feature tested at each of a leaf's D path steps; signs:
    (F, L, D) int, +1 where the leaf requires that feature on, -1 off, 0 for a step that
    tests nothing (a leaf's features are distinct); leaf_values: (F, L) float64.
    Returns (F, S) float64, S = num_features.
    """
    on_count = (signs > 0).sum(axis=-1)
    off_count = (signs < 0).sum(axis=-1)
    # a leaf's conditions number at most the trees' depth: tables that far, not to S
    on_share, off_share = _leaf_weight_tables(int((on_count + off_count).max(initial=0)))
    gain = leaf_values * on_share[on_count, off_count]  # (F, L)
    loss = leaf_values * off_share[on_count, off_count]
    shares = np.where(signs > 0, gain[..., None], np.where(signs < 0, -loss[..., None], 0.0))
    num_forests = leaf_values.shape[0]
    slots = np.arange(num_forests)[:, None, None] * num_features + features
    return np.bincount(slots.ravel(), shares.ravel(), num_forests * num_features
                       ).reshape(num_forests, num_features)


def fit_boosted_trees(rows: np.ndarray, targets: np.ndarray, members: np.ndarray,
                      num_trees: int = NUM_TREES, depth: int = DEPTH,
                      learning_rate: float = LEARNING_RATE, leaf_penalty: float = LEAF_PENALTY,
                      min_leaf_rows: int = MIN_LEAF_ROWS) -> BoostedTrees:
    """Grow F gradient-boosted ensembles of depth-limited trees at once.

    rows: (N, S) bool coalitions; targets: (N, F) float64; members: (N, F) bool, the rows
    each forest is fitted on (the others only get its predictions). A split needs at
    least ``min_leaf_rows`` member rows on each side (so a feature is never split twice
    on one path); a node with no such split passes all its rows to its left child. Leaf
    value = learning_rate * sum(residuals) / (member rows + leaf_penalty), leaf_penalty > 0.
    """
    if min_leaf_rows < 1:
        raise ValueError(f"min_leaf_rows must be at least 1 (a feature split twice on one path "
                         f"breaks the leaf formula), got {min_leaf_rows}")
    num_rows, num_features = rows.shape
    num_forests = targets.shape[1]
    weight = members.astype(np.float64)
    base = (weight * targets).sum(axis=0) / np.maximum(weight.sum(axis=0), 1.0)
    predictions = np.repeat(base[None, :], num_rows, axis=0)
    row_index = np.arange(num_rows)[:, None]
    forest_offset = np.arange(num_forests)[None, :]
    leaves = 2**depth
    chosen_features = [np.zeros((num_trees, num_forests, 2**level), dtype=np.int64)
                       for level in range(depth)]
    chosen_valid = [np.zeros((num_trees, num_forests, 2**level), dtype=bool) for level in range(depth)]
    leaf_values = np.zeros((num_forests, num_trees, leaves))
    # Per-feature sums over a node's rows with the feature on: rows with more features on
    # than off list their off features with sign -1 and add their total to every feature
    # (on = all - off), so at most S/2 (row, feature) entries per row are accumulated.
    mostly_on = rows.sum(axis=1) > num_features / 2
    listed = rows ^ mostly_on[:, None]
    entry_rows, entry_features = np.nonzero(listed)  # (M,) each
    entry_sign = np.where(mostly_on[entry_rows], -1.0, 1.0)[:, None]  # (M, 1)
    entry_weight = (weight[entry_rows] * entry_sign).ravel()
    flipped_weight = weight * mostly_on[:, None]  # (N, F): rows counted whole
    for tree in range(num_trees):
        residuals = (targets - predictions) * weight
        # a split must gain more than rounding does: a share of each forest's residual energy, so that a game
        # scaled by c grows the same trees (an absolute 1e-12 stopped them at outputs of about 1e-6)
        least_gain = _RELATIVE_GAIN * (residuals * (targets - predictions)).sum(axis=0)  # (F,)
        entry_residuals = (residuals[entry_rows] * entry_sign).ravel()  # (M * F,)
        flipped_residuals = residuals * mostly_on[:, None]
        node = np.zeros((num_rows, num_forests), dtype=np.int64)
        for level in range(depth):
            nodes = 2**level
            cells = num_forests * nodes
            column = forest_offset * nodes + node  # (N, F) into F * nodes
            slots = column[entry_rows]
            slots *= num_features
            slots += entry_features[:, None]
            slots = slots.ravel()
            flat = column.ravel()
            sum_on = (np.bincount(slots, entry_residuals, cells * num_features
                                  ).reshape(cells, num_features)
                      + np.bincount(flat, flipped_residuals.ravel(), cells)[:, None])
            count_on = (np.bincount(slots, entry_weight, cells * num_features
                                    ).reshape(cells, num_features)
                        + np.bincount(flat, flipped_weight.ravel(), cells)[:, None])
            sum_all = np.bincount(flat, residuals.ravel(), cells)[:, None]
            count_all = np.bincount(flat, weight.ravel(), cells)[:, None]
            count_off = count_all - count_on
            gain = (sum_on**2 / (count_on + leaf_penalty)
                    + (sum_all - sum_on)**2 / (count_off + leaf_penalty))
            gain[(count_on < min_leaf_rows) | (count_off < min_leaf_rows)] = -1.0
            best = gain.argmax(axis=1)  # (cells,)
            valid = (gain[np.arange(cells), best] > sum_all[:, 0]**2 / (count_all[:, 0] + leaf_penalty)
                     + np.repeat(least_gain, nodes))
            chosen_features[level][tree] = best.reshape(num_forests, nodes)
            chosen_valid[level][tree] = valid.reshape(num_forests, nodes)
            node = 2 * node + (rows[row_index, best[column]] & valid[column])
        column = forest_offset * leaves + node
        leaf_sum = np.bincount(column.ravel(), residuals.ravel(), num_forests * leaves)
        leaf_count = np.bincount(column.ravel(), weight.ravel(), num_forests * leaves)
        values = learning_rate * leaf_sum / (leaf_count + leaf_penalty)
        predictions = predictions + values[column]
        leaf_values[:, tree] = values.reshape(num_forests, leaves)
    features, signs = _leaf_paths(chosen_features, chosen_valid)
    values = leaf_values.reshape(num_forests, num_trees * leaves)
    shapley = leaf_shapley_values(features, signs, values, num_features)
    empty = base + (values * ~(signs > 0).any(axis=2)).sum(axis=1)
    full = base + (values * ~(signs < 0).any(axis=2)).sum(axis=1)
    return BoostedTrees(predictions, shapley, empty, full)


def _leaf_paths(chosen_features: list[np.ndarray], chosen_valid: list[np.ndarray]
                ) -> tuple[np.ndarray, np.ndarray]:
    """Each leaf's path, from the split chosen at every node (per level: (trees, F, 2**level)
    feature and validity): features and signs (+1 on, -1 off, 0 no split), (F, trees *
    leaves, depth) each, as ``leaf_shapley_values`` takes them."""
    depth = len(chosen_features)
    num_trees, num_forests = chosen_features[0].shape[:2]
    leaves = 2**depth
    leaf = np.arange(leaves)
    features = np.zeros((num_forests, num_trees, leaves, depth), dtype=np.int64)
    signs = np.zeros((num_forests, num_trees, leaves, depth), dtype=np.int8)
    for level in range(depth):
        prefix = leaf >> (depth - level)
        bit = (leaf >> (depth - level - 1)) & 1
        features[..., level] = chosen_features[level].transpose(1, 0, 2)[:, :, prefix]
        signs[..., level] = chosen_valid[level].transpose(1, 0, 2)[:, :, prefix] * (2 * bit - 1)
    return (features.reshape(num_forests, num_trees * leaves, depth),
            signs.reshape(num_forests, num_trees * leaves, depth))


@dataclass(frozen=True)
class Surrogate:
    """One output's cross-fitted surrogate game g.

    halves: (P,) float64, (g(z) - g(1 - z)) / 2 on each pair, from the forest that did not
    see the pair (the mean of the forests on enumerated pairs, which every forest saw);
    total: (g(1) - g(0)) / 2 and values: (S,) the exact Shapley values, of the mean forest;
    value_variance: (S,) the delete-a-fold jackknife variance of those values, from the
    spread of the fold forests' centred values ((K-1)/K sum_k (phi_k - mean)^2): how much
    they owe to the particular calls the trees were fitted on; mean_halves: (P,) the mean
    forest's (g(z) - g(1 - z)) / 2 on each pair (halves - mean_halves: what cross-fitting
    changes, whose error the adjustment counts fold by fold).
    """

    halves: np.ndarray
    total: float
    values: np.ndarray
    value_variance: np.ndarray
    mean_halves: np.ndarray


def cross_fitted_surrogates(paired: PairedDesign, base_values: np.ndarray,
                            full_values: np.ndarray, outputs: list[int]) -> list[Surrogate]:
    """Tree surrogates of the given outputs, cross-fitted over ``paired.folds`` (0..FOLDS-1).

    Every forest is fitted on the raw outputs of both members of every pair outside its
    fold and on the two anchors; base_values, full_values: (T,) f(empty), f(full).
    Returns one Surrogate per entry of ``outputs``.
    """
    num_pairs, num_features = paired.signs.shape
    first = paired.signs > 0
    rows = np.concatenate([first, ~first, np.zeros((1, num_features), dtype=bool),
                           np.ones((1, num_features), dtype=bool)])
    chosen = list(outputs)
    values = np.concatenate([paired.evens[:, chosen] + paired.halves[:, chosen],
                             paired.evens[:, chosen] - paired.halves[:, chosen],
                             base_values[None, chosen], full_values[None, chosen]])  # (N, O)
    members = np.zeros((len(rows), FOLDS), dtype=bool)
    for fold in range(FOLDS):
        outside = paired.folds != fold
        members[:, fold] = np.concatenate([outside, outside, [True, True]])
    # forest f = FOLDS * position + fold
    targets = np.repeat(values, FOLDS, axis=1)
    trees = fit_boosted_trees(rows, targets, np.tile(members, (1, len(chosen))))
    halves = 0.5 * (trees.predictions[:num_pairs] - trees.predictions[num_pairs:2 * num_pairs])
    sampled = paired.folds >= 0
    surrogates = []
    for position in range(len(chosen)):
        forests = slice(FOLDS * position, FOLDS * (position + 1))
        block = halves[:, forests]  # (P, FOLDS)
        mean_halves = block.mean(axis=1)
        own = np.where(sampled, block[np.arange(num_pairs), np.maximum(paired.folds, 0)], mean_halves)
        total = 0.5 * float(np.mean(trees.full_values[forests] - trees.empty_values[forests]))
        fold_values = trees.shapley_values[forests]  # (FOLDS, S)
        centred = fold_values - fold_values.mean(axis=1, keepdims=True)
        spread = (FOLDS - 1) / FOLDS * ((centred - centred.mean(axis=0))**2).sum(axis=0)
        surrogates.append(Surrogate(own, total, fold_values.mean(axis=0), spread, mean_halves))
    return surrogates
