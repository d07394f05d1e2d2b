"""Shapley value estimators against exact values on games they were not tuned on.

Reproduce (needs `pip install -r bench/requirements.txt`: shap, xgboost; the model games'
2**16 forward passes are cached under build/estimator-games/, or ``--game-cache DIR`` /
$CLEARSIGHT_GAME_CACHE; ``--enumerate-only`` fills that cache and estimates nothing):

    .venv/bin/python -m bench.bench_estimator --root-seed N        # the full table
    .venv/bin/python -m bench.bench_estimator --quick               # development subset

Games (bench/estimator_games.py): six synthetic families at S = 12, 16, 20 and the shipped
classifier's and detector's games on fresh scenes at S = 12, 16, all drawn from
``--root-seed``; exact Shapley values by enumerating all 2**S coalitions. Every estimator
(bench/estimator_peers.py) gets the same budgets, counting every evaluation (anchors
included), and ``--seeds`` seeds per game and budget. Per row (family, S), over its games
and seeds:

* relative L2 error ||phi_hat - phi|| / ||phi||, mean over games and seeds;
* the ratio of clearsight's to shap KernelExplainer's mean error at 250 and 500;
* coverage: the share of true values inside clearsight's intervals phi_hat ± 1.96 SE
  (a value off by less than 1e-9 ||phi|| counts as inside: floating point, not an error);
* model calls to reach 5% relative error, interpolated log-log on the budget grid (">2000"
  when not reached).

Errors and coverage are deterministic for a root seed; timings are not (the machine is
shared), so they are reported as ratios measured side by side (``--timing``).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time

import numpy as np

from .estimator_games import CACHE_ENV, DEFAULT_CACHE_DIR, FAMILIES, MODEL_FAMILIES, game_tables
from .estimator_peers import PEERS

logger = logging.getLogger(__name__)

BUDGETS = (100, 250, 500, 1000, 2000)
REFERENCE = "shap KernelExplainer"
OURS = "clearsight"
TARGET_ERROR = 0.05
EXACT_TOLERANCE = 1e-9


def run(tables, estimators: list[str], budgets: list[int], seeds: int, root_seed: int) -> dict:
    """Errors (and clearsight's coverage) per game, estimator, budget and seed."""
    records = []
    seconds = {name: 0.0 for name in estimators}
    for game_index, table in enumerate(tables):
        norm = float(np.linalg.norm(table.shapley))
        for budget in budgets:
            for seed_index in range(seeds):
                seed = int(np.random.default_rng([root_seed, game_index, budget, seed_index]).integers(2**31))
                for name in estimators:
                    started = time.process_time()
                    answer = PEERS[name](table, table.num_features, budget, seed)
                    seconds[name] += time.process_time() - started
                    values, errors = answer if isinstance(answer, tuple) else (answer, None)
                    error = values - table.shapley
                    record = {"game": table.name, "family": table.family, "S": table.num_features,
                              "budget": budget, "seed": seed, "estimator": name,
                              "relative_error": float(np.linalg.norm(error) / norm) if norm > 0 else 0.0}
                    if errors is not None:
                        inside = np.abs(error) <= 1.96 * errors + EXACT_TOLERANCE * max(norm, 1e-300)
                        record["covered"] = int(inside.sum())
                        record["intervals"] = int(inside.size)
                    records.append(record)
        logger.info("%s done", table.name)
    return {"records": records, "cpu_seconds": seconds}


def _calls_to(errors: dict[int, float], target: float) -> float | None:
    """Budget at which the mean error first reaches ``target`` (log-log interpolation)."""
    budgets = sorted(errors)
    previous = None
    for budget in budgets:
        if errors[budget] <= target:
            if previous is None or errors[previous] <= 0:
                return float(budget) if previous is None else float(budget)
            slope = (np.log(errors[budget]) - np.log(errors[previous])) / (np.log(budget) - np.log(previous)) \
                if errors[budget] > 0 else None
            if slope is None or slope >= 0:
                return float(budget)
            return float(np.exp(np.log(previous) + (np.log(target) - np.log(errors[previous])) / slope))
        previous = budget
    return None


def summarise(result: dict, estimators: list[str], budgets: list[int]) -> list[dict]:
    """One row per (family, S) with mean errors per estimator and budget, coverage, calls."""
    rows = {}
    for record in result["records"]:
        key = (record["family"], record["S"])
        row = rows.setdefault(key, {"family": record["family"], "S": record["S"], "errors": {},
                                    "covered": {}, "intervals": {}, "games": set()})
        row["games"].add(record["game"])
        row["errors"].setdefault((record["estimator"], record["budget"]), []).append(record["relative_error"])
        if record["estimator"] == OURS:
            row.setdefault("worst", {})
            row["worst"][record["budget"]] = max(row["worst"].get(record["budget"], 0.0),
                                                 record["relative_error"])
        if record["estimator"] == OURS and "covered" in record:  # other peers may give errors too
            row["covered"][record["budget"]] = row["covered"].get(record["budget"], 0) + record["covered"]
            row["intervals"][record["budget"]] = row["intervals"].get(record["budget"], 0) + record["intervals"]
    summary = []
    for (family, num_features), row in rows.items():
        mean = {key: float(np.mean(values)) for key, values in row["errors"].items()}
        entry = {"family": family, "S": num_features, "games": len(row["games"]), "mean_error": mean,
                 "coverage": {budget: row["covered"][budget] / row["intervals"][budget]
                              for budget in row["covered"]},
                 "intervals": row["intervals"],
                 "exact": {budget: worst <= EXACT_TOLERANCE for budget, worst in row.get("worst", {}).items()},
                 "calls_to_target": {name: _calls_to({b: mean[(name, b)] for b in budgets if (name, b) in mean},
                                               TARGET_ERROR)
                                     for name in estimators}}
        entry["ratio"] = {}
        for budget in budgets:
            if (OURS, budget) in mean and (REFERENCE, budget) in mean:
                ours, reference = mean[(OURS, budget)], mean[(REFERENCE, budget)]
                entry["ratio"][budget] = None if reference <= EXACT_TOLERANCE else ours / reference
        summary.append(entry)
    return summary


def _call_ratios(summary: list[dict], budgets: list[int]) -> tuple[list[float], list[float]]:
    """Per row where shap's KernelExplainer needs more than the smallest budget, clearsight's
    calls to 5% error over shap's: (rows both finish within the grid, every row with a
    bound). A row that one of them does not finish gets the bound least favourable to
    clearsight (ours / the largest budget when shap does not finish: the true ratio is below
    it; the largest budget / shap's calls when we do not: the true ratio is above it); rows
    neither finishes are left out of both."""
    finished, bounded = [], []
    for row in summary:
        ours, reference = row["calls_to_target"].get(OURS), row["calls_to_target"].get(REFERENCE)
        if (ours is None and reference is None) or (reference is not None and reference <= min(budgets)):
            continue
        if ours is not None and reference is not None:
            finished.append(ours / reference)
        bounded.append((ours if ours is not None else max(budgets))
                       / (reference if reference is not None else max(budgets)))
    return finished, bounded


def _coverage_resolution(summary: list[dict], budgets: list[int]) -> tuple[float, float, list[str]]:
    """What the coverage check can tell apart: for intervals that cover exactly 95% of
    independent true values, the expected number of cells (budgets >= 200, not exact) outside
    [0.90, 0.99] and the probability that none is, with each cell's own count of intervals; and
    the cells whose count covered is unlikely (two-sided binomial test, p < 0.01) under 0.95."""
    from scipy.stats import binom, binomtest

    expected_outside, all_inside, rejected = 0.0, 1.0, []
    for row in summary:
        for budget in budgets:
            if budget < 200 or budget not in row["coverage"] or row["exact"].get(budget):
                continue
            count = row["intervals"][budget]
            inside = (binom.cdf(np.floor(0.99 * count + 1e-9), count, 0.95)
                      - binom.cdf(np.ceil(0.90 * count - 1e-9) - 1, count, 0.95))
            expected_outside += 1.0 - inside
            all_inside *= inside
            covered = round(row["coverage"][budget] * count)
            test = binomtest(covered, count, 0.95)
            if test.pvalue < 0.01:
                rejected.append(f"{row['family']} S={row['S']} @{budget} {covered}/{count} (p={test.pvalue:.3f})")
    return float(expected_outside), float(all_inside), rejected


def _calls_text(calls: float | None, budgets: list[int]) -> str:
    if calls is None:
        return f">{max(budgets)}"
    if calls <= min(budgets):
        return f"<={min(budgets)}"
    return f"{calls:.0f}"


def print_tables(summary: list[dict], estimators: list[str], budgets: list[int], command: str,
                 result: dict, seeds: int, root_seed: int) -> None:
    print(f"<!-- {command} -->")
    print(f"Root seed {root_seed}; {seeds} seeds per game and budget; budgets {', '.join(map(str, budgets))}"
          " (model calls, anchors included).\n")
    ratio_budgets = [b for b in (250, 500) if b in budgets]
    header = ["family", "S", "games", *[f"clearsight @{b}" for b in budgets],
              *[f"÷ shap Kernel @{b}" for b in ratio_budgets],
              *[f"coverage @{b}" for b in budgets], "calls to 5%: clearsight / shap Kernel"]
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join("---" for _ in header) + "|")
    for row in summary:
        ratio_cells = []
        for budget in ratio_budgets:
            ratio = row["ratio"].get(budget)
            ratio_cells.append("both exact" if ratio is None else f"{ratio:.2f}")
        calls = row["calls_to_target"]
        print("| " + " | ".join([
            row["family"], str(row["S"]), str(row["games"]),
            *[f"{row['mean_error'][(OURS, b)]:.4f}" for b in budgets], *ratio_cells,
            *[("exact" if row["exact"].get(b) else f"{row['coverage'][b]:.2f}") for b in budgets],
            f"{_calls_text(calls.get(OURS), budgets)} / {_calls_text(calls.get(REFERENCE), budgets)}"]) + " |")
    print("\nMean relative L2 error of every estimator (@" + " / @".join(map(str, ratio_budgets)) + "):\n")
    header = ["family", "S", *estimators]
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join("---" for _ in header) + "|")
    for row in summary:
        cells = [" / ".join(f"{row['mean_error'][(name, b)]:.4f}" for b in ratio_budgets) for name in estimators]
        print("| " + " | ".join([row["family"], str(row["S"]), *cells]) + " |")
    print("\nSummary:")
    for budget in ratio_budgets:
        ratios = [row["ratio"][budget] for row in summary if row["ratio"].get(budget) is not None]
        if ratios:
            worst = max(range(len(ratios)), key=lambda i: ratios[i])
            rows_with = [row for row in summary if row["ratio"].get(budget) is not None]
            print(f"- error ratio clearsight / shap Kernel @{budget}: median {np.median(ratios):.2f}, "
                  f"worst {ratios[worst]:.2f} ({rows_with[worst]['family']} S={rows_with[worst]['S']}), "
                  f"rows above 0.8: {sum(r > 0.8 for r in ratios)} of {len(ratios)}")
    for name in estimators:  # every other estimator against the reference, same rows
        if name in (REFERENCE, OURS):
            continue
        cells = []
        for budget in ratio_budgets:
            peer = [row["mean_error"][(name, budget)] / row["mean_error"][(REFERENCE, budget)]
                    for row in summary if row["ratio"].get(budget) is not None
                    and row["mean_error"][(REFERENCE, budget)] > 0]
            if peer:
                cells.append(f"@{budget} median {np.median(peer):.2f}, above 0.8 in "
                             f"{sum(r > 0.8 for r in peer)} of {len(peer)} rows")
        if cells:
            print(f"- {name} / shap Kernel: " + "; ".join(cells))
    coverages = [(row["coverage"][b], row["family"], row["S"], b) for row in summary for b in budgets
                 if b >= 200 and b in row["coverage"] and not row["exact"].get(b)]
    if coverages:
        low, high = min(coverages), max(coverages)
        outside = [c for c in coverages if not 0.90 <= c[0] <= 0.99]
        print(f"- coverage at budgets >= 200 (cells where clearsight is not exact): {low[0]:.2f} ({low[1]} S={low[2]} @{low[3]}) .. "
              f"{high[0]:.2f} ({high[1]} S={high[2]} @{high[3]}); cells outside [0.90, 0.99]: "
              f"{len(outside)} of {len(coverages)}")
        by_chance, all_inside, rejected = _coverage_resolution(summary, budgets)
        print(f"- resolution of that check: exactly calibrated 95% intervals (independent values, as many per "
              f"cell as here) would leave {by_chance:.1f} cells outside [0.90, 0.99] by chance, all inside with "
              f"probability {all_inside:.2f}; cells whose coverage differs from 0.95 at two-sided binomial "
              f"p < 0.01: " + (", ".join(rejected) if rejected else "none"))
    call_ratios, bounded = _call_ratios(summary, budgets)
    if call_ratios:
        print(f"- calls to 5% error, clearsight / shap Kernel, rows where both reach it within the grid "
              f"and shap needs more than {min(budgets)}: median {np.median(call_ratios):.2f}, "
              f"worst {max(call_ratios):.2f} ({len(call_ratios)} rows)")
    if bounded:
        print(f"- the same over every row where shap needs more than {min(budgets)} calls, rows that one "
              f"estimator does not finish within {max(budgets)} calls included at the bound that is least "
              f"favourable to clearsight (its calls / {max(budgets)} when shap does not finish, "
              f"{max(budgets)} / shap's calls when clearsight does not; neither: left out): median "
              f"{np.median(bounded):.2f} ({len(bounded)} rows)")
    cpu = result["cpu_seconds"]
    if REFERENCE in cpu and cpu[REFERENCE] > 0:
        print("- estimator CPU time over the whole run, relative to shap Kernel (shared machine): "
              + ", ".join(f"{name} {cpu[name] / cpu[REFERENCE]:.2f}" for name in estimators))


