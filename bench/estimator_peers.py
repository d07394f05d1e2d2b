"""Peers of clearsight's estimator for bench_estimator, each spending ``budget`` game evaluations.

Every peer takes (game, S, budget, seed), game mapping coalitions (M, S) {0,1} to (M,) floats,
and returns (S,) Shapley value estimates, or (values, standard errors) for clearsight.

* shap's KernelExplainer (``l1_reg=False``: its default keeps 10 features; ``nsamples = budget
  - 2`` since it evaluates the two anchors apart) and PermutationExplainer (``max_evals =
  budget``), over a zero background and an all-ones explicand, so the hybrid of a coalition
  is the coalition itself.
* Leverage SHAP (Musco & Witter, ICLR 2025), as published with the authors' code
  (github.com/rtealwitter/leverageshap): every size 1..S-1 gets the same share of the
  budget (capped at the coalitions it has, the surplus spread over the others), coalitions
  drawn in complementary pairs without replacement, weighted by the Shapley kernel over the
  inclusion probability, and the projected least squares
  phi = (P Z^T W Z P)^+ P Z^T W (y - f(0) - z.1 (f(1) - f(0))/S) + (f(1) - f(0))/S.
* Regression MSR (Witter, Liu & Musco, NeurIPS 2025), as in the authors' code: the same
  sampler, an XGBoost regressor (library defaults) fitted on every evaluated coalition,
  its exact baseline Shapley values by interventional TreeSHAP, plus the Horvitz-Thompson
  maximum-sample-reuse estimate of the residual's Shapley values:
  phi_i = phi_i(tree) + sum_{S ∋ i} r(S) p_{|S|-1} / pi(S) - sum_{S ∌ i} r(S) p_{|S|} / pi(S),
  p_l = 1 / (S C(S-1, l)), pi(S) the inclusion probability (1 for the anchors).
  Needs ``xgboost`` (bench/requirements.txt).
* clearsight's first estimator (bench/kernel_shap_old.py), the current one without its tree
  surrogate (``tree_surrogate=False``: the parity regression alone, issue 12's first round),
  with uniform instead of balanced draws (``balanced_draws=False``), without the shrinkage
  towards the trees (``shrinkage=False``), and the current one.
"""

from __future__ import annotations

import warnings
from math import comb

import numpy as np

from explain.kernel_shap import kernel_shap

from .kernel_shap_old import kernel_shap as kernel_shap_old


