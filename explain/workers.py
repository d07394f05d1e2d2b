"""--workers N: N local processes each explaining one shard of the images, then one merged report."""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import multiprocessing.connection
import os
import signal
import sys
import threading
import time
from collections.abc import Mapping
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import replace
from pathlib import Path

from serving.contract import redact_url

from .config import ExplainConfig
from .errors import ExplainError
from .manifest import claim_out_dir, read_manifests
from .out_lock import OutDirLock
from .predictors import PredictorStats, TransportConfig, build_predictor
from .runner import (
    RunOptions,
    check_same_images,
    merge_outputs,
    prepare_out_dir,
    remove_stale_locks,
    run_explanations,
    without_earlier_outputs,
)
from .sharding import Shard
from .stop_signals import (
    WAKE_SECONDS,
    RunStopped,
    exit_when_parent_exits,
    start_resource_tracker,
    stop_on_signals,
)
from .terminal import log_to_terminal

__all__ = ["run_with_workers"]

logger = logging.getLogger(__name__)

# Seconds the workers get to clean up (their predictors, an extracted model) after SIGTERM before SIGKILL.
STOP_GRACE_SECONDS = 10.0


@contextlib.contextmanager
def _sigint_ignored_by_new_processes():
    """SIGINT ignored while the pool spawns its processes, which inherit that (Python keeps an ignored SIGINT
    ignored): ``_worker`` ignores it too, but only once a spawned process has imported explain, and a Ctrl-C
    during those imports printed a worker's KeyboardInterrupt traceback (a CI run under load). A Ctrl-C in
    the parent during the spawn itself is lost; the next one stops the run."""
    if threading.current_thread() is not threading.main_thread() or signal.getsignal(signal.SIGINT) is None:
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _worker(shard: Shard, sources: list, endpoints: list[str], task: str, transport: TransportConfig,
            config: ExplainConfig, out_dir: str, images_in_flight: int, retry_failed: bool, parent: int) -> dict:
    """One worker process: its own predictor(s), shard ``shard``, its own manifest file.

    SIGTERM or SIGHUP (from the parent stopping, or sent by the worker itself once its parent
    is gone) closes the predictor (removing an extracted model) and ends the process at once,
    its image threads with it (a thread waiting on a model call is abandoned); finished images
    stay in the shard's manifest. SIGINT is ignored: a terminal's Ctrl-C reaches the whole
    process group, and the parent stops the workers with SIGTERM (both signals at once raised
    a second exception inside the first one's handling, and the worker hung).
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    log_to_terminal(logging.WARNING)
    try:
        with stop_on_signals(), exit_when_parent_exits(parent):
            with build_predictor(endpoints, task, transport) as predictor:
                options = RunOptions(images_in_flight=images_in_flight, shard=shard, retry_failed=retry_failed,
                                     merge=False, progress=False)
                counts = run_explanations(sources, predictor, config, out_dir, options)
    except RunStopped as stopped:
        logging.shutdown()
        # not the pool's loop, nor the interpreter's exit, which waits for the image threads
        os._exit(stopped.exit_status)
    return {**counts, "shard": shard.name}


def _stop_workers(pool: ProcessPoolExecutor) -> None:
    """SIGTERM every worker process of ``pool``, then SIGKILL those still running after the grace time."""
    # ProcessPoolExecutor has no public way to end running workers before Python 3.14 (terminate_workers)
    processes = list((getattr(pool, "_processes", None) or {}).values())
    for process in processes:
        if process.is_alive():
            process.terminate()
    deadline = time.monotonic() + STOP_GRACE_SECONDS
    for process in processes:
        # its sentinel, not is_alive(): the pool's own thread may have reaped the process already
        if not multiprocessing.connection.wait([process.sentinel], max(0.0, deadline - time.monotonic())):
            logger.warning("worker process %d did not stop within %g s of SIGTERM: killed", process.pid,
                           STOP_GRACE_SECONDS)
            process.kill()
            process.join(5)


def run_with_workers(sources: list, endpoints: list[str], task: str, transport: TransportConfig,
                     config: ExplainConfig, out_dir: str | Path, workers: int,
                     options: RunOptions, settings_source: Mapping | None = None) -> dict:
    """Explain ``sources`` with ``workers`` spawned processes, shard i of N each, then merge.

    Every worker builds its own predictor(s) from ``endpoints`` (so each has its own
    ``concurrency`` budget) and writes ``manifest-shard-<i>-of-<N>.jsonl``; the merge reads
    every manifest in ``out_dir``. Returns the merged summary with the workers' summed
    request counters under ``predictor`` (and ``settings_source``, as ``run_explanations``).
    """
    started = time.perf_counter()
    out_dir = Path(out_dir)
    # the figures earlier runs wrote (--out the image folder) are no images of this run, in its report either
    sources = without_earlier_outputs(sources, out_dir)
    # --out is claimed, locked (the run's own manifest; each worker locks its shard's) and --restart
    # applied once, before any worker starts; each worker checks the settings with the class names
    # its predictor knows
    claim_out_dir(out_dir, options.allow_non_empty_out)
    with OutDirLock(out_dir):
        return _run_locked(sources, endpoints, task, transport, config, out_dir, workers, options, started,
                           settings_source)


def _run_locked(sources: list, endpoints: list[str], task: str, transport: TransportConfig,
                config: ExplainConfig, out_dir: Path, workers: int, options: RunOptions, started: float,
                settings_source: Mapping | None) -> dict:
    """run_with_workers once --out is claimed and locked.

    Any exception here (a worker's error, Ctrl-C, RunStopped from SIGTERM or SIGHUP) stops the
    other workers before it propagates: none goes on writing into --out on its own.
    """
    remove_stale_locks(out_dir)  # before any worker takes its shard's
    if options.restart:
        prepare_out_dir(out_dir, config, True, options.allow_non_empty_out)
    else:  # refused here, before any worker starts: an earlier image's outputs would be replaced
        check_same_images(sources, read_manifests(out_dir), out_dir)
    context = multiprocessing.get_context("spawn")
    start_resource_tracker()  # before the pool's semaphores register with it: deaf to a closed terminal's SIGHUP
    results = []
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=context)
    try:
        with _sigint_ignored_by_new_processes():
            futures = [pool.submit(_worker, Shard(index, workers), sources, endpoints, task, transport,
                                   config, str(out_dir), options.images_in_flight, options.retry_failed,
                                   os.getpid())
                       for index in range(workers)]
        pending = set(futures)
        while pending:
            done, pending = wait(pending, timeout=WAKE_SECONDS, return_when=FIRST_COMPLETED)
            for future in done:
                result = future.result()
                results.append(result)
                if options.progress:
                    print(f"{result['shard']}: explained {result['explained']}, skipped "
                          f"{result['skipped']} in {result['seconds']:.1f} s", file=sys.stderr)
    except BaseException as error:
        _stop_workers(pool)
        # every worker has ended: the pool's own thread notices and ends too, so this does not wait long; without
        # it the process exited with that thread running and left the pool's semaphores behind (a warning)
        pool.shutdown(wait=True, cancel_futures=True)
        if isinstance(error, BrokenProcessPool):  # one was killed outright (the out-of-memory killer, kill -9)
            raise ExplainError(f"a worker process ended abruptly (killed by a signal: out of memory?), so the run "
                               f"stopped; the images finished so far are kept in {out_dir}: run the same command "
                               "again to resume (with fewer --workers or --images-in-flight if memory ran out)"
                               ) from None
        raise
    pool.shutdown(wait=True)
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
                         tried_now={key for result in results for key in result["tried"]},
                         settings_source=settings_source)
