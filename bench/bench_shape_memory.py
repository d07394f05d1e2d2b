"""Memory of a CPU model fed inputs of many new shapes, with and without a cap on MXNet's oneDNN primitive cache.

Reproduce with:  .venv/bin/python -m bench.bench_shape_memory [--model-dir DIR] [--shapes 120] [--cache -1 --cache 32]

For each ``--cache`` value (``MXNET_MKLDNN_CACHE_NUM``; -1 is MXNet's default, unbounded) a
fresh interpreter loads the exported model (``serving.network.LoadedNetwork``, as the MMS
worker and the in-process predictor do), times 10 forward passes of one fixed shape, runs
``--shapes`` passes of random new shapes (N in 1..``--max-batch``, one side the model's short
side, the other a multiple of ``--step`` up to three times it and within its long-side cap, either
orientation), prints the resident memory at each third, and times the fixed shape again. The
cap costs speed only if rebuilding evicted primitives is slow: compare the two times.
``--python`` runs the children with another interpreter (the SageMaker container's 3.8).
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import click

REPO = Path(__file__).resolve().parent.parent

_CHILD = r"""
import json, os, random, sys, time
import mxnet as mx
import numpy as np
from serving.network import LoadedNetwork

model_dir, shapes, max_batch, step = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
network = LoadedNetwork(model_dir, ctx=mx.cpu())

def resident_mb():
    with open("/proc/self/status") as status:
        return [int(line.split()[1]) // 1024 for line in status if line.startswith("VmRSS:")][0]

def forward(count, height, width):
    outputs = network.net(mx.nd.zeros((count, 3, height, width)))
    for output in (outputs if isinstance(outputs, (list, tuple)) else [outputs]):
        output.wait_to_read()

def fixed_ms():
    started = time.time()
    for _ in range(10):
        forward(1, side, side)
    return 100.0 * (time.time() - started)

side = network.spec.preprocess.short_side
longest = min(3 * side, network.spec.preprocess.max_size)
forward(1, side, side)
before = fixed_ms()
marks = [resident_mb()]
rng = random.Random(3)
for index in range(1, shapes + 1):
    height, width = side, step * rng.randint(side // step, longest // step)
    if rng.random() < 0.5:
        height, width = width, height
    forward(rng.randint(1, max_batch), height, width)
    if index % max(1, shapes // 3) == 0:
        marks.append(resident_mb())
print(json.dumps({"cache": os.environ.get("MXNET_MKLDNN_CACHE_NUM"), "mxnet": mx.__version__,
                  "rss_mb": marks, "fixed_ms_before": before, "fixed_ms_after": fixed_ms()}))
"""


@click.command()
@click.option("--model-dir", type=click.Path(exists=True, file_okay=False), default=str(REPO / "models" / "shapes-detector"),
              show_default=True, help="An exported model directory with a model.json.")
@click.option("--shapes", type=click.IntRange(3), default=120, show_default=True, help="Forward passes of random new shapes.")
@click.option("--max-batch", type=click.IntRange(1), default=4, show_default=True, help="Largest N of a pass.")
@click.option("--step", type=click.IntRange(1), default=32, show_default=True,
              help="The long side is a multiple of this (YOLO needs 32).")
@click.option("--cache", "caches", multiple=True, default=["-1", "32"], show_default=True,
              help="MXNET_MKLDNN_CACHE_NUM values to compare (repeat).")
@click.option("--python", default=sys.executable, show_default=True, help="The interpreter of the children.")
def main(model_dir, shapes, max_batch, step, caches, python):
    shown = os.path.relpath(model_dir, REPO) if Path(model_dir).resolve().is_relative_to(REPO) else model_dir
    command = ".venv/bin/python -m bench.bench_shape_memory --model-dir %s --shapes %d --max-batch %d --step %d%s" % (
        shown, shapes, max_batch, step, "".join(" --cache %s" % cache for cache in caches))
    if python != sys.executable:
        command += " --python %s" % python
    print("command: " + command)
    print("| MXNET_MKLDNN_CACHE_NUM | mxnet | resident MB at 0, 1/3, 2/3, all of %d shapes | fixed shape ms before / after |"
          % shapes)
    print("|---|---|---|---|")
    for cache in caches:
        env = dict(os.environ, PYTHONPATH=str(REPO), MXNET_MKLDNN_CACHE_NUM=cache)
        completed = subprocess.run([python, "-c", _CHILD, model_dir, str(shapes), str(max_batch), str(step)], env=env,
                                   capture_output=True, text=True)
        if completed.returncode != 0:
            raise SystemExit(completed.stderr[-3000:])
        result = json.loads(completed.stdout.strip().splitlines()[-1])
        print("| %s | %s | %s | %.0f / %.0f |" % (result["cache"], result["mxnet"],
                                                  " → ".join(str(mark) for mark in result["rss_mb"]),
                                                  result["fixed_ms_before"], result["fixed_ms_after"]), flush=True)


if __name__ == "__main__":
    main()
