"""How long the handler works on the heaviest requests its default limits admit.

Reproduce with:  .venv/bin/python -m bench.bench_limits [--zoo yolo3_darknet53_coco] [--repeats 3]

In-process (``serving.handler.transform_fn``, npy in, JSON out), with ``--threads`` OpenMP
threads (default: what one ``deploy serve`` worker gets here, all cores; the SageMaker
container gives a worker 1), median of ``repeats``. For the shipped shapes
detector: 64 images at its largest network input (160x512), 64 images of 1x1 pixel, and one
image that fills the body limit; then, with the limits lifted, the 2,000 images of 1x1 pixel
that took 5 s before the limits existed. With ``--zoo``, the same architecture with random
weights on ``--zoo-images`` images at its largest input (416x1024 for YOLO), to extrapolate
what a request at the pixel limit costs a heavy network on a CPU. Figures feed the comment
above ``serving.settings.DEFAULT_MAX_IMAGES_PER_REQUEST``.
"""
import io
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import click
import numpy as np

REPO = Path(__file__).resolve().parent.parent


def _npy(array):
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def _seconds(model, body, repeats):
    from serving.handler import transform_fn

    transform_fn(model, body, "application/x-npy", "application/json")  # warm: shapes, allocations
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        transform_fn(model, body, "application/x-npy", "application/json")
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def _largest_input_batch(count, preprocess):
    """``count`` small noise images that the resize turns into the largest input (short x max_size).

    Small, so that 64 of them fit the body limit: the request's cost is in the resized pixels.
    """
    from serving.preprocess import resized_size

    height, width = preprocess.short_side, preprocess.max_size
    for factor in (8, 4, 2):
        if resized_size(height // factor, width // factor, height, width) == (height, width):
            height, width = height // factor, width // factor
            break
    return np.random.default_rng(0).integers(0, 256, (count, height, width, 3), dtype=np.uint8)


@click.command()
@click.option("--model-dir", default=str(REPO / "models" / "shapes-detector"), show_default=True,
              type=click.Path(exists=True, file_okay=False))
@click.option("--zoo", "zoo_name", default=None, help="Also measure this GluonCV architecture (random weights).")
@click.option("--zoo-images", type=click.IntRange(1), default=4, show_default=True,
              help="Images per request for --zoo (at the largest input); the time is also scaled to 64.")
@click.option("--repeats", type=click.IntRange(1), default=3, show_default=True)
@click.option("--threads", type=click.IntRange(1), default=None,
              help="OpenMP threads (OMP_NUM_THREADS).  [default: the cores, as `deploy serve` with 1 worker]")
def main(model_dir, zoo_name, zoo_images, repeats, threads):
    threads = threads or len(os.sched_getaffinity(0))
    os.environ["OMP_NUM_THREADS"] = str(threads)  # before mxnet loads
    from serving.handler import model_fn
    from serving.settings import DEFAULT_MAX_BODY_BYTES, DEFAULT_MAX_IMAGES_PER_REQUEST

    print("command: .venv/bin/python -m bench.bench_limits%s --repeats %d --threads %d"
          % (" --zoo %s --zoo-images %d" % (zoo_name, zoo_images) if zoo_name else "", repeats, threads))
    rows = []
    model = model_fn(model_dir)
    count = DEFAULT_MAX_IMAGES_PER_REQUEST
    largest = _largest_input_batch(count, model.spec.preprocess)
    cases = [
        ("%d images of %dx%d, resized to the largest input (%dx%d)"
         % (count, largest.shape[2], largest.shape[1], model.spec.preprocess.max_size,
            model.spec.preprocess.short_side), _npy(largest)),
        ("%d images of 1x1" % count, _npy(np.zeros((count, 1, 1, 3), np.uint8))),
    ]
    side = int((DEFAULT_MAX_BODY_BYTES // 3) ** 0.5) - 1
    cases.append(("1 image of %dx%d (the body limit)" % (side, side),
                  _npy(np.random.default_rng(1).integers(0, 256, (side, side, 3), dtype=np.uint8))))
    for label, body in cases:
        rows.append((Path(model_dir).name, label, _seconds(model, body, repeats)))
        print("  %s: %.2f s" % rows[-1][1:], file=sys.stderr)
    lifted = {"SERVING_MAX_IMAGES_PER_REQUEST": "100000", "SERVING_MAX_REQUEST_PIXELS": str(10 ** 12)}
    os.environ.update(lifted)
    unlimited = model_fn(model_dir)
    for name in lifted:
        del os.environ[name]
    rows.append((Path(model_dir).name, "2000 images of 1x1, limits lifted (before the limits)",
                 _seconds(unlimited, _npy(np.zeros((2000, 1, 1, 3), np.uint8)), 1)))
    print("  %s: %.2f s" % rows[-1][1:], file=sys.stderr)
    if zoo_name:
        from deploy.package import extract_archive, package_zoo

        with tempfile.TemporaryDirectory(prefix="bench-limits-") as scratch:
            archive = package_zoo(zoo_name, Path(scratch) / "model.tar.gz", pretrained=False, check=False).archive
            zoo_dir = extract_archive(archive, Path(scratch) / "model")
            zoo_model = model_fn(str(zoo_dir))
            batch = _largest_input_batch(zoo_images, zoo_model.spec.preprocess)
            seconds = _seconds(zoo_model, _npy(batch), repeats)
            label = "%d images resized to the largest input (%dx%d)" % (
                zoo_images, zoo_model.spec.preprocess.max_size, zoo_model.spec.preprocess.short_side)
            rows.append((zoo_name, label, seconds))
            rows.append((zoo_name, "%d images at that input, scaled linearly" % count, seconds * count / zoo_images))
    print()
    print("| model | request | seconds (median of %d) |" % repeats)
    print("|---|---|---|")
    for name, label, seconds in rows:
        print("| %s | %s | %.2f |" % (name, label, seconds))


if __name__ == "__main__":
    main()