def _clearsight(**options):
    """clearsight's estimator as a peer, with kernel_shap's comparison switches (none: as shipped)."""
    def peer(game, num_features: int, budget: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
        result = kernel_shap(lambda z: game(z)[:, None], num_features, budget,
                             np.random.default_rng(seed), **options)
        return result.values[0], result.standard_errors[0]
    return peer


def clearsight_old(game, num_features: int, budget: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    result = kernel_shap_old(lambda z: game(z)[:, None], num_features, budget,
                             np.random.default_rng(seed))
    return result.values[0], result.standard_errors[0]


def shap_kernel(game, num_features: int, budget: int, seed: int) -> np.ndarray:
    import shap

    np.random.seed(seed)  # KernelExplainer draws from numpy's global generator
    explainer = shap.KernelExplainer(game, np.zeros((1, num_features)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        values = explainer.shap_values(np.ones((1, num_features)), nsamples=budget - 2,
                                       l1_reg=False, silent=True)
    return np.asarray(values).reshape(-1)[:num_features]


def shap_permutation(game, num_features: int, budget: int, seed: int) -> np.ndarray:
    import shap

    explainer = shap.PermutationExplainer(game, np.zeros((1, num_features)), seed=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        explanation = explainer(np.ones((1, num_features)), max_evals=budget, silent=True)
    return np.asarray(explanation.values).reshape(-1)[:num_features]


def _pairs_per_stratum(num_features: int, budget: int) -> np.ndarray:
    """Pairs to draw of each size pair (k, S-k), k = 1..S//2, for ``budget`` coalitions
    beyond the anchors: every size gets the same number of coalitions c, capped at C(S, k)
    (solved for c as the authors' sampler does), rounded down, the rest to the largest
    remainders. Returns (S//2,) int64."""
    strata = np.arange(1, num_features // 2 + 1)
    halves = np.array([2 * k == num_features for k in strata])
    capacity = np.array([comb(num_features, int(k)) // (2 if half else 1)
                         for k, half in zip(strata, halves, strict=True)], dtype=np.float64)

    def pairs(scale):  # a self-complementary size holds c coalitions in c / 2 pairs
        return np.minimum(np.where(halves, scale / 2.0, scale), capacity)

    target = min(budget // 2, int(capacity.sum()))
    low, high = 0.0, 2.0 * capacity.max()
    for _ in range(200):
        middle = 0.5 * (low + high)
        low, high = (middle, high) if pairs(middle).sum() < target else (low, middle)
    wanted = pairs(high)
    counts = np.floor(wanted).astype(np.int64)
    for index in np.argsort(-(wanted - counts), kind="stable"):
        if counts.sum() >= target:
            break
        if counts[index] < capacity[index]:
            counts[index] += 1
    return counts


def _paired_without_replacement(num_features: int, budget: int,
                                rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """The authors' sampler: (M, S) bool coalitions (anchors first, then pairs) and their
    inclusion probabilities (M,)."""
    from explain.coalitions import enumerate_coalitions

    counts = _pairs_per_stratum(num_features, budget - 2)
    rows = [np.zeros(num_features, dtype=bool), np.ones(num_features, dtype=bool)]
    inclusion = np.ones(num_features + 1)
    for small, wanted in zip(range(1, num_features // 2 + 1), counts, strict=True):
        total = comb(num_features, small) // (2 if 2 * small == num_features else 1)
        inclusion[small] = inclusion[num_features - small] = wanted / total
        if wanted == 0:
            continue
        if total <= 200_000:
            every = enumerate_coalitions(num_features, [small])[0::2]
            chosen = every[rng.choice(len(every), size=int(wanted), replace=False)]
        else:
            seen, picked = set(), []
            while len(picked) < wanted:
                row = np.zeros(num_features, dtype=bool)
                row[rng.choice(num_features, small, replace=False)] = True
                if 2 * small == num_features and not row[-1]:
                    row = ~row
                if row.tobytes() not in seen:
                    seen.add(row.tobytes())
                    picked.append(row)
            chosen = np.array(picked)
        for row in chosen:
            rows += [row, ~row]
    coalitions = np.array(rows)
    return coalitions, inclusion[coalitions.sum(axis=1)]


def leverage_shap(game, num_features: int, budget: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    coalitions, probability = _paired_without_replacement(num_features, budget, rng)
    values = game(coalitions)
    base, full = values[0], values[1]
    rows, values, probability = coalitions[2:], values[2:], probability[2:]
    sizes = rows.sum(axis=1)
    design = rows.astype(np.float64)
    kernel = 1.0 / (np.array([comb(num_features, int(k)) for k in sizes]) * sizes * (num_features - sizes))
    weights = kernel / probability
    adjusted = values - base - sizes * (full - base) / num_features
    projection = np.eye(num_features) - 1.0 / num_features
    gram = projection @ (design.T * weights) @ design @ projection
    rhs = projection @ (design.T * weights) @ adjusted
    return np.linalg.lstsq(gram, rhs, rcond=None)[0] + (full - base) / num_features


def regression_msr(game, num_features: int, budget: int, seed: int) -> np.ndarray:
    import shap
    import xgboost

    rng = np.random.default_rng(seed)
    coalitions, probability = _paired_without_replacement(num_features, budget, rng)
    values = game(coalitions)
    model = xgboost.XGBRegressor(random_state=seed, n_jobs=1).fit(coalitions.astype(np.float64), values)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        explainer = shap.TreeExplainer(model, data=np.zeros((1, num_features)))
        tree_values = np.asarray(explainer.shap_values(np.ones((1, num_features)))).reshape(-1)
    residual = values - model.predict(coalitions.astype(np.float64))
    sizes = coalitions.sum(axis=1)
    shapley_weight = np.array([1.0 / (num_features * comb(num_features - 1, k))
                               for k in range(num_features)])
    inside = coalitions
    with_weight = np.where(sizes > 0, shapley_weight[np.maximum(sizes - 1, 0)], 0.0) / probability
    without_weight = np.where(sizes < num_features,
                              shapley_weight[np.minimum(sizes, num_features - 1)], 0.0) / probability
    correction = (inside * (residual * with_weight)[:, None]).sum(axis=0) \
        - (~inside * (residual * without_weight)[:, None]).sum(axis=0)
    return tree_values + correction


PEERS = {
    "shap KernelExplainer": shap_kernel,
    "shap PermutationExplainer": shap_permutation,
    "Leverage SHAP": leverage_shap,
    "Regression MSR": regression_msr,
    "clearsight old": clearsight_old,
    "clearsight, no trees": _clearsight(tree_surrogate=False),
    "clearsight, uniform draws": _clearsight(balanced_draws=False),
    "clearsight, no shrinkage": _clearsight(shrinkage=False),
    "clearsight": _clearsight(),
}
