"""Throughput of the local endpoint vs the same network in-process, batch-aware vs one-image-at-a-time handler.

Reproduce with:  .venv/bin/python -m bench.bench_serving [--zoo yolo3_darknet53_coco] [--repeats 3]

For each handler (serving/'s batch-aware one and bench/naive_inference.py, written as in the
reference notebook) and batch size, the same npy batch of a real photo (skimage's coffee,
400x600, resized by the handler to 416x624) is run in-process (``transform_fn`` called directly)
and through ``deploy serve`` over HTTP, interleaved, ``repeats`` times; medians are reported.
16 photos of 400x600 are 11.5 MB of npy, over SageMaker's 6 MiB real-time limit, so the
request limits are raised to 20 MB here (a real-time client would split such a batch).
"""
import io
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import click
import numpy as np
import requests

REPO = Path(__file__).resolve().parent.parent
MAX_BODY_BYTES = 20_000_000


def _photo_batch(count):
    from skimage import data

    return np.repeat(data.coffee()[None], count, axis=0)


def _npy(array):
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def _load_handler(code_dir):
    """Import ``inference`` from a packaged ``code/`` dir as a fresh module."""
    import importlib

    sys.path.insert(0, str(code_dir))
    try:
        for name in [n for n in sys.modules if n == "inference" or n.startswith("serving")]:
            del sys.modules[name]
        return importlib.import_module("inference")
    finally:
        sys.path.remove(str(code_dir))


def _stage(model_dir, naive):
    if naive:
        shutil.copyfile(REPO / "bench" / "naive_inference.py", model_dir / "code" / "inference.py")
    return model_dir


@click.command()
@click.option("--zoo", "zoo_name", default="yolo3_darknet53_coco", show_default=True,
              help="GluonCV architecture (random weights).")
@click.option("--batch-sizes", default="1,4,16", show_default=True)
@click.option("--repeats", type=click.IntRange(1), default=3, show_default=True)
def main(zoo_name, batch_sizes, repeats):
    import os

    from deploy.local_endpoint import LocalEndpoint
    from deploy.package import extract_archive, package_zoo

    os.environ["SERVING_MAX_BODY_BYTES"] = str(MAX_BODY_BYTES)
    sizes = [int(size) for size in batch_sizes.split(",")]
    print("command: .venv/bin/python -m bench.bench_serving --zoo %s --batch-sizes %s --repeats %d"
          % (zoo_name, batch_sizes, repeats))
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-serving-") as scratch:
        scratch = Path(scratch)
        archive = package_zoo(zoo_name, scratch / "model.tar.gz", pretrained=False, check=False).archive
        for naive in (False, True):
            model_dir = _stage(extract_archive(archive, scratch / ("naive" if naive else "batch")), naive)
            handler = _load_handler(model_dir / "code")
            model = handler.model_fn(str(model_dir))
            label = "one image per forward (reference notebook)" if naive else "batch-aware (serving/)"
            with LocalEndpoint(model_dir, startup_timeout=600, max_request_bytes=MAX_BODY_BYTES) as endpoint:
                for size in sizes:
                    body = _npy(_photo_batch(size))
                    local, remote = [], []
                    handler.transform_fn(model, body, "application/x-npy", "application/json")  # warm
                    requests.post(endpoint.url + "/invocations", data=body, timeout=600,
                                  headers={"Content-Type": "application/x-npy"})
                    for _ in range(repeats):
                        started = time.perf_counter()
                        handler.transform_fn(model, body, "application/x-npy", "application/json")
                        local.append(size / (time.perf_counter() - started))
                        started = time.perf_counter()
                        response = requests.post(endpoint.url + "/invocations", data=body, timeout=600,
                                                 headers={"Content-Type": "application/x-npy"})
                        remote.append(size / (time.perf_counter() - started))
                        response.raise_for_status()
                    rows.append((label, size, statistics.median(local), statistics.median(remote)))
                    print("  %s batch %d: in-process %.3f img/s, endpoint %.3f img/s"
                          % (label, size, rows[-1][2], rows[-1][3]), file=sys.stderr)
    print()
    print("| handler | batch | in-process images/s | endpoint images/s | endpoint / in-process |")
    print("|---|---|---|---|---|")
    for label, size, local, remote in rows:
        print("| %s | %d | %.3f | %.3f | %.2f |" % (label, size, local, remote, remote / local))


if __name__ == "__main__":
    main()
