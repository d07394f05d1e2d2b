"""Memory, file descriptors and threads of one long-lived process that explains many images.

Reproduce with:  .venv/bin/python -m bench.bench_long_run [--model models/shapes-detector] [--images 300]
                 [--endpoint http://127.0.0.1:8080] [--fresh-explainer]

One ``Explainer`` (or, with ``--fresh-explainer``, a new one per image, closed after it) explains
``--images`` freshly generated 128x128 shapes scenes one after another, as a notebook loop
would, and plots, saves (npz) and renders (``_repr_jpeg_``) each explanation. After images 1,
10, 25, 50, 100, 200, ... it prints the resident memory, the open file descriptors, the Python
and OS threads and matplotlib's open figures. Growth that levels off (the model's caches, the
oneDNN primitives of new shapes) is expected; growth per image without end is a leak.
"""
from __future__ import annotations

import gc
import os
import tempfile
import threading
import time
from pathlib import Path

import click
import numpy as np
from PIL import Image

from examples.shapes.dataset import generate_scene
from explain import Explainer

CHECKPOINTS = (1, 10, 25, 50, 100, 200, 300, 500, 1000)


def _status_kb(field: str) -> int:
    """A number field of /proc/self/status (VmRSS in kB, Threads as a count)."""
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith(field + ":"))


def _sample() -> dict:
    import matplotlib.pyplot as plt
    gc.collect()
    return {"rss_mb": _status_kb("VmRSS") / 1024, "fds": len(os.listdir("/proc/self/fd")),
            "threads": threading.active_count(), "os_threads": _status_kb("Threads"),
            "figures": len(plt.get_fignums())}


@click.command()
@click.option("--model", default="models/shapes-detector", show_default=True,
              help="A model folder or model.tar.gz, run in process.")
@click.option("--endpoint", default=None, help="Explain against this endpoint instead of --model in process.")
@click.option("--task", type=click.Choice(["detection", "classification"]), default=None,
              help="Default: classification when the model's name says classifier, else detection.")
@click.option("--images", default=300, show_default=True, type=click.IntRange(1))
@click.option("--fresh-explainer", is_flag=True, help="A new Explainer per image, closed after it.")
@click.option("--num-samples", default=64, show_default=True, type=int)
@click.option("--num-segments", default=12, show_default=True, type=int)
def main(model, endpoint, task, images, fresh_explainer, num_samples, num_segments):
    target = endpoint or model
    task = task or ("classification" if "classifier" in target else "detection")
    settings = {"task": task, "num_samples": num_samples, "num_segments": num_segments}
    rng = np.random.default_rng(1)
    print(f"{target} ({task}), {images} images, {'a new Explainer per image' if fresh_explainer else 'one Explainer'}, "
          f"num_samples {num_samples}, num_segments {num_segments}")
    print(f"{'image':>6} {'RSS MB':>8} {'fds':>4} {'threads':>8} {'OS thr.':>8} {'figures':>8} {'seconds':>8}")
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        explainer = None if fresh_explainer else Explainer(target, **settings)
        try:
            for index in range(1, images + 1):
                path = scratch / "scene.png"
                Image.fromarray(generate_scene(rng, 128, 128, 1, 2).image).save(path)
                if fresh_explainer:
                    with Explainer(target, **settings) as once:
                        explanation = once(str(path))
                else:
                    explanation = explainer(str(path))
                explanation.plot().savefig(scratch / "plot.png")
                explanation.save(scratch / "explanation.npz")
                explanation._repr_jpeg_()
                if index in CHECKPOINTS or index == images:
                    s = _sample()
                    print(f"{index:>6} {s['rss_mb']:>8.0f} {s['fds']:>4} {s['threads']:>8} {s['os_threads']:>8} "
                          f"{s['figures']:>8} {time.perf_counter() - started:>8.0f}", flush=True)
        finally:
            if explainer is not None:
                explainer.close()
    command = (f".venv/bin/python -m bench.bench_long_run {'--endpoint ' + endpoint if endpoint else '--model ' + model}"
               f" --images {images}" + (" --fresh-explainer" if fresh_explainer else ""))
    print(f"reproduce: {command}")


if __name__ == "__main__":
    main()
