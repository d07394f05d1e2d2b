"""Run as a script in a fresh interpreter: RSS growth of a LoadedNetwork fed images of many new sizes.

``python shape_memory_probe.py MODEL_DIR WARM_UP MEASURED`` loads ``MODEL_DIR`` on the CPU, runs
``WARM_UP`` then ``MEASURED`` forward passes, each on a batch of a size not seen before (the
resized width steps through the network's range, 1 or 2 images), and prints one JSON line:
``{"cache": MXNET_MKLDNN_CACHE_NUM in force, "growth_mb": RSS growth over the measured passes}``.
A fresh interpreter because MXNet reads the cache setting once per process. Python 3.8 compatible.
"""
import json
import os
import sys


def resident_mb():
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    raise RuntimeError("no VmRSS in /proc/self/status")


def main(model_dir, warm_up, measured):
    import mxnet as mx
    import numpy as np

    from serving.network import LoadedNetwork

    network = LoadedNetwork(model_dir, ctx=mx.cpu())
    side = network.spec.preprocess.short_side
    widths = range(side, network.spec.preprocess.max_size + 1, 4)
    shapes = [(count, side, width) for width in widths for count in (1, 2)]
    if len(shapes) < warm_up + measured:
        raise SystemExit("only %d distinct shapes" % len(shapes))
    start = None
    for index, (count, height, width) in enumerate(shapes[:warm_up + measured]):
        if index == warm_up:
            start = resident_mb()
        network.forward(np.zeros((count, height, width, 3), dtype=np.uint8))
    print(json.dumps({"cache": os.environ.get("MXNET_MKLDNN_CACHE_NUM"), "growth_mb": resident_mb() - start}))


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))
