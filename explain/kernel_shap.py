"""Shapley values of T outputs over S binary features from a budget of model calls.

The public entry point, ``kernel_shap(evaluate, num_features, num_samples, rng,
target_error)``, combines (measurements: BENCHMARKS.md, estimator accuracy):

* the two anchors f(empty) and f(full), then the complementary size pairs that the budget
  covers enumerated completely (shap's KernelExplainer rule), then complementary pairs
  sampled without replacement with the same number of coalitions per size, each the most
  balancing of a few random candidates (the pairs' feature co-occurrence kept close to its
  expectation; ``explain.coalitions``);
* the paired regression with the efficiency constraint, with coalition-size indicators (left
  out when the pairs are too few for them and the fit predicts better without) and
  odd higher-order parity terms, kept when the closed-form leave-one-pair-out error says
  they predict better (``explain.shap_regression``): a regression adjustment whose
  surrogate's Shapley values are exact and which is fitted in the regression itself, so no
  call is spent on fitting and additive and pairwise games stay exact;
* for every output the regression does not fit exactly, a second regression adjustment by
  boosted trees fitted on the evaluated coalitions (``explain.tree_surrogate``), cross-fitted
  over five folds of the sampled pairs, with exact Shapley values by the leaf formula; its
  weight is the variance-minimising one estimated from the pairs, clipped to [0, 1]
  (``explain.shap_regression.adjust_with_surrogate``): piecewise games such as max/min
  and saturating model outputs, which no small parity basis fits, gain most. What the trees
  leave is fitted with the chosen terms and with the singletons alone, and the two mixed to
  give the values the least sandwich variance (parities chosen for the game can fit the trees'
  leftovers worse than none);
* then a positive-part James-Stein shrinkage of those values towards the trees' own exact
  values, by how far apart the two are against the values' estimated noise
  (``explain.shap_regression.shrink_towards_surrogate``): trees that follow the game pull
  the values to theirs, trees that do not are left out; the sum stays exact;
* sandwich standard errors (HC3 residuals, finite-population corrections per size; the
  trees' cross-fitted part, each fold's pairs corrected by the fold's own sampling fraction,
  which keeps the intervals honest near full enumeration); where the values were shrunk
  towards the trees, the trees' own error enters too (the spread of the five fold forests'
  values and the part of the gap to them that noise does not explain).

What the literature offered, and what was taken (read for issue 12):

* Kernel SHAP (Lundberg & Lee 2017) with paired sampling (Covert & Lee 2021): with a pair
  (z, 1 - z) the even Fourier orders cancel, so paired Kernel SHAP is exact up to pairwise
  interactions and its error comes from odd orders >= 3. Kept: pairing, stratification.
* Leverage SHAP (Musco & Witter, ICLR 2025): the regression's leverage scores give every
  coalition size the same sampling mass; sampling without replacement; the projected
  solution of the constrained problem. Taken: the allocation and sampling without
  replacement (measured slightly better than kernel-proportional allocation here).
* Regression MSR (Witter, Liu & Musco, NeurIPS 2025): any surrogate whose Shapley values are
  exact (linear, XGBoost trees) corrects an unbiased maximum-sample-reuse estimate. Taken as
  a principle: the surrogate here is a sum of parities, fitted inside the constrained
  regression, so the adjustment is exact for the parts the surrogate captures and consistent
  whatever it misses (the residual is kernel-orthogonal to the singletons). A cross-fitted
  regression tree tried as an extra column did not lower the error on the benchmark.
* The authors' newer code (github.com/rtealwitter/leverageshap, estimators/new.py) adds odd
  third-order Fourier terms to Leverage SHAP's regression, chosen by LASSO or by the leading
  features; here triples are screened by their correlation with the singleton fit's residual
  and the basis is chosen by leave-one-out error.
* Olsen & Jullum 2024 ("Improving the weighting strategy in KernelSHAP"): deterministic
  weights instead of sampling frequencies. Here every sampled pair weighs its stratum's
  kernel mass over the pairs drawn from it, which is deterministic given the counts.
* Kernel herding (Chen, Welling & Smola 2010), used for Shapley sampling by Mitchell et al.
  (JMLR 2022, "Sampling Permutations for Shapley Value Estimation": herded permutations beat
  independent ones): taken in its simplest form, greedy selection among random candidates
  to match the second moments of each stratum (``explain.coalitions``).
* James & Stein (1961): shrinking a vector estimate (here the S values) towards a guess
  (the trees' exact values) lowers its total squared error for S >= 3 whatever the guess,
  by more when the guess is good; positive-part, with the data-estimated noise.
* shap's KernelExplainer samples with replacement and merges repeats; its
  PermutationExplainer runs antithetic permutations. Both are peers in bench/.

Kept from the previous estimator (bench/kernel_shap_old.py): exact for additive games, exact
when every coalition fits in the budget, values summing to f(full) - f(empty) exactly, one
set of coalitions shared by all T outputs, results independent of how ``evaluate`` batches,
and the ``target_error`` early stop (pairs drawn in rounds until every standard error is
below target_error times the spread of that output's values).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from math import factorial

import numpy as np

from .coalitions import (
    PairSampler,
    enumerate_coalitions,
    plan_enumeration,
    size_kernel_mass,
    stratum_mass,
    stratum_pairs,
)
from .shap_regression import (
    MIN_SPARE_PAIRS,
    PairedDesign,
    RegressionFit,
    adjust_with_surrogate,
    choose_terms,
    combine_fits,
    scarce_pairs,
    shrink_towards_surrogate,
    singletons,
    solve_constrained_wls,
)
from .tree_surrogate import FOLDS as SURROGATE_FOLDS
from .tree_surrogate import Surrogate, cross_fitted_surrogates

__all__ = [
    "ShapResult",
    "determining_samples",
    "samples_with_errors",
    "small_sample_errors",
    "small_sample_factor",
    "kernel_shap",
    "meets_target_error",
    "exact_shapley_values",
    "size_kernel_mass",
    "plan_enumeration",
    "enumerate_coalitions",
    "solve_constrained_wls",
]

logger = logging.getLogger(__name__)

_ROUND_FRACTION = 0.2  # share of the sampled pairs drawn per round when target_error is set
_EXACT_FIT = 1e-12  # leave-one-out error below this share of mean (d/2)^2: the fit is exact
_MIN_PAIRS_PER_FOLD = 2  # fewer sampled pairs per cross-fitting fold: no surrogate


@dataclass(frozen=True)
class ShapResult:
    """Shapley value estimates for T outputs over S features.

    values: (T, S) float64; standard_errors: (T, S) float64 (0 when exact, NaN when the
    calls were too few to determine the values); base_values: (T,) f(empty); full_values: (T,) f(full); num_evaluations: coalitions
    evaluated (anchors included); exact: every coalition was evaluated (the values are the
    exact Shapley values); converged: True when target_error was met or the values are exact;
    terms: per output, the number of regression terms used (S = plain paired Kernel SHAP);
    fit_errors: (T, S) the fit's own standard errors before ``small_sample_errors`` widens them
    (finite from 2S + 2 calls; None: as standard_errors): what refinement ranks segments by,
    a scale, not a promise of coverage.
    """

    values: np.ndarray
    standard_errors: np.ndarray
    base_values: np.ndarray
    full_values: np.ndarray
    num_evaluations: int
    exact: bool
    converged: bool
    terms: tuple[int, ...] = ()
    fit_errors: np.ndarray | None = None


def _paired_design(num_features: int, enumerated: list[int], enumerated_rows: np.ndarray,
                   enumerated_outputs: np.ndarray, sampled_rows: np.ndarray,
                   sampled_outputs: np.ndarray) -> PairedDesign:
    """Stack enumerated and sampled pairs (members adjacent in the row arrays) as regression rows."""
    rows = np.concatenate([enumerated_rows[0::2], sampled_rows[0::2]])
    first = np.concatenate([enumerated_outputs[0::2], sampled_outputs[0::2]])
    second = np.concatenate([enumerated_outputs[1::2], sampled_outputs[1::2]])
    halves = 0.5 * (first - second)
    sizes = rows.sum(axis=1)
    smaller = np.minimum(sizes, num_features - sizes)
    strata_sizes = list(range(1, num_features // 2 + 1))
    strata = (smaller - 1).astype(np.int64)  # stratum of pairs whose smaller member has k features: k - 1
    population = np.array([stratum_pairs(num_features, small) for small in strata_sizes], dtype=np.int64)
    sampled = np.array([small not in enumerated for small in strata_sizes])
    used = np.bincount(strata, minlength=len(strata_sizes))
    masses = np.array([stratum_mass(num_features, small) for small in strata_sizes])
    weights = masses[strata] / used[strata]
    evens = 0.5 * (first + second)
    # cross-fitting folds: round robin within each stratum, in the order the pairs were drawn
    folds = np.full(len(rows), -1, dtype=np.int64)
    first_sampled = len(enumerated_rows) // 2
    sampled_strata = strata[first_sampled:]
    for stratum in np.unique(sampled_strata):
        members = first_sampled + np.flatnonzero(sampled_strata == stratum)
        folds[members] = np.arange(len(members)) % SURROGATE_FOLDS
    return PairedDesign(2.0 * rows - 1.0, halves, weights, strata, population, sampled, evens, folds)


def _estimate(paired: PairedDesign, base_values: np.ndarray, full_values: np.ndarray,
              tree_surrogate: bool = True, shrinkage: bool = True
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray, tuple[int, ...]]:
    """Per output, the regression with the chosen terms, adjusted by a tree surrogate where
    it is not exact (unless ``tree_surrogate`` is False) and shrunk towards the trees' values
    (unless ``shrinkage`` is False). Returns values, standard errors as reported
    (``small_sample_errors``) and the fits' own, (T, S) each, and the number of terms per output."""
    chosen = [choose_terms(paired, paired.halves[:, output],
                           0.5 * float(full_values[output] - base_values[output]))
              for output in range(len(base_values))]
    fits = [fit for fit, _ in chosen]
    # Outputs the regression fits exactly (additive, pairwise, a few interacting features)
    # keep their fit; the others get a cross-fitted tree surrogate's adjustment.
    inexact = [output for output, fit in enumerate(fits)
               if fit.loo_error > _EXACT_FIT * float(np.mean(paired.halves[:, output]**2))]
    if (tree_surrogate and inexact
            and np.count_nonzero(paired.folds >= 0) >= _MIN_PAIRS_PER_FOLD * SURROGATE_FOLDS):
        surrogates = cross_fitted_surrogates(paired, base_values, full_values, inexact)
        for output, surrogate in zip(inexact, surrogates):
            fit = _adjusted_by_trees(paired, output, *chosen[output], surrogate,
                                     0.5 * float(full_values[output] - base_values[output]))
            if not shrinkage:
                fits[output] = fit
                continue
            values, errors, _ = shrink_towards_surrogate(
                fit.values, fit.standard_errors, surrogate.values, surrogate.value_variance)
            fits[output] = replace(fit, values=values, standard_errors=errors)
    values = np.stack([fit.values for fit in fits])
    errors = np.stack([small_sample_errors(paired, fit) for fit in fits])
    # The constraint holds up to rounding in the solve (1e-8 relative for a nearly singular
    # system, S = 64 at 500 samples); spread that rounding so the sum is exact.
    gap = (full_values - base_values) - values.sum(axis=1)
    values += (gap / values.shape[1])[:, None]
    return values, errors, np.stack([fit.standard_errors for fit in fits]), tuple(len(fit.terms) for fit in fits)


