"""clearsight's previous estimator (commit 1a2e311, explain/kernel_shap.py), kept as a peer for bench_estimator.

Paired, size-stratified Kernel SHAP with sigmoid-surrogate control variates and paired-bootstrap
standard errors; its own description follows.

Estimator (Lundberg & Lee 2017, with the variance reductions of Covert & Lee 2021):

* Shapley kernel: a coalition of size k out of S has weight (S-1) / (C(S,k) k (S-k)); the
  total weight of size k is (S-1) / (k (S-k)).
* Budget: ``num_samples`` counts every evaluation, the two anchors (empty and full
  coalition) included; sampled coalitions come in pairs, so an odd leftover evaluation
  is not spent. If 2**S <= num_samples every coalition is enumerated and the
  values are the exact Shapley values.
* Exact enumeration of the small sizes: the size pairs (1, S-1), (2, S-2), ... are
  enumerated completely while the budget, split in proportion to the kernel weight that
  is still uncovered, covers all coalitions of the pair (shap's rule).
* The remaining sizes are sampled in complementary pairs (z, 1-z), stratified by size:
  each round spreads its pairs over the size pairs in proportion to their kernel weight
  (systematic rounding with a random offset), draws uniform subsets of that size and
  weights each coalition of size k by (kernel weight of size k) / (coalitions drawn).
* Efficiency is a hard constraint: the weighted least squares is solved with a Lagrange
  multiplier so the values sum exactly to f(full) - f(empty).
* Standard errors: paired bootstrap. The sampled complementary pairs are resampled with
  replacement within their size stratum (enumerated coalitions are fixed) and the
  constrained regression is re-solved; the standard error is the bootstrap standard
  deviation. With full enumeration it is 0.
* Surrogate control variates (on by default): per output a sigmoid-of-linear surrogate
  g(z) = a + b sigmoid(c + z . w), and a two-index one (a sum of two such sigmoids) when
  2-fold cross-validation says it predicts clearly better, are fitted to the evaluated
  coalitions (no extra model calls); the estimate becomes
  KS(f) - sum_k beta_k (KS(g_k) - phi(g_k)), with phi(g_k) exact (S <= 16) or from a
  100,000-coalition run on the surrogate, and beta the regression of the bootstrap
  replicates of KS(f) on those of KS(g_k) (about 0 when the surrogates do not help).
  Detector scores behave like sigmoids of the visible evidence of one or two objects,
  which this removes from the sampling error (see bench/bench_estimator.py). The
  surrogates are held fixed in the bootstrap.
* Early stopping (``target_error``): pairs are sampled in rounds; after each round the
  run stops once, for every output, every standard error < target_error * (max - min of
  that output's values).

Everything random comes from the injected ``numpy.random.Generator``; the coalitions
depend only on the generator and the budget, never on how evaluations are batched.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from math import comb

import numpy as np

__all__ = [
    "ShapResult",
    "kernel_shap",
    "size_kernel_mass",
    "plan_enumeration",
    "enumerate_coalitions",
    "solve_constrained_wls",
    "exact_shapley_values",
    "SigmoidSurrogate",
    "fit_sigmoid_surrogate",
    "choose_surrogates",
]

logger = logging.getLogger(__name__)

NUM_BOOTSTRAP = 100
_ROUND_FRACTION = 0.2  # share of the sampled pairs drawn per round when target_error is set


@dataclass(frozen=True)
class ShapResult:
    """Kernel SHAP estimate for T outputs over S features.

    values: (T, S) float64; standard_errors: (T, S) float64; base_values: (T,) f(empty);
    full_values: (T,) f(full); num_evaluations: coalitions evaluated (anchors included);
    exact: every coalition was evaluated (the values are the exact Shapley values);
    converged: True when target_error was met or the values are exact.
    """

    values: np.ndarray
    standard_errors: np.ndarray
    base_values: np.ndarray
    full_values: np.ndarray
    num_evaluations: int
    exact: bool
    converged: bool


def size_kernel_mass(num_features: int) -> np.ndarray:
    """Total Shapley kernel weight of each coalition size.

    Returns (S+1,) float64; entry k is (S-1) / (k (S-k)) for 0 < k < S and 0 for k in {0, S}.
    """
    sizes = np.arange(num_features + 1, dtype=np.float64)
    mass = np.zeros(num_features + 1)
    inner = sizes[1:-1]
    mass[1:-1] = (num_features - 1) / (inner * (num_features - inner))
    return mass


def _size_pairs(num_features: int) -> list[int]:
    """The smaller size of each complementary size pair: 1 .. floor(S/2)."""
    return list(range(1, num_features // 2 + 1))


def _pair_mass(num_features: int, small: int, mass: np.ndarray) -> float:
    large = num_features - small
    return float(mass[small] + (mass[large] if large != small else 0.0))


def _pair_count(num_features: int, small: int) -> int:
    """Coalitions in a size pair (both sizes; a self-complementary size counts once)."""
    large = num_features - small
    return comb(num_features, small) * (2 if large != small else 1)


def plan_enumeration(num_features: int, budget: int) -> tuple[list[int], int]:
    """Choose the size pairs to enumerate completely.

    budget: evaluations available for non-anchor coalitions. Returns (the smaller sizes
    of the enumerated pairs, evaluations they use). A pair is enumerated while the budget,
    shared in proportion to the kernel weight still uncovered, pays for all its coalitions.
    """
    mass = size_kernel_mass(num_features)
    remaining_mass = float(mass.sum())
    budget_left = budget
    enumerated: list[int] = []
    for small in _size_pairs(num_features):
        count = _pair_count(num_features, small)
        share = _pair_mass(num_features, small, mass)
        if remaining_mass <= 0 or budget_left * share / remaining_mass < count - 1e-8:
            break
        enumerated.append(small)
        budget_left -= count
        remaining_mass -= share
    return enumerated, budget - budget_left


def enumerate_coalitions(num_features: int, sizes: list[int]) -> np.ndarray:
    """Every coalition whose size is in ``sizes`` or is S minus one of them.

    Returns (M, S) bool, in a fixed order (by size pair, then lexicographic).
    """
    from itertools import combinations

    rows = []
    for small in sizes:
        for members in combinations(range(num_features), small):
            row = np.zeros(num_features, dtype=bool)
            row[list(members)] = True
            rows.append(row)
            if num_features - small != small:
                rows.append(~row)
    if not rows:
        return np.zeros((0, num_features), dtype=bool)
    return np.array(rows)


def _random_subsets(num_features: int, size: int, count: int,
                    rng: np.random.Generator) -> np.ndarray:
    """(count, S) bool, each row a uniform random subset of the given size."""
    keys = rng.random((count, num_features))
    order = np.argsort(keys, axis=1)
    rows = np.zeros((count, num_features), dtype=bool)
    np.put_along_axis(rows, order[:, :size], True, axis=1)
    return rows


def _allocate(total: int, shares: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Split ``total`` items over strata in proportion to ``shares`` (systematic rounding)."""
    if total <= 0 or shares.sum() <= 0:
        return np.zeros(len(shares), dtype=np.int64)
    cumulative = np.concatenate([[0.0], np.cumsum(shares / shares.sum() * total)])
    offset = rng.random()
    edges = np.floor(cumulative + offset)
    edges[0], edges[-1] = np.floor(offset), np.floor(total + offset)
    return np.diff(edges).astype(np.int64)


