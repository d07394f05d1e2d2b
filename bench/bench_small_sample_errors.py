"""Coverage of the 95% intervals at small budgets (the fewest calls that determine the values and up).

On the synthetic games of ``bench.estimator_games`` (root seed ``--root-seed``; the dev seed 544682 by
default): S = 12, 16 and 20, five families, budgets from 2S + 2 calls to 1000, 10 seeds. Coverage
counts the values within 1.96 standard errors of the exact ones, per game. Deterministic for a root
seed; about 60 s on 2 cores. ``--shipped`` adds the shipped shapes classifier on the five sample images
(10 segments, mean-colour baseline, 3 seeds, exact values by evaluating all 1,024 coalitions through the
model; about 2 minutes more). README ("Limits") and BENCHMARKS.md quote it.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from bench.estimator_games import synthetic_table
from explain.kernel_shap import exact_shapley_values, kernel_shap

REPO = Path(__file__).resolve().parent.parent
SHIPPED_BUDGETS = (22, 24, 26, 30, 40)  # 2S + 2, 2S + 4, 2S + 6, 3S, 4S for 10 segments

FAMILIES = ("higher-order", "thresholds", "max-min", "sparse", "pairwise")
BUDGETS = {"2S+2": lambda s: 2 * s + 2, "2S+4": lambda s: 2 * s + 4, "3S": lambda s: 3 * s,
           "100": lambda s: 100, "250": lambda s: 250, "500": lambda s: 500, "1000": lambda s: 1000}


def run_cell(game, budget: int, seeds: int) -> tuple[float, float, int]:
    """Over ``seeds`` runs that are not exact: the share of the known values within 1.96 SE of the exact
    ones (NaN when none is known), the median relative L2 error, and the runs whose errors are unknown."""
    covered = total = unknown = 0
    errors = []
    norm = np.abs(game.shapley).max()
    for seed in range(seeds):
        result = kernel_shap(lambda rows: game(rows)[:, None], game.num_features, budget, np.random.default_rng(seed))
        if result.exact:
            continue
        errors.append(np.linalg.norm(result.values[0] - game.shapley) / np.linalg.norm(game.shapley))
        if not np.isfinite(result.standard_errors[0]).all():
            unknown += 1
            continue
        inside = np.abs(result.values[0] - game.shapley) <= 1.96 * result.standard_errors[0] + 1e-9 * norm
        covered += int(inside.sum())
        total += int(inside.size)
    return (covered / total if total else float("nan"), float(np.median(errors)) if errors else 0.0, unknown)


def shipped_classifier(seeds: int) -> None:
    """Known errors and their coverage for the shipped classifier's class on the sample images, per budget."""
    from PIL import Image

    from explain import ExplainConfig, explain_image
    from explain.baselines import make_baseline
    from explain.predictors.in_process import InProcessPredictor

    predictor = InProcessPredictor(REPO / "models" / "shapes-classifier", "classification")
    cells = {budget: [0, 0, 0] for budget in SHIPPED_BUDGETS}  # covered, known, unknown values
    for name in [f"shapes_{index}.png" for index in range(5)]:
        image = np.array(Image.open(REPO / "examples" / "shapes" / "samples" / name).convert("RGB"))
        exact = None
        for budget in SHIPPED_BUDGETS:
            for seed in range(seeds):
                config = ExplainConfig(task="classification", num_samples=budget, num_segments=10, refine_fraction=0,
                                       baseline="mean", seed=seed)
                explanation = explain_image(image, predictor, config)
                if exact is None or not np.array_equal(explanation.segments, exact[0]):
                    segments, label = explanation.segments, int(explanation.labels[0])
                    baseline = make_baseline(explanation.image, "mean", np.random.default_rng(0))

                    def game(coalitions, segments=segments, label=label, baseline=baseline, image=explanation.image):
                        masked = np.where(coalitions[:, segments][..., None], image[None], baseline[None])
                        return np.array([[output[label]] for start in range(0, len(masked), 64)
                                         for output in predictor(masked[start:start + 64])])

                    exact = (segments, exact_shapley_values(game, int(segments.max()) + 1)[0])
                errors = explanation.standard_errors[0]
                if not np.isfinite(errors).all():
                    cells[budget][2] += errors.size
                    continue
                inside = np.abs(explanation.shap_values[0] - exact[1]) <= 1.96 * errors
                cells[budget][0] += int(inside.sum())
                cells[budget][1] += int(inside.size)
    print(f"shipped classifier, 5 sample images, 10 segments, mean baseline, {seeds} seeds: values within 1.96 SE "
          "of the exact ones / values with known errors (values with unknown errors)")
    for budget, (covered, known, unknown) in cells.items():
        print(f"{budget:>5} calls: {covered} / {known} ({unknown} unknown)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--root-seed", type=int, default=544682)
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--shipped", action="store_true", help="also the shipped classifier on the sample images")
    args = parser.parse_args()
    started = time.perf_counter()
    cells = {label: [] for label in BUDGETS}
    for num_features in (12, 16, 20):
        for family in FAMILIES:
            game = synthetic_table(family, num_features, 0, args.root_seed)
            for label, budget in BUDGETS.items():
                cells[label].append(run_cell(game, budget(num_features), args.seeds))
    print(f"root seed {args.root_seed}, {args.seeds} seeds, {len(FAMILIES) * 3} games; coverage of the known errors "
          "per game: median (lowest, highest), games under 0.90 / over 0.99; runs with unknown errors; median "
          "over games of the median relative L2 error")
    for label, rows in cells.items():
        shares = np.array([row[0] for row in rows])
        known = shares[np.isfinite(shares)]
        spread = (f"{np.median(known):.3f} ({known.min():.3f}, {known.max():.3f}), "
                  f"{int((known < 0.9).sum())} / {int((known > 0.99).sum())}" if len(known) else "none known")
        print(f"{label:>5}: {spread}; unknown {sum(row[2] for row in rows)} of {len(rows) * args.seeds} runs; "
              f"error {np.median([row[1] for row in rows]):.4f}")
    if args.shipped:
        shipped_classifier(3)
    print(f"{time.perf_counter() - started:.0f} s; reproduce: .venv/bin/python -m bench.bench_small_sample_errors "
          f"--root-seed {args.root_seed} --seeds {args.seeds}{' --shipped' if args.shipped else ''}")


if __name__ == "__main__":
    main()
