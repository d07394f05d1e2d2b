"""Explaining many images: images per hour with 1, 2, 4 images in flight against the local endpoint,
the modelled scaling per added endpoint instance, the kill-and-resume check, and a run in which 5% of
the images are bad (truncated, a PNG bomb, 3000x2, not an image, unreadable).

Reproduce with:  .venv/bin/python -m bench.bench_scale --images 100 --num-samples 500
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import click
import numpy as np
from PIL import Image

from deploy.client import EndpointClient
from deploy.local_endpoint import LocalEndpoint
from deploy.package import package_model_dir
from examples.shapes.dataset import generate_scene
from explain import ExplainConfig
from explain.images import load_image
from explain.predictors import TransportConfig, images_per_request, make_predictor
from explain.runner import RunOptions, run_explanations
from explain.sources import collect_sources

REPO = Path(__file__).resolve().parent.parent
NPZ_ARRAYS = ("segments", "shap_values", "standard_errors", "base_values", "predictions", "labels",
              "target_scores", "model_calls", "boxes")


def write_images(folder: Path, count: int, seed: int) -> list[Path]:
    """``count`` 320x320 shapes scenes as PNG (examples.shapes.dataset, one generator, fixed seed)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for index in range(count):
        path = folder / f"shapes_{index:03d}.png"
        Image.fromarray(generate_scene(rng).image).save(path)
        paths.append(path)
    return paths


def npz_values(folder: Path, names=None) -> dict:
    """{npz name: {array: bytes}}: what must be identical between runs (zip metadata may differ)."""
    values = {}
    for path in sorted(folder.glob("*_shap.npz")):
        if names is not None and path.name not in names:
            continue
        with np.load(path) as arrays:
            values[path.name] = {name: arrays[name].tobytes() for name in NPZ_ARRAYS if name in arrays}
    return values


BAD_KINDS = ("truncated", "png-bomb", "3000x2", "not-an-image", "unreadable")


def png_claiming(width: int, height: int) -> bytes:
    """A PNG of a few dozen bytes whose header claims ``width`` x ``height`` RGB pixels."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
            + chunk(b"IEND", b""))


def write_bad_images(folder: Path, paths: list[Path], share: float) -> dict[str, str]:
    """Copy ``paths`` into ``folder``, replacing ``share`` of them by bad files (BAD_KINDS in turn); returns
    {file name: kind} of the bad ones."""
    import io

    folder.mkdir(parents=True, exist_ok=True)
    bad_count = max(1, round(share * len(paths)))
    bad = {}
    for index, path in enumerate(paths):
        target = folder / path.name
        if index % max(1, len(paths) // bad_count) != 0 or len(bad) == bad_count:
            target.write_bytes(path.read_bytes())
            continue
        kind = BAD_KINDS[len(bad) % len(BAD_KINDS)]
        if kind == "truncated":
            data = path.read_bytes()
            target.write_bytes(data[: len(data) // 2])
        elif kind == "png-bomb":
            target.write_bytes(png_claiming(15000, 15000))
        elif kind == "3000x2":
            buffer = io.BytesIO()
            Image.fromarray(np.full((2, 3000, 3), 128, dtype=np.uint8)).save(buffer, format="PNG")
            target.write_bytes(buffer.getvalue())
        elif kind == "not-an-image":
            target = target.with_suffix(".jpg")
            target.write_bytes(b"meeting notes, saved with the wrong extension")
        else:
            target.write_bytes(path.read_bytes())
            target.chmod(0)
        bad[target.name] = kind
    return bad


def _drop_root_file_access() -> None:
    """In the child, as root: lose CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH so file modes apply."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    for capability in (1, 2):
        if libc.prctl(24, capability, 0, 0, 0) != 0:  # PR_CAPBSET_DROP
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")


def bad_images_check(url: str, folder: Path, bad: dict[str, str], out: Path, num_samples: int) -> dict:
    """``python -m explain`` over ``folder``: exit status, images explained, failures by kind, wall seconds."""
    import shutil

    shutil.rmtree(out, ignore_errors=True)
    command = [sys.executable, "-m", "explain", "--endpoint", url, "--task", "detection", "--num-samples",
               str(num_samples), "--quiet", "--out", str(out), str(folder)]
    started = time.perf_counter()
    run = subprocess.run(command, cwd=REPO, capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": str(REPO)},
                         preexec_fn=_drop_root_file_access if os.geteuid() == 0 else None)
    wall = time.perf_counter() - started
    analysis = json.loads((out / "analysis.json").read_text()) if (out / "analysis.json").is_file() else {}
    failed = {Path(item["key"]).name: item["kind"] for item in analysis.get("totals", {}).get("failed", [])}
    return {"images": len(list(folder.iterdir())), "bad": bad, "exit_status": run.returncode, "wall_s": wall,
            "explained": len(analysis.get("images", [])), "failed": failed,
            "all_bad_listed": set(failed) == set(bad),
            "stderr": run.stderr.strip().splitlines()[-1:] if run.stderr.strip() else []}