def solve_constrained_wls(coalitions: np.ndarray, weights: np.ndarray, outputs: np.ndarray,
                          base_values: np.ndarray, full_values: np.ndarray) -> np.ndarray:
    """Weighted least squares of outputs on coalitions with values summing to full - base.

    coalitions: (M, S) bool, weights: (M,) float (> 0), outputs: (M, T), base_values and
    full_values: (T,). Minimises sum_i w_i (y_i - base - z_i . phi)^2 subject to
    sum(phi) = full - base, per output. Returns phi, (T, S) float64.
    """
    design = coalitions.astype(np.float64)
    weighted = design * weights[:, None]
    gram = weighted.T @ design  # (S, S)
    rhs = weighted.T @ (outputs - base_values[None, :])  # (S, T)
    num_features = design.shape[1]
    # A tiny ridge keeps rank-deficient systems (two features never apart, as can happen in
    # a bootstrap resample) at the minimum-norm split instead of an arbitrary one.
    gram = gram + np.eye(num_features) * 1e-10 * max(np.trace(gram) / num_features, 1e-300)
    try:
        solved = np.linalg.solve(gram, np.column_stack([rhs, np.ones(num_features)]))
    except np.linalg.LinAlgError:
        solved = np.linalg.lstsq(gram, np.column_stack([rhs, np.ones(num_features)]),
                                 rcond=None)[0]
    unconstrained, inverse_ones = solved[:, :-1], solved[:, -1]  # (S, T), (S,)
    gap = (full_values - base_values) - unconstrained.sum(axis=0)  # (T,)
    values = unconstrained + np.outer(inverse_ones, gap / inverse_ones.sum())
    return values.T


