"""Kernel SHAP known answers: exact for additive games, converges to enumerated Shapley values."""

import numpy as np
import pytest

from explain.kernel_shap import (
    enumerate_coalitions,
    exact_shapley_values,
    kernel_shap,
    plan_enumeration,
    size_kernel_mass,
)


def additive_game(weights):
    return lambda coalitions: coalitions.astype(np.float64) @ np.atleast_2d(weights).T


def interaction_game(num_features, seed):
    """A game with interactions of every order: a sigmoid of a quadratic form, 2 outputs."""
    rng = np.random.default_rng(seed)
    weights = rng.normal(size=num_features)
    pairs = np.triu(rng.normal(size=(num_features, num_features)), 1) * 0.4
    important = rng.choice(num_features, size=4, replace=False)

    def game(coalitions):
        # einsum's own loops, not BLAS: each row's output must not depend on the batch it is in
        z = coalitions.astype(np.float64)
        logits = (z * weights).sum(axis=1) + np.einsum("ni,ij,nj->n", z, pairs, z)
        detector = (z[:, important].sum(axis=1) >= 3).astype(np.float64)
        return np.stack([1.0 / (1.0 + np.exp(-logits)), detector], axis=1)

    return game


@pytest.mark.parametrize("num_features, num_samples", [(5, 500), (20, 300), (40, 500), (100, 500)])
def test_additive_game_is_exact(num_features, num_samples):
    weights = np.random.default_rng(num_features).normal(size=(2, num_features))
    result = kernel_shap(additive_game(weights), num_features, num_samples,
                         np.random.default_rng(0))
    value_range = weights.max() - weights.min()
    assert np.abs(result.values - weights).max() <= 1e-6 * value_range
    np.testing.assert_allclose(result.values.sum(axis=1),
                               result.full_values - result.base_values, atol=1e-12)
    assert result.standard_errors.max() <= 1e-6 * value_range


@pytest.mark.parametrize("num_features, num_samples",
                         [(4, 100), (7, 60), (20, 100), (64, 500), (130, 800)])
def test_values_sum_exactly_to_the_prediction_gap(num_features, num_samples):
    game = interaction_game(num_features, 3)
    result = kernel_shap(game, num_features, num_samples, np.random.default_rng(0))
    np.testing.assert_allclose(result.values.sum(axis=1), result.full_values - result.base_values,
                               rtol=0, atol=1e-12)
    assert result.num_evaluations <= num_samples


def test_exact_shapley_of_small_game_by_hand():
    # f = z0 * z1 (pure interaction) + 2 z2: Shapley values 0.5, 0.5, 2.
    def game(coalitions):
        z = coalitions.astype(np.float64)
        return (z[:, 0] * z[:, 1] + 2 * z[:, 2])[:, None]

    np.testing.assert_allclose(exact_shapley_values(game, 3), [[0.5, 0.5, 2.0]], atol=1e-12)
    result = kernel_shap(game, 3, 100, np.random.default_rng(0))
    np.testing.assert_allclose(result.values, [[0.5, 0.5, 2.0]], atol=1e-10)
    assert result.exact and result.num_evaluations == 8


def test_error_decreases_with_samples_and_is_small():
    num_features = 11
    errors = {}
    for num_samples in (100, 400, 1600):
        per_game = []
        for seed in range(4):
            game = interaction_game(num_features, seed)
            exact = exact_shapley_values(game, num_features)
            result = kernel_shap(game, num_features, num_samples, np.random.default_rng(seed))
            spread = exact.max(axis=1) - exact.min(axis=1)
            per_game.append((np.abs(result.values - exact).max(axis=1) / spread).max())
            np.testing.assert_allclose(result.values.sum(axis=1),
                                       result.full_values - result.base_values, atol=1e-9)
        errors[num_samples] = float(np.median(per_game))
    assert errors[1600] < errors[400] < errors[100]
    assert errors[1600] < 0.05
    # every coalition evaluated (2**11 = 2048) gives the exact values
    game = interaction_game(num_features, 0)
    result = kernel_shap(game, num_features, 2048, np.random.default_rng(0))
    assert result.exact
    np.testing.assert_allclose(result.values, exact_shapley_values(game, num_features), atol=1e-9)


def test_standard_errors_track_the_actual_error():
    num_features = 12
    ratios = []
    for seed in range(6):
        game = interaction_game(num_features, seed)
        exact = exact_shapley_values(game, num_features)
        result = kernel_shap(game, num_features, 300, np.random.default_rng(seed))
        ratios.append(np.sqrt(np.mean((result.values - exact) ** 2))
                      / np.sqrt(np.mean(result.standard_errors ** 2)))
    assert 0.3 < np.median(ratios) < 3.0


