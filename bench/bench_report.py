"""The report of a large run: report.html's size, the time to write it and the memory it takes.

Reproduce (any finished run's folder; ``make demo`` writes demo-out):

    .venv/bin/python -m bench.bench_report --run demo-out --copies 100

The run's analysis.json is read and its images repeated ``--copies`` times (the same figure files,
so no new run is needed to stand for a large one); ``explain.report.write_report`` then writes the
page once with its default embedding budget and once embedding everything, each in a fresh
process (its peak resident memory is the process's). Prints a markdown table on stdout.
"""

from __future__ import annotations

import argparse
import copy
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def write_copies(run: Path, copies: int, page: Path, embed_everything: bool) -> dict:
    """Write the report of ``run``'s images repeated ``copies`` times; seconds, peak RSS and page size."""
    from explain.report import write_report

    summary = json.loads((run / "analysis.json").read_text(encoding="utf-8"))
    summary["images"] = [copy.deepcopy(item) for _ in range(copies) for item in summary["images"]]
    summary["totals"]["images"] = len(summary["images"])
    options = {"embed_bytes": 2**62} if embed_everything else {}
    start = time.perf_counter()
    write_report(summary, page, files_dir=run, **options)
    return {"images": len(summary["images"]), "seconds": time.perf_counter() - start,
            "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "page_mib": page.stat().st_size / 2**20}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", type=Path, default=Path("demo-out"), help="a finished run's folder")
    parser.add_argument("--copies", type=int, default=100)
    parser.add_argument("--child", choices=["default", "everything"], help=argparse.SUPPRESS)
    parser.add_argument("--page", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(write_copies(args.run, args.copies, args.page, args.child == "everything")))
        return
    if not (args.run / "analysis.json").is_file():
        raise SystemExit(f"no analysis.json in {args.run}: run `make demo` first, or name a run's folder")
    print(f"Reproduce: .venv/bin/python -m bench.bench_report --run {args.run} --copies {args.copies}\n")
    print("| embedding | images | page MiB | seconds | peak memory MiB |")
    print("|---|---|---|---|---|")
    with tempfile.TemporaryDirectory(prefix="bench-report-") as scratch:
        for variant in ("default", "everything"):
            result = subprocess.run([sys.executable, "-m", "bench.bench_report", "--run", str(args.run),
                                     "--copies", str(args.copies), "--child", variant,
                                     "--page", str(Path(scratch) / f"{variant}.html")],
                                    capture_output=True, text=True, check=True)
            row = json.loads(result.stdout)
            name = "default budget (64 MiB)" if variant == "default" else "everything"
            print(f"| {name} | {row['images']} | {row['page_mib']:.0f} | {row['seconds']:.2f} | "
                  f"{row['peak_rss_mib']:.0f} |")


if __name__ == "__main__":
    main()
