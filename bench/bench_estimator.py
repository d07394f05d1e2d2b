"""Kernel SHAP estimator accuracy against exact Shapley values, next to shap's KernelExplainer.

Reproduce (about 80 s on 2 cores; needs `pip install -r bench/requirements.txt`):

    .venv/bin/python -m bench.bench_estimator

For each random model with interactions (S features, 2**S exact evaluations), each seed
and each budget, it reports the median over models and seeds of the relative error
||phi_hat - phi||_2 / ||phi||_2 and of the max absolute error divided by the value range.
The budget counts every model evaluation, the empty and full coalitions included; shap's
KernelExplainer gets ``nsamples = budget - 2`` (it evaluates the two anchors separately)
and ``l1_reg=False`` (its default ``num_features(10)`` would zero out features when
S > 10). Printed as a markdown table on stdout.

Read the table with its models in mind: "detector-like" is a sigmoid of a linear index
times a context term and "two-objects" a max of two such sigmoids, close to the sigmoid
surrogates the control variates fit, so clearsight's gain there is largest; "triples"
(linear plus three-way products) fits no surrogate and shows the paired, stratified
estimator alone.
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np

from explain.kernel_shap import exact_shapley_values, kernel_shap

MODEL_KINDS = ("pairwise", "sigmoid", "detector-like", "two-objects", "triples")


def make_model(kind: str, num_features: int, rng: np.random.Generator):
    """A cheap model of coalitions: (M, S) {0,1} -> (M,) float, with interactions.

    pairwise: linear + pairwise products; sigmoid: a sigmoid of that; detector-like: a
    sigmoid of the visible share of an object's segments times the visible context;
    two-objects: the max of two such detections; triples: linear + three-way products.
    """
    weights = rng.normal(size=num_features)
    pairs = rng.normal(size=(num_features, num_features)) * (0.5 / np.sqrt(num_features))
    pairs = np.triu(pairs, 1)
    important = rng.choice(num_features, size=max(2, num_features // 4), replace=False)
    triples_of_features = np.array([rng.choice(num_features, size=3, replace=False)
                                    for _ in range(2 * num_features)])
    triple_weights = rng.normal(size=len(triples_of_features))

    def model(coalitions: np.ndarray) -> np.ndarray:
        z = np.asarray(coalitions, dtype=np.float64)
        if kind == "pairwise":
            return z @ weights + np.einsum("mi,ij,mj->m", z, pairs, z)
        if kind == "sigmoid":
            return 1.0 / (1.0 + np.exp(-(z @ weights + np.einsum("mi,ij,mj->m", z, pairs, z))))
        if kind == "detector-like":
            # a score that needs most of an object's segments, scaled by the visible context
            visible = z[:, important].mean(axis=1)
            return 1.0 / (1.0 + np.exp(-12.0 * (visible - 0.6))) * (0.7 + 0.3 * z.mean(axis=1))
        if kind == "two-objects":
            # the best of two detections, each needing its own segments (OR of two ANDs)
            half = len(important) // 2 or 1
            first = z[:, important[:half]].mean(axis=1)
            second = z[:, important[half:]].mean(axis=1)
            return np.maximum(1.0 / (1.0 + np.exp(-10.0 * (first - 0.5))),
                              0.8 / (1.0 + np.exp(-10.0 * (second - 0.5))))
        # triples: linear plus random three-way products (no surrogate fits these)
        triple = triples_of_features
        return z @ weights + (z[:, triple[:, 0]] * z[:, triple[:, 1]] * z[:, triple[:, 2]]) @ triple_weights

    return model


def ours(model, num_features: int, budget: int, seed: int) -> np.ndarray:
    result = kernel_shap(lambda z: model(z)[:, None], num_features, budget,
                         np.random.default_rng(seed))
    return result.values[0]


def shap_kernel(model, num_features: int, budget: int, seed: int) -> np.ndarray:
    import shap

    np.random.seed(seed)  # shap's KernelExplainer draws from numpy's global generator
    explainer = shap.KernelExplainer(model, np.zeros((1, num_features)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        values = explainer.shap_values(np.ones((1, num_features)), nsamples=budget - 2,
                                       l1_reg=False, silent=True)
    return np.asarray(values).reshape(-1)[:num_features]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--features", type=int, nargs="+", default=[12, 16, 20])
    parser.add_argument("--budgets", type=int, nargs="+", default=[250, 500, 1000])
    parser.add_argument("--models", type=int, default=4, help="random models per kind")
    parser.add_argument("--seeds", type=int, default=3, help="estimator seeds per model")
    parser.add_argument("--no-shap", action="store_true", help="skip shap's KernelExplainer")
    args = parser.parse_args()

    estimators = {"clearsight": ours}
    if not args.no_shap:
        estimators["shap KernelExplainer"] = shap_kernel
    rows = []
    started = time.perf_counter()
    for num_features in args.features:
        for kind in MODEL_KINDS:
            errors = {(name, budget): ([], []) for name in estimators for budget in args.budgets}
            for model_index in range(args.models):
                model = make_model(kind, num_features,
                                   np.random.default_rng([num_features, model_index, 7]))
                exact = exact_shapley_values(lambda z, m=model: m(z)[:, None], num_features)[0]
                value_range = exact.max() - exact.min()
                for budget in args.budgets:
                    for seed in range(args.seeds):
                        for name, estimate in estimators.items():
                            error = estimate(model, num_features, budget, seed) - exact
                            relative, max_abs = errors[(name, budget)]
                            relative.append(np.linalg.norm(error) / np.linalg.norm(exact))
                            max_abs.append(np.abs(error).max() / value_range)
            for budget in args.budgets:
                row = [str(num_features), kind, str(budget)]
                for name in estimators:
                    relative, max_abs = errors[(name, budget)]
                    row.append(f"{np.median(relative):.4f} / {np.median(max_abs):.4f}")
                if len(estimators) == 2:
                    ours_error = np.median(errors[("clearsight", budget)][0])
                    shap_error = np.median(errors[("shap KernelExplainer", budget)][0])
                    row.append(f"{ours_error / shap_error:.2f}")
                rows.append(row)
    header = ["S", "model", "budget", *[f"{name} rel L2 / max-abs÷range" for name in estimators]]
    if len(estimators) == 2:
        header.append("ratio (rel L2)")
    print(f"<!-- .venv/bin/python -m bench.bench_estimator --features {' '.join(map(str, args.features))}"
          f" --budgets {' '.join(map(str, args.budgets))} --models {args.models}"
          f" --seeds {args.seeds}{' --no-shap' if args.no_shap else ''} -->")
    print(f"Median over {args.models} models x {args.seeds} seeds per row; "
          f"{time.perf_counter() - started:.0f} s.\n")
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join("---" for _ in header) + "|")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    if len(estimators) == 2:
        print("\nMedian ratio (clearsight / shap, rel L2) over all models and sizes per budget:")
        for budget in args.budgets:
            ratios = [float(row[-1]) for row in rows if row[2] == str(budget)]
            print(f"- {budget}: {np.median(ratios):.2f} (worst {max(ratios):.2f})")


if __name__ == "__main__":
    main()
