"""Coverage of the 95% intervals at small budgets (the fewest calls that determine the values and up).

On the synthetic games of ``bench.estimator_games`` (root seed ``--root-seed``; the dev seed 544682 by
default): S = 12, 16 and 20, five families, budgets from 2S + 2 calls to 1000, 10 seeds. Coverage
counts the values within 1.96 standard errors of the exact ones, per game. Deterministic for a root
seed; about 90 s on 2 cores. README ("Limits") quotes it: the sandwich errors understate while the
pairs are scarce (a fix that widened them was reverted: it stopped refinement at small budgets).
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from bench.estimator_games import synthetic_table
from explain.kernel_shap import kernel_shap

FAMILIES = ("higher-order", "thresholds", "max-min", "sparse", "pairwise")
BUDGETS = {"2S+2": lambda s: 2 * s + 2, "2S+4": lambda s: 2 * s + 4, "3S": lambda s: 3 * s,
           "100": lambda s: 100, "250": lambda s: 250, "500": lambda s: 500, "1000": lambda s: 1000}


def coverage(game, budget: int, seeds: int) -> float:
    """Share of the values within 1.96 SE of the exact ones over ``seeds`` runs (NaN when every run is exact)."""
    covered = total = 0
    norm = np.abs(game.shapley).max()
    for seed in range(seeds):
        result = kernel_shap(lambda rows: game(rows)[:, None], game.num_features, budget, np.random.default_rng(seed))
        if result.exact:
            continue
        inside = np.abs(result.values[0] - game.shapley) <= 1.96 * result.standard_errors[0] + 1e-9 * norm
        covered += int(inside.sum())
        total += int(inside.size)
    return covered / total if total else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--root-seed", type=int, default=544682)
    parser.add_argument("--seeds", type=int, default=10)
    args = parser.parse_args()
    started = time.perf_counter()
    cells = {label: [] for label in BUDGETS}
    for num_features in (12, 16, 20):
        for family in FAMILIES:
            game = synthetic_table(family, num_features, 0, args.root_seed)
            for label, budget in BUDGETS.items():
                cells[label].append(coverage(game, budget(num_features), args.seeds))
    print(f"root seed {args.root_seed}, {args.seeds} seeds, {len(FAMILIES) * 3} games; coverage per game: "
          "median (lowest, highest), games under 0.90 / over 0.99")
    for label, shares in cells.items():
        shares = np.array(shares)
        print(f"{label:>5}: {np.nanmedian(shares):.3f} ({np.nanmin(shares):.3f}, {np.nanmax(shares):.3f}), "
              f"{int((shares < 0.9).sum())} / {int((shares > 0.99).sum())}")
    print(f"{time.perf_counter() - started:.0f} s; reproduce: .venv/bin/python -m bench.bench_small_sample_errors "
          f"--root-seed {args.root_seed} --seeds {args.seeds}")


if __name__ == "__main__":
    main()