def calibrate(url: str, image: np.ndarray, per_request: int, repeats: int) -> float:
    """Seconds one endpoint worker spends per masked image: one request of ``per_request`` at a time."""
    client = EndpointClient(url, timeout=120)
    batch = np.repeat(image[None], per_request, axis=0)
    client.predict(batch, score_threshold=0)  # warm up
    started = time.perf_counter()
    for _ in range(repeats):
        client.predict(batch, score_threshold=0)
    return (time.perf_counter() - started) / (repeats * per_request)


def resume_check(url: str, folder: Path, out: Path, num_samples: int, kills: int, seconds_per_image: float,
                 seed: int, reference: Path) -> dict:
    """Run ``python -m explain`` as a subprocess, SIGKILL it ``kills`` times at random points, finish it."""
    rng = np.random.default_rng(seed)
    count = len(list(folder.glob("*.png")))
    command = [sys.executable, "-m", "explain", "--endpoint", url, "--task", "detection", "--num-samples",
               str(num_samples), "--quiet", "--out", str(out), str(folder)]
    finished_at_kill = [0]
    for _ in range(kills):
        process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                   env={**os.environ, "PYTHONPATH": str(REPO)})
        remaining = count - finished_at_kill[-1]
        # after the start-up (imports, ~3 s), somewhere in the first half of what is left
        time.sleep(3.0 + float(rng.uniform(0.0, seconds_per_image * max(remaining, 1) / 2)))
        process.send_signal(signal.SIGKILL)
        process.wait()
        manifest = out / "manifest.jsonl"
        lines = manifest.read_text().splitlines() if manifest.exists() else []
        finished_at_kill.append(len(lines))
    final = subprocess.run(command, cwd=REPO, capture_output=True, text=True,
                           env={**os.environ, "PYTHONPATH": str(REPO)})
    if final.returncode != 0:
        raise click.ClickException(f"the resumed run failed: {final.stderr}")
    resumed = npz_values(out)
    expected = npz_values(reference, set(resumed))
    return {"images": count, "finished_at_kill": finished_at_kill[1:], "identical": resumed == expected
            and len(resumed) == count, "final_stdout": final.stdout.strip().splitlines()[0]}


@click.command()
@click.option("--images", "image_count", type=click.IntRange(1), default=100, show_default=True,
              help="Shapes scenes to explain per setting.")
@click.option("--num-samples", type=click.IntRange(4), default=500, show_default=True)
@click.option("--in-flight", default="1,2,4", show_default=True, help="Images in flight to compare.")
@click.option("--concurrency", type=click.IntRange(1), default=4, show_default=True,
              help="Requests in flight at most (shared by the images in flight).")
@click.option("--model-dir", type=click.Path(exists=True, file_okay=False),
              default=str(REPO / "models" / "shapes-detector"), show_default=True)
@click.option("--resume-images", type=click.IntRange(0), default=12, show_default=True,
              help="Images of the kill-and-resume check (0: skip it).")
@click.option("--kills", type=click.IntRange(0), default=3, show_default=True)
@click.option("--bad-share", type=click.FloatRange(0, 0.5), default=0.05, show_default=True,
              help="Share of bad images in the last check (0: skip it).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--out", type=click.Path(file_okay=False), default="bench-scale-out", show_default=True)
