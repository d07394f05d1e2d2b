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
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import click
import numpy as np
import requests

from deploy.local_endpoint import LocalEndpoint
from deploy.package import extract_archive, package_model_dir, package_zoo

REPO = Path(__file__).resolve().parent.parent
MAX_BODY_BYTES = 20_000_000
# In-process gets the threads `deploy serve` gives its one worker (cores / workers), set
# before mxnet loads, so both sides run with the same OpenMP pool.
os.environ.setdefault("OMP_NUM_THREADS", str(os.cpu_count() or 1))


def _photo_batch(count, image_path=None):
    """``(count, H, W, 3)`` uint8: skimage's coffee photo (400x600), or the image at ``image_path``."""
    if image_path:
        from PIL import Image

        image = np.asarray(Image.open(image_path).convert("RGB"))
    else:
        from skimage import data

        image = data.coffee()
    return np.repeat(image[None], count, axis=0)


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


def _stage(model_dir, one_by_one):
    if one_by_one:
        shutil.copyfile(REPO / "bench" / "naive_inference.py", model_dir / "code" / "inference.py")
    return model_dir


@click.command()
@click.option("--zoo", "zoo_name", default="yolo3_darknet53_coco", show_default=True,
              help="GluonCV architecture (random weights).")
@click.option("--model-dir", type=click.Path(exists=True, file_okay=False),
              help="Benchmark this exported model (with model.json) instead of a zoo architecture.")
@click.option("--image", "image_path", type=click.Path(exists=True, dir_okay=False),
              help="Image to batch  [default: skimage's coffee photo, 400x600]")
@click.option("--naive/--no-naive", default=True, show_default=True,
              help="Also measure the one-image-per-forward handler.")
@click.option("--batch-sizes", default="1,4,16", show_default=True)
@click.option("--repeats", type=click.IntRange(1), default=3, show_default=True)
def main(zoo_name, model_dir, image_path, naive, batch_sizes, repeats):
    os.environ["SERVING_MAX_BODY_BYTES"] = str(MAX_BODY_BYTES)
    sizes = [int(size) for size in batch_sizes.split(",")]
    source = "--model-dir %s" % model_dir if model_dir else "--zoo %s" % zoo_name
    print("command: .venv/bin/python -m bench.bench_serving %s%s%s --batch-sizes %s --repeats %d"
          % (source, " --image %s" % image_path if image_path else "", "" if naive else " --no-naive",
             batch_sizes, repeats))
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-serving-") as scratch:
        scratch = Path(scratch)
        if model_dir:
            archive = package_model_dir(model_dir, scratch / "model.tar.gz", check=False).archive
        else:
            archive = package_zoo(zoo_name, scratch / "model.tar.gz", pretrained=False, check=False).archive
        for one_by_one in (False, True) if naive else (False,):
            staged = _stage(extract_archive(archive, scratch / ("naive" if one_by_one else "batch")), one_by_one)
            handler = _load_handler(staged / "code")
            model = handler.model_fn(str(staged))
            label = "one image per forward (reference notebook)" if one_by_one else "batch-aware (serving/)"
            session = requests.Session()  # one kept-alive connection, as EndpointClient uses
            with LocalEndpoint(staged, startup_timeout=600, max_request_bytes=MAX_BODY_BYTES) as endpoint:
                for size in sizes:
                    body = _npy(_photo_batch(size, image_path))
                    local, remote = [], []
                    handler.transform_fn(model, body, "application/x-npy", "application/json")  # warm
                    session.post(endpoint.url + "/invocations", data=body, timeout=600,
                                  headers={"Content-Type": "application/x-npy"})
                    for _ in range(repeats):
                        started = time.perf_counter()
                        handler.transform_fn(model, body, "application/x-npy", "application/json")
                        local.append(size / (time.perf_counter() - started))
                        started = time.perf_counter()
                        response = session.post(endpoint.url + "/invocations", data=body, timeout=600,
                                                 headers={"Content-Type": "application/x-npy"})
                        remote.append(size / (time.perf_counter() - started))
                        response.raise_for_status()
                    rows.append((label, size, statistics.median(local), statistics.median(remote)))
                    print("  %s batch %d: in-process %.3f img/s, endpoint %.3f img/s"
                          % (label, size, rows[-1][2], rows[-1][3]), file=sys.stderr)
    print()
    print("| handler | batch | in-process images/s | endpoint images/s | endpoint latency | endpoint / in-process |")
    print("|---|---|---|---|---|---|")
    for label, size, local, remote in rows:
        print("| %s | %d | %.3f | %.3f | %.1f ms | %.2f |" % (label, size, local, remote, 1000 * size / remote,
                                                               remote / local))


if __name__ == "__main__":
    main()
