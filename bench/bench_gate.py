"""Request latency of ``deploy serve`` from this checkout against another checkout, served side by side.

Reproduce (e.g. against a checkout from before the request gate):

    .venv/bin/python -m bench.bench_gate --compare-with ../clearsight-before-gate --repeats 15

Both checkouts serve the same model (the shipped shapes detector by default) with
``python -m deploy serve`` (one worker, the same threads), running at the same time. The same
requests then go to each in alternation, the order flipped every round, each endpoint over one
kept-alive connection. Printed per case (markdown on stdout, progress on stderr): the median
latency and its ratio this / other, and the CPU time the endpoint's processes (serve, MMS's Java
frontend and worker, and the gate where there is one) spent per request, summed over all
requests (CPU time depends far less than latency on what else loads the machine). Cases: one 320 px image (npy), the explainer's full
request of 20 masked 320 px images (6.1 MB npy, what ``bench.bench_overhead`` sends), and the
same 6.1 MB body answered 406 by the handler (``Accept: text/csv``): transport alone.
"""
import argparse
import io
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import psutil
import requests

REPO = Path(__file__).resolve().parent.parent


def _npy(array):
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def _free_port_below_32768():
    """Checkouts from before the gate refuse ports above 32767; the kernel's own picks are above it."""
    import random
    import socket

    for port in random.Random().sample(range(20000, 32768), 200):
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
        return port
    raise SystemExit("no free port in 20000..32767")


def _serve(checkout, model, threads):
    """Start ``python -m deploy serve`` from ``checkout``; return (process, url) once it printed ready."""
    port = _free_port_below_32768()
    process = subprocess.Popen(
        [sys.executable, "-m", "deploy", "serve", "--model", str(model), "--port", str(port),
         "--workers", "1", "--threads", str(threads)],
        cwd=str(checkout), env=dict(os.environ, PYTHONPATH=str(checkout)),
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    line = process.stdout.readline()
    if not line.startswith("ready"):
        process.kill()
        raise SystemExit("deploy serve from %s did not start: %r" % (checkout, line))
    return process, "http://127.0.0.1:%d" % port


def _cpu_seconds(processes):
    """User + system CPU seconds used so far by ``processes`` (those that still run)."""
    total = 0.0
    for process in processes:
        try:
            times = process.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += times.user + times.system
    return total


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--compare-with", required=True, type=Path, help="the other clearsight checkout")
    parser.add_argument("--model-dir", type=Path, default=REPO / "models" / "shapes-detector")
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--threads", type=int, default=None, help="threads of each endpoint's worker")
    args = parser.parse_args()
    threads = args.threads or os.cpu_count() or 1
    images = np.random.default_rng(0).integers(0, 256, (20, 320, 320, 3), dtype=np.uint8)
    cases = [
        ("1 image, 320 px (npy %d KB)" % (len(_npy(images[:1])) // 1000), _npy(images[:1]), "application/json"),
        ("20 images, 320 px (npy %.1f MB)" % (len(_npy(images)) / 1e6), _npy(images), "application/json"),
        ("the same 20 images answered 406 (transport only)", _npy(images), "text/csv"),
    ]
    checkouts = {"this": REPO, "other": args.compare_with.resolve()}
    servers = {}
    try:
        for name, checkout in checkouts.items():
            print("starting deploy serve from %s ..." % checkout, file=sys.stderr)
            servers[name] = _serve(checkout, args.model_dir.resolve(), threads)
        sessions = {name: requests.Session() for name in servers}
        latencies = {(case, name): [] for case, _, _ in cases for name in servers}
        cpu = {(case, name): 0.0 for case, _, _ in cases for name in servers}
        trees = {}
        for round_index in range(args.repeats + 1):  # round 0 warms up
            order = list(servers) if round_index % 2 == 0 else list(servers)[::-1]
            if round_index == 1:  # after the warm-up round every worker has started
                for name, (process, _) in servers.items():
                    root = psutil.Process(process.pid)
                    trees[name] = [root] + root.children(recursive=True)
            for case, body, accept in cases:
                for name in order:
                    cpu_before = _cpu_seconds(trees.get(name, []))
                    started = time.perf_counter()
                    response = sessions[name].post(servers[name][1] + "/invocations", data=body, timeout=300,
                                                   headers={"Content-Type": "application/x-npy", "Accept": accept})
                    elapsed = time.perf_counter() - started
                    cpu_used = _cpu_seconds(trees.get(name, [])) - cpu_before
                    if response.status_code != (406 if accept == "text/csv" else 200):
                        raise SystemExit("%s answered %d: %s" % (name, response.status_code, response.text[:300]))
                    if round_index:
                        latencies[(case, name)].append(elapsed)
                        cpu[(case, name)] += cpu_used
            print("round %d/%d done" % (round_index, args.repeats), file=sys.stderr)
    finally:
        for process, _ in servers.values():
            process.terminate()
            process.wait(timeout=60)
    print("<!-- .venv/bin/python -m bench.bench_gate --compare-with OTHER --repeats %d%s -->"
          % (args.repeats, "" if args.threads is None else " --threads %d" % args.threads))
    print("| request | latency this (ms) | latency other (ms) | this / other | endpoint CPU per request this (ms) "
          "| other (ms) | this / other |")
    print("|---|---|---|---|---|---|---|")
    for case, _, _ in cases:
        this = statistics.median(latencies[(case, "this")])
        other = statistics.median(latencies[(case, "other")])
        cpu_this = cpu[(case, "this")] / args.repeats
        cpu_other = cpu[(case, "other")] / args.repeats
        print("| %s | %.1f | %.1f | %.2f | %.1f | %.1f | %.2f |" % (
            case, 1000 * this, 1000 * other, this / other, 1000 * cpu_this, 1000 * cpu_other, cpu_this / cpu_other))


if __name__ == "__main__":
    main()
