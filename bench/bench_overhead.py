"""Overhead of explaining through the local endpoint: explanation wall time over in-process forward time.

Reproduce (the shipped detector must exist in models/shapes-detector):

    .venv/bin/python -m bench.bench_overhead --runs 5

One fresh 320 px shapes scene is explained at 500 samples (Clarify's defaults otherwise)
through the local endpoint (``deploy.local_endpoint.LocalEndpoint``: multi-model-server
and the SageMaker MXNet handler, one worker) with ``explain.predictors.HttpPredictor`` at
its defaults (npy requests packed up to 6,291,456 bytes, JSON answers, 4 requests in
flight). Every masked batch the explainer sends is recorded; the baseline is the time of
the serving handler's forward passes (``serving.handler.model_fn`` then
``ServedModel.predict``) over exactly those images, in this process, split into the same
per-request batches, with the endpoint's thread count, measured just before and just
after each endpoint run and averaged (other processes' load drifts). The ratio's median
over the runs is the headline. Also shown: the whole explanation
with the in-process predictor, and where the endpoint run's time went. Prints a markdown
table on stdout, progress on stderr.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from examples.shapes.dataset import generate_scene

logger = logging.getLogger(__name__)

DEFAULT_MODEL = "models/shapes-detector"
IMAGE_SEED = 777_001  # the localisation benchmark's scenes; never used in training
IMAGE_SIZE = 320
TARGET_RATIO = 1.15


class RecordingPredictor:
    """Passes batches to ``predict`` and keeps them: ``batches`` is a list of (N, H, W, 3) uint8."""

    def __init__(self, predict) -> None:
        self.predict = predict
        self.batches: list[np.ndarray] = []

    def request_plan(self, image_shape):
        """The wrapped adapter's plan, so the explainer pipelines its calls as it would unwrapped."""
        plan = getattr(self.predict, "request_plan", None)
        return plan(image_shape) if plan is not None else None

    def __call__(self, batch: np.ndarray):
        self.batches.append(batch)  # list.append is atomic: calls may come from several threads
        return self.predict(batch)


def forward_seconds(model, batches: list[np.ndarray], per_request: int) -> float:
    """Seconds of ``model.predict`` over ``batches``, each split into chunks of ``per_request`` images."""
    total = 0.0
    for batch in batches:
        for start in range(0, len(batch), per_request):
            chunk = batch[start:start + per_request]
            started = time.perf_counter()
            model.predict(chunk)
            total += time.perf_counter() - started
    return total


def _process_tree(root: int) -> list[int]:
    """Pids of ``root`` and all its descendants (read from /proc)."""
    parents = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            parents.setdefault(int(fields[1]), []).append(int(entry.name))
    tree, queue = [], [root]
    while queue:
        pid = queue.pop()
        tree.append(pid)
        queue.extend(parents.get(pid, []))
    return tree


def _pin(pid: int, cores: set[int]) -> None:
    """Pin every thread of process ``pid`` to ``cores`` (threads created later inherit it)."""
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            os.sched_setaffinity(int(task.name), cores)
        except OSError:  # the thread ended meanwhile
            pass


class CorePinning:
    """--pin: the endpoint's inference worker alone on core 0 (as a model on its own accelerator
    would be), MMS's Java frontend and this process (the explainer) on core 1; in-process
    forward passes are timed on core 0 too, so both sides of the ratio get one core to compute."""

    def __init__(self, endpoint) -> None:
        pids = _process_tree(endpoint.process.pid)
        self.workers = [pid for pid in pids
                        if b"model_service_worker" in Path(f"/proc/{pid}/cmdline").read_bytes()]
        if not self.workers:
            raise SystemExit("--pin: no MMS inference worker process found under the endpoint")
        for pid in pids:
            _pin(pid, {0} if pid in self.workers else {1})
        self.explainer()

    def explainer(self) -> None:
        _pin(os.getpid(), {1})

    def forward(self) -> None:
        _pin(os.getpid(), {0})


def model_log(endpoint) -> Path:
    """MMS's own log, where the Python workers' output lands (``server.log`` keeps warnings only)."""
    return Path(endpoint.scratch) / "logs" / "mms_log.log"


def handler_seconds(log_path: Path, offset: int) -> tuple[float, int]:
    """Sum of the handler's own "answered in X ms" times logged after byte ``offset``, and their count.

    The toolkit's log4j2 config writes each worker line to mms_log.log twice (two loggers share the
    appender; with several workers not always next to each other): equal lines (same millisecond
    timestamp, worker, batch and time) are counted once.
    """
    with open(log_path, "rb") as handle:
        handle.seek(offset)
        text = handle.read().decode("utf-8", errors="replace")
    lines = dict.fromkeys(line for line in text.splitlines() if "answered in" in line)
    times = [float(re.search(r"answered in ([0-9.]+) ms", line).group(1)) for line in lines]
    return sum(times) / 1000.0, len(times)