def _solve_bootstrap(coalitions: np.ndarray, weights: np.ndarray, outputs: np.ndarray,
                     base_values: np.ndarray, full_values: np.ndarray,
                     multipliers: np.ndarray) -> np.ndarray:
    """Re-solve with per-row weight multipliers (B, M). Returns (B, T, S)."""
    return np.stack([
        solve_constrained_wls(coalitions, weights * row, outputs, base_values, full_values)
        for row in multipliers
    ])


def _estimate(coalitions: np.ndarray, weights: np.ndarray, outputs: np.ndarray,
              base_values: np.ndarray, full_values: np.ndarray,
              sampled_multipliers: np.ndarray, num_fixed: int,
              surrogate_rng: np.random.Generator | None) -> tuple[np.ndarray, np.ndarray]:
    """Constrained regression, optional surrogate control variates, bootstrap errors.

    Control variates, per output: surrogates g_k (see choose_surrogates) fitted to all
    evaluated coalitions; phi = KS(f) - sum_k beta_k (KS(g_k) - phi(g_k)) where KS is the
    regression on the same coalitions and weights, phi(g_k) the surrogate's Shapley values
    (exact, or a 100,000-sample estimate; no model calls) and beta the least-squares
    regression of the bootstrap replicates of KS(f) on those of KS(g_k) (near 0 when the
    surrogates do not help: for a pairwise game KS(f) is exact and has no spread). Every
    term sums to the same total, so efficiency holds. Returns values and standard errors,
    both (T, S).
    """
    num_outputs, num_features = outputs.shape[1], coalitions.shape[1]
    num_bootstrap = sampled_multipliers.shape[0]
    multipliers = np.concatenate([np.ones((num_bootstrap, num_fixed)), sampled_multipliers],
                                 axis=1)
    anchors = np.zeros((2, num_features), dtype=bool)
    anchors[1] = True
    surrogates: list[tuple[int, SigmoidSurrogate]] = []  # (output, surrogate)
    if surrogate_rng is not None and num_bootstrap >= 2:
        evaluated = np.concatenate([anchors, coalitions])
        for index in range(num_outputs):
            fitted = np.concatenate([[base_values[index], full_values[index]], outputs[:, index]])
            surrogates += [(index, surrogate)
                           for surrogate in choose_surrogates(evaluated, fitted)]
    if surrogates:
        stacked_outputs = np.column_stack([outputs, *[g(coalitions) for _, g in surrogates]])
        surrogate_anchors = np.column_stack([g(anchors) for _, g in surrogates])
        stacked_base = np.concatenate([base_values, surrogate_anchors[0]])
        stacked_full = np.concatenate([full_values, surrogate_anchors[1]])
    else:
        stacked_outputs, stacked_base, stacked_full = outputs, base_values, full_values
    estimate = solve_constrained_wls(coalitions, weights, stacked_outputs, stacked_base,
                                     stacked_full)  # (T + G, S)
    if num_bootstrap < 2:
        return estimate[:num_outputs], np.zeros_like(estimate[:num_outputs])
    resampled = _solve_bootstrap(coalitions, weights, stacked_outputs, stacked_base,
                                 stacked_full, multipliers)  # (B, T + G, S)
    centred = resampled - resampled.mean(axis=0)
    values = estimate[:num_outputs].copy()
    replicates = resampled[:, :num_outputs].copy()
    corrections = []  # (output, stacked row, beta)
    for index in range(num_outputs):
        rows = [num_outputs + position for position, (owner, _) in enumerate(surrogates)
                if owner == index]
        if not rows:
            continue
        predictors = np.stack([centred[:, row].ravel() for row in rows], axis=1)
        gram = predictors.T @ predictors
        if np.trace(gram) <= 0:
            continue
        betas = np.linalg.solve(gram + 1e-9 * np.trace(gram) * np.eye(len(rows)),
                                predictors.T @ centred[:, index].ravel())
        corrections += [(index, row, beta) for beta, row in zip(np.clip(betas, -2.0, 3.0), rows, strict=True)
                        if abs(beta) >= 1e-12]
    if corrections:
        exact_surrogates = _surrogate_shapley(
            [surrogates[row - num_outputs][1] for _, row, _ in corrections], num_features, surrogate_rng)
        for (index, row, beta), exact_surrogate in zip(corrections, exact_surrogates, strict=True):
            values[index] -= beta * (estimate[row] - exact_surrogate)
            replicates[:, index] -= beta * resampled[:, row]
    return values, replicates.std(axis=0, ddof=1)


