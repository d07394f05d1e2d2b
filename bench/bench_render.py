"""Time the client spends writing an explanation's figures (``explain.render.render_explanation``).

Reproduce (``make demo`` first: it writes the explanations of the shipped detector to demo-out):

    .venv/bin/python -m bench.bench_render --runs 7

Each of ``--runs`` runs starts a fresh process that loads every ``*_shap.npz`` under
``--explanations``, renders one of them as a warm-up, then renders each into a temporary folder,
image after image, timing each (what an explanation run does after each image's last model call);
the table shows each image's median over the runs. ``--against CHECKOUT`` times another
checkout's code too, side by side: each run starts one such process per checkout, in turns (the
two share whatever load the machine has), the ratio of their per-image medians is the headline,
and the two checkouts' files are compared byte for byte. Prints a markdown table on stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def explanation_files(folder: Path) -> list[Path]:
    files = sorted(folder.rglob("*_shap.npz"))
    if not files:
        raise SystemExit(f"no *_shap.npz under {folder}: run `make demo` first (it writes demo-out)")
    return files


def time_renders(files: list[Path], out: Path) -> dict[str, float]:
    """Render each explanation once into ``out``: {file name: seconds}."""
    from explain.explainer import Explanation
    from explain.render import render_explanation

    explanations = [(path, Explanation.load(path)) for path in files]
    warm_up = out / "warm-up"  # imports, fonts and caches: not what each image costs
    warm_up.mkdir(exist_ok=True)
    render_explanation(explanations[0][1], "warm-up", warm_up)
    seconds = {}
    for path, explanation in explanations:
        stem = path.name[:-len("_shap.npz")]
        start = time.perf_counter()
        render_explanation(explanation, stem, out)
        seconds[str(path)] = time.perf_counter() - start
    return seconds


def _one_run(checkout: Path, files: list[Path], out: Path) -> dict[str, float]:
    """One process of ``checkout``'s code renders every file once; {file: seconds}."""
    # This file runs as a script (the other checkout may not have it) with the checkout's packages first.
    command = [sys.executable, __file__, "--child", str(out), *map(str, files)]
    result = subprocess.run(command, cwd=checkout, capture_output=True, text=True,
                            env={**os.environ, "PYTHONPATH": str(checkout)})
    if result.returncode:
        raise SystemExit(f"{checkout}: {' '.join(command)} failed:\n{result.stderr}")
    answer = json.loads(result.stdout)
    if not Path(answer["module"]).is_relative_to(checkout):
        raise SystemExit(f"{checkout}: the child imported {answer['module']}, not that checkout's")
    return answer["seconds"]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--explanations", type=Path, default=Path("demo-out"),
                        help="folder searched for *_shap.npz (default demo-out, written by `make demo`)")
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--against", type=Path, help="another checkout to time side by side (e.g. a git worktree)")
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("files", nargs="*", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child is not None:
        import explain.render

        print(json.dumps({"module": explain.render.__file__, "seconds": time_renders(args.files, args.child)}))
        return

    files = [path.resolve() for path in explanation_files(args.explanations)]
    checkouts = {"this checkout": REPO}
    if args.against is not None:
        checkouts["--against"] = args.against.resolve()
    command = f".venv/bin/python -m bench.bench_render --runs {args.runs}" + (
        f" --explanations {shlex.quote(str(args.explanations))}" if args.explanations != Path("demo-out") else "") + (
        f" --against {shlex.quote(str(args.against))}" if args.against is not None else "")
    print(f"Reproduce: {command}\n")
    times: dict[str, list[dict[str, float]]] = {name: [] for name in checkouts}
    with tempfile.TemporaryDirectory(prefix="bench-render-") as scratch:
        outs = {name: Path(scratch) / str(number) for number, name in enumerate(checkouts)}
        for run in range(args.runs):
            for name, checkout in (checkouts.items() if run % 2 == 0 else reversed(checkouts.items())):
                out = outs[name]
                out.mkdir(exist_ok=True)
                times[name].append(_one_run(checkout, files, out))
            print(f"run {run + 1} of {args.runs} done", file=sys.stderr)
        same = None
        if len(checkouts) == 2:
            first, second = outs.values()
            names = sorted(path.name for path in first.glob("*.jpeg"))
            same = sum((first / name).read_bytes() == (second / name).read_bytes() for name in names), len(names)

    medians = {name: {str(path): statistics.median(run[str(path)] for run in runs) for path in files}
               for name, runs in times.items()}
    names = list(checkouts)
    print("| explanation | targets | " + " | ".join(f"{name}: median s" for name in names)
          + (" | ratio |" if len(names) == 2 else " |"))
    print("|---|---|" + "---|" * len(names) + ("---|" if len(names) == 2 else ""))
    from explain.explainer import Explanation

    for path in files:
        row = [medians[name][str(path)] for name in names]
        ratio = f" {row[0] / row[1]:.2f} |" if len(names) == 2 else ""
        targets = Explanation.load(path).num_targets
        print(f"| {path.relative_to(args.explanations.resolve())} | {targets} | "
              + " | ".join(f"{value:.3f}" for value in row) + " |" + ratio)
    per_image = {name: statistics.median(medians[name].values()) for name in names}
    print()
    for name in names:
        print(f"- {name} ({checkouts[name]}): median {per_image[name]:.3f} s per image over {len(files)} images, "
              f"{args.runs} runs")
    if len(names) == 2:
        ratios = [medians[names[0]][str(path)] / medians[names[1]][str(path)] for path in files]
        print(f"- ratio this checkout / --against: median {statistics.median(ratios):.2f} "
              f"({min(ratios):.2f} .. {max(ratios):.2f}); figures byte-identical: {same[0]} of {same[1]}")


if __name__ == "__main__":
    main()
