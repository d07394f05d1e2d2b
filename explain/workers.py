"""--workers N: N local processes each explaining one shard of the images, then one merged report."""

from __future__ import annotations

import logging
import multiprocessing
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import replace
from pathlib import Path

from serving.contract import redact_url

from .config import ExplainConfig
from .manifest import claim_out_dir
from .predictors import PredictorStats, TransportConfig, build_predictor
from .runner import RunOptions, merge_outputs, prepare_out_dir, run_explanations
from .sharding import Shard

__all__ = ["run_with_workers"]

logger = logging.getLogger(__name__)


def _worker(shard: Shard, sources: list, endpoints: list[str], task: str, transport: TransportConfig,
            config: ExplainConfig, out_dir: str, images_in_flight: int, retry_failed: bool) -> dict:
    """One worker process: its own predictor(s), shard ``shard``, its own manifest file."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    with build_predictor(endpoints, task, transport) as predictor:
        options = RunOptions(images_in_flight=images_in_flight, shard=shard, retry_failed=retry_failed,
                             merge=False, progress=False)
        counts = run_explanations(sources, predictor, config, out_dir, options)
    return {**counts, "shard": shard.name}


def run_with_workers(sources: list, endpoints: list[str], task: str, transport: TransportConfig,
                     config: ExplainConfig, out_dir: str | Path, workers: int,
                     options: RunOptions) -> dict:
    """Explain ``sources`` with ``workers`` spawned processes, shard i of N each, then merge.

    Every worker builds its own predictor(s) from ``endpoints`` (so each has its own
    ``concurrency`` budget) and writes ``manifest-shard-<i>-of-<N>.jsonl``; the merge reads
    every manifest in ``out_dir``. Returns the merged summary with the workers' summed
    request counters under ``predictor``.
    """
    started = time.perf_counter()
    out_dir = Path(out_dir)
    # --out is claimed (and --restart applied) once, before any worker starts; each worker checks
    # the settings with the class names its predictor knows
    if options.restart:
        prepare_out_dir(out_dir, config, True, options.allow_non_empty_out)
    else:
        claim_out_dir(out_dir, options.allow_non_empty_out)
    context = multiprocessing.get_context("spawn")
    results = []
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        futures = [pool.submit(_worker, Shard(index, workers), sources, endpoints, task, transport,
                               config, str(out_dir), options.images_in_flight, options.retry_failed)
                   for index in range(workers)]
        try:
            for future in as_completed(futures):
                result = future.result()
                results.append(result)
                if options.progress:
                    print(f"{result['shard']}: explained {result['explained']}, skipped "
                          f"{result['skipped']} in {result['seconds']:.1f} s", file=sys.stderr)
        except BaseException:
            for future in futures:
                future.cancel()
            raise
    label_headers = next((item["label_headers"] for item in results if item["label_headers"]), None)
    if config.label_headers is None and label_headers:
        config = replace(config, label_headers=tuple(label_headers))
    stats = [item["predictor"] for item in results if item["predictor"]]
    predictor = None
    if stats:
        totals = PredictorStats.total(PredictorStats.from_dict(item) for item in stats)
        predictor = {"transport": f"{workers} workers", "endpoint": ", ".join(map(redact_url, endpoints)),
                     **totals.to_dict(), "workers": stats}
    return merge_outputs(out_dir, config, [source.key for source in sources],
                         seconds=time.perf_counter() - started,
                         explained_now=sum(item["explained"] for item in results), predictor=predictor,
                         tried_now={key for result in results for key in result["tried"]})