def timing(repeats: int = 7) -> None:
    """Per-image estimator CPU time, S=20, T=3, 500 samples, side by side: the first estimator
    (bench/kernel_shap_old.py), the parity regression alone (no trees) and the current one."""
    from explain.kernel_shap import kernel_shap

    from .kernel_shap_old import kernel_shap as kernel_shap_old

    rng = np.random.default_rng(0)
    weights = rng.normal(size=(3, 20))
    important = [rng.choice(20, 4, replace=False) for _ in range(3)]

    def game(z):
        z = z.astype(np.float64)
        return np.stack([1.0 / (1.0 + np.exp(-(z @ weights[t] + 3 * z[:, important[t]].prod(axis=1))))
                         for t in range(3)], axis=1)

    def regression_only(evaluate, num_features, num_samples, rng):
        return kernel_shap(evaluate, num_features, num_samples, rng, tree_surrogate=False)

    estimators = (("old", kernel_shap_old), ("no trees", regression_only), ("new", kernel_shap))
    times = {name: [] for name, _ in estimators}
    for repeat in range(repeats):
        for name, estimator in estimators:
            started = time.process_time()
            estimator(game, 20, 500, np.random.default_rng(repeat))
            times[name].append(time.process_time() - started)
    medians = {name: float(np.median(values)) for name, values in times.items()}
    print(f"per-image estimator CPU time (S=20, T=3, 500 samples, median of {repeats}, interleaved, "
          "shared machine): " + ", ".join(f"{name} {value:.3f} s" for name, value in medians.items())
          + f"; new / no trees {medians['new'] / medians['no trees']:.2f}, "
          f"old / new {medians['old'] / medians['new']:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root-seed", type=int, default=None,
                        help="seed of the games and estimator seeds (default: drawn fresh and printed)")
    parser.add_argument("--quick", action="store_true",
                        help="development subset: 2 seeds, budgets 250 500, one game per row, S 12 16")
    parser.add_argument("--families", nargs="+", default=list(FAMILIES), choices=FAMILIES)
    parser.add_argument("--sizes", type=int, nargs="+", default=[12, 16, 20])
    parser.add_argument("--model-sizes", type=int, nargs="+", default=[12, 16])
    parser.add_argument("--instances", type=int, default=3, help="games per synthetic family and S")
    parser.add_argument("--model-instances", type=int, nargs="+", default=[2, 1],
                        help="scenes per model family at each --model-sizes entry")
    parser.add_argument("--budgets", type=int, nargs="+", default=list(BUDGETS))
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--estimators", nargs="+", default=list(PEERS), choices=list(PEERS))
    parser.add_argument("--json", default=None, help="write every record to this file")
    parser.add_argument("--timing", action="store_true",
                        help="only the per-image CPU time of old, no-trees and current estimators")
    parser.add_argument("--from-json", nargs="+", default=None,
                        help="print the tables from the records of earlier --json runs (no estimation)")
    parser.add_argument("--game-cache", default=None,
                        help=f"folder of the model games' cached tables (default: ${CACHE_ENV}, else "
                             f"{DEFAULT_CACHE_DIR}/)")
    parser.add_argument("--enumerate-only", action="store_true",
                        help="compute (or load) the games' tables and exit: fills the cache")
    parser.add_argument("--verbose", "-v", action="store_true")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, stream=sys.stderr,
                        format="%(asctime)s %(message)s")
    logging.getLogger("shap").setLevel(logging.WARNING)  # it logs every explained row at INFO
    if args.timing:
        timing()
        return
    if args.from_json:
        records, roots = [], []
        for path in args.from_json:
            with open(path) as handle:
                saved = json.load(handle)
            records += saved["records"]
            roots.append(saved["root_seed"])
            print(f"<!-- {saved.get('command', path)} -->")
        estimators = [name for name in PEERS if any(r["estimator"] == name for r in records)]
        budgets = sorted({r["budget"] for r in records})
        seeds = len(records) // max(1, len({(r["game"], r["budget"], r["estimator"]) for r in records}))
        result = {"records": records, "cpu_seconds": {}}
        summary = summarise(result, estimators, budgets)
        command = (".venv/bin/python -m bench.bench_estimator --from-json " + " ".join(args.from_json))
        print_tables(summary, estimators, budgets, command, result, seeds, roots[0])
        return
    if args.quick:
        args.seeds, args.budgets, args.instances = 2, [250, 500], 1
        args.sizes, args.model_sizes, args.model_instances = [12, 16], [12], [1]
    root_seed = args.root_seed if args.root_seed is not None else int(np.random.SeedSequence().entropy % 10**6)
    model_instances = dict(zip(args.model_sizes, args.model_instances + [args.model_instances[-1]] * 9))
    tables = []
    for family in args.families:
        if family in MODEL_FAMILIES:
            for size in args.model_sizes:
                tables += game_tables([family], [], 0, model_instances[size], [size], root_seed,
                                      args.game_cache)
        else:
            tables += game_tables([family], args.sizes, args.instances, 0, [], root_seed)
    if args.enumerate_only:
        print(f"root seed {root_seed}: {len(tables)} games ready: "
              + ", ".join(table.name for table in tables))
        return
    estimators = [name for name in PEERS if name in args.estimators]
    started = time.perf_counter()
    result = run(tables, estimators, args.budgets, args.seeds, root_seed)
    summary = summarise(result, estimators, args.budgets)
    command = (f".venv/bin/python -m bench.bench_estimator --root-seed {root_seed}"
               + (" --quick" if args.quick else
                  f" --families {' '.join(args.families)} --sizes {' '.join(map(str, args.sizes))}"
                  f" --model-sizes {' '.join(map(str, args.model_sizes))} --instances {args.instances}"
                  f" --model-instances {' '.join(map(str, args.model_instances))}"
                  f" --budgets {' '.join(map(str, args.budgets))} --seeds {args.seeds}")
               + ("" if estimators == list(PEERS) else f" --estimators {' '.join(repr(e) for e in estimators)}"))
    print_tables(summary, estimators, args.budgets, command, result, args.seeds, root_seed)
    print(f"\n{len(tables)} games, {time.perf_counter() - started:.0f} s.")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump({"root_seed": root_seed, "command": command, "records": result["records"],
                       "cpu_seconds": result["cpu_seconds"]}, handle)


if __name__ == "__main__":
    main()