def test_same_seed_same_values_whatever_the_chunking():
    game = interaction_game(14, 3)
    first = kernel_shap(game, 14, 300, np.random.default_rng(7))

    def chunked(coalitions):
        return np.concatenate([game(coalitions[i:i + 7]) for i in range(0, len(coalitions), 7)])

    second = kernel_shap(chunked, 14, 300, np.random.default_rng(7))
    np.testing.assert_array_equal(first.values, second.values)
    np.testing.assert_array_equal(first.standard_errors, second.standard_errors)
    other = kernel_shap(game, 14, 300, np.random.default_rng(8))
    assert not np.array_equal(first.values, other.values)


def test_budget_counts_anchors_and_is_respected():
    calls = []

    def game(coalitions):
        calls.append(len(coalitions))
        return interaction_game(16, 0)(coalitions)

    result = kernel_shap(game, 16, 500, np.random.default_rng(0))
    assert sum(calls) == result.num_evaluations
    assert 498 <= result.num_evaluations <= 500


def test_target_error_stops_early():
    game = interaction_game(16, 1)
    full = kernel_shap(game, 16, 4000, np.random.default_rng(0))
    early = kernel_shap(game, 16, 4000, np.random.default_rng(0), target_error=0.2)
    assert early.converged
    assert early.num_evaluations < full.num_evaluations
    spread = early.values.max(axis=1) - early.values.min(axis=1)
    assert np.all(early.standard_errors <= 0.2 * spread[:, None])


def test_enumeration_plan_covers_small_sizes_first():
    sizes, used = plan_enumeration(20, 498)
    assert sizes == [1]  # 40 coalitions; the size-2 pair (380) does not fit its share
    assert used == 40
    sizes, used = plan_enumeration(10, 10_000)
    assert sizes == [1, 2, 3, 4, 5] and used == 2**10 - 2
    rows = enumerate_coalitions(6, [1, 3])
    assert len(rows) == 12 + 20 and len({row.tobytes() for row in rows}) == 32
    mass = size_kernel_mass(6)
    assert mass[0] == mass[6] == 0 and mass[1] == pytest.approx(5 / 5)


def test_standard_errors_are_zero_when_exact_and_positive_otherwise():
    game = interaction_game(8, 0)
    exact = kernel_shap(game, 8, 256, np.random.default_rng(0))
    assert exact.exact and np.all(exact.standard_errors == 0)
    sampled = kernel_shap(game, 8, 120, np.random.default_rng(0))
    assert not sampled.exact and np.all(sampled.standard_errors > 0)


@pytest.mark.parametrize("num_features", [2, 5, 9])
def test_full_enumeration_gives_the_shapley_formulas_values_to_rounding(num_features):
    """Review 39: with every coalition evaluated the result said exact, standard errors 0, but came from the
    regression, whose ridge left values 1e-10 off (a null player got 1.7e-11): an interval of width 0 that
    missed the true value. They are the formula's now, to float rounding."""
    weights = np.random.default_rng(num_features).normal(size=(num_features, 3))

    def game(coalitions):  # feature 0 is a null player of the first output
        z = coalitions.astype(np.float64)
        return np.stack([np.tanh(z[:, 1:] @ weights[1:, 0]), (z @ weights[:, 1])**2, z.prod(axis=1)], axis=1)

    result = kernel_shap(game, num_features, 2**num_features, np.random.default_rng(0))
    assert result.exact and np.all(result.standard_errors == 0)
    np.testing.assert_allclose(result.values, exact_shapley_values(game, num_features), rtol=0, atol=1e-15)
    assert abs(result.values[0, 0]) < 1e-15


@pytest.mark.parametrize("scale", [1e-9, 1e-6, 1e6])
def test_a_game_scaled_by_a_constant_gets_its_values_scaled_by_it(scale):
    """Review 39: absolute thresholds (a tree split's least gain 1e-12, an exact linear fit's 1e-24) stopped the
    trees and the term search for outputs of about 1e-6: f * 1e-9 got values 0.8% of their spread away from
    those of f at 600 calls. The thresholds are shares of the output's own scale now."""
    rng = np.random.default_rng(5)
    terms = [(rng.choice(12, size=int(rng.integers(1, 4)), replace=False), rng.normal()) for _ in range(24)]

    def game(coalitions):
        return sum(coalitions[:, members].all(axis=1) * weight for members, weight in terms)[:, None]

    plain = kernel_shap(game, 12, 600, np.random.default_rng(1))
    scaled = kernel_shap(lambda coalitions: game(coalitions) * scale, 12, 600, np.random.default_rng(1))
    spread = np.ptp(plain.values)
    np.testing.assert_allclose(scaled.values / scale, plain.values, rtol=0, atol=1e-12 * spread)
    np.testing.assert_allclose(scaled.standard_errors / scale, plain.standard_errors, rtol=1e-9)


