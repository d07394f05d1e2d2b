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
        # elementwise sums only: each row's output must not depend on the batch it is in
        z = coalitions.astype(np.float64)
        logits = (z * weights).sum(axis=1) + (z[:, :, None] * pairs * z[:, None, :]).sum(axis=(1, 2))
        detector = (z[:, important].sum(axis=1) >= 3).astype(np.float64)
        return np.stack([1.0 / (1.0 + np.exp(-logits)), detector], axis=1)

    return game


@pytest.mark.parametrize("num_features, num_samples", [(5, 500), (20, 300), (40, 500)])
def test_additive_game_is_exact(num_features, num_samples):
    weights = np.random.default_rng(num_features).normal(size=(2, num_features))
    result = kernel_shap(additive_game(weights), num_features, num_samples,
                         np.random.default_rng(0))
    value_range = weights.max() - weights.min()
    assert np.abs(result.values - weights).max() <= 1e-6 * value_range
    np.testing.assert_allclose(result.values.sum(axis=1),
                               result.full_values - result.base_values, atol=1e-12)
    assert result.standard_errors.max() <= 1e-6 * value_range


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


def test_surrogate_control_variate_reduces_error_on_detector_like_games():
    num_features = 13
    plain, adjusted = [], []
    for seed in range(5):
        rng = np.random.default_rng(seed)
        important = rng.choice(num_features, size=4, replace=False)

        def game(coalitions, important=important):
            visible = coalitions[:, important].mean(axis=1)
            context = coalitions.mean(axis=1)
            return (1.0 / (1.0 + np.exp(-12.0 * (visible - 0.6))) * (0.7 + 0.3 * context))[:, None]

        exact = exact_shapley_values(game, num_features)
        for control_variate, errors in ((False, plain), (True, adjusted)):
            result = kernel_shap(game, num_features, 400, np.random.default_rng(seed),
                                 control_variate=control_variate)
            errors.append(np.linalg.norm(result.values - exact) / np.linalg.norm(exact))
            np.testing.assert_allclose(result.values.sum(), result.full_values - result.base_values)
    assert np.median(adjusted) < 0.5 * np.median(plain)


def test_two_object_games_get_a_two_index_surrogate():
    from explain.kernel_shap import choose_surrogates

    rng = np.random.default_rng(0)
    coalitions = rng.random((400, 16)) < 0.5
    visible = coalitions.astype(np.float64)
    one_object = 1.0 / (1.0 + np.exp(-10.0 * (visible[:, :4].mean(axis=1) - 0.5)))
    other_object = 0.8 / (1.0 + np.exp(-10.0 * (visible[:, 4:8].mean(axis=1) - 0.5)))
    assert len(choose_surrogates(coalitions, one_object)) == 1
    assert len(choose_surrogates(coalitions, np.maximum(one_object, other_object))) == 2
    assert choose_surrogates(coalitions, visible @ rng.normal(size=16)) == []  # additive

    def game(rows):
        seen = rows.astype(np.float64)
        first = 1.0 / (1.0 + np.exp(-10.0 * (seen[:, :4].mean(axis=1) - 0.5)))
        second = 0.8 / (1.0 + np.exp(-10.0 * (seen[:, 4:8].mean(axis=1) - 0.5)))
        return np.maximum(first, second)[:, None]

    exact = exact_shapley_values(game, 16)
    errors = {}
    for control_variate in (False, True):
        estimates = [kernel_shap(game, 16, 500, np.random.default_rng(seed),
                                 control_variate=control_variate).values for seed in range(3)]
        errors[control_variate] = np.median([np.linalg.norm(values - exact) for values in estimates])
    # max() of two objects is not a sum of two sigmoids: a smaller gain than for one object
    assert errors[True] < errors[False]