def _adjusted_by_trees(paired: PairedDesign, output: int, fit: RegressionFit, linear: RegressionFit,
                       surrogate: Surrogate, total: float) -> RegressionFit:
    """``fit`` of one output adjusted by its tree surrogate, mixed with the singleton fit so adjusted
    (``combine_fits``: the mix whose values have the least summed sandwich variance).

    ``choose_terms`` picks the terms that predict d/2 best; after the trees, what is left is
    d/2 - beta m, and parities that helped on d/2 can add more noise to the values than they
    remove from it. On an outside check's max and min games (review 39, S = 11..14, 1000 calls)
    the screened triples, fitted to what the trees leave, made the values' mean squared error 20 to
    90 times the singleton fit's, half of it or more a bias that the trees shared, and the
    intervals covered 0.72-0.77. The sandwich sees it (its variance 7 to 25 times the singletons'
    there); where the richer terms do fit the rest (third-order games) theirs is the smaller.
    Where the trees get no weight in either fit, ``fit`` is kept as it is.
    linear: the singleton fit ``fit`` was chosen against (``choose_terms``' second result);
    total: (f(full) - f(empty)) / 2 of the output.
    """
    targets = paired.halves[:, output]

    def adjusted(candidate: RegressionFit) -> RegressionFit:
        return adjust_with_surrogate(paired, targets, total, candidate, surrogate.halves, surrogate.total,
                                     surrogate.values, surrogate.mean_halves)

    chosen = adjusted(fit)
    if fit is linear or fit.terms == singletons(paired.signs.shape[1]):
        return chosen
    single = adjusted(linear)
    if chosen.surrogate_weight == 0.0 and single.surrogate_weight == 0.0:  # the trees follow nothing
        return fit
    return combine_fits(chosen, single)