def main(image_count, num_samples, in_flight, concurrency, model_dir, resume_images, kills, bad_share, seed, out):
    """Print markdown tables: throughput per images-in-flight, endpoint-instance model, resume check."""

    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    out = Path(out)
    levels = [int(item) for item in in_flight.split(",")]
    paths = write_images(out / "images", image_count, seed)
    sources = collect_sources([str(out / "images")])
    package = package_model_dir(model_dir, out / "model.tar.gz")
    config = ExplainConfig(task="detection", num_samples=num_samples)
    rows, measured = [], {}
    cores = os.cpu_count() or 1
    load_before = os.getloadavg()[0]
    with LocalEndpoint(package.archive) as endpoint:
        click.echo(f"endpoint {endpoint.url} ({endpoint.workers} worker, {endpoint.threads} threads)", err=True)
        for level in levels:
            predictor = make_predictor(endpoint.url, "detection", TransportConfig(concurrency=concurrency))
            started = time.perf_counter()
            summary = run_explanations(sources, predictor, config, out / f"run-{level}",
                                       RunOptions(images_in_flight=level, restart=True, progress=False),
                                       label_headers=package.spec.classes)
            wall = time.perf_counter() - started
            stats = predictor.stats
            predictor.close()
            measured[level] = (summary, stats, wall)
            calls = summary["totals"]["model_calls"]
            rows.append(f"| {level} | {image_count} | {wall:.0f} | {3600 * image_count / wall:.0f} | "
                        f"{calls / wall:.0f} | {stats['requests']} | "
                        f"{stats['request_seconds'] / max(stats['requests'], 1):.2f} |")
            click.echo(rows[-1], err=True)
        reference = out / f"run-{levels[0]}"
        identical = all(npz_values(out / f"run-{level}") == npz_values(reference) for level in levels)

        first = load_image(paths[0])
        per_request = min(64, images_per_request(first.shape, "application/x-npy", 6_291_456))
        server_seconds = calibrate(endpoint.url, first, per_request, repeats=5)
        summary, stats, wall = measured[levels[0]]
        calls_per_image = summary["totals"]["model_calls"] / image_count
        client_seconds = float(np.mean([item["timings"]["total_s"] - item["timings"]["predict_s"]
                                        + item["timings"].get("render_s", 0.0) for item in summary["images"]]))
        resume = None
        if resume_images and kills:
            subset = out / "resume-images"
            subset.mkdir(exist_ok=True)
            for path in paths[:resume_images]:
                (subset / path.name).write_bytes(path.read_bytes())
            import shutil

            shutil.rmtree(out / "resume", ignore_errors=True)
            resume = resume_check(endpoint.url, subset, out / "resume", num_samples, kills,
                                  wall / image_count, seed, reference)
        bad_run = None
        if bad_share > 0:
            import shutil

            shutil.rmtree(out / "bad-images", ignore_errors=True)
            bad = write_bad_images(out / "bad-images", paths, bad_share)
            bad_run = bad_images_check(endpoint.url, out / "bad-images", bad, out / "bad-run", num_samples)

    per_instance = 3600 / (calls_per_image * server_seconds)
    client_rate = 3600 * cores / client_seconds
    lines = [
        f"Explaining shapes scenes (320x320, {num_samples} samples, detector {Path(model_dir).name}) "
        f"against the local endpoint (1 MMS worker) on this machine ({cores} cores shared by client and "
        f"endpoint), --concurrency {concurrency}:",
        "",
        "| images in flight | images | wall s | images/hour | model calls/s | requests | mean request s |",
        "|---|---|---|---|---|---|---|",
        *rows,
        "",
        f"npz values identical across images-in-flight settings: {'yes' if identical else 'NO'}",
        "",
        f"Measured costs: {calls_per_image:.0f} model calls per image; the endpoint worker takes "
        f"{server_seconds * 1000:.2f} ms per masked image (one request of {per_request} images at a time); "
        f"the client spends {client_seconds:.2f} s per image outside the predict calls (segmentation, masking, "
        "sampling, regression, rendering; measured with 1 image in flight, mostly one core busy).",
        "",
        "Modelled images/hour with E endpoint instances like this one (1 worker each) and a client with "
        f"{cores} cores of its own: min(E x 3600 / (calls per image x s per masked image), "
        "client cores x 3600 / client s per image), i.e. the client's images in flight use its cores in "
        "parallel. The endpoint time per masked image is measured end to "
        "end (npy encoding, HTTP, forward pass, JSON) with one request at a time, so it includes the "
        "per-request overhead but no network latency. Keeping E instances busy needs at least E requests "
        "in flight: --concurrency >= E for one SageMaker endpoint with E instances (SageMaker spreads the "
        "requests), or --images-in-flight >= E with E --endpoint URLs (one image's batch goes to one "
        "endpoint):",
        "",
        "| endpoint instances | endpoint-bound | client-bound | expected images/hour |",
        "|---|---|---|---|",
    ]
    for instances in (1, 2, 4, 8):
        lines.append(f"| {instances} | {instances * per_instance:.0f} | {client_rate:.0f} | "
                     f"{min(instances * per_instance, client_rate):.0f} |")
    if resume is not None:
        lines += ["", f"Resume: `python -m explain` over {resume['images']} images SIGKILLed {kills} times at "
                  f"random points (finished images at each kill: {resume['finished_at_kill']}), then run to the "
                  f"end: npz values byte-identical to the uninterrupted run: "
                  f"{'yes' if resume['identical'] else 'NO'} ({resume['final_stdout']})."]
    if bad_run is not None:
        kinds = ", ".join(f"{name} {kind}" for name, kind in sorted(bad_run["bad"].items()))
        lines += ["", f"Bad images: `python -m explain` over {bad_run['images']} images of which "
                  f"{len(bad_run['bad'])} are bad ({kinds}): exit status {bad_run['exit_status']}, "
                  f"{bad_run['explained']} good images explained, failures listed: "
                  f"{', '.join(f'{name} ({kind})' for name, kind in sorted(bad_run['failed'].items()))}; every "
                  f"bad image listed: {'yes' if bad_run['all_bad_listed'] else 'NO'}; {bad_run['wall_s']:.0f} s."]
    lines += ["", f"Load average (1 min) before / after: {load_before:.1f} / {os.getloadavg()[0]:.1f} "
              "(other processes on the machine compete for the same cores)."]
    lines += ["", "Reproduce: `.venv/bin/python -m bench.bench_scale --images "
              f"{image_count} --num-samples {num_samples} --in-flight {in_flight} --concurrency {concurrency} "
              f"--resume-images {resume_images} --kills {kills} --bad-share {bad_share}`"]
    click.echo("\n".join(lines))
    (out / "bench_scale.json").write_text(json.dumps({
        "rows": rows, "calls_per_image": calls_per_image, "server_seconds_per_image": server_seconds,
        "client_seconds_per_image": client_seconds, "identical": identical, "resume": resume,
        "bad_images": bad_run}, indent=2))


if __name__ == "__main__":
    main()
