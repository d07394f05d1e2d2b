"""The estimator's own CPU time per image as segments, targets and model calls grow.

Reproduce with:  .venv/bin/python -m bench.bench_estimator_cpu [--repeats 3]

Each case runs ``explain.kernel_shap.kernel_shap`` (the default estimator: regression, tree
surrogates, shrinkage) on a synthetic game with T outputs over S segments (a sigmoid of a
linear plus a squared term, so no output is fitted exactly and every one gets its trees) and
reports the median process CPU time of ``--repeats`` runs. The game costs microseconds per
call, so the time is the estimator's: what the explainer adds to every image on top of the
model's forward passes.
"""
import statistics
import time

import click
import numpy as np

from explain.kernel_shap import kernel_shap

# (segments, targets, model calls): the defaults (20 segments, up to 3 boxes, 500 calls), then more
CASES = ((20, 3, 500), (50, 10, 500), (50, 50, 500), (100, 50, 1000), (200, 20, 2000))


def _game(num_features: int, num_outputs: int, seed: int):
    rng = np.random.default_rng(seed)
    linear, squared = rng.normal(size=(2, num_features, num_outputs)) / np.sqrt(num_features)

    def evaluate(coalitions: np.ndarray) -> np.ndarray:
        z = coalitions.astype(np.float64)
        return 1.0 / (1.0 + np.exp(-(z @ linear + (z @ squared) ** 2)))
    return evaluate


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--repeats", type=click.IntRange(1), default=3, show_default=True, help="Runs per case (median).")
def main(repeats):
    print(f"command: .venv/bin/python -m bench.bench_estimator_cpu --repeats {repeats}")
    print("| segments | targets | model calls | estimator CPU s per image (median) |")
    print("|---|---|---|---|")
    for num_features, num_outputs, calls in CASES:
        evaluate = _game(num_features, num_outputs, seed=num_features * 1000 + num_outputs)
        seconds = []
        for repeat in range(repeats):
            started = time.process_time()
            kernel_shap(evaluate, num_features, calls, np.random.default_rng(repeat))
            seconds.append(time.process_time() - started)
        print(f"| {num_features} | {num_outputs} | {calls} | {statistics.median(seconds):.2f} |", flush=True)


if __name__ == "__main__":
    main()