class _Sampler:
    """Stratified complementary-pair sampler over the non-enumerated size pairs."""

    def __init__(self, num_features: int, enumerated: list[int], rng: np.random.Generator):
        self.num_features = num_features
        self.rng = rng
        mass = size_kernel_mass(num_features)
        self.mass = mass
        self.strata = [small for small in _size_pairs(num_features) if small not in enumerated]
        self.shares = np.array([_pair_mass(num_features, small, mass) for small in self.strata])
        self.rows: list[np.ndarray] = []  # per drawn pair: the small-size member
        self.stratum_of_pair: list[int] = []

    def draw(self, num_pairs: int) -> np.ndarray:
        """Draw pairs; returns their coalitions (2 * num_pairs, S), pair members adjacent."""
        counts = _allocate(num_pairs, self.shares, self.rng)
        new_rows = []
        for index, (small, count) in enumerate(zip(self.strata, counts, strict=True)):
            if count == 0:
                continue
            subsets = _random_subsets(self.num_features, small, int(count), self.rng)
            new_rows.append(subsets)
            self.stratum_of_pair.extend([index] * int(count))
        if not new_rows:
            return np.zeros((0, self.num_features), dtype=bool)
        subsets = np.concatenate(new_rows)
        self.rows.append(subsets)
        paired = np.empty((2 * len(subsets), self.num_features), dtype=bool)
        paired[0::2], paired[1::2] = subsets, ~subsets
        return paired

    def pair_weights(self) -> np.ndarray:
        """Kernel weight of each sampled coalition, (2 * pairs,), in draw order."""
        strata = np.asarray(self.stratum_of_pair, dtype=np.int64)
        if strata.size == 0:
            return np.zeros(0)
        pairs_per_stratum = np.bincount(strata, minlength=len(self.strata))
        per_pair = self.shares[strata] / pairs_per_stratum[strata]
        # Both members of a pair share the pair's weight: each size's weight / its draws.
        return np.repeat(per_pair / 2.0, 2)

    def bootstrap_multipliers(self, num_bootstrap: int, rng: np.random.Generator) -> np.ndarray:
        """(B, 2 * pairs) resampling counts of each pair, within its stratum."""
        strata = np.asarray(self.stratum_of_pair, dtype=np.int64)
        multipliers = np.zeros((num_bootstrap, strata.size))
        for index in np.unique(strata):
            members = np.flatnonzero(strata == index)
            uniform = np.full(members.size, 1.0 / members.size)
            multipliers[:, members] = rng.multinomial(members.size, uniform, size=num_bootstrap)
        return np.repeat(multipliers, 2, axis=1)


