"""Coverage of the 95% intervals at small budgets, with and without the scarce-pairs errors.

``kernel_shap.small_sample_errors`` widens the sandwich standard errors by Student's t, pools them
at the output's median and calls them unknown with fewer than 2 pairs to spare, while the pairs are
scarce (``shap_regression.scarce_pairs``). This measures what that does on the synthetic games of
``bench.estimator_games`` (root seed ``--root-seed``; the dev seed 544682 by default): S = 12, 16
and 20, five families, budgets from 2S + 2 calls to 1000, 10 seeds. "before" sets the factor to 1
(the sandwich alone). Coverage counts the values whose errors are known; how many are unknown is
printed beside it. Deterministic for a root seed; about 3 minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import explain.kernel_shap as kernel_shap_module
from bench.estimator_games import synthetic_table

FAMILIES = ("higher-order", "thresholds", "max-min", "sparse", "pairwise")
BUDGETS = {"2S+2": lambda s: 2 * s + 2, "2S+4": lambda s: 2 * s + 4, "3S": lambda s: 3 * s,
           "100": lambda s: 100, "250": lambda s: 250, "500": lambda s: 500, "1000": lambda s: 1000}


def coverage(game, budget: int, seeds: int) -> tuple[float, int]:
    """(share of the known values within 1.96 SE of the exact ones, how many values were unknown)."""
    covered = total = unknown = 0
    norm = np.abs(game.shapley).max()
    for seed in range(seeds):
        result = kernel_shap_module.kernel_shap(lambda rows: game(rows)[:, None], game.num_features, budget,
                                                np.random.default_rng(seed))
        if result.exact:
            continue
        errors = result.standard_errors[0]
        known = np.isfinite(errors)
        unknown += int((~known).sum())
        inside = np.abs(result.values[0] - game.shapley)[known] <= 1.96 * errors[known] + 1e-9 * norm
        covered += int(inside.sum())
        total += int(inside.size)
    return (covered / total if total else float("nan")), unknown


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--root-seed", type=int, default=544682)
    parser.add_argument("--seeds", type=int, default=10)
    args = parser.parse_args()
    started = time.perf_counter()
    scarce_errors = kernel_shap_module.small_sample_factor
    cells = {(label, mode): [] for label in BUDGETS for mode in ("before", "after")}
    unknown = dict.fromkeys(cells, 0)
    for num_features in (12, 16, 20):
        for family in FAMILIES:
            game = synthetic_table(family, num_features, 0, args.root_seed)
            for label, budget in BUDGETS.items():
                for mode in ("before", "after"):
                    kernel_shap_module.small_sample_factor = (scarce_errors if mode == "after"
                                                              else lambda paired, fit: 1.0)
                    share, missing = coverage(game, budget(num_features), args.seeds)
                    cells[(label, mode)].append(share)
                    unknown[(label, mode)] += missing
    kernel_shap_module.small_sample_factor = scarce_errors
    print(f"root seed {args.root_seed}, {args.seeds} seeds, {len(FAMILIES) * 3} games; coverage of the known "
          "values per game: median (lowest, highest), games under 0.90 / over 0.99, values unknown")
    for label in BUDGETS:
        line = [f"{label:>5}:"]
        for mode in ("before", "after"):
            shares = np.array(cells[(label, mode)])
            line.append(f"{mode} {np.nanmedian(shares):.3f} ({np.nanmin(shares):.3f}, {np.nanmax(shares):.3f}), "
                        f"{int((shares < 0.9).sum())} / {int((shares > 0.99).sum())}, {unknown[(label, mode)]}")
        print("  ".join(line))
    print(f"{time.perf_counter() - started:.0f} s; reproduce: .venv/bin/python -m bench.bench_small_sample_errors "
          f"--root-seed {args.root_seed} --seeds {args.seeds}")


if __name__ == "__main__":
    main()