def test_outputs_share_one_set_of_coalitions():
    game = interaction_game(12, 2)
    seen = {"both": [], "first": []}

    def recording(name, columns):
        def evaluate(coalitions):
            seen[name].append(coalitions.copy())
            return game(coalitions)[:, columns]
        return evaluate

    both = kernel_shap(recording("both", [0, 1]), 12, 300, np.random.default_rng(5))
    first = kernel_shap(recording("first", [0]), 12, 300, np.random.default_rng(5))
    np.testing.assert_array_equal(np.concatenate(seen["both"]), np.concatenate(seen["first"]))
    np.testing.assert_array_equal(both.values[0], first.values[0])
    np.testing.assert_array_equal(both.standard_errors[0], first.standard_errors[0])


def test_pairs_are_never_drawn_twice():
    calls = []

    def game(coalitions):
        calls.append(coalitions.copy())
        return interaction_game(9, 4)(coalitions)

    result = kernel_shap(game, 9, 400, np.random.default_rng(1))  # 2**9 = 512 coalitions
    evaluated = np.concatenate(calls)
    assert len(evaluated) == result.num_evaluations == 400
    assert len({row.tobytes() for row in evaluated}) == len(evaluated)


def sparse_game(num_features, seed):
    """A random function of 4 of the features (every order up to 4) plus an additive term."""
    rng = np.random.default_rng(seed)
    members = rng.choice(num_features, size=4, replace=False)
    table = rng.normal(size=16)
    weights = rng.normal(size=num_features)

    def game(coalitions):
        index = coalitions[:, members].astype(np.int64) @ (1 << np.arange(4))
        return (table[index] + coalitions.astype(np.float64) @ weights)[:, None]

    return game


@pytest.mark.parametrize("num_features", [16, 20])
def test_games_of_a_few_interacting_features_are_exact(num_features):
    # The odd three-way parities of the leading features enter the regression: a game whose
    # interactions involve 4 features has no error left to sample (paired Kernel SHAP alone
    # is exact only up to pairwise interactions).
    for seed in range(3):
        game = sparse_game(num_features, seed)
        exact = exact_shapley_values(game, num_features)
        result = kernel_shap(game, num_features, 500, np.random.default_rng(seed))
        np.testing.assert_allclose(result.values, exact, atol=1e-8 * np.abs(exact).max())
        assert result.terms[0] > num_features


@pytest.mark.parametrize("num_features, num_samples", [(16, 40), (20, 50), (20, 60)])
def test_games_up_to_pairwise_are_exact_a_few_calls_above_the_minimum(num_features, num_samples):
    # Paired Kernel SHAP is exact up to pairwise interactions once the pairs number the
    # segments. With few pairs per segment the coalition-size indicators (up to S/2 more
    # columns) left fewer pairs than columns, and the minimum-norm fit was 30-40% off at
    # S = 20 with 50 calls; the fit without them is chosen when it predicts better.
    rng = np.random.default_rng(num_features)
    weights = rng.normal(size=num_features)
    pairs = np.triu(rng.normal(size=(num_features, num_features)), 1)

    def game(coalitions):
        z = coalitions.astype(np.float64)
        return np.stack([z @ weights, z @ weights + ((z @ pairs) * z).sum(axis=1)], axis=1)

    exact = exact_shapley_values(game, num_features)
    for seed in range(3):
        result = kernel_shap(game, num_features, num_samples, np.random.default_rng(seed))
        np.testing.assert_allclose(result.values, exact, atol=1e-8 * np.abs(exact).max())


def max_of_mins_game(num_features, seed):
    """The better of two objects, each as visible as the less visible of its two parts:
    piecewise linear, no small parity basis fits it (the surrogate's case)."""
    rng = np.random.default_rng(seed)
    parts = rng.choice(num_features, size=(2, 2, 3), replace=False)
    weights = rng.uniform(0.5, 1.5, size=num_features)

    def game(coalitions):
        z = coalitions.astype(np.float64) * weights
        objects = [np.minimum(z[:, part[0]].sum(axis=1), z[:, part[1]].sum(axis=1)) for part in parts]
        return np.maximum(*objects)[:, None]

    return game