def small_sample_errors(paired: PairedDesign, fit: RegressionFit) -> np.ndarray:
    """``fit``'s standard errors (S,) as reported: with scarce pairs widened by ``small_sample_factor``
    and none below the output's median (pooled: one value's own sandwich rests on the few pairs that
    move it, and a fit through them left one at 0.0006 with an error of 0.13)."""
    factor = small_sample_factor(paired, fit)
    errors = fit.standard_errors * factor
    if factor != 1.0 and np.isfinite(factor):
        errors = np.maximum(errors, np.median(errors))
    return errors


def small_sample_factor(paired: PairedDesign, fit: RegressionFit) -> float:
    """How much wider than ``fit``'s sandwich standard errors intervals must be with few pairs to spare.

    The sandwich estimates the values' variance from the residuals of the sampled pairs, and a
    fit with about as many terms as pairs passes close to all of them: at 2S + 2 calls its
    residuals said almost nothing and the intervals covered 2 of 10 exact values (an outside
    check, review 21). As for a regression's coefficients, the 97.5% quantile of Student's t
    with the residual degrees of freedom, the sampled pairs' summed 1 - leverage, replaces
    the normal's 1.96 while the pairs are scarce (``scarce_pairs``: fewer than 2 per column of the
    singleton fit, about 6S calls): ×2.2 with 2 to spare, ×1.42 with 4, ×1.14 with 10; with fewer than
    MIN_SPARE_PAIRS (about 2S + 4 calls and fewer for S segments) NaN: the errors are unknown
    (covered 0.31–0.70 of the exact values at 2S + 2 calls even ×6.5, on dev games). NaN too,
    at any budget, for a fit the pairs do not determine (``RegressionFit.determined``).
    """
    if not fit.determined:  # the pairs left some direction unmeasured: its sandwich says nothing
        return float("nan")
    if fit._linear is None or not scarce_pairs(paired):
        # no sandwich; or pairs enough (2 per column), where the HC3 sandwich already overstates the variance
        # (BENCHMARKS.md) and t's few per cent would widen the intervals further
        return 1.0
    if not paired.sampled[paired.strata].any():  # enumerated strata only: no sampling error to scale
        return 1.0
    spare = fit.spare
    if spare < MIN_SPARE_PAIRS:  # too little left over to estimate the error from: unknown
        return float("nan")
    from scipy.special import ndtri, stdtrit  # (scipy.stats would take a second to import)

    return float(stdtrit(spare, 0.975) / ndtri(0.975))


