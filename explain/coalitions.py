"""Coalition planning for Kernel SHAP: kernel mass per size, enumerated sizes, paired sampling.

A coalition is a row z in {0, 1}^S (True keeps the segment). Sizes k and S - k form one
stratum ("size pair"): every sampled coalition comes with its complement, so a stratum is
a set of complementary pairs, and its pairs are identified by the member that contains
the last feature when k = S/2 (so a pair is never drawn twice in another order).

* Shapley kernel: a coalition of size k weighs (S-1) / (C(S,k) k (S-k)); all coalitions of
  size k together weigh (S-1) / (k (S-k)) (``size_kernel_mass``).
* Enumeration (shap's rule): the size pairs (1, S-1), (2, S-2), ... are evaluated
  completely while the budget, shared in proportion to the kernel mass still uncovered,
  pays for all their coalitions (``plan_enumeration``).
* The other strata are sampled in complementary pairs, without replacement within a
  stratum, the pairs of each round spread so that every size gets the same number of
  coalitions (systematic rounding with a random offset; ``PairSampler``): the leverage-score
  allocation of Leverage SHAP (Musco & Witter 2025). Each sampled pair then weighs its
  stratum's kernel mass over the pairs drawn from it. Sampling without
  replacement matters when a stratum is small (S = 12 at 1000 samples draws a fifth of all
  coalitions of some sizes): its finite-population correction enters the standard errors.
* Balanced draws (kernel herding on second moments): each new pair of a stratum is the one,
  among ``BALANCE_CANDIDATES`` distinct random candidates, that keeps the stratum's pair
  co-occurrence closest to its expectation (sum of x x^T over the drawn pairs against
  n E[x x^T], x = 2z - 1). The paired regression's error from a three-way interaction
  {i, j, l} enters feature i's value through the sample's x_j x_l, so balancing them takes
  out much of it (on the development games the median error ratio to shap's KernelExplainer
  goes from 0.62 to 0.50 at 250 samples, with no gain in the median at 500; BENCHMARKS.md). The draws stay random (candidates are), distinct and
  reproducible; the standard errors, which treat them as simple random samples, are
  slightly conservative for it. Above ``BALANCE_MAX_FEATURES`` features (an S x S matrix per
  stratum) the draws are uniform.
* Separating draws: until the drawn pairs' sign vectors and the all-one vector span R^S, only
  candidates outside their span compete (when one of the candidates is). Without it, the few
  pairs of the smallest budgets left two segments with the same signs in every pair (or another
  direction unmeasured) in 5-18% of images at 2S + 4 calls for S = 8-12, and the values
  undetermined (``explain.shap_regression.RegressionFit.determined``). Once a size is enumerated
  (``plan_enumeration``: S <= 15 from 100 calls, 21 from 150, 26 from 200, 31 from 250) the rule does
  nothing: its pairs span R^S.

Everything random comes from an injected ``numpy.random.Generator``; the coalitions depend
only on it and on the budget, never on how the evaluations are batched.
"""

from __future__ import annotations

from itertools import combinations
from math import comb

import numpy as np

BALANCE_CANDIDATES = 32  # random candidates per drawn pair, the most balancing one is kept
BALANCE_MAX_FEATURES = 128  # above this, pairs are drawn uniformly (an S x S imbalance per stratum)

__all__ = [
    "size_kernel_mass",
    "plan_enumeration",
    "enumerate_coalitions",
    "PairSampler",
    "pair_sign_moment",
]


def size_kernel_mass(num_features: int) -> np.ndarray:
    """Total Shapley kernel weight of each coalition size.

    Returns (S+1,) float64; entry k is (S-1) / (k (S-k)) for 0 < k < S and 0 for k in {0, S}.
    """
    sizes = np.arange(num_features + 1, dtype=np.float64)
    mass = np.zeros(num_features + 1)
    inner = sizes[1:-1]
    mass[1:-1] = (num_features - 1) / (inner * (num_features - inner))
    return mass