SURROGATE_EXACT_FEATURES = 16  # up to 2**16 surrogate evaluations: exact Shapley values
SURROGATE_SAMPLES = 100_000  # otherwise Kernel SHAP of the (free) surrogate with this budget
SURROGATE_FIT_EVALUATIONS = 60  # Levenberg-Marquardt steps; a rough fit is enough


@dataclass(frozen=True)
class SigmoidSurrogate:
    """A cheap model of one output: g(z) = offset + sum_k scales[k] * sigmoid(indices[k] . [1, z]).

    scales: (K,) float64; indices: (K, S+1) float64 (intercept first). K = 1 or 2.
    """

    offset: float
    scales: np.ndarray
    indices: np.ndarray

    def __call__(self, coalitions: np.ndarray) -> np.ndarray:
        """coalitions: (M, S) bool -> (M,) float64."""
        rows = np.asarray(coalitions, dtype=np.float64)
        logits = self.indices[:, :1].T + rows @ self.indices[:, 1:].T  # (M, K)
        return self.offset + _sigmoid(logits) @ self.scales


def _logit_start(design: np.ndarray, outputs: np.ndarray) -> tuple[float, float, np.ndarray]:
    """(low, span, index) so that low + span * sigmoid(design @ index) roughly fits."""
    low, span = float(outputs.min()), float(outputs.max() - outputs.min())
    scaled = np.clip((outputs - low) / max(span, 1e-12), 0.02, 0.98)
    index = np.linalg.lstsq(design, np.log(scaled / (1.0 - scaled)), rcond=None)[0]
    return low, span, index


def fit_sigmoid_surrogate(coalitions: np.ndarray, outputs: np.ndarray, num_indices: int = 1,
                          start: SigmoidSurrogate | None = None) -> SigmoidSurrogate | None:
    """Least-squares fit of a one- or two-index sigmoid surrogate to one output.

    coalitions: (M, S) bool, outputs: (M,) float. A two-index fit starts from ``start`` (a
    one-index fit) plus a second index fitted to its residuals. Returns None when the
    outputs are constant or additive (Kernel SHAP is exact then), too few for the
    parameters, or the fit fails.
    """
    from scipy.optimize import least_squares

    num_rows, num_features = coalitions.shape
    width = num_features + 1
    span = float(outputs.max() - outputs.min())
    if span <= 1e-12 * max(float(np.abs(outputs).max()), 1.0):
        return None
    if num_rows < 2 * (num_indices * (width + 1) + 1):
        return None
    design = np.column_stack([np.ones(num_rows), coalitions.astype(np.float64)])
    if num_indices == 1:
        linear_residual = outputs - design @ np.linalg.lstsq(design, outputs, rcond=None)[0]
        if linear_residual.std() <= 1e-9 * outputs.std():
            return None
        low, span, index = _logit_start(design, outputs)
        initial = np.concatenate([[low, span], index])
    else:
        start = start if start is not None else fit_sigmoid_surrogate(coalitions, outputs, 1)
        if start is None:
            return None
        low, span, index = _logit_start(design, outputs - start(coalitions))
        initial = np.concatenate([[start.offset + low], start.scales, [span],
                                  start.indices.ravel(), index])

    def unpack(params):
        scales = params[1:1 + num_indices]
        indices = params[1 + num_indices:].reshape(num_indices, width)
        return params[0], scales, indices

    def residuals(params):
        offset, scales, indices = unpack(params)
        return offset + _sigmoid(design @ indices.T) @ scales - outputs

    def jacobian(params):
        _, scales, indices = unpack(params)
        gates = _sigmoid(design @ indices.T)  # (M, K)
        slopes = gates * (1.0 - gates) * scales  # (M, K)
        blocks = [design * slopes[:, [k]] for k in range(num_indices)]
        return np.column_stack([np.ones(num_rows), gates, *blocks])

    try:
        params = least_squares(residuals, initial, jac=jacobian, method="lm",
                               max_nfev=SURROGATE_FIT_EVALUATIONS).x
    except (ValueError, np.linalg.LinAlgError):
        return None
    if not np.all(np.isfinite(params)):
        return None
    offset, scales, indices = unpack(params)
    return SigmoidSurrogate(float(offset), scales.copy(), indices.copy())


