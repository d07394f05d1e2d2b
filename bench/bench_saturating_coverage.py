"""Coverage of the 95% intervals on saturating games an outside check drew (review 39), not the benchmark's own.

Games over S = 11..14 features with weights w uniform in [0, 1): ``max`` = max_i w_i z_i (a detector's score
is often that of its best-matching part), ``min`` = min over the features shown of w_i (1 when none is), and
``noisy-or`` = 1 - prod_i (1 - 0.4 w_i z_i). Exact values by enumerating all 2^S coalitions. Per family and
budget: the mean over games of the share of values within 1.96 standard errors of the exact ones (the target
is 0.90..0.99), games under 0.8, the median |error| / standard error (0.67 for calibrated normal errors) and
the mean relative L2 error; for the estimator as shipped and with ``shrinkage=False`` (the values before they
are shrunk towards the tree surrogate's).

    .venv/bin/python -m bench.bench_saturating_coverage --games 20 --seed 2026
"""

from __future__ import annotations

import argparse
import logging

import numpy as np

from explain.kernel_shap import exact_shapley_values, kernel_shap

FAMILIES = ("max", "min", "noisy-or")
BUDGETS = (200, 500, 1000, 2000)


def saturating_game(family: str, weights: np.ndarray):
    """coalitions (M, S) bool -> (M, 1) float64."""
    if family == "max":
        return lambda z: (z * weights).max(axis=1, keepdims=True)
    if family == "min":
        return lambda z: np.where(z, weights, 1.0).min(axis=1, keepdims=True)
    return lambda z: 1.0 - np.prod(1.0 - 0.4 * weights * z, axis=1, keepdims=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--games", type=int, default=20, help="games per family")
    parser.add_argument("--seed", type=int, default=2026)
    args = parser.parse_args()
    logging.disable(logging.WARNING)
    rng = np.random.default_rng(args.seed)
    cells: dict[tuple[str, str, int], list[tuple[float, float, float]]] = {}
    for _ in range(args.games):
        for family in FAMILIES:
            size = int(rng.integers(11, 15))
            game = saturating_game(family, rng.uniform(size=size))
            exact = exact_shapley_values(game, size)[0]
            spread = np.ptp(exact)
            for budget in BUDGETS:
                seed = int(rng.integers(1 << 30))
                for variant, options in (("shipped", {}), ("no shrinkage", {"shrinkage": False})):
                    result = kernel_shap(game, size, budget, np.random.default_rng(seed), **options)
                    if result.exact:
                        continue
                    error = np.abs(result.values[0] - exact)
                    errors = result.standard_errors[0]
                    covered = float(np.mean(error <= 1.96 * errors + 1e-9 * spread))
                    cells.setdefault((family, variant, budget), []).append(
                        (covered, float(np.median(error / np.maximum(errors, 1e-300))),
                         float(np.linalg.norm(error) / np.linalg.norm(exact))))
    print(f"<!-- .venv/bin/python -m bench.bench_saturating_coverage --games {args.games} --seed {args.seed} -->")
    print("| family | estimator | budget | coverage (mean of games) | games under 0.8 | median abs(error) / SE "
          "| relative L2 error |")
    print("|---|---|---|---|---|---|---|")
    for (family, variant, budget), rows in sorted(cells.items()):
        covered, ratios, errors = (np.array(column) for column in zip(*rows))
        print(f"| {family} | {variant} | {budget} | {covered.mean():.3f} | {int((covered < 0.8).sum())} of {len(rows)} "
              f"| {np.median(ratios):.2f} | {errors.mean():.4f} |")


if __name__ == "__main__":
    main()