def samples_with_errors(num_features: int) -> int:
    """The fewest model calls whose standard errors are usually known: 2S + 4 (one pair more than
    ``determining_samples``, MIN_SPARE_PAIRS to spare when the fit keeps the singletons alone), or 2**S."""
    return min(2 * num_features + 4, 2**min(num_features, 62))


def determining_samples(num_features: int) -> int:
    """The fewest model calls that determine ``num_features`` Shapley values: 2S + 2, or 2**S when fewer.

    Below it ``kernel_shap`` returns the minimum-norm fit with unknown (NaN) standard errors.
    """
    return min(2 * num_features + 2, 2**min(num_features, 62))


def kernel_shap(evaluate: Callable[[np.ndarray], np.ndarray], num_features: int,
                num_samples: int, rng: np.random.Generator,
                target_error: float | None = None, *, tree_surrogate: bool = True,
                balanced_draws: bool = True, shrinkage: bool = True, more_samples: int = 0,
                spend_more: Callable[[ShapResult], bool] | None = None,
                warn_underdetermined: bool = True) -> ShapResult:
    """Estimate Shapley values of T outputs over S binary features.

    evaluate: callable taking coalitions (M, S) bool and returning outputs (M, T) float
    (called a few times; the union of calls is deterministic for a seeded ``rng``).
    num_samples: evaluation budget including the empty and full coalitions (an odd
    leftover evaluation is not spent: sampled coalitions come in pairs). Fewer than 2S + 2
    (and fewer than 2**S) cannot determine the S values: the result is then the
    minimum-norm fit, with a logged warning, NaN standard errors and converged False.
    Raises ValueError when evaluate's outputs are not (M, T), T >= 1, or not all finite.
    target_error: stop early once every standard error is below target_error times the
    spread (max - min) of that output's values; None spends the whole budget.
    tree_surrogate: False leaves out the tree surrogate's adjustment (the parity regression
    alone, for comparisons; it costs about half the CPU time and no model calls).
    balanced_draws, shrinkage: False draws the pairs uniformly / leaves the values unshrunk
    (the parts measured one at a time in bench_estimator; the defaults are the estimator).
    more_samples, spend_more: when the values are determined and not exact and
    ``spend_more(result)`` is True for the result of num_samples, up to more_samples further
    calls are drawn (pairs, in the same strata) and the values estimated again from all of them;
    otherwise the result is what num_samples alone gives (the explainer's coarse fit: the
    calls refinement would spend go to the coarse values when none of them is worth splitting).
    warn_underdetermined: False leaves the warning about too few calls to the caller (the
    explainer gives one naming the image).
    Raises ValueError for a num_features, num_samples or target_error out of range and
    TypeError for an rng that is not a ``numpy.random.Generator`` (a seed: ``default_rng(seed)``).
    Returns a ShapResult; values sum to f(full) - f(empty) exactly for every output.
    """
    if isinstance(num_features, bool) or not isinstance(num_features, (int, np.integer)) or num_features < 1:
        raise ValueError(f"num_features must be an integer >= 1, got {num_features!r}")
    num_features = int(num_features)
    if isinstance(num_samples, bool) or not isinstance(num_samples, (int, np.integer)) or num_samples < 0:
        raise ValueError(f"num_samples must be an integer >= 0, got {num_samples!r}")
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a numpy.random.Generator (np.random.default_rng(seed)), got "
                        f"{type(rng).__name__}")
    if target_error is not None and (isinstance(target_error, bool) or not isinstance(
            target_error, (int, float, np.integer, np.floating)) or not 0 < target_error <= 1):
        raise ValueError(f"target_error must be None or a number in (0, 1], got {target_error!r}")
    anchors = np.zeros((2, num_features), dtype=bool)
    anchors[1] = True
    anchor_outputs = _outputs(evaluate, anchors)
    base_values, full_values = anchor_outputs[0], anchor_outputs[1]
    num_outputs = base_values.shape[0]
    if num_features == 1:
        values = (full_values - base_values)[:, None]
        return ShapResult(values, np.zeros_like(values), base_values, full_values, 2, True, True,
                          (1,) * num_outputs)

    underdetermined = num_samples < determining_samples(num_features)
    if underdetermined and warn_underdetermined:
        needed = determining_samples(num_features)
        logger.warning("%d model calls cannot determine %d Shapley values (Kernel SHAP needs at least %s = %d): "
                       "the values are the minimum-norm fit and their standard errors are unknown (NaN); raise "
                       "num_samples or use fewer segments", num_samples, num_features,
                       f"2 x {num_features} + 2" if needed == 2 * num_features + 2 else f"2**{num_features}",
                       needed)
    budget = max(num_samples - 2, 0)
    enumerated, used = plan_enumeration(num_features, budget)
    enumerated_rows = enumerate_coalitions(num_features, enumerated)
    enumerated_outputs = (_outputs(evaluate, enumerated_rows, num_outputs)
                          if len(enumerated_rows) else np.zeros((0, num_outputs)))
    sampler = PairSampler(num_features, enumerated, rng, balanced=balanced_draws)
    exact = not sampler.strata
    total_pairs = min((budget - used) // 2, sampler.capacity())
    no_rows = np.zeros((0, num_features), dtype=bool)
    if exact or total_pairs == 0:
        paired = _paired_design(num_features, enumerated, enumerated_rows, enumerated_outputs,
                                no_rows, np.zeros((0, num_outputs)))
        if exact or len(paired.weights) == 0:
            values = _fallback(num_features, enumerated_rows, enumerated_outputs, base_values,
                               full_values)
            return _unknown_errors_if(not exact and underdetermined, ShapResult(
                values, np.zeros_like(values), base_values, full_values, 2 + len(enumerated_rows),
                exact, exact, (num_features,) * num_outputs))
        values, errors, fit_errors, terms = _estimate(paired, base_values, full_values, tree_surrogate,
                                                      shrinkage)
        return _unknown_errors_if(underdetermined, ShapResult(
            values, errors, base_values, full_values, 2 + len(enumerated_rows), False, False, terms,
            fit_errors))

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
        sampled_outputs.append(_outputs(evaluate, rows, num_outputs) if len(rows)
                               else np.zeros((0, num_outputs)))
        paired = _paired_design(num_features, enumerated, enumerated_rows, enumerated_outputs,
                                np.concatenate(sampled_rows), np.concatenate(sampled_outputs))
        values, standard_errors, fit_errors, terms = _estimate(paired, base_values, full_values,
                                                               tree_surrogate, shrinkage)
        if target_error is not None and not underdetermined:
            converged = _converged(values, standard_errors, target_error)
            logger.debug("kernel shap round: %d evaluations, converged=%s",
                         2 + 2 * len(paired.weights), converged)
            if converged:
                break
    result = _unknown_errors_if(underdetermined, ShapResult(
        values, standard_errors, base_values, full_values,
        2 + len(enumerated_rows) + sum(len(rows) for rows in sampled_rows), False, converged, terms,
        fit_errors))
    more_pairs = min(max(more_samples, 0) // 2, sampler.capacity())
    if spend_more is None or more_pairs == 0 or underdetermined or not spend_more(result):
        return result
    rows = sampler.draw(more_pairs)
    sampled_rows.append(rows)
    sampled_outputs.append(_outputs(evaluate, rows, num_outputs))
    paired = _paired_design(num_features, enumerated, enumerated_rows, enumerated_outputs,
                            np.concatenate(sampled_rows), np.concatenate(sampled_outputs))
    values, standard_errors, fit_errors, terms = _estimate(paired, base_values, full_values,
                                                           tree_surrogate, shrinkage)
    converged = target_error is not None and _converged(values, standard_errors, target_error)
    return ShapResult(values, standard_errors, base_values, full_values,
                      result.num_evaluations + len(rows), False, converged, terms, fit_errors)


def meets_target_error(values: np.ndarray, standard_errors: np.ndarray, target_error: float) -> np.ndarray:
    """Per output, whether every standard error is below target_error times the spread (max - min) of that
    output's values: values, standard_errors (T, S); returns (T,) bool (False where an error is unknown, NaN)."""
    spread = values.max(axis=1) - values.min(axis=1)
    return np.all(standard_errors <= target_error * spread[:, None], axis=1)


def _converged(values: np.ndarray, standard_errors: np.ndarray, target_error: float) -> bool:
    """Whether every output meets target_error (``meets_target_error``)."""
    return bool(meets_target_error(values, standard_errors, target_error).all())


def _unknown_errors_if(underdetermined: bool, result: ShapResult) -> ShapResult:
    """The result with NaN standard errors and converged False when the calls could not
    determine the values (the sandwich of a fit that passes through its few pairs is ~0,
    and would read as certainty)."""
    if not underdetermined:
        return result
    unknown = np.full_like(result.values, np.nan)
    return replace(result, standard_errors=unknown, fit_errors=unknown, converged=False)


def _outputs(evaluate: Callable[[np.ndarray], np.ndarray], coalitions: np.ndarray,
             num_outputs: int | None = None) -> np.ndarray:
    """evaluate(coalitions) as (M, T) float64, checked: one row per coalition, T >= 1 outputs
    (num_outputs when given: as many as before) and every output finite."""
    outputs = np.asarray(evaluate(coalitions))
    if outputs.dtype.kind == "c":  # float64 would keep the real part with a ComplexWarning
        raise ValueError(f"evaluate must return real numbers, got dtype {outputs.dtype} for "
                         f"{len(coalitions)} coalitions")
    outputs = outputs.astype(np.float64, copy=False)  # numbers as Python objects (Fraction, Decimal) too
    expected = "(M, T)" if num_outputs is None else f"(M, {num_outputs})"
    if outputs.ndim != 2 or outputs.shape[0] != len(coalitions) or outputs.shape[1] < 1 or (
            num_outputs is not None and outputs.shape[1] != num_outputs):
        raise ValueError(f"evaluate must return {expected} outputs, T >= 1, for M = {len(coalitions)} "
                         f"coalitions; it returned shape {outputs.shape}")
    bad = ~np.isfinite(outputs)
    if bad.any():
        raise ValueError(f"evaluate returned {int(bad.sum())} non-finite outputs (NaN or inf) for "
                         f"{int(bad.any(axis=1).sum())} of {len(coalitions)} coalitions: Shapley values "
                         f"cannot be estimated from them")
    return outputs


def _fallback(num_features: int, rows: np.ndarray, outputs: np.ndarray, base_values: np.ndarray,
              full_values: np.ndarray) -> np.ndarray:
    """Values from the enumerated pairs alone (all of them: exact, by the Shapley formula, not the
    regression, whose ridge is off by about 1e-10), or the equal split of f(full) - f(empty) when
    nothing but the anchors was evaluated. Returns (T, S)."""
    if len(rows) == 0:
        return np.repeat(((full_values - base_values) / num_features)[:, None], num_features, axis=1)
    if len(rows) + 2 == 2**num_features:  # every coalition: the anchors and all of the rest
        table = np.empty((2**num_features, outputs.shape[1]))  # row c: coalition c's outputs
        table[0], table[-1] = base_values, full_values
        table[rows.astype(np.int64) @ (np.int64(1) << np.arange(num_features, dtype=np.int64))] = outputs
        values = _shapley_formula(table)
        return values + (((full_values - base_values) - values.sum(axis=1)) / num_features)[:, None]
    sizes = rows.sum(axis=1)
    mass = size_kernel_mass(num_features)
    from math import comb

    weights = np.array([mass[k] / comb(num_features, int(k)) for k in sizes])
    return solve_constrained_wls(rows, weights, outputs, base_values, full_values)


def exact_shapley_values(evaluate: Callable[[np.ndarray], np.ndarray],
                         num_features: int) -> np.ndarray:
    """Shapley values by full enumeration of the 2**S coalitions (reference, S <= ~20).

    evaluate: coalitions (M, S) bool -> outputs (M, T). Returns (T, S) float64.
    """
    if isinstance(num_features, bool) or not isinstance(num_features, (int, np.integer)) or not 1 <= num_features <= 30:
        raise ValueError(f"num_features must be an integer in [1, 30] (2**S model calls), got {num_features!r}")
    codes = np.arange(2**num_features, dtype=np.int64)
    bits = ((codes[:, None] >> np.arange(num_features)) & 1).astype(bool)  # (2^S, S)
    return _shapley_formula(_outputs(evaluate, bits))


def _shapley_formula(outputs: np.ndarray) -> np.ndarray:
    """Shapley values from every coalition's outputs, by the weighted marginal contributions.

    outputs: (2^S, T), row c the outputs of the coalition whose bit i is feature i. Returns (T, S).
    """
    num_features = int(outputs.shape[0]).bit_length() - 1
    codes = np.arange(2**num_features, dtype=np.int64)
    sizes = sum((codes >> feature) & 1 for feature in range(num_features))  # features on in coalition c
    weight_of_size = np.array([
        factorial(k) * factorial(num_features - k - 1) / factorial(num_features)
        for k in range(num_features)])
    values = np.zeros((outputs.shape[1], num_features))
    for feature in range(num_features):
        without = codes[(codes >> feature) & 1 == 0]
        with_feature = without | (1 << feature)
        marginal = outputs[with_feature] - outputs[without]  # (2^(S-1), T)
        values[:, feature] = weight_of_size[sizes[without]] @ marginal
    return values