def choose_surrogates(coalitions: np.ndarray, outputs: np.ndarray) -> list[SigmoidSurrogate]:
    """Control-variate surrogates of one output: the one-index fit, plus the two-index fit
    when 2-fold cross-validation (folds of whole complementary pairs) shows it predicts
    held-out coalitions clearly better (mean squared error below 0.8 times).

    coalitions: (M, S) bool, outputs: (M,). Returns 0, 1 or 2 surrogates.
    """
    single = fit_sigmoid_surrogate(coalitions, outputs, 1)
    if single is None:
        return []
    double = fit_sigmoid_surrogate(coalitions, outputs, 2, start=single)
    if double is None:
        return [single]
    in_first_fold = (np.arange(len(outputs)) // 2) % 2 == 0
    held_out_error = np.zeros(2)
    for train in (in_first_fold, ~in_first_fold):
        test = ~train
        fold_single = fit_sigmoid_surrogate(coalitions[train], outputs[train], 1)
        fold_double = (fit_sigmoid_surrogate(coalitions[train], outputs[train], 2,
                                             start=fold_single)
                       if fold_single is not None else None)
        if fold_double is None:
            return [single]
        held_out_error += [np.mean((fold_single(coalitions[test]) - outputs[test]) ** 2),
                           np.mean((fold_double(coalitions[test]) - outputs[test]) ** 2)]
    return [single, double] if held_out_error[1] < 0.8 * held_out_error[0] else [single]


def _sigmoid(logits: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * logits))


def _surrogate_shapley(surrogates: list[Callable[[np.ndarray], np.ndarray]], num_features: int,
                       rng: np.random.Generator) -> np.ndarray:
    """Shapley values of cheap surrogates, (G, S): exact up to 16 features, else one large
    estimate whose coalitions all G surrogates share (one draw, one regression)."""
    def game(rows):
        return np.column_stack([surrogate(rows) for surrogate in surrogates])

    if num_features <= SURROGATE_EXACT_FEATURES:
        return exact_shapley_values(game, num_features)
    return kernel_shap(game, num_features, SURROGATE_SAMPLES, rng, num_bootstrap=0,
                       control_variate=False).values


