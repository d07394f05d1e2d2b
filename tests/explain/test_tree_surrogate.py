"""Tree surrogates: exact baseline Shapley values of leaves and of fitted boosted trees."""

from itertools import product

import numpy as np
import pytest

from explain.kernel_shap import exact_shapley_values
from explain.tree_surrogate import fit_boosted_trees, leaf_shapley_values


def all_coalitions(num_features):
    """(2**S, S) bool, row r has feature i on when bit i of r is set."""
    codes = np.arange(2**num_features)
    return ((codes[:, None] >> np.arange(num_features)) & 1).astype(bool)


def table_game(values):
    """The game whose value on coalition z is values[code(z)] (values (2**S, T))."""
    def game(coalitions):
        return values[coalitions.astype(np.int64) @ (1 << np.arange(coalitions.shape[1]))]
    return game


@pytest.mark.parametrize("on, off", [((0,), ()), ((), (1,)), ((0, 2), ()), ((0,), (3,)),
                                     ((1, 2, 4), (0, 5)), ((), (0, 1, 2, 3, 4, 5))])
def test_a_leaf_gets_the_shapley_values_of_its_product_game(on, off):
    # A leaf requiring A on and B off is v * prod_A z * prod_B (1 - z); its Shapley values
    # (baseline all-off, explained point all-on) by enumerating the 2**6 coalitions.
    num_features, value = 6, 2.5
    rows = all_coalitions(num_features)
    game_values = value * (rows[:, list(on)].all(axis=1) & ~rows[:, list(off)].any(axis=1))
    expected = exact_shapley_values(table_game(game_values[:, None].astype(np.float64)),
                                    num_features)[0]
    # the leaf's path: its conditions in any order, padded with steps that test nothing
    steps = [(feature, 1) for feature in on] + [(feature, -1) for feature in off] + [(0, 0), (5, 0)]
    features = np.array([[[feature for feature, _ in steps[::-1]]]])
    signs = np.array([[[sign for _, sign in steps[::-1]]]])
    values = leaf_shapley_values(features, signs, np.array([[value]]), num_features)[0]
    np.testing.assert_allclose(values, expected, atol=1e-12)
    if on and off:  # by hand: (|A|-1)!|B|!/(|A|+|B|)! to each of A, minus |A|!(|B|-1)!/.. from B
        assert values[on[0]] > 0 > values[off[0]]


def test_fitted_forests_have_exact_shapley_values_and_anchor_values():
    num_features = 8
    rows = all_coalitions(num_features)
    z = rows.astype(np.float64)
    targets = np.stack([np.maximum(z[:, 0] * z[:, 1], z[:, 2:5].mean(axis=1)),
                        (rows[:, 3] ^ rows[:, 5]) + 0.3 * z[:, 6] - z[:, :4].sum(axis=1) ** 2 / 8,
                        np.sin(z @ np.arange(1.0, 9.0))], axis=1)
    members = np.random.default_rng(0).random(targets.shape) < 0.6
    trees = fit_boosted_trees(rows, targets, members, num_trees=12, depth=4, learning_rate=0.5)
    # the forests' own games, tabulated on every coalition, enumerated
    expected = exact_shapley_values(table_game(trees.predictions), num_features)
    np.testing.assert_allclose(trees.shapley_values, expected, atol=1e-10)
    np.testing.assert_allclose(trees.empty_values, trees.predictions[0], atol=1e-12)
    np.testing.assert_allclose(trees.full_values, trees.predictions[-1], atol=1e-12)
    # and they learnt something: better than the members' mean
    for forest in range(3):
        inside = members[:, forest]
        fitted = np.mean((trees.predictions[inside, forest] - targets[inside, forest])**2)
        assert fitted < 0.5 * np.var(targets[inside, forest])


def test_rows_outside_a_forest_do_not_shape_it():
    # Cross-fitting relies on it: a pair's surrogate value comes from a forest its own
    # outputs never reached.
    num_features = 7
    rows = all_coalitions(num_features)
    rng = np.random.default_rng(1)
    targets = rng.normal(size=(len(rows), 1))
    members = rng.random((len(rows), 1)) < 0.5
    changed = np.where(members, targets, rng.normal(size=targets.shape) * 100)
    first = fit_boosted_trees(rows, targets, members, num_trees=5, depth=3)
    second = fit_boosted_trees(rows, changed, members, num_trees=5, depth=3)
    np.testing.assert_array_equal(first.predictions, second.predictions)
    np.testing.assert_array_equal(first.shapley_values, second.shapley_values)


def test_a_feature_is_never_split_twice_on_a_path():
    # With min_leaf_rows >= 1 a split needs rows on both sides; a leaf's conditions stay
    # disjoint, which the leaf formula assumes.
    rows = np.array(list(product([False, True], repeat=3)))
    targets = (rows[:, 0] * 3.0 + rows[:, 1])[:, None]
    trees = fit_boosted_trees(rows, targets, np.ones_like(targets, dtype=bool), num_trees=3,
                              depth=5, learning_rate=1.0, leaf_penalty=1e-12)
    np.testing.assert_allclose(trees.predictions, targets, atol=1e-9)
    np.testing.assert_allclose(trees.shapley_values[0], [3.0, 1.0, 0.0], atol=1e-9)


def _surrogate_of(game, num_features, pairs, seed):
    from explain.coalitions import PairSampler
    from explain.kernel_shap import _paired_design
    from explain.tree_surrogate import cross_fitted_surrogates

    rows = PairSampler(num_features, [], np.random.default_rng(seed)).draw(pairs)
    anchors = game(np.array([np.zeros(num_features, bool), np.ones(num_features, bool)]))
    paired = _paired_design(num_features, [], np.zeros((0, num_features), bool),
                            np.zeros((0, anchors.shape[1])), rows, game(rows))
    return cross_fitted_surrogates(paired, anchors[0], anchors[1], [0])[0]


def test_the_fold_forests_spread_is_the_surrogate_values_variance():
    # A game every fold's forest learns exactly (a three-way product): the fold forests agree
    # and the jackknife variance of the values is ~0; a random table over the features, which
    # each forest fits differently from its four fifths of the calls: clearly positive.
    num_features = 8
    product_game = table_game(all_coalitions(num_features)[:, :3].all(axis=1).astype(np.float64)[:, None])
    learnt = _surrogate_of(product_game, num_features, 60, 0)
    np.testing.assert_allclose(learnt.values, exact_shapley_values(product_game, num_features)[0],
                               atol=1e-3)
    assert learnt.value_variance.shape == (num_features,)
    assert learnt.value_variance.max() < 1e-6
    noise_game = table_game(np.random.default_rng(1).normal(size=(2**num_features, 1)))
    noisy = _surrogate_of(noise_game, num_features, 60, 0)
    assert noisy.value_variance.min() > 0
    assert np.sqrt(noisy.value_variance).mean() > 0.05 * np.abs(noisy.values).mean()


def test_a_split_without_rows_on_both_sides_is_refused():
    rows = np.array(list(product([False, True], repeat=3)))
    targets = rows[:, :1].astype(np.float64)
    with pytest.raises(ValueError, match="min_leaf_rows must be at least 1"):
        fit_boosted_trees(rows, targets, np.ones_like(targets, dtype=bool), min_leaf_rows=0)
