"""Resumable runs: manifest, skip finished images, same results as an uninterrupted run, settings check."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from explain import EndpointUnavailableError, ExplainConfig, ExplainError
from explain.cli import main
from explain.manifest import SettingsChangedError, is_output_mark, read_manifests, settings_digest
from explain.runner import RunOptions, run_explanations
from explain.sharding import Shard, select_shard, shard_of
from explain.sources import collect_sources
from tests.explain.test_explainer import red_square_detector, red_square_scene
from tests.explain.test_out_dir import killed_run_staging
from tests.fake_endpoint import FakeEndpoint
from tests.report_html import embedded_files, page_text

CONFIG = ExplainConfig(num_samples=24, num_segments=6)
NPZ_ARRAYS = ("segments", "shap_values", "standard_errors", "base_values", "predictions", "labels",
              "target_scores", "model_calls", "boxes", "segment_levels")


@pytest.fixture()
def image_dir(tmp_path):
    """Six 64x64 scenes with a red square, two of them in a subfolder."""
    folder = tmp_path / "images"
    (folder / "sub").mkdir(parents=True)
    for index in range(6):
        name = f"sub/scene{index}.png" if index >= 4 else f"scene{index}.png"
        Image.fromarray(red_square_scene(seed=index)).save(folder / name)
    return folder


class CountingDetector:
    """red_square_detector that records how many images it saw; after ``fail_after`` calls the endpoint is gone."""

    def __init__(self, fail_after: int | None = None):
        self.fail_after = fail_after
        self.calls = 0
        self.images = 0
        self.lock = threading.Lock()

    def __call__(self, batch):
        with self.lock:
            self.calls += 1
            if self.fail_after is not None and self.calls > self.fail_after:
                raise EndpointUnavailableError("endpoint outage (simulated)")
            self.images += len(batch)
        return red_square_detector(batch)


def npz_values(out_dir):
    """{file name: {array name: bytes}} of every npz in ``out_dir``."""
    values = {}
    for path in sorted(out_dir.glob("*_shap.npz")):
        with np.load(path) as arrays:
            values[path.name] = {name: arrays[name].tobytes() for name in NPZ_ARRAYS if name in arrays}
    return values


def without_timings(analysis):
    images = [{key: value for key, value in item.items() if key != "timings"} for item in analysis["images"]]
    return images, analysis["settings"]


def run(sources, predict, out_dir, **options):
    options.setdefault("progress", False)
    return run_explanations(sources, predict, CONFIG, out_dir, RunOptions(**options))


def test_interrupted_run_resumes_to_the_uninterrupted_result(image_dir, tmp_path):
    sources = collect_sources([str(image_dir)])
    counting = CountingDetector()
    reference = run(sources, counting, tmp_path / "reference", images_in_flight=1)
    assert reference["totals"]["images"] == 6
    calls_per_image = counting.calls // 6

    out = tmp_path / "resumed"
    # after three images' worth of calls the endpoint goes away: 1 to 3 images are finished
    outage = CountingDetector(fail_after=3 * calls_per_image)
    with pytest.raises(EndpointUnavailableError, match="outage"):
        run(sources, outage, out, images_in_flight=2)
    finished = {entry["key"] for entry in read_manifests(out)}
    assert 0 < len(finished) < 6
    assert not (out / "analysis.json").exists()

    second = CountingDetector()
    summary = run(sources, second, out, images_in_flight=3)
    assert summary["totals"]["images"] == 6
    assert summary["totals"]["explained_now"] == 6 - len(finished)
    per_image = reference["totals"]["model_calls"] // 6
    assert second.images == per_image * (6 - len(finished))  # finished images were not sent again

    assert npz_values(out) == npz_values(tmp_path / "reference")
    assert without_timings(json.loads((out / "analysis.json").read_text())) == without_timings(
        json.loads((tmp_path / "reference" / "analysis.json").read_text()))
    embedded = embedded_files(out / "report.html")
    for stem in ("scene0.png", "scene3.png", "sub__scene4.png", "sub__scene5.png"):
        assert embedded[f"{stem}_objects.jpeg"] == (out / f"{stem}_objects.jpeg").read_bytes()
    assert not list(out.glob(".staging-*"))

    third = CountingDetector()
    again = run(sources, third, out)
    assert third.calls == 0 and again["totals"]["explained_now"] == 0


def test_results_do_not_depend_on_images_in_flight_or_order(image_dir, tmp_path):
    sources = collect_sources([str(image_dir)])[:4]
    run(sources, CountingDetector(), tmp_path / "one", images_in_flight=1)
    run(list(reversed(sources)), CountingDetector(), tmp_path / "four", images_in_flight=4)
    assert npz_values(tmp_path / "one") == npz_values(tmp_path / "four")


def test_a_changed_image_is_explained_again(image_dir, tmp_path):
    sources = collect_sources([str(image_dir)])
    run(sources, CountingDetector(), tmp_path / "out")
    Image.fromarray(red_square_scene(seed=42)).save(image_dir / "scene1.png")
    detector = CountingDetector()
    summary = run(collect_sources([str(image_dir)]), detector, tmp_path / "out")
    assert summary["totals"]["explained_now"] == 1 and detector.images > 0


def test_manifest_line_cut_short_by_a_crash_is_ignored_once_then_removed(image_dir, tmp_path, caplog):
    sources = collect_sources([str(image_dir / "scene0.png"), str(image_dir / "scene1.png")])
    out = tmp_path / "out"
    run(sources, CountingDetector(), out)
    manifest = out / "manifest.jsonl"
    lines = manifest.read_text().splitlines()
    manifest.write_text(lines[0] + "\n" + lines[1][: len(lines[1]) // 2])  # killed mid-write
    torn = json.loads(lines[1])
    killed_run_staging(out, torn["key"], torn["files"])  # what the killed run left: its journal of the files
    with caplog.at_level("WARNING", logger="explain"):
        summary = run(sources, CountingDetector(), out)
    assert summary["totals"]["explained_now"] == 1 and summary["totals"]["images"] == 2
    assert [record.getMessage() for record in caplog.records] == [
        f"{manifest} line 2 is incomplete (interrupted write); ignoring it"]
    # the torn line is gone, not kept for every later run to warn about
    assert [json.loads(line)["key"] for line in manifest.read_text().splitlines()] == [
        json.loads(line)["key"] for line in lines]
    caplog.clear()
    with caplog.at_level("WARNING", logger="explain"):
        again = run(sources, CountingDetector(), out)
    assert again["totals"]["explained_now"] == 0 and caplog.records == []
    assert len(read_manifests(out)) == 2


def test_a_last_manifest_line_only_lacking_its_newline_is_kept(image_dir, tmp_path):
    sources = collect_sources([str(image_dir / "scene0.png"), str(image_dir / "scene1.png")])
    out = tmp_path / "out"
    run(sources[:1], CountingDetector(), out)
    manifest = out / "manifest.jsonl"
    manifest.write_bytes(manifest.read_bytes().rstrip(b"\n"))  # e.g. edited by hand
    summary = run(sources, CountingDetector(), out)
    assert summary["totals"]["explained_now"] == 1
    assert len(manifest.read_text().splitlines()) == 2 and len(read_manifests(out)) == 2


def cli(args):
    return CliRunner().invoke(main, [str(arg) for arg in args], prog_name="python -m explain")


def test_changed_settings_are_refused_and_restart_starts_over(image_dir, tmp_path, tiny_detector_dir):
    args = ["--endpoint", tiny_detector_dir, "--task", "detection", "--out", tmp_path / "out",
            "--num-segments", "4", "--quiet", image_dir / "scene0.png"]
    first = cli(args + ["--num-samples", "16"])
    assert first.exit_code == 0, first.output
    refused = cli(args + ["--num-samples", "20"])
    assert refused.exit_code == 1
    message = " ".join(refused.stderr.split())
    assert (f"Error: {tmp_path / 'out'} holds explanations made with other settings "
            "(num_samples 16 -> 20); run again with the same settings to resume, add --restart "
            "(in Python: RunOptions(restart=True)) to discard them and start over, or choose another --out") == message
    restarted = cli(args + ["--num-samples", "20", "--restart"])
    assert restarted.exit_code == 0, restarted.output
    assert json.loads((tmp_path / "out" / "analysis.json").read_text())["settings"]["num_samples"] == 20
    resumed = cli(args + ["--num-samples", "20"])
    assert resumed.exit_code == 0 and "1 image(s) were finished by an earlier run and skipped" in resumed.stdout


def test_a_shard_run_with_changed_settings_is_told_what_it_can_do(image_dir, tmp_path, tiny_detector_dir):
    """review 33: the message told a --shard run to add --restart, which --shard refuses; its advice works."""
    args = ["--endpoint", tiny_detector_dir, "--task", "detection", "--out", tmp_path / "out",
            "--num-segments", "4", "--quiet", "--shard", "0/2", image_dir]
    assert cli(args + ["--num-samples", "16"]).exit_code == 0
    refused = cli(args + ["--num-samples", "20"])
    assert refused.exit_code == 1
    assert ("add --restart (in Python: RunOptions(restart=True); for --shard runs, which exclude it, empty --out before "
            "starting the shards) to discard them and start over, or choose another --out") in " ".join(
        refused.stderr.split())
    for path in (tmp_path / "out").iterdir():  # the advice, followed
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink()
    again = cli(args + ["--num-samples", "20"])
    assert again.exit_code == 0, again.output


@pytest.mark.parametrize("changed, message", [
    (["--content-type", "image/jpeg"], 'content_type "application/x-npy" -> "image/jpeg"'),
    (["--custom-attributes", "score_threshold=0.2"], 'custom_attributes null -> "score_threshold=0.2"'),
    (["--probability", "prediction"], 'probability null -> "prediction"'),
])
def test_changed_request_options_are_refused(changed, message, image_dir, tmp_path, tiny_detector_dir):
    args = ["--endpoint", tiny_detector_dir, "--task", "detection", "--out", tmp_path / "out",
            "--num-segments", "4", "--num-samples", "16", "--quiet", image_dir / "scene0.png"]
    assert cli(args).exit_code == 0
    refused = cli(args + changed)
    assert refused.exit_code == 1
    assert (f"Error: {tmp_path / 'out'} holds explanations made with other settings ({message}); run again "
            "with the same settings to resume") in " ".join(refused.stderr.split())


def test_unchanged_request_options_or_other_network_options_resume(image_dir, tmp_path, tiny_detector_dir):
    args = ["--endpoint", tiny_detector_dir, "--task", "detection", "--out", tmp_path / "out",
            "--num-segments", "4", "--num-samples", "16", "--quiet", "--content-type", "image/png",
            "--custom-attributes", "score_threshold=0.1", image_dir / "scene0.png"]
    assert cli(args).exit_code == 0
    for extra in ([], ["--concurrency", "2", "--timeout", "9", "--max-retries", "0"]):
        resumed = cli(args + extra)
        assert resumed.exit_code == 0, resumed.output
        assert "1 image(s) were finished by an earlier run and skipped" in resumed.stdout
    analysis = json.loads((tmp_path / "out" / "analysis.json").read_text())
    assert (analysis["settings"]["content_type"], analysis["settings"]["custom_attributes"]) == (
        "image/png", "score_threshold=0.1")


def test_a_run_recorded_without_request_settings_resumes_with_the_defaults(image_dir, tmp_path):
    sources = collect_sources([str(image_dir / "scene0.png")])
    run(sources, CountingDetector(), tmp_path / "out")
    manifest = tmp_path / "out" / "manifest.jsonl"
    entries = [json.loads(line) for line in manifest.read_text().splitlines()]
    for entry in entries:  # as the code before request settings were recorded wrote it
        for name in ("content_type", "custom_attributes", "probability", "target_model"):
            del entry["settings"][name]
        entry["settings_digest"] = settings_digest(entry["settings"])
    manifest.write_text("".join(json.dumps(entry) + "\n" for entry in entries))
    summary = run(sources, CountingDetector(), tmp_path / "out")
    assert summary["totals"]["explained_now"] == 0
    # review 18: the message says the earlier run did not record it (it may have sent PNG over HTTP)
    with pytest.raises(SettingsChangedError, match=re.escape(
            'content_type "application/x-npy" (not recorded by that run, which predates it: taken as the '
            'default) -> "image/png"')):
        run_explanations(sources, CountingDetector(), replace(CONFIG, content_type="image/png"),
                         tmp_path / "out", RunOptions(progress=False))


def test_settings_check_in_the_library(image_dir, tmp_path):
    sources = collect_sources([str(image_dir / "scene0.png")])
    run(sources, CountingDetector(), tmp_path / "out")
    with pytest.raises(SettingsChangedError, match="seed 0 -> 7"):
        run_explanations(sources, CountingDetector(), ExplainConfig(num_samples=24, num_segments=6, seed=7),
                         tmp_path / "out", RunOptions(progress=False))


def test_an_out_of_only_failures_with_other_settings_says_restart_loses_nothing(image_dir, tmp_path):
    """review 29, finding 1: a photo too large for the endpoint failed with a message naming --resize; the run
    with --resize into the same --out was refused as holding "explanations made with other settings"."""
    (image_dir / "broken.png").write_bytes(b"not a png")
    broken = collect_sources([str(image_dir / "broken.png")])
    with pytest.raises(ExplainError):
        run(broken, CountingDetector(), tmp_path / "out")  # no image explained: the run fails
    assert read_manifests(tmp_path / "out")[0]["status"] == "failed"
    changed = ExplainConfig(num_samples=24, num_segments=6, seed=7)
    with pytest.raises(SettingsChangedError, match=re.escape(
            f"{tmp_path / 'out'} holds only failure records of a run with other settings (seed 0 -> 7), no "
            "explanation: add --restart (in Python: RunOptions(restart=True)) to discard them (nothing explained is lost), or choose "
            "another --out")):
        run_explanations(broken, CountingDetector(), changed, tmp_path / "out", RunOptions(progress=False))
    good = collect_sources([str(image_dir / "scene0.png")])
    run(good, CountingDetector(), tmp_path / "out")  # the same settings: the failure stays, an explanation is added
    with pytest.raises(SettingsChangedError, match="holds explanations made with other settings"):
        run_explanations(good, CountingDetector(), changed, tmp_path / "out", RunOptions(progress=False))
    # review 31: an explanation whose image later failed (its files stay) is no "failure record" only
    (image_dir / "scene0.png").write_bytes(b"not a png any more")
    with pytest.raises(ExplainError):
        run(good, CountingDetector(), tmp_path / "out")
    with pytest.raises(SettingsChangedError, match="holds explanations made with other settings"):
        run_explanations(good, CountingDetector(), changed, tmp_path / "out", RunOptions(progress=False))


def test_another_hosts_failures_of_other_settings_beside_this_hosts_explanations(image_dir, tmp_path):
    """review 31: host B, resuming with its own settings beside host A's failures of other settings, was told
    its explanations were made with other settings."""
    (image_dir / "broken.png").write_bytes(b"not a png")
    with pytest.raises(ExplainError):  # host A, its own folder (as a Processing instance's) until the merge
        run_explanations(collect_sources([str(image_dir / "broken.png")]), CountingDetector(),
                         ExplainConfig(num_samples=24, num_segments=6, seed=7), tmp_path / "host-a",
                         RunOptions(progress=False, manifest_tag="hostA"))
    good = collect_sources([str(image_dir / "scene0.png")])
    run(good, CountingDetector(), tmp_path / "out", manifest_tag="hostB")
    (tmp_path / "out" / "manifest-hostA.jsonl").write_bytes((tmp_path / "host-a" / "manifest-hostA.jsonl").read_bytes())
    with pytest.raises(SettingsChangedError, match=re.escape(
            "holds failure records of a run with other settings (seed 7 -> 0) beside 1 explanation(s) made with "
            "these settings: choose another --out, or add --restart (in Python: RunOptions(restart=True)), which discards "
            "the explanations too")):
        run(good, CountingDetector(), tmp_path / "out", manifest_tag="hostB")


@pytest.mark.parametrize("changed, message", [
    ({"refine_fraction": 0.2}, "refine_fraction 0.4 -> 0.2"),
    ({"max_segments": 30}, "max_segments 64 -> 30"),
    ({"focus": "none"}, 'focus "boxes" -> "none"'),
])
def test_changed_refinement_settings_are_refused(changed, message, image_dir, tmp_path):
    sources = collect_sources([str(image_dir / "scene0.png")])
    run(sources, CountingDetector(), tmp_path / "out")
    with pytest.raises(SettingsChangedError, match=message):
        run_explanations(sources, CountingDetector(), ExplainConfig(num_samples=24, num_segments=6, **changed),
                         tmp_path / "out", RunOptions(progress=False))


@pytest.mark.parametrize("count", [1, 2, 3, 4])
def test_shards_cover_every_image_exactly_once(count):
    keys = [f"folder{index % 7}/image{index}.png" for index in range(200)]
    positions = [select_shard(keys, Shard(index, count)) for index in range(count)]
    flat = sorted(position for part in positions for position in part)
    assert flat == list(range(200))
    if count > 1:
        assert all(part for part in positions)  # 200 keys: no shard empty
    assert shard_of("folder1/image8.png", 4) == shard_of("folder1/image8.png", 4)


def test_shard_parsing_messages():
    assert Shard.parse("2/4") == Shard(2, 4)
    with pytest.raises(ExplainError, match="shard index must be in \\[0, 3\\], got 4"):
        Shard.parse("4/4")
    with pytest.raises(ExplainError, match="shard must look like INDEX/COUNT, e.g. 0/4, got 'x'"):
        Shard.parse("x")


def test_shards_then_merge_equal_one_run(image_dir, tmp_path):
    sources = collect_sources([str(image_dir)])
    run(sources, CountingDetector(), tmp_path / "whole")
    for index in range(3):
        counts = run(sources, CountingDetector(), tmp_path / "sharded", shard=Shard(index, 3), merge=False)
        assert counts["images"] == len(select_shard([s.key for s in sources], Shard(index, 3)))
    assert sorted(path.name for path in (tmp_path / "sharded").glob("manifest*")) == [
        "manifest-shard-0-of-3.jsonl", "manifest-shard-1-of-3.jsonl", "manifest-shard-2-of-3.jsonl"]
    summary = run(sources, CountingDetector(), tmp_path / "sharded")  # nothing left: merge only
    assert summary["totals"]["explained_now"] == 0 and summary["totals"]["images"] == 6
    assert npz_values(tmp_path / "sharded") == npz_values(tmp_path / "whole")
    # review 6: the merge reported its own 0.003 s as the run's time, and the report "0.0 s"
    image_seconds = sum(item["timings"]["total_s"] for item in summary["images"])
    assert summary["totals"]["explain_seconds"] == pytest.approx(image_seconds) and image_seconds > 0
    assert summary["totals"]["seconds"] < image_seconds
    assert (f"{image_seconds:.1f} s of explaining, all by earlier runs (this run merged them in "
            f"{summary['totals']['seconds']:.1f} s)") in page_text(tmp_path / "sharded" / "report.html")


def test_a_fully_resumed_run_says_its_values_come_from_earlier_runs(image_dir, tmp_path):
    args = ["--endpoint", "unused", "--task", "detection", "--num-samples", "16", "--num-segments", "4", "--quiet",
            "--out", tmp_path / "out", image_dir]
    with FakeEndpoint("detection") as endpoint:
        args[1] = endpoint.url
        assert cli(args).exit_code == 0
        again = cli(args)
    assert again.exit_code == 0, again.output
    analysis = json.loads((tmp_path / "out" / "analysis.json").read_text())
    totals = analysis["totals"]
    assert totals["explained_now"] == 0
    first_line = again.stdout.splitlines()[0]
    assert first_line == (f"6 image(s), {totals['targets']} target(s) with {totals['model_calls']} model calls, "
                          f"all explained by earlier runs ({totals['explain_seconds']:.1f} s of explaining); "
                          f"this run merged them in {totals['seconds']:.1f} s")
    assert "6 image(s) were finished by an earlier run and skipped" in again.stdout


@pytest.mark.integration  # starts processes (no fixture says so)
def test_workers_processes_equal_one_process(image_dir, tmp_path, tiny_detector_dir):
    common = ["--endpoint", tiny_detector_dir, "--task", "detection", "--num-samples", "16",
              "--num-segments", "4", "--quiet", image_dir]
    single = cli(common + ["--out", tmp_path / "single"])
    assert single.exit_code == 0, single.output
    workers = cli(common + ["--out", tmp_path / "workers", "--workers", "2"])
    assert workers.exit_code == 0, workers.output
    assert "explained 6 image(s)" in workers.stdout
    assert npz_values(tmp_path / "workers") == npz_values(tmp_path / "single")
    analysis = json.loads((tmp_path / "workers" / "analysis.json").read_text())
    assert [item["stem"] for item in analysis["images"]] == [
        "scene0.png", "scene1.png", "scene2.png", "scene3.png", "sub__scene4.png", "sub__scene5.png"]
    assert analysis["predictor"]["transport"] == "2 workers"
    assert analysis["settings"]["label_headers"] == ["circle", "square", "triangle"]



@pytest.fixture()
def sigkill_endpoint():
    """The fake detector over HTTP, whose requests can be held (it serves a subprocess: integration)."""
    with FakeEndpoint("detection") as endpoint:
        yield endpoint
        endpoint.release()


def test_sigkilled_cli_run_finishes_with_the_uninterrupted_values(image_dir, tmp_path, sigkill_endpoint):
    """Killed once the manifest holds an image and the run is stuck on a held request: 1 or 2 of 6 done."""
    repo = Path(__file__).resolve().parents[2]
    args = ["--endpoint", sigkill_endpoint.url, "--task", "detection", "--num-samples", "64",
            "--num-segments", "8", "--quiet", "--images-in-flight", "2", str(image_dir)]
    env = {**os.environ, "PYTHONPATH": str(repo)}
    command = [sys.executable, "-m", "explain", *args]
    reference = subprocess.run(command + ["--out", str(tmp_path / "reference")], cwd=repo, env=env,
                               capture_output=True, text=True, timeout=120)
    assert reference.returncode == 0, reference.stderr

    out = tmp_path / "killed"
    manifest = out / "manifest.jsonl"
    # From the first finished image on, every request waits: with two images in flight at most
    # one more can finish (its requests were answered already), and the others cannot start.
    sigkill_endpoint.hold = lambda: manifest.exists() and manifest.read_text().count("\n") >= 1
    process = subprocess.Popen(command + ["--out", str(out)], cwd=repo, env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        assert sigkill_endpoint.holding.wait(60), "the run never reached a held request"
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait(10)
    sigkill_endpoint.release()
    finished = len(read_manifests(out))
    assert 1 <= finished < 6
    resumed = subprocess.run(command + ["--out", str(out)], cwd=repo, env=env, capture_output=True, text=True,
                             timeout=120)
    assert resumed.returncode == 0, resumed.stderr
    assert f"{finished} image(s) were finished by an earlier run and skipped" in resumed.stdout
    assert npz_values(out) == npz_values(tmp_path / "reference")
    assert not list(out.glob(".staging-*"))


@pytest.mark.parametrize("extra, message", [
    (["--shard", "4/4"], "Invalid value for '--shard': shard index must be in [0, 3], got 4"),
    (["--shard", "1/2", "--restart"], "Invalid value for '--restart': --restart and --shard exclude each other"),
    (["--shard", "0/2", "--workers", "2"], "Invalid value for '--workers': --workers and --shard exclude each other"),
    (["--images-in-flight", "0"], "Invalid value for '--images-in-flight': 0 is not in the range 1<=x<=256."),
])
def test_run_option_usage_errors(extra, message, image_dir, tmp_path):
    result = cli(["--endpoint", "http://127.0.0.1:9", "--task", "detection", "--out", tmp_path / "out",
                  *extra, image_dir])
    assert result.exit_code == 2, result.output
    assert message in " ".join(result.output.split())
    assert not (tmp_path / "out").exists()


def test_an_unreadable_image_is_recorded_and_named(image_dir, tmp_path):
    (image_dir / "broken.png").write_bytes(b"not a png")
    sources = collect_sources([str(image_dir / "broken.png"), str(image_dir / "scene0.png")])
    summary = run(sources, CountingDetector(), tmp_path / "out")
    assert summary["totals"]["images"] == 1
    (failed,) = summary["totals"]["failed"]
    assert failed["image"].endswith("broken.png") and failed["kind"] == "image"
    assert failed["reason"].startswith("cannot read image") and failed["reason"].endswith("not a JPEG or PNG file "
                                                                                          "(explain reads JPEG and PNG)")
    assert "unfinished" not in summary["totals"]
    assert json.loads((tmp_path / "out" / "analysis.json").read_text())["totals"]["failed"] == [failed]
    text = page_text(tmp_path / "out" / "report.html")
    assert "1 image(s) could not be explained and were skipped" in text
    assert failed["image"] + failed["reason"] + "image" in text


def test_an_out_inside_the_image_folder_is_not_explained_again(tmp_path, tiny_detector_dir, caplog):
    folder = tmp_path / "images"
    folder.mkdir()
    Image.fromarray(red_square_scene(seed=0)).save(folder / "scene0.png")
    out = folder / "out"
    for _ in range(2):  # the library: the run's own --out is skipped, marked or not
        detector = CountingDetector()
        summary = run([str(folder)], detector, out)
        assert summary["totals"]["images"] == 1
    assert detector.images == 0 and summary["totals"]["explained_now"] == 0
    with caplog.at_level("INFO", logger="explain.sources"):
        listed = collect_sources([str(folder)], output_mark=is_output_mark)  # what the CLI lists: by the marker
    assert [source.key for source in listed] == ["scene0.png"]
    assert f"{out} holds clearsight outputs (a run's manifest or the mark of an --out)" in caplog.text
    cli_out = folder / "cli-out"  # the CLI lists images before --out is known: by the marker
    args = ["--endpoint", tiny_detector_dir, "--task", "detection", "--out", cli_out, "--num-segments", "6",
            "--num-samples", "24", "--quiet", folder]
    assert cli(args).exit_code == 0
    again = cli(args)
    assert again.exit_code == 0, again.output
    assert "1 image(s) were finished by an earlier run and skipped" in again.stdout
    assert [item["key"] for item in read_manifests(cli_out)] == ["scene0.png"]


def test_an_out_that_is_the_image_folder_explains_the_images_not_the_outputs(tmp_path, caplog):
    # review 18: --out the image folder itself (--allow-non-empty-out): the outputs the manifests list
    # are left out with a warning, the user's own images stay
    folder = tmp_path / "photos"
    folder.mkdir()
    Image.fromarray(red_square_scene(seed=0)).save(folder / "scene0.png")
    first = run([str(folder)], CountingDetector(), folder, allow_non_empty_out=True)
    assert first["totals"]["explained_now"] == 1
    Image.fromarray(red_square_scene(seed=1)).save(folder / "scene1.png")  # a new photo since
    detector = CountingDetector()
    with caplog.at_level("WARNING", logger="explain.runner"):
        again = run([str(folder)], detector, folder, allow_non_empty_out=True)
    assert again["totals"]["explained_now"] == 1 and again["totals"]["images"] == 2
    assert sorted(item["key"] for item in read_manifests(folder)) == ["scene0.png", "scene1.png"]
    assert "image file(s) are outputs an earlier run wrote into --out" in caplog.text


def test_another_image_with_an_explained_name_is_refused_before_any_work(tmp_path, tiny_detector_dir):
    for name, seed in (("A", 1), ("B", 2)):
        (tmp_path / name).mkdir()
        Image.fromarray(red_square_scene(seed=seed)).save(tmp_path / name / "x.png")
    out = tmp_path / "out"
    run([str(tmp_path / "A")], CountingDetector(), out)
    before = npz_values(out)
    detector = CountingDetector()
    with pytest.raises(ExplainError) as refused:
        run([str(tmp_path / "B")], detector, out)
    assert str(refused.value) == (
        f"{out} holds the explanation of image 'x.png' from {str(tmp_path / 'A' / 'x.png')!r}; "
        f"{str(tmp_path / 'B' / 'x.png')!r} is another image with the same name and would replace it: choose "
        "another --out, or add --restart (in Python: RunOptions(restart=True)) to discard the earlier results")
    assert detector.images == 0 and npz_values(out) == before
    run([str(tmp_path / "A")], detector, out)  # the same file again: resumed, not refused
    Image.fromarray(red_square_scene(seed=3)).save(tmp_path / "A" / "x.png")
    assert run([str(tmp_path / "A")], detector, out)["totals"]["explained_now"] == 1  # changed bytes: again
    args = ["--endpoint", tiny_detector_dir, "--task", "detection", "--num-segments", "6", "--num-samples", "24",
            "--quiet", "--out", tmp_path / "cli-out"]
    assert cli(args + [tmp_path / "A"]).exit_code == 0
    usage = cli(args + [tmp_path / "B"])
    assert usage.exit_code == 2 and "is another image with the same name" in usage.stderr
    assert "--restart" in usage.stderr
    # review 35: a --shard run was told to add --restart, which --shard refuses
    shards = [cli(args + ["--shard", f"{index}/2", tmp_path / "B"]) for index in (0, 1)]
    (sharded,) = [result for result in shards if result.exit_code == 2]  # the shard that holds x.png
    assert "for --shard runs, which exclude it, empty --out before starting the shards" in " ".join(
        sharded.stderr.split())


def test_the_same_name_is_not_refused_when_the_earlier_image_is_this_one_or_gone(tmp_path, monkeypatch):
    # review 18: a moved folder whose outputs were damaged, a relative location seen from another
    # working directory, an earlier image deleted since: explained, not refused
    (tmp_path / "A").mkdir()
    Image.fromarray(red_square_scene(seed=1)).save(tmp_path / "A" / "x.png")
    out = tmp_path / "out"
    run([str(tmp_path / "A")], CountingDetector(), out)
    (tmp_path / "A").rename(tmp_path / "moved")
    (out / "x.png_shap.npz").write_bytes(b"damaged")
    assert run([str(tmp_path / "moved")], CountingDetector(), out)["totals"]["explained_now"] == 1
    monkeypatch.chdir(tmp_path / "moved")  # relative location, then changed bytes seen from elsewhere
    relative = tmp_path / "rel"
    run(["x.png"], CountingDetector(), relative)
    Image.fromarray(red_square_scene(seed=2)).save(tmp_path / "moved" / "x.png")
    monkeypatch.chdir(tmp_path)
    assert run([str(Path("moved") / "x.png")], CountingDetector(), relative)["totals"]["explained_now"] == 1
    (tmp_path / "B").mkdir()  # the earlier image deleted: its explanation is replaced
    Image.fromarray(red_square_scene(seed=3)).save(tmp_path / "B" / "x.png")
    (tmp_path / "moved" / "x.png").unlink()
    assert run([str(tmp_path / "B")], CountingDetector(), out)["totals"]["explained_now"] == 1


@pytest.mark.parametrize("damage", ["truncated npz", "2-byte jpeg", "missing jpeg"])
def test_outputs_damaged_after_writing_are_explained_again(damage, image_dir, tmp_path, caplog):
    sources = collect_sources([str(image_dir / "scene0.png")])
    out = tmp_path / "out"
    run(sources, CountingDetector(), out)
    before = npz_values(out)
    entry = read_manifests(out)[0]
    assert entry["file_sizes"] == {name: (out / name).stat().st_size for name in entry["files"]}
    npz, objects = out / "scene0.png_shap.npz", out / "scene0.png_objects.jpeg"
    if damage == "truncated npz":
        npz.write_bytes(npz.read_bytes()[:-100])
    elif damage == "2-byte jpeg":
        objects.write_bytes(b"\xff\xd8")
    else:
        objects.unlink()
    detector = CountingDetector()
    with caplog.at_level("WARNING", logger="explain.runner"):
        summary = run(sources, detector, out)
    assert summary["totals"]["explained_now"] == 1 and detector.images > 0
    assert "are missing or not the size they were written with; explaining it again" in caplog.text
    assert npz_values(out) == before and objects.stat().st_size > 2


def test_a_killed_runs_staging_folder_in_an_out_that_is_the_image_folder_is_not_explained(tmp_path):
    # kill26: a run SIGKILLed while moving an image's files in leaves its staging folder (figures
    # included) in --out; with --out the image folder, the next run listed those figures as images,
    # removed the folder as stale, then recorded them as failed (read) and exited 1
    from explain.owners import host_name as _host_name
    from explain.runner import STAGING_PREFIX

    folder = tmp_path / "photos"
    folder.mkdir()
    Image.fromarray(red_square_scene(seed=0)).save(folder / "scene0.png")
    run([str(folder)], CountingDetector(), folder, allow_non_empty_out=True)
    dead = subprocess.Popen([sys.executable, "-c", ""])
    dead.wait()  # a pid no process has any more
    staging = folder / f"{STAGING_PREFIX}{dead.pid}@{_host_name()}-k1ll3d"
    staging.mkdir()
    Image.fromarray(red_square_scene(seed=1)).save(staging / "scene1.png_objects.jpeg")
    Image.fromarray(red_square_scene(seed=2)).save(folder / "scene2.png")
    again = run(collect_sources([str(folder)], output_mark=is_output_mark), CountingDetector(), folder,
                allow_non_empty_out=True)
    assert again["totals"]["failed"] == []
    assert again["totals"]["images"] == 2 and again["totals"]["explained_now"] == 1
    assert sorted(item["key"] for item in read_manifests(folder)) == ["scene0.png", "scene2.png"]
    assert not staging.exists()


def test_a_restart_that_stops_before_its_report_leaves_no_report_of_the_discarded_results(image_dir, tmp_path):
    # kill26: --restart deleted the outputs and manifests of the earlier run but kept its analysis.json
    # and report.html; a restart killed (or stopped) before its own report left a report of images
    # whose figures were gone
    out = tmp_path / "out"
    image = str(image_dir / "scene0.png")
    run([image], CountingDetector(), out)
    with pytest.raises(EndpointUnavailableError):
        run([image], CountingDetector(fail_after=0), out, restart=True)
    assert sorted(path.name for path in out.iterdir()) == [".clearsight-output"]


@pytest.mark.integration  # starts processes (no fixture says so)
def test_workers_with_an_out_that_is_the_image_folder_report_the_images_not_the_outputs(tmp_path, tiny_detector_dir):
    # kill26: with --workers the parent reported the figures earlier runs wrote into the image folder
    # as images of the run, "unfinished" (each worker left them out, with one warning each)
    folder = tmp_path / "photos"
    folder.mkdir()
    Image.fromarray(red_square_scene(seed=0)).save(folder / "scene0.png")
    command = ["--endpoint", tiny_detector_dir, "--task", "detection", "--num-samples", "16", "--num-segments",
               "4", "--quiet", "--out", folder, "--allow-non-empty-out", folder]
    assert cli(command).exit_code == 0
    again = cli([*command, "--workers", "2"])
    assert again.exit_code == 0, again.output
    totals = json.loads((folder / "analysis.json").read_text())["totals"]
    assert (totals["images"], totals["explained_now"], totals.get("unfinished")) == (1, 0, None)


def test_resuming_through_an_endpoint_without_the_model_folders_names_says_how_to_give_them(tmp_path):
    # review 23: a run made through a model folder took its model.json's names; the same model behind an
    # endpoint gives none, and the refusal did not say that --label-headers restores them
    from explain.manifest import SettingsChangedError, check_settings, settings_digest

    made = {"task": "detection", "label_headers": ["circle", "square", "triangle"]}
    entries = [{"key": "a.png", "settings_digest": settings_digest(made), "settings": made}]
    now = {"task": "detection", "label_headers": None}
    with pytest.raises(SettingsChangedError, match=r"resume \(the class names: pass --label-headers "
                                                   r"circle,square,triangle, label_headers= from Python, to give "
                                                   r"the same\), add --restart"):
        check_settings(entries, settings_digest(now), now, tmp_path)
    made["label_headers"] = ["traffic light, red", "car"]
    entries = [{"key": "a.png", "settings_digest": settings_digest(made), "settings": made}]
    with pytest.raises(SettingsChangedError, match="give the same with --label-headers, a file of one per line"):
        check_settings(entries, settings_digest(now), now, tmp_path)


def test_an_older_runs_custom_attributes_without_a_threshold_are_refused_with_the_reason(tmp_path):
    # review 25: "run again with the same settings" could not work: the same text is now sent with
    # score_threshold=0, which the older run did not send
    from explain.manifest import SettingsChangedError, check_settings, settings_digest

    made = {"task": "detection", "custom_attributes": "top_k=10"}
    entries = [{"key": "a.png", "settings_digest": settings_digest(made), "settings": made}]
    now = {"task": "detection", "custom_attributes": "top_k=10,score_threshold=0"}
    with pytest.raises(SettingsChangedError, match=r"were explained at the model's default threshold: add --restart"):
        check_settings(entries, settings_digest(now), now, tmp_path)