def size_pairs(num_features: int) -> list[int]:
    """The smaller size of each complementary size pair: 1 .. floor(S/2)."""
    return list(range(1, num_features // 2 + 1))


def stratum_mass(num_features: int, small: int) -> float:
    """Kernel mass of the size pair (small, S - small); a self-complementary size counts once."""
    mass = size_kernel_mass(num_features)
    large = num_features - small
    return float(mass[small] + (mass[large] if large != small else 0.0))


_SPAN_TOLERANCE = 1e-9  # squared residual of a sign vector (norm^2 = S) that counts as outside the span
POPULATION_CAP = 2**53  # beyond any budget; the strata's pair counts and their sum stay in int64


def stratum_pairs(num_features: int, small: int) -> int:
    """Number of distinct complementary pairs in the size pair (small, S - small), capped at
    ``POPULATION_CAP`` (C(68, 34) / 2 no longer fits an int64; no budget comes near it)."""
    count = comb(num_features, small)
    return min(count // 2 if 2 * small == num_features else count, POPULATION_CAP)


def plan_enumeration(num_features: int, budget: int) -> tuple[list[int], int]:
    """Choose the size pairs to enumerate completely.

    budget: evaluations available for non-anchor coalitions. Returns (the smaller sizes
    of the enumerated pairs, evaluations they use). A pair is enumerated while the budget,
    shared in proportion to the kernel weight still uncovered, pays for all its coalitions.
    """
    remaining_mass = float(size_kernel_mass(num_features).sum())
    budget_left = budget
    enumerated: list[int] = []
    for small in size_pairs(num_features):
        count = 2 * stratum_pairs(num_features, small)
        share = stratum_mass(num_features, small)
        if remaining_mass <= 0 or budget_left * share / remaining_mass < count - 1e-8:
            break
        enumerated.append(small)
        budget_left -= count
        remaining_mass -= share
    return enumerated, budget - budget_left


def enumerate_coalitions(num_features: int, sizes: list[int]) -> np.ndarray:
    """Every coalition whose size is in ``sizes`` or is S minus one of them.

    Returns (M, S) bool in a fixed order: by size pair, then lexicographic, each coalition
    followed by its complement (so rows 2j and 2j+1 are a complementary pair).
    """
    rows = []
    for small in sizes:
        for members in combinations(range(num_features), small):
            if 2 * small == num_features and num_features - 1 not in members:
                continue  # a self-complementary size: each pair once
            row = np.zeros(num_features, dtype=bool)
            row[list(members)] = True
            rows += [row, ~row]
    if not rows:
        return np.zeros((0, num_features), dtype=bool)
    return np.array(rows)


def _random_subsets(num_features: int, size: int, count: int,
                    rng: np.random.Generator) -> np.ndarray:
    """(count, S) bool, each row a uniform random subset of the given size."""
    order = np.argsort(rng.random((count, num_features)), axis=1)
    rows = np.zeros((count, num_features), dtype=bool)
    np.put_along_axis(rows, order[:, :size], True, axis=1)
    return rows


def _canonical(rows: np.ndarray, small: int) -> np.ndarray:
    """The member of each pair that identifies it: for k = S/2 the one holding feature S-1."""
    if 2 * small != rows.shape[1]:
        return rows
    return np.where(rows[:, -1:], rows, ~rows)


def _allocate(total: int, shares: np.ndarray, capacity: np.ndarray,
              rng: np.random.Generator) -> np.ndarray:
    """Split ``total`` items over strata in proportion to ``shares`` without exceeding
    ``capacity`` (systematic rounding with a random offset; full strata pass their share on)."""
    counts = np.zeros(len(shares), dtype=np.int64)
    open_strata = capacity > 0
    left = int(min(total, capacity.sum()))
    while left > 0 and open_strata.any():
        weights = np.where(open_strata, shares, 0.0)
        if weights.sum() <= 0:
            weights = open_strata.astype(np.float64)
        cumulative = np.concatenate([[0.0], np.cumsum(weights / weights.sum() * left)])
        offset = rng.random()
        edges = np.floor(cumulative + offset)
        edges[0], edges[-1] = np.floor(offset), np.floor(left + offset)
        proposal = np.minimum(np.diff(edges).astype(np.int64), capacity - counts)
        counts += proposal
        left -= int(proposal.sum())
        open_strata = counts < capacity
        if proposal.sum() == 0:  # rounding gave nothing to the open strata: one each
            for index in np.flatnonzero(open_strata)[:left]:
                counts[index] += 1
                left -= 1
    return counts


class PairSampler:
    """Complementary pairs of the non-enumerated strata, drawn in rounds without replacement.

    num_features: S; enumerated: smaller sizes of the enumerated size pairs; balanced: False
    draws uniformly (for comparisons); separating: False lets candidates the drawn pairs already
    span compete (for comparisons). ``draw`` returns the new coalitions; ``drawn`` counts
    the pairs drawn per stratum.
    """

    def __init__(self, num_features: int, enumerated: list[int], rng: np.random.Generator,
                 balanced: bool = True, separating: bool = True):
        self.num_features = num_features
        self.rng = rng
        self.balanced = balanced and num_features <= BALANCE_MAX_FEATURES
        self.strata = [small for small in size_pairs(num_features) if small not in enumerated]
        # Each size gets the same number of coalitions (a self-complementary stratum holds
        # one size): the leverage-score allocation of Musco & Witter 2025, measured better
        # than kernel-proportional once strata indicators and odd terms enter the regression.
        self.shares = np.array([1.0 if 2 * small == num_features else 2.0 for small in self.strata])
        self.population = np.array([stratum_pairs(num_features, small) for small in self.strata],
                                   dtype=np.int64)
        self.drawn = np.zeros(len(self.strata), dtype=np.int64)
        self._seen: list[set[bytes]] = [set() for _ in self.strata]
        # per stratum, made at its first draw: sum over its drawn pairs of x x^T - E[x x^T]
        # (S, S), see ``_distinct``; None for S > BALANCE_MAX_FEATURES (uniform draws)
        self._imbalance: dict[int, np.ndarray] = {}
        # orthonormal rows (R, S) spanning the drawn pairs' sign vectors and the all-one vector of the
        # efficiency constraint; None: not separating (uniform draws, or an enumerated size, whose pairs
        # span R^S already)
        self._span = (np.ones((1, num_features)) / np.sqrt(num_features)
                      if separating and self.balanced and not enumerated else None)

    def capacity(self) -> int:
        """Pairs not drawn yet."""
        return int((self.population - self.drawn).sum())

    def draw(self, num_pairs: int) -> np.ndarray:
        """Draw up to ``num_pairs`` new pairs; returns (2 * pairs, S) bool, each pair's two
        members adjacent (the first of a pair is the member of the smaller size)."""
        counts = _allocate(num_pairs, self.shares, self.population - self.drawn, self.rng)
        blocks = []
        for index, (small, count) in enumerate(zip(self.strata, counts, strict=True)):
            if count == 0:
                continue
            rows = self._distinct(index, small, int(count))
            blocks.append(rows)
            self.drawn[index] += len(rows)
        if not blocks:
            return np.zeros((0, self.num_features), dtype=bool)
        firsts = np.concatenate(blocks)
        paired = np.empty((2 * len(firsts), self.num_features), dtype=bool)
        paired[0::2], paired[1::2] = firsts, ~firsts
        return paired

    def _distinct(self, index: int, small: int, count: int) -> np.ndarray:
        """``count`` pairs of stratum ``index`` never drawn before, each the most balancing
        of ``BALANCE_CANDIDATES`` distinct random candidates (``_most_balancing``); uniform
        draws (one candidate each) above ``BALANCE_MAX_FEATURES`` features."""
        seen = self._seen[index]
        left = int(self.population[index]) - len(seen)
        balanced = self.balanced
        imbalance = (self._imbalance.setdefault(index, np.zeros((self.num_features,) * 2))
                     if balanced else None)
        candidates_per_pair = BALANCE_CANDIDATES if balanced else 1
        expected = pair_sign_moment(self.num_features, small)
        picked: list[np.ndarray] = []
        if count > left // 2 or left <= 4 * BALANCE_CANDIDATES:  # dense: choose among what is left
            every = _canonical(enumerate_coalitions(self.num_features, [small])[0::2], small)
            pool = np.array([row for row in every if row.tobytes() not in seen])
            available = np.ones(len(pool), dtype=bool)
            for _ in range(count):
                open_rows = np.flatnonzero(available)
                candidates = (open_rows if len(open_rows) <= candidates_per_pair else
                              self.rng.choice(open_rows, candidates_per_pair, replace=False))
                candidates = candidates[self._separating(pool[candidates])]
                best = candidates[_most_balancing(pool[candidates], imbalance)]
                available[best] = False
                self._separate(pool[best])
                _record(imbalance, pool[best], expected)
                picked.append(pool[best])
        else:  # sparse: random candidates, repeats rejected
            keys: set[bytes] = set()
            while len(picked) < count:
                candidates = [row for row in _canonical(
                    _random_subsets(self.num_features, small, candidates_per_pair, self.rng), small)
                    if row.tobytes() not in seen and row.tobytes() not in keys]
                if not candidates:
                    continue
                candidates = np.array(candidates)[self._separating(np.array(candidates))]
                best = candidates[_most_balancing(candidates, imbalance)]
                keys.add(best.tobytes())
                self._separate(best)
                _record(imbalance, best, expected)
                picked.append(best)
        rows = np.array(picked)
        seen.update(row.tobytes() for row in rows)
        return rows

    def _separating(self, candidates: np.ndarray) -> np.ndarray:
        """Indices of the candidates (C, S) bool whose sign vectors the pairs drawn so far do not
        span (every candidate when not separating, when none is new or when the span is full)."""
        basis = self._span
        if basis is None or len(candidates) == 1 or len(basis) == self.num_features:
            return np.arange(len(candidates))
        signs = 2.0 * candidates - 1.0
        residual = signs - (signs @ basis.T) @ basis
        new = np.flatnonzero(np.einsum("ci,ci->c", residual, residual) > _SPAN_TOLERANCE)
        return new if len(new) else np.arange(len(candidates))

    def _separate(self, row: np.ndarray) -> None:
        """Add a drawn pair's sign vector (from its member, (S,) bool) to the span of the drawn pairs."""
        basis = self._span
        if basis is None or len(basis) == self.num_features:
            return
        signs = 2.0 * row - 1.0
        residual = signs - (basis @ signs) @ basis
        residual -= (basis @ residual) @ basis  # twice: keeps the rows orthogonal to rounding at any S
        norm = float(np.sqrt(residual @ residual))
        if norm * norm > _SPAN_TOLERANCE:
            self._span = np.vstack([basis, residual / norm])


def pair_sign_moment(num_features: int, size: int) -> float:
    """E[x_i x_j] for i != j over uniform coalitions of the given size, x = 2z - 1:
    1 - 4 k (S - k) / (S (S - 1)) (the same for a coalition and its complement)."""
    return 1.0 - 4.0 * size * (num_features - size) / (num_features * (num_features - 1))


def _most_balancing(candidates: np.ndarray, imbalance: np.ndarray | None) -> int:
    """Index of the candidate (C, S) bool whose sign vector x least increases the squared
    Frobenius norm of imbalance + x x^T - E: the smallest x^T imbalance x (x x^T - E has
    the same norm for every coalition of one size). The first when not balancing (None)."""
    if imbalance is None or len(candidates) == 1:
        return 0
    signs = 2.0 * candidates - 1.0
    return int(np.argmin(np.einsum("ci,ij,cj->c", signs, imbalance, signs)))


def _record(imbalance: np.ndarray | None, row: np.ndarray, expected: float) -> None:
    """Add a drawn pair's x x^T - E to its stratum's imbalance (S, S) in place (None: not kept)."""
    if imbalance is None:
        return
    signs = 2.0 * row - 1.0
    imbalance += np.outer(signs, signs) - expected
    np.fill_diagonal(imbalance, 0.0)
