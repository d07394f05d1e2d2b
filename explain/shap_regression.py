"""The paired Shapley regression: odd Fourier terms, the efficiency constraint, sandwich errors.

Write a coalition z in {0, 1}^S as x = 2z - 1 in {-1, +1}^S and a game in the Fourier
(parity) basis, f(x) = sum_T a_T prod_{i in T} x_i. A complementary pair (z, 1 - z) gives
d = f(x) - f(-x) = 2 sum_{|T| odd} a_T chi_T(x): the even orders (the pairwise interactions
among them) cancel, and the Shapley value of feature i is phi_i = sum_{T odd, T ∋ i} 2 a_T / |T|
(a parity over |T| features splits its jump from -1 to +1 equally). Paired Kernel SHAP is
the Shapley-kernel-weighted least squares of d/2 on the singletons x_i alone, with the
constraint sum_T a_T = (f(1) - f(0)) / 2 (efficiency); it is exact for games of order <= 2
and its error comes from the odd orders >= 3.

This module fits d/2 on the singletons, on coalition-size indicators (a game of the size
alone that is 0 at the anchors has zero Shapley value: they take out each size's mean;
left out when the pairs are too few for them and the fit predicts better without) and
on chosen odd higher-order parities (``choose_terms``: triples screened by their correlation
with the singleton fit's residual, the triples of the leading features, every odd parity of
the first few, a ridge fit on those of up to nine): a regression adjustment whose
surrogate's Shapley values are exact. Over all coalitions the fit's
residual is kernel-orthogonal to the singletons, so it has zero Shapley value and the
estimate stays consistent whatever terms are chosen; on a sample the terms absorb the
variance that paired Kernel SHAP leaves. Which terms to keep is decided by the closed-form
leave-one-pair-out error (no extra model calls).

Standard errors: the linearised (sandwich) variance of the constrained estimator, summed
over the sampled strata with each stratum's finite-population correction, from HC3
residuals e_p / (1 - h_p) (the leave-one-out residual: residuals of the fitted pairs are
shrunk, most at small budgets). Enumerated strata are fixed and add no variance.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from itertools import combinations
from math import comb

import numpy as np

__all__ = [
    "PairedDesign",
    "RegressionFit",
    "singletons",
    "odd_closure",
    "screen_triples",
    "parity_matrix",
    "shapley_map",
    "fit_constrained",
    "solve_constrained_wls",
    "choose_terms",
    "scarce_pairs",
    "spare_pairs",
    "MIN_SPARE_PAIRS",
    "adjust_with_surrogate",
    "combine_fits",
    "singleton_fit",
    "shrink_towards_surrogate",
]

_RIDGE = 1e-10  # relative: keeps rank-deficient systems at the minimum-norm split
HC_POWER = 1.0
_MAX_LEVERAGE = 0.95  # HC3 cap: a pair the fit passes through says little about the error


@dataclass(frozen=True)
class PairedDesign:
    """Complementary pairs as regression rows.

    signs: (P, S) float64 in {-1, +1}, x = 2z - 1 of each pair's first member.
    halves: (P, T) float64, (f(z) - f(1 - z)) / 2 per output.
    weights: (P,) float64 > 0, the stratum's kernel mass over the pairs used from it.
    strata: (P,) int64 stratum id; population: per stratum id, the pairs it holds;
    sampled: per stratum id, True when its pairs were sampled (False: enumerated).
    evens: (P, T) float64, (f(z) + f(1 - z)) / 2 per output (what pairing cancels).
    folds: (P,) int64, the cross-fitting fold of a sampled pair (its rank within its stratum
    in the order drawn, modulo the number of folds), -1 for an enumerated pair.
    """

    signs: np.ndarray
    halves: np.ndarray
    weights: np.ndarray
    strata: np.ndarray
    population: np.ndarray
    sampled: np.ndarray
    evens: np.ndarray
    folds: np.ndarray


@dataclass(frozen=True)
class RegressionFit:
    """One output's fit: values (S,), their standard errors (S,), the terms used, the
    weighted leave-one-pair-out error of the fit (float), the residuals (P,), the ridge
    penalty on the higher-order terms (relative to the total weight), the weight of the
    surrogate's adjustment (0: none, see ``adjust_with_surrogate``), whether the
    coalition-size indicators were in the design and the pairs it leaves to spare (the sampled
    pairs' summed 1 - leverage, ``spare_pairs``: its residual degrees of freedom) and whether the
    pairs determine it (False: the design's rank is below its free columns, as for 12 pairs whose
    signs span 9 of 11 directions; the minimum-norm fit's sandwich is then ~0 where nothing was
    measured)."""

    values: np.ndarray
    standard_errors: np.ndarray
    terms: tuple[tuple[int, ...], ...]
    loo_error: float
    residuals: np.ndarray
    ridge: float = 0.0
    surrogate_weight: float = 0.0
    indicators: bool = True
    spare: float = float("inf")
    determined: bool = True
    _linear: _LinearFit | None = field(default=None, repr=False, compare=False)


@dataclass(frozen=True)
class _LinearFit:
    """What a fit with standard errors keeps for ``adjust_with_surrogate``: its solver, the
    map Q @ mapping.T (K, S) from coefficients' scores to values and the targets' score
    deviations (P, S)."""

    solver: _ConstrainedSolver
    mapping: np.ndarray
    score_map: np.ndarray
    deviations: np.ndarray


def singletons(num_features: int) -> tuple[tuple[int, ...], ...]:
    """The S first-order terms (i,)."""
    return tuple((index,) for index in range(num_features))


def odd_closure(features: list[int]) -> tuple[tuple[int, ...], ...]:
    """Every parity of odd order >= 3 over ``features`` (all the odd part of a game of them)."""
    pool = sorted(features)
    return tuple(term for order in range(3, len(pool) + 1, 2) for term in combinations(pool, order))


def parity_matrix(signs: np.ndarray, terms: tuple[tuple[int, ...], ...]) -> np.ndarray:
    """(P, len(terms)) float64: prod_{i in T} x_i for every row of signs (P, S) and term T."""
    columns = np.empty((signs.shape[0], len(terms)))
    for position, term in enumerate(terms):
        columns[:, position] = signs[:, term[0]] if len(term) == 1 else signs[:, list(term)].prod(axis=1)
    return columns


def shapley_map(terms: tuple[tuple[int, ...], ...], num_features: int) -> np.ndarray:
    """(S, len(terms)) float64 L with phi = L a: a parity's coefficient times 2/|T| to each member."""
    mapping = np.zeros((num_features, len(terms)))
    for position, term in enumerate(terms):
        mapping[list(term), position] = 2.0 / len(term)
    return mapping


def _constrained_inverse(gram: np.ndarray, constraint: np.ndarray,
                         penalty: np.ndarray | None = None,
                         rank_deficient: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """For the Gram matrix G (K, K), the constraint c^T a = total, c (K,), and an optional
    ridge penalty (K,) added to G's diagonal: Q = G^-1 - G^-1 c c^T G^-1 / (c^T G^-1 c) and
    the split s = G^-1 c / (c^T G^-1 c); the constrained coefficients are Q B^T W y + s total.

    Q and s are the blocks of the inverse of the bordered (KKT) matrix [[G, c], [c^T, 0]],
    inverted as one: forming G^-1 first and subtracting lost every digit when G was nearly
    singular (few calls for many terms: the 1e-10 ridge gave G^-1 entries ~1e10, and values
    came out tens to hundreds of times their norm). rank_deficient (fewer pairs than terms):
    the pseudo-inverse, the minimum-norm fit."""
    size = gram.shape[0]
    regularised = gram + np.eye(size) * _RIDGE * max(np.trace(gram) / size, 1e-300)
    if penalty is not None:
        regularised = regularised + np.diag(penalty)
    bordered = np.zeros((size + 1, size + 1))
    bordered[:size, :size] = regularised
    bordered[:size, size] = bordered[size, :size] = constraint
    inverse = None
    if not rank_deficient:
        try:
            inverse = np.linalg.inv(bordered)
        except np.linalg.LinAlgError:
            pass
    if inverse is None:
        inverse = np.linalg.pinv(bordered, hermitian=True)
    inverse = 0.5 * (inverse + inverse.T)
    return inverse[:size, :size], inverse[:size, size]


@dataclass(frozen=True)
class _ConstrainedSolver:
    """A factorised constrained weighted (ridge) least squares problem, for any targets.

    design: (P, K); weighted: (P, K) design times the weights; constrained: Q (K, K);
    share: (K,) (coefficients = Q B^T W y + share * total); leverages: (P,)
    h_p = w_p b_p^T Q b_p.
    """

    design: np.ndarray
    weighted: np.ndarray
    constrained: np.ndarray
    share: np.ndarray
    leverages: np.ndarray

    @classmethod
    def build(cls, design: np.ndarray, weights: np.ndarray, constraint: np.ndarray,
              penalty: np.ndarray | None = None) -> _ConstrainedSolver:
        weighted = design * weights[:, None]
        constrained, share = _constrained_inverse(weighted.T @ design, constraint, penalty,
                                                  rank_deficient=design.shape[0] < design.shape[1])
        leverages = ((weighted @ constrained) * design).sum(axis=1)
        return cls(design, weighted, constrained, share, leverages)

    def solve(self, targets: np.ndarray, total: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Coefficients (K, T) and residuals (P, T) for targets (P, T) and totals (T,)."""
        coefficients = self.constrained @ (self.weighted.T @ targets) + np.outer(self.share, total)
        return coefficients, targets - self.design @ coefficients


def fit_constrained(design: np.ndarray, weights: np.ndarray, targets: np.ndarray,
                    total: np.ndarray, constraint: np.ndarray | None = None,
                    penalty: np.ndarray | None = None
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Weighted (ridge) least squares with constraint @ coefficients == total (default: their sum).

    design: (P, K), weights: (P,) > 0, targets: (P, T), total: (T,), constraint: (K,),
    penalty: (K,) ridge penalty per coefficient or None. Returns coefficients (K, T),
    residuals (P, T), leverages (P,) h_p = w_p b_p^T Q b_p and Q (K, K).
    """
    if constraint is None:
        constraint = np.ones(design.shape[1])
    solver = _ConstrainedSolver.build(design, weights, constraint, penalty)
    coefficients, residuals = solver.solve(targets, total)
    return coefficients, residuals, solver.leverages, solver.constrained


def solve_constrained_wls(coalitions: np.ndarray, weights: np.ndarray, outputs: np.ndarray,
                          base_values: np.ndarray, full_values: np.ndarray) -> np.ndarray:
    """Weighted least squares of outputs on coalitions with values summing to full - base.

    coalitions: (M, S) bool, weights: (M,) float (> 0), outputs: (M, T), base_values and
    full_values: (T,). Minimises sum_i w_i (y_i - base - z_i . phi)^2 subject to
    sum(phi) = full - base, per output (unpaired Kernel SHAP). Returns phi, (T, S) float64.
    """
    values, _, _, _ = fit_constrained(coalitions.astype(np.float64), np.asarray(weights, np.float64),
                                   outputs - base_values[None, :], full_values - base_values)
    return values.T


def _score_deviations(solver: _ConstrainedSolver, weights: np.ndarray, score_map: np.ndarray,
                      residuals: np.ndarray, paired: PairedDesign, by_fold: bool = False) -> np.ndarray:
    """(P, S) float64: each pair's linearised contribution to the values for one output
    (residuals (P,); score_map: Q @ mapping.T, (K, S)), centred within its sampled stratum
    and scaled by the stratum's finite-population correction, so that the column sums of
    squares are the sandwich variances. Linear in ``residuals``. Rows of enumerated strata
    are 0. by_fold: each cross-fitting fold's pairs of a stratum count as a sample of their
    own (centred apart, corrected by the fold's sampling fraction): the design of residuals
    that come from a different surrogate in each fold (``adjust_with_surrogate``)."""
    adjusted = residuals / (1.0 - np.minimum(solver.leverages, _MAX_LEVERAGE)) ** HC_POWER
    scores = (solver.design * (weights * adjusted)[:, None]) @ score_map  # (P, S)
    deviations = np.zeros_like(scores)
    folds = paired.folds if by_fold else np.zeros_like(paired.folds)
    groups = np.stack([paired.strata, folds], axis=1)
    for stratum, fold in np.unique(groups, axis=0):
        if not paired.sampled[stratum]:
            continue
        members = (paired.strata == stratum) & (folds == fold)
        count = int(members.sum())
        kept = 1.0 - count / paired.population[stratum]
        if kept <= 0:
            continue
        block = scores[members]
        if count > 1:
            deviations[members] = np.sqrt(kept * count / (count - 1)) * (block - block.mean(axis=0))
        else:
            deviations[members] = np.sqrt(kept) * block
    return deviations


def _stratum_indicators(paired: PairedDesign) -> np.ndarray:
    """(P, H) float64: one column per sampled stratum with at least two pairs, 1 on its pairs.

    Not for the self-complementary stratum (k = S/2, even S): both members of its pairs have
    the same size, so its mean of d/2 is no function of the size; its pairs are stored by
    the member holding feature S-1 (``explain.coalitions``), so there an indicator would be
    that feature's sign and take its signal from the stratum (a bias in its value that no
    budget short of full enumeration removed)."""
    middle = paired.signs.shape[1] // 2 - 1 if paired.signs.shape[1] % 2 == 0 else -1
    columns = [paired.strata == stratum for stratum in np.unique(paired.strata)
               if paired.sampled[stratum] and stratum != middle
               and np.count_nonzero(paired.strata == stratum) > 1]
    if not columns:
        return np.zeros((len(paired.strata), 0))
    return np.stack(columns, axis=1).astype(np.float64)


def _regression_design(paired: PairedDesign, terms: tuple[tuple[int, ...], ...], ridge: float,
                       with_indicators: bool = True
                       ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]:
    """The design (P, K) of ``terms`` plus the stratum indicators (unless ``with_indicators``
    is False), the constraint (K,) (the terms sum to the total, the indicators take no
    part), the map (S, K) to Shapley values and the ridge penalty (K,) on the higher-order
    terms (None when ridge is 0)."""
    parities = parity_matrix(paired.signs, terms)
    indicators = (_stratum_indicators(paired) if with_indicators
                  else np.zeros((len(paired.strata), 0)))
    design = np.concatenate([parities, indicators], axis=1)
    constraint = np.concatenate([np.ones(len(terms)), np.zeros(indicators.shape[1])])
    mapping = np.concatenate([shapley_map(terms, paired.signs.shape[1]),
                              np.zeros((paired.signs.shape[1], indicators.shape[1]))], axis=1)
    penalty = None
    if ridge > 0:
        penalty = np.zeros(design.shape[1])
        penalty[[position for position, term in enumerate(terms) if len(term) > 1]] = (
            ridge * paired.weights.sum())
    return design, constraint, mapping, penalty


def spare_pairs(paired: PairedDesign, leverages: np.ndarray) -> float:
    """The residual degrees of freedom of a fit with these leverages (P,): the sampled pairs'
    summed 1 - leverage (an enumerated pair has no sampling error to estimate)."""
    sampled = paired.sampled[paired.strata]
    return float(np.sum(1.0 - np.minimum(leverages[sampled], 1.0)))


def _loo_error(weights: np.ndarray, residuals: np.ndarray, leverages: np.ndarray) -> float:
    """The weighted mean squared leave-one-pair-out residual e_p / (1 - h_p)."""
    loo = residuals / (1.0 - np.minimum(leverages, 1.0 - 1e-9))
    return float(np.sum(weights * loo**2) / weights.sum())


def _fit_terms(paired: PairedDesign, targets: np.ndarray, terms: tuple[tuple[int, ...], ...],
               total: float, ridge: float = 0.0, with_errors: bool = True,
               with_indicators: bool = True) -> RegressionFit:
    """The constrained fit of one output's targets (P,) on ``terms`` plus the stratum indicators.

    A stratum indicator is a game that depends on the coalition size alone and is 0 at the
    anchors: its Shapley values are 0 and it leaves f(full) - f(empty) alone, so it takes
    no part in the constraint or the values. It removes each sampled stratum's mean of d/2
    (a function of the size: in dense higher-order games most of what the singletons cannot
    fit) from the residuals, where it would add noise through the sample's imbalance.
    ridge: penalty on the higher-order terms, relative to the total weight (singletons and
    indicators are never penalised, so the residual stays orthogonal to the singletons and
    the estimate consistent).
    """
    design, constraint, mapping, penalty = _regression_design(paired, terms, ridge, with_indicators)
    weights = paired.weights
    solver = _ConstrainedSolver.build(design, weights, constraint, penalty)
    coefficients, residuals = solver.solve(targets[:, None], np.array([total]))
    values = mapping @ coefficients[:, 0]
    residual = residuals[:, 0]
    loo_error = _loo_error(weights, residual, solver.leverages)
    spare = spare_pairs(paired, solver.leverages)
    # unpenalised, the leverages sum to the design's rank less the constraint
    determined = penalty is not None or float(solver.leverages.sum()) > design.shape[1] - 1.5
    if not with_errors:
        return RegressionFit(values, np.full(len(values), np.nan), terms, loo_error, residual, ridge,
                             indicators=with_indicators, spare=spare, determined=determined)
    score_map = solver.constrained @ mapping.T
    deviations = _score_deviations(solver, weights, score_map, residual, paired)
    return RegressionFit(values, np.sqrt((deviations**2).sum(axis=0)), terms, loo_error, residual,
                         ridge, 0.0, with_indicators, spare, determined,
                         _LinearFit(solver, mapping, score_map, deviations))


def adjust_with_surrogate(paired: PairedDesign, targets: np.ndarray, total: float,
                          fit: RegressionFit, surrogate_halves: np.ndarray,
                          surrogate_total: float, surrogate_values: np.ndarray,
                          surrogate_mean_halves: np.ndarray) -> RegressionFit:
    """Regression adjustment of ``fit`` by a surrogate game g whose Shapley values are exact.

    The estimate becomes beta phi(g) + fit(d/2 - beta m): the same regression (fit's terms
    and ridge) of what the surrogate leaves, plus the surrogate's exact values. It is
    consistent for any beta and any g (phi is linear in the game); its variance is lowest
    at beta = Cov(A, B) / Var(B), A and B the linearised errors of the fits of d/2 and of m,
    estimated from the pairs' stratum-centred score deviations and clipped to [0, 1], so a
    surrogate that does not follow the game gets ~0 weight. The fit is linear in its
    targets, so fit's factorised solve is reused for m.

    targets: (P,) one output's d/2; total: (f(1) - f(0)) / 2; surrogate_halves: (P,) m, the
    surrogate's (g(z) - g(1 - z)) / 2 on each pair (cross-fitted: from a surrogate that did
    not see the pair); surrogate_total: (g(1) - g(0)) / 2; surrogate_values: (S,) phi(g);
    surrogate_mean_halves: (P,) the mean surrogate's m, when m comes from a different
    surrogate in each cross-fitting fold (m itself for one surrogate). Their difference is sampled
    fold by fold, each fold a fifth of the pairs, so its variance gets the fold's
    finite-population correction, not the stratum's: the excess (nil at small sampling
    fractions, most of m's error near full enumeration) enters the weight and the errors.
    Returns the adjusted fit (standard errors from the sandwich of the adjusted residuals).
    """
    linear = fit._linear
    if linear is None:  # a fit made without standard errors: refit its terms with them
        linear = _fit_terms(paired, targets, fit.terms, total, fit.ridge,
                            with_indicators=fit.indicators)._linear
    weights = paired.weights
    surrogate_coefficients, surrogate_residuals = linear.solver.solve(
        surrogate_halves[:, None], np.array([surrogate_total]))
    surrogate_errors = _score_deviations(linear.solver, weights, linear.score_map,
                                         surrogate_residuals[:, 0], paired)
    _, mismatch = linear.solver.solve((surrogate_halves - surrogate_mean_halves)[:, None],
                                      np.array([0.0]))
    by_stratum, by_fold = (
        (_score_deviations(linear.solver, weights, linear.score_map, mismatch[:, 0], paired,
                           by_fold=grouped)**2).sum(axis=0) for grouped in (False, True))
    excess = np.maximum(by_fold - by_stratum, 0.0)  # (S,)
    spread = float((surrogate_errors**2).sum() + excess.sum())
    beta = (float(np.clip((linear.deviations * surrogate_errors).sum() / spread, 0.0, 1.0))
            if spread > 0 else 0.0)
    if beta == 0.0:
        return fit
    values = fit.values - beta * (linear.mapping @ surrogate_coefficients[:, 0] - surrogate_values)
    residual = fit.residuals - beta * surrogate_residuals[:, 0]
    deviations = linear.deviations - beta * surrogate_errors
    return RegressionFit(values, np.sqrt((deviations**2).sum(axis=0) + beta**2 * excess), fit.terms,
                         _loo_error(weights, residual, linear.solver.leverages), residual,
                         fit.ridge, beta, fit.indicators, fit.spare, fit.determined,
                         _LinearFit(linear.solver, linear.mapping, linear.score_map, deviations))


def combine_fits(one: RegressionFit, two: RegressionFit) -> RegressionFit:
    """The variance-minimising mix alpha one + (1 - alpha) two of two fits of the same output on the
    same pairs (both consistent, both with standard errors: ``_fit_terms`` or ``adjust_with_surrogate``).

    Their linearised errors are the pairs' score deviations D1, D2 (P, S), plus for an adjusted fit
    the cross-fitting excess e = SE^2 - sum_p D^2 (S,), taken as shared by both (it comes from the
    same surrogate's folds): Var(mix) = sum_p (alpha D1 + (1 - alpha) D2)^2 + (alpha sqrt(e1) +
    (1 - alpha) sqrt(e2))^2, and alpha minimises its trace, clipped to [0, 1]. The mix's terms are
    both fits' (one's first), its surrogate weight the mixed one, its leave-one-pair-out error
    unknown (NaN), its spare pairs the fewer of the two, and it is determined when both are; its
    ``_linear`` holds the mixed deviations beside the solver of the fit with the larger share (what
    ``small_sample_errors`` reads; no further adjustment may be made from it). Returns one itself
    at alpha = 1.
    """
    if one._linear is None or two._linear is None:
        raise ValueError("combine_fits needs fits with standard errors")
    first, second = one._linear.deviations, two._linear.deviations
    first_excess = np.sqrt(np.maximum(one.standard_errors**2 - (first**2).sum(axis=0), 0.0))
    second_excess = np.sqrt(np.maximum(two.standard_errors**2 - (second**2).sum(axis=0), 0.0))
    own = float(one.standard_errors @ one.standard_errors)
    other = float(two.standard_errors @ two.standard_errors)
    shared = float((first * second).sum() + first_excess @ second_excess)
    curvature = own + other - 2.0 * shared
    alpha = float(np.clip((other - shared) / curvature, 0.0, 1.0)) if curvature > 0 else 1.0
    if alpha == 1.0:
        return one
    deviations = alpha * first + (1.0 - alpha) * second
    excess = alpha * first_excess + (1.0 - alpha) * second_excess
    base = one if alpha >= 0.5 else two
    known = set(one.terms)
    return replace(base, values=alpha * one.values + (1.0 - alpha) * two.values,
                   standard_errors=np.sqrt((deviations**2).sum(axis=0) + excess**2),
                   terms=one.terms + tuple(term for term in two.terms if term not in known),
                   loo_error=float("nan"), residuals=alpha * one.residuals + (1.0 - alpha) * two.residuals,
                   surrogate_weight=alpha * one.surrogate_weight + (1.0 - alpha) * two.surrogate_weight,
                   spare=min(one.spare, two.spare), determined=one.determined and two.determined,
                   _linear=replace(base._linear, deviations=deviations))


SHRINK_VARIANCE_SHARE = 0.5  # share of the (HC3, conservative) sandwich variance in the shrinkage


def shrink_towards_surrogate(values: np.ndarray, standard_errors: np.ndarray,
                             surrogate_values: np.ndarray, surrogate_variance: np.ndarray,
                             variance_share: float = SHRINK_VARIANCE_SHARE
                             ) -> tuple[np.ndarray, np.ndarray, float]:
    """Positive-part James-Stein shrinkage of consistent estimates towards a surrogate's
    exact Shapley values.

    values: (S,) a consistent estimate with standard errors (S,) (the regression adjusted by
    the surrogate), surrogate_values: (S,) phi(g), surrogate_variance: (S,) their variance
    from the calls the surrogate was fitted on. The sum of the values is fixed by
    efficiency, so only the centred difference d = values - phi(g) moves: the result is
    phi(g) + lambda d (plus the fixed mean), lambda = max(0, 1 - share tr(V) / |d|^2).
    Where the surrogate is close to the game (|d|^2 near the noise tr(V)) the values lean on
    it; where it is not (|d|^2 >> tr(V)) they stay as they are. ``variance_share`` < 1
    because the HC3 sandwich overstates the variance at small budgets (its intervals cover
    more than 95%). Standard errors: sqrt(lambda^2 V + (1 - lambda)^2 (var(g) + max(d^2 - V,
    0))), the surrogate's own error being its variance plus its squared bias, which d^2 - V
    estimates (d is the bias plus the values' noise). Returns values (S,), standard errors
    (S,) and lambda (1: unchanged).
    """
    difference = values - surrogate_values
    difference = difference - difference.mean()
    spread = float(difference @ difference)
    variance = standard_errors**2
    weight = 1.0
    if spread > 0:
        weight = max(0.0, 1.0 - variance_share * float(variance.sum()) / spread)
    if weight >= 1.0:
        return values, standard_errors, 1.0
    shrunk = values - (1.0 - weight) * difference
    surrogate_error = surrogate_variance + np.maximum(difference**2 - variance, 0.0)
    errors = np.sqrt(weight**2 * variance + (1.0 - weight)**2 * surrogate_error)
    return shrunk, errors, weight


MAX_SCREENED_TRIPLES = 5000  # above this, triples are screened among the leading features only


def screen_triples(signs: np.ndarray, weights: np.ndarray, residuals: np.ndarray,
                   values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rank three-way parities by how much of the singleton fit's residual they carry.

    signs: (P, S) in {-1, +1}, weights: (P,), residuals: (P,), values: (S,) the singleton
    fit's values (only used to pick the features screened when C(S, 3) is too large).
    Returns triples (N, 3) int64 sorted by decreasing score |sum_p w_p e_p chi_T(x_p)| (a
    parity has unit norm, so this is its weighted correlation with the residual up to a
    constant) and the scores (N,).
    """
    num_features = signs.shape[1]
    pool = num_features
    while pool > 3 and comb(pool, 3) > MAX_SCREENED_TRIPLES:
        pool -= 1
    leading = np.sort(np.argsort(-np.abs(values), kind="stable")[:pool])
    triples = np.array(list(combinations(leading.tolist(), 3)), dtype=np.int64).reshape(-1, 3)
    weighted = signs * (weights * residuals)[:, None]  # (P, S)
    scores = np.abs(np.einsum("pt,pt->t", weighted[:, triples[:, 0]],
                              signs[:, triples[:, 1]] * signs[:, triples[:, 2]]))
    order = np.argsort(-scores, kind="stable")
    return triples[order], scores[order]


SCARCE_PAIRS = 2.0  # fewer pairs than this many per column: the fit may drop the size indicators
# While the pairs are scarce, a fit must leave at least this many to spare (``RegressionFit.spare``): one
# that passes through every sampled pair has no residual to leave out (its leave-one-pair-out error reads
# 0) and none to estimate its standard errors from.
MIN_SPARE_PAIRS = 2.0
RIDGE_GRID = (0.1,)  # penalties tried on the widest basis, relative to the total weight
WIDE_FEATURES = 9  # the widest basis: every odd parity of up to this many leading features


def scarce_pairs(paired: PairedDesign) -> bool:
    """Whether the pairs are fewer than SCARCE_PAIRS per column of the singleton fit with its size indicators."""
    num_pairs, num_features = paired.signs.shape
    return num_pairs < SCARCE_PAIRS * (num_features + _stratum_indicators(paired).shape[1])


def _checkable(fit: RegressionFit) -> bool:
    """Whether the pairs determine ``fit`` and leave ``MIN_SPARE_PAIRS`` to judge it by."""
    return fit.determined and fit.spare >= MIN_SPARE_PAIRS


def singleton_fit(paired: PairedDesign, targets: np.ndarray, total: float,
                  with_indicators: bool = True) -> RegressionFit:
    """The constrained fit of one output's targets (P,) on the S singletons (plus the stratum
    indicators unless ``with_indicators`` is False), with standard errors: paired Kernel SHAP."""
    return _fit_terms(paired, targets, singletons(paired.signs.shape[1]), total,
                      with_indicators=with_indicators)


def choose_terms(paired: PairedDesign, targets: np.ndarray, total: float) -> tuple[RegressionFit, RegressionFit]:
    """Fit one output with the singletons alone and with richer odd bases, keep the fit with
    the lowest leave-one-pair-out error. Returns that fit and the singleton fit it was chosen
    against (with the same size indicators; the same object when no richer basis won).

    With few pairs (fewer than ``SCARCE_PAIRS`` per column of the singleton fit with its
    coalition-size indicators), the singleton fit without the indicators is tried too and
    the one with the lower leave-one-pair-out error decides for every candidate: up to S/2
    indicators beside S singletons left 24 pairs next to no degrees of freedom (S = 16, 50
    calls: values off by more than their norm and intervals that covered nothing). While they
    are scarce, no fit is kept that leaves fewer than ``MIN_SPARE_PAIRS`` pairs to spare (12
    singletons, 5 indicators and a triple through 16 pairs had a leave-one-out error of 0); and
    none that the pairs do not determine (``RegressionFit.determined``: 4 triples whose parities
    matched 4 singletons' signs on all 49 pairs left a direction of the values unmeasured).
    Candidates, beyond the singletons (least squares unless said):
    * the K three-way parities that carry most of the singleton fit's residual
      (``screen_triples``), K up to a third of the pairs beyond the S singletons;
    * every three-way parity of the m features with the largest |value|, C(m, 3) likewise;
    * every odd parity of the 4, 5 or 6 leading features (those of the first screened
      triples, then by |value|): a game of a few interacting features has nothing left;
    * ridge fits (``RIDGE_GRID``) of every odd parity of up to ``WIDE_FEATURES`` leading
      features plus the screened triples, when the pairs number at least that basis.
    targets: (P,) one output's d/2 (``PairedDesign.halves[:, t]``, or what is left of it
    after a surrogate); total: (f(1) - f(0)) / 2 likewise.
    """
    num_pairs, num_features = paired.signs.shape
    first_order = singletons(num_features)
    linear = singleton_fit(paired, targets, total)
    scarce = scarce_pairs(paired)
    if scarce:
        plain = singleton_fit(paired, targets, total, with_indicators=False)
        linear = min((fit for fit in (linear, plain) if _checkable(fit)), key=lambda fit: fit.loo_error,
                     default=plain)
    indicators = linear.indicators
    best = linear
    spare = int((num_pairs - num_features) / 3.0)
    if spare < 1 or num_features < 3 or linear.loo_error <= 1e-24 * float(np.mean(targets**2)):
        return linear, linear
    triples, _ = screen_triples(paired.signs, paired.weights, linear.residuals, linear.values)
    screened = [tuple(row) for row in triples[:max(spare, 6)].tolist()]  # all that is used below
    by_value = [int(i) for i in np.argsort(-np.abs(linear.values), kind="stable")]
    leading: list[int] = []
    for index in [i for row in screened[:6] for i in row] + by_value:
        if index not in leading:
            leading.append(index)
    candidates: list[tuple[tuple[tuple[int, ...], ...], float]] = []
    for count in sorted({max(1, spare // 2), spare}):
        candidates.append((tuple(screened[:count]), 0.0))
    top = 3
    while top < num_features and comb(top + 1, 3) <= spare:
        top += 1
    candidates.append((tuple(combinations(sorted(by_value[:top]), 3)), 0.0))
    for size in (4, 5, 6):
        if size <= num_features and 2 ** (size - 1) - size <= spare:
            candidates.append((odd_closure(leading[:size]), 0.0))
    wide_size = min(WIDE_FEATURES, num_features)
    while wide_size > 6 and 2 ** (wide_size - 1) > num_pairs:
        wide_size -= 1
    if wide_size > 6:
        wide = odd_closure(leading[:wide_size])
        known = set(wide)
        wide += tuple(term for term in screened[:spare] if term not in known)
        candidates += [(wide, ridge) for ridge in RIDGE_GRID]
    chosen = None
    for extra, ridge in candidates:
        fit = _fit_terms(paired, targets, first_order + extra, total, ridge, with_errors=False,
                         with_indicators=indicators)
        if fit.loo_error < best.loo_error and fit.determined and (not scarce or _checkable(fit)):
            best, chosen = fit, (extra, ridge)
    if chosen is None:
        return linear, linear
    return _fit_terms(paired, targets, first_order + chosen[0], total, chosen[1],
                      with_indicators=indicators), linear
