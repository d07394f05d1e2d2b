"""The request gate alone (no MMS): this checkout's deploy/gate.py against another gate.py, side by side.

Reproduce (the gate of main before its connection limits, from git):

    git show e8e3a1c~1:deploy/gate.py > build/gate_before.py
    .venv/bin/python -m bench.bench_gate_only --compare-with build/gate_before.py --repeats 60

Both gates forward to one in-process fake model server (tests/deploy/test_gate.py's, which
answers with the SHA-256 of the body); the same body goes to each in alternation, the order
flipped every round, one kept-alive connection each. Printed: median latency and the gate
process's CPU time per request, and the ratios this / other.
"""
import argparse
import http.client
import importlib.util
import os
import shutil
import socket
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

from deploy.gate import launch_gate
from tests.deploy.test_gate import FakeModelServer


def _launcher(gate_py):
    spec = importlib.util.spec_from_file_location("other_gate", gate_py)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.launch_gate


def _start(launch, scratch, name, max_body_bytes):
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    with open(scratch / f"{name}.log", "wb") as log:
        process = launch(listener, scratch / "upstream.sock", max_body_bytes, 30.0, log)
    port = listener.getsockname()[1]
    listener.close()
    return process, port


def _cpu_seconds(process):
    times = psutil.Process(process.pid).cpu_times()
    return times.user + times.system


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--compare-with", required=True, type=Path, help="another gate.py")
    parser.add_argument("--repeats", type=int, default=60)
    parser.add_argument("--bytes", type=int, default=6_100_000, help="request body size")
    args = parser.parse_args(argv)
    scratch = Path(tempfile.mkdtemp(prefix="gate-bench-"))
    upstream = FakeModelServer(scratch / "upstream.sock")
    threading.Thread(target=upstream.serve_forever, daemon=True).start()
    gates = {"this": _start(launch_gate, scratch, "this", args.bytes + 1),
             "other": _start(_launcher(args.compare_with), scratch, "other", args.bytes + 1)}
    try:
        time.sleep(1.0)
        body = os.urandom(args.bytes)
        connections = {name: http.client.HTTPConnection("127.0.0.1", port, timeout=60)
                       for name, (_, port) in gates.items()}
        latencies = {name: [] for name in gates}
        cpu_before = {name: _cpu_seconds(process) for name, (process, _) in gates.items()}
        for round_index in range(args.repeats):
            for name in (("this", "other") if round_index % 2 else ("other", "this")):
                started = time.perf_counter()
                connections[name].request("POST", "/invocations", body, {"Content-Type": "application/x-npy"})
                response = connections[name].getresponse()
                response.read()
                if response.status != 200:
                    raise SystemExit(f"{name}: HTTP {response.status}")
                latencies[name].append(time.perf_counter() - started)
        cpu = {name: (_cpu_seconds(process) - cpu_before[name]) / args.repeats
               for name, (process, _) in gates.items()}
        median = {name: statistics.median(values) for name, values in latencies.items()}
        print(f"<!-- .venv/bin/python -m bench.bench_gate_only --compare-with {args.compare_with} "
              f"--repeats {args.repeats} --bytes {args.bytes} -->")
        print("| gate | median latency (ms) | gate CPU per request (ms) |")
        print("|---|---|---|")
        for name in gates:
            print(f"| {name} | {1000 * median[name]:.1f} | {1000 * cpu[name]:.2f} |")
        print(f"| this / other | {median['this'] / median['other']:.2f} | {cpu['this'] / cpu['other']:.2f} |")
    finally:
        for process, _ in gates.values():
            process.terminate()
            process.wait(timeout=10)
        upstream.shutdown()
        upstream.server_close()
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