def test_an_additive_output_stays_exact_beside_one_the_surrogate_adjusts(monkeypatch):
    import explain.kernel_shap as kernel_shap_module

    adjusted = []
    fit_surrogates = kernel_shap_module.cross_fitted_surrogates

    def recording(paired, base_values, full_values, outputs):
        adjusted.append(list(outputs))
        return fit_surrogates(paired, base_values, full_values, outputs)

    monkeypatch.setattr(kernel_shap_module, "cross_fitted_surrogates", recording)
    num_features = 16
    weights = np.random.default_rng(5).normal(size=num_features)
    max_min = max_of_mins_game(num_features, 5)

    def game(coalitions):
        return np.concatenate([coalitions.astype(np.float64) @ weights[:, None], max_min(coalitions)],
                              axis=1)

    result = kernel_shap(game, num_features, 300, np.random.default_rng(0))
    assert adjusted == [[1]]  # the max-min output got a surrogate, the additive one did not
    np.testing.assert_allclose(result.values[0], weights, atol=1e-9 * np.abs(weights).max())
    assert result.standard_errors[0].max() <= 1e-9 * np.abs(weights).max()
    exact = exact_shapley_values(max_min, num_features)[0]
    assert np.linalg.norm(result.values[1] - exact) < 0.3 * np.linalg.norm(exact)
    np.testing.assert_allclose(result.values.sum(axis=1), result.full_values - result.base_values,
                               rtol=0, atol=1e-12)


def test_a_surrogate_equal_to_the_game_gives_its_exact_values(monkeypatch):
    # The adjustment's algebra: with g = the game itself the optimal weight is 1, the
    # regression of what g leaves (nothing) adds nothing, and the values are phi(g).
    import explain.kernel_shap as kernel_shap_module
    from explain.tree_surrogate import Surrogate

    num_features = 12
    game = max_of_mins_game(num_features, 2)
    exact = exact_shapley_values(game, num_features)

    def perfect(paired, base_values, full_values, outputs):
        return [Surrogate(paired.halves[:, output], 0.5 * float(full_values[output] - base_values[output]),
                          exact[output], np.zeros(num_features), paired.halves[:, output]) for output in outputs]

    monkeypatch.setattr(kernel_shap_module, "cross_fitted_surrogates", perfect)
    result = kernel_shap(game, num_features, 250, np.random.default_rng(0))
    np.testing.assert_allclose(result.values, exact, atol=1e-9 * np.abs(exact).max())
    assert result.standard_errors.max() <= 1e-9 * np.abs(exact).max()


def test_a_surrogate_unrelated_to_the_game_gets_almost_no_weight(monkeypatch):
    # An adjustment by noise would only add variance: its weight is clipped to 0; the
    # shrinkage towards its values moves them by (1 - lambda) d with 1 - lambda =
    # share tr(V) / |d|^2, tiny when the surrogate's values are far from the estimate.
    import explain.kernel_shap as kernel_shap_module
    from explain.tree_surrogate import Surrogate

    num_features = 12
    game = max_of_mins_game(num_features, 3)
    monkeypatch.setattr(kernel_shap_module, "_MIN_PAIRS_PER_FOLD", 10**9)
    plain = kernel_shap(game, num_features, 250, np.random.default_rng(0))
    monkeypatch.undo()

    def unrelated(paired, base_values, full_values, outputs):
        rng = np.random.default_rng(9)
        halves = paired.halves[:, 0]
        noise = -halves * 1e3 * (paired.folds >= 0) + rng.normal(size=len(halves))
        return [Surrogate(noise, 0.0, rng.normal(size=num_features), np.zeros(num_features), noise)
                for _ in outputs]

    monkeypatch.setattr(kernel_shap_module, "cross_fitted_surrogates", unrelated)
    result = kernel_shap(game, num_features, 250, np.random.default_rng(0))
    np.testing.assert_allclose(result.values, plain.values, rtol=0, atol=0.01 * np.abs(plain.values).max())
    exact = exact_shapley_values(game, num_features)
    assert np.linalg.norm(result.values - exact) <= 1.01 * np.linalg.norm(plain.values - exact)


def _co_occurrence_imbalance(pairs, num_features, small):
    """Frobenius norm of sum over pairs of x x^T minus its expectation, off the diagonal."""
    from explain.coalitions import pair_sign_moment

    signs = 2.0 * pairs - 1.0
    deviation = signs.T @ signs - len(pairs) * pair_sign_moment(num_features, small)
    np.fill_diagonal(deviation, 0.0)
    return float(np.linalg.norm(deviation))