def with_short_side(model_dir: str, short_side: int | None, scratch: Path) -> str:
    """``model_dir``, or a copy of it in ``scratch`` whose model.json resizes to ``short_side``."""
    import json
    import shutil

    if short_side is None:
        return model_dir
    shutil.copytree(model_dir, scratch)
    spec_path = scratch / "model.json"
    spec = json.loads(spec_path.read_text())
    spec["preprocess"]["short_side"] = short_side
    spec["preprocess"]["max_size"] = max(spec["preprocess"].get("max_size", short_side), short_side)
    spec_path.write_text(json.dumps(spec, indent=2))
    return str(scratch)


def first_scene_with_a_target(predict, seed: int, probability_threshold: float) -> tuple[int, np.ndarray]:
    """(index, (H, W, 3) uint8) of the first generated scene with a detection >= the threshold."""
    rng = np.random.default_rng(seed)
    for index in range(100):
        image = generate_scene(rng, IMAGE_SIZE, IMAGE_SIZE).image
        rows = predict(image[None])[0]
        if len(rows) and rows[:, 1].max() >= probability_threshold:
            return index, image
    raise SystemExit(f"no detection >= {probability_threshold} in 100 scenes of seed {seed}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", default=DEFAULT_MODEL)
    parser.add_argument("--runs", type=int, default=5, help="alternating endpoint / in-process runs")
    parser.add_argument("--num-samples", type=int, default=500)
    parser.add_argument("--seed", type=int, default=IMAGE_SEED, help="scene seed")
    parser.add_argument("--concurrency", type=int, default=4, help="HttpPredictor requests in flight")
    parser.add_argument("--accept", default="application/json", help="response type asked for")
    parser.add_argument("--workers", type=int, default=1, help="MMS workers")
    parser.add_argument("--threads", type=int, default=None,
                        help="threads per worker and in process (default: cores / workers)")
    parser.add_argument("--probability-threshold", type=float, default=0.5)
    parser.add_argument("--batch-size", type=int, default=None,
                        help="masked images per predictor call (default: ExplainConfig's)")
    parser.add_argument("--pin", action="store_true",
                        help="pin the endpoint's worker to core 0 and the explainer to core 1 (and time "
                             "in-process forward passes on core 0): a stand-in for an endpoint with its "
                             "own accelerator; needs 2 cores and --threads 1")
    parser.add_argument("--short-side", type=int, default=None,
                        help="serve the detector at this input short side instead of its model.json's "
                             "(a costlier forward pass per image, same weights)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(asctime)s %(message)s")

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    threads = args.threads or max(1, cores // args.workers)
    # the in-process baseline gets the thread count of one endpoint worker (set before mxnet loads)
    os.environ["OMP_NUM_THREADS"] = str(threads)
    os.environ["MXNET_CPU_WORKER_NTHREADS"] = str(threads)

    # imported once OMP_NUM_THREADS / MXNET_CPU_WORKER_NTHREADS are set: mxnet reads them when it loads
    from deploy.local_endpoint import LocalEndpoint
    from deploy.package import package_model_dir
    from explain.config import ExplainConfig
    from explain.explainer import explain_image
    from explain.predictors import (
        NPY,
        HttpPredictor,
        InProcessPredictor,
        TransportConfig,
        images_per_request,
    )
    from serving.handler import model_fn

    config = ExplainConfig(task="detection", num_samples=args.num_samples,
                           probability_threshold=args.probability_threshold,
                           **({} if args.batch_size is None else {"batch_size": args.batch_size}))
    per_request = images_per_request((IMAGE_SIZE, IMAGE_SIZE, 3), NPY, 6_291_456)
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-overhead-") as scratch:
        model_dir = with_short_side(args.model_dir, args.short_side, Path(scratch) / "model")
        model = model_fn(model_dir)
        in_process = InProcessPredictor(model_dir, "detection", batch_size=per_request)
        scene_index, image = first_scene_with_a_target(in_process, args.seed, args.probability_threshold)
        archive = package_model_dir(model_dir, Path(scratch) / "model.tar.gz", check=False).archive
        print(f"starting the local endpoint ({args.workers} worker(s) x {threads} thread(s))", file=sys.stderr)
        with LocalEndpoint(archive, workers=args.workers, threads=threads) as endpoint:
            pinning = CorePinning(endpoint) if args.pin else None
            def http_predictor():
                return HttpPredictor(endpoint.url, "detection", TransportConfig(accept=args.accept,
                                                                                concurrency=args.concurrency))

            with http_predictor() as predictor:  # warm-up: first requests, allocations
                explain_image(image, predictor, config)
            explain_image(image, in_process, config)
            previous_batches = None
            for run in range(args.runs):
                # forward passes just before and just after the endpoint run (the batches of the
                # previous run are the same images), averaged: load from other processes drifts
                if pinning:
                    pinning.forward()
                forward_before = (forward_seconds(model, previous_batches, per_request)
                                  if previous_batches is not None else None)
                if pinning:
                    pinning.explainer()
                log_offset = model_log(endpoint).stat().st_size
                with http_predictor() as predictor:
                    recorder = RecordingPredictor(predictor)
                    cpu_started = time.process_time()
                    started = time.perf_counter()
                    explanation = explain_image(image, recorder, config)
                    http_seconds = time.perf_counter() - started
                    client_cpu = time.process_time() - cpu_started
                    stats = predictor.stats
                handler, handled = handler_seconds(model_log(endpoint), log_offset)
                if pinning:
                    pinning.forward()
                forward_after = forward_seconds(model, recorder.batches, per_request)
                if forward_before is None:
                    forward_before = forward_seconds(model, recorder.batches, per_request)
                forward = (forward_before + forward_after) / 2
                previous_batches = recorder.batches
                started = time.perf_counter()
                explain_image(image, in_process, config)
                in_process_seconds = time.perf_counter() - started
                timings = explanation.timings
                rows.append({
                    "http": http_seconds, "forward": forward, "ratio": http_seconds / forward,
                    "in_process": in_process_seconds, "calls": explanation.model_calls,
                    "requests": stats["requests"], "retries": stats["retries"],
                    "waiting": timings["predict_s"], "handler": handler if handled == stats["requests"]
                    else float("nan"),
                    "segmentation": timings["segmentation_s"] + timings["baseline_s"],
                    "estimator": timings["total_s"] - timings["predict_s"] - timings["segmentation_s"]
                    - timings["baseline_s"],
                    "client_cpu": client_cpu, "targets": explanation.num_targets, "segments": explanation.num_segments_used,
                    "mb_sent": stats["bytes_sent"] / 1e6,
                })
                print(f"run {run + 1}/{args.runs}: endpoint {http_seconds:.2f} s, forward passes "
                      f"{forward:.2f} s, ratio {http_seconds / forward:.3f}", file=sys.stderr)
    in_process.close()

    command = (f".venv/bin/python -m bench.bench_overhead --runs {args.runs} --num-samples {args.num_samples}"
               f" --seed {args.seed} --concurrency {args.concurrency} --accept {args.accept}"
               f" --workers {args.workers}{'' if args.threads is None else f' --threads {args.threads}'}"
               f"{'' if args.model_dir == DEFAULT_MODEL else f' --model-dir {args.model_dir}'}"
               f"{'' if args.probability_threshold == 0.5 else f' --probability-threshold {args.probability_threshold}'}"
               f"{'' if args.batch_size is None else f' --batch-size {args.batch_size}'}"
               f"{'' if args.short_side is None else f' --short-side {args.short_side}'}")
    first = rows[0]
    print(f"<!-- {command} -->")
    input_side = "" if args.short_side is None else f" served at short side {args.short_side}"
    forward_ms = 1000 * np.median([row["forward"] for row in rows]) / first["calls"]
    print(f"Shapes detector `{args.model_dir}`{input_side} ({forward_ms:.1f} ms per image in process); "
          f"scene {scene_index} of seed {args.seed} (320 px, "
          f"{first['targets']} target(s), {first['segments']} segments); {args.num_samples} samples = "
          f"{first['calls']} forward passes in {first['requests']} requests of up to {per_request} images "
          f"({first['mb_sent']:.1f} MB sent); endpoint: {args.workers} MMS worker(s) x {threads} thread(s), "
          f"HttpPredictor concurrency {args.concurrency}, Accept {args.accept}; {cores} cores. "
          f"Target ratio <= {TARGET_RATIO}.\n")
    header = ["run", "explanation via endpoint (s)", "in-process forward passes (s)", "ratio",
              "explanation in-process (s)", "waiting on the endpoint (s)", "handler time in the endpoint (s)",
              "segmentation + baseline (s)",
              "masking + estimator (s)", "client CPU (s)", "retries"]
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join("---" for _ in header) + "|")
    keys = ["http", "forward", "ratio", "in_process", "waiting", "handler", "segmentation", "estimator",
            "client_cpu", "retries"]
    for index, row in enumerate(rows, start=1):
        print("| " + " | ".join([str(index)] + [_format(key, row[key]) for key in keys]) + " |")
    medians = {key: float(np.median([row[key] for row in rows])) for key in keys}
    print("| **median** | " + " | ".join(
        f"**{_format(key, medians[key])}**" if key == "ratio" else _format(key, medians[key])
        for key in keys) + " |")


def _format(key: str, value: float) -> str:
    if key == "retries":
        return f"{value:.0f}"
    return f"{value:.3f}" if key == "ratio" else f"{value:.2f}"


if __name__ == "__main__":
    main()
