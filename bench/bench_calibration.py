"""Estimator accuracy and interval coverage at segment counts the exact benchmark cannot reach.

Reproduce (needs `pip install -r bench/requirements.txt` for shap):

    .venv/bin/python -m bench.bench_calibration --root-seed N

bench_estimator enumerates 2**S coalitions for exact values, so its games stop at S = 20, all
even. Real photos are explained over 30-60 segments, and SLIC's count is as often odd as
even. Here the games are mixtures of unanimity games, whose Shapley values are known in
closed form at any S: u_T(z) = prod_{i in T} z_i gives phi_i = 1/|T| to each i in T and 0 to
the rest, and Shapley values are linear in the game. Each game draws 2S sets T of 1 to 5
random features with standard normal weights (interactions up to fifth order, as dense as
bench_estimator's higher-order family). Per S and budget, over the games and seeds:
clearsight's mean relative L2 error, shap KernelExplainer's (l1_reg=False) on the same games
and budgets, their ratio, and the share of true values inside clearsight's value +- 1.96 SE.
"""

from __future__ import annotations

import argparse

import numpy as np

from .estimator_peers import PEERS

SIZES = (13, 15, 32, 50)
BUDGETS = (250, 500, 1000, 2000)


def unanimity_mixture(num_features: int, rng: np.random.Generator):
    """A game (M, S) bool -> (M,) float64 of 2S weighted unanimity games, and its exact values (S,)."""
    sets = [rng.choice(num_features, size=int(rng.integers(1, 6)), replace=False)
            for _ in range(2 * num_features)]
    weights = rng.normal(size=len(sets))
    values = np.zeros(num_features)
    for members, weight in zip(sets, weights, strict=True):
        values[members] += weight / len(members)

    def game(coalitions: np.ndarray) -> np.ndarray:
        z = np.asarray(coalitions, dtype=np.float64)
        return sum(weight * z[:, members].prod(axis=1) for members, weight in zip(sets, weights, strict=True))

    return game, values


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root-seed", type=int, default=None,
                        help="seed of the games and estimator seeds (default: drawn fresh and printed)")
    parser.add_argument("--sizes", type=int, nargs="+", default=list(SIZES))
    parser.add_argument("--budgets", type=int, nargs="+", default=list(BUDGETS))
    parser.add_argument("--games", type=int, default=3, help="games per S")
    parser.add_argument("--seeds", type=int, default=6, help="estimator seeds per game and budget")
    args = parser.parse_args()
    root = args.root_seed if args.root_seed is not None else int(np.random.SeedSequence().entropy % 10**6)
    print(f"<!-- .venv/bin/python -m bench.bench_calibration --root-seed {root} --sizes "
          f"{' '.join(map(str, args.sizes))} --budgets {' '.join(map(str, args.budgets))} "
          f"--games {args.games} --seeds {args.seeds} -->")
    print("| S | calls | clearsight error | shap Kernel error | ratio | coverage (values) |")
    print("|---|---|---|---|---|---|")
    cells = []
    for num_features in args.sizes:
        games = [unanimity_mixture(num_features, np.random.default_rng([root, num_features, index]))
                 for index in range(args.games)]
        for budget in args.budgets:
            ours, reference, covered, count = [], [], 0, 0
            for index, (game, exact) in enumerate(games):
                norm = float(np.linalg.norm(exact))
                for seed_index in range(args.seeds):
                    seed = int(np.random.default_rng([root, num_features, index, budget, seed_index]).integers(2**31))
                    values, errors = PEERS["clearsight"](game, num_features, budget, seed)
                    ours.append(float(np.linalg.norm(values - exact)) / norm)
                    covered += int((np.abs(values - exact) <= 1.96 * errors + 1e-9 * norm).sum())
                    count += num_features
                    reference.append(float(np.linalg.norm(PEERS["shap KernelExplainer"](
                        game, num_features, budget, seed) - exact)) / norm)
            ratio = np.mean(ours) / np.mean(reference)
            cells.append((num_features, budget, ratio, covered / count))
            print(f"| {num_features} | {budget} | {np.mean(ours):.4f} | {np.mean(reference):.4f} | "
                  f"{ratio:.2f} | {covered / count:.3f} ({count}) |", flush=True)
    ratios = [cell[2] for cell in cells]
    outside = [cell for cell in cells if not 0.90 <= cell[3] <= 0.99]
    print(f"\nmedian error ratio to shap Kernel {np.median(ratios):.2f} (worst {max(ratios):.2f}); coverage "
          f"{min(cell[3] for cell in cells):.3f} .. {max(cell[3] for cell in cells):.3f}, cells outside "
          f"[0.90, 0.99]: {len(outside)} of {len(cells)}"
          + "".join(f"; S={cell[0]} @{cell[1]}: {cell[3]:.3f}" for cell in outside))


if __name__ == "__main__":
    main()