def kernel_shap(evaluate: Callable[[np.ndarray], np.ndarray], num_features: int,
                num_samples: int, rng: np.random.Generator, target_error: float | None = None,
                num_bootstrap: int = NUM_BOOTSTRAP, control_variate: bool = True) -> ShapResult:
    """Estimate Shapley values of T outputs over S binary features.

    evaluate: callable taking coalitions (M, S) bool and returning outputs (M, T) float
    (called a few times; the union of calls is deterministic for a seeded ``rng``).
    num_samples: evaluation budget including the empty and full coalitions.
    Returns a ShapResult; values sum to f(full) - f(empty) exactly for every output.
    """
    if num_features < 1:
        raise ValueError(f"num_features must be >= 1, got {num_features}")
    bootstrap_rng = np.random.default_rng(rng.integers(0, 2**63))
    surrogate_rng = np.random.default_rng(rng.integers(0, 2**63))
    anchors = np.zeros((2, num_features), dtype=bool)
    anchors[1] = True
    anchor_outputs = np.asarray(evaluate(anchors), dtype=np.float64)
    base_values, full_values = anchor_outputs[0], anchor_outputs[1]
    num_outputs = base_values.shape[0]
    if num_features == 1:
        values = (full_values - base_values)[:, None]
        return ShapResult(values, np.zeros_like(values), base_values, full_values, 2, True, True)

    budget = max(num_samples - 2, 0)
    enumerated, used = plan_enumeration(num_features, budget)
    enumerated_rows = enumerate_coalitions(num_features, enumerated)
    mass = size_kernel_mass(num_features)
    sizes = enumerated_rows.sum(axis=1)
    enumerated_weights = np.array(
        [mass[k] / comb(num_features, int(k)) for k in sizes], dtype=np.float64)
    enumerated_outputs = (np.asarray(evaluate(enumerated_rows), dtype=np.float64)
                          if len(enumerated_rows) else np.zeros((0, num_outputs)))
    sampler = _Sampler(num_features, enumerated, rng)
    exact = not sampler.strata
    total_pairs = 0 if exact else (budget - used) // 2
    if exact or total_pairs == 0:
        values = solve_constrained_wls(enumerated_rows, enumerated_weights, enumerated_outputs,
                                       base_values, full_values)
        return ShapResult(values, np.zeros_like(values), base_values, full_values,
                          2 + len(enumerated_rows), exact, exact)

    if target_error is None:
        round_sizes = [total_pairs]
    else:
        step = max(num_features, int(np.ceil(total_pairs * _ROUND_FRACTION)))
        round_sizes = [min(step, total_pairs - start) for start in range(0, total_pairs, step)]
    sampled_rows, sampled_outputs = [], []
    converged = False
    for round_pairs in round_sizes:
        rows = sampler.draw(round_pairs)
        sampled_rows.append(rows)
        sampled_outputs.append(np.asarray(evaluate(rows), dtype=np.float64))
        coalitions = np.concatenate([enumerated_rows, *sampled_rows])
        outputs = np.concatenate([enumerated_outputs, *sampled_outputs])
        weights = np.concatenate([enumerated_weights, sampler.pair_weights()])
        values, standard_errors = _estimate(
            coalitions, weights, outputs, base_values, full_values,
            sampler.bootstrap_multipliers(num_bootstrap, bootstrap_rng), len(enumerated_rows),
            surrogate_rng if control_variate else None)
        if target_error is not None:
            spread = values.max(axis=1) - values.min(axis=1)
            converged = bool(np.all(standard_errors <= target_error * spread[:, None]))
            logger.debug("kernel shap round: %d evaluations, converged=%s",
                         2 + len(coalitions), converged)
            if converged:
                break
    return ShapResult(values, standard_errors, base_values, full_values, 2 + len(coalitions),
                      False, converged)


def exact_shapley_values(evaluate: Callable[[np.ndarray], np.ndarray],
                         num_features: int) -> np.ndarray:
    """Shapley values by full enumeration of the 2**S coalitions (reference, S <= ~20).

    evaluate: coalitions (M, S) bool -> outputs (M, T). Returns (T, S) float64.
    """
    from math import factorial

    codes = np.arange(2**num_features, dtype=np.int64)
    bits = ((codes[:, None] >> np.arange(num_features)) & 1).astype(bool)  # (2^S, S)
    outputs = np.asarray(evaluate(bits), dtype=np.float64)  # (2^S, T)
    sizes = bits.sum(axis=1)
    weight_of_size = np.array([
        factorial(k) * factorial(num_features - k - 1) / factorial(num_features)
        for k in range(num_features)])
    values = np.zeros((outputs.shape[1], num_features))
    for feature in range(num_features):
        without = codes[~bits[:, feature]]
        with_feature = without | (1 << feature)
        marginal = outputs[with_feature] - outputs[without]  # (2^(S-1), T)
        values[:, feature] = weight_of_size[sizes[without]] @ marginal
    return values