@pytest.mark.parametrize("num_features, small, count", [(16, 5, 150), (12, 6, 300)])
def test_drawn_pairs_balance_feature_co_occurrence(num_features, small, count):
    # Against uniform draws of the same stratum (sparse S = 16 and dense S = 12, where 300 of
    # its 462 pairs are drawn): the pairs' x x^T sums stay closer to their expectation, and
    # they are still distinct, of the stratum's size and reproducible from the seed.
    from explain.coalitions import PairSampler, enumerate_coalitions

    enumerated = [size for size in range(1, num_features // 2 + 1) if size != small]
    drawn = PairSampler(num_features, enumerated, np.random.default_rng(3)).draw(count)[0::2]
    again = PairSampler(num_features, enumerated, np.random.default_rng(3)).draw(count)[0::2]
    np.testing.assert_array_equal(drawn, again)
    assert len({row.tobytes() for row in drawn}) == count
    assert set(drawn.sum(axis=1)) <= {small, num_features - small}
    every = enumerate_coalitions(num_features, [small])[0::2]
    rng = np.random.default_rng(4)
    uniform = [_co_occurrence_imbalance(every[rng.choice(len(every), count, replace=False)],
                                        num_features, small) for _ in range(20)]
    assert _co_occurrence_imbalance(drawn, num_features, small) < 0.5 * np.median(uniform)
    unbalanced = PairSampler(num_features, enumerated, np.random.default_rng(3),
                             balanced=False).draw(count)[0::2]
    assert len({row.tobytes() for row in unbalanced}) == count
    assert (_co_occurrence_imbalance(unbalanced, num_features, small)
            > 0.5 * np.median(uniform) > _co_occurrence_imbalance(drawn, num_features, small))


@pytest.mark.parametrize("num_features", [8, 10, 12, 16])
def test_the_fewest_pairs_measure_every_direction(num_features):
    # S pairs (2S + 2 calls) can determine S values under the efficiency constraint only if their sign
    # vectors and the all-one vector span R^S. Drawn without regard to it, two segments kept the same
    # signs in every pair (or another direction went unmeasured) in 5-18% of draws at 2S + 4 calls for
    # S = 8-12, and every error was unknown. Now every draw spans R^S from S - 1 pairs on.
    from explain.coalitions import PairSampler

    def spans(pairs):
        return np.linalg.matrix_rank(np.vstack([2.0 * pairs - 1.0, np.ones(num_features)])) == num_features

    for count in (num_features - 1, num_features, num_features + 1):
        drawn = [PairSampler(num_features, [], np.random.default_rng(seed)).draw(count)[0::2]
                 for seed in range(40)]
        assert all(spans(pairs) for pairs in drawn)
    # the rule is what does it: the same draws without it miss a direction now and then
    missed = sum(not spans(PairSampler(num_features, [], np.random.default_rng(seed),
                                       separating=False).draw(num_features + 1)[0::2])
                 for seed in range(200))
    assert missed > 0


def test_separating_draws_leave_a_sampler_with_an_enumerated_size_alone():
    # an enumerated size's pairs span R^S already: the draws are the balanced draws as they were
    from explain.coalitions import PairSampler

    for seed in range(5):
        with_rule = PairSampler(16, [1], np.random.default_rng(seed)).draw(60)
        without = PairSampler(16, [1], np.random.default_rng(seed), separating=False).draw(60)
        np.testing.assert_array_equal(with_rule, without)


def test_shrinkage_towards_a_surrogate_known_answers():
    from explain.shap_regression import shrink_towards_surrogate

    values = np.array([1.0, 2.0, 3.0, 4.0])
    errors = np.full(4, 0.5)  # tr(V) = 1
    # a surrogate whose values differ by a constant: nothing to shrink (the sum is fixed)
    same, _, _ = shrink_towards_surrogate(values, errors, values - 0.3, np.zeros(4))
    np.testing.assert_allclose(same, values, rtol=0, atol=1e-12)
    # |d|^2 = 1 = 2 * share * tr(V): halfway, the sum kept, errors from both parts
    surrogate = values + np.array([0.5, -0.5, 0.5, -0.5]) + 7.0
    shrunk, shrunk_errors, weight = shrink_towards_surrogate(values, errors, surrogate,
                                                             np.full(4, 0.01))
    assert weight == pytest.approx(0.5)
    np.testing.assert_allclose(shrunk, values + 0.5 * np.array([0.5, -0.5, 0.5, -0.5]))
    assert shrunk.sum() == pytest.approx(values.sum())
    # here d^2 = V: no bias estimated, the surrogate's error is its variance alone
    np.testing.assert_allclose(shrunk_errors, np.sqrt(0.25 * 0.25 + 0.25 * 0.01))
    # a surrogate biased on one feature: d^2 - V counts on that feature
    biased = values + np.array([2.0, -1.0, -0.5, -0.5])
    _, biased_errors, weight = shrink_towards_surrogate(values, errors, biased, np.zeros(4))
    np.testing.assert_allclose(biased_errors[0]**2,
                               weight**2 * 0.25 + (1 - weight)**2 * (4.0 - 0.25))
    np.testing.assert_allclose(biased_errors[2]**2, weight**2 * 0.25)
    # a surrogate within the noise: its values (centred on the estimate's sum)
    close = values + np.array([0.1, -0.1, 0.1, -0.1])
    shrunk, _, weight = shrink_towards_surrogate(values, errors, close, np.zeros(4))
    assert weight == 0.0
    np.testing.assert_allclose(shrunk, close)
    # a surrogate far off: almost unchanged
    far = values + np.array([50.0, -50.0, 50.0, -50.0])
    shrunk, _, weight = shrink_towards_surrogate(values, errors, far, np.zeros(4))
    assert weight == pytest.approx(1.0 - 0.5 / 10000.0)
    np.testing.assert_allclose(shrunk, values, atol=0.01)


@pytest.mark.parametrize("num_samples", [3600, 3998])
def test_intervals_hold_near_full_enumeration(num_samples):
    # S = 12: 3998 calls evaluate every coalition but 48 of the 462 pairs of halves (k = 6).
    # Two faults made the intervals cover ~80% there: that stratum's indicator was the sign
    # of feature S-1 (its pairs are stored by the member holding it), a bias in that
    # feature's value; and the trees' fold-by-fold error got the stratum's finite-population
    # correction instead of the fold's.
    num_features = 12
    covered = total = 0
    interactions = interaction_game(num_features, 3)  # its sigmoid output (the other is exact)
    for game in (lambda z: interactions(z)[:, :1], max_of_mins_game(num_features, 4)):
        exact = exact_shapley_values(game, num_features)
        for seed in range(8):
            result = kernel_shap(game, num_features, num_samples, np.random.default_rng(seed))
            # (an output fitted exactly has errors and standard errors of rounding size)
            inside = np.abs(result.values - exact) <= 1.96 * result.standard_errors + 1e-9 * np.abs(exact).max()
            covered += int(inside.sum())
            total += inside.size
    assert 0.9 <= covered / total <= 1.0, covered / total


def test_too_few_calls_give_a_bounded_fit_and_a_warning(caplog):
    # 30 calls for 20 features: 14 pairs for 19 free values. The inverse of the nearly
    # singular system (a 1e-10 ridge) lost every digit: values hundreds of times the true
    # ones' norm. Now the minimum-norm fit, and a warning that names the minimum budget.
    num_features = 20
    game = interaction_game(num_features, 5)
    exact = exact_shapley_values(game, num_features)
    with caplog.at_level("WARNING", logger="explain.kernel_shap"):
        for seed in range(5):
            result = kernel_shap(game, num_features, 30, np.random.default_rng(seed))
            errors = np.linalg.norm(result.values - exact, axis=1) / np.linalg.norm(exact, axis=1)
            assert errors.max() < 3.0, errors
            np.testing.assert_allclose(result.values.sum(axis=1), result.full_values - result.base_values)
            # the fit passes through its few pairs: a sandwich of ~0 would read as certainty
            assert np.isnan(result.standard_errors).all() and not result.converged
    assert "30 model calls cannot determine 20 Shapley values" in caplog.text
    assert "at least 2 x 20 + 2 = 42" in caplog.text


@pytest.mark.parametrize("num_samples", [10, 20])
def test_too_few_calls_never_report_convergence(num_samples):
    # A target error met at once by standard errors of ~0 (values 0.85 off on a 1.67 spread).
    weights = np.random.default_rng(3).normal(size=12)
    result = kernel_shap(lambda z: np.maximum(z @ weights, 0)[:, None], 12, num_samples,
                         np.random.default_rng(0), target_error=0.01)
    assert not result.converged and np.isnan(result.standard_errors).all()


@pytest.mark.parametrize("outputs, message", [
    (lambda z: np.where((z.sum(axis=1) == 3)[:, None], np.nan, z[:, :1] * 1.0),
     "non-finite outputs (NaN or inf) for 56 of"),
    (lambda z: np.where((z.sum(axis=1) == 8)[:, None], np.inf, z[:, :1] * 1.0),
     "non-finite outputs (NaN or inf) for 1 of 2 coalitions"),
    (lambda z: z.sum(axis=1) * 1.0, "evaluate must return (M, T) outputs, T >= 1, for M = 2 coalitions; "
                                    "it returned shape (2,)"),
    (lambda z: np.zeros((len(z), 0)), "it returned shape (2, 0)"),
    (lambda z: np.zeros((len(z) + 1, 1)), "it returned shape (3, 1)"),
    # review 39: complex outputs lost their imaginary part with a ComplexWarning
    (lambda z: z[:, :1] * (1.0 + 1j), "evaluate must return real numbers, got dtype complex128 for 2 coalitions"),
])
def test_unusable_outputs_are_refused_with_the_reason(outputs, message):
    with pytest.raises(ValueError) as raised:
        kernel_shap(outputs, 8, 300, np.random.default_rng(0))
    assert message in str(raised.value)


@pytest.mark.parametrize("num_features", [0, -1, 31, 2.0])
def test_exact_values_refuse_a_count_of_features_they_cannot_enumerate(num_features):
    # review 39: 0 failed with an IndexError or a shape error, depending on the game
    with pytest.raises(ValueError, match=r"num_features must be an integer in \[1, 30\] \(2\*\*S model calls\), "
                                         f"got {num_features}$"):
        exact_shapley_values(additive_game(np.ones(3)), num_features)


def test_the_warning_about_too_few_calls_names_what_determines_the_values(caplog):
    # review 39: for 2 features it asked for 2 x 2 + 2 = 6 calls; 4 (every coalition) give the exact values
    with caplog.at_level("WARNING", logger="explain.kernel_shap"):
        kernel_shap(additive_game(np.ones(2)), 2, 3, np.random.default_rng(0))
        kernel_shap(additive_game(np.ones(5)), 5, 8, np.random.default_rng(0))
    assert "(Kernel SHAP needs at least 2**2 = 4)" in caplog.text
    assert "(Kernel SHAP needs at least 2 x 5 + 2 = 12)" in caplog.text


@pytest.mark.parametrize("num_samples", [-3, 3.5, "500", True])
def test_num_samples_must_be_a_count(num_samples):
    with pytest.raises(ValueError, match="num_samples must be an integer >= 0"):
        kernel_shap(additive_game(np.ones(4)), 4, num_samples, np.random.default_rng(0))


@pytest.mark.parametrize("arguments, error, message", [  # review 19: these failed deep inside or ran on
    ({"num_features": 4.0}, ValueError, "num_features must be an integer >= 1, got 4.0"),
    ({"num_features": True}, ValueError, "num_features must be an integer >= 1, got True"),
    ({"num_features": 0}, ValueError, "num_features must be an integer >= 1, got 0"),
    ({"rng": 0}, TypeError, "rng must be a numpy.random.Generator (np.random.default_rng(seed)), got int"),
    ({"rng": None}, TypeError, "got NoneType"),
    ({"rng": np.random.RandomState(0)}, TypeError, "got RandomState"),
    ({"target_error": -0.1}, ValueError, "target_error must be None or a number in (0, 1], got -0.1"),
    ({"target_error": float("nan")}, ValueError, "target_error must be None or a number in (0, 1], got nan"),
])
def test_bad_arguments_are_refused_before_any_model_call(arguments, error, message):
    calls = []

    def game(coalitions):
        calls.append(len(coalitions))
        return additive_game(np.arange(1.0, 13.0))(coalitions)

    settings = {"num_features": 12, "rng": np.random.default_rng(0), "target_error": None, **arguments}
    with pytest.raises(error) as raised:
        kernel_shap(game, settings["num_features"], 60, settings["rng"], settings["target_error"])
    assert message in str(raised.value)
    assert calls == []


def test_a_numpy_target_error_is_taken_as_the_number_it_holds():
    # review 20: np.float32(0.5) was refused as "target_error must be None or a number in (0, 1], got 0.5"
    game = additive_game(np.arange(1.0, 7.0))
    result = kernel_shap(game, 6, 200, np.random.default_rng(0), np.float32(0.5))
    np.testing.assert_allclose(result.values.sum(axis=1), result.full_values - result.base_values)


@pytest.mark.parametrize("num_features", [12, 16])
def test_intervals_hold_just_above_the_fewest_calls(num_features):
    # At 2S + 2 to 3S calls the fit has about as many columns as pairs: its sandwich errors covered 0.61 of
    # the exact values at 2S + 2 and 0.83 at 2S + 4 (median of 15 games). Now they are unknown while fewer
    # than 2 pairs are left to spare or the pairs leave a direction unmeasured, and widened by Student's t
    # with what is left while the pairs are scarce; the drawn pairs always measure every direction of the values
    # (``test_the_fewest_pairs_measure_every_direction``), so from 2S + 4 calls the errors are known.
    covered = known = runs = 0
    for game_seed in range(3):
        game = interaction_game(num_features, game_seed)
        exact = exact_shapley_values(game, num_features)
        for num_samples in (2 * num_features + 4, 2 * num_features + 8, 3 * num_features):
            for seed in range(4):
                result = kernel_shap(game, num_features, num_samples, np.random.default_rng(seed))
                errors = result.standard_errors
                assert np.isfinite(result.fit_errors).all()  # refinement ranks by these: always known here
                runs += 1
                if not np.isfinite(errors).all():
                    continue
                inside = np.abs(result.values - exact) <= 1.96 * errors + 1e-9 * np.abs(exact).max()
                covered += int(inside.sum())
                known += inside.size
    assert known == runs * 2 * num_features  # every error known
    assert covered / known >= 0.9, covered / known


def test_no_errors_are_given_at_the_fewest_calls_that_determine_the_values():
    # 2S + 2 calls: S pairs for S - 1 free singletons, one left to spare (before the draws were separating, fewer
    # when the drawn signs spanned fewer directions: 12 pairs spanning 9 of 11, the fit's sandwich 1e-5 of the
    # error); one spare pair says too little to give errors by
    num_features = 12
    game = interaction_game(num_features, 0)
    for seed in range(10):
        result = kernel_shap(game, num_features, 2 * num_features + 2, np.random.default_rng(seed))
        assert np.isnan(result.standard_errors).all() and not result.converged


def test_more_samples_are_drawn_only_when_asked_and_counted():
    num_features, game = 16, interaction_game(16, 1)
    plain = kernel_shap(game, num_features, 60, np.random.default_rng(3))
    kept = kernel_shap(game, num_features, 60, np.random.default_rng(3), more_samples=40,
                       spend_more=lambda result: False)
    np.testing.assert_array_equal(kept.values, plain.values)
    assert kept.num_evaluations == plain.num_evaluations == 60
    asked = []

    def counted(coalitions):
        asked.append(len(coalitions))
        return game(coalitions)

    more = kernel_shap(counted, num_features, 60, np.random.default_rng(3), more_samples=40,
                       spend_more=lambda result: True)
    assert more.num_evaluations == sum(asked) == 100
    assert more.values.sum(axis=1) == pytest.approx(more.full_values - more.base_values)
    exact = exact_shapley_values(game, num_features)
    assert np.linalg.norm(more.values - exact) < np.linalg.norm(plain.values - exact)


@pytest.mark.parametrize("family", ["max", "min"])
def test_saturating_games_get_sharp_values_and_intervals_that_hold(family):
    """Review 39: on max_i w_i z_i and min games at 1000 calls the intervals covered 0.72 / 0.77 of the exact
    values, relative error 0.03 / 0.02: parities chosen for d/2 were kept after the trees, fitted to what the
    trees leave, and added noise and a bias the trees shared. That fit is now mixed with the singleton fit so
    adjusted, to the least sandwich variance (bench/bench_saturating_coverage.py has the table)."""
    rng = np.random.default_rng(39)
    covered = total = 0
    errors = []
    for _ in range(4):
        size = int(rng.integers(11, 15))
        weights = rng.uniform(size=size)
        if family == "max":
            def game(z, weights=weights):
                return (z * weights).max(axis=1, keepdims=True)
        else:
            def game(z, weights=weights):
                return np.where(z, weights, 1.0).min(axis=1, keepdims=True)
        exact = exact_shapley_values(game, size)[0]
        for seed in range(2):
            result = kernel_shap(game, size, 1000, np.random.default_rng(seed))
            error = result.values[0] - exact
            covered += int((np.abs(error) <= 1.96 * result.standard_errors[0]).sum())
            total += size
            errors.append(np.linalg.norm(error) / np.linalg.norm(exact))
    assert covered / total >= 0.9, covered / total
    assert np.mean(errors) < 0.01, np.mean(errors)


def test_a_min_plus_linear_game_it_was_not_tuned_on_gets_sharp_values_and_intervals_that_hold():
    """An outside check of the mix of the chosen-terms and singleton fits (review 42), on a family the change
    was not measured on: min over the features shown plus a linear part, S = 12, 1000 calls. Before it, these
    6 seeds gave relative error 0.010 and coverage 0.875; after it 0.004 and 0.958."""
    rng = np.random.default_rng(42)
    weights, slopes = rng.uniform(size=12), rng.normal(scale=0.05, size=12)

    def game(z):
        return (np.where(z, weights, 1.0).min(axis=1) + (z * slopes).sum(axis=1))[:, None]

    exact = exact_shapley_values(game, 12)[0]
    covered, errors = 0, []
    for seed in range(6):
        result = kernel_shap(game, 12, 1000, np.random.default_rng(seed))
        error = result.values[0] - exact
        covered += int((np.abs(error) <= 1.96 * result.standard_errors[0]).sum())
        errors.append(np.linalg.norm(error) / np.linalg.norm(exact))
    assert covered / (6 * 12) >= 0.9, covered / 72
    assert np.mean(errors) < 0.007, np.mean(errors)
